package bootsvc

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Lease is a dynamic address held by one MAC.
type Lease struct {
	IP      netip.Addr
	Expires time.Time
}

// LeaseStore is the catalogue's lease table as the DHCP handler sees it.
// Known reads the local replica (no leader needed); Acquire writes through
// Raft, so every node hands a MAC the same address: it renews the MAC's
// lease if it has one in the range, else takes want if free, else the
// lowest free address.
type LeaseStore interface {
	Known(mac string) (Lease, bool)
	Acquire(ctx context.Context, mac string, want netip.Addr, start, end netip.Addr, d time.Duration) (Lease, error)
	// Release drops the MAC's lease (through Raft); no lease is no error.
	Release(ctx context.Context, mac string) error
	// Holder is the MAC holding a dynamic lease on ip, from the replica.
	Holder(ip netip.Addr) (mac string, l Lease, ok bool)
}

// ErrPoolExhausted is returned by a LeaseStore when no address is free.
var ErrPoolExhausted = errors.New("dhcp: lease pool exhausted")

// ErrNoLeader marks an Acquire that could not reach the Raft leader. The
// handler then renews a lease the replica already knows, and says why it
// cannot make new ones.
var ErrNoLeader = errors.New("dhcp: no raft leader to record a new lease")

// minLocalRenewal is the shortest lease time handed out when a lease is
// renewed from the local replica alone: the client comes back soon, by
// which time a leader may be there to extend the lease for real.
const minLocalRenewal = time.Minute

// leaseWriteTimeout bounds one Acquire: a client retransmits after ~4 s,
// so an answer later than that is wasted.
const leaseWriteTimeout = 2 * time.Second

// address picks the address of a full-mode reply: the client's fixed
// catalogue IP, else a dynamic lease. It returns the lease time to send.
func (h *Handler) address(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, t bootTarget, d *Decision) (netip.Addr, uint32, error) {
	if t.known && t.client.IP != "" {
		ip, err := h.fixedIP(t)
		if err == nil && h.leases != nil {
			// The address was made fixed while a machine held it as a
			// dynamic lease: that machine moves at its next renewal (the
			// lease table skips fixed addresses); until then, handing the
			// address out again would put it on the network twice.
			if other, l, ok := h.leases.Holder(ip); ok && other != d.MAC && l.Expires.After(h.now()) {
				return netip.Addr{}, 0, fmt.Errorf("%w: fixed address %s is still leased to %s until %s", ErrNoLease, ip, other, l.Expires.UTC().Format(time.RFC3339))
			}
		}
		return ip, h.net.leaseS, err
	}
	if h.leases == nil || !h.net.start.IsValid() {
		return netip.Addr{}, 0, fmt.Errorf("%w: no dynamic range is configured (--dhcp-range)", ErrNoLease)
	}
	mac := d.MAC
	known, haveKnown := h.leases.Known(mac)
	now := h.now()
	usable := haveKnown && h.inRange(known.IP) && known.Expires.After(now)
	if mt == dhcpv4.MessageTypeOffer && usable {
		// The lease is recorded already; the REQUEST extends it.
		return known.IP, secondsUntil(known.Expires, now), nil
	}
	want := requested(req)
	if !want.IsValid() && haveKnown {
		want = known.IP
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseWriteTimeout)
	defer cancel()
	l, err := h.leases.Acquire(ctx, mac, want, h.net.start, h.net.end, h.cfg.LeaseTime)
	switch {
	case err == nil:
		return l.IP, secondsUntil(l.Expires, now), nil
	case errors.Is(err, ErrPoolExhausted):
		return netip.Addr{}, 0, fmt.Errorf("%w: %v", ErrNoLease, err)
	case usable:
		d.Detail = "lease renewed from the local replica, the raft leader is unreachable: " + err.Error()
		h.log.Warn("dhcp: renewing a known lease without the leader", "mac", mac, "ip", known.IP, "err", err)
		s := secondsUntil(known.Expires, now)
		if s < uint32(minLocalRenewal/time.Second) {
			s = uint32(minLocalRenewal / time.Second)
		}
		return known.IP, s, nil
	}
	return netip.Addr{}, 0, fmt.Errorf("%w: %s has no lease yet and a new one needs the raft leader: %v", ErrNoLease, mac, err)
}

func (h *Handler) inRange(ip netip.Addr) bool {
	return ip.IsValid() && !ip.Less(h.net.start) && !h.net.end.Less(ip)
}

func (h *Handler) now() time.Time {
	if h.clock != nil {
		return h.clock()
	}
	return time.Now()
}

// requested is option 50, else ciaddr, else the zero Addr.
func requested(req *dhcpv4.DHCPv4) netip.Addr {
	for _, ip := range [][]byte{req.RequestedIPAddress(), req.ClientIPAddr} {
		if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap().Is4() && !a.Unmap().IsUnspecified() {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

func secondsUntil(t, now time.Time) uint32 {
	s := t.Sub(now) / time.Second
	if s < 1 {
		return 1
	}
	if s > 1<<31 {
		return 1 << 31
	}
	return uint32(s)
}

// giveBack handles RELEASE and DECLINE addressed to this server (full
// mode; no reply is ever sent). RELEASE drops the MAC's dynamic lease so
// the address is free at once. DECLINE means the client found the offered
// address in use by another host: the lease moves to the next free
// address above it, so the client's next DISCOVER is offered that one
// instead of the same address again (the declined address stays free in
// the table; a host that uses it without a lease is the operator's to fix,
// and the warning says so).
func (h *Handler) giveBack(req *dhcpv4.DHCPv4, t dhcpv4.MessageType, d Decision) Decision {
	d.Reason = ReasonMessageType
	if sid := req.ServerIdentifier(); sid == nil || !sid.Equal(netIP(h.net.server)) || h.leases == nil || !h.net.start.IsValid() {
		d.Detail = t.String() + " not for this server's leases"
		return d
	}
	known, ok := h.leases.Known(d.MAC)
	if !ok {
		d.Detail = t.String() + " without a lease"
		return d
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseWriteTimeout)
	defer cancel()
	if t == dhcpv4.MessageTypeRelease {
		d.Reason = ReasonReleased
		if err := h.leases.Release(ctx, d.MAC); err != nil {
			d.Detail = "release not recorded: " + err.Error()
		}
		return d
	}
	d.Reason, d.IP = ReasonDeclined, known.IP.String()
	h.log.Warn("dhcp: a client declined its address: another host uses it without a lease", "mac", d.MAC, "ip", known.IP)
	if err := h.leases.Release(ctx, d.MAC); err != nil {
		d.Detail = "decline not recorded: " + err.Error()
		return d
	}
	if next := known.IP.Next(); h.inRange(next) {
		if _, err := h.leases.Acquire(ctx, d.MAC, next, h.net.start, h.net.end, h.cfg.LeaseTime); err != nil {
			d.Detail = "no other address: " + err.Error()
		}
	}
	return d
}
