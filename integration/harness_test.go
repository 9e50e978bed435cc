//go:build integration

// Package integration runs real `shoal server` processes on loopback and
// checks the cluster from the outside, through the HTTP API and the CLI.
//
// Every node of a cluster gets its own loopback IP, 127.0.N.i, and the
// default ports (7480 HTTP, 7481 raft, 7946 gossip); N is chosen per test so
// that tests never share addresses. Linux routes all of 127/8 to lo.
//
// Environment:
//
//	SHOAL_BIN          the shoal binary to test (the Makefile sets it); without
//	                   it TestMain builds one with CGO_ENABLED=0
//	SHOAL_IT_LOG_DIR   keep the node logs in this directory instead of the
//	                   test's temporary directory
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Default ports of `shoal server`; every node uses them on its own IP.
const (
	httpPort    = "7480"
	raftPort    = "7481"
	gossipPort  = "7946"
	torrentPort = "7482"
)

// shoalBin is the binary every test runs, set by TestMain.
var shoalBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "shoal-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	shoalBin, err = prepareBinary(tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	return m.Run()
}

// prepareBinary copies $SHOAL_BIN into dir (so a concurrent rebuild of
// bin/shoal cannot swap the binary in the middle of a run), or builds one.
func prepareBinary(dir string) (string, error) {
	dst := filepath.Join(dir, "shoal")
	if src := os.Getenv("SHOAL_BIN"); src != "" {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", fmt.Errorf("SHOAL_BIN: %w", err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			return "", err
		}
		return dst, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dst, "./cmd/shoal")
	cmd.Dir = ".." // the module root, from the package directory go test runs in
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building shoal: %v\n%s", err, out)
	}
	return dst, nil
}

// cleanEnv is the environment for child processes: no SHOAL_* variable of
// the caller may change a server's settings or the CLI's target.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SHOAL_") {
			env = append(env, kv)
		}
	}
	return env
}

// ---------------------------------------------------------------------------
// Addresses

var (
	subnetMu   sync.Mutex
	subnetUsed = map[int]bool{}
)

// allocSubnet returns N for 127.0.N.x, starting at want: the first N not
// used earlier in this process whose first `hosts` addresses have all three
// default ports free (another run on the same machine may hold some).
func allocSubnet(tb testing.TB, want, hosts int) int {
	tb.Helper()
	subnetMu.Lock()
	defer subnetMu.Unlock()
	for n := want; n < want+40 && n < 255; n++ {
		if subnetUsed[n] || !portsFree(n, hosts) {
			continue
		}
		subnetUsed[n] = true
		return n
	}
	tb.Fatalf("no free loopback subnet 127.0.N.0 for N in [%d, %d)", want, want+40)
	return 0
}

func portsFree(n, hosts int) bool {
	for i := 1; i <= hosts; i++ {
		ip := fmt.Sprintf("127.0.%d.%d", n, i)
		for _, p := range []string{httpPort, raftPort, gossipPort, torrentPort} {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, p))
			if err != nil {
				return false
			}
			ln.Close()
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, gossipPort))
		if err != nil {
			return false
		}
		pc.Close()
	}
	return true
}

// ---------------------------------------------------------------------------
// Nodes

// node is one `shoal server` process (and its restarts, which keep the
// name, addresses and data dir).
type node struct {
	tb      testing.TB
	name    string
	ip      string
	dataDir string
	logPath string
	args    []string // flags beyond name and addresses
	netns   string   // run inside this network namespace (netns labs)

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	exitErr error
	starts  int
}

func (n *node) httpAddr() string   { return net.JoinHostPort(n.ip, httpPort) }
func (n *node) raftAddr() string   { return net.JoinHostPort(n.ip, raftPort) }
func (n *node) gossipAddr() string { return net.JoinHostPort(n.ip, gossipPort) }
func (n *node) url(path string) string {
	return "http://" + n.httpAddr() + path
}

// start launches the process (again, after a stop, with the same data dir)
// and returns at once; see waitHealthy.
func (n *node) start() {
	n.tb.Helper()
	if n.running() {
		n.tb.Fatalf("%s: start while already running", n.name)
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.tb.Fatalf("%s: log file: %v", n.name, err)
	}
	n.mu.Lock()
	n.starts++
	fmt.Fprintf(logf, "=== harness: start #%d of %s at %s\n", n.starts, n.name, time.Now().Format(time.RFC3339Nano))
	n.mu.Unlock()
	args := append([]string{"server",
		"--node-name", n.name,
		"--data-dir", n.dataDir,
		"--http-addr", n.httpAddr(),
		"--raft-addr", n.raftAddr(),
		"--gossip-addr", n.gossipAddr(),
		"--torrent-addr", net.JoinHostPort(n.ip, torrentPort),
	}, n.args...)
	cmd := exec.Command(shoalBin, args...)
	if n.netns != "" {
		// ip netns exec setns()es and then execs shoal: same PID, so
		// signals and Pdeathsig reach the server itself.
		cmd = exec.Command("ip", append([]string{"netns", "exec", n.netns, shoalBin}, args...)...)
	}
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies, its servers die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.tb.Fatalf("%s: start: %v", n.name, err)
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.done, n.exitErr = cmd, done, nil
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		n.exitErr = err
		n.mu.Unlock()
		close(done)
	}()
}

func closed(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// running reports whether the current process is alive.
func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && !closed(n.done)
}

func (n *node) doneCh() chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.done
}

// exitError is how the last process ended (nil while running or for 0).
func (n *node) exitError() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exitErr
}

// kill sends SIGKILL (a crash) and waits until the process is gone.
func (n *node) kill() {
	n.tb.Helper()
	n.signal(syscall.SIGKILL)
	if !n.waitExit(10 * time.Second) {
		n.tb.Fatalf("%s: still running 10s after SIGKILL", n.name)
	}
}

// term sends SIGTERM (graceful leave) and waits up to timeout for the exit,
// returning the process's exit error (nil for status 0).
func (n *node) term(timeout time.Duration) error {
	n.tb.Helper()
	n.signal(syscall.SIGTERM)
	if !n.waitExit(timeout) {
		n.signal(syscall.SIGKILL)
		n.waitExit(10 * time.Second)
		n.tb.Fatalf("%s: did not exit within %s of SIGTERM (killed)", n.name, timeout)
	}
	return n.exitError()
}

func (n *node) signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil || closed(done) {
		return
	}
	_ = cmd.Process.Signal(sig)
}

func (n *node) waitExit(timeout time.Duration) bool {
	done := n.doneCh()
	if done == nil {
		return true // never started
	}
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// logTail returns the last lines of the node's log, each prefixed with
// the node name.
func (n *node) logTail(lines int) string {
	f, err := os.Open(n.logPath)
	if err != nil {
		return fmt.Sprintf("[%s] (no log: %v)", n.name, err)
	}
	defer f.Close()
	var all []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		all = append(all, sc.Text())
		if len(all) > 4*lines {
			all = all[len(all)-lines:]
		}
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	var b strings.Builder
	for _, l := range all {
		fmt.Fprintf(&b, "[%s] %s\n", n.name, l)
	}
	return b.String()
}

// logContains reports whether the node's log has a line matching re.
func (n *node) logContains(re *regexp.Regexp) bool {
	b, err := os.ReadFile(n.logPath)
	return err == nil && re.Match(b)
}

// ---------------------------------------------------------------------------
// Clusters

// cluster is a set of nodes on one loopback subnet, plus an HTTP client.
type cluster struct {
	cliNS  string // run the CLI in this network namespace (netns labs)
	tb     testing.TB
	subnet int
	logDir string
	nodes  []*node
	hc     *http.Client
}

// newCluster prepares (does not start) size nodes n1..n<size> on 127.0.N.i,
// N from allocSubnet(want). Each node joins all the others and waits for
// `size` servers before bootstrapping; a single node bootstraps alone.
// reserve extra addresses for nodes added later with addNode.
func newCluster(tb testing.TB, want, size, reserve int, extra ...string) *cluster {
	tb.Helper()
	c := &cluster{
		tb:     tb,
		subnet: allocSubnet(tb, want, size+reserve),
		hc: &http.Client{
			Timeout:   30 * time.Second, // a write may wait --write-timeout for a leader
			Transport: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second},
		},
	}
	c.logDir = tb.TempDir()
	if d := os.Getenv("SHOAL_IT_LOG_DIR"); d != "" {
		c.logDir = filepath.Join(d, strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name()))
		if err := os.MkdirAll(c.logDir, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(c.cleanup)
	for i := 1; i <= size; i++ {
		var args []string
		if size > 1 {
			for j := 1; j <= size; j++ {
				if j != i {
					args = append(args, "--join", fmt.Sprintf("127.0.%d.%d:%s", c.subnet, j, gossipPort))
				}
			}
		}
		args = append(args, "--bootstrap-expect", fmt.Sprint(size))
		c.addNode(fmt.Sprintf("n%d", i), i, append(args, extra...)...)
	}
	return c
}

// addNode defines (does not start) a node on host address i of the subnet.
func (c *cluster) addNode(name string, i int, args ...string) *node {
	n := &node{
		tb:      c.tb,
		name:    name,
		ip:      fmt.Sprintf("127.0.%d.%d", c.subnet, i),
		dataDir: filepath.Join(c.tb.TempDir(), name+"-data"),
		logPath: filepath.Join(c.logDir, name+".log"),
		args:    args,
	}
	c.nodes = append(c.nodes, n)
	return n
}

// cleanup kills every process, then prints the log tails if the test failed.
func (c *cluster) cleanup() {
	for _, n := range c.nodes {
		n.signal(syscall.SIGKILL)
	}
	for _, n := range c.nodes {
		if !n.waitExit(10 * time.Second) {
			c.tb.Logf("%s: still running 10s after SIGKILL", n.name)
		}
	}
	c.hc.CloseIdleConnections()
	if c.tb.Failed() {
		for _, n := range c.nodes {
			c.tb.Logf("---- last lines of %s (%s) ----\n%s", n.name, n.logPath, n.logTail(60))
		}
	}
}

// start launches every node and waits for a leader and all of them voters.
func (c *cluster) start() *node {
	c.tb.Helper()
	for _, n := range c.nodes {
		n.start()
	}
	for _, n := range c.nodes {
		c.waitHealthy(n, 30*time.Second)
	}
	var names []string
	for _, n := range c.nodes {
		names = append(names, n.name)
	}
	return c.waitVoters(30*time.Second, names...)
}

// node returns the node with the given name.
func (c *cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.tb.Fatalf("no node %q", name)
	return nil
}

// running lists the nodes whose process is alive.
func (c *cluster) running() []*node {
	var out []*node
	for _, n := range c.nodes {
		if n.running() {
			out = append(out, n)
		}
	}
	return out
}

// others lists the running nodes except the given ones.
func (c *cluster) others(except ...*node) []*node {
	var out []*node
	for _, n := range c.running() {
		if !slices.Contains(except, n) {
			out = append(out, n)
		}
	}
	return out
}

// waitHealthy polls GET /healthz until it answers 200, failing early (with
// the log) if the process exits.
func (c *cluster) waitHealthy(n *node, timeout time.Duration) time.Duration {
	c.tb.Helper()
	return c.waitFor(timeout, n.name+" /healthz 200", func() (bool, string) {
		if !n.running() {
			c.tb.Fatalf("%s exited while starting: %v\n%s", n.name, n.exitError(), n.logTail(40))
		}
		code, body, err := c.do("GET", n.url("/healthz"), nil)
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("HTTP %d %s", code, brief(body))
	})
}

// waitFor polls cond every 50 ms until it holds or timeout passes, then
// fails the test naming what it waited for and cond's last explanation.
func (c *cluster) waitFor(timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	c.tb.Helper()
	return waitFor(c.tb, timeout, what, cond)
}

func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	tb.Helper()
	const every = 50 * time.Millisecond
	start := time.Now()
	deadline := start.Add(timeout)
	last := ""
	for i := 0; i <= int(timeout/every)+1; i++ {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		last = why
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(every)
	}
	tb.Fatalf("timed out after %s waiting for %s; last: %s", time.Since(start).Round(time.Millisecond), what, last)
	return 0
}

// ---------------------------------------------------------------------------
// HTTP

// do sends one request; body, if not nil, is JSON-encoded unless it is
// already []byte. It returns the status code and the raw answer.
func (c *cluster) do(method, url string, body any) (int, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, data, err
}

// getJSON GETs url into v; a non-200 answer is an error.
func (c *cluster) getJSON(url string, v any) error {
	code, data, err := c.do("GET", url, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %s", url, code, brief(data))
	}
	return json.Unmarshal(data, v)
}

// post sends a JSON body and returns the status code and answer.
func (c *cluster) post(url string, body any) (int, []byte, error) {
	return c.do("POST", url, body)
}

// mustCreate POSTs body to path on n and fails unless the answer is 201.
func (c *cluster) mustCreate(n *node, path string, body any) {
	c.tb.Helper()
	code, data, err := c.post(n.url(path), body)
	if err != nil {
		c.tb.Fatalf("POST %s on %s: %v", path, n.name, err)
	}
	if code != http.StatusCreated {
		c.tb.Fatalf("POST %s on %s: HTTP %d, want 201: %s", path, n.name, code, brief(data))
	}
}

// ---------------------------------------------------------------------------
// API views

type status struct {
	Node              string   `json:"node"`
	State             string   `json:"state"`
	Leader            string   `json:"leader"`
	Term              uint64   `json:"term"`
	AppliedIndex      uint64   `json:"applied_index"`
	CommitIndex       uint64   `json:"commit_index"`
	LastIndex         uint64   `json:"last_index"`
	LastSnapshotIndex uint64   `json:"last_snapshot_index"`
	Servers           []server `json:"servers"`
	Catalog           struct {
		AppliedIndex uint64 `json:"applied_index"`
		Digest       string `json:"digest"`
		Groups       int    `json:"groups"`
		Clients      int    `json:"clients"`
		Images       int    `json:"images"`
		Nodes        int    `json:"nodes"`
	} `json:"catalog"`
}

type server struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

func (s status) server(id string) (server, bool) {
	for _, sv := range s.Servers {
		if sv.ID == id {
			return sv, true
		}
	}
	return server{}, false
}

func (s status) voters() []string {
	var out []string
	for _, sv := range s.Servers {
		if sv.Suffrage == "voter" {
			out = append(out, sv.ID)
		}
	}
	sort.Strings(out)
	return out
}

type digest struct {
	AppliedIndex uint64 `json:"applied_index"`
	Digest       string `json:"digest"`
}

type group struct {
	Name     string `json:"name"`
	BootMode string `json:"boot_mode"`
}

type client struct {
	MAC      string `json:"mac"`
	Hostname string `json:"hostname"`
	Group    string `json:"group"`
}

// status reads n's /v1/status. A started node answering "Starting" is an
// error here, so that callers polling for a condition retry (see
// TestHealthAndStatusAreStable for why it can happen).
func (c *cluster) status(n *node) (status, error) {
	var st status
	if err := c.getJSON(n.url("/v1/status"), &st); err != nil {
		return st, err
	}
	if st.State == "Starting" || st.State == "" {
		return st, fmt.Errorf("%s /v1/status reports state %q", n.name, st.State)
	}
	return st, nil
}

// mustStatus is status for one-off reads: it retries for a few seconds
// while the node answers "Starting" or not at all.
func (c *cluster) mustStatus(n *node) status {
	c.tb.Helper()
	var st status
	c.waitFor(5*time.Second, n.name+" /v1/status", func() (bool, string) {
		var err error
		st, err = c.status(n)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return st
}

func (c *cluster) digest(n *node) (digest, error) {
	var d digest
	err := c.getJSON(n.url("/v1/catalog/digest"), &d)
	return d, err
}

// leader waits until every running node (or the given ones) names the same
// leader and that node says it leads; it returns that node.
func (c *cluster) leader(timeout time.Duration, among ...*node) *node {
	c.tb.Helper()
	if len(among) == 0 {
		among = c.running()
	}
	var found *node
	c.waitFor(timeout, "one leader all nodes agree on", func() (bool, string) {
		name := ""
		for _, n := range among {
			st, err := c.status(n)
			if err != nil {
				return false, err.Error()
			}
			if st.Leader == "" || (name != "" && st.Leader != name) {
				return false, fmt.Sprintf("%s says leader %q, others %q", n.name, st.Leader, name)
			}
			name = st.Leader
		}
		for _, n := range among {
			if n.name == name {
				st, err := c.status(n)
				if err != nil || st.State != "Leader" {
					return false, fmt.Sprintf("%s is named leader but reports %q (%v)", name, st.State, err)
				}
				found = n
				return true, ""
			}
		}
		return false, fmt.Sprintf("leader %q is not among the nodes asked", name)
	})
	return found
}

// waitVoters waits for a leader whose raft configuration is exactly the
// named servers, all voters; it returns the leader.
func (c *cluster) waitVoters(timeout time.Duration, names ...string) *node {
	c.tb.Helper()
	want := slices.Clone(names)
	sort.Strings(want)
	var ld *node
	c.waitFor(timeout, fmt.Sprintf("a leader with voters %v", want), func() (bool, string) {
		for _, n := range c.running() {
			st, err := c.status(n)
			if err != nil || st.State != "Leader" {
				continue
			}
			if got := st.voters(); !slices.Equal(got, want) || len(st.Servers) != len(want) {
				return false, fmt.Sprintf("leader %s has servers %+v", n.name, st.Servers)
			}
			ld = n
			return true, ""
		}
		return false, "no running node reports state Leader"
	})
	return ld
}

// followers lists the running nodes other than the leader.
func (c *cluster) followers(leader *node) []*node { return c.others(leader) }

// digests reads the digest of every given node.
func (c *cluster) digests(nodes ...*node) (map[string]digest, error) {
	out := map[string]digest{}
	for _, n := range nodes {
		d, err := c.digest(n)
		if err != nil {
			return nil, err
		}
		out[n.name] = d
	}
	return out, nil
}

// waitConverged waits until all running nodes report the same digest and
// catalogue applied index, and returns it.
func (c *cluster) waitConverged(timeout time.Duration) digest {
	c.tb.Helper()
	var d digest
	c.waitFor(timeout, "equal digests and applied indexes on all running nodes", func() (bool, string) {
		ds, err := c.digests(c.running()...)
		if err != nil {
			return false, err.Error()
		}
		first := true
		for _, x := range ds {
			if first {
				d, first = x, false
			} else if x != d {
				return false, fmt.Sprintf("%+v", ds)
			}
		}
		return true, ""
	})
	return d
}

// waitSettled waits until the leader's bookkeeping is done (a node record
// for each of the `want` servers) and all running replicas agree, so a
// digest taken now is stable while nobody writes.
func (c *cluster) waitSettled(timeout time.Duration, want int) digest {
	c.tb.Helper()
	c.waitFor(timeout, fmt.Sprintf("%d node records on every running replica", want), func() (bool, string) {
		for _, n := range c.running() {
			st, err := c.status(n)
			if err != nil {
				return false, err.Error()
			}
			if st.Catalog.Nodes != want {
				return false, fmt.Sprintf("%s has %d node records", n.name, st.Catalog.Nodes)
			}
		}
		return true, ""
	})
	return c.waitConverged(timeout)
}

// ---------------------------------------------------------------------------
// CLI

// cli runs the shoal operator CLI against n and returns its stdout.
func (c *cluster) cli(n *node, args ...string) []byte {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append([]string{shoalBin, "--addr", "http://" + n.httpAddr()}, args...)
	if c.cliNS != "" {
		argv = append([]string{"ip", "netns", "exec", c.cliNS}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		c.tb.Fatalf("shoal %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// ---------------------------------------------------------------------------
// Small helpers

// mac returns a distinct, valid MAC address for i (locally administered).
func mac(prefix byte, i int) string {
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", prefix, byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
}

// brief renders an HTTP answer on one line (compact JSON), cut at 300 bytes.
func brief(data []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, data) != nil {
		b.Reset()
		b.Write(bytes.Join(bytes.Fields(data), []byte(" ")))
	}
	if b.Len() > 300 {
		return b.String()[:300] + "..."
	}
	return b.String()
}

// writeErrs collects errors from concurrent writers.
type writeErrs struct {
	mu    sync.Mutex
	codes map[string]int
	first []string
}

func (w *writeErrs) add(kind, detail string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.codes == nil {
		w.codes = map[string]int{}
	}
	w.codes[kind]++
	if len(w.first) < 5 {
		w.first = append(w.first, detail)
	}
}

func (w *writeErrs) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.codes) == 0 {
		return nil
	}
	return fmt.Errorf("failed writes by kind %v; first ones: %s", w.codes, strings.Join(w.first, " | "))
}

// createClients creates count clients of group with writers concurrent
// writers, spreading the requests over targets; MACs are mac(prefix, from+i)
// and hostnames <host>-<i>. It returns the wall time and the failures.
func (c *cluster) createClients(targets []*node, group string, prefix byte, host string, from, count, writers int) (time.Duration, error) {
	var errs writeErrs
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				n := targets[i%len(targets)]
				body := map[string]string{"mac": mac(prefix, from+i), "hostname": fmt.Sprintf("%s-%d", host, from+i), "group": group}
				code, data, err := c.post(n.url("/v1/clients"), body)
				switch {
				case err != nil:
					errs.add("transport", fmt.Sprintf("%s: %v", n.name, err))
				case code != http.StatusCreated:
					errs.add(fmt.Sprint(code), fmt.Sprintf("%s: HTTP %d %s", n.name, code, brief(data)))
				}
			}
		}()
	}
	for i := 0; i < count; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return time.Since(start), errs.err()
}

// median of durations (upper median for even counts).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func maxDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}
