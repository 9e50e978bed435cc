//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkDisklessBoot boots N=4 QEMU machines at once (2 cores allow no
// more without each boot taking minutes) diskless into the same 16 MiB
// image, twice in one run:
//
//   - shoal: one server node; iPXE loads kernel, initrd and the agent
//     initrd from it, the agent fetches the image from the node and from
//     the other machines, verifies every piece, overlay, switch_root;
//   - reference (../shared/testenv's setup): dnsmasq (DHCP, RA) and busybox
//     httpd on one server; the initrd's /init wgets the whole image over
//     plain HTTP, loop-mounts it, overlay, switch_root (no verification).
//
// It prints the wall time until every machine's image init printed
// SHOAL-BOOTED and powered off, per setup, and the ratio.
func BenchmarkDisklessBoot(b *testing.B) {
	const n = 4
	needRoot(b, "dnsmasq")
	var vms []vm
	for i := 1; i <= n; i++ {
		vms = append(vms, vm{name: fmt.Sprintf("pc%d", i), mac: fmt.Sprintf("52:54:00:77:02:%02x", i)})
	}
	l, n1, version := disklessLab(b, 1, "diskless-ram", vms)
	initrd, image := l.bootFiles[0], l.bootFiles[1]
	b.ResetTimer()
	shoal := timeBoots(b, l, vms, version)
	n1.kill()

	// The reference server, alone on the bridge now.
	dir := b.TempDir()
	for src, dst := range map[string]string{testKernel: "vmlinuz", initrd: "initrd.gz", image: "image.squashfs"} {
		data, err := os.ReadFile(src)
		if err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, dst), data, 0o644)
	}
	const srv = labNet + ".2"
	script := fmt.Sprintf("#!ipxe\nkernel http://%[1]s:8080/vmlinuz initrd=initrd.gz console=ttyS0 panic=-1 ref.image=http://%[1]s:8080/image.squashfs ref.name=demo@%[2]s\ninitrd http://%[1]s:8080/initrd.gz\nboot\n", srv, version)
	os.WriteFile(filepath.Join(dir, "boot.ipxe"), []byte(script), 0o644)
	ref := l.client(9, srv+"/24", "")
	sh(b, "ip", "-n", ref, "addr", "add", "fd77::2/64", "dev", "eth0", "nodad")
	args := []string{"--no-daemon", "--port=0", "--interface=eth0", "--bind-interfaces", "--user=root", "--group=root",
		"--pid-file=", "--dhcp-leasefile=" + filepath.Join(dir, "leases"), "--dhcp-broadcast", "--no-ping",
		"--dhcp-range=" + labNet + ".100," + labNet + ".199,255.255.255.0,1h",
		"--dhcp-userclass=set:ipxe,iPXE", "--dhcp-boot=tag:ipxe,http://" + srv + ":8080/boot.ipxe",
		"--enable-ra", "--dhcp-range=::,constructor:eth0,ra-only", "--quiet-dhcp"}
	for _, v := range vms {
		args = append(args, "--dhcp-host="+v.mac+","+v.name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	procs := []*exec.Cmd{
		exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ref, "dnsmasq"}, args...)...),
		exec.CommandContext(ctx, "ip", "netns", "exec", ref, "busybox", "httpd", "-f", "-p", "8080", "-h", dir),
	}
	for _, p := range procs {
		if err := p.Start(); err != nil {
			cancel()
			b.Fatal(err)
		}
	}
	defer func() {
		cancel()
		for _, p := range procs {
			p.Wait()
		}
	}()
	time.Sleep(500 * time.Millisecond)
	reference := timeBoots(b, l, vms, version)
	b.StopTimer()

	fmt.Printf("\n%d machines booting diskless at once into a 16 MiB image (QEMU TCG, 2 cores), until every one printed SHOAL-BOOTED\n", n)
	fmt.Printf("%-44s %8.1f s\n", "shoal (1 node, swarm, verified pieces)", shoal.Seconds())
	fmt.Printf("%-44s %8.1f s\n", "reference (dnsmasq + plain HTTP, 1 server)", reference.Seconds())
	fmt.Printf("%-44s %8.2fx\n", "shoal / reference", shoal.Seconds()/reference.Seconds())
	b.ReportMetric(shoal.Seconds(), "shoal-s")
	b.ReportMetric(reference.Seconds(), "reference-s")
}

// timeBoots boots vms at once and returns the wall time; every machine
// must print its marker.
func timeBoots(b *testing.B, l *lab, vms []vm, version string) time.Duration {
	start := time.Now()
	consoles := l.bootAll(b, vms, 300*time.Second)
	took := time.Since(start)
	for i, v := range vms {
		m := bootedRE.FindStringSubmatch(consoles[i])
		if m == nil || m[1] != v.name || !strings.HasSuffix(m[2], version) {
			b.Fatalf("%s: marker %q; console tail:\n%s", v.name, m, tail(consoles[i], 30))
		}
	}
	return took
}
