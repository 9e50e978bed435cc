//go:build linux

package initsys

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Loop is a loop device attached read-only, with autoclear, to a file.
//
// With LO_FLAGS_AUTOCLEAR the kernel detaches the device when its last
// opener goes away, so Loop keeps the device open: mount Path first, then
// Close. From then on the mount holds the device, and unmounting it
// detaches the loop. (This is what mount(8) does with "-o loop".)
type Loop struct {
	Path string // e.g. /dev/loop0
	File string // the backing file
	dev  *os.File
}

// Close drops this process's reference to the device; if nothing mounted
// it, the kernel detaches it.
func (l *Loop) Close() error {
	if l.dev == nil {
		return nil
	}
	err := l.dev.Close()
	l.dev = nil
	if err != nil {
		return fmt.Errorf("close loop device %s: %w", l.Path, err)
	}
	return nil
}

// LoopControl is the loop control device; a variable for tests.
var LoopControl = "/dev/loop-control"

// loopNodeWait bounds the wait for devtmpfs to create /dev/loopN.
var loopNodeWait = 2 * time.Second

// LoopAttach attaches file read-only to a free loop device and returns it
// open (see Loop). A device taken by someone else between
// LOOP_CTL_GET_FREE and attaching is retried a few times.
func LoopAttach(file string) (*Loop, error) {
	backing, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("loop attach: %w", err)
	}
	defer backing.Close()
	ctl, err := openWhenPresent(LoopControl, os.O_RDWR, loopNodeWait)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("loop attach %s: %w (is the loop module loaded?)", file, err)
	} else if err != nil {
		return nil, fmt.Errorf("loop attach %s: %w", file, err)
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		l, err := loopAttachOnce(ctl, backing)
		if err == nil || !errors.Is(err, unix.EBUSY) || attempt == 4 {
			if err != nil {
				return nil, fmt.Errorf("loop attach %s: %w", file, err)
			}
			l.File = file
			return l, nil
		}
	}
}

func loopAttachOnce(ctl, backing *os.File) (*Loop, error) {
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return nil, fmt.Errorf("LOOP_CTL_GET_FREE on %s: %w", ctl.Name(), err)
	}
	path := fmt.Sprintf("/dev/loop%d", n)
	dev, err := openWhenPresent(path, os.O_RDONLY, loopNodeWait)
	if err != nil {
		return nil, err
	}
	if err := loopConfigure(dev, backing); err != nil {
		dev.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Loop{Path: path, dev: dev}, nil
}

// openWhenPresent opens a device node, waiting up to wait for devtmpfs to
// create it (right after a module load or LOOP_CTL_GET_FREE).
func openWhenPresent(path string, flag int, wait time.Duration) (*os.File, error) {
	deadline := time.Now().Add(wait)
	for {
		f, err := os.OpenFile(path, flag|unix.O_CLOEXEC, 0)
		if err == nil || !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loopConfigure binds backing to dev read-only with autoclear: in one step
// with LOOP_CONFIGURE (Linux 5.8+), else LOOP_SET_FD then
// LOOP_SET_STATUS64.
func loopConfigure(dev, backing *os.File) error {
	info := unix.LoopInfo64{Flags: unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR}
	copy(info.File_name[:len(info.File_name)-1], backing.Name())
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Info: info}
	err := unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("LOOP_CONFIGURE: %w", err)
	}
	if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
		return fmt.Errorf("LOOP_SET_FD: %w", err)
	}
	if err := unix.IoctlLoopSetStatus64(int(dev.Fd()), &info); err != nil {
		_ = unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("LOOP_SET_STATUS64: %w", err)
	}
	return nil
}
