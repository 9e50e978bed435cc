//go:build linux

package initsys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// movedMounts go along into the new root, in this order.
var movedMounts = []string{"/dev", "/proc", "/sys", "/run"}

// SwitchRoot hands the machine over to the OS mounted on newroot, like
// busybox switch_root: it moves /dev, /proc, /sys and /run into newroot,
// frees the initramfs (deleting what is on the old root's device, never
// crossing into other mounts, and only if the old root is a ramfs or
// tmpfs), makes newroot the root and execs init (a path inside newroot)
// with argv[0] = init and env. It returns only on error; after the first
// mount has moved, an error leaves the machine half switched, so the
// caller should report it and power off.
func SwitchRoot(newroot, init string, env []string) error {
	// Like busybox: deleting "/" is only right for the initramfs's PID 1.
	if pid := os.Getpid(); pid != 1 {
		return fmt.Errorf("switch root to %s: must run as PID 1, not %d", newroot, pid)
	}
	if err := checkSwitchTarget(newroot, init); err != nil {
		return err
	}
	// Which of them are mounts is decided up front: once /proc has moved,
	// /proc/self/mounts is gone from the old root.
	var moves []string
	for _, m := range movedMounts {
		mounted, err := isMounted(m)
		if err != nil {
			return fmt.Errorf("switch root: %w", err)
		}
		if mounted {
			moves = append(moves, m)
		}
	}
	for _, m := range moves {
		if err := moveMount(m, filepath.Join(newroot, m)); err != nil {
			return fmt.Errorf("switch root: %w", err)
		}
	}
	if err := unix.Chdir(newroot); err != nil {
		return fmt.Errorf("switch root: chdir %s: %w", newroot, err)
	}
	if err := freeInitramfs("/"); err != nil {
		// Not fatal: the memory stays used, the OS still boots.
		Consolef("switch root: freeing the initramfs: %v", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: move %s to /: %w", newroot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: chroot %s: %w", newroot, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch root: chdir / in %s: %w", newroot, err)
	}
	if err := unix.Exec(init, []string{init}, env); err != nil {
		return fmt.Errorf("switch root: exec %s in %s: %w", init, newroot, err)
	}
	return nil
}

// checkSwitchTarget refuses before anything is changed: newroot must be a
// mount point and init an executable file inside it.
func checkSwitchTarget(newroot, init string) error {
	var root, nr unix.Stat_t
	if err := unix.Stat("/", &root); err != nil {
		return fmt.Errorf("switch root: stat /: %w", err)
	}
	if err := unix.Stat(newroot, &nr); err != nil {
		return fmt.Errorf("switch root: stat new root %s: %w", newroot, err)
	}
	if nr.Dev == root.Dev {
		return fmt.Errorf("switch root: new root %s is not a mount point", newroot)
	}
	if !filepath.IsAbs(init) {
		return fmt.Errorf("switch root: init %q is not an absolute path", init)
	}
	// Access follows symlinks relative to the host root, so an absolute
	// symlink like /sbin/init -> /lib/systemd/systemd would be checked in
	// the initramfs. Resolve inside newroot with a bounded walk instead.
	target, err := resolveIn(newroot, init)
	if err != nil {
		return fmt.Errorf("switch root: init %s in %s: %w", init, newroot, err)
	}
	if err := unix.Access(target, unix.X_OK); err != nil {
		return fmt.Errorf("switch root: init %s in %s (%s): %w", init, newroot, target, err)
	}
	return nil
}

// resolveIn resolves path inside root, following symlinks as if root were
// "/" (at most 40, like the kernel).
func resolveIn(root, path string) (string, error) {
	cur := "/"
	rest := path
	for hops := 0; ; {
		var elem string
		for elem == "" && rest != "" {
			elem, rest = splitFirst(rest)
		}
		if elem == "" {
			return filepath.Join(root, cur), nil
		}
		next := filepath.Join(cur, elem)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", unix.ELOOP
		}
		link, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(link) {
			cur = "/"
		}
		rest = link + "/" + rest
	}
}

func splitFirst(p string) (string, string) {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			return p[:i], p[i+1:]
		}
	}
	return p, ""
}

// moveMount moves the mount on src to dst, creating dst if the image lacks
// it. A src that is not a mount point (say /run was never mounted) is
// skipped.
func moveMount(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("move mount %s: %w", src, err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move mount %s to %s: %w", src, dst, err)
	}
	return nil
}

// freeInitramfs deletes what it can below dir on dir's own device. It
// refuses unless dir is on a ramfs or tmpfs, so a mistaken call on a real
// disk does no harm.
func freeInitramfs(dir string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	// uint32: Statfs_t.Type is int32 on 32-bit platforms, where
	// RAMFS_MAGIC does not fit.
	if magic := uint32(fs.Type); magic != unix.RAMFS_MAGIC && magic != unix.TMPFS_MAGIC {
		return fmt.Errorf("%s is not an initramfs (file system magic %#x), not deleting anything", dir, magic)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	return removeSameDevice(dir, st.Dev, false)
}

// removeSameDevice deletes dir's contents (and dir itself if self) that
// live on device dev, without descending into other mounts. It carries on
// past errors and returns them joined.
func removeSameDevice(dir string, dev uint64, self bool) error {
	var errs []error
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Dev != dev {
			continue // a mount point: not ours to delete
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			errs = append(errs, removeSameDevice(p, dev, true))
			continue
		}
		if err := unix.Unlink(p); err != nil {
			errs = append(errs, fmt.Errorf("unlink %s: %w", p, err))
		}
	}
	if self {
		if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
