package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portier/portier/config"
	"github.com/portier/portier/internal/redistest"
)

func TestRouteCmd(t *testing.T) {
	tests := []struct {
		schema string
		steps  []struct {
			args       []string
			code       int
			out, inErr string
		}
	}{
		{
			schema: "hipache",
			steps: []struct {
				args       []string
				code       int
				out, inErr string
			}{
				{[]string{"ls"}, 0, "", ""},
				{[]string{"add", "App.Test", "http://127.0.0.1:9001"}, 0, "", ""},
				{[]string{"add", "app.test", "tls://127.0.0.1:9443?weight=2"}, 0, "", ""},
				{[]string{"add", "*", "http://127.0.0.1:9009"}, 0, "", ""},
				{[]string{"add", "b.test", "htp://x"}, 1, "", `unknown scheme "htp"`},
				{[]string{"ls"}, 0, "* http://127.0.0.1:9009\napp.test http://127.0.0.1:9001 tls://127.0.0.1:9443?weight=2\n", ""},
				{[]string{"rm", "app.test", "http://127.0.0.1:9001"}, 0, "", ""},
				{[]string{"rm", "app.test", "http://127.0.0.1:9001"}, 3, "", "not found"},
				{[]string{"rm", "*"}, 0, "", ""},
				{[]string{"ls"}, 0, "app.test tls://127.0.0.1:9443?weight=2\n", ""},
				{[]string{}, 2, "", "missing command"},
				{[]string{"mv", "a", "b"}, 2, "", `unknown command "mv"`},
				{[]string{"add", "a.test"}, 2, "", "wrong number of arguments"},
				{[]string{"ls", "x"}, 2, "", "wrong number of arguments"},
				{[]string{"rm"}, 2, "", "wrong number of arguments"},
			},
		},
		{
			schema: "sets",
			steps: []struct {
				args       []string
				code       int
				out, inErr string
			}{
				{[]string{"add", "s.test", "127.0.0.1:9001"}, 0, "", ""},
				{[]string{"add", "*", "tls://127.0.0.1:9443"}, 0, "", ""},
				{[]string{"ls"}, 0, "* tls://127.0.0.1:9443\ns.test http://127.0.0.1:9001 tls://127.0.0.1:9001\n", ""},
				{[]string{"rm", "s.test"}, 0, "", ""},
				{[]string{"ls"}, 0, "* tls://127.0.0.1:9443\n", ""},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.schema, func(t *testing.T) {
			srv := redistest.Start(t)
			r := &config.Redis{URL: srv.URL(), Schema: tc.schema}
			for _, st := range tc.steps {
				var out, errb bytes.Buffer
				code := routeCmd(context.Background(), r, st.args, &out, &errb)
				if code != st.code || out.String() != st.out || (st.inErr == "") != (errb.Len() == 0) || !strings.Contains(errb.String(), st.inErr) {
					t.Fatalf("route %q = %d, stdout %q, stderr %q; want %d, %q, stderr with %q",
						st.args, code, out.String(), errb.String(), st.code, st.out, st.inErr)
				}
			}
		})
	}
}

func TestRouteCmdProblemsAndPassword(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "pw1")
	r := &config.Redis{URL: srv.URL()}
	var out, errb bytes.Buffer
	if code := routeCmd(context.Background(), r, []string{"ls"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "NOAUTH") {
		t.Fatalf("without password: code %d, stderr %q", code, errb.String())
	}
	t.Setenv("PORTIER_REDIS_PASSWORD", "pw1")
	srv.Cli("-a", "pw1", "--no-auth-warning", "RPUSH", "frontend:bad.test", "id", "ftp://x")
	srv.Cli("-a", "pw1", "--no-auth-warning", "RPUSH", "frontend:ok.test", "id", "http://127.0.0.1:1")
	out.Reset()
	errb.Reset()
	code := routeCmd(context.Background(), r, []string{"ls"}, &out, &errb)
	if code != 0 || out.String() != "ok.test http://127.0.0.1:1\n" || !strings.Contains(errb.String(), "skipped frontend:bad.test: no valid backend") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

func TestRunRouteConfig(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	head := "listeners: [{name: web, address: 127.0.0.1:80, protocol: http}]\n"
	withRedis := filepath.Join(dir, "redis.yaml")
	without := filepath.Join(dir, "plain.yaml")
	if err := os.WriteFile(withRedis, []byte(head+"redis: {url: '"+srv.URL()+"'}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(without, []byte(head+"routes: {a.test: [http://127.0.0.1:1]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{[]string{"-config", withRedis, "add", "a.test", "http://127.0.0.1:9001"}, 0, "", ""},
		{[]string{"-config", withRedis, "ls"}, 0, "a.test http://127.0.0.1:9001\n", ""},
		{[]string{"-config", without, "ls"}, 1, "", "no redis section in " + without},
		{[]string{"-config", filepath.Join(dir, "missing.yaml"), "ls"}, 1, "", "missing.yaml"},
		{[]string{"-bogus"}, 2, "", "flag provided but not defined"},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		code := runRoute(tc.args, &out, &errb)
		if code != tc.code || out.String() != tc.out || (tc.inErr == "") != (errb.Len() == 0) || !strings.Contains(errb.String(), tc.inErr) {
			t.Errorf("runRoute %q = %d, stdout %q, stderr %q; want %d, %q, stderr with %q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.inErr)
		}
	}
}
