package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	imgSize = 1<<20 + 123 // not a multiple of any block size
	// wireSize is imgSize as clients see it: rounded up to 4 KiB.
	wireSize = 1<<20 + 4096
)

// padded is img as clients read it.
func padded(img []byte) []byte {
	return append(bytes.Clone(img), make([]byte, int(padSize(int64(len(img))))-len(img))...)
}

func TestTransmission(t *testing.T) {
	img := testImage(imgSize)
	wire := padded(img)
	var served atomic.Int64
	ts := startServer(t, &Server{
		Exports: imageExports(img),
		OnRead:  func(_ string, n int) { served.Add(int64(n)) },
	})
	enter := map[string]func(t *testing.T) *testClient{
		"opt_go": func(t *testing.T) *testClient {
			tc := dialClient(t, ts.addr, clientFlagFixedNewstyle|clientFlagNoZeroes)
			if typ, rs := tc.goExport("deb12", infoBlockSize); typ != repAck {
				t.Fatalf("NBD_OPT_GO: reply %#x %+v", typ, rs)
			}
			return tc
		},
		"export_name_zeroes": func(t *testing.T) *testClient {
			tc := dialClient(t, ts.addr, clientFlagFixedNewstyle)
			tc.exportName("deb12", false)
			return tc
		},
		"export_name_no_zeroes": func(t *testing.T) *testClient {
			tc := dialClient(t, ts.addr, clientFlagFixedNewstyle|clientFlagNoZeroes)
			tc.exportName("deb12", true)
			return tc
		},
	}
	cases := []struct {
		name      string
		typ       uint16
		off       uint64
		len       uint32
		payload   []byte
		wantErrno uint32
	}{
		{"read first sector", cmdRead, 0, 512, nil, 0},
		{"read aligned block", cmdRead, 4096, 4096, nil, 0},
		{"read unaligned", cmdRead, 12345, 777, nil, 0},
		{"read last byte", cmdRead, imgSize - 1, 1, nil, 0},
		{"read tail", cmdRead, imgSize - 1000, 1000, nil, 0},
		{"read across the image's end", cmdRead, imgSize - 10, 20, nil, 0},
		{"read the padding", cmdRead, imgSize, wireSize - imgSize, nil, 0},
		{"read everything", cmdRead, 0, wireSize, nil, 0},
		{"read across the end", cmdRead, wireSize - 10, 20, nil, errInval},
		{"read at the end", cmdRead, wireSize, 1, nil, errInval},
		{"read far past the end", cmdRead, 1 << 62, 512, nil, errInval},
		{"read wrapping offset", cmdRead, ^uint64(0) - 10, 512, nil, errInval},
		{"read of zero bytes", cmdRead, 0, 0, nil, errInval},
		{"read over 32 MiB", cmdRead, 0, maxRequestLen + 1, nil, errInval},
		{"write", cmdWrite, 0, 512, make([]byte, 512), errPerm},
		{"trim", cmdTrim, 0, 4096, nil, errPerm},
		{"write zeroes", cmdWriteZeroes, 0, 4096, nil, errPerm},
		{"flush", cmdFlush, 0, 0, nil, 0},
		{"unknown command", 99, 0, 0, nil, errInval},
	}
	for how, enter := range enter {
		t.Run(how, func(t *testing.T) {
			tc := enter(t)
			if tc.size != wireSize {
				t.Fatalf("size %d, want %d", tc.size, wireSize)
			}
			if tc.tfl != transmissionFlags {
				t.Fatalf("transmission flags %#x, want %#x", tc.tfl, transmissionFlags)
			}
			for _, c := range cases {
				errno, data := tc.cmd(c.typ, c.off, c.len, c.payload)
				if errno != c.wantErrno {
					t.Errorf("%s: errno %d, want %d", c.name, errno, c.wantErrno)
					continue
				}
				if c.typ == cmdRead && errno == 0 && !bytes.Equal(data, wire[c.off:c.off+uint64(c.len)]) {
					t.Errorf("%s: bytes differ from the image", c.name)
				}
			}
			// After every error the connection still reads, then leaves cleanly.
			if errno, data := tc.cmd(cmdRead, 100, 100, nil); errno != 0 || !bytes.Equal(data, img[100:200]) {
				t.Fatalf("read after errors: errno %d", errno)
			}
			tc.sendRequest(cmdDisc, 0, 0, nil)
			tc.expectClosed()
		})
	}
	want := int64(3 * (512 + 4096 + 777 + 1 + 1000 + 20 + wireSize - imgSize + wireSize + 100))
	if got := served.Load(); got != want {
		t.Errorf("OnRead counted %d bytes, want %d", got, want)
	}
}

// TestPipelined sends many reads before reading any reply, as the kernel
// client does; replies come back in order.
func TestPipelined(t *testing.T) {
	img := testImage(imgSize)
	ts := startServer(t, &Server{Exports: imageExports(img)})
	tc := dialClient(t, ts.addr, clientFlagFixedNewstyle|clientFlagNoZeroes)
	tc.goExport("deb12")
	const n = 64
	var sent []uint64
	for i := range n {
		sent = append(sent, tc.sendRequest(cmdRead, uint64(i*4096), 4096, nil))
	}
	for i, h := range sent {
		errno, data, err := tc.simple(h, 4096)
		if err != nil || errno != 0 || !bytes.Equal(data, img[i*4096:(i+1)*4096]) {
			t.Fatalf("reply %d: errno %d err %v", i, errno, err)
		}
	}
}

func TestOptions(t *testing.T) {
	img := testImage(imgSize)
	ts := startServer(t, &Server{Exports: imageExports(img)})
	tc := dialClient(t, ts.addr, clientFlagFixedNewstyle|clientFlagNoZeroes)

	tc.sendOption(optList, nil)
	var names []string
	for _, r := range tc.replies(optList) {
		if r.typ == repServer {
			n := binary.BigEndian.Uint32(r.data)
			names = append(names, string(r.data[4:4+n]))
		}
	}
	if fmt.Sprint(names) != "[alpine deb12]" {
		t.Errorf("NBD_OPT_LIST: %q", names)
	}

	cases := []struct {
		name     string
		opt      uint32
		data     []byte
		wantLast uint32
		check    func(t *testing.T, rs []optReply)
	}{
		{"list with data", optList, []byte("x"), repErrInvalid, nil},
		{"info unknown export", optInfo, infoRequest("nope"), repErrUnknown, nil},
		{"go unknown export", optGo, infoRequest("nope"), repErrUnknown, nil},
		{"info truncated", optInfo, []byte{0, 0, 0, 9, 'd'}, repErrInvalid, nil},
		{"info name too long for data", optInfo, []byte{0, 0, 1, 0, 0, 0}, repErrInvalid, nil},
		{"info count mismatch", optInfo, append(infoRequest("deb12"), 0, 1), repErrInvalid, nil},
		{"starttls", optStartTLS, nil, repErrUnsup, nil},
		{"structured replies", 8, nil, repErrUnsup, nil},
		{"unknown option", 4242, []byte("whatever"), repErrUnsup, nil},
		{"info", optInfo, infoRequest("deb12", infoName, infoDescription, infoBlockSize), repAck,
			func(t *testing.T, rs []optReply) {
				got := map[uint16][]byte{}
				for _, r := range rs[:len(rs)-1] {
					if r.typ != repInfo {
						t.Fatalf("reply type %#x", r.typ)
					}
					got[binary.BigEndian.Uint16(r.data)] = r.data[2:]
				}
				if string(got[infoName]) != "deb12" || string(got[infoDescription]) != "Debian 12 root" {
					t.Errorf("name %q description %q", got[infoName], got[infoDescription])
				}
				bs := got[infoBlockSize]
				if len(bs) != 12 || binary.BigEndian.Uint32(bs) != 1 || binary.BigEndian.Uint32(bs[8:]) != maxRequestLen {
					t.Errorf("block size info %x", bs)
				}
				ex := got[infoExport]
				if len(ex) != 10 || binary.BigEndian.Uint64(ex) != wireSize {
					t.Errorf("export info %x", ex)
				}
			}},
	}
	// All on one connection: errors leave negotiation going.
	for _, c := range cases {
		tc.sendOption(c.opt, c.data)
		rs := tc.replies(c.opt)
		if last := rs[len(rs)-1].typ; last != c.wantLast {
			t.Errorf("%s: final reply %#x, want %#x", c.name, last, c.wantLast)
			continue
		}
		if c.check != nil {
			c.check(t, rs)
		}
	}
	if typ, _ := tc.goExport("alpine"); typ != repAck || tc.size != 4096 {
		t.Fatalf("NBD_OPT_GO after errors: %#x size %d", typ, tc.size)
	}
	if errno, _ := tc.cmd(cmdRead, 0, 4096, nil); errno != 0 {
		t.Fatalf("read: errno %d", errno)
	}

	t.Run("abort", func(t *testing.T) {
		tc := dialClient(t, ts.addr, clientFlagFixedNewstyle)
		tc.sendOption(optAbort, nil)
		if rs := tc.replies(optAbort); rs[0].typ != repAck {
			t.Errorf("NBD_OPT_ABORT: reply %#x", rs[0].typ)
		}
		tc.expectClosed()
	})
	t.Run("export_name unknown closes", func(t *testing.T) {
		tc := dialClient(t, ts.addr, clientFlagFixedNewstyle)
		tc.sendOption(optExportName, []byte("nope"))
		tc.expectClosed()
	})
}

// TestBadClients: each misbehaving client is hung up on, and the server
// goes on serving a well-behaved one.
func TestBadClients(t *testing.T) {
	img := testImage(imgSize)
	ts := startServer(t, &Server{Exports: imageExports(img), HandshakeTimeout: 300 * time.Millisecond})
	header := func(opt, n uint32) []byte {
		b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
		b = binary.BigEndian.AppendUint32(b, opt)
		return binary.BigEndian.AppendUint32(b, n)
	}
	cases := []struct {
		name  string
		flags uint32
		send  func(tc *testClient)
	}{
		{"unknown client flags", 0xdeadbeef, nil},
		{"garbage instead of an option", clientFlagFixedNewstyle, func(tc *testClient) {
			tc.write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}},
		{"oversized option", clientFlagFixedNewstyle, func(tc *testClient) {
			tc.write(header(optGo, maxOptionLen+1))
		}},
		{"4 GiB option", clientFlagFixedNewstyle, func(tc *testClient) {
			tc.write(header(4242, ^uint32(0)))
		}},
		{"silent after flags", clientFlagFixedNewstyle, func(tc *testClient) {}},
		{"option data never sent", clientFlagFixedNewstyle, func(tc *testClient) {
			tc.write(header(optList, 100))
		}},
		{"bad request magic", clientFlagFixedNewstyle | clientFlagNoZeroes, func(tc *testClient) {
			tc.goExport("deb12")
			tc.write(make([]byte, 28))
		}},
		{"huge write", clientFlagFixedNewstyle | clientFlagNoZeroes, func(tc *testClient) {
			tc.goExport("deb12")
			tc.sendRequest(cmdWrite, 0, maxRequestLen+1, nil)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := dialClient(t, ts.addr, c.flags)
			if c.send != nil {
				c.send(tc)
			}
			tc.expectClosed()

			good := dialClient(t, ts.addr, clientFlagFixedNewstyle|clientFlagNoZeroes)
			if typ, _ := good.goExport("deb12"); typ != repAck {
				t.Fatalf("good client refused: %#x", typ)
			}
			if errno, data := good.cmd(cmdRead, 0, 512, nil); errno != 0 || !bytes.Equal(data, img[:512]) {
				t.Fatalf("good client read: errno %d", errno)
			}
		})
	}
	t.Run("no deadline in transmission", func(t *testing.T) {
		tc := dialClient(t, ts.addr, clientFlagFixedNewstyle|clientFlagNoZeroes)
		tc.goExport("deb12")
		time.Sleep(3 * 300 * time.Millisecond) // well past the handshake timeout
		if errno, _ := tc.cmd(cmdRead, 0, 512, nil); errno != 0 {
			t.Fatalf("idle client's read: errno %d", errno)
		}
	})
}

func TestReadError(t *testing.T) {
	img := testImage(imgSize)
	ts := startServer(t, &Server{Exports: ExportMap{
		"bad": {Size: imgSize, ReaderAt: brokenReader{img: img, from: 8192, to: 8193}},
		// A source shorter than its stated size: reads past its end fail.
		"short": {Size: imgSize, ReaderAt: bytes.NewReader(img[:4096])},
	}})
	cases := []struct {
		export    string
		off       uint64
		len       uint32
		wantErrno uint32
	}{
		{"bad", 0, 4096, 0},
		{"bad", 4096, 8192, errIO},
		{"bad", 8192, 1, errIO},
		{"bad", 8193, 512, 0},
		{"short", 0, 4096, 0},
		{"short", 4000, 200, errIO},
		{"short", 8192, 512, errIO},
	}
	conns := map[string]*testClient{}
	for _, c := range cases {
		tc := conns[c.export]
		if tc == nil {
			tc = dialClient(t, ts.addr, clientFlagFixedNewstyle|clientFlagNoZeroes)
			tc.goExport(c.export)
			conns[c.export] = tc
		}
		errno, data := tc.cmd(cmdRead, c.off, c.len, nil)
		if errno != c.wantErrno {
			t.Errorf("%s %d+%d: errno %d, want %d", c.export, c.off, c.len, errno, c.wantErrno)
		}
		if errno == 0 && !bytes.Equal(data, img[c.off:c.off+uint64(c.len)]) {
			t.Errorf("%s %d+%d: bytes differ", c.export, c.off, c.len)
		}
	}
}

// dynExports is an Exports that changes while the server runs, as image
// versions are activated.
type dynExports struct {
	mu sync.Mutex
	m  ExportMap
}

func (d *dynExports) Lookup(name string) (Export, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m.Lookup(name)
}

func (d *dynExports) List() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m.List()
}

// TestExportsAtNegotiation: a new export appears without restarting, and a
// connected client keeps the version it negotiated.
func TestExportsAtNegotiation(t *testing.T) {
	v1, v2 := testImage(8192), bytes.Repeat([]byte{7}, 4096)
	ex := &dynExports{m: ExportMap{"img": {Size: 8192, ReaderAt: bytes.NewReader(v1)}}}
	ts := startServer(t, &Server{Exports: ex})
	old := dialClient(t, ts.addr, clientFlagFixedNewstyle|clientFlagNoZeroes)
	old.goExport("img")

	fresh := dialClient(t, ts.addr, clientFlagFixedNewstyle|clientFlagNoZeroes)
	if typ, _ := fresh.goExport("next"); typ != repErrUnknown {
		t.Fatalf("export before it exists: %#x", typ)
	}
	ex.mu.Lock()
	ex.m = ExportMap{"img": {Size: 4096, ReaderAt: bytes.NewReader(v2)}, "next": {Size: 4096, ReaderAt: bytes.NewReader(v2)}}
	ex.mu.Unlock()
	if typ, _ := fresh.goExport("img"); typ != repAck || fresh.size != 4096 {
		t.Fatalf("new version: %#x size %d", typ, fresh.size)
	}
	if _, data := fresh.cmd(cmdRead, 0, 4096, nil); !bytes.Equal(data, v2) {
		t.Errorf("new client does not read the new version")
	}
	if _, data := old.cmd(cmdRead, 4096, 4096, nil); !bytes.Equal(data, v1[4096:]) {
		t.Errorf("old client does not read the version it negotiated")
	}
}

func TestConcurrentClients(t *testing.T) {
	img := testImage(imgSize)
	ts := startServer(t, &Server{Exports: imageExports(img)})
	const clients, reads = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			errs <- concurrentClient(ts.addr, img, uint64(i), reads)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// concurrentClient runs off the test goroutine, so it fails by panicking
// (panicFailer) and returns the panic as an error.
func concurrentClient(addr string, img []byte, seed uint64, reads int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("client %d: %v", seed, r)
		}
	}()
	tc := dial(panicFailer{}, addr, clientFlagFixedNewstyle|clientFlagNoZeroes)
	defer tc.c.Close()
	if typ, _ := tc.goExport("deb12"); typ != repAck {
		return fmt.Errorf("client %d: NBD_OPT_GO reply %#x", seed, typ)
	}
	r := rand.New(rand.NewPCG(seed, 99))
	for range reads {
		n := uint32(1 + r.IntN(64<<10))
		off := uint64(r.IntN(imgSize - int(n) + 1))
		errno, data := tc.cmd(cmdRead, off, n, nil)
		if errno != 0 || !bytes.Equal(data, img[off:off+uint64(n)]) {
			return fmt.Errorf("client %d: read %d+%d: errno %d or bytes differ", seed, off, n, errno)
		}
	}
	return nil
}

func TestShutdown(t *testing.T) {
	img := testImage(imgSize)
	ts := startServer(t, &Server{Exports: imageExports(img)})
	var clients []*testClient
	for range 5 {
		tc := dialClient(t, ts.addr, clientFlagFixedNewstyle|clientFlagNoZeroes)
		tc.goExport("deb12")
		clients = append(clients, tc)
	}
	half := dialClient(t, ts.addr, clientFlagFixedNewstyle) // still negotiating
	clients = append(clients, half)
	ts.stop(t)
	for _, tc := range clients {
		tc.expectClosed()
	}
	if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		c.Close()
		t.Errorf("listener still accepting after Serve returned")
	}
}

func TestServeWithoutExports(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := (&Server{}).Serve(context.Background(), ln); err == nil {
		t.Fatal("Serve without Exports returned nil")
	}
}
