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

// TestClientHalfCloseStillGetsWholeResponse: a client that shuts its write
// side after a complete request gets the whole answer, and the backend sees
// no FIN while it owes that answer (a Go backend would cancel the request).
func TestClientHalfCloseStillGetsWholeResponse(t *testing.T) {
	early := make(chan bool, 1)
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		var req []byte // the head as it came, then the 5 body bytes
		for !bytes.HasSuffix(req, []byte("\r\n\r\n")) {
			line, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			req = append(req, line...)
		}
		reqBody := make([]byte, 5)
		if _, err := io.ReadFull(br, reqBody); err != nil {
			return
		}
		// Had portier passed the client's FIN on, it would be here by now.
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := br.ReadByte()
		early <- err == io.EOF
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		req = append(req, reqBody...)
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
	if <-early {
		t.Fatal("the backend got the client's FIN before it answered")
	}
	// The backend echoes the request as it got it: with forwarding headers.
	head, body, _ := strings.Cut(req, "\r\n\r\n")
	wantHead := "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + head + "\r\nX-Forwarded-For: 127.0.0.1\r\n"
	wantTail := "\r\n\r\n" + body + strings.Repeat("0123456789abcdef", 1<<16)
	if !strings.HasPrefix(string(got), wantHead) || !strings.HasSuffix(string(got), wantTail) {
		t.Fatalf("response: got %d bytes %q..., want %q... ending in %d bytes", len(got), got[:min(len(got), 300)], wantHead, len(wantTail))
	}
}

func TestBackendHalfCloseStillGetsWholeRequest(t *testing.T) {
	received := make(chan int, 1)
	// The backend answers, shuts its write side, then reads the client's rest.
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				received <- -1
				return
			}
			if line == "\r\n" {
				break
			}
		}
		c.Write(bytes.Repeat([]byte("r"), 256<<10))
		c.CloseWrite()
		rest, _ := io.ReadAll(br)
		received <- len(rest)
	})
	p := startProxy(t, []balancer.RouteSpec{{Name: "hc.test", Backends: []string{"http://" + be}}}, "", nil)

	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	more := bytes.Repeat([]byte("u"), 512<<10)
	io.WriteString(c, "POST /stream HTTP/1.1\r\nHost: hc.test\r\nContent-Length: 524288\r\n\r\n")
	got, err := io.ReadAll(c) // ends at the backend's FIN, passed through
	if err != nil || len(got) != 256<<10 {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, 256<<10)
	}
	if _, err := c.Write(more); err != nil {
		t.Fatalf("write after the backend's FIN: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case n := <-received:
		if n != len(more) {
			t.Fatalf("backend received %d body bytes, want %d", n, len(more))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("backend never saw the client's EOF")
	}
}
