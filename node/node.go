package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/shoal-project/shoal/cluster"
	"github.com/shoal-project/shoal/transfer"
)

// Config of a server node. The HTTP bind address is Cluster.HTTPAddr, which
// is also what peers are told to use (after --advertise substitution).
type Config struct {
	Cluster  cluster.Config
	Transfer transfer.Config // Dir defaults to <data dir>/blobs
	// ImportDir: files below it may be imported with `image import --local`;
	// empty disables local imports.
	ImportDir string
	// Boot configures DHCP, TFTP and the RA responder; off unless
	// Boot.Interface is set. The HTTP boot routes are always served.
	Boot   BootConfig
	Logger *slog.Logger
	// Listening, if set, is called once the HTTP API listens, with the
	// addresses the node uses (for `shoal server` to print).
	Listening func(Addrs)
}

// Addrs are the addresses a running node listens on.
type Addrs struct {
	HTTP, Raft, Gossip, Torrent string
	Boot                        string // "" when off, else a summary
}

// DefaultConfig is a single-node server on loopback.
func DefaultConfig() Config {
	return Config{Cluster: cluster.DefaultConfig(), Transfer: transfer.DefaultConfig(), Boot: DefaultBootConfig()}
}

// Validate checks the whole node configuration.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Transfer.ListenAddr); err != nil {
		return fmt.Errorf("torrent address %q: %w", c.Transfer.ListenAddr, err)
	}
	if err := c.Cluster.Validate(); err != nil {
		return err
	}
	b := c.Boot
	return b.resolve(c.Cluster.HTTPAddr)
}

// Node is one server node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	cluster *cluster.Cluster
	xfer    *transfer.Server
	reg     *prometheus.Registry
	api     *api
	boot    *bootServices
}

// New builds a node; nothing is opened or started until Run.
func New(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Boot.resolve(cfg.Cluster.HTTPAddr); err != nil {
		return nil, err
	}
	cfg.Cluster.Logger = cfg.Logger
	cfg.Transfer.Logger = cfg.Logger.With("subsystem", "transfer")
	if cfg.Transfer.Dir == "" {
		cfg.Transfer.Dir = filepath.Join(cfg.Cluster.DataDir, "blobs")
	}
	torrent, err := cfg.Cluster.Advertised(cfg.Transfer.ListenAddr)
	if err != nil {
		return nil, err
	}
	cfg.Cluster.Meta = map[string]string{MetaTorrent: torrent}
	if cfg.Boot.NBDAddr != "" {
		nbdAddr, err := cfg.Cluster.Advertised(cfg.Boot.NBDAddr)
		if err != nil {
			return nil, err
		}
		cfg.Cluster.Meta[MetaNBD] = nbdAddr
	}
	cl, err := cluster.New(cfg.Cluster)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(cl.Collectors()...)
	xfer, err := transfer.NewServer(cfg.Transfer, cl.Catalog(), gossipPeers{cl: cl, self: cfg.Cluster.NodeName}, reg)
	if err != nil {
		return nil, err
	}
	boot, err := newBootServices(cfg.Boot, cl, xfer, cfg.Cluster.NodeName, reg, cfg.Logger.With("subsystem", "boot"))
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("subsystem", "node"), cluster: cl, xfer: xfer, reg: reg, boot: boot}
	n.api = newAPI(cl, xfer, boot, cfg, reg, cfg.Logger.With("subsystem", "api"))
	return n, nil
}

// BootConfig is the boot configuration as resolved (addresses filled in).
func (n *Node) BootConfig() BootConfig { return n.cfg.Boot }

// Cluster gives tests and embedders the member.
func (n *Node) Cluster() *cluster.Cluster { return n.cluster }

// Handler is the node's whole HTTP surface.
func (n *Node) Handler() http.Handler { return n.api.handler(n.cluster.InternalHandler()) }

// Run starts the node and blocks until ctx ends, then shuts down. It
// returns an error only when something failed, never for a clean stop.
func (n *Node) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", n.cfg.Cluster.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", n.cfg.Cluster.HTTPAddr, err)
	}
	serveBoot, err := n.boot.listen()
	if err != nil {
		ln.Close()
		return err
	}
	// release closes what is open so far when a later step fails: the
	// serve functions close their sockets once their context is done.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	release := func(serve ...func(context.Context) error) {
		ln.Close()
		for _, s := range serve {
			s(done)
		}
	}
	serveNBD, err := n.boot.listenNBD(n.cfg.Boot.NBDAddr, &nbdExports{cat: n.cluster.Catalog(), xfer: n.xfer}, n.reg)
	if err != nil {
		release(serveBoot)
		return err
	}
	if err := n.xfer.Start(); err != nil {
		release(serveBoot, serveNBD)
		return err
	}
	if err := n.cluster.Start(); err != nil {
		release(serveBoot, serveNBD)
		n.xfer.Close()
		return err
	}
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 10 * time.Second}
	if n.cfg.Listening != nil {
		n.cfg.Listening(Addrs{HTTP: ln.Addr().String(), Raft: n.cfg.Cluster.RaftAddr,
			Gossip: n.cfg.Cluster.GossipAddr, Torrent: n.xfer.Addr(), Boot: n.boot.summary()})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error { return n.cluster.Run(gctx) })
	g.Go(func() error { return n.xfer.Run(gctx) })
	g.Go(func() error { return serveBoot(gctx) })
	g.Go(func() error { return serveNBD(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		n.shutdown(srv)
		return nil
	})
	return g.Wait()
}

// shutdown order: the API first, so no new writes arrive on a node that is
// leaving; then the cluster member (raft leave, gossip leave, raft stop),
// whose own order is documented on cluster.Shutdown; the torrent client
// last, so peers can finish pieces while the node says goodbye.
func (n *Node) shutdown(srv *http.Server) {
	n.log.Info("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		n.log.Warn("http shutdown", "err", err)
	}
	if err := n.cluster.Shutdown(); err != nil {
		n.log.Warn("cluster shutdown", "err", err)
	}
	if err := n.xfer.Close(); err != nil {
		n.log.Warn("torrent client close", "err", err)
	}
}
