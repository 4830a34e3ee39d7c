package peers

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func params(t *testing.T) Params {
	mod := "/usr/lib/nginx/modules/ngx_stream_module.so"
	if _, err := os.Stat(mod); err != nil {
		mod = ""
	}
	return Params{
		Dir: t.TempDir(), Host: "bench.test",
		HTTPAddr: "127.0.0.1:18900", TLSAddr: "127.0.0.1:18901",
		BackendHTTP: "127.0.0.1:18001", BackendTLS: "127.0.0.1:18002",
		NginxStreamModule: mod,
	}
}

func TestRenderHasRoutes(t *testing.T) {
	p := params(t)
	tests := []struct {
		name string
		want []string
	}{
		{"floor.conf", []string{"127.0.0.1:18900 127.0.0.1:18001", "127.0.0.1:18901 127.0.0.1:18002"}},
		{"haproxy.cfg", []string{"nbthread 1", "bind 127.0.0.1:18900", "bind 127.0.0.1:18901", "hdr(host) -i bench.test", "req_ssl_sni -i bench.test", "server s1 127.0.0.1:18001", "server s1 127.0.0.1:18002"}},
		{"nginx.conf", []string{"worker_processes 1;", "daemon off;", "listen 127.0.0.1:18900;", "server_name bench.test;", "ssl_preread on;", "bench.test be_tls;", "server 127.0.0.1:18001;", "server 127.0.0.1:18002;"}},
		{"sniproxy.conf", []string{"listener 127.0.0.1:18900", "protocol http", "listener 127.0.0.1:18901", "protocol tls", `^bench\.test$ 127.0.0.1:18001`, `^bench\.test$ 127.0.0.1:18002`}},
		{"portier.yaml", []string{"address: 127.0.0.1:18900, protocol: http", "address: 127.0.0.1:18901, protocol: tls", "bench.test:", "- http://127.0.0.1:18001", "- tls://127.0.0.1:18002", "loops: 1"}},
	}
	if len(tests) != len(Names()) {
		t.Fatalf("test covers %d templates, Names has %d", len(tests), len(Names()))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Render(tt.name, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("%s lacks %q:\n%s", tt.name, w, b)
				}
			}
		})
	}
	if _, err := Render("nope.conf", p); err == nil {
		t.Error("no error for an unknown template")
	}
}

// TestPeersAcceptConfig asks the installed HAProxy and nginx to validate the
// rendered configuration, so a template typo fails here, not mid-benchmark.
func TestPeersAcceptConfig(t *testing.T) {
	p := params(t)
	tests := []struct {
		bin, conf string
		argv      func(path string) []string
	}{
		{"haproxy", "haproxy.cfg", func(path string) []string { return []string{"-c", "-f", path} }},
		{"nginx", "nginx.conf", func(path string) []string { return []string{"-t", "-p", p.Dir, "-e", "stderr", "-c", path} }},
	}
	for _, tt := range tests {
		t.Run(tt.bin, func(t *testing.T) {
			bin, err := exec.LookPath(tt.bin)
			if err != nil {
				t.Skipf("%s not installed", tt.bin)
			}
			if tt.bin == "nginx" && os.Geteuid() != 0 {
				t.Skip("the nginx config runs workers as root; nginx -t needs root")
			}
			path, err := Write(tt.conf, p)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, tt.argv(path)...).CombinedOutput(); err != nil {
				t.Errorf("%s rejects %s: %v\n%s", tt.bin, tt.conf, err, out)
			}
		})
	}
}
