package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/portier/portier/internal/testutil"
)

// TestFloorForwards: requests through the floor reach the backend and come
// back whole, on a kept-alive connection and with a large body each way.
func TestFloorForwards(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Write(bytes.Repeat([]byte("x"), 4<<20))
		fmt.Fprintf(w, "|%d", len(body))
	}))
	defer be.Close()
	addr := startFloor(t, be.Listener.Addr().String())
	client := &http.Client{Timeout: 20 * time.Second}
	for i := 0; i < 3; i++ {
		resp, err := client.Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(make([]byte, 3<<20)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(got) != 4<<20+len("|3145728") || string(got[4<<20:]) != "|3145728" {
			t.Fatalf("request %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// TestFloorPassesCloseWithAnswer: a backend that writes its answer and closes
// at once (an HTTP/1.0 server, ab's case) raises one edge carrying both the
// bytes and the FIN; the floor must read on to the EOF and close the client,
// not wait for an edge that never comes.
func TestFloorPassesCloseWithAnswer(t *testing.T) {
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		buf := make([]byte, 512)
		c.Read(buf) // the request
		c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	}) // and closes at once
	addr := startFloor(t, be)
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		got, err := io.ReadAll(c) // to the EOF the floor passes on
		c.Close()
		if err != nil || !bytes.HasSuffix(got, []byte("\r\n\r\nok")) {
			t.Fatalf("connection %d: %q, %v (the backend's close was not passed on)", i, got, err)
		}
	}
}

// TestMain runs the floor itself when a test started this binary as one.
func TestMain(m *testing.M) {
	if conf := os.Getenv("FLOOR_TEST_CONFIG"); conf != "" {
		fmt.Fprintln(os.Stderr, run(conf))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// startFloor runs the floor on a free loopback port forwarding to backend, in
// a process of its own as in the bench (its loop blocks in a raw epoll_pwait,
// which would hold one of this process's Ps), and returns its address once it
// accepts.
func startFloor(t *testing.T, backend string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := filepath.Join(t.TempDir(), "floor.conf")
	os.WriteFile(conf, []byte("# test\n"+addr+" "+backend+"\n"), 0o644)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "FLOOR_TEST_CONFIG="+conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if i == 50 {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
