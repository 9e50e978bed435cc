package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/storage"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// Catalog is what the server needs from the catalogue (cluster/catalog.State satisfies it).
type Catalog interface {
	Images() []catalog.Image
	Groups() []catalog.Group
}

// Peers gives the torrent addresses (host:port) of the other live server nodes (from gossip).
type Peers interface{ TorrentPeers() []string }

// Config configures a Server.
type Config struct {
	Dir        string        // blob store directory (files named by blob id)
	ListenAddr string        // torrent peer-wire TCP bind address; port 0 picks one
	GCGrace    time.Duration // unwanted blobs are dropped and deleted after this long
	Interval   time.Duration // reconcile interval
	Logger     *slog.Logger
}

// DefaultConfig is the configuration of a server node; Dir must be set.
func DefaultConfig() Config {
	return Config{ListenAddr: "127.0.0.1:7482", GCGrace: 10 * time.Minute, Interval: 2 * time.Second}
}

// BlobProgress is the state of one wanted blob on this node.
type BlobProgress struct {
	ID             string `json:"id"`
	Size           int64  `json:"size"`
	BytesCompleted int64  `json:"bytes_completed"`
	Complete       bool   `json:"complete"` // every piece verified against the catalogue's hashes
	Peers          int    `json:"peers"`    // active peer connections for this blob
}

// Server fetches and seeds every wanted blob over BitTorrent, and serves
// the tracker, metainfo and web-seed endpoints (see Handler).
type Server struct {
	cfg     Config
	cat     Catalog
	peers   Peers
	log     *slog.Logger
	tlog    *slog.Logger // the torrent library's logger: warnings and up only
	tracker *memTracker
	reveal  *revealer     // super-seeding towards agents (reveal.go)
	stop    chan struct{} // closed by Close: ends the reveal loop

	mu      sync.Mutex
	cl      *torrent.Client
	addr    string
	closed  bool
	blobs   map[string]*entry       // torrents in the client, by blob id
	wanted  map[string]catalog.Blob // as of the last reconcile
	kept    map[string]bool         // listed by some version: never collected
	gcSince map[string]time.Time    // unwanted ids (torrent or file) and since when
	badInfo map[string]bool         // wanted ids whose metainfo was rejected (logged once)
	running bool                    // Run was called
}

// entry is one blob in the torrent client. Each has its own storage and
// in-memory piece completion, so dropping it forgets its state entirely: a
// blob wanted again later is hashed afresh, never trusted from memory.
type entry struct {
	blob   catalog.Blob
	t      *torrent.Torrent
	paused bool  // unwanted: seeds during the grace, downloads nothing
	failed int64 // pieces that failed the hash check, as last logged
}

// NewServer checks cfg and registers the metrics; nothing listens until Start.
func NewServer(cfg Config, cat Catalog, peers Peers, reg prometheus.Registerer) (*Server, error) {
	def := DefaultConfig()
	if cfg.Dir == "" {
		return nil, errors.New("transfer: Dir is required")
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = def.ListenAddr
	}
	if _, _, err := splitListen(cfg.ListenAddr); err != nil {
		return nil, err
	}
	if cfg.GCGrace <= 0 {
		cfg.GCGrace = def.GCGrace
	}
	if cfg.Interval <= 0 {
		cfg.Interval = def.Interval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cat == nil || peers == nil {
		return nil, errors.New("transfer: catalog and peers are required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, cat: cat, peers: peers, log: cfg.Logger,
		tlog:    slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn}).With("component", "torrent"),
		blobs:   map[string]*entry{},
		wanted:  map[string]catalog.Blob{},
		gcSince: map[string]time.Time{},
		badInfo: map[string]bool{},
		reveal:  newRevealer(),
		stop:    make(chan struct{}),
	}
	s.tracker = newMemTracker(s)
	if reg != nil {
		if err := s.registerMetrics(reg); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func splitListen(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("transfer: listen address %q: %w", addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("transfer: listen address %q: bad port", addr)
	}
	return h, int(n), nil
}

// Start opens the torrent client, which listens on cfg.ListenAddr.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.cl != nil {
		return errors.New("transfer: server already started or closed")
	}
	cc, err := s.clientConfig()
	if err != nil {
		return err
	}
	cl, err := torrent.NewClient(cc)
	if err != nil {
		return fmt.Errorf("transfer: torrent listen %s: %w", s.cfg.ListenAddr, err)
	}
	s.cl = cl
	for _, a := range cl.ListenAddrs() {
		if a.Network() == "tcp" || a.Network() == "tcp4" || a.Network() == "tcp6" {
			s.addr = a.String()
			break
		}
	}
	s.log.Info("torrent client listening", "addr", s.addr)
	go s.reveal.run(s.stop)
	s.removeStaleIngests()
	return nil
}

// removeStaleIngests deletes temporary files of uploads a crash cut short;
// an hour old means no upload is still writing them.
func (s *Server) removeStaleIngests() {
	old, _ := filepath.Glob(filepath.Join(s.cfg.Dir, ".ingest-*"))
	for _, p := range old {
		if st, err := os.Stat(p); err == nil && time.Since(st.ModTime()) > time.Hour {
			if os.Remove(p) == nil {
				s.log.Info("removed the leftover of an interrupted upload", "file", p)
			}
		}
	}
}

// clientConfig sets the client up for a closed network: peers come only
// from the cluster (gossip) and from our own tracker, never from DHT, PEX,
// public trackers or UPnP.
func (s *Server) clientConfig() (*torrent.ClientConfig, error) {
	host, port, err := splitListen(s.cfg.ListenAddr)
	if err != nil {
		return nil, err
	}
	cc := torrent.NewDefaultClientConfig()
	cc.ListenHost = func(string) string { return host }
	cc.ListenPort = port
	if ip := net.ParseIP(host); ip != nil {
		// The client otherwise also tries the other family on this host and
		// fails (e.g. "listen tcp6: address 127.0.0.1").
		cc.DisableIPv6 = ip.To4() != nil
		cc.DisableIPv4 = ip.To4() == nil
	}
	cc.NoDHT = true
	cc.PeriodicallyAnnounceTorrentsToDht = false
	cc.DisablePEX = true
	cc.DisableTrackers = true
	cc.NoDefaultPortForwarding = true
	cc.DisableUTP = true
	cc.DisableWebtorrent = true
	cc.Seed = true
	// Plain handshakes: the data is public within the cluster and verified
	// by hash anyway; MSE's Diffie-Hellman only costs CPU. Encrypted
	// incoming handshakes are still accepted.
	cc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{}
	// The default 10 dials/s limiter delays a node that has to reach every
	// other server for every blob; the accept limiter is already off by default.
	cc.DialRateLimiter = rate.NewLimiter(rate.Inf, 0)
	cc.DisableAcceptRateLimiting = true
	cc.MaxAllocPeerRequestDataPerConn = peerRequestBuffer
	cc.Slogger = s.tlog
	// Fleet clients (agents) get this node's pieces revealed a few at a
	// time, so each piece leaves the node about once (reveal.go).
	s.reveal.install(cc)
	// Every torrent gets its own storage (addLocked); this default is never
	// used, but without it the client would open a bolt database in the
	// working directory.
	cc.DefaultStorage = s.newStorage()
	return cc, nil
}

// newStorage stores data at Dir/<info.Name> (= Dir/<id>), without part
// files: with part files the library marks an existing file of the right
// size complete without hashing it. The completion is in memory and starts
// empty, so every piece already on disk is hashed when the torrent is added.
//
// These storages are never Closed: closing only clears the in-memory map,
// and in v1.61.0 a piece hash that finishes while its torrent is dropped
// calls MarkComplete after the drop returned; on a cleared map that panics
// (storage/file-piece.go allFilePiecesComplete). The garbage collector
// reclaims the map once the torrent is gone.
func (s *Server) newStorage() storage.ClientImpl {
	return storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   s.cfg.Dir,
		PieceCompletion: storage.NewMapPieceCompletion(),
		UsePartFiles:    g.Some(false),
		Logger:          s.tlog,
	})
}

// Run reconciles at once and then every Interval until ctx ends or the
// server is closed. A clean stop returns nil.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	started, running := s.cl != nil, s.running
	s.running = true
	s.mu.Unlock()
	if !started || running {
		return errors.New("transfer: Run needs Start first, and runs once")
	}
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	var pl progressLog
	for {
		if !s.reconcile() {
			return nil
		}
		pl.log(s.log, s.Progress())
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Close drops every torrent (closing their files) and closes the client,
// which stops listening. The piece completion is in memory; see newStorage
// for why it is not closed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	cl := s.cl
	s.blobs = map[string]*entry{}
	s.mu.Unlock()
	if cl == nil {
		return nil
	}
	return errors.Join(cl.Close()...)
}

// Addr is the torrent client's actual listen address (host:port), or ""
// before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Have lists the blobs complete here (every piece verified), sorted.
func (s *Server) Have() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, e := range s.blobs {
		if e.t.Complete().Bool() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Progress reports every wanted blob, sorted by id.
func (s *Server) Progress() []BlobProgress {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BlobProgress, 0, len(s.wanted))
	for id, b := range s.wanted {
		p := BlobProgress{ID: id, Size: b.Size}
		if e := s.blobs[id]; e != nil {
			st := e.t.Stats()
			p.BytesCompleted = e.t.BytesCompleted()
			p.Complete = e.t.Complete().Bool()
			p.Peers = st.ActivePeers
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b BlobProgress) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Open opens a complete blob for reading and returns its size.
func (s *Server) Open(id string) (*os.File, int64, error) {
	if !ValidID(id) {
		return nil, 0, fmt.Errorf("transfer: invalid blob id %q", id)
	}
	s.mu.Lock()
	e := s.blobs[id]
	complete := e != nil && e.t.Complete().Bool()
	s.mu.Unlock()
	if !complete {
		return nil, 0, fmt.Errorf("transfer: blob %s is not complete here", id)
	}
	f, err := os.Open(filepath.Join(s.cfg.Dir, id))
	if err != nil {
		return nil, 0, err
	}
	if st, err := f.Stat(); err != nil || st.Size() != e.blob.Size {
		f.Close()
		return nil, 0, fmt.Errorf("transfer: blob %s: file does not have the blob's size", id)
	}
	return f, e.blob.Size, nil
}

// AddLocal starts seeding a blob that Ingest just wrote into Dir, before
// any catalogue entry lists it. Its pieces are still hashed once (the
// completion never trusts a file it has not read). If the catalogue does not
// want it within GCGrace it is deleted like any unwanted blob.
func (s *Server) AddLocal(b catalog.Blob) error {
	if _, err := checkBlob(b); err != nil {
		return err
	}
	st, err := os.Stat(filepath.Join(s.cfg.Dir, b.ID))
	if err != nil {
		return fmt.Errorf("transfer: add local blob: %w", err)
	}
	if st.Size() != b.Size {
		return fmt.Errorf("transfer: add local blob %s: file has %d bytes, blob %d", b.ID, st.Size(), b.Size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cl == nil || s.closed {
		return errors.New("transfer: server not running")
	}
	if _, ok := s.wanted[b.ID]; !ok {
		s.gcSince[b.ID] = time.Now() // the grace counts from the import
	}
	if e := s.blobs[b.ID]; e != nil {
		if e.t.Complete().Bool() {
			return nil
		}
		// A download was under way and the file was just replaced by the
		// ingest: re-add so the new bytes are hashed through a fresh handle.
		s.dropLocked(b.ID)
	}
	return s.addLocked(b)
}

// minLevel drops records below a level: the torrent library logs a lot at
// info that means nothing to an operator.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }

// progressLog reports a node filling itself: a line per incomplete blob
// every 10 s, and one when a blob completes, so an operator watching the
// log of a new node sees it converge.
type progressLog struct {
	last     time.Time
	complete map[string]bool
}

func (p *progressLog) log(log *slog.Logger, prog []BlobProgress) {
	if p.complete == nil {
		p.complete = map[string]bool{}
	}
	periodic := time.Since(p.last) >= 10*time.Second
	for _, b := range prog {
		switch {
		case b.Complete && !p.complete[b.ID]:
			log.Info("blob complete", "blob", b.ID, "size", b.Size)
		case !b.Complete && periodic:
			pct := 100 * float64(b.BytesCompleted) / float64(max(b.Size, 1))
			log.Info("fetching blob", "blob", b.ID, "done", b.BytesCompleted, "size", b.Size,
				"percent", fmt.Sprintf("%.0f", pct), "peers", b.Peers)
		}
		p.complete[b.ID] = b.Complete
	}
	if periodic {
		p.last = time.Now()
	}
}
