package redisroutes

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

func testSet(t testing.TB, routes ...balancer.RouteSpec) *balancer.RouteSet {
	b := balancer.NewRouteSetBuilder(len(routes))
	for _, r := range routes {
		if err := b.Set(r); err != nil {
			t.Fatal(err)
		}
	}
	return b.Done()
}

var snapRoutes = []balancer.RouteSpec{
	{Name: "a.test", Backends: []string{"http://127.0.0.1:9001"}},
	{Name: "b.test", Backends: []string{"http://127.0.0.1:9001"}},
	{Name: "*.c.test", Backends: []string{"http://127.0.0.1:9002", "tls://127.0.0.1:9443?weight=2"}},
	{Name: "*", Backends: []string{"tls://127.0.0.1:9443"}},
	{Name: "alpn.test", Backends: []string{"tls://127.0.0.1:9443"}, ALPN: []balancer.ALPNRoute{
		{Protocol: "acme-tls/1", Backends: []string{"tls://127.0.0.1:9444"}},
		{Protocol: "h2", Backends: []string{"tls://127.0.0.1:9445", "tls://127.0.0.1:9446"}},
	}},
}

func sameRoutes(a, b []balancer.RouteSpec) bool {
	return slices.EqualFunc(a, b, func(a, b balancer.RouteSpec) bool {
		return a.Name == b.Name && slices.Equal(a.Backends, b.Backends) &&
			slices.EqualFunc(a.ALPN, b.ALPN, func(x, y balancer.ALPNRoute) bool {
				return x.Protocol == y.Protocol && slices.Equal(x.Backends, y.Backends)
			})
	})
}

func TestSnapshotRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.snap")
	set := testSet(t, snapRoutes...)
	if err := writeSnapshot(path, SchemaHipache, set, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, skipped, err := readSnapshot(path)
	if err != nil || skipped != 0 {
		t.Fatalf("readSnapshot: %v, %d skipped", err, skipped)
	}
	if got.Digest() != set.Digest() || !sameRoutes(got.Sorted(), set.Sorted()) {
		t.Fatalf("read %v, wrote %v", got.Sorted(), set.Sorted())
	}
	if r, _ := got.Get("alpn.test"); len(r.ALPN) != 2 {
		t.Errorf("alpn.test read back with ALPN pools %v", r.ALPN)
	}
	// Equal backend lists are stored once.
	if n := len(got.Contents(func([]byte, uint32) bool { return false })); n != 4 {
		t.Errorf("%d backend lists, want 4", n)
	}
}

// TestSnapshotVersion2: files written before ALPN pools were kept (no ALPN
// section after each list) are still read.
func TestSnapshotVersion2(t *testing.T) {
	var b []byte
	u32 := func(v uint32) { b = binary.LittleEndian.AppendUint32(b, v) }
	str16 := func(s string) { b = binary.LittleEndian.AppendUint16(b, uint16(len(s))); b = append(b, s...) }
	b = append(b, snapshotMagic...)
	u32(2)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = append(b, byte(len(SchemaHipache)))
	b = append(b, SchemaHipache...)
	u32(1) // one list
	u32(1)
	str16("http://127.0.0.1:9001")
	u32(2) // two routes on it
	for _, n := range []string{"a.test", "b.test"} {
		b = append(b, byte(len(n)))
		b = append(b, n...)
		u32(0)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	path := filepath.Join(t.TempDir(), "v2.snap")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	set, skipped, err := readSnapshot(path)
	if err != nil || skipped != 0 || set.Len() != 2 {
		t.Fatalf("readSnapshot: %v, %d skipped, %d routes", err, skipped, set.Len())
	}
	if r, ok := set.Get("b.test"); !ok || !slices.Equal(r.Backends, []string{"http://127.0.0.1:9001"}) {
		t.Fatalf("b.test: %v", r)
	}
}

// TestSnapshotDamageRefused: every truncation and every flipped byte of a
// snapshot is refused as a whole, with an error that says why.
func TestSnapshotDamageRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.snap")
	if err := writeSnapshot(path, SchemaHipache, testSet(t, snapRoutes...), time.Now()); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.snap")
	check := func(what string, data []byte) {
		t.Helper()
		if err := os.WriteFile(bad, data, 0o600); err != nil {
			t.Fatal(err)
		}
		set, _, err := readSnapshot(bad)
		if err == nil {
			t.Fatalf("%s: accepted (%d routes)", what, set.Len())
		}
		if !strings.Contains(err.Error(), bad) {
			t.Fatalf("%s: error %q does not name the file", what, err)
		}
	}
	for n := range len(good) {
		check("truncated to "+strconv.Itoa(n), good[:n])
	}
	for i := range good {
		d := slices.Clone(good)
		d[i] ^= 0x20
		check("byte "+strconv.Itoa(i)+" flipped", d)
	}
	d := slices.Clone(good)
	d = d[:len(d)-4]
	check("checksum cut", d)
	if _, _, err := decodeSnapshot(good[:len(good)-1]); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated file: error %v, want one about a damaged or truncated file", err)
	}
}

// TestSnapshotJSONVersion1 reads the JSON files written before the compact
// format, skipping routes that no longer validate.
func TestSnapshotJSONVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.json")
	data := `{"version":1,"schema":"hipache","saved":"2026-01-01T00:00:00Z","routes":[` +
		`{"name":"a.test","backends":["http://127.0.0.1:9001"]},{"name":"Bad..name","backends":["http://127.0.0.1:1"]}]}`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	set, skipped, err := readSnapshot(path)
	if err != nil || skipped != 1 || set.Len() != 1 || !set.Has("a.test") {
		t.Fatalf("readSnapshot: %v, %d skipped, %d routes", err, skipped, set.Len())
	}
}

// BenchmarkSnapshotRead1M: reading a 1,000,000-route snapshot (names on 50
// backend lists), as at a restart with Redis down.
func BenchmarkSnapshotRead1M(b *testing.B) {
	if testing.Short() {
		b.Skip("-short")
	}
	bld := balancer.NewRouteSetBuilder(1_000_000)
	for i := range 1_000_000 {
		r := balancer.RouteSpec{Name: "h" + strconv.Itoa(i) + ".load.test", Backends: []string{"http://10.0.0." + strconv.Itoa(i%50) + ":8080"}}
		if err := bld.Set(r); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(b.TempDir(), "routes.snap")
	if err := writeSnapshot(path, SchemaHipache, bld.Done(), time.Now()); err != nil {
		b.Fatal(err)
	}
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
	}
	b.ReportAllocs()
	for b.Loop() {
		set, _, err := readSnapshot(path)
		if err != nil || set.Len() != 1_000_000 {
			b.Fatalf("%v, %d routes", err, set.Len())
		}
	}
}

// FuzzSnapshot: any file is refused or read whole; what is read is valid
// and written again reads back the same.
func FuzzSnapshot(f *testing.F) {
	var buf strings.Builder
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.snap")
	if err := writeSnapshot(path, SchemaHipache, testSet(f, snapRoutes...), time.Unix(0, 0)); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte(`{"version":1,"routes":[{"name":"a.test","backends":["http://127.0.0.1:1"]}]}`))
	buf.WriteString(snapshotMagic)
	f.Add([]byte(buf.String()))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "s")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		set, _, err := readSnapshot(p)
		if err != nil {
			return
		}
		for r := range set.All() {
			if !validRoute(r.Name, r.Backends) {
				t.Fatalf("read invalid route %q %q", r.Name, r.Backends)
			}
		}
		again := filepath.Join(t.TempDir(), "again")
		if err := writeSnapshot(again, SchemaHipache, set, time.Now()); err != nil {
			t.Fatal(err)
		}
		set2, skipped, err := readSnapshot(again)
		if err != nil || skipped != 0 || set2.Digest() != set.Digest() || set2.Len() != set.Len() {
			t.Fatalf("written again: %v, %d skipped, %d of %d routes", err, skipped, set2.Len(), set.Len())
		}
	})
}
