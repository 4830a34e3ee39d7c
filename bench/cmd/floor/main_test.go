package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := filepath.Join(t.TempDir(), "floor.conf")
	os.WriteFile(conf, []byte("# test\n"+addr+" "+be.Listener.Addr().String()+"\n"), 0o644)
	go func() { t.Error(run(conf)) }() // runs until the test binary exits
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 50 {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
