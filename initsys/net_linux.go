//go:build linux

package initsys

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"
)

// VendorClass is sent as DHCP option 60 so servers can tell the agent from
// firmware and from an installed OS.
const VendorClass = "shoal-agent"

// Lease is what NetUp configured.
type Lease struct {
	Interface string
	MAC       net.HardwareAddr
	IP        net.IP
	Mask      net.IPMask
	Router    net.IP // nil if the server sent none
	DNS       []net.IP
	Hostname  string
	ServerID  net.IP
	LeaseTime time.Duration
	ACK       *dhcpv4.DHCPv4 // for any other option the caller wants
}

// SysClassNet is where interfaces are listed; a variable for tests.
var SysClassNet = "/sys/class/net"

const (
	ifacePoll    = 100 * time.Millisecond
	dhcpTimeout  = 2 * time.Second // per DISCOVER or REQUEST send
	dhcpRetry    = 3               // sends per attempt
	dhcpBackoff  = time.Second     // between attempts
	waitLogEvery = 5 * time.Second
)

// NetUp brings up lo and one Ethernet interface, gets an IPv4 lease with
// DHCP and configures the address and default route. With ifname empty it
// takes the first Ethernet interface (by name) that has a carrier;
// otherwise it waits for ifname to appear. It retries until ctx ends,
// logging progress, and hostname (if not empty) is sent as option 12.
func NetUp(ctx context.Context, ifname, hostname string, log *slog.Logger) (Lease, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := setLinkUp("lo"); err != nil {
		return Lease{}, fmt.Errorf("net up: %w", err)
	}
	ifname, err := waitInterface(ctx, ifname, log)
	if err != nil {
		return Lease{}, fmt.Errorf("net up: %w", err)
	}
	if err := waitRandom(ctx, log); err != nil {
		return Lease{}, fmt.Errorf("net up: %w", err)
	}
	ack, err := dhcpLease(ctx, ifname, hostname, log)
	if err != nil {
		return Lease{}, fmt.Errorf("net up: %w", err)
	}
	lease, err := configure(ifname, ack)
	if err != nil {
		return Lease{}, fmt.Errorf("net up: %w", err)
	}
	log.Info("network configured", "interface", lease.Interface, "ip", lease.IP,
		"mask", net.IP(lease.Mask).String(), "router", lease.Router, "server", lease.ServerID)
	return lease, nil
}

// waitInterface polls until the named interface exists (and is set up), or
// until an Ethernet interface has a carrier.
func waitInterface(ctx context.Context, ifname string, log *slog.Logger) (string, error) {
	t := time.NewTicker(ifacePoll)
	defer t.Stop()
	lastLog := time.Now()
	for {
		name, err := pickInterface(ifname)
		if err != nil {
			return "", err
		}
		if name != "" {
			return name, nil
		}
		if time.Since(lastLog) >= waitLogEvery {
			lastLog = time.Now()
			log.Info("waiting for a network interface", "want", cmp.Or(ifname, "any Ethernet with carrier"))
		}
		select {
		case <-ctx.Done():
			if ifname != "" {
				return "", fmt.Errorf("interface %s did not appear in %s: %w", ifname, SysClassNet, ctx.Err())
			}
			return "", fmt.Errorf("no Ethernet interface with a carrier in %s (found %s): %w",
				SysClassNet, strings.Join(ethernetInterfaces(), ", "), ctx.Err())
		case <-t.C:
		}
	}
}

// pickInterface returns ifname once it exists and is up, or (ifname
// empty) the first Ethernet interface with a carrier, setting every
// candidate up so its carrier can be read (the kernel reports no carrier
// for a down link). "" means not yet.
func pickInterface(ifname string) (string, error) {
	if ifname != "" {
		if _, err := os.Stat(filepath.Join(SysClassNet, ifname)); err != nil {
			return "", nil
		}
		return ifname, setLinkUp(ifname)
	}
	for _, name := range ethernetInterfaces() {
		// One NIC that will not come up (say, missing firmware) must not
		// stop us from using another.
		if err := setLinkUp(name); err != nil {
			continue
		}
		if readSys(name, "carrier") == "1" {
			return name, nil
		}
	}
	return "", nil
}

// ethernetInterfaces lists interfaces of type ARPHRD_ETHER (1), sorted.
func ethernetInterfaces() []string {
	entries, _ := os.ReadDir(SysClassNet)
	var names []string
	for _, e := range entries {
		if e.Name() != "lo" && readSys(e.Name(), "type") == "1" {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

func readSys(ifname, attr string) string {
	b, err := os.ReadFile(filepath.Join(SysClassNet, ifname, attr))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// waitRandom returns once the kernel's random number generator is ready.
// The DHCP library draws each transaction ID with getrandom(GRND_NONBLOCK)
// and, while the generator is not ready, waits passively for entropy: more
// than two minutes on an idle QEMU/TCG VM without an RNG device (seen with
// the Debian 6.1 cloud kernel). A blocking getrandom makes the kernel
// gather jitter entropy itself (Linux 5.4+), which takes about a second.
func waitRandom(ctx context.Context, log *slog.Logger) error {
	var b [1]byte
	if _, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK); err == nil {
		return nil
	}
	log.Info("waiting for the kernel's random number generator")
	done := make(chan error, 1)
	// The blocking call cannot be interrupted; if ctx ends first it is
	// left behind, which is harmless in a process about to give up.
	go func() {
		_, err := unix.Getrandom(b[:], 0)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("getrandom: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kernel random number generator not ready: %w", ctx.Err())
	}
}

// dhcpLease runs DISCOVER/OFFER/REQUEST/ACK on ifname until it gets an ACK
// or ctx ends.
func dhcpLease(ctx context.Context, ifname, hostname string, log *slog.Logger) (*dhcpv4.DHCPv4, error) {
	client, err := nclient4.New(ifname, nclient4.WithTimeout(dhcpTimeout), nclient4.WithRetry(dhcpRetry))
	if err != nil {
		return nil, fmt.Errorf("dhcp on %s: %w", ifname, err)
	}
	defer client.Close()
	mods := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(VendorClass)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
			dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName),
	}
	if hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(hostname)))
	}
	for attempt := 1; ; attempt++ {
		log.Info("dhcp: requesting a lease", "interface", ifname, "attempt", attempt)
		lease, err := client.Request(ctx, mods...)
		if err == nil {
			return lease.ACK, nil
		}
		log.Warn("dhcp: no lease yet", "interface", ifname, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dhcp on %s: no lease after %d attempts: %w (last: %v)", ifname, attempt, ctx.Err(), err)
		case <-time.After(dhcpBackoff):
		}
	}
}

// configure puts the ACK's address and default route on ifname.
func configure(ifname string, ack *dhcpv4.DHCPv4) (Lease, error) {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return Lease{}, fmt.Errorf("configure %s: %w", ifname, err)
	}
	l := leaseFromACK(iface, ack)
	if l.IP == nil {
		return Lease{}, fmt.Errorf("configure %s: DHCP ACK from %s has no IPv4 address", ifname, l.ServerID)
	}
	if err := addAddr4(iface.Index, l.IP, l.Mask); err != nil {
		return Lease{}, fmt.Errorf("configure %s: %w", ifname, err)
	}
	if l.Router != nil {
		onlink := !(&net.IPNet{IP: l.IP.Mask(l.Mask), Mask: l.Mask}).Contains(l.Router)
		if err := addDefaultRoute4(iface.Index, l.Router, onlink); err != nil {
			return Lease{}, fmt.Errorf("configure %s: %w", ifname, err)
		}
	}
	return l, nil
}

func leaseFromACK(iface *net.Interface, ack *dhcpv4.DHCPv4) Lease {
	l := Lease{
		Interface: iface.Name,
		MAC:       iface.HardwareAddr,
		IP:        ack.YourIPAddr.To4(),
		Mask:      ack.SubnetMask(),
		DNS:       ack.DNS(),
		Hostname:  ack.HostName(),
		ServerID:  ack.ServerIdentifier(),
		LeaseTime: ack.IPAddressLeaseTime(0),
		ACK:       ack,
	}
	if l.IP != nil && l.IP.IsUnspecified() {
		l.IP = nil
	}
	if len(l.Mask) == 0 && l.IP != nil {
		l.Mask = l.IP.DefaultMask()
	}
	if len(l.Mask) == 16 {
		l.Mask = l.Mask[12:]
	}
	if r := ack.Router(); len(r) > 0 {
		l.Router = r[0].To4()
	}
	return l
}
