package bootsvc

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// fakeLeases allocates like the catalogue does: renew the MAC's own lease,
// else the wanted address if free, else the lowest free one.
type fakeLeases struct {
	mu       sync.Mutex
	now      time.Time
	byMAC    map[string]Lease
	down     bool // Acquire fails as without a leader
	acquires int
}

func newFakeLeases(now time.Time) *fakeLeases {
	return &fakeLeases{now: now, byMAC: map[string]Lease{}}
}

func (f *fakeLeases) Known(mac string) (Lease, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.byMAC[mac]
	return l, ok
}

func (f *fakeLeases) Acquire(_ context.Context, mac string, want, start, end netip.Addr, d time.Duration) (Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acquires++
	if f.down {
		return Lease{}, ErrNoLeader
	}
	taken := func(ip netip.Addr) bool {
		for m, l := range f.byMAC {
			if m != mac && l.IP == ip && l.Expires.After(f.now) {
				return true
			}
		}
		return false
	}
	in := func(ip netip.Addr) bool { return ip.IsValid() && !ip.Less(start) && !end.Less(ip) }
	pick := netip.Addr{}
	if l, ok := f.byMAC[mac]; ok && in(l.IP) && !taken(l.IP) {
		pick = l.IP
	} else if in(want) && !taken(want) {
		pick = want
	} else {
		for ip := start; !end.Less(ip); ip = ip.Next() {
			if !taken(ip) {
				pick = ip
				break
			}
		}
	}
	if !pick.IsValid() {
		return Lease{}, ErrPoolExhausted
	}
	l := Lease{IP: pick, Expires: f.now.Add(d)}
	f.byMAC[mac] = l
	return l, nil
}

func (f *fakeLeases) Release(_ context.Context, mac string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return ErrNoLeader
	}
	delete(f.byMAC, mac)
	return nil
}

func (f *fakeLeases) Holder(ip netip.Addr) (string, Lease, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for m, l := range f.byMAC {
		if l.IP == ip {
			return m, l, true
		}
	}
	return "", Lease{}, false
}

// TestFixedAddressStillLeased: a client whose fixed address another
// machine still holds as a dynamic lease gets no answer until it moves.
func TestFixedAddressStillLeased(t *testing.T) {
	h, fl := newLeaseHandler(t, "10.77.0.5", "10.77.0.20") // pc1's fixed 10.77.0.11 is in the pool
	fl.byMAC["02:00:00:00:ff:01"] = Lease{IP: netip.MustParseAddr("10.77.0.11"), Expires: fl.now.Add(time.Hour)}
	resp, d, _ := h.Reply(request(t, macKnown, dhcpv4.MessageTypeDiscover), PortDHCP)
	if resp != nil || d.Reason != ReasonNoLease || !strings.Contains(d.Detail, "still leased to 02:00:00:00:ff:01") {
		t.Fatalf("fixed address held by another lease: %+v", d)
	}
	fl.byMAC["02:00:00:00:ff:01"] = Lease{IP: netip.MustParseAddr("10.77.0.11"), Expires: fl.now.Add(-time.Second)}
	if _, d, _ := h.Reply(request(t, macKnown, dhcpv4.MessageTypeDiscover), PortDHCP); d.IP != "10.77.0.11" {
		t.Fatalf("after the lease expired: %+v", d)
	}
}

// TestReleaseAndDecline: RELEASE frees the address; DECLINE moves the
// client to another one, so it does not loop on an address in use.
func TestReleaseAndDecline(t *testing.T) {
	h, fl := newLeaseHandler(t, "10.77.0.100", "10.77.0.110")
	const mac = "02:00:00:00:ee:01"
	if _, d, _ := h.Reply(request(t, mac, dhcpv4.MessageTypeDiscover), PortDHCP); d.IP != "10.77.0.100" {
		t.Fatalf("discover: %+v", d)
	}
	decline := request(t, mac, dhcpv4.MessageTypeDecline, ourServerID,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.100"))))
	if resp, d, _ := h.Reply(decline, PortDHCP); resp != nil || d.Reason != ReasonDeclined {
		t.Fatalf("decline: %+v", d)
	}
	if _, d, _ := h.Reply(request(t, mac, dhcpv4.MessageTypeDiscover), PortDHCP); d.IP != "10.77.0.101" {
		t.Fatalf("discover after decline offered %s, want 10.77.0.101", d.IP)
	}
	release := request(t, mac, dhcpv4.MessageTypeRelease, ourServerID, dhcpv4.WithClientIP(net.ParseIP("10.77.0.101")))
	if resp, d, _ := h.Reply(release, PortDHCP); resp != nil || d.Reason != ReasonReleased {
		t.Fatalf("release: %+v", d)
	}
	if _, ok := fl.Known(mac); ok {
		t.Fatalf("lease kept after RELEASE")
	}
	// A RELEASE for another server changes nothing.
	h.Reply(request(t, mac, dhcpv4.MessageTypeDiscover), PortDHCP)
	other := request(t, mac, dhcpv4.MessageTypeRelease, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.2"))))
	if _, d, _ := h.Reply(other, PortDHCP); d.Reason == ReasonReleased {
		t.Fatalf("released on behalf of another server")
	}
	if _, ok := fl.Known(mac); !ok {
		t.Fatalf("another server's RELEASE dropped our lease")
	}
}

func newLeaseHandler(t *testing.T, rangeStart, rangeEnd string) (*Handler, *fakeLeases) {
	t.Helper()
	cfg := testDHCPConfig(ModeFull)
	cfg.RangeStart, cfg.RangeEnd = rangeStart, rangeEnd
	cfg.Unknown, cfg.DefaultGroup = UnknownDefaultGroup, "lab"
	h := newTestHandler(t, cfg)
	now := time.Unix(1_800_000_000, 0)
	fl := newFakeLeases(now)
	h.SetLeases(fl)
	h.clock = func() time.Time { return now }
	return h, fl
}

func leaseSeconds(t *testing.T, resp *dhcpv4.DHCPv4) time.Duration {
	t.Helper()
	got, err := dhcpv4.FromBytes(resp.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return got.IPAddressLeaseTime(0)
}

func TestDynamicLeaseDORA(t *testing.T) {
	h, fl := newLeaseHandler(t, "10.77.0.100", "10.77.0.101")
	const mac = "02:00:00:00:aa:01"
	resp, d, err := h.Reply(request(t, mac, dhcpv4.MessageTypeDiscover, pxeClient(iana.INTEL_X86PC)...), PortDHCP)
	if err != nil || d.Action != ActionOffer || d.Reason != ReasonDynamic || resp.YourIPAddr.String() != "10.77.0.100" {
		t.Fatalf("discover: %+v err %v", d, err)
	}
	if got := leaseSeconds(t, resp); got != time.Hour {
		t.Errorf("offered lease time %s, want 1h", got)
	}
	// A second DISCOVER offers the recorded lease without writing again.
	before := fl.acquires
	if _, d, _ = h.Reply(request(t, mac, dhcpv4.MessageTypeDiscover), PortDHCP); d.IP != "10.77.0.100" || fl.acquires != before {
		t.Fatalf("repeat discover: ip %s, acquires %d -> %d", d.IP, before, fl.acquires)
	}
	// REQUEST extends it through the store.
	req := request(t, mac, dhcpv4.MessageTypeRequest, ourServerID,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.100"))))
	if _, d, _ = h.Reply(req, PortDHCP); d.Action != ActionAck || d.IP != "10.77.0.100" || fl.acquires != before+1 {
		t.Fatalf("request: %+v acquires %d", d, fl.acquires)
	}
	// Asking for an address that is not its lease gets a NAK.
	req = request(t, mac, dhcpv4.MessageTypeRequest, ourServerID,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.5"))))
	if _, d, _ = h.Reply(req, PortDHCP); d.Action != ActionNak {
		t.Fatalf("foreign request: %+v", d)
	}
	// A second machine gets the next address; a third finds the pool full.
	if _, d, _ = h.Reply(request(t, "02:00:00:00:aa:02", dhcpv4.MessageTypeDiscover), PortDHCP); d.IP != "10.77.0.101" {
		t.Fatalf("second machine: %+v", d)
	}
	resp, d, _ = h.Reply(request(t, "02:00:00:00:aa:03", dhcpv4.MessageTypeDiscover), PortDHCP)
	if resp != nil || d.Reason != ReasonNoLease {
		t.Fatalf("exhausted pool: %+v", d)
	}
}

// Without a leader a node renews what its replica knows and refuses new
// machines with a reason.
func TestDynamicLeaseWithoutLeader(t *testing.T) {
	h, fl := newLeaseHandler(t, "10.77.0.100", "10.77.0.150")
	const mac = "02:00:00:00:bb:01"
	if _, d, _ := h.Reply(request(t, mac, dhcpv4.MessageTypeDiscover), PortDHCP); d.IP != "10.77.0.100" {
		t.Fatalf("discover: %+v", d)
	}
	fl.mu.Lock()
	fl.down = true
	l := fl.byMAC[mac]
	l.Expires = fl.now.Add(10 * time.Second) // nearly expired
	fl.byMAC[mac] = l
	fl.mu.Unlock()

	renew := request(t, mac, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("10.77.0.100")))
	resp, d, err := h.Reply(renew, PortDHCP)
	if err != nil || d.Action != ActionAck || d.IP != "10.77.0.100" {
		t.Fatalf("renewal without leader: %+v err %v", d, err)
	}
	if got := leaseSeconds(t, resp); got != minLocalRenewal {
		t.Errorf("local renewal lease time %s, want %s", got, minLocalRenewal)
	}
	resp, d, _ = h.Reply(request(t, "02:00:00:00:bb:02", dhcpv4.MessageTypeDiscover), PortDHCP)
	if resp != nil || d.Reason != ReasonNoLease || !strings.Contains(d.Detail, "leader") {
		t.Fatalf("new machine without leader: resp %v decision %+v", resp != nil, d)
	}
	// An expired lease is not renewed from the replica: another machine
	// may have it by now.
	fl.mu.Lock()
	l.Expires = fl.now.Add(-time.Second)
	fl.byMAC[mac] = l
	fl.mu.Unlock()
	if resp, d, _ = h.Reply(renew, PortDHCP); resp != nil || d.Reason != ReasonNoLease {
		t.Fatalf("expired lease renewed without leader: %+v", d)
	}
}

func TestDynamicLeaseNeedsRange(t *testing.T) {
	cfg := testDHCPConfig(ModeFull)
	cfg.RangeStart, cfg.RangeEnd = "", ""
	cfg.Unknown, cfg.DefaultGroup = UnknownDefaultGroup, "lab"
	h := newTestHandler(t, cfg)
	h.SetLeases(newFakeLeases(time.Now()))
	resp, d, _ := h.Reply(request(t, "02:00:00:00:cc:01", dhcpv4.MessageTypeDiscover), PortDHCP)
	if resp != nil || d.Reason != ReasonNoLease || !strings.Contains(d.Detail, "--dhcp-range") {
		t.Fatalf("%+v", d)
	}
}

func TestRequestedAddress(t *testing.T) {
	r := request(t, "02:00:00:00:dd:01", dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("10.0.0.9")))
	if got := requested(r); got != netip.MustParseAddr("10.0.0.9") {
		t.Errorf("ciaddr: %v", got)
	}
	r = request(t, "02:00:00:00:dd:01", dhcpv4.MessageTypeRequest)
	if got := requested(r); got.IsValid() {
		t.Errorf("none: %v", got)
	}
}
