package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	out, code := runPortier(t, "-version")
	if code != 0 || !strings.HasPrefix(out, "portier ") {
		t.Fatalf("-version: exit %d, %q", code, out)
	}
}

func TestCheck(t *testing.T) {
	good := `listeners:
  - name: web
    address: 127.0.0.1:8080
    protocol: http
routes:
  app1.test:
    - http://127.0.0.1:9001
`
	tests := []struct {
		name, yaml string
		code       int
		want       []string
	}{
		{"good", good, 0, []string{"ok"}},
		{"bad backend scheme", strings.Replace(good, "http://127.0.0.1:9001", "htp://127.0.0.1:9001", 1), 1,
			[]string{"bad backend scheme.yaml:7:", `"htp"`}},
		{"unknown key", good + "bogus: 1\n", 1, []string{"unknown key.yaml:8:", "bogus"}},
		{"bad protocol", strings.Replace(good, "protocol: http", "protocol: udp", 1), 1,
			[]string{"bad protocol.yaml:4:", "udp"}},
		{"not yaml", "listeners: [\n", 1, []string{"not yaml.yaml"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.name+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			out, code := runPortier(t, "-check", "-config", path)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
		})
	}
	if _, code := runPortier(t, "-check", "-config", "/nonexistent/portier.yaml"); code != 1 {
		t.Errorf("missing file: exit %d, want 1", code)
	}
}
