//go:build linux

package initsys

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// basicMounts are the pseudo file systems every later step needs, in
// order: /proc first, because it tells what is mounted already.
var basicMounts = []struct{ fstype, target, data string }{
	{"proc", "/proc", ""},
	{"sysfs", "/sys", ""},
	{"devtmpfs", "/dev", "mode=0755"},
	{"tmpfs", "/run", "mode=0755"},
}

// MountBasics mounts proc, sysfs, devtmpfs and a tmpfs on /run, each only
// if it is not mounted yet (the kernel may have mounted devtmpfs itself).
func MountBasics() error {
	for _, m := range basicMounts {
		mounted, err := isMounted(m.target)
		if err != nil && m.target != "/proc" {
			return err
		}
		if mounted {
			continue
		}
		if err := mountFS(m.fstype, m.fstype, m.target, unix.MS_NOSUID, m.data); err != nil &&
			!errors.Is(err, unix.EBUSY) {
			return err
		}
	}
	return nil
}

// mountFS creates target if needed and mounts source on it.
func mountFS(source, fstype, target string, flags uintptr, data string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s %s on %s (options %q): %w", fstype, source, target, data, err)
	}
	return nil
}

// isMounted reports whether target is a mount point in /proc/self/mounts.
func isMounted(target string) (bool, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return false, fmt.Errorf("check mount %s: %w", target, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && unescapeMountPath(fields[1]) == target {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("check mount %s: read %s: %w", target, f.Name(), err)
	}
	return false, nil
}

// unescapeMountPath undoes the octal escapes (\040 for space) of
// /proc/self/mounts.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountOverlayRoot builds a writable root on newroot: a tmpfs (size option
// tmpfsSize, e.g. "512m"; empty means the tmpfs default of half the RAM) on
// stateDir holds the overlay's upper and work dirs, lowerDev is mounted
// read-only (fstype e.g. "squashfs" or "ext4") on stateDir/lower, and the
// overlay goes on newroot. It returns the lower mount path.
//
// Put stateDir below /run (say /run/shoal): SwitchRoot moves /run into the
// new root, so the OS sees the pristine image at /run/shoal/lower.
func MountOverlayRoot(lowerDev, fstype, newroot, stateDir, tmpfsSize string) (lower string, err error) {
	data := "mode=0755"
	if tmpfsSize != "" {
		data += ",size=" + tmpfsSize
	}
	if err := mountFS("tmpfs", "tmpfs", stateDir, unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return "", fmt.Errorf("overlay root state: %w", err)
	}
	lower = filepath.Join(stateDir, "lower")
	upper, work := filepath.Join(stateDir, "upper"), filepath.Join(stateDir, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("overlay root: %w", err)
		}
	}
	if err := mountLower(lowerDev, fstype, lower); err != nil {
		_ = unix.Unmount(stateDir, 0)
		return "", fmt.Errorf("overlay root lower: %w", err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := mountFS("overlay", "overlay", newroot, 0, opts); err != nil {
		// Undo, so the caller can retry (say with another fstype).
		_ = unix.Unmount(lower, 0)
		_ = unix.Unmount(stateDir, 0)
		return "", fmt.Errorf("overlay root: %w", err)
	}
	return lower, nil
}

// mountLower mounts dev read-only on target. ext4 gets a second try with
// "noload": a read-only device cannot replay a journal left dirty by the
// machine that built the image.
func mountLower(dev, fstype, target string) error {
	err := mountFS(dev, fstype, target, unix.MS_RDONLY, "")
	if err != nil && fstype == "ext4" {
		if err2 := mountFS(dev, fstype, target, unix.MS_RDONLY, "noload"); err2 == nil {
			return nil
		}
	}
	return err
}
