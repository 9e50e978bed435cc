//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A lab is a throwaway boot network built from network namespaces, as in
// ../shared/testenv: namespace <p>-lan holds bridge br0 (10.77.0.254/24,
// the test's own vantage point) and the VMs' tap devices; every server
// node lives in its own namespace <p>-n<i> with eth0 = 10.77.0.<i>/24 on
// the bridge; stock clients run in <p>-c<i> namespaces on the bridge.
// Nothing is added to the root namespace, and Cleanup deletes every
// namespace, which removes the veths, bridge and taps with them.
type lab struct {
	*cluster
	prefix    string
	lan       string
	nss       []string
	bootFiles [2]string // initrd and root image built by disklessLab
}

const labNet = "10.77.0"

// needRoot skips (or, in CI, fails) a test that needs root, network
// namespaces and the listed commands.
func needRoot(t testing.TB, cmds ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, c := range append([]string{"ip"}, cmds...) {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ") + " (make deps installs the Debian packages as root)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// needFiles is needRoot for files (iPXE binaries, the test kernel).
func needFiles(t testing.TB, files ...string) {
	t.Helper()
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			msg := fmt.Sprintf("needs %s (make deps installs it as root)", f)
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newLab builds the network and size node definitions (not started); every
// node runs `server` with the given extra flags plus its addresses.
func newLab(t testing.TB, size int, extra ...string) *lab {
	t.Helper()
	needRoot(t)
	l := &lab{prefix: fmt.Sprintf("shl%d", os.Getpid()%100000)}
	l.lan = l.prefix + "-lan"
	// A leftover from a killed run of the same PID would make "add" fail.
	for i := 0; i <= 9; i++ {
		for _, s := range []string{"-lan", fmt.Sprintf("-n%d", i), fmt.Sprintf("-c%d", i)} {
			exec.Command("ip", "netns", "del", l.prefix+s).Run()
		}
	}
	c := &cluster{tb: t, hc: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: dialIn(l.nsPath(l.lan)), MaxIdleConnsPerHost: 8},
	}}
	c.logDir = t.TempDir()
	if d := os.Getenv("SHOAL_IT_LOG_DIR"); d != "" {
		c.logDir = filepath.Join(d, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
		os.MkdirAll(c.logDir, 0o755)
	}
	c.cliNS = l.lan
	l.cluster = c
	t.Cleanup(l.destroy)
	t.Cleanup(c.cleanup) // runs first: processes, then namespaces
	l.addNS(l.lan)
	sh(t, "ip", "-n", l.lan, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
	sh(t, "ip", "-n", l.lan, "addr", "add", labNet+".254/24", "dev", "br0")
	sh(t, "ip", "-n", l.lan, "link", "set", "br0", "up")
	for i := 1; i <= size; i++ {
		ns := fmt.Sprintf("%s-n%d", l.prefix, i)
		l.plug(ns, fmt.Sprintf("v%d", i), fmt.Sprintf("%s.%d/24", labNet, i), "")
		args := []string{"--bootstrap-expect", fmt.Sprint(size), "--boot-interface", "eth0"}
		for j := 1; j <= size; j++ {
			if j != i {
				args = append(args, "--join", fmt.Sprintf("%s.%d:%s", labNet, j, gossipPort))
			}
		}
		n := &node{
			tb: t, name: fmt.Sprintf("n%d", i), ip: fmt.Sprintf("%s.%d", labNet, i), netns: ns,
			dataDir: filepath.Join(t.TempDir(), "data"),
			logPath: filepath.Join(c.logDir, fmt.Sprintf("n%d.log", i)),
			args:    append(args, extra...),
		}
		c.nodes = append(c.nodes, n)
	}
	return l
}

func (l *lab) nsPath(ns string) string { return "/run/netns/" + ns }

func (l *lab) addNS(ns string) {
	l.tb.Helper()
	sh(l.tb, "ip", "netns", "add", ns)
	l.nss = append(l.nss, ns)
	sh(l.tb, "ip", "-n", ns, "link", "set", "lo", "up")
}

// plug creates namespace ns with eth0 on the bridge (port name port in the
// lan namespace), addressed cidr ("" for none) and with MAC mac ("" for a
// random one). IPv6 duplicate address detection is off, so the link-local
// address is usable at once (the RA responder sends from it).
func (l *lab) plug(ns, port, cidr, mac string) {
	l.tb.Helper()
	l.addNS(ns)
	sh(l.tb, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	sh(l.tb, "ip", "-n", l.lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	sh(l.tb, "ip", "-n", l.lan, "link", "set", port, "master", "br0", "up")
	if mac != "" {
		sh(l.tb, "ip", "-n", ns, "link", "set", "eth0", "address", mac)
	}
	if cidr != "" {
		sh(l.tb, "ip", "-n", ns, "addr", "add", cidr, "dev", "eth0")
	}
	sh(l.tb, "ip", "-n", ns, "link", "set", "eth0", "up")
}

// client adds a client namespace <p>-c<i> on the bridge.
func (l *lab) client(i int, cidr, mac string) string {
	ns := fmt.Sprintf("%s-c%d", l.prefix, i)
	l.plug(ns, fmt.Sprintf("c%d", i), cidr, mac)
	return ns
}

// inNS runs a command in ns with a timeout and returns its combined output.
func (l *lab) inNS(ns string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

func (l *lab) destroy() {
	for i := len(l.nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", l.nss[i]).CombinedOutput(); err != nil {
			l.tb.Logf("cleanup: ip netns del %s: %v %s", l.nss[i], err, out)
		}
	}
}

// dialIn dials from inside the network namespace at path: the socket is
// created on an OS thread switched into it (a socket stays in the namespace
// it was created in), and the thread is switched back afterwards. It must
// not simply exit locked: the runtime would end the thread, and children
// started from that thread with Pdeathsig (the servers) would be killed.
func dialIn(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("own netns: %w", err)}
				return
			}
			defer unix.Close(orig)
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("open %s: %w", path, err)}
				return
			}
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("setns %s: %w", path, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread() // back home: the thread may serve others
			} // else: stay locked; the runtime discards the thread on exit
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}
