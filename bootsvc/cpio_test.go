package bootsvc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCPIOStockTool: GNU cpio unpacks what WriteCPIO writes, byte for byte,
// with the modes given, and CPIOSize is exact.
func TestCPIOStockTool(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("needs cpio (make deps installs it)")
		}
		t.Skip("needs cpio (make deps installs it)")
	}
	init := bytes.Repeat([]byte{0x7f, 'E', 'L', 'F', 1}, 1001) // odd length: padding
	cfg := []byte(`{"mac":"52:54:00:77:00:01"}`)
	files := []CPIOFile{
		{Name: "etc", Mode: ModeDir | 0o755},
		{Name: "etc/shoal", Mode: ModeDir | 0o755},
		{Name: "etc/shoal/boot.json", Mode: ModeFile | 0o644, Size: int64(len(cfg)), Body: bytes.NewReader(cfg)},
		{Name: "init", Mode: ModeFile | 0o755, Size: int64(len(init)), Body: bytes.NewReader(init)},
	}
	var buf bytes.Buffer
	if err := WriteCPIO(&buf, files); err != nil {
		t.Fatal(err)
	}
	if got := CPIOSize(files); got != int64(buf.Len()) {
		t.Errorf("CPIOSize %d, archive %d bytes", got, buf.Len())
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idm", "--quiet")
	cmd.Dir, cmd.Stdin = dir, &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v %s", err, out)
	}
	for name, want := range map[string][]byte{"init": init, "etc/shoal/boot.json": cfg} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, err %v", name, len(got), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "init")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("init mode %v %v", fi.Mode(), err)
	}
}

func TestCPIORefusesBadInput(t *testing.T) {
	for _, f := range []CPIOFile{
		{Name: "../etc/passwd", Mode: ModeFile | 0o644},
		{Name: "/init", Mode: ModeFile | 0o755},
		{Name: "init", Mode: ModeFile | 0o755, Size: 10, Body: strings.NewReader("short")},
	} {
		if err := WriteCPIO(&bytes.Buffer{}, []CPIOFile{f}); err == nil {
			t.Errorf("%q accepted", f.Name)
		}
	}
}
