//go:build linux

package initsys

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{
		"/proc":              "/proc",
		`/mnt/a\040b`:        "/mnt/a b",
		`/x\134y`:            `/x\y`,
		`/tail\04`:           `/tail\04`,
		`/not\999octal\011x`: "/not\\999octal\tx",
	} {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsMounted(t *testing.T) {
	if ok, err := isMounted("/proc"); err != nil || !ok {
		t.Errorf("isMounted(/proc) = %v, %v", ok, err)
	}
	if ok, err := isMounted(t.TempDir()); err != nil || ok {
		t.Errorf("isMounted(tempdir) = %v, %v", ok, err)
	}
}

func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"lib/systemd", "sbin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "lib/systemd/systemd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"sbin/init": "/lib/systemd/systemd", // absolute: must stay inside root
		"sbin/rel":  "../lib/systemd/systemd",
		"sbin/loop": "/sbin/loop",
		"bin":       "sbin",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	want := filepath.Join(root, "lib/systemd/systemd")
	for _, p := range []string{"/sbin/init", "/sbin/rel", "/bin/init", "//sbin/./init"} {
		got, err := resolveIn(root, p)
		if err != nil || got != want {
			t.Errorf("resolveIn(%s) = %q, %v; want %q", p, got, err, want)
		}
	}
	if _, err := resolveIn(root, "/sbin/loop"); err == nil {
		t.Error("symlink loop resolved")
	}
	if _, err := resolveIn(root, "/sbin/none"); err == nil {
		t.Error("missing init resolved")
	}
}

func TestCheckSwitchTarget(t *testing.T) {
	err := checkSwitchTarget("/", "/sbin/init")
	if err == nil || !strings.Contains(err.Error(), "/ is not a mount point") {
		t.Errorf("newroot=/: err = %v", err)
	}
	if err := checkSwitchTarget("/nonexistent-shoal-root", "/sbin/init"); err == nil || !strings.Contains(err.Error(), "/nonexistent-shoal-root") {
		t.Errorf("missing newroot: err = %v", err)
	}
	if err := checkSwitchTarget("/proc", "/no/such/init"); err == nil || !strings.Contains(err.Error(), "/no/such/init") {
		t.Errorf("missing init: err = %v", err)
	}
}

func TestRemoveSameDevice(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"init", "bin/busybox", "lib/modules/k/kernel/x.ko"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if err := removeSameDevice(dir, st.Dev, false); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Errorf("followed a symlink: %v", err)
	}
	// Another device number: nothing is ours, nothing goes.
	if err := os.WriteFile(filepath.Join(dir, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeSameDevice(dir, st.Dev+1, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
		t.Errorf("deleted a file on another device: %v", err)
	}
}

func TestFreeInitramfsRefusesDisk(t *testing.T) {
	var fs unix.Statfs_t
	if err := unix.Statfs(t.TempDir(), &fs); err != nil {
		t.Fatal(err)
	}
	if m := uint32(fs.Type); m == unix.RAMFS_MAGIC || m == unix.TMPFS_MAGIC {
		t.Skip("temp dir is on tmpfs; the refusal needs a disk file system")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := freeInitramfs(dir); err == nil || !strings.Contains(err.Error(), "not an initramfs") {
		t.Errorf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
		t.Error(err)
	}
}

func TestConsolef(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	old := ConsolePath
	ConsolePath = path
	t.Cleanup(func() { ConsolePath = old })
	Consolef("booting %s\n", "pc01")
	ConsoleLogger(0).Info("hi", "k", 1)
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "shoal-agent: booting pc01\n") || !strings.Contains(string(b), "msg=hi k=1") {
		t.Errorf("console got %q", b)
	}
}

// TestAttachConsole runs AttachConsole in a child (it replaces fds 0-2)
// with a file as the console.
func TestAttachConsole(t *testing.T) {
	console := filepath.Join(t.TempDir(), "console")
	if err := os.WriteFile(console, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"=attachconsole", "SHOAL_TEST_CONSOLE="+console)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("helper: %v, wrote %q to its original stdout", err, out)
	}
	b, _ := os.ReadFile(console)
	if string(b) != "to stdout\nto stderr\nshoal-agent: to console\n" {
		t.Errorf("console got %q", b)
	}
}

func helperAttachConsole() error {
	ConsolePath = os.Getenv("SHOAL_TEST_CONSOLE")
	if err := AttachConsole(); err != nil {
		return err
	}
	fmt.Println("to stdout")
	fmt.Fprintln(os.Stderr, "to stderr")
	Consolef("to console")
	return nil
}
