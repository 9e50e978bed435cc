package initsys

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeModules writes modules.dep and modules.builtin into a temp modules
// dir and returns it.
func fakeModules(t *testing.T, dep, builtin string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", "6.1.0-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"modules.dep": dep, "modules.builtin": builtin} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const fakeDep = `kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/fs/squashfs/squashfs.ko.xz:
kernel/drivers/hid/hid-generic.ko: kernel/drivers/hid/hid.ko
kernel/drivers/hid/hid.ko:
kernel/drivers/broken.ko: kernel/drivers/absent.ko
`

// virtio.ko is built in: listed as a dependency, but never loaded.
const fakeBuiltin = "kernel/drivers/virtio/virtio.ko\nkernel/fs/ext4/ext4.ko\n"

func TestParseModulesDep(t *testing.T) {
	mods, err := ParseModulesDep(strings.NewReader("# comment\n\n" + fakeDep))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(mods); got != 10 {
		t.Errorf("got %d modules, want 10", got)
	}
	m, ok := mods["hid_generic"]
	if !ok {
		t.Fatalf("hid-generic not indexed as hid_generic: %v", mods)
	}
	if m.Path != "kernel/drivers/hid/hid-generic.ko" || !slices.Equal(m.Deps, []string{"kernel/drivers/hid/hid.ko"}) {
		t.Errorf("hid_generic = %+v", m)
	}
	if _, ok := mods["squashfs"]; !ok {
		t.Errorf("squashfs.ko.xz not indexed as squashfs")
	}
	if _, err := ParseModulesDep(strings.NewReader("no colon here\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("malformed line: err = %v, want one naming line 1", err)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"virtio_net":                        "virtio_net",
		"virtio-net":                        "virtio_net",
		"kernel/drivers/hid/hid-generic.ko": "hid_generic",
		"kernel/fs/squashfs/squashfs.ko.xz": "squashfs",
		"a/b/c.ko.zst":                      "c",
		"x.ko.gz":                           "x",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolve(t *testing.T) {
	dir := fakeModules(t, fakeDep, fakeBuiltin)
	ix, err := ReadModuleIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	rel := func(paths []string) []string {
		out := make([]string, len(paths))
		for i, p := range paths {
			out[i] = strings.TrimPrefix(p, dir+"/")
		}
		return out
	}
	tests := []struct {
		name  string
		names []string // resolved in order with one seen set
		want  []string
	}{
		{"deps first", []string{"virtio_net"}, []string{
			"kernel/drivers/virtio/virtio_ring.ko", "kernel/net/core/failover.ko",
			"kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko"}},
		{"no duplicates across names, builtin skipped", []string{"virtio_net", "virtio-pci"}, []string{
			"kernel/drivers/virtio/virtio_ring.ko", "kernel/net/core/failover.ko",
			"kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko",
			"kernel/drivers/virtio/virtio_pci_modern_dev.ko", "kernel/drivers/virtio/virtio_pci.ko"}},
		{"dash for underscore", []string{"hid_generic"}, []string{"kernel/drivers/hid/hid.ko", "kernel/drivers/hid/hid-generic.ko"}},
		{"builtin alone", []string{"ext4", "virtio"}, nil},
		{"compressed path kept", []string{"squashfs"}, []string{"kernel/fs/squashfs/squashfs.ko.xz"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]bool{}
			var got []string
			for _, n := range tc.names {
				files, err := ix.Resolve(n, seen)
				if err != nil {
					t.Fatalf("Resolve(%s): %v", n, err)
				}
				got = append(got, rel(files)...)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	dir := fakeModules(t, fakeDep+"kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n", fakeBuiltin)
	ix, err := ReadModuleIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		module   string
		contains []string
		notFound bool
	}{
		{"e1000", []string{"module e1000", "not found", dir}, true},
		{"broken", []string{"module broken", "dependency absent"}, true},
		{"a", []string{"cycle"}, false},
	}
	for _, tc := range tests {
		_, err := ix.Resolve(tc.module, map[string]bool{})
		if err == nil {
			t.Errorf("Resolve(%s): no error", tc.module)
			continue
		}
		for _, s := range tc.contains {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Resolve(%s) error %q does not mention %q", tc.module, err, s)
			}
		}
		if errors.Is(err, ErrModuleNotFound) != tc.notFound {
			t.Errorf("Resolve(%s): errors.Is(ErrModuleNotFound) = %v", tc.module, !tc.notFound)
		}
	}
	if _, err := ReadModuleIndex(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("missing modules dir: err = %v, want one naming modules.dep", err)
	}
}

// TestResolveDebianCloudKernel checks the closures the agent relies on
// against the real Debian cloud kernel tree that the integration tests
// unpack (make-initrd.sh's module list).
func TestResolveDebianCloudKernel(t *testing.T) {
	kver, err := os.ReadFile("../.cache/kernel/KVER")
	if err != nil {
		t.Skipf("no Debian cloud kernel tree (.cache/kernel/KVER: %v); the integration setup unpacks it", err)
	}
	dir := filepath.Join("../.cache/kernel/root/lib/modules", strings.TrimSpace(string(kver)))
	ix, err := ReadModuleIndex(dir)
	if err != nil {
		t.Skipf("no Debian cloud kernel modules: %v", err)
	}
	want := map[string][]string{
		"virtio_net": {"kernel/drivers/net/net_failover.ko", "kernel/net/core/failover.ko", "kernel/drivers/net/virtio_net.ko"},
		"squashfs":   {"kernel/fs/squashfs/squashfs.ko"},
		"overlay":    {"kernel/fs/overlayfs/overlay.ko"},
		"nbd":        {"kernel/drivers/block/nbd.ko"},
		"loop":       {"kernel/drivers/block/loop.ko"},
		"virtio-pci": {"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio_pci.ko"},
	}
	for name, mustHave := range want {
		files, err := ix.Resolve(name, map[string]bool{})
		if err != nil {
			t.Errorf("Resolve(%s): %v", name, err)
			continue
		}
		pos := map[string]int{}
		for i, f := range files {
			rel := strings.TrimPrefix(f, dir+"/")
			if _, dup := pos[rel]; dup {
				t.Errorf("%s: %s twice", name, rel)
			}
			pos[rel] = i
			if _, err := os.Stat(f); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		for _, m := range mustHave {
			if _, ok := pos[m]; !ok {
				t.Errorf("%s: closure %q lacks %s", name, files, m)
			}
		}
		if last := strings.TrimPrefix(files[len(files)-1], dir+"/"); last != mustHave[len(mustHave)-1] {
			t.Errorf("%s: loads %s last, want the module itself", name, last)
		}
		// Every module comes after everything its own modules.dep line needs.
		for _, f := range files {
			rel := strings.TrimPrefix(f, dir+"/")
			for _, d := range ix.Modules[ModuleName(rel)].Deps {
				if ix.Builtin[ModuleName(d)] {
					continue
				}
				if pos[d] > pos[rel] {
					t.Errorf("%s: %s loads after %s, which needs it", name, d, rel)
				}
			}
		}
		t.Logf("%s: %d files: %q", name, len(files), files)
	}
	// What the agent loads, in one go: every name resolves (ext4 and
	// crc32c_generic are built into the cloud kernel), no file twice.
	seen := map[string]bool{}
	for _, name := range []string{"virtio_pci", "virtio_net", "loop", "squashfs", "overlay", "ext4", "crc32c_generic"} {
		if _, err := ix.Resolve(name, seen); err != nil {
			t.Errorf("agent module %s: %v", name, err)
		}
	}
	// e1000 is built into the cloud kernel: nothing to load, no error.
	if ix.Builtin["e1000"] {
		if files, err := ix.Resolve("e1000", map[string]bool{}); err != nil || len(files) != 0 {
			t.Errorf("built-in e1000: files %q, err %v", files, err)
		}
	}
}
