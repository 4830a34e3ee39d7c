package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/testutil"
)

// TestSplicedAnswerBodies: on an http listener, answer bodies past a large
// read are spliced while the framer still finds where each answer ends. A
// backend answers pipelined requests back to back on one kept-alive
// connection (so each head follows a spliced body in the same stream), with
// Content-Length and chunked bodies of every size; every body arrives whole
// and in order, and the last answer's head, read right behind a spliced
// body, is rewritten to say the close its request asked for. With a client
// that pauses, the socket to it fills and spliced bytes wait in user space
// (the flow control of a short write). A unix-socket backend is spliced from
// as well.
func TestSplicedAnswerBodies(t *testing.T) {
	for _, tc := range []struct {
		unix  bool
		pause time.Duration
	}{{false, 0}, {false, 300 * time.Millisecond}, {true, 0}} {
		t.Run(fmt.Sprintf("unix=%v,pause=%v", tc.unix, tc.pause), func(t *testing.T) { testSplicedAnswerBodies(t, tc.unix, tc.pause) })
	}
}

func testSplicedAnswerBodies(t *testing.T, unixBackend bool, pause time.Duration) {
	answers := []testBodyShape{
		{sizes: []int{3<<20 + 1}},
		{chunked: true, sizes: []int{200 << 10, 5, 300 << 10, 70000, 1}},
		{sizes: []int{10}},
		{chunked: true, sizes: []int{3}},
		{sizes: []int{1 << 20}},
		{chunked: true, sizes: []int{64 << 10, 64 << 10, 1 << 20}},
		{sizes: []int{9 << 10}},
		{sizes: []int{2<<20 + 3}},
	}
	backendDone := make(chan error, 1)
	serve := func(c net.Conn) {
		br := bufio.NewReader(c)
		for i, a := range answers {
			if err := testutil.SkipHead(br); err != nil {
				backendDone <- fmt.Errorf("request %d: %v", i, err)
				return
			}
			var out bytes.Buffer
			a.write(&out, "HTTP/1.1 200 OK\r\n", i)
			if _, err := c.Write(out.Bytes()); err != nil {
				backendDone <- fmt.Errorf("answer %d: %v", i, err)
				return
			}
		}
		backendDone <- nil
	}
	var backend string
	if unixBackend {
		ln, path := unixListener(t, "big.sock")
		go func() {
			if c, err := ln.Accept(); err == nil {
				defer c.Close()
				serve(c)
			}
		}()
		backend = "http+unix://" + path
	} else {
		backend = "http://" + testutil.RawBackend(t, func(c *net.TCPConn) { serve(c) })
	}
	p := startProxy(t, []balancer.RouteSpec{{Name: "big.test", Backends: []string{backend}}}, "", func(o *Options) { o.Loops = 1 })
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var reqs strings.Builder
	for i := range answers {
		close := ""
		if i == len(answers)-1 {
			close = "Connection: close\r\n"
		}
		fmt.Fprintf(&reqs, "GET /%d HTTP/1.1\r\nHost: big.test\r\n%s\r\n", i, close)
	}
	if _, err := io.WriteString(c, reqs.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i, a := range answers {
		if i < 2 {
			time.Sleep(pause)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("answer %d body: %v", i, err)
		}
		if want := testBody(i, a.total()); !bytes.Equal(got, want) {
			t.Fatalf("answer %d: %d body bytes, want %d; equal: false", i, len(got), len(want))
		}
		if last := i == len(answers)-1; resp.Close != last {
			t.Errorf("answer %d says close: %v, want %v", i, resp.Close, last)
		}
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after the last answer: %d bytes, %v; want EOF", n, err)
	}
	if err := <-backendDone; err != nil {
		t.Fatal(err)
	}
	wantSpliced(t, p, totalOf(answers)/2)
}

// testBodyShape is how a test message carries its body: no sizes, none; one
// size, a Content-Length body; chunked, chunks of the sizes.
type testBodyShape struct {
	chunked bool
	sizes   []int
}

// totalOf is the body bytes of all the shapes.
func totalOf(shapes []testBodyShape) (n int64) {
	for _, b := range shapes {
		n += int64(b.total())
	}
	return n
}

func (b testBodyShape) total() (n int) {
	for _, s := range b.sizes {
		n += s
	}
	return n
}

// write appends message i: first (its start line and fields, each ending
// in CRLF), the framing field, the empty line and testBody(i) so framed.
func (b testBodyShape) write(out *bytes.Buffer, first string, i int) {
	body := testBody(i, b.total())
	out.WriteString(first)
	switch {
	case b.chunked:
		out.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for _, n := range b.sizes {
			fmt.Fprintf(out, "%x\r\n", n)
			out.Write(body[:n])
			out.WriteString("\r\n")
			body = body[n:]
		}
		out.WriteString("0\r\n\r\n")
	case len(b.sizes) == 1:
		fmt.Fprintf(out, "Content-Length: %d\r\n\r\n", len(body))
		out.Write(body)
	default:
		out.WriteString("\r\n")
	}
}

// wantSpliced fails unless p spliced at least min bytes: without that the
// bodies went through user space and the test proved nothing about splicing.
func wantSpliced(t *testing.T, p *proxy, min int64) {
	t.Helper()
	got := p.e.Stats().Spliced.Load()
	t.Logf("%d bytes spliced", got)
	if got < min {
		t.Errorf("%d bytes spliced, want at least %d", got, min)
	}
}

// testBody is the body of message i: n bytes of a pattern that differs per message.
func testBody(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(j*7 + i)
	}
	return b
}

// TestSplicedRequestBodies: the same for uploads. Pipelined requests with
// Content-Length and chunked bodies of every size reach the backend whole,
// each head read right behind a spliced body, and the answers come back.
func TestSplicedRequestBodies(t *testing.T) {
	bodies := []testBodyShape{
		{sizes: []int{3<<20 + 1}},
		{chunked: true, sizes: []int{200 << 10, 5, 300 << 10, 70000, 1}},
		{},
		{sizes: []int{10}},
		{chunked: true, sizes: []int{64 << 10, 1 << 20}},
		{sizes: []int{2<<20 + 3}},
	}
	backendDone := make(chan error, 1)
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		for i, shape := range bodies {
			req, err := http.ReadRequest(br)
			if err != nil {
				backendDone <- fmt.Errorf("request %d: %v", i, err)
				return
			}
			got, err := io.ReadAll(req.Body)
			if err != nil {
				backendDone <- fmt.Errorf("request %d body: %v", i, err)
				return
			}
			if want := testBody(i, shape.total()); !bytes.Equal(got, want) {
				backendDone <- fmt.Errorf("request %d: %d body bytes, want %d; equal: false", i, len(got), len(want))
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n"); err != nil {
				backendDone <- err
				return
			}
		}
		backendDone <- nil
	})
	p := startProxy(t, []balancer.RouteSpec{{Name: "up.test", Backends: []string{"http://" + be}}}, "", func(o *Options) { o.Loops = 1 })
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var reqs bytes.Buffer
	for i, shape := range bodies {
		method := "PUT"
		if shape.total() == 0 {
			method = "GET"
		}
		shape.write(&reqs, fmt.Sprintf("%s /%d HTTP/1.1\r\nHost: up.test\r\n", method, i), i)
	}
	wrote := make(chan error, 1)
	go func() { _, err := c.Write(reqs.Bytes()); wrote <- err }()
	br := bufio.NewReader(c)
	for i := range bodies {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("answer %d: %s", i, resp.Status)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if err := <-backendDone; err != nil {
		t.Fatal(err)
	}
	wantSpliced(t, p, totalOf(bodies)/2)
}
