package nbd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"
)

// A minimal NBD client for the tests: fixed newstyle, simple replies, every
// exchange bounded by a deadline so a server bug fails a test instead of
// hanging it.

const testDeadline = 5 * time.Second

type testClient struct {
	t    failer
	c    net.Conn
	r    *bufio.Reader
	size uint64
	tfl  uint16
	next uint64 // handle
}

// failer is the part of testing.T the client needs, so that it can also
// run on goroutines other than the test's (see panicFailer).
type failer interface {
	Helper()
	Fatalf(format string, args ...any)
}

// panicFailer fails by panicking; the goroutine's recover turns that into
// an error for the test goroutine.
type panicFailer struct{}

func (panicFailer) Helper() {}
func (panicFailer) Fatalf(format string, args ...any) {
	panic(fmt.Errorf(format, args...))
}

// dialClient connects and completes the greeting with the given client
// flags; the connection is closed when the test ends.
func dialClient(t *testing.T, addr string, flags uint32) *testClient {
	t.Helper()
	tc := dial(t, addr, flags)
	t.Cleanup(func() { tc.c.Close() })
	return tc
}

func dial(t failer, addr string, flags uint32) *testClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testDeadline)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(testDeadline))
	tc := &testClient{t: t, c: c, r: bufio.NewReader(c)}
	var g [18]byte
	if _, err := io.ReadFull(tc.r, g[:]); err != nil {
		t.Fatalf("read greeting: %v", err)
	}
	if m := binary.BigEndian.Uint64(g[0:]); m != magicNBD {
		t.Fatalf("greeting magic %#x", m)
	}
	if m := binary.BigEndian.Uint64(g[8:]); m != magicIHaveOpt {
		t.Fatalf("greeting IHAVEOPT %#x", m)
	}
	if f := binary.BigEndian.Uint16(g[16:]); f != flagFixedNewstyle|flagNoZeroes {
		t.Fatalf("handshake flags %#x", f)
	}
	tc.write(binary.BigEndian.AppendUint32(nil, flags))
	return tc
}

func (tc *testClient) write(b []byte) {
	tc.t.Helper()
	_ = tc.c.SetWriteDeadline(time.Now().Add(testDeadline))
	if _, err := tc.c.Write(b); err != nil {
		tc.t.Fatalf("write: %v", err)
	}
}

func (tc *testClient) sendOption(opt uint32, data []byte) {
	tc.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	tc.write(append(b, data...))
}

type optReply struct {
	opt, typ uint32
	data     []byte
}

func (tc *testClient) readOptReply() (optReply, error) {
	var h [20]byte
	if _, err := io.ReadFull(tc.r, h[:]); err != nil {
		return optReply{}, err
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != magicOptReply {
		return optReply{}, fmt.Errorf("option reply magic %#x", m)
	}
	r := optReply{opt: binary.BigEndian.Uint32(h[8:]), typ: binary.BigEndian.Uint32(h[12:])}
	r.data = make([]byte, binary.BigEndian.Uint32(h[16:]))
	_, err := io.ReadFull(tc.r, r.data)
	return r, err
}

// replies reads option replies up to and including the final one (an ACK
// or an error) and returns them all.
func (tc *testClient) replies(opt uint32) []optReply {
	tc.t.Helper()
	var out []optReply
	for range 100 {
		r, err := tc.readOptReply()
		if err != nil {
			tc.t.Fatalf("option %d: read reply: %v", opt, err)
		}
		if r.opt != opt {
			tc.t.Fatalf("reply for option %d, want %d", r.opt, opt)
		}
		out = append(out, r)
		if r.typ == repAck || r.typ&(1<<31) != 0 {
			return out
		}
	}
	tc.t.Fatalf("option %d: no final reply in 100", opt)
	return nil
}

func infoRequest(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// goExport sends NBD_OPT_GO and returns the final reply type; on success
// it records the export's size and flags and clears the deadline.
func (tc *testClient) goExport(name string, infos ...uint16) (uint32, []optReply) {
	tc.t.Helper()
	tc.sendOption(optGo, infoRequest(name, infos...))
	rs := tc.replies(optGo)
	last := rs[len(rs)-1]
	if last.typ != repAck {
		return last.typ, rs
	}
	for _, r := range rs {
		if r.typ == repInfo && len(r.data) == 12 && binary.BigEndian.Uint16(r.data) == infoExport {
			tc.size = binary.BigEndian.Uint64(r.data[2:])
			tc.tfl = binary.BigEndian.Uint16(r.data[10:])
			return repAck, rs
		}
	}
	tc.t.Fatalf("NBD_OPT_GO acked without NBD_INFO_EXPORT: %+v", rs)
	return 0, nil
}

// exportName enters transmission the old way.
func (tc *testClient) exportName(name string, noZeroes bool) {
	tc.t.Helper()
	tc.sendOption(optExportName, []byte(name))
	n := 10
	if !noZeroes {
		n += 124
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(tc.r, b); err != nil {
		tc.t.Fatalf("NBD_OPT_EXPORT_NAME %q: %v", name, err)
	}
	tc.size = binary.BigEndian.Uint64(b)
	tc.tfl = binary.BigEndian.Uint16(b[8:])
	if !bytes.Equal(b[10:], make([]byte, n-10)) {
		tc.t.Fatalf("reserved bytes not zero")
	}
}

func (tc *testClient) sendRequest(typ uint16, off uint64, length uint32, payload []byte) uint64 {
	tc.t.Helper()
	tc.next++
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, tc.next)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	tc.write(append(b, payload...))
	return tc.next
}

// simple reads a simple reply to handle, with dataLen bytes of data if it
// is not an error.
func (tc *testClient) simple(handle uint64, dataLen int) (uint32, []byte, error) {
	_ = tc.c.SetDeadline(time.Now().Add(testDeadline))
	var h [16]byte
	if _, err := io.ReadFull(tc.r, h[:]); err != nil {
		return 0, nil, err
	}
	if m := binary.BigEndian.Uint32(h[0:]); m != magicSimpleReply {
		return 0, nil, fmt.Errorf("reply magic %#x", m)
	}
	if got := binary.BigEndian.Uint64(h[8:]); got != handle {
		return 0, nil, fmt.Errorf("reply handle %d, want %d", got, handle)
	}
	errno := binary.BigEndian.Uint32(h[4:])
	if errno != 0 {
		return errno, nil, nil
	}
	data := make([]byte, dataLen)
	_, err := io.ReadFull(tc.r, data)
	return 0, data, err
}

// cmd sends one request and waits for its reply.
func (tc *testClient) cmd(typ uint16, off uint64, length uint32, payload []byte) (uint32, []byte) {
	tc.t.Helper()
	h := tc.sendRequest(typ, off, length, payload)
	n := 0
	if typ == cmdRead {
		n = int(length)
	}
	errno, data, err := tc.simple(h, n)
	if err != nil {
		tc.t.Fatalf("command %d at %d+%d: %v", typ, off, length, err)
	}
	return errno, data
}

// expectClosed waits (bounded) for the server to close the connection.
func (tc *testClient) expectClosed() {
	tc.t.Helper()
	_ = tc.c.SetReadDeadline(time.Now().Add(testDeadline))
	_, err := io.Copy(io.Discard, tc.r)
	// A reset is a close too: the server closed with our bytes unread.
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		tc.t.Fatalf("connection not closed by server: %v", err)
	}
}

// --- test server ---

type testServer struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// startServer runs s on a random loopback port until the test ends.
func startServer(t *testing.T, s *Server) *testServer {
	t.Helper()
	if s.Log == nil {
		s.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop cancels Serve and waits, bounded, for it to return nil.
func (ts *testServer) stop(t *testing.T) {
	t.Helper()
	ts.cancel()
	select {
	case err, ok := <-ts.done:
		if ok && err != nil {
			t.Errorf("Serve returned %v", err)
		}
		if ok {
			close(ts.done)
		}
	case <-time.After(testDeadline):
		t.Fatalf("Serve did not return within %v of cancel", testDeadline)
	}
}

// testImage is size deterministic pseudo-random bytes.
func testImage(size int) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func imageExports(img []byte) ExportMap {
	return ExportMap{
		"deb12":  {Size: int64(len(img)), ReaderAt: bytes.NewReader(img), Description: "Debian 12 root"},
		"alpine": {Size: 4096, ReaderAt: bytes.NewReader(make([]byte, 4096))},
	}
}

var errBroken = errors.New("disk on fire")

// brokenReader fails every read that touches [from, to).
type brokenReader struct {
	img      []byte
	from, to int64
}

func (b brokenReader) ReadAt(p []byte, off int64) (int, error) {
	if off < b.to && off+int64(len(p)) > b.from {
		return 0, errBroken
	}
	return bytes.NewReader(b.img).ReadAt(p, off)
}
