//go:build integration

package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildBootFiles builds the test initrd (modules for the NIC, squashfs,
// overlay, loop, nbd) and the busybox test image (a squashfs whose init
// prints SHOAL-BOOTED), with the project's scripts.
func buildBootFiles(t testing.TB, bigMiB int) (initrd, image string) {
	t.Helper()
	image = filepath.Join(t.TempDir(), "image.squashfs")
	runScript(t, fmt.Sprintf("BIG_MIB=%d", bigMiB), "scripts/make-test-image.sh", image)
	return buildTestInitrd(t), image
}

// buildTestInitrd builds the busybox test initrd (scripts/make-test-initrd.sh).
func buildTestInitrd(t testing.TB) string {
	t.Helper()
	initrd := filepath.Join(t.TempDir(), "initrd.gz")
	runScript(t, "", "scripts/make-test-initrd.sh", initrd)
	return initrd
}

// runScript runs a project script from the module root (where
// .cache/kernel is), with env added to the clean environment.
func runScript(t testing.TB, env string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = ".."
	cmd.Env = cleanEnv()
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", args[0], err, out)
	}
}

var (
	bootedRE = regexp.MustCompile(`SHOAL-BOOTED host=(\S+) image=(\S+)`)
	rootRE   = regexp.MustCompile(`SHOAL-ROOT overlay=(\S+) lower=(\S+) root=(\S+)`)
	peersRE  = regexp.MustCompile(`verified in RAM: (\d+) MiB in ([0-9.]+)s, (\d+) MiB from peers (\S*)`)
)

// TestDisklessRAM: 3 server nodes, 3 VMs PXE-booting at once in
// diskless-ram mode. The agent (the shoal binary as /init) fetches the
// image into RAM from the servers and from each other, verifies it,
// loop-mounts it read-only under a tmpfs overlay and switches to the
// image's init, which prints SHOAL-BOOTED with the hostname and image.
func TestDisklessRAM(t *testing.T) { disklessRAM(t, false) }

// TestDisklessRAMServerKilled: the same, with one server node killed by
// SIGKILL while the machines are fetching the image: all 3 still boot.
func TestDisklessRAMServerKilled(t *testing.T) { disklessRAM(t, true) }

func disklessRAM(t *testing.T, killDuringFetch bool) {
	vms := []vm{{name: "vm1", mac: "52:54:00:77:00:21"}, {name: "vm2", mac: "52:54:00:77:00:22"}, {name: "vm3", mac: "52:54:00:77:00:23"}}
	l, _, version := disklessLab(t, 3, "diskless-ram", vms)
	if killDuringFetch {
		// Once every machine has loaded its agent initrd, the agents are
		// seconds away from fetching: then kill the node every agent
		// asks first.
		victim, watcher := l.node("n1"), l.node("n2")
		done := make(chan struct{})
		defer func() { <-done }()
		go func() {
			defer close(done)
			start := time.Now()
			for time.Since(start) < 120*time.Second {
				ready := 0
				for _, v := range vms {
					var c struct {
						LastBoot []struct {
							Steps map[string]time.Time `json:"steps"`
						} `json:"last_boot"`
					}
					if l.getJSON(watcher.url("/v1/clients/"+v.mac), &c) == nil {
						for _, r := range c.LastBoot {
							if !r.Steps["agent"].IsZero() {
								ready++
								break
							}
						}
					}
				}
				if ready == len(vms) {
					time.Sleep(3 * time.Second)
					victim.kill()
					t.Logf("killed %s %.1fs after the machines started", victim.name, time.Since(start).Seconds())
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Errorf("the machines never all fetched their agent initrd; %s not killed", victim.name)
		}()
	}
	consoles := l.bootAll(t, vms, 240*time.Second)

	fromClients := 0
	for i, v := range vms {
		c := consoles[i]
		m := bootedRE.FindStringSubmatch(c)
		if m == nil {
			t.Errorf("%s: no SHOAL-BOOTED marker; console tail:\n%s", v.name, tail(c, 40))
			continue
		}
		if m[1] != v.name || m[2] != "demo@"+version {
			t.Errorf("%s: %q, want host=%s image=demo@%s", v.name, m[0], v.name, version)
		}
		if r := rootRE.FindStringSubmatch(c); r == nil || r[1] != "rw" || r[2] != "ro" || r[3] != "overlay" {
			t.Errorf("%s: root line %q, want overlay=rw lower=ro root=overlay", v.name, r)
		}
		p := peersRE.FindStringSubmatch(c)
		if p == nil {
			t.Errorf("%s: no fetch report on the console", v.name)
			continue
		}
		t.Logf("%s: %s", v.name, p[0])
		for _, peer := range strings.Split(p[4], ",") {
			host := strings.Split(peer, ":")[0]
			if strings.HasPrefix(host, labNet+".1") && len(host) > len(labNet)+2 { // .100-.199: a client
				fromClients++
			}
		}
	}
	if fromClients == 0 {
		t.Errorf("no VM got pieces from another VM; every byte came from the servers")
	}
	// The nodes know it too: the agents report their peers after the fetch.
	clientPeers := l.sumMetric(`shoal_boot_fetch_peers_total{kind="client"} `)
	if clientPeers == 0 {
		t.Errorf("the nodes' metrics show no machine that got pieces from another machine")
	}
	t.Logf("agents reported %.0f client peers to the nodes", clientPeers)
}

// disklessLab starts size nodes with full DHCP, imports the 16 MiB test
// image as "demo", creates group "lab" in the given boot mode (extra
// group flags appended), registers the machines and waits until every node
// holds the image. It returns the lab, the leader and the version.
func disklessLab(t testing.TB, size int, mode string, vms []vm, groupFlags ...string) (*lab, *node, string) {
	t.Helper()
	needRoot(t, "qemu-system-x86_64", "cpio", "depmod", "busybox", "mksquashfs")
	needFiles(t, testKernel)
	initrd, image := buildBootFiles(t, 16)
	l := newLab(t, size, fullDHCPFlags...)
	l.bootFiles = [2]string{initrd, image}
	leader := l.start()
	version := writeImage(t, l, leader, "demo", image, testKernel, initrd)
	l.cli(leader, append([]string{"group", "add", "lab", "--image", "demo", "--boot-mode", mode}, groupFlags...)...)
	waitHeld(t, l, leader, "demo", version)
	for _, v := range vms {
		l.cli(leader, "client", "add", v.mac, "--hostname", v.name, "--group", "lab")
	}
	return l, leader, version
}

// sumMetric adds up the values of every line of every running node's
// /metrics that starts with prefix (a metric name with its labels).
func (l *lab) sumMetric(prefix string) float64 {
	var sum float64
	for _, n := range l.running() {
		_, body, _ := l.do("GET", n.url("/metrics"), nil)
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, prefix) {
				var v float64
				fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
				sum += v
			}
		}
	}
	return sum
}

// writeImage imports a root image with kernel and initrd and returns the
// version id.
func writeImage(t testing.TB, l *lab, n *node, name, root, kernel, initrd string) string {
	t.Helper()
	out := string(l.cli(n, "image", "import", name, root, "--kernel", kernel, "--initrd", initrd, "--cmdline", "console=ttyS0 panic=-1", "--json"))
	m := regexp.MustCompile(`"version":\s*"([0-9a-f]{64})"`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("import output has no version: %s", out)
	}
	return m[1]
}

// waitHeld waits until every running node holds version completely.
func waitHeld(t testing.TB, l *lab, n *node, name, version string) {
	t.Helper()
	want := len(l.running())
	l.waitFor(90*time.Second, "every node holds "+name, func() (bool, string) {
		var im struct {
			Holders map[string][]string `json:"holders"`
		}
		if err := l.getJSON(n.url("/v1/images/"+name), &im); err != nil {
			return false, err.Error()
		}
		return len(im.Holders[version]) == want, fmt.Sprint(im.Holders[version])
	})
}

// bootAll boots the VMs at once (taps tap1..N) and returns their consoles.
func (l *lab) bootAll(t testing.TB, vms []vm, timeout time.Duration) []string {
	t.Helper()
	for i := range vms {
		l.addTap(fmt.Sprintf("tap%d", i+1))
	}
	consoles := make([]string, len(vms))
	errs := make([]error, len(vms))
	var wg sync.WaitGroup
	start := time.Now()
	for i, v := range vms {
		wg.Go(func() {
			var took time.Duration
			consoles[i], took, errs[i] = l.runVM(v, fmt.Sprintf("tap%d", i+1), timeout)
			t.Logf("%s: powered off after %.1fs", v.name, took.Seconds())
		})
	}
	wg.Wait()
	t.Logf("%d VMs booted in %.1fs", len(vms), time.Since(start).Seconds())
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	return consoles
}

// TestDisklessNBD: 3 server nodes, 3 VMs booting at once in diskless-nbd
// mode: the agent attaches the image read-only over NBD from a node (no
// copy in RAM), puts the tmpfs overlay on top and switches to its init.
func TestDisklessNBD(t *testing.T) {
	vms := []vm{{name: "vm1", mac: "52:54:00:77:00:31"}, {name: "vm2", mac: "52:54:00:77:00:32"}, {name: "vm3", mac: "52:54:00:77:00:33"}}
	l, _, version := disklessLab(t, 3, "diskless-nbd", vms)
	consoles := l.bootAll(t, vms, 240*time.Second)
	for i, v := range vms {
		c := consoles[i]
		m := bootedRE.FindStringSubmatch(c)
		if m == nil || m[1] != v.name || m[2] != "demo@"+version {
			t.Errorf("%s: marker %q, want host=%s image=demo@%s; console tail:\n%s", v.name, m, v.name, version, tail(c, 40))
		}
		if r := rootRE.FindStringSubmatch(c); r == nil || r[1] != "rw" || r[2] != "ro" || r[3] != "overlay" {
			t.Errorf("%s: root line %q, want overlay=rw lower=ro root=overlay", v.name, r)
		}
		if strings.Contains(c, "verified in RAM") {
			t.Errorf("%s: fetched the image into RAM in nbd mode", v.name)
		}
	}
	read := l.sumMetric("shoal_nbd_read_bytes_total{")
	if read == 0 {
		t.Errorf("no node served NBD reads")
	}
	t.Logf("nodes served %.1f MiB over NBD", read/(1<<20))
}

// TestDisklessNBDServerKilled: a VM runs from an NBD root with one
// connection to each of the 3 nodes; one node is killed while the machine
// is up, and the machine then reads its whole 16 MiB /big and checks its
// md5: the read goes on through the other connections.
func TestDisklessNBDServerKilled(t *testing.T) {
	v := vm{name: "vm1", mac: "52:54:00:77:00:41"}
	l, _, _ := disklessLab(t, 3, "diskless-nbd", []vm{v}, "--kernel-args", "shoal.readbig=4")
	l.addTap("tap1")
	live := &liveConsole{}
	victim := l.node("n1")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 2400 && !strings.Contains(live.String(), "SHOAL-WAIT"); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if strings.Contains(live.String(), "SHOAL-WAIT") {
			victim.kill()
			t.Logf("killed %s while the machine was up", victim.name)
		}
	}()
	console, took, err := l.runVMLive(v, "tap1", 240*time.Second, live)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if victim.running() {
		t.Fatalf("%s was not killed (no SHOAL-WAIT); console tail:\n%s", victim.name, tail(console, 30))
	}
	m := regexp.MustCompile(`SHOAL-READ big=(\S+) from=(\S+) to=(\S+)`).FindStringSubmatch(console)
	if m == nil || m[1] != "ok" {
		t.Fatalf("read after the kill: %q; console tail:\n%s", m, tail(console, 30))
	}
	var from, to float64
	fmt.Sscan(m[2], &from)
	fmt.Sscan(m[3], &to)
	t.Logf("16 MiB read with a node killed took %.1fs (machine up %.1fs in all)", to-from, took.Seconds())
}
