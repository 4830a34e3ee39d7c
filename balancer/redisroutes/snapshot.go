package redisroutes

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/portier/portier/balancer"
)

// The snapshot file is binary and compact: the distinct backend lists once,
// then every name with the number of its list, then a CRC-32C of all that.
// All integers are little-endian.
//
//	magic    "PORTIERSNAP\x00"
//	version  u32 (snapshotVersion)
//	saved    i64 Unix nanoseconds
//	schema   u8 length, bytes (informational: routes are already converted)
//	lists    u32 count, then per list: u32 backends, per backend u16 length, bytes;
//	         then u16 ALPN pools, per pool: u8 length, protocol bytes, u32
//	         backends, per backend u16 length, bytes
//	routes   u32 count, then per route: u8 length, name bytes, u32 list number
//	crc      u32 CRC-32C (Castagnoli) of every byte before it
//
// A list is a route's whole content from Redis: its backends and its
// per-ALPN pools (frontend:<name>@<alpn> keys), so a restart with Redis
// down routes ALPN as before.
//
// A file that is truncated, damaged or of another version is refused as a
// whole; routes that no longer validate (the rules became stricter) are
// skipped and counted. Version 2 files (no ALPN pools) and version 1 files
// (JSON) are still read.
const (
	snapshotMagic   = "PORTIERSNAP\x00"
	snapshotVersion = 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errSnapshotChecksum is the refusal of a damaged or truncated file.
var errSnapshotChecksum = errors.New("checksum mismatch: the file is damaged or truncated")

// readSnapshot reads a snapshot written by writeSnapshot straight into a
// RouteSet.
func readSnapshot(path string) (routes *balancer.RouteSet, skipped int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if len(data) > 0 && data[0] == '{' {
		routes, skipped, err = readSnapshotJSON(data)
	} else {
		routes, skipped, err = decodeSnapshot(data)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("redis: snapshot %s: %w", path, err)
	}
	return routes, skipped, nil
}

// reader reads the fields of a snapshot; the first read past the end sets
// short and returns zeros.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) next(n int) []byte {
	if r.short || n > len(r.b) {
		r.short = true
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// backends reads n backend URLs (u16 length, bytes).
func (r *reader) backends(n int) []string {
	out := make([]string, n)
	for k := range out {
		out[k] = string(r.next(r.u16()))
	}
	return out
}

func (r *reader) u8() int {
	b := r.next(1)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *reader) u16() int {
	b := r.next(2)
	if b == nil {
		return 0
	}
	return int(binary.LittleEndian.Uint16(b))
}

func (r *reader) u32() uint32 {
	b := r.next(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func decodeSnapshot(data []byte) (*balancer.RouteSet, int, error) {
	if len(data) < len(snapshotMagic)+4+4 || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return nil, 0, errors.New("not a portier snapshot (bad magic)")
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, 0, errSnapshotChecksum
	}
	r := &reader{b: body[len(snapshotMagic):]}
	version := r.u32()
	if version != snapshotVersion && version != 2 {
		return nil, 0, fmt.Errorf("version %d, want %d", version, snapshotVersion)
	}
	r.next(8)         // saved
	r.next(r.u8())    // schema
	nLists := r.u32() // each takes at least 4 bytes
	if r.short || uint64(nLists)*4 > uint64(len(r.b)) {
		return nil, 0, errors.New("list count beyond the end of the file")
	}
	// ids[i] is the set's id of list i; valid[i] false for a list that no
	// longer validates.
	b := balancer.NewRouteSetBuilder(0)
	ids := make([]uint32, nLists)
	valid := make([]bool, nLists)
	for i := range ids {
		n := r.u32()
		if r.short || uint64(n)*2 > uint64(len(r.b)) {
			return nil, 0, fmt.Errorf("list %d: backend count beyond the end of the file", i)
		}
		spec := balancer.RouteSpec{Backends: r.backends(int(n))}
		valid[i] = n > 0
		if version >= 3 {
			nALPN := r.u16()
			if r.short || nALPN*6 > len(r.b) {
				return nil, 0, fmt.Errorf("list %d: ALPN pool count beyond the end of the file", i)
			}
			for range nALPN {
				proto := string(r.next(r.u8()))
				m := r.u32()
				if r.short || uint64(m)*2 > uint64(len(r.b)) {
					return nil, 0, fmt.Errorf("list %d: ALPN backend count beyond the end of the file", i)
				}
				spec.ALPN = append(spec.ALPN, balancer.ALPNRoute{Protocol: proto, Backends: r.backends(int(m))})
				valid[i] = valid[i] && proto != "" && m > 0
			}
		}
		if r.short {
			return nil, 0, fmt.Errorf("list %d beyond the end of the file", i)
		}
		valid[i] = valid[i] && validBackends(spec.Backends)
		for _, a := range spec.ALPN {
			valid[i] = valid[i] && validBackends(a.Backends)
		}
		if valid[i] {
			id, err := b.Content(spec)
			if err != nil {
				return nil, 0, err
			}
			ids[i] = id
		}
	}
	nRoutes := r.u32()
	if r.short || uint64(nRoutes)*6 > uint64(len(r.b)) {
		return nil, 0, errors.New("route count beyond the end of the file")
	}
	b.Reserve(int(nRoutes))
	skipped := 0
	// Routes go to the builder 16 at a time, so that the cache misses of
	// their index slots overlap (about a third of the read of 1M routes).
	// The names point into data, which outlives the batch.
	var (
		names [16][]byte
		lists [16]uint32
		held  int
	)
	flush := func() error {
		err := b.SetContents(names[:held], lists[:held])
		held = 0
		return err
	}
	for i := range nRoutes {
		name := r.next(r.u8())
		list := r.u32()
		if r.short {
			return nil, 0, fmt.Errorf("route %d beyond the end of the file", i)
		}
		if list >= nLists {
			return nil, 0, fmt.Errorf("route %d: list %d of %d", i, list, nLists)
		}
		// The name is checked in place (unsafe.String: the file's bytes
		// are not modified while it is used) and copied by SetContent.
		if n, err := normalizeName(unsafe.String(unsafe.SliceData(name), len(name))); err != nil || len(name) == 0 || n != string(name) || !valid[list] {
			skipped++
			continue
		}
		names[held], lists[held] = name, ids[list]
		if held++; held == len(names) {
			if err := flush(); err != nil {
				return nil, 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, 0, err
	}
	if len(r.b) != 0 {
		return nil, 0, fmt.Errorf("%d bytes after the last route", len(r.b))
	}
	return b.Done(), skipped, nil
}

// writeSnapshot writes routes to path atomically: a reader (or a restart
// after a crash mid-write) sees the old file or the new one, never a part.
func writeSnapshot(path, schema string, routes *balancer.RouteSet, now time.Time) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("redis: snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	crc := crc32.New(castagnoli)
	w := bufio.NewWriterSize(tmp, 256<<10)
	if err := encodeSnapshot(bufio.NewWriterSize(multiWriter{w, crc}, 64<<10), schema, routes, now); err != nil {
		return fmt.Errorf("redis: snapshot %s: %w", tmp.Name(), err)
	}
	if err := binary.Write(w, binary.LittleEndian, crc.Sum32()); err != nil {
		return fmt.Errorf("redis: snapshot %s: %w", tmp.Name(), err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("redis: snapshot %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("redis: snapshot %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("redis: snapshot %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("redis: snapshot: %w", err)
	}
	return nil
}

// multiWriter writes to a file's buffer and the checksum.
type multiWriter struct {
	w   *bufio.Writer
	crc interface{ Write([]byte) (int, error) }
}

func (m multiWriter) Write(p []byte) (int, error) {
	m.crc.Write(p)
	return m.w.Write(p)
}

// encodeSnapshot writes everything but the checksum to w and flushes it.
func encodeSnapshot(w *bufio.Writer, schema string, routes *balancer.RouteSet, now time.Time) error {
	var num [8]byte
	u32 := func(v uint32) {
		binary.LittleEndian.PutUint32(num[:4], v)
		w.Write(num[:4])
	}
	w.WriteString(snapshotMagic)
	u32(snapshotVersion)
	binary.LittleEndian.PutUint64(num[:], uint64(now.UnixNano()))
	w.Write(num[:])
	w.WriteByte(byte(len(schema)))
	w.WriteString(schema)
	backends := func(list []string) error {
		u32(uint32(len(list)))
		for _, be := range list {
			if len(be) > 0xffff {
				return fmt.Errorf("backend URL of %d bytes", len(be))
			}
			binary.LittleEndian.PutUint16(num[:2], uint16(len(be)))
			w.Write(num[:2])
			w.WriteString(be)
		}
		return nil
	}
	lists := routes.Contents(func([]byte, uint32) bool { return false })
	u32(uint32(len(lists)))
	for _, l := range lists {
		if err := backends(l.Backends); err != nil {
			return err
		}
		if len(l.ALPN) > 0xffff {
			return fmt.Errorf("%d ALPN pools", len(l.ALPN))
		}
		binary.LittleEndian.PutUint16(num[:2], uint16(len(l.ALPN)))
		w.Write(num[:2])
		for _, a := range l.ALPN {
			if len(a.Protocol) > 0xff {
				return fmt.Errorf("ALPN protocol of %d bytes", len(a.Protocol))
			}
			w.WriteByte(byte(len(a.Protocol)))
			w.WriteString(a.Protocol)
			if err := backends(a.Backends); err != nil {
				return err
			}
		}
	}
	u32(uint32(routes.Len()))
	routes.Contents(func(name []byte, id uint32) bool {
		w.WriteByte(byte(len(name)))
		w.Write(name)
		u32(id)
		return true
	})
	return w.Flush()
}

// Version 1: JSON, as written before the compact format.
type snapshotFileJSON struct {
	Version int `json:"version"`
	Routes  []struct {
		Name     string   `json:"name"`
		Backends []string `json:"backends"`
	} `json:"routes"`
}

func readSnapshotJSON(data []byte) (*balancer.RouteSet, int, error) {
	var f snapshotFileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, 0, err
	}
	if f.Version != 1 {
		return nil, 0, fmt.Errorf("version %d, want %d", f.Version, snapshotVersion)
	}
	b := balancer.NewRouteSetBuilder(len(f.Routes))
	skipped := 0
	for _, r := range f.Routes {
		if !validRoute(r.Name, r.Backends) {
			skipped++
			continue
		}
		if err := b.Set(balancer.RouteSpec{Name: r.Name, Backends: r.Backends}); err != nil {
			return nil, 0, err
		}
	}
	return b.Done(), skipped, nil
}

func validRoute(name string, backends []string) bool {
	if n, err := normalizeName(name); err != nil || n != name || len(backends) == 0 {
		return false
	}
	return validBackends(backends)
}

func validBackends(backends []string) bool {
	for _, b := range backends {
		if _, err := balancer.ParseBackend(b); err != nil {
			return false
		}
	}
	return true
}

// ReadSnapshot reads a snapshot file as Run does at start: the routes, and
// how many of them no longer validate and were skipped. For tools.
func ReadSnapshot(path string) (routes *balancer.RouteSet, skipped int, err error) {
	return readSnapshot(path)
}
