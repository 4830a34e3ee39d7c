// Package testutil holds helpers shared by portier's tests: deterministic
// byte streams with checksums, slow readers and raw TCP backends on loopback.
package testutil

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SendPattern writes total bytes of a deterministic stream to w, adding to
// sent as it goes, and returns the stream's CRC-32C. The stream is made of
// 64 KiB blocks stamped with their index, so a lost, duplicated or reordered
// block changes the checksum.
func SendPattern(w io.Writer, total int64, sent *atomic.Int64) (uint32, error) {
	block := make([]byte, 64<<10)
	for i := range block {
		block[i] = byte(i*7 + i>>8)
	}
	var crc uint32
	var done int64
	for idx := uint64(0); done < total; idx++ {
		binary.BigEndian.PutUint64(block, idx)
		b := block
		if rem := total - done; rem < int64(len(b)) {
			b = b[:rem]
		}
		crc = crc32.Update(crc, castagnoli, b)
		n, err := w.Write(b)
		done += int64(n)
		sent.Add(int64(n))
		if err != nil {
			return crc, err
		}
	}
	return crc, nil
}

// SlowThenFast reads r at about rate bytes/s for slowFor, calling check after
// each slow read, then reads the rest at full speed until EOF. It returns the
// bytes read and their CRC-32C; got counts as it goes.
func SlowThenFast(r io.Reader, rate int, slowFor time.Duration, got *atomic.Int64, check func()) (int64, uint32, error) {
	var crc uint32
	var total int64
	buf := make([]byte, 64<<10)
	chunk := min(rate/20, len(buf))
	for end := time.Now().Add(slowFor); time.Now().Before(end); {
		n, err := io.ReadFull(r, buf[:chunk])
		crc = crc32.Update(crc, castagnoli, buf[:n])
		total += int64(n)
		got.Add(int64(n))
		if err != nil {
			return total, crc, err
		}
		check()
		time.Sleep(50 * time.Millisecond)
	}
	for {
		n, err := r.Read(buf)
		crc = crc32.Update(crc, castagnoli, buf[:n])
		total += int64(n)
		got.Add(int64(n))
		if err == io.EOF {
			return total, crc, nil
		}
		if err != nil {
			return total, crc, err
		}
	}
}

// SkipHead consumes an HTTP-style head (lines up to an empty line) from br.
func SkipHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			return nil
		}
	}
}

// RawBackend accepts TCP connections on a loopback port and runs serve on
// each in its own goroutine until the test ends.
func RawBackend(t testing.TB, serve func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String()
}
