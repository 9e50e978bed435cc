//go:build integration

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const ipxeDir = "/usr/lib/ipxe"

// fullDHCPFlags: full DHCP with a dynamic pool; unknown machines boot the
// group "lab" (so perfdhcp's random MACs get answers).
var fullDHCPFlags = []string{
	"--dhcp-mode", "full", "--dhcp-range", labNet + ".100-" + labNet + ".199",
	"--dhcp-lease-time", "10m", "--tftp-root", ipxeDir,
	"--boot-unknown", "default-group", "--boot-default-group", "lab",
}

type lease struct {
	MAC     string `json:"mac"`
	IP      string `json:"ip"`
	Expires int64  `json:"expires"`
}

// setupBootImage imports an image with the given kernel and initrd (and a
// small random root), creates group "lab" booting it, and waits until
// every running node holds it.
func setupBootImage(t *testing.T, l *lab, n *node, kernel, initrd string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root.img")
	version := writeRandom(t, root, 1<<20, 7)
	l.cli(n, "image", "import", "os", root, "--kernel", kernel, "--initrd", initrd, "--cmdline", "console=ttyS0 panic=-1", "--json")
	// Boot mode disk: no agent initrd, so the test initrd's own /init
	// runs and prints the marker (the diskless modes are diskless_test.go).
	l.cli(n, "group", "add", "lab", "--image", "os", "--boot-mode", "disk")
	want := len(l.running())
	l.waitFor(60*time.Second, "every node holds the image", func() (bool, string) {
		var im struct {
			Holders map[string][]string `json:"holders"`
		}
		if err := l.getJSON(n.url("/v1/images/os"), &im); err != nil {
			return false, err.Error()
		}
		return len(im.Holders[version]) == want, fmt.Sprint(im.Holders[version])
	})
}

var leaseRE = regexp.MustCompile(`lease of ([0-9.]+) obtained from ([0-9.]+)`)

// udhcpc runs busybox's DHCP client once in ns and returns the leased
// address and the server that gave it, or "" if it got none.
func (l *lab) udhcpc(t *testing.T, ns string, tries int) (ip, server, out string) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "udhcpc.script")
	os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	out, _ = l.inNS(ns, time.Duration(tries+5)*time.Second, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n",
		"-t", fmt.Sprint(tries), "-T", "1", "-s", script)
	if m := leaseRE.FindStringSubmatch(out); m != nil {
		return m[1], m[2], out
	}
	return "", "", out
}

func (l *lab) leases(t *testing.T, n *node) map[string]string {
	t.Helper()
	var ls []lease
	if err := l.getJSON(n.url("/v1/leases"), &ls); err != nil {
		t.Fatalf("%s leases: %v", n.name, err)
	}
	m := map[string]string{}
	for _, x := range ls {
		m[x.MAC] = x.IP
	}
	return m
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestBootStockClients: 3 nodes answer full DHCP, TFTP and HTTP boot on a
// namespace network; busybox udhcpc, tftp-hpa and curl are the clients.
// Every node hands a MAC the same address; with the cluster down to one
// node (no leader) a known lease is still renewed and a new machine is
// refused with a reason in the log.
func TestBootStockClients(t *testing.T) {
	needRoot(t, "busybox", "tftp", "curl")
	needFiles(t, ipxeDir+"/undionly.kpxe")
	l := newLab(t, 3, fullDHCPFlags...)
	l.start()
	n1, n2, n3 := l.node("n1"), l.node("n2"), l.node("n3")

	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	kernelSHA := writeRandom(t, kernel, 300<<10, 11)
	writeRandom(t, initrd, 200<<10, 12)
	setupBootImage(t, l, n1, kernel, initrd)
	const macDyn, macFixed, macNew = "02:00:00:77:01:01", "02:00:00:77:01:02", "02:00:00:77:01:03"
	l.cli(n2, "client", "add", macDyn, "--hostname", "dyn1", "--group", "lab")
	l.cli(n3, "client", "add", macFixed, "--hostname", "fixed1", "--group", "lab", "--ip", labNet+".50")
	cDyn, cFixed := l.client(1, "", macDyn), l.client(2, "", macFixed)
	cStatic := l.client(3, labNet+".60/24", "")

	// udhcpc: a dynamic lease from the pool, the same from every node.
	ip, from, out := l.udhcpc(t, cDyn, 5)
	if !strings.HasPrefix(ip, labNet+".1") || len(ip) != len(labNet)+4 {
		t.Fatalf("udhcpc got %q from %q; output:\n%s", ip, from, out)
	}
	for _, n := range []*node{n1, n2, n3} {
		l.waitFor(5*time.Second, n.name+" has the lease", func() (bool, string) {
			got := l.leases(t, n)[macDyn]
			return got == ip, fmt.Sprintf("lease %q", got)
		})
	}
	if again, _, out := l.udhcpc(t, cDyn, 5); again != ip {
		t.Fatalf("second udhcpc got %q, first %q:\n%s", again, ip, out)
	}
	if fixed, _, out := l.udhcpc(t, cFixed, 5); fixed != labNet+".50" {
		t.Fatalf("fixed client got %q:\n%s", fixed, out)
	}
	if _, ok := l.leases(t, n1)[macFixed]; ok {
		t.Errorf("a client with a fixed address got a dynamic lease")
	}

	// tftp-hpa: the iPXE binary byte for byte; nothing outside the root.
	got := filepath.Join(dir, "undionly.kpxe")
	if out, err := l.inNS(cStatic, 20*time.Second, "tftp", "-m", "binary", n2.ip, "-c", "get", "undionly.kpxe", got); err != nil {
		t.Fatalf("tftp get: %v %s", err, out)
	}
	if fileSHA(t, got) != fileSHA(t, ipxeDir+"/undionly.kpxe") {
		t.Errorf("tftp copy of undionly.kpxe differs")
	}
	stolen := filepath.Join(dir, "passwd")
	out, _ = l.inNS(cStatic, 20*time.Second, "tftp", "-m", "binary", n2.ip, "-c", "get", "../../../etc/passwd", stolen)
	if b, _ := os.ReadFile(stolen); len(b) > 0 {
		t.Errorf("tftp served a file outside its root (%d bytes): %s", len(b), out)
	}

	// curl: the boot script from n3 points at n3, and its kernel URL
	// serves the imported kernel.
	script, err := l.inNS(cStatic, 20*time.Second, "curl", "-sfS", "http://"+n3.httpAddr()+"/v1/boot/ipxe?mac="+macDyn)
	if err != nil || !strings.Contains(script, "shoal.hostname=dyn1") {
		t.Fatalf("boot script: %v\n%s", err, script)
	}
	m := regexp.MustCompile(`(?m)^kernel (http://\S+)`).FindStringSubmatch(script)
	if m == nil || !strings.HasPrefix(m[1], "http://"+n3.httpAddr()+"/v1/boot/blobs/") {
		t.Fatalf("script has no kernel line on n3:\n%s", script)
	}
	kout := filepath.Join(dir, "kernel.got")
	if out, err := l.inNS(cStatic, 20*time.Second, "curl", "-sfS", "-o", kout, m[1]); err != nil || fileSHA(t, kout) != kernelSHA {
		t.Fatalf("kernel over HTTP: %v %s", err, out)
	}

	// The last boot, across nodes, in `client show`.
	show := string(l.cli(n1, "client", "show", macDyn))
	for _, want := range []string{"dyn1", "lease:", "dhcp-ack", "script", "kernel", "by n3"} {
		if !strings.Contains(show, want) {
			t.Errorf("client show lacks %q:\n%s", want, show)
		}
	}
	_, metrics, _ := l.do("GET", n3.url("/metrics"), nil)
	if !strings.Contains(string(metrics), `shoal_boot_events_total{event="kernel",mac="`+macDyn+`",result="200"} 1`) {
		t.Errorf("n3 metrics lack the kernel fetch")
	}

	// Down to one node: no quorum, no leader.
	n2.kill()
	n3.kill()
	if again, from, out := l.udhcpc(t, cDyn, 6); again != ip || from != n1.ip {
		t.Fatalf("renewal without a leader: got %q from %q, want %q from n1:\n%s", again, from, ip, out)
	}
	cNew := l.client(4, "", macNew)
	if got, _, out := l.udhcpc(t, cNew, 3); got != "" {
		t.Fatalf("a new machine got %q without a leader:\n%s", got, out)
	}
	if !n1.logContains(regexp.MustCompile(`needs the raft leader`)) {
		t.Errorf("n1's log does not say why the new machine got no address:\n%s", n1.logTail(20))
	}
}

// TestPerfdhcp: Kea's perfdhcp runs full DORA exchanges with 50 simulated
// clients against one node in full mode; every exchange must complete.
func TestPerfdhcp(t *testing.T) {
	needRoot(t, "perfdhcp")
	l := newLab(t, 1, fullDHCPFlags...)
	l.start()
	n1 := l.node("n1")
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "k"), filepath.Join(dir, "i")
	writeRandom(t, kernel, 64<<10, 1)
	writeRandom(t, initrd, 64<<10, 2)
	setupBootImage(t, l, n1, kernel, initrd)
	c := l.client(1, labNet+".70/24", "")
	out, err := l.inNS(c, 60*time.Second, "perfdhcp", "-4", "-l", "eth0", "-R", "50", "-r", "20", "-n", "100", "-D", "10%", labNet+".1")
	t.Logf("perfdhcp:\n%s", out)
	// Exit status 3 means "some packets were dropped": judged below.
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 3) {
		t.Fatalf("perfdhcp: %v", err)
	}
	m := regexp.MustCompile(`(?s)DISCOVER-OFFER.*?sent packets: (\d+).*?received packets: (\d+).*?REQUEST-ACK.*?sent packets: (\d+).*?received packets: (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("perfdhcp output not understood")
	}
	var s1, r1, s2, r2 int
	fmt.Sscan(m[1], &s1)
	fmt.Sscan(m[2], &r1)
	fmt.Sscan(m[3], &s2)
	fmt.Sscan(m[4], &r2)
	if s1 == 0 || r1 < s1*9/10 || r2 < s2*9/10 || r2 == 0 {
		t.Errorf("perfdhcp: DISCOVER %d -> OFFER %d, REQUEST %d -> ACK %d", s1, r1, s2, r2)
	}
	var ls []lease
	if err := l.getJSON(n1.url("/v1/leases"), &ls); err != nil || len(ls) == 0 || len(ls) > 50 {
		t.Errorf("leases after perfdhcp: %d (%v), want 1..50", len(ls), err)
	}
	// --boot-unknown default-group registers every machine it answered.
	l.waitFor(15*time.Second, "every leased MAC registered as a client of lab", func() (bool, string) {
		var cs []struct{ MAC, Hostname, Group string }
		if err := l.getJSON(n1.url("/v1/clients?group=lab"), &cs); err != nil {
			return false, err.Error()
		}
		reg := map[string]bool{}
		for _, c := range cs {
			reg[c.MAC] = strings.HasPrefix(c.Hostname, "pc-")
		}
		for _, x := range ls {
			if !reg[x.MAC] {
				return false, fmt.Sprintf("%s not registered (%d clients)", x.MAC, len(cs))
			}
		}
		return true, ""
	})
}
