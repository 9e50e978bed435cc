// Package clustertest runs several cluster members in one test process on
// loopback with shortened timeouts, each serving the cluster's internal
// HTTP API so that forwarding works as it does between real nodes.
package clustertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-project/shoal/cluster"
)

// Options tune a test cluster.
type Options struct {
	MaxVoters       int
	DeadServerGrace time.Duration
	WriteTimeout    time.Duration
	// BootstrapAll makes every initial node wait for all of them
	// (--bootstrap-expect N) instead of node 0 bootstrapping alone.
	BootstrapAll bool
}

// Cluster is a set of in-process members.
type Cluster struct {
	t     testing.TB
	opts  Options
	ip    string // 127.<a>.<b>. prefix, unique per test cluster
	mu    sync.Mutex
	Nodes []*Node
}

// Node is one member plus what is needed to stop and restart it.
type Node struct {
	*cluster.Cluster
	Name   string
	c      *Cluster
	cfg    cluster.Config
	t      testing.TB
	cancel context.CancelFunc
	done   chan struct{}
	srv    *http.Server
}

var seq atomic.Uint32

// New starts n members; node 0 bootstraps and the others join it by gossip
// (or, with BootstrapAll, all bootstrap together). It waits for a leader.
func New(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.MaxVoters == 0 {
		opts.MaxVoters = 5
	}
	if opts.DeadServerGrace == 0 {
		opts.DeadServerGrace = time.Minute
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 5 * time.Second
	}
	id := seq.Add(1) + uint32(os.Getpid()%200)*50
	c := &Cluster{t: t, opts: opts, ip: fmt.Sprintf("127.%d.%d.", 100+id/250%150, id%250)}
	for i := 0; i < n; i++ {
		expect := 0
		if i == 0 {
			expect = 1
		}
		if opts.BootstrapAll {
			expect = n
		}
		c.add(expect)
	}
	c.WaitLeader()
	return c
}

// Add starts one more member that joins by gossip.
func (c *Cluster) Add() *Node { return c.add(0) }

func (c *Cluster) add(expect int) *Node {
	c.mu.Lock()
	i := len(c.Nodes)
	c.mu.Unlock()
	ip := fmt.Sprintf("%s%d", c.ip, i+1)
	cfg := cluster.DefaultConfig()
	cfg.NodeName = fmt.Sprintf("n%d", i)
	cfg.DataDir = filepath.Join(c.t.TempDir(), cfg.NodeName)
	cfg.RaftAddr, cfg.GossipAddr, cfg.HTTPAddr = ip+":7481", ip+":7946", ip+":7480"
	cfg.BootstrapExpect = expect
	if i > 0 || expect > 1 {
		cfg.Join = []string{c.ip + "1:7946"}
	}
	cfg.MaxVoters, cfg.DeadServerGrace, cfg.WriteTimeout = c.opts.MaxVoters, c.opts.DeadServerGrace, c.opts.WriteTimeout
	cfg.StabilizationTime = 300 * time.Millisecond
	cfg.SnapshotInterval = time.Second
	cfg.Timing = cluster.FastTiming()
	n := &Node{Name: cfg.NodeName, c: c, cfg: cfg, t: c.t}
	n.start()
	c.mu.Lock()
	c.Nodes = append(c.Nodes, n)
	c.mu.Unlock()
	c.t.Cleanup(n.Kill)
	return n
}

func (n *Node) start() {
	n.t.Helper()
	n.cfg.Logger = Logger(n.cfg.NodeName)
	cl, err := cluster.New(n.cfg)
	if err != nil {
		n.t.Fatalf("%s: %v", n.Name, err)
	}
	ln, err := listenRetry(n.cfg.HTTPAddr)
	if err != nil {
		n.t.Fatalf("%s: %v", n.Name, err)
	}
	if err := cl.Start(); err != nil {
		ln.Close()
		n.t.Fatalf("%s: start: %v", n.Name, err)
	}
	n.Cluster = cl
	n.srv = &http.Server{Handler: cl.InternalHandler()}
	go n.srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		cl.Run(ctx)
	}()
}

// listenRetry copes with a just-closed listener of a restarted node.
func listenRetry(addr string) (net.Listener, error) {
	var err error
	for i := 0; i < 50; i++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

// Kill crashes the node: peers see a failure, not a leave.
func (n *Node) Kill() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.srv.Close()
	n.Cluster.Abort()
	n.cancel = nil
}

// Stop shuts the node down gracefully (leave, then stop).
func (n *Node) Stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.srv.Close()
	if err := n.Cluster.Shutdown(); err != nil {
		n.t.Logf("%s: shutdown: %v", n.Name, err)
	}
	n.cancel = nil
}

// Restart starts a stopped or killed node again on the same data dir and
// flags.
func (n *Node) Restart() {
	n.t.Helper()
	// Same configuration as the first start, as an operator would restart
	// it: node 0 has no --join and must find its peers by itself.
	n.start()
}

// Running reports whether the node is up.
func (n *Node) Running() bool { return n.cancel != nil }

// WaitLeader waits until every running node agrees on one leader.
func (c *Cluster) WaitLeader() *Node {
	c.t.Helper()
	var leader *Node
	c.Wait("one leader agreed by all running nodes", 10*time.Second, func() bool {
		leader = nil
		name := ""
		for _, n := range c.Running() {
			st := n.Status()
			if st.Leader == "" || (name != "" && st.Leader != name) {
				return false
			}
			name = st.Leader
			if st.State == "Leader" {
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

// Running lists the nodes that are up.
func (c *Cluster) Running() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// Followers lists running nodes that are not the leader.
func (c *Cluster) Followers() []*Node {
	var out []*Node
	for _, n := range c.Running() {
		if n.Status().State != "Leader" {
			out = append(out, n)
		}
	}
	return out
}

// Wait polls cond every 20 ms until it holds or the timeout passes; the
// reason names what was awaited in the failure.
func (c *Cluster) Wait(reason string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	Wait(c.t, reason, timeout, cond)
}

// Wait is the package's one polling loop.
func Wait(t testing.TB, reason string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Suffrages maps server ID to suffrage as the leader sees it.
func (c *Cluster) Suffrages() map[string]string {
	out := map[string]string{}
	for _, s := range c.WaitLeader().Status().Servers {
		out[s.ID] = s.Suffrage
	}
	return out
}

// Logger prefixes each node's log lines with its name; quiet unless
// SHOAL_TEST_LOG is set, since passing tests should print nothing.
func Logger(name string) *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("SHOAL_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
}
