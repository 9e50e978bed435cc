package bootsvc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
)

// bootRoot builds a TFTP root with the cases the path rules must handle,
// next to a secret file outside it. It returns the root and the content of
// undionly.kpxe (not a multiple of any block size, so the last block is
// short).
func bootRoot(t *testing.T) (string, []byte) {
	t.Helper()
	top := t.TempDir()
	root := filepath.Join(top, "tftp")
	must(t, os.MkdirAll(filepath.Join(root, "dir", "sub"), 0o755))
	data := make([]byte, 100_003)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	must(t, os.WriteFile(filepath.Join(root, "undionly.kpxe"), data, 0o644))
	must(t, os.WriteFile(filepath.Join(root, "dir", "sub", "snponly.efi"), []byte("efi"), 0o644))
	must(t, os.WriteFile(filepath.Join(top, "secret"), []byte("secret"), 0o644))
	must(t, os.Symlink(filepath.Join(top, "secret"), filepath.Join(root, "escape-abs")))
	must(t, os.Symlink("../secret", filepath.Join(root, "escape-rel")))
	must(t, os.Symlink("undionly.kpxe", filepath.Join(root, "alias.kpxe")))
	must(t, os.Symlink("/etc", filepath.Join(root, "etc")))
	must(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	return root, data
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCleanRequestPath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"undionly.kpxe", "undionly.kpxe"},
		{"/undionly.kpxe", "undionly.kpxe"},
		{"//dir//sub/./snponly.efi", "dir/sub/snponly.efi"},
		{"dir/sub/", "dir/sub"},
		{"../etc/passwd", ""},
		{"/../etc/passwd", ""},
		{"dir/../undionly.kpxe", ""},
		{"..", ""},
		{"", ""},
		{"/", ""},
		{".", ""},
		{`dir\sub\snponly.efi`, ""},
		{"a\x00b", ""},
		{"a\nb", ""},
		{strings.Repeat("a", 256), ""},
	}
	for _, tc := range cases {
		got, err := CleanRequestPath(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrBadPath) {
				t.Errorf("CleanRequestPath(%q) = %q, %v; want ErrBadPath", tc.in, got, err)
			}
		} else if got != tc.want || err != nil {
			t.Errorf("CleanRequestPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestFileRootOpen(t *testing.T) {
	dir, data := bootRoot(t)
	root, err := OpenFileRoot(dir)
	must(t, err)
	defer root.Close()
	cases := []struct {
		name string
		err  error
		size int
	}{
		{"undionly.kpxe", nil, len(data)},
		{"/undionly.kpxe", nil, len(data)},
		{"alias.kpxe", nil, len(data)}, // symlink inside the root is fine
		{"dir/sub/snponly.efi", nil, 3},
		{"../secret", ErrBadPath, 0},
		{"/etc/passwd", ErrFileNotFound, 0}, // means <root>/etc/passwd, and etc escapes
		{"etc/passwd", ErrFileNotFound, 0},
		{"escape-abs", ErrFileNotFound, 0},
		{"escape-rel", ErrFileNotFound, 0},
		{"dir", ErrNotRegular, 0},
		{"fifo", ErrNotRegular, 0}, // must not block in open
		{"missing", ErrFileNotFound, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, size, err := root.Open(tc.name)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Open(%q) error %v, want %v", tc.name, err, tc.err)
			}
			if err == nil {
				f.Close()
				if int(size) != tc.size {
					t.Errorf("size %d, want %d", size, tc.size)
				}
			}
		})
	}
}

// startTFTP serves dir on 127.0.0.1 and returns the address.
func startTFTP(t *testing.T, dir string, maxBlock int) string {
	t.Helper()
	cfg := DefaultTFTPConfig()
	cfg.Root, cfg.MaxBlockSize = dir, maxBlock
	cfg.Timeout, cfg.Retries = 500*time.Millisecond, 2
	s, err := NewTFTPServer(cfg, nil)
	must(t, err)
	conn, err := ListenTFTP("127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("TFTP Serve did not stop")
		}
		s.Close()
	})
	return conn.LocalAddr().String()
}

func TestTFTPDownload(t *testing.T) {
	dir, data := bootRoot(t)
	addr := startTFTP(t, dir, 8192)
	for _, blk := range []int{0, 512, 1432, 1468, 8192} {
		for _, name := range []string{"undionly.kpxe", "/undionly.kpxe", "alias.kpxe"} {
			c, err := tftp.NewClient(addr)
			must(t, err)
			c.SetTimeout(time.Second)
			if blk > 0 {
				c.SetBlockSize(blk)
			}
			c.RequestTSize(true)
			wt, err := c.Receive(name, "octet")
			if err != nil {
				t.Fatalf("blksize %d %s: %v", blk, name, err)
			}
			if n, ok := wt.(tftp.IncomingTransfer).Size(); !ok || n != int64(len(data)) {
				t.Errorf("blksize %d: tsize %d %v, want %d", blk, n, ok, len(data))
			}
			var got bytes.Buffer
			if _, err := wt.WriteTo(&got); err != nil {
				t.Fatalf("blksize %d: transfer: %v", blk, err)
			}
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("blksize %d: %d bytes differ from the %d on disk", blk, got.Len(), len(data))
			}
		}
	}
}

// TestTFTPRefuses: every escape attempt ends in a TFTP error, and no write
// is accepted.
func TestTFTPRefuses(t *testing.T) {
	dir, _ := bootRoot(t)
	addr := startTFTP(t, dir, 1468)
	for _, name := range []string{"../secret", "../../../../etc/passwd", "/etc/passwd", "etc/passwd",
		"escape-abs", "escape-rel", "dir", "dir/sub", "fifo", "missing", `..\secret`} {
		t.Run(name, func(t *testing.T) {
			c, err := tftp.NewClient(addr)
			must(t, err)
			c.SetTimeout(time.Second)
			wt, err := c.Receive(name, "octet")
			if err == nil {
				var got bytes.Buffer
				_, err = wt.WriteTo(&got)
				t.Fatalf("served %q: %d bytes (%v)", name, got.Len(), err)
			}
			if strings.Contains(err.Error(), dir) {
				t.Errorf("error leaks the server path: %v", err)
			}
		})
	}
	c, err := tftp.NewClient(addr)
	must(t, err)
	c.SetTimeout(time.Second)
	if rf, err := c.Send("upload.bin", "octet"); err == nil {
		if _, err := rf.ReadFrom(strings.NewReader("x")); err == nil {
			t.Fatal("write request accepted")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "upload.bin")); err == nil {
		t.Fatal("upload.bin was written")
	}
}

// TestTFTPOACK checks the negotiation on the wire, as iPXE and OVMF see it:
// blksize is capped by the config and tsize is the file size.
func TestTFTPOACK(t *testing.T) {
	dir, data := bootRoot(t)
	addr := startTFTP(t, dir, 1468)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	must(t, err)
	defer conn.Close()
	srv, err := net.ResolveUDPAddr("udp4", addr)
	must(t, err)
	rrq := []byte{0, 1}
	for _, s := range []string{"undionly.kpxe", "octet", "blksize", "65000", "tsize", "0"} {
		rrq = append(append(rrq, s...), 0)
	}
	_, err = conn.WriteTo(rrq, srv)
	must(t, err)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := conn.ReadFrom(buf)
	must(t, err)
	if op := binary.BigEndian.Uint16(buf); op != 6 {
		t.Fatalf("opcode %d, want 6 (OACK): %q", op, buf[:n])
	}
	opts := map[string]string{}
	fields := strings.Split(strings.TrimSuffix(string(buf[2:n]), "\x00"), "\x00")
	for i := 0; i+1 < len(fields); i += 2 {
		opts[fields[i]] = fields[i+1]
	}
	if opts["blksize"] != "1468" || opts["tsize"] != "100003" || len(data) != 100003 {
		t.Errorf("OACK options %v, want blksize 1468 tsize 100003", opts)
	}
	// Abort like OVMF does after learning the size (error 8).
	conn.WriteTo([]byte{0, 5, 0, 8, 'a', 0}, from)
}

func TestTFTPConfigValidate(t *testing.T) {
	if err := DefaultTFTPConfig().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	for name, mut := range map[string]func(*TFTPConfig){
		"no root":      func(c *TFTPConfig) { c.Root = "" },
		"block small":  func(c *TFTPConfig) { c.MaxBlockSize = 8 },
		"block large":  func(c *TFTPConfig) { c.MaxBlockSize = 70000 },
		"no timeout":   func(c *TFTPConfig) { c.Timeout = 0 },
		"zero retries": func(c *TFTPConfig) { c.Retries = 0 },
	} {
		c := DefaultTFTPConfig()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	cfg := DefaultTFTPConfig()
	cfg.Root = filepath.Join(t.TempDir(), "missing")
	if _, err := NewTFTPServer(cfg, nil); err == nil {
		t.Error("missing root accepted")
	}
}
