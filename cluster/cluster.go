package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// Cluster is one server node's membership and replica. New builds nothing;
// Start opens the stores and sockets; Run drives the background loops until
// its context ends; Shutdown leaves the cluster in a stated order.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	state  *catalog.State
	reg    *registry
	httpc  *http.Client
	writec *http.Client

	raftAddr string // advertised
	httpAddr string // advertised

	wal   *raftwal.WAL
	meta  *metadb.BoltMetaDB
	snaps raft.SnapshotStore
	trans *raft.NetworkTransport
	raft  *raft.Raft
	ml    *memberlist.Memberlist
	// gossipSelf is this node's gossip address, read once at start:
	// memberlist's LocalNode returns its own node struct, which it rewrites
	// in place on every UpdateNode (a data race for readers).
	gossipSelf string
	// gossipMeta is what this node gossips about itself.
	gossipMeta *delegate
	pilot      *pilot
	ap         *autopilot.Autopilot

	ready    chan struct{}
	stopOnce sync.Once
	metrics  *metrics
}

// New checks the configuration and returns an unstarted member.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("subsystem", "cluster")
	raftAddr, err := cfg.Advertised(cfg.RaftAddr)
	if err != nil {
		return nil, err
	}
	httpAddr, err := cfg.Advertised(cfg.HTTPAddr)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg: cfg, log: log, state: catalog.New(), reg: newRegistry(log),
		httpc: &http.Client{Timeout: 5 * time.Second},
		// Forwarded writes: a timeout longer than the leader's own apply
		// timeout, so a slow commit is answered rather than cut off with its
		// outcome unknown; and a fresh connection each time, because a
		// request written on a stale keep-alive connection to a dead leader
		// fails after being sent (outcome unknown), while a dial to it fails
		// before (safe to retry on the new leader). A handshake per write is
		// cheap next to a raft commit.
		writec: &http.Client{Timeout: cfg.WriteTimeout + 5*time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}},
		raftAddr: raftAddr, httpAddr: httpAddr, ready: make(chan struct{}),
	}
	c.pilot = &pilot{c: c}
	c.metrics = newMetrics(c)
	return c, nil
}

// Catalog is the local replica. It never needs a leader.
func (c *Cluster) Catalog() *catalog.State { return c.state }

// Name is this node's name (its raft server ID).
func (c *Cluster) Name() string { return c.cfg.NodeName }

// Start opens the raft stores, the raft and gossip sockets and joins.
func (c *Cluster) Start() error {
	if err := c.checkNodeID(); err != nil {
		return err
	}
	if err := c.startRaft(); err != nil {
		return err
	}
	if err := c.startGossip(); err != nil {
		c.raft.Shutdown().Error()
		c.trans.Close()
		c.closeStores()
		return err
	}
	c.ap = autopilot.New(c.raft, c.pilot,
		autopilot.WithLogger(c.hclog("autopilot")),
		autopilot.WithPromoter(&promoter{max: c.cfg.MaxVoters, current: c.servers}),
		autopilot.WithUpdateInterval(c.cfg.Timing.AutopilotInterval),
		autopilot.WithReconcileInterval(c.cfg.Timing.AutopilotInterval))
	close(c.ready)
	c.log.Info("cluster member started", "node", c.cfg.NodeName, "raft", c.raftAddr,
		"gossip", c.gossipSelf, "http", c.httpAddr)
	return nil
}

// checkNodeID refuses a data dir that belongs to another node name: raft
// would otherwise present the old identity's log under a new ID.
func (c *Cluster) checkNodeID() error {
	if err := os.MkdirAll(c.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	p := filepath.Join(c.cfg.DataDir, "node-name")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return writeFileAtomic(p, []byte(c.cfg.NodeName+"\n"))
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if got := strings.TrimSpace(string(b)); got != c.cfg.NodeName {
		return fmt.Errorf("data dir %s belongs to node %q, not %q: use --node-name %s or another --data-dir",
			c.cfg.DataDir, got, c.cfg.NodeName, got)
	}
	return nil
}

func (c *Cluster) hclog(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name: name, Level: hclog.Warn, DisableTime: true, Output: slogWriter{c.log.With("lib", name)},
	})
}

func (c *Cluster) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.cfg.NodeName)
	t := c.cfg.Timing
	rc.HeartbeatTimeout, rc.ElectionTimeout = t.HeartbeatTimeout, t.ElectionTimeout
	rc.LeaderLeaseTimeout, rc.CommitTimeout = t.LeaderLeaseTimeout, t.CommitTimeout
	rc.SnapshotThreshold = c.cfg.SnapshotThreshold
	rc.SnapshotInterval = c.cfg.SnapshotInterval
	rc.TrailingLogs = c.cfg.SnapshotThreshold / 2
	rc.Logger = c.hclog("raft")
	return rc
}

func (c *Cluster) startRaft() error {
	dir := filepath.Join(c.cfg.DataDir, "raft")
	walDir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(walDir, 0o750); err != nil {
		return fmt.Errorf("raft dir: %w", err)
	}
	// raft-wal v0.4.0's Close leaves its bolt meta DB open, and bolt's file
	// lock then blocks a restart in the same process: own it and close it.
	meta := &metadb.BoltMetaDB{}
	wal, err := raftwal.Open(walDir, raftwal.WithMetaStore(meta))
	if err != nil {
		return fmt.Errorf("open raft log %s: %w", walDir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, c.cfg.SnapshotRetain, c.hclog("snapshots"))
	if err != nil {
		wal.Close()
		meta.Close()
		return fmt.Errorf("snapshot store: %w", err)
	}
	adv, err := net.ResolveTCPAddr("tcp", c.raftAddr)
	if err != nil {
		wal.Close()
		meta.Close()
		return fmt.Errorf("raft advertise address %s: %w", c.raftAddr, err)
	}
	trans, err := raft.NewTCPTransportWithLogger(c.cfg.RaftAddr, adv, 3, 5*time.Second, c.hclog("raft-net"))
	if err != nil {
		wal.Close()
		meta.Close()
		return fmt.Errorf("raft listen %s: %w", c.cfg.RaftAddr, err)
	}
	r, err := raft.NewRaft(c.raftConfig(), &fsm{state: c.state}, logStore{wal}, wal, snaps, trans)
	if err != nil {
		trans.Close()
		wal.Close()
		meta.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	c.wal, c.meta, c.snaps, c.trans, c.raft = wal, meta, snaps, trans, r
	return nil
}

func (c *Cluster) startGossip() error {
	host, port, err := net.SplitHostPort(c.cfg.GossipAddr)
	if err != nil {
		return err
	}
	p, _ := strconv.Atoi(port)
	advHostPort, err := c.cfg.Advertised(c.cfg.GossipAddr)
	if err != nil {
		return err
	}
	advHost, _, _ := net.SplitHostPort(advHostPort)
	meta := map[string]string{MetaRaft: c.raftAddr, MetaHTTP: c.httpAddr}
	for k, v := range c.cfg.Meta {
		meta[k] = v
	}
	c.gossipMeta = &delegate{meta: meta}
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.cfg.NodeName
	mc.BindAddr, mc.BindPort = host, p
	mc.AdvertiseAddr, mc.AdvertisePort = advHost, p
	t := c.cfg.Timing
	mc.ProbeInterval, mc.ProbeTimeout = t.ProbeInterval, t.ProbeTimeout
	mc.SuspicionMult, mc.GossipInterval = t.SuspicionMult, t.GossipInterval
	mc.Delegate = c.gossipMeta
	mc.Events = events{reg: c.reg}
	mc.Logger = nil
	mc.LogOutput = slogWriter{c.log.With("lib", "memberlist")}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("gossip listen %s: %w", c.cfg.GossipAddr, err)
	}
	c.ml = ml
	c.gossipSelf = ml.LocalNode().Address() // nothing updates the node yet
	return nil
}

// Run drives joining, bootstrapping and, while leader, the voter manager.
// It returns nil when ctx ends; call Shutdown afterwards.
func (c *Cluster) Run(ctx context.Context) error {
	go c.gossipLoop(ctx)
	if err := c.bootstrap(ctx); err != nil {
		return err
	}
	c.leaderLoop(ctx)
	return nil
}

// bootstrap forms a new cluster once BootstrapExpect servers are seen by
// gossip, like Consul's bootstrap_expect: every one of them bootstraps with
// the same sorted server list, which raft accepts as the same configuration.
func (c *Cluster) bootstrap(ctx context.Context) error {
	if c.cfg.BootstrapExpect == 0 {
		return nil
	}
	has, err := raft.HasExistingState(c.wal, c.wal, c.snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	if has {
		return nil
	}
	for {
		var servers []raft.Server
		for _, m := range c.reg.alive() {
			if m.RaftAddr() != "" {
				servers = append(servers, raft.Server{ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.RaftAddr())})
			}
		}
		if len(servers) >= c.cfg.BootstrapExpect && c.existingCluster(ctx) == "" {
			c.log.Info("bootstrapping cluster", "servers", len(servers))
			err := c.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
			if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				return fmt.Errorf("bootstrap: %w", err)
			}
			return nil
		}
		if c.raft.Leader() != "" {
			return nil // another node's leader added us meanwhile
		}
		if leader := c.existingCluster(ctx); leader != "" {
			c.log.Info("a cluster already exists; waiting to be added instead of bootstrapping", "leader", leader)
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.reg.changed:
		case <-time.After(time.Second):
			c.log.Info("waiting for servers before bootstrapping", "have", len(servers), "expect", c.cfg.BootstrapExpect)
		}
	}
}

// Shutdown leaves in this order, each step for the reason given:
//  1. graceful leave: ask the leader to drop us from the raft configuration
//     while raft still runs (so a voter's departure does not count as a
//     failure and the quorum shrinks at once); a leader first hands off
//     leadership so writes pause for one heartbeat, not an election;
//  2. gossip leave, so peers mark us "left" rather than "failed";
//  3. raft shutdown, then the transport and the log store.
func (c *Cluster) Shutdown() error {
	var err error
	c.stopOnce.Do(func() {
		select {
		case <-c.ready:
		default:
			return
		}
		c.leave()
		if lerr := c.ml.Leave(2 * time.Second); lerr != nil {
			c.log.Warn("gossip leave", "err", lerr)
		}
		c.ml.Shutdown()
		err = c.raft.Shutdown().Error()
		c.trans.Close()
		if werr := c.closeStores(); err == nil {
			err = werr
		}
		c.log.Info("cluster member stopped")
	})
	return err
}

func (c *Cluster) leave() {
	if c.numServers() <= 1 {
		return
	}
	if c.raft.State() == raft.Leader {
		if err := c.raft.LeadershipTransfer().Error(); err != nil {
			c.log.Warn("leadership transfer before leaving failed", "err", err)
		}
	}
	// Announce the departure first, so that no leader re-adds us between
	// our removal from raft and our gossip leave.
	c.gossipMeta.setMeta(MetaLeaving, "1")
	if err := c.ml.UpdateNode(time.Second); err != nil {
		c.log.Warn("announce leaving", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.RemoveServer(ctx, c.cfg.NodeName); err != nil {
		c.log.Warn("could not leave the raft configuration; the leader will remove us once gossip reports us left", "err", err)
	}
}

// existingCluster asks the live members whether they already follow a
// leader: a node with a wiped data dir, or one started later with the same
// --bootstrap-expect, must join that cluster, not found a second one.
func (c *Cluster) existingCluster(ctx context.Context) string {
	for _, m := range c.reg.alive() {
		if m.Name == c.cfg.NodeName || m.HTTPAddr() == "" {
			continue
		}
		var st raftStats
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.getJSON(cctx, "http://"+m.HTTPAddr()+"/v1/internal/stats", &st)
		cancel()
		if err == nil && st.Leader != "" {
			return st.Leader
		}
	}
	return ""
}

func (c *Cluster) numServers() int {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	return len(f.Configuration().Servers)
}

// slogWriter adapts libraries that log to an io.Writer.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(msg, "[ERR]") || strings.Contains(msg, "[ERROR]"):
		w.log.Error(msg)
	case strings.Contains(msg, "[WARN]"):
		w.log.Warn(msg)
	case strings.Contains(msg, "[DEBUG]"):
	default:
		w.log.Info(msg)
	}
	return len(p), nil
}

var _ io.Writer = slogWriter{}

// Abort stops the member without leaving anything: to its peers it looks
// exactly like a crash (no gossip leave, no raft removal). It exists for
// fault-injection tests; servers use Shutdown.
func (c *Cluster) Abort() {
	c.stopOnce.Do(func() {
		select {
		case <-c.ready:
		default:
			return
		}
		c.ml.Shutdown()
		c.raft.Shutdown().Error()
		c.trans.Close()
		c.closeStores()
	})
}

func (c *Cluster) closeStores() error {
	return errors.Join(c.wal.Close(), c.meta.Close())
}

// logStore hides entries raft has compacted away. raft-wal v0.4.0 keeps
// them readable until their 64 MiB segment is sealed, so a leader would
// replay thousands of old entries to a lagging follower instead of sending
// the snapshot that replaced them; with this, GetLog below FirstIndex says
// ErrLogNotFound and raft sends the snapshot, as the log's owner intended.
type logStore struct{ *raftwal.WAL }

func (l logStore) GetLog(index uint64, log *raft.Log) error {
	first, err := l.FirstIndex()
	if err == nil && index < first {
		return raft.ErrLogNotFound
	}
	return l.WAL.GetLog(index, log)
}
