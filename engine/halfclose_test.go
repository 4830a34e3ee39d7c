package engine

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/testutil"
)

func TestClientHalfCloseStillGetsWholeResponse(t *testing.T) {
	// The backend answers only after the request stream ended (EOF).
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := io.ReadAll(c)
		if err != nil {
			return
		}
		resp := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
		c.Write(req)
		c.Write(resp)
	})
	p := startProxy(t, []balancer.RouteSpec{{Name: "hc.test", Backends: []string{"http://" + be}}}, "", nil)

	req := "POST /upload HTTP/1.1\r\nHost: hc.test\r\nContent-Length: 5\r\n\r\nhello"
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	want := "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + req + strings.Repeat("0123456789abcdef", 1<<16)
	if string(got) != want {
		t.Fatalf("response: got %d bytes, want %d", len(got), len(want))
	}
}

func TestBackendHalfCloseStillGetsWholeRequest(t *testing.T) {
	received := make(chan int, 1)
	// The backend answers, shuts its write side, then reads the client's rest.
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		head := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				received <- -1
				return
			}
			head += len(line)
			if line == "\r\n" {
				break
			}
		}
		c.Write(bytes.Repeat([]byte("r"), 256<<10))
		c.CloseWrite()
		rest, _ := io.ReadAll(br)
		received <- head + len(rest)
	})
	p := startProxy(t, []balancer.RouteSpec{{Name: "hc.test", Backends: []string{"http://" + be}}}, "", nil)

	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	head := "GET /stream HTTP/1.1\r\nHost: hc.test\r\n\r\n"
	io.WriteString(c, head)
	got, err := io.ReadAll(c) // ends at the backend's FIN, passed through
	if err != nil || len(got) != 256<<10 {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, 256<<10)
	}
	more := bytes.Repeat([]byte("u"), 512<<10)
	if _, err := c.Write(more); err != nil {
		t.Fatalf("write after the backend's FIN: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case n := <-received:
		if n != len(head)+len(more) {
			t.Fatalf("backend received %d bytes, want %d", n, len(head)+len(more))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("backend never saw the client's EOF")
	}
}
