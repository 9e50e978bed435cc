//go:build linux

package initsys

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// recordInsmod replaces the kernel call with a recorder for the test, so
// no test ever loads a module into the host kernel.
func recordInsmod(t *testing.T, fail map[string]error) *[]string {
	t.Helper()
	var loaded []string
	old := insmod
	insmod = func(path string) error {
		if err := fail[filepath.Base(path)]; err != nil {
			return err
		}
		loaded = append(loaded, filepath.Base(path))
		return nil
	}
	t.Cleanup(func() { insmod = old })
	return &loaded
}

func TestLoadModulesFrom(t *testing.T) {
	dir := fakeModules(t, fakeDep, fakeBuiltin)
	loaded := recordInsmod(t, map[string]error{"hid.ko": errors.New("exec format error")})
	err := LoadModulesFrom(dir, "virtio-net", "e1000", "ext4", "hid-generic", "virtio_pci")
	want := []string{"virtio_ring.ko", "failover.ko", "net_failover.ko", "virtio_net.ko", "virtio_pci_modern_dev.ko", "virtio_pci.ko"}
	if !slices.Equal(*loaded, want) {
		t.Errorf("loaded %q, want %q", *loaded, want)
	}
	if err == nil {
		t.Fatal("no error for missing e1000 and failing hid")
	}
	msg := err.Error()
	for _, s := range []string{"module e1000", "not found", "module hid-generic", "exec format error"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not mention %q", msg, s)
		}
	}
	if strings.Contains(msg, "ext4") || strings.Contains(msg, "virtio_pci") {
		t.Errorf("error %q blames a module that loaded or is built in", msg)
	}
	if !errors.Is(err, ErrModuleNotFound) {
		t.Errorf("errors.Is(err, ErrModuleNotFound) = false for %q", msg)
	}
}

func TestLoadModulesFromMissingIndex(t *testing.T) {
	recordInsmod(t, nil)
	err := LoadModulesFrom(filepath.Join(t.TempDir(), "6.1.0-none"), "virtio_net")
	if err == nil || !strings.Contains(err.Error(), "modules.dep") || !strings.Contains(err.Error(), "virtio_net") {
		t.Errorf("err = %v, want one naming modules.dep and virtio_net", err)
	}
}

// TestLoadModuleFileErrors covers failures that happen before the kernel
// is asked: the real loader, but never reaching finit_module.
func TestLoadModuleFileErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "bad.ko.gz")
	if err := os.WriteFile(garbage, []byte("not gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(dir, "odd.ko.bz2")
	if err := os.WriteFile(odd, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{filepath.Join(dir, "missing.ko"), "missing.ko: no such file"},
		{garbage, "bad.ko.gz: gunzip"},
		{odd, "odd.ko.bz2: not a kernel module file name"},
	}
	for _, tc := range tests {
		err := loadModuleFile(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("loadModuleFile(%s) = %v, want an error containing %q", tc.path, err, tc.want)
		}
	}
}
