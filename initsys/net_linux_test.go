//go:build linux

package initsys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestLeaseFromACK(t *testing.T) {
	ack, err := dhcpv4.New(
		dhcpv4.WithYourIP(net.IPv4(10, 1, 2, 3)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(10, 1, 2, 1), net.IPv4(10, 1, 2, 254)),
		dhcpv4.WithDNS(net.IPv4(9, 9, 9, 9)),
		dhcpv4.WithServerIP(net.IPv4(10, 1, 2, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 1, 2, 1))),
		dhcpv4.WithOption(dhcpv4.OptHostName("pc01")),
		dhcpv4.WithLeaseTime(3600),
	)
	if err != nil {
		t.Fatal(err)
	}
	iface := &net.Interface{Name: "eth0", HardwareAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}}
	l := leaseFromACK(iface, ack)
	got := fmt.Sprintf("%s %s %s/%s via %s dns %v host %s server %s for %s",
		l.Interface, l.MAC, l.IP, net.IP(l.Mask), l.Router, l.DNS, l.Hostname, l.ServerID, l.LeaseTime)
	want := "eth0 52:54:00:00:00:01 10.1.2.3/255.255.255.0 via 10.1.2.1 dns [9.9.9.9] host pc01 server 10.1.2.1 for 1h0m0s"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	// No mask option: the class default, so configure still has a prefix.
	bare, _ := dhcpv4.New(dhcpv4.WithYourIP(net.IPv4(10, 9, 8, 7)))
	if l := leaseFromACK(iface, bare); net.IP(l.Mask).String() != "255.0.0.0" || l.Router != nil {
		t.Errorf("bare ACK: mask %s router %v", net.IP(l.Mask), l.Router)
	}
}

// TestWaitInterfaceMissing needs no privileges: it only reads /sys.
func TestWaitInterfaceMissing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := waitInterface(ctx, "shoalnone0", slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "interface shoalnone0 did not appear") ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
}

func TestEthernetInterfacesFake(t *testing.T) {
	dir := t.TempDir()
	for name, typ := range map[string]string{"lo": "772", "eth1": "1", "eth0": "1", "wg0": "65534"} {
		copyFile(t, "/dev/null", filepath.Join(dir, name, "type"), 0o644)
		if err := os.WriteFile(filepath.Join(dir, name, "type"), []byte(typ+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := SysClassNet
	SysClassNet = dir
	t.Cleanup(func() { SysClassNet = old })
	if got := strings.Join(ethernetInterfaces(), ","); got != "eth0,eth1" {
		t.Errorf("ethernetInterfaces = %s", got)
	}
}

// lockedBuffer collects a child's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const (
	testMAC    = "52:54:00:5a:0a:42"
	testIP     = "10.231.0.42"
	testRouter = "10.231.0.1"
)

// TestNetUp runs NetUp for real in a network namespace of its own, with
// dnsmasq answering from a second namespace across a veth pair. dnsmasq
// gives a router only to clients whose vendor class is shoal-agent, so a
// default route proves option 60 was sent.
func TestNetUp(t *testing.T) {
	needRootTools(t, "ip", "dnsmasq")
	_, srv := netnsPair(t)
	dir := t.TempDir()
	dnsmasq := exec.Command("ip", "netns", "exec", srv, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--user=root", "--group=root", "--pid-file=", "--log-facility=-", "--log-dhcp",
		"--port=0", "--interface=srv0", "--bind-interfaces",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--dhcp-range=10.231.0.100,10.231.0.150,255.255.255.0,1h",
		"--dhcp-host="+testMAC+","+testIP,
		"--dhcp-vendorclass=set:shoal,shoal-agent",
		"--dhcp-option=tag:shoal,option:router,"+testRouter,
		"--dhcp-option=option:dns-server,10.231.0.53")
	var dlog lockedBuffer
	dnsmasq.Stdout, dnsmasq.Stderr = &dlog, &dlog
	if err := dnsmasq.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dnsmasq.Process.Kill()
		_ = dnsmasq.Wait()
		t.Logf("dnsmasq log:\n%s", dlog.String())
	})

	out, err := runHelper(t, 60*time.Second, "netup", []string{"SHOAL_TEST_HOSTNAME=agent-test"},
		"ip", "netns", "exec", cliNS(t))
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	want := fmt.Sprintf("LEASE eth0 %s %s/255.255.255.0 router %s dns [10.231.0.53] server %s", testMAC, testIP, testRouter, testRouter)
	if !hasLine(out, want) {
		t.Errorf("helper output lacks %q", want)
	}
	if !hasLine(out, "NETUP-OK") {
		t.Error("helper output lacks NETUP-OK")
	}
	if log := dlog.String(); !strings.Contains(log, "client provides name: agent-test") ||
		!strings.Contains(log, "vendor class: shoal-agent") {
		t.Error("dnsmasq did not see the hostname and vendor class")
	}
}

// netnsPair creates a client and a server network namespace joined by a
// veth pair (eth0 with testMAC in the client, srv0 with testRouter/24 in
// the server), deleted again when the test ends.
func netnsPair(t *testing.T) (cli, srv string) {
	t.Helper()
	cli, srv = cliNS(t), fmt.Sprintf("isys%ds", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{cli, srv} {
		ip("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	ip("-n", cli, "link", "add", "eth0", "address", testMAC, "type", "veth", "peer", "name", "srv0", "netns", srv)
	ip("-n", srv, "addr", "add", testRouter+"/24", "dev", "srv0")
	ip("-n", srv, "link", "set", "srv0", "up")
	return cli, srv
}

func cliNS(t *testing.T) string { return fmt.Sprintf("isys%dc", os.Getpid()) }

// TestNetUpNoServer checks that NetUp keeps trying until its context ends
// and then says which interface got no lease.
func TestNetUpNoServer(t *testing.T) {
	needRootTools(t, "ip")
	cli, _ := netnsPair(t)
	start := time.Now()
	out, err := runHelper(t, 30*time.Second, "netup-noserver", nil, "ip", "netns", "exec", cli)
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	if !hasLine(out, "NOSERVER-OK") {
		t.Error("helper output lacks NOSERVER-OK")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s; NetUp did not stop at its deadline", d)
	}
}

func helperNetUpNoServer() error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var logBuf bytes.Buffer
	_, err := NetUp(ctx, "", "", slog.New(slog.NewTextHandler(&logBuf, nil)))
	fmt.Print(logBuf.String())
	if err == nil {
		return errors.New("NetUp got a lease with no DHCP server")
	}
	fmt.Println("ERR", err)
	for _, s := range []string{"dhcp on eth0", "no lease after", "deadline exceeded"} {
		if !strings.Contains(err.Error(), s) {
			return fmt.Errorf("error %q lacks %q", err, s)
		}
	}
	if !strings.Contains(logBuf.String(), "dhcp: requesting a lease") {
		return errors.New("no progress logged")
	}
	fmt.Println("NOSERVER-OK")
	return nil
}

// helperNetUp runs inside the client namespace.
func helperNetUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	l, err := NetUp(ctx, "", os.Getenv("SHOAL_TEST_HOSTNAME"), log)
	if err != nil {
		return err
	}
	fmt.Printf("LEASE %s %s %s/%s router %s dns %v server %s\n",
		l.Interface, l.MAC, l.IP, net.IP(l.Mask), l.Router, l.DNS, l.ServerID)
	iface, err := net.InterfaceByName(l.Interface)
	if err != nil {
		return err
	}
	addrs, _ := iface.Addrs()
	if !strings.Contains(fmt.Sprint(addrs), l.IP.String()+"/24") {
		return fmt.Errorf("%s has addresses %v, want %s/24", l.Interface, addrs, l.IP)
	}
	if lo, err := net.InterfaceByName("lo"); err != nil || lo.Flags&net.FlagUp == 0 {
		return fmt.Errorf("lo not up: %v %v", lo, err)
	}
	routes, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return err
	}
	// default route: destination 0, gateway 10.231.0.1 as little-endian hex.
	if !strings.Contains(string(routes), l.Interface+"\t00000000\t0100E70A") {
		return fmt.Errorf("no default route via %s:\n%s", l.Router, routes)
	}
	// A second NetUp (say after a restart) finds everything in place.
	if _, err := NetUp(ctx, l.Interface, "", log); err != nil {
		return fmt.Errorf("second NetUp: %w", err)
	}
	fmt.Println("NETUP-OK")
	return nil
}
