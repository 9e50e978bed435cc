//go:build linux

package initsys

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const imageMarker = "hello from the image\n"

// TestBootSequence runs what the agent does as PID 1, for real, in a
// private mount and PID namespace (unshare -m -p -f): a tmpfs stands in for
// the initramfs, MountBasics, LoopAttach of a squashfs image,
// MountOverlayRoot, SwitchRoot, and then checks from the new init (this
// test binary, copied into the image) that the switch worked and the fake
// initramfs was emptied. When the namespace's PID 1 exits, its mounts go,
// and with them the autoclear loop device; the test checks that too.
func TestBootSequence(t *testing.T) {
	for _, fstype := range []string{"squashfs", "ext4"} {
		t.Run(fstype, func(t *testing.T) { testBootSequence(t, fstype) })
	}
}

func testBootSequence(t *testing.T, fstype string) {
	mkfs := map[string]string{"squashfs": "mksquashfs", "ext4": "mkfs.ext4"}[fstype]
	needRootTools(t, "unshare", mkfs)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	copyFile(t, "/dev/null", filepath.Join(tree, "etc", "empty"), 0o644)
	if err := os.WriteFile(filepath.Join(tree, "hello"), []byte(imageMarker), 0o644); err != nil {
		t.Fatal(err)
	}
	copyBinaryInto(t, exe, tree, "testinit")
	image := filepath.Join(dir, fmt.Sprintf("shoal-initsys-test-%d.%s", os.Getpid(), fstype))
	args := []string{tree, image, "-noappend", "-quiet", "-no-progress"}
	if fstype == "ext4" {
		args = []string{"-q", "-F", "-d", tree, image, "64M"}
	}
	if out, err := exec.Command(mkfs, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", mkfs, err, out)
	}
	t.Cleanup(func() {
		waitGone(t, "loop device for "+image, func() bool { return len(loopsBackedBy(filepath.Base(image))) == 0 })
	})
	out, err := runHelper(t, 90*time.Second, "switchroot",
		[]string{"SHOAL_TEST_IMAGE=" + image, "SHOAL_TEST_DIR=" + dir, "SHOAL_TEST_FSTYPE=" + fstype},
		"unshare", "--mount", "--pid", "--fork", "--propagation", "private")
	if strings.Contains(out, "SKIP:") {
		t.Skip(out[strings.Index(out, "SKIP:"):])
	}
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	for _, want := range []string{"MOUNTED-BASICS", "LOOP-ATTACHED /dev/loop", "OVERLAY-OK", "AFTER-SWITCH-OK"} {
		if !hasLine(out, want) {
			t.Errorf("helper output lacks %q", want)
		}
	}
}

// helperSwitchRoot is PID 1 of a fresh PID and mount namespace. It builds a
// fake initramfs on a tmpfs, chroots into it and boots the image.
func helperSwitchRoot() error {
	if os.Getpid() != 1 {
		return fmt.Errorf("not PID 1 (pid %d); run under unshare --pid --fork", os.Getpid())
	}
	ConsolePath = "/proc/self/fd/1" // never the host's console
	image, dir := os.Getenv("SHOAL_TEST_IMAGE"), os.Getenv("SHOAL_TEST_DIR")
	fakeRoot := filepath.Join(dir, "initramfs")
	if err := mountFS("tmpfs", "tmpfs", fakeRoot, 0, "size=256m"); err != nil {
		return err
	}
	img, err := os.ReadFile(image)
	if err != nil {
		return err
	}
	for name, body := range map[string][]byte{
		"image": img, "init": []byte("old init"), "lib/modules/k/x.ko": []byte("x"),
	} {
		p := filepath.Join(fakeRoot, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return err
		}
	}
	// Kept open across exec (no O_CLOEXEC) so the new init can see that
	// the old root was emptied.
	oldFd, err := unix.Open(fakeRoot, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	if err := unix.Chroot(fakeRoot); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if _, err := os.Stat("/image"); err != nil {
		return fmt.Errorf("chroot did not take, refusing to go on: %w", err)
	}
	if err := MountBasics(); err != nil {
		return err
	}
	for _, m := range []string{"/proc", "/sys", "/dev", "/run"} {
		if ok, err := isMounted(m); !ok || err != nil {
			return fmt.Errorf("after MountBasics %s mounted=%v err=%v", m, ok, err)
		}
	}
	if err := MountBasics(); err != nil {
		return fmt.Errorf("second MountBasics: %w", err)
	}
	fmt.Println("MOUNTED-BASICS")
	loop, err := LoopAttach("/image")
	if err != nil {
		return err
	}
	defer loop.Close()
	fmt.Println("LOOP-ATTACHED", loop.Path)
	lower, err := MountOverlayRoot(loop.Path, os.Getenv("SHOAL_TEST_FSTYPE"), "/newroot", "/run/shoal", "16m")
	if errors.Is(err, unix.ENODEV) {
		fmt.Println("SKIP: kernel lacks squashfs or overlay:", err)
		return nil
	} else if err != nil {
		return err
	}
	if err := loop.Close(); err != nil {
		return err
	}
	if b, err := os.ReadFile("/newroot/hello"); err != nil || string(b) != imageMarker {
		return fmt.Errorf("read /newroot/hello: %q, %v", b, err)
	}
	if err := os.WriteFile("/newroot/written", []byte("upper"), 0o644); err != nil {
		return fmt.Errorf("overlay not writable: %w", err)
	}
	if _, err := os.Stat(filepath.Join(lower, "written")); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("write went to the lower dir: %v", err)
	}
	fmt.Println("OVERLAY-OK lower", lower)
	env := []string{helperEnv + "=afterswitch", "OLD_ROOT_FD=" + strconv.Itoa(oldFd), "PATH=/"}
	return SwitchRoot("/newroot", "/testinit", env)
}

// helperAfterSwitch is the new init: it checks what SwitchRoot left.
func helperAfterSwitch() error {
	var fs unix.Statfs_t
	if err := unix.Statfs("/", &fs); err != nil || uint32(fs.Type) != unix.OVERLAYFS_SUPER_MAGIC {
		return fmt.Errorf("/ is not overlay: magic %#x, %v", fs.Type, err)
	}
	if os.Args[0] != "/testinit" {
		return fmt.Errorf("argv[0] = %q", os.Args[0])
	}
	for path, want := range map[string]string{
		"/hello": imageMarker, "/written": "upper", "/run/shoal/lower/hello": imageMarker,
	} {
		if b, err := os.ReadFile(path); err != nil || string(b) != want {
			return fmt.Errorf("%s: %q, %v", path, b, err)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return err
	}
	for _, m := range []string{" / overlay ", " /proc proc ", " /sys sysfs ", " /dev devtmpfs ", " /run tmpfs ", " /run/shoal tmpfs "} {
		if !bytes.Contains(mounts, []byte(m)) {
			return fmt.Errorf("no %q in /proc/self/mounts:\n%s", m, mounts)
		}
	}
	fd, err := strconv.Atoi(os.Getenv("OLD_ROOT_FD"))
	if err != nil {
		return err
	}
	for _, name := range []string{"init", "image", "lib"} {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("old root still has %s (%v)", name, err)
		}
	}
	fmt.Println("AFTER-SWITCH-OK")
	return nil
}
