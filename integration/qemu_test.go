//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Firmware and the test kernel (scripts/install-deps.sh installs them).
const (
	ovmfCode   = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars   = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	testKernel = "../.cache/kernel/vmlinuz"
)

// vm is one QEMU guest on a tap of the lab bridge.
type vm struct {
	name, mac string
	uefi      bool // OVMF with the NIC's ROM removed: the firmware's own PXE fetches snponly.efi over TFTP
}

// boot runs the VM until it powers off (or timeout) and returns its serial
// console. QEMU runs inside the lab namespace, which holds the tap.
func (l *lab) boot(t *testing.T, v vm, tap string, timeout time.Duration) (string, time.Duration) {
	t.Helper()
	l.addTap(tap)
	console, took, err := l.runVM(v, tap, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return console, took
}

func (l *lab) addTap(tap string) {
	if exec.Command("ip", "-n", l.lan, "link", "show", tap).Run() == nil {
		return // made by an earlier boot in this lab
	}
	sh(l.tb, "ip", "-n", l.lan, "tuntap", "add", tap, "mode", "tap")
	sh(l.tb, "ip", "-n", l.lan, "link", "set", tap, "master", "br0", "up")
}

// liveConsole is a console buffer another goroutine may read while the VM runs.
type liveConsole struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *liveConsole) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *liveConsole) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// runVM is boot without the test plumbing, safe to call from goroutines.
func (l *lab) runVM(v vm, tap string, timeout time.Duration) (string, time.Duration, error) {
	return l.runVMLive(v, tap, timeout, &liveConsole{})
}

func (l *lab) runVMLive(v vm, tap string, timeout time.Duration, out *liveConsole) (string, time.Duration, error) {
	args := []string{"netns", "exec", l.lan, "qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-m", "512", "-smp", "1",
		"-nographic", "-no-reboot", "-boot", "n",
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no"}
	dev := "virtio-net-pci,netdev=n0,mac=" + v.mac
	if v.uefi {
		vars := filepath.Join(l.tb.TempDir(), "vars.fd")
		b, err := os.ReadFile(ovmfVars)
		if err != nil {
			return "", 0, err
		}
		os.WriteFile(vars, b, 0o600)
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
		dev += ",romfile="
	}
	args = append(args, "-device", dev)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	console := out.String()
	if dir := os.Getenv("SHOAL_IT_LOG_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, v.name+".console"), []byte(console), 0o644)
	}
	if ctx.Err() != nil {
		return console, took, fmt.Errorf("%s: no power-off within %s; console tail:\n%s", v.name, timeout, tail(console, 30))
	}
	if err != nil {
		return console, took, fmt.Errorf("%s: qemu: %v; console tail:\n%s", v.name, err, tail(console, 30))
	}
	return console, took, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var markerRE = regexp.MustCompile(`SHOAL-TEST-BOOT host=(\S*) ip=(\S*) mac=(\S*)`)

// TestQEMUPXEBoot: real virtual machines PXE-boot from a 3-node cluster in
// full DHCP mode: BIOS through QEMU's iPXE ROM, UEFI through OVMF's own PXE
// client (TFTP snponly.efi, then iPXE), and BIOS again after the raft
// leader was killed. Each guest's init prints a marker with the hostname
// and address it got from DHCP, then powers off.
func TestQEMUPXEBoot(t *testing.T) {
	needRoot(t, "qemu-system-x86_64", "cpio", "depmod", "busybox")
	needFiles(t, ipxeDir+"/snponly.efi", ovmfCode, ovmfVars, testKernel)
	initrd := buildTestInitrd(t)
	l := newLab(t, 3, fullDHCPFlags...)
	leader := l.start()
	setupBootImage(t, l, leader, testKernel, initrd)
	vms := []vm{
		{name: "vm1", mac: "52:54:00:77:00:01"},
		{name: "vm2", mac: "52:54:00:77:00:02", uefi: true},
		{name: "vm3", mac: "52:54:00:77:00:03"},
	}
	l.cli(leader, "client", "add", vms[0].mac, "--hostname", "vm1", "--group", "lab")
	l.cli(leader, "client", "add", vms[1].mac, "--hostname", "vm2", "--group", "lab", "--ip", labNet+".12")
	l.cli(leader, "client", "add", vms[2].mac, "--hostname", "vm3", "--group", "lab")

	check := func(v vm, console string, took time.Duration, wantIP string) {
		t.Helper()
		m := markerRE.FindStringSubmatch(console)
		if m == nil {
			t.Fatalf("%s: no marker on the console; tail:\n%s", v.name, tail(console, 30))
		}
		if m[1] != v.name || m[3] != v.mac || (wantIP != "" && m[2] != wantIP) || !strings.HasPrefix(m[2], labNet+".") {
			t.Errorf("%s: marker %q, want host=%s ip=%s mac=%s", v.name, m[0], v.name, wantIP, v.mac)
		}
		t.Logf("%s booted in %.1fs: %s", v.name, took.Seconds(), m[0])
	}
	console, took := l.boot(t, vms[0], "tap1", 90*time.Second)
	check(vms[0], console, took, "")
	console, took = l.boot(t, vms[1], "tap2", 150*time.Second)
	check(vms[1], console, took, labNet+".12")
	if !strings.Contains(console, "NBP filename is snponly.efi") || !strings.Contains(console, "/v1/boot/ipxe?mac="+vms[1].mac) {
		t.Errorf("vm2: the console shows no TFTP snponly.efi -> iPXE script stage:\n%s", tail(console, 40))
	}

	// Kill the leader; the VM boots from whoever answers.
	leader.kill()
	l.leader(20*time.Second, l.others(leader)...)
	console, took = l.boot(t, vms[2], "tap3", 90*time.Second)
	check(vms[2], console, took, "")

	// Every node saw DHCP traffic and answered router solicitations (iPXE
	// would otherwise wait ~16 s per DHCP stage); the last boot is in
	// `client show`.
	ra := l.sumMetric("shoal_boot_ra_sent_total ")
	if ra == 0 {
		t.Errorf("no router advertisement was sent")
	}
	show := string(l.cli(l.others(leader)[0], "client", "show", vms[2].mac))
	for _, want := range []string{"dhcp-ack", "script", "kernel", "initrd"} {
		if !strings.Contains(show, want) {
			t.Errorf("client show %s lacks %q:\n%s", vms[2].name, want, show)
		}
	}
}

// TestQEMUProxyDHCP: the site's own DHCP server (dnsmasq, addresses only,
// no boot options) and 3 shoal nodes in the default proxyDHCP mode: the
// VM's iPXE takes its address from dnsmasq and its boot file from shoal.
func TestQEMUProxyDHCP(t *testing.T) {
	needRoot(t, "qemu-system-x86_64", "cpio", "depmod", "busybox", "dnsmasq")
	needFiles(t, testKernel)
	initrd := buildTestInitrd(t)
	l := newLab(t, 3, "--tftp-root", ipxeDir) // proxy is the default mode
	leader := l.start()
	setupBootImage(t, l, leader, testKernel, initrd)
	v := vm{name: "vm1", mac: "52:54:00:77:00:11"}
	l.cli(leader, "client", "add", v.mac, "--hostname", "vm1", "--group", "lab")

	site := l.client(9, labNet+".253/24", "")
	leases := filepath.Join(t.TempDir(), "dnsmasq.leases")
	ctx, cancel := context.WithCancel(context.Background())
	dm := exec.CommandContext(ctx, "ip", "netns", "exec", site, "dnsmasq", "--no-daemon", "--port=0",
		"--interface=eth0", "--bind-interfaces", "--dhcp-range="+labNet+".150,"+labNet+".199,255.255.255.0,1h",
		"--dhcp-broadcast", "--dhcp-leasefile="+leases, "--user=root", "--group=root", "--pid-file=", "--log-facility=-", "--log-dhcp")
	var dlog bytes.Buffer
	dm.Stdout, dm.Stderr = &dlog, &dlog
	if err := dm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		dm.Wait()
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", tail(dlog.String(), 40))
		}
	})
	console, took := l.boot(t, v, "tap1", 120*time.Second)
	m := markerRE.FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("no marker; console tail:\n%s", tail(console, 30))
	}
	if m[1] != "vm1" || !strings.HasPrefix(m[2], labNet+".1") || len(m[2]) != len(labNet)+4 || m[2] < labNet+".150" {
		t.Errorf("marker %q: want host=vm1 and an address from dnsmasq's pool .150-.199", m[0])
	}
	if !strings.Contains(console, "/v1/boot/ipxe?mac="+v.mac) {
		t.Errorf("the console shows no shoal boot script:\n%s", tail(console, 40))
	}
	var ls []lease
	if err := l.getJSON(leader.url("/v1/leases"), &ls); err != nil || len(ls) != 0 {
		t.Errorf("proxy mode wrote leases: %v %v", ls, err)
	}
	t.Logf("vm1 booted through proxyDHCP in %.1fs: %s", took.Seconds(), m[0])
}
