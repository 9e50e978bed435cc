package bootsvc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// Serve answers the DHCP requests that arrive on conn as if they came to
// port (PortDHCP or PortPXE) until ctx is done, then closes conn, waits for
// replies in flight and returns nil. conn belongs to Serve from the call on.
//
// Production sockets come from server4.NewIPv4UDPConn(ifname, addr), which
// binds to the interface and sets SO_BROADCAST; tests pass a plain UDP
// socket on 127.0.0.1.
//
// server4 starts a goroutine per packet and does not wait for them; the
// flight tracker below makes Serve their owner, so none outlives it.
func (h *Handler) Serve(ctx context.Context, conn net.PacketConn, port int) error {
	if port != PortDHCP && port != PortPXE {
		conn.Close()
		return fmt.Errorf("dhcp: port %d is neither %d nor %d", port, PortDHCP, PortPXE)
	}
	var fl flight
	srv, err := server4.NewServer("", nil, func(c net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		if fl.enter() {
			defer fl.leave()
			h.handlePacket(c, peer, m, port)
		}
	}, server4.WithConn(conn), server4.WithLogger(libLogger{h.log}))
	if err != nil {
		conn.Close()
		return fmt.Errorf("dhcp: %w", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
			srv.Close()
		case <-stop:
		}
	})
	h.log.Info("dhcp serving", "addr", conn.LocalAddr().String(), "port", port, "mode", h.cfg.Mode)
	err = srv.Serve() // returns once the socket is closed; closes it on the way out
	close(stop)
	wg.Wait()
	fl.wait()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("dhcp: %w", err)
}

// handlePacket decides, logs and sends one reply.
func (h *Handler) handlePacket(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4, port int) {
	resp, d, err := h.Reply(req, port)
	log := h.log.With("mac", d.MAC, "xid", d.XID, "port", port, "peer", peer.String())
	if err != nil {
		log.Warn("dhcp reply failed", "err", err)
		return
	}
	if resp == nil {
		lvl := slog.LevelDebug
		if d.Reason == ReasonNoLease {
			lvl = slog.LevelWarn // an operator must learn why a machine got no address
		}
		log.Log(context.Background(), lvl, "dhcp ignored", "reason", d.Reason, "detail", d.Detail)
		h.notify(d)
		return
	}
	dst := ReplyAddr(req, peer)
	if resp.MessageType() == dhcpv4.MessageTypeNak && (req.GatewayIPAddr == nil || req.GatewayIPAddr.IsUnspecified()) {
		// RFC 2131 4.1: a NAK is broadcast when there is no relay, also
		// to a renewing client (its address is the one being refused).
		dst = &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
	}
	if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
		log.Warn("dhcp send failed", "dst", dst.String(), "err", err)
		return
	}
	h.notify(d)
	log.Info("dhcp answered", "action", d.Action, "reason", d.Reason, "arch", d.Arch, "ipxe", d.IPXE,
		"file", d.BootFile, "ip", d.IP, "host", d.Hostname, "dst", dst.String())
}

func (h *Handler) notify(d Decision) {
	if h.observe != nil {
		h.observe(d)
	}
}

// ReplyAddr is where a reply to req, received from peer, must go:
//
//   - via a relay (giaddr set): to the relay's server port, RFC 2131 4.1;
//   - from a client without an address (peer 0.0.0.0, which server4
//     reports as 255.255.255.255): broadcast to port 68. RFC 2131 would
//     allow unicast to yiaddr when the broadcast flag is clear, but that
//     needs an ARP-cache injection a UDP socket cannot do, and it fails
//     when the kernel's neighbour table is full (RECIPE.md, failure 5);
//     iPXE, udhcpc and OVMF all accept broadcasts, as dnsmasq's
//     dhcp-broadcast setting in the reference setup shows;
//   - otherwise (the client has an address: PXE requests to 4011,
//     renewals, tests on loopback): unicast back to the sender.
func ReplyAddr(req *dhcpv4.DHCPv4, peer net.Addr) net.Addr {
	if gi := req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: PortDHCP}
	}
	u, ok := peer.(*net.UDPAddr)
	if !ok || u.IP == nil || u.IP.IsUnspecified() || u.IP.Equal(net.IPv4bcast) {
		return &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
	}
	return u
}

// flight counts packet goroutines. enter refuses once wait has begun, so
// every successful enter happens before wait's Wait (the WaitGroup rule).
type flight struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (f *flight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	return true
}

func (f *flight) leave() { f.wg.Done() }

func (f *flight) wait() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wg.Wait()
}

// libLogger routes server4's chatter to slog at debug level; per-packet
// decisions are logged by handlePacket with structured fields instead.
type libLogger struct{ log *slog.Logger }

func (l libLogger) Printf(format string, v ...any) {
	l.log.Debug("dhcp server4: " + fmt.Sprintf(format, v...))
}

func (l libLogger) PrintMessage(prefix string, m *dhcpv4.DHCPv4) {
	l.log.Debug("dhcp server4: "+prefix, "summary", m.Summary())
}
