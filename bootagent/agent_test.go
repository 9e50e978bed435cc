//go:build linux

package bootagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestApplyCmdline(t *testing.T) {
	c := Config{Init: "/sbin/init", SeedFor: time.Minute}
	c.Servers = []string{"from-json:7480"}
	applyCmdline(&c, "console=ttyS0 shoal.mac=52:54:00:77:00:01 shoal.hostname=pc1 shoal.mode=diskless-nbd "+
		"shoal.servers=10.0.0.1:7480,10.0.0.2:7480 shoal.init=/lib/systemd/systemd shoal.seed-for=30s shoal.seed-for=bogus quiet")
	if c.MAC != "52:54:00:77:00:01" || c.Hostname != "pc1" || c.Mode != "diskless-nbd" || c.Init != "/lib/systemd/systemd" ||
		strings.Join(c.Servers, ",") != "10.0.0.1:7480,10.0.0.2:7480" || c.SeedFor != 30*time.Second {
		t.Errorf("parsed %+v", c)
	}
}

func TestFSType(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, at int, magic []byte) string {
		b := make([]byte, 4096)
		copy(b[at:], magic)
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	cases := []struct {
		path, want, err string
	}{
		{write("sq", 0, []byte("hsqs")), "squashfs", ""},
		{write("ext", 1080, []byte{0x53, 0xef}), "ext4", ""},
		{write("raw", 0, []byte{0xeb, 0x63, 0x90}), "", "neither squashfs nor ext2/3/4"},
		{filepath.Join(dir, "missing"), "", "no such file"},
	}
	for _, c := range cases {
		got, err := fsType(c.path)
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %q, %v; want %q, %q", filepath.Base(c.path), got, err, c.want, c.err)
		}
	}
}
