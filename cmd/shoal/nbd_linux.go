package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/initsys"
	"github.com/shoal-project/shoal/nbd"
)

// newNBDAttachCmd is the child process the diskless-nbd agent leaves
// running for the life of the machine: the kernel's ioctl interface needs
// a process blocked in NBD_DO_IT for as long as the device is to work.
func newNBDAttachCmd() *cobra.Command {
	var dev, export, servers string
	var retry time.Duration
	var multi bool
	cmd := &cobra.Command{
		Use:    "nbd-attach --device DEV --export NAME --server HOST:PORT[,HOST:PORT...]",
		Short:  "Attach an NBD export to a device and keep it attached, moving to the next server when one is lost",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list := splitList([]string{servers})
			switch {
			case dev == "":
				return fmt.Errorf("--device is required")
			case export == "":
				return fmt.Errorf("--export is required")
			case len(list) == 0:
				return fmt.Errorf("--server is required")
			}
			parent := cmd.Context()
			if parent == nil {
				parent = context.Background()
			}
			ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
			defer stop()
			a := &nbdAttacher{dev: dev, export: export, servers: list, retry: retry, multi: multi, out: cmd.ErrOrStderr()}
			return a.run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dev, "device", "/dev/nbd0", "NBD device to attach")
	f.StringVar(&export, "export", "", "export name: IMAGE or IMAGE@VERSION-PREFIX")
	f.StringVar(&servers, "server", "", "NBD servers, host:port, comma separated; tried in order, rotating after a failure")
	f.DurationVar(&retry, "retry", time.Second, "pause after every server has failed, or a connection was lost within it")
	f.BoolVar(&multi, "multi", true, "connect to every server at once, so that the device survives losing one "+
		"(the kernel cannot replace a lost connection while the device is mounted); false: one server at a time")
	f.DurationVar(&initsys.NBDTimeout, "timeout", initsys.NBDTimeout, "a request unanswered this long fails over to another connection (or fails)")
	return cmd
}

type nbdAttacher struct {
	dev, export string
	servers     []string
	retry       time.Duration
	multi       bool
	out         io.Writer
	attached    atomic.Bool // NBD_DO_IT may be running: stopping needs NBD_DISCONNECT
}

// run attaches until ctx is done (SIGTERM), then disconnects properly and
// returns nil. It never gives up on its own: for a root device, waiting
// for a server is the only useful thing to do, and each failure is
// printed.
func (a *nbdAttacher) run(ctx context.Context) error {
	finished := make(chan struct{})
	defer close(finished)
	go a.disconnectOnStop(ctx, finished)

	next := 0
	for ctx.Err() == nil {
		conns := a.dial(ctx, next)
		if len(conns) == 0 {
			if ctx.Err() == nil {
				a.printf("no server answered; retrying in %s", a.retry)
				sleepCtx(ctx, a.retry)
			}
			continue
		}
		addrs := make([]string, len(conns))
		for i, c := range conns {
			addrs[i] = c.Addr
		}
		lost := strings.Join(addrs, ",")
		desc := ""
		if d := conns[0].Description; d != "" {
			desc = ", " + d
		}
		a.printf("attached %s from %s to %s (%d bytes, flags %#x%s)", a.export, lost, a.dev, conns[0].Size, conns[0].Flags, desc)
		a.attached.Store(true)
		start := time.Now()
		err := initsys.NBDAttachAll(a.dev, conns)
		a.attached.Store(false)
		if ctx.Err() != nil {
			break
		}
		next = (slices.Index(a.servers, addrs[0]) + 1) % len(a.servers)
		a.printf("%s lost (%v), reconnecting to %s", lost, err, a.servers[next])
		if errors.Is(err, syscall.EBUSY) {
			a.printf("%s still holds the lost connection's setup while it is in use (mounted); "+
				"the kernel's ioctl interface cannot give it a new one until it is released", a.dev)
		}
		if time.Since(start) < a.retry {
			sleepCtx(ctx, a.retry)
		}
	}
	a.printf("stopped: %v", context.Cause(ctx))
	return nil
}

// dial connects to the servers starting with servers[first]: to the first
// that answers, or with --multi to every one that answers and serves the
// same version as the first.
func (a *nbdAttacher) dial(ctx context.Context, first int) []*nbd.ClientConn {
	var conns []*nbd.ClientConn
	for i := range a.servers {
		addr := a.servers[(first+i)%len(a.servers)]
		dctx, cancel := context.WithTimeout(ctx, nbd.DialTimeout)
		c, err := nbd.Dial(dctx, addr, a.export)
		cancel()
		switch {
		case ctx.Err() != nil:
			if c != nil {
				c.Close()
			}
			for _, c := range conns {
				c.Close()
			}
			return nil
		case err != nil:
			a.printf("%v", err)
			continue
		case len(conns) > 0 && (c.Size != conns[0].Size || c.Description != conns[0].Description):
			a.printf("%s serves %q as %d bytes (%s), %s as %d bytes (%s): not using %s",
				addr, a.export, c.Size, c.Description, conns[0].Addr, conns[0].Size, conns[0].Description, addr)
			c.Close()
			continue
		}
		conns = append(conns, c)
		if !a.multi || c.Flags&nbd.FlagCanMultiConn == 0 {
			break
		}
	}
	return conns
}

// disconnectOnStop sends NBD_DISCONNECT once ctx is done, and again each
// second while NBD_DO_IT has not returned (the signal may land between
// NBD_SET_SOCK and NBD_DO_IT, when there is nothing to disconnect yet).
func (a *nbdAttacher) disconnectOnStop(ctx context.Context, finished <-chan struct{}) {
	select {
	case <-finished:
		return
	case <-ctx.Done():
	}
	for range 30 {
		if a.attached.Load() {
			if err := initsys.NBDDisconnect(a.dev); err != nil {
				a.printf("%v", err)
			}
		}
		select {
		case <-finished:
			return
		case <-time.After(time.Second):
		}
	}
}

func (a *nbdAttacher) printf(format string, args ...any) {
	fmt.Fprintf(a.out, "shoal-agent: nbd: "+format+"\n", args...)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
