package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestDial(t *testing.T) {
	img := testImage(imgSize)
	ts := startServer(t, &Server{Exports: imageExports(img)})
	legacy := startLegacyServer(t, map[string]int64{"deb12": wireSize})
	cases := []struct {
		name, addr, export string
		wantSize           int64
		wantBlock          uint32
		wantErr            string // substring; "" means success
	}{
		{"opt_go", ts.addr, "deb12", wireSize, preferredBlockSize, ""},
		{"opt_go small export", ts.addr, "alpine", 4096, preferredBlockSize, ""},
		{"opt_go unknown export", ts.addr, "nosuch@1234", 0, 0, `unknown export "nosuch@1234"`},
		{"export_name fallback", legacy.addr, "deb12", wireSize, 0, ""},
		{"export_name unknown export", legacy.addr, "nosuch", 0, 0, `unknown export "nosuch"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
			defer cancel()
			c, err := Dial(ctx, tc.addr, tc.export)
			if tc.wantErr != "" {
				if err == nil {
					c.Close()
					t.Fatalf("Dial succeeded, want error containing %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrUnknownExport) {
					t.Fatalf("error %q: want ErrUnknownExport containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Size != tc.wantSize || c.BlockSize != tc.wantBlock || !c.ReadOnly() || c.Flags&FlagCanMultiConn == 0 {
				t.Fatalf("got size %d block %d flags %#x, want size %d block %d, read-only and multi-conn",
					c.Size, c.BlockSize, c.Flags, tc.wantSize, tc.wantBlock)
			}
			if tc.export == "deb12" && tc.wantBlock != 0 && c.Description != "Debian 12 root" {
				t.Fatalf("Description %q", c.Description)
			}
			if c.Export != tc.export || c.Addr != tc.addr {
				t.Fatalf("Export %q Addr %q", c.Export, c.Addr)
			}
			if c.Conn.RemoteAddr().String() != tc.addr {
				t.Fatalf("connected to %s", c.Conn.RemoteAddr())
			}
		})
	}
}

// TestDialThenRead checks that Dial leaves the connection exactly at the
// start of transmission, as the kernel will find it: a raw read request
// gets the image's bytes back.
func TestDialThenRead(t *testing.T) {
	img := testImage(imgSize)
	ts := startServer(t, &Server{Exports: imageExports(img)})
	c, err := Dial(context.Background(), ts.addr, "deb12")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.Conn.SetDeadline(time.Now().Add(testDeadline))
	req := binary.BigEndian.AppendUint32(nil, magicRequest)
	req = binary.BigEndian.AppendUint16(req, 0)
	req = binary.BigEndian.AppendUint16(req, cmdRead)
	req = binary.BigEndian.AppendUint64(req, 7)
	req = binary.BigEndian.AppendUint64(req, 8192)
	req = binary.BigEndian.AppendUint32(req, 4096)
	if _, err := c.Conn.Write(req); err != nil {
		t.Fatal(err)
	}
	rep := make([]byte, 16+4096)
	if _, err := io.ReadFull(c.Conn, rep); err != nil {
		t.Fatal(err)
	}
	if m, errno, h := binary.BigEndian.Uint32(rep), binary.BigEndian.Uint32(rep[4:]), binary.BigEndian.Uint64(rep[8:]); m != magicSimpleReply || errno != 0 || h != 7 {
		t.Fatalf("reply magic %#x errno %d handle %d", m, errno, h)
	}
	if !bytes.Equal(rep[16:], img[8192:8192+4096]) {
		t.Fatal("read returned the wrong bytes")
	}
}

// TestDialBounded: a server that accepts and says nothing, and an address
// that is not an NBD server, fail within the context's deadline.
func TestDialBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn // silent until the listener closes
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Dial(ctx, ln.Addr().String(), "deb12")
	if err == nil || time.Since(start) > testDeadline {
		t.Fatalf("silent server: err %v after %v", err, time.Since(start))
	}
	t.Logf("silent server: %v", err)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	if _, err := Dial(context.Background(), addr, "deb12"); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("closed port: err %v, want one naming %s", err, addr)
	}
}

// startLegacyServer answers like a fixed newstyle server from before
// NBD_OPT_GO: GO is unsupported, EXPORT_NAME works, and an unknown name
// closes the connection.
func startLegacyServer(t *testing.T, sizes map[string]int64) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				done <- nil
				return
			}
			go legacyConn(c, sizes)
		}
	}()
	ts := &testServer{addr: ln.Addr().String(), cancel: func() { ln.Close() }, done: done}
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

func legacyConn(c net.Conn, sizes map[string]int64) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testDeadline))
	g := binary.BigEndian.AppendUint64(nil, magicNBD)
	g = binary.BigEndian.AppendUint64(g, magicIHaveOpt)
	g = binary.BigEndian.AppendUint16(g, flagFixedNewstyle) // no NO_ZEROES: the 124 zero bytes follow
	if _, err := c.Write(g); err != nil {
		return
	}
	var cf [4]byte
	if _, err := io.ReadFull(c, cf[:]); err != nil {
		return
	}
	for range 10 {
		var h [16]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		opt := binary.BigEndian.Uint32(h[8:])
		data := make([]byte, binary.BigEndian.Uint32(h[12:]))
		if _, err := io.ReadFull(c, data); err != nil {
			return
		}
		if opt != optExportName {
			r := binary.BigEndian.AppendUint64(nil, magicOptReply)
			r = binary.BigEndian.AppendUint32(r, opt)
			r = binary.BigEndian.AppendUint32(r, repErrUnsup)
			r = binary.BigEndian.AppendUint32(r, 0)
			c.Write(r)
			continue
		}
		size, ok := sizes[string(data)]
		if !ok {
			return
		}
		r := binary.BigEndian.AppendUint64(nil, uint64(size))
		r = binary.BigEndian.AppendUint16(r, transmissionFlags)
		c.Write(append(r, make([]byte, 124)...))
		return
	}
}
