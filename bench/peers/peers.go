// Package peers renders the configuration files that the benchmark harness
// gives to each proxy under test (portier, HAProxy, nginx, sniproxy, and the
// floor forwarder), so that all of them get the same routes, one worker and
// no access logging.
package peers

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"text/template"
)

//go:embed *.tmpl
var files embed.FS

var templates = template.Must(template.ParseFS(files, "*.tmpl"))

// Params are the values every template may use.
type Params struct {
	Dir               string // per-run temporary directory (pid files, temp paths)
	Host              string // routed Host header and SNI name
	HTTPAddr          string // proxy's plain HTTP listener
	TLSAddr           string // proxy's TLS passthrough listener
	BackendHTTP       string // plain HTTP backend host:port
	BackendTLS        string // TLS backend host:port
	QUICAddr          string // proxy's UDP listener for QUIC; "" for proxies without one
	BackendQUIC       string // UDP (QUIC) backend host:port
	NginxStreamModule string // path of ngx_stream_module.so
	HTTPReuse         string // HAProxy's http-reuse (default always)
}

// HostRegexp is Host quoted for sniproxy's regular-expression tables.
func (p Params) HostRegexp() string { return regexp.QuoteMeta(p.Host) }

// Names lists the templates: floor.conf, haproxy.cfg, nginx.conf, portier.yaml, sniproxy.conf.
func Names() []string {
	return []string{"floor.conf", "haproxy.cfg", "nginx.conf", "portier.yaml", "sniproxy.conf"}
}

// Render executes template name (for example "nginx.conf") with p.
func Render(name string, p Params) ([]byte, error) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name+".tmpl", p); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// Write renders template name with p into p.Dir and returns the file's path.
func Write(name string, p Params) (string, error) {
	data, err := Render(name, p)
	if err != nil {
		return "", err
	}
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}
