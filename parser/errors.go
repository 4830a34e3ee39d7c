// Package parser reads what portier routes by: a TLS ClientHello (SNI/ALPN,
// without decrypting), HTTP/1.x requests (one framer for every request of a
// connection: Host, forwarding headers, message framing) and backend answer
// heads. The parsers are incremental: they are handed the bytes received so
// far, allocate nothing, and answer ErrNeedMore until a message is complete.
package parser

import "errors"

// Sentinel error classes. Every error returned by this package is one of these
// or Is one of them, so callers can branch with errors.Is.
var (
	// ErrNeedMore means the input is a valid prefix; call again with more bytes.
	ErrNeedMore = errors.New("parser: need more bytes")
	// ErrNotThisProtocol means the input is not the protocol the parser handles
	// (e.g. plain HTTP on the TLS port).
	ErrNotThisProtocol = errors.New("parser: not this protocol")
	// ErrMalformed means the input claims to be the protocol but violates it.
	ErrMalformed = errors.New("parser: malformed")
)

// parseError is a preallocated specific error: returning it never allocates,
// and errors.Is reaches its class through Unwrap.
type parseError struct {
	kind error
	msg  string
}

func (e *parseError) Error() string { return e.msg }
func (e *parseError) Unwrap() error { return e.kind }

func notProto(msg string) error  { return &parseError{kind: ErrNotThisProtocol, msg: msg} }
func malformed(msg string) error { return &parseError{kind: ErrMalformed, msg: msg} }

// Exported protocol-mismatch errors.
var (
	// ErrNotTLS: the first bytes are not a TLS handshake record.
	ErrNotTLS = notProto("parse ClientHello: not a TLS handshake record")
	// ErrSSLv2: an SSL 2.0 ClientHello that does not offer TLS (an
	// SSLv2-format ClientHello offering TLS is accepted).
	ErrSSLv2 = notProto("parse ClientHello: SSL 2.0 ClientHello not offering TLS")
	// ErrNotHTTP: the bytes cannot start an HTTP/1.x request line (the
	// method is not a token of at most 32 bytes followed by SP).
	ErrNotHTTP = notProto("frame request: not an HTTP/1.x request line")
	// ErrHTTP2Preface: the HTTP/2 prior-knowledge connection preface
	// ("PRI * HTTP/2.0"), which is not HTTP/1.x.
	ErrHTTP2Preface = notProto("frame request: HTTP/2 prior-knowledge preface not supported")
)

// ClientHello malformed reasons.
var (
	errRecordType      = malformed("parse ClientHello: non-handshake record before ClientHello complete")
	errRecordVersion   = malformed("parse ClientHello: record version major is not 3")
	errRecordTooLong   = malformed("parse ClientHello: record length exceeds 2^14")
	errRecordEmpty     = malformed("parse ClientHello: zero-length handshake record")
	errNotClientHello  = malformed("parse ClientHello: handshake message is not a ClientHello")
	errHelloTooLarge   = &parseError{kind: ErrTooLarge, msg: "parse ClientHello: ClientHello exceeds the size limit"}
	errSSLv2Length     = malformed("parse ClientHello: SSLv2-format ClientHello lengths do not match its record")
	errSSLv2Fields     = malformed("parse ClientHello: SSLv2-format ClientHello without cipher specs or challenge, or session_id over 32 bytes")
	errRecordBoundary  = malformed("parse ClientHello: ClientHello does not end at a record boundary")
	errMessageTrailing = malformed("parse ClientHello: bytes after the handshake message")
	errLegacyVersion   = malformed("parse ClientHello: legacy_version major is not 3")
	errShortHello      = malformed("parse ClientHello: message too short for version and random")
	errSessionID       = malformed("parse ClientHello: session_id longer than 32 bytes or truncated")
	errCipherSuites    = malformed("parse ClientHello: cipher_suites truncated")
	errCipherSuitesLen = malformed("parse ClientHello: cipher_suites empty or of odd length")
	errCompression     = malformed("parse ClientHello: compression_methods empty or truncated")
	errExtensionsLen   = malformed("parse ClientHello: extensions length does not match message length")
	errExtension       = malformed("parse ClientHello: extension exceeds extensions block")
	errDupExtension    = malformed("parse ClientHello: duplicate extension")
	errPSKNotLast      = malformed("parse ClientHello: pre_shared_key is not the last extension")
	errSNIList         = malformed("parse ClientHello: server_name list length mismatch")
	errSNIEmpty        = malformed("parse ClientHello: server_name list empty")
	errSNIType         = malformed("parse ClientHello: server_name type is not host_name")
	errSNITrunc        = malformed("parse ClientHello: host_name exceeds server_name list")
	errSNILen          = malformed("parse ClientHello: host_name longer than 255 bytes")
	errSNIMultiple     = malformed("parse ClientHello: more than one server name")
	errSNIChar         = malformed("parse ClientHello: host_name contains a NUL byte")
	errALPNList        = malformed("parse ClientHello: ALPN list length mismatch")
	errALPNEmpty       = malformed("parse ClientHello: ALPN list empty")
	errALPNProto       = malformed("parse ClientHello: empty or truncated ALPN protocol name")
)
