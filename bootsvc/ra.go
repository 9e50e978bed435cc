package bootsvc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv6"
	"golang.org/x/time/rate"
)

// RA answers IPv6 router solicitations on one interface with a minimal
// router advertisement: no prefix, M=0, O=0, router lifetime 0 ("I am not
// a default router"). iPXE configures DHCPv4 and IPv6 together and waits
// about 16 s for an RA before it gives up on IPv6; with this answer the
// wait ends at once (RECIPE.md, failure 2). Nothing else changes on the
// network: hosts learn no prefix, no route and no DNS from it.
type RA struct {
	Interface string
	Log       *slog.Logger // nil discards
	// Sent is called after each advertisement (metrics); may be nil.
	Sent func()
}

// raPacket is the whole ICMPv6 message: type 134, code 0, checksum 0 (the
// kernel fills it in on ICMPv6 raw sockets), cur hop limit 64, flags 0,
// router lifetime 0, reachable time 0, retrans timer 0.
var raPacket = []byte{134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// allNodes and allRouters are the link-local multicast groups.
var (
	allNodes   = net.ParseIP("ff02::1")
	allRouters = net.ParseIP("ff02::2")
)

// Serve answers until ctx is done. Bursts of solicitations get at most 10
// advertisements a second: the answer is the same for every host, and a
// multicast RA reaches all of them.
func (ra *RA) Serve(ctx context.Context) error {
	log := ra.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ifi, err := net.InterfaceByName(ra.Interface)
	if err != nil {
		return fmt.Errorf("ra: %w", err)
	}
	lc := net.ListenConfig{Control: bindToDevice(ra.Interface)}
	c, err := lc.ListenPacket(ctx, "ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("ra: listen on %s: %w", ra.Interface, err)
	}
	p := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	for _, step := range []func() error{
		func() error { return p.SetICMPFilter(&f) },
		func() error { return p.SetMulticastHopLimit(255) }, // RFC 4861: hop limit 255 or it is dropped
		func() error { return p.SetHopLimit(255) },
		func() error { return p.SetMulticastInterface(ifi) },
		func() error { return p.JoinGroup(ifi, &net.IPAddr{IP: allRouters}) },
	} {
		if err := step(); err != nil {
			c.Close()
			return fmt.Errorf("ra: set up %s: %w", ra.Interface, err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		<-ctx.Done()
		c.Close()
	})
	defer wg.Wait()
	log.Info("ipv6 router-advertisement responder on", "interface", ra.Interface)
	lim := rate.NewLimiter(10, 3)
	dst := &net.IPAddr{IP: allNodes, Zone: ra.Interface}
	buf := make([]byte, 1500)
	for {
		n, _, src, err := p.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ra: read: %w", err)
		}
		if n < 8 || buf[0] != byte(ipv6.ICMPTypeRouterSolicitation) || buf[1] != 0 || !lim.Allow() {
			continue
		}
		if _, err := p.WriteTo(raPacket, nil, dst); err != nil {
			// Typically the link-local address is still tentative (DAD)
			// right after the link came up; the host solicits again.
			log.Debug("ra: send failed", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		log.Debug("ra: answered a router solicitation", "from", src)
		if ra.Sent != nil {
			ra.Sent()
		}
	}
}

// bindToDevice sets SO_BINDTODEVICE, so a socket sees only its interface.
func bindToDevice(ifname string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, ifname)
		}); err != nil {
			return err
		}
		return serr
	}
}
