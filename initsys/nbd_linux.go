//go:build linux

package initsys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/nbd"
)

// ioctls of the kernel's classic NBD interface, linux/nbd.h: _IO(0xab, n),
// which is 0xab00|n since _IO has no size or direction bits.
const (
	nbdSetSock       = 0xab00
	nbdSetBlksize    = 0xab01
	nbdDoIt          = 0xab03
	nbdClearSock     = 0xab04
	nbdClearQue      = 0xab05
	nbdSetSizeBlocks = 0xab07
	nbdDisconnect    = 0xab08
	nbdSetTimeout    = 0xab09
	nbdSetFlags      = 0xab0a
)

// NBDTimeout is how long the kernel waits for a reply before it gives up
// on the connection (NBD_SET_TIMEOUT); it then fails the request and
// NBD_DO_IT returns.
var NBDTimeout = 30 * time.Second

// NBDAttach hands c's socket to the kernel as the connection behind dev
// (e.g. /dev/nbd0) and blocks in NBD_DO_IT, the kernel serving requests
// from the device, until the connection ends: the server closed it or
// died, a request timed out (NBDTimeout), or NBDDisconnect was called.
// Then it clears the device's queue and socket and returns why. c is
// closed either way.
//
// A connection that is lost cannot be replaced while the device is in
// use: the kernel (6.1) keeps the device's old setup until its last
// opener (a mount) goes away and answers a new NBD_DO_IT with EBUSY, and
// requests fail with EIO meanwhile. NBDAttachAll is the way to survive a
// server: several connections from the start.
func NBDAttach(dev string, c *nbd.ClientConn) error {
	return NBDAttachAll(dev, []*nbd.ClientConn{c})
}

// NBDAttachAll is NBDAttach with one connection per element of cs,
// usually one per server, all to the same bytes. The kernel spreads
// requests over them; when one dies it sends new requests to the others
// at once and retries the ones in flight there after NBDTimeout. NBD_DO_IT
// returns only when the last one is gone. Every server must allow several
// connections (NBD_FLAG_CAN_MULTI_CONN) and announce the same size; the
// caller must make sure they serve the same version (see
// nbd.ClientConn.Description).
func NBDAttachAll(dev string, cs []*nbd.ClientConn) error {
	if err := checkConns(cs); err != nil {
		for _, c := range cs {
			c.Close()
		}
		return fmt.Errorf("nbd attach %s: %w", dev, err)
	}
	var socks []*os.File
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	for _, c := range cs {
		sock, err := c.Conn.File() // a dup: the kernel takes its own reference
		c.Conn.Close()
		if err == nil {
			// The kernel reads the socket itself; blocking is what
			// nbd-client hands over.
			err = unix.SetNonblock(int(sock.Fd()), false)
			socks = append(socks, sock)
		}
		if err != nil {
			return fmt.Errorf("nbd attach %s: socket to %s: %w", dev, c.Addr, err)
		}
	}
	f, err := openWhenPresent(dev, os.O_RDWR, loopNodeWait)
	if err != nil {
		return fmt.Errorf("nbd attach %s: %w (is the nbd module loaded?)", dev, err)
	}
	defer f.Close()

	done := make(chan error, 1)
	go func() { done <- doIt(f, socks, cs[0]) }()
	if err := <-done; err != nil {
		return fmt.Errorf("nbd %s (%s): %w", dev, cs[0].Export, err)
	}
	return nil
}

func checkConns(cs []*nbd.ClientConn) error {
	if len(cs) == 0 {
		return errors.New("no connection")
	}
	for _, c := range cs {
		switch {
		case c.Size <= 0:
			return fmt.Errorf("export %q from %s has size %d", c.Export, c.Addr, c.Size)
		case c.Size != cs[0].Size:
			return fmt.Errorf("export %q is %d bytes at %s but %d at %s", c.Export, c.Size, c.Addr, cs[0].Size, cs[0].Addr)
		case len(cs) > 1 && c.Flags&nbd.FlagCanMultiConn == 0:
			return fmt.Errorf("%s does not allow several connections to %q", c.Addr, c.Export)
		}
	}
	return nil
}

// ErrNBDConnEnded is wrapped by NBDAttach's error when NBD_DO_IT returns
// without an error of its own: the server closed the connection or died,
// or NBDDisconnect was called.
var ErrNBDConnEnded = errors.New("connection ended")

// doIt runs the ioctls on a thread of its own, locked and never unlocked
// (so it exits with the goroutine): the kernel binds the setup to the
// calling thread, and NBD_DO_IT waits interruptibly, so any signal
// delivered to the thread (the runtime's preemption, SIGCHLD, a SIGTERM
// meant for the process) would shut the connection down. The thread
// blocks all of them.
func doIt(f *os.File, socks []*os.File, c *nbd.ClientConn) error {
	runtime.LockOSThread()
	all := unix.Sigset_t{}
	for i := range all.Val {
		all.Val[i] = ^all.Val[i]
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &all, nil); err != nil {
		return fmt.Errorf("block signals: %w", err)
	}
	fd := f.Fd()
	blk := uint64(4096)
	if c.Size%4096 != 0 {
		blk = 512
	}
	type step struct {
		name     string
		req, arg uintptr
	}
	steps := []step{
		{"NBD_SET_BLKSIZE", nbdSetBlksize, uintptr(blk)},
		{"NBD_SET_SIZE_BLOCKS", nbdSetSizeBlocks, uintptr(uint64(c.Size) / blk)},
		{"NBD_SET_TIMEOUT", nbdSetTimeout, uintptr(NBDTimeout / time.Second)},
		{"NBD_SET_FLAGS", nbdSetFlags, uintptr(c.Flags)},
	}
	for _, s := range socks {
		steps = append(steps, step{"NBD_SET_SOCK", nbdSetSock, s.Fd()})
	}
	for _, s := range steps {
		if err := ioctl(fd, s.req, s.arg); err != nil {
			nbdClear(fd)
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	err := ioctl(fd, nbdDoIt, 0)
	nbdClear(fd)
	if err != nil {
		return fmt.Errorf("NBD_DO_IT: %w", err)
	}
	return ErrNBDConnEnded
}

// nbdClear fails what is queued and drops the socket, so that the device can
// take a new one.
func nbdClear(fd uintptr) {
	_ = ioctl(fd, nbdClearQue, 0)
	_ = ioctl(fd, nbdClearSock, 0)
}

func ioctl(fd, req, arg uintptr) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, arg); e != 0 {
		return e
	}
	return nil
}

// NBDDisconnect asks the kernel to end dev's connection properly
// (NBD_CMD_DISC to the server); NBD_DO_IT in NBDAttach then returns.
func NBDDisconnect(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("nbd disconnect: %w", err)
	}
	defer f.Close()
	if err := ioctl(f.Fd(), nbdDisconnect, 0); err != nil {
		return fmt.Errorf("nbd disconnect %s: NBD_DISCONNECT: %w", dev, err)
	}
	return nil
}

// NBDReady waits until dev has a non-zero size in /sys/block, which it
// has from NBD_SET_SIZE_BLOCKS while NBD_DO_IT runs.
func NBDReady(dev string, timeout time.Duration) error {
	sizeFile := filepath.Join("/sys/block", filepath.Base(dev), "size")
	deadline := time.Now().Add(timeout)
	var last string
	for {
		b, err := os.ReadFile(sizeFile)
		last = strings.TrimSpace(string(b))
		if err == nil && last != "" && last != "0" {
			return nil
		}
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nbd: %s not attached within %s (size: %s)", dev, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
