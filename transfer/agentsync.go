package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// SyncConfig is what `shoal agent sync` does: bring Target to the image
// version the catalogue assigns, fetching only the pieces that differ.
type SyncConfig struct {
	Servers []string // API base URLs of any server nodes, tried in order
	Image   string   // image name; or set MAC to follow the client's group
	Version string   // version id or unique prefix; empty: group pin or current
	MAC     string
	Target  string
	// ListenAddr is the torrent listen address (host:port, port 0 = any).
	ListenAddr string
	// Seed keeps serving pieces after the copy is complete, until ctx ends.
	Seed bool
	// FullCheck re-reads the finished target and compares its SHA-256 with
	// the catalogue's. Every piece is verified against the catalogue's
	// piece hashes anyway, so this only guards against SHA-1 second
	// preimages; it costs one more pass over the image.
	FullCheck bool
	// OnComplete, if set, is called once the target is verified, before
	// seeding starts (scripts wait for this, e.g. through --done-file).
	OnComplete func(SyncReport) error
	Progress   func(SyncProgress)
	Logger     *slog.Logger
}

// SyncProgress is reported about twice a second.
type SyncProgress struct {
	Phase     string // resolve | verify | fetch | check | seed
	Done      int64
	Total     int64
	Peers     int
	BytesRate float64
}

// SyncReport is the outcome of one sync.
type SyncReport struct {
	Image     string   `json:"image"`
	Version   string   `json:"version"`
	Target    string   `json:"target"`
	Size      int64    `json:"size"`
	Pieces    int      `json:"pieces"`
	Reused    int64    `json:"bytes_reused"`
	Fetched   int64    `json:"bytes_fetched"`
	WebSeed   int64    `json:"bytes_from_web_seeds"`
	Hashed    int64    `json:"bytes_hashed"`
	Wasted    int64    `json:"bytes_wasted"` // piece data received twice (see syncer.run)
	BadPieces int64    `json:"pieces_failed_hash"`
	PeersUsed []string `json:"peers_used"`
	Seconds   float64  `json:"seconds"`
	// CheckSeconds is the part of Seconds spent re-reading the finished
	// target for its SHA-256 (FullCheck only).
	CheckSeconds float64 `json:"check_seconds,omitempty"`
	Server       string  `json:"server"`
}

// ErrNoServer: none of the given servers answered; the target is untouched.
var ErrNoServer = errors.New("no shoal server answered")

// Sync runs one sync. The target is opened only once a server has told us
// what it must hold, so a sync that cannot reach any server changes nothing.
// An interrupted sync resumes: pieces already written verify on the next run.
func Sync(ctx context.Context, cfg SyncConfig) (SyncReport, error) {
	start := time.Now()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	report := func(p SyncProgress) {
		if cfg.Progress != nil {
			cfg.Progress(p)
		}
	}
	report(SyncProgress{Phase: "resolve"})
	plan, err := resolve(ctx, cfg)
	if err != nil {
		return SyncReport{}, err
	}
	rep := SyncReport{Image: plan.image, Version: plan.version.ID, Target: cfg.Target, Size: plan.blob.Size, Server: plan.server}
	fresh, err := prepareTarget(cfg.Target, plan.blob.Size)
	if err != nil {
		return rep, err
	}
	s, err := newSyncer(cfg, plan)
	if err != nil {
		return rep, err
	}
	s.fresh = fresh
	defer s.close()
	if err := s.run(ctx, &rep, report); err != nil {
		return rep, err
	}
	rep.Seconds = time.Since(start).Seconds()
	if cfg.OnComplete != nil {
		if err := cfg.OnComplete(rep); err != nil {
			return rep, err
		}
	}
	if cfg.Seed {
		report(SyncProgress{Phase: "seed", Done: rep.Size, Total: rep.Size})
		<-ctx.Done()
	}
	return rep, nil
}

// plan is what the servers said the target must become.
type plan struct {
	server  string
	image   string
	version catalog.ImageVersion
	blob    catalog.Blob
	meta    *metainfo.MetaInfo
	peers   []string // server nodes' torrent addresses
}

type imageAnswer struct {
	catalog.Image
	Holders map[string][]string `json:"holders"`
}

func resolve(ctx context.Context, cfg SyncConfig) (*plan, error) {
	var errs []string
	for _, srv := range cfg.Servers {
		p, err := resolveOn(ctx, strings.TrimRight(srv, "/"), cfg)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, catalog.ErrNotFound) || errors.Is(err, catalog.ErrInvalid) {
			return nil, err // the catalogue answered: another server would say the same
		}
		errs = append(errs, fmt.Sprintf("%s: %v", srv, err))
	}
	return nil, fmt.Errorf("%w (tried %s); the target was left as it was", ErrNoServer, strings.Join(errs, "; "))
}

func resolveOn(ctx context.Context, srv string, cfg SyncConfig) (*plan, error) {
	name, want := cfg.Image, cfg.Version
	if cfg.MAC != "" {
		var err error
		if name, want, err = clientAssignment(ctx, srv, cfg.MAC); err != nil {
			return nil, err
		}
	}
	var im imageAnswer
	if err := apiGet(ctx, srv+"/v1/images/"+name, &im); err != nil {
		return nil, err
	}
	ver, err := pickVersion(im.Image, want)
	if err != nil {
		return nil, err
	}
	root, ok := ver.Blob(ver.SHA256)
	if !ok {
		return nil, fmt.Errorf("image %s version %s has no imported bytes: %w", name, ver.ID, catalog.ErrNotFound)
	}
	if len(im.Holders[ver.ID]) == 0 {
		// Nobody could send the bytes: say so before touching the target.
		return nil, fmt.Errorf("image %s version %s: no server node holds it completely (yet); the target was left as it was", name, ver.ID[:12])
	}
	p := &plan{server: srv, image: name, version: ver, blob: root}
	if p.meta, err = fetchMetainfo(ctx, srv, root); err != nil {
		return nil, err
	}
	p.peers = serverPeers(ctx, srv)
	return p, nil
}

func clientAssignment(ctx context.Context, srv, mac string) (string, string, error) {
	var cl catalog.Client
	if err := apiGet(ctx, srv+"/v1/clients/"+mac, &cl); err != nil {
		return "", "", err
	}
	var gr catalog.Group
	if err := apiGet(ctx, srv+"/v1/groups/"+cl.Group, &gr); err != nil {
		return "", "", err
	}
	if gr.Image == "" {
		return "", "", fmt.Errorf("client %s: group %s has no image: %w", mac, gr.Name, catalog.ErrNotFound)
	}
	return gr.Image, gr.Version, nil
}

func pickVersion(im catalog.Image, want string) (catalog.ImageVersion, error) {
	if want == "" {
		want = im.Current
	}
	var hits []catalog.ImageVersion
	for _, v := range im.Versions {
		if v.ID == want || (len(want) >= 6 && strings.HasPrefix(v.ID, want)) {
			hits = append(hits, v)
		}
	}
	if len(hits) != 1 {
		return catalog.ImageVersion{}, fmt.Errorf("image %s: version %q matches %d versions: %w", im.Name, want, len(hits), catalog.ErrNotFound)
	}
	return hits[0], nil
}

// fetchMetainfo gets the .torrent (trackers and web seeds of every node)
// and checks that its info is exactly the catalogue's: the piece hashes we
// verify against must be the catalogue's, whatever the server sent.
func fetchMetainfo(ctx context.Context, srv string, b catalog.Blob) (*metainfo.MetaInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv+"/v1/blobs/"+b.ID+"/torrent", nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metainfo of %s: %s", b.ID, resp.Status)
	}
	mi, err := metainfo.Load(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("metainfo of %s: %w", b.ID, err)
	}
	if string(mi.InfoBytes) != string(b.Info) {
		return nil, fmt.Errorf("metainfo of %s from %s does not match the catalogue: %w", b.ID, srv, catalog.ErrInvalid)
	}
	if _, err := checkBlob(b); err != nil {
		return nil, fmt.Errorf("%v: %w", err, catalog.ErrInvalid)
	}
	return mi, nil
}

func serverPeers(ctx context.Context, srv string) []string {
	var nodes []struct {
		Status string            `json:"status"`
		Meta   map[string]string `json:"meta"`
	}
	if apiGet(ctx, srv+"/v1/nodes", &nodes) != nil {
		return nil
	}
	var out []string
	for _, n := range nodes {
		if n.Status == "alive" && n.Meta["torrent"] != "" {
			out = append(out, n.Meta["torrent"])
		}
	}
	return out
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// apiGet maps the API's 404/400 onto the catalogue's sentinels so the
// caller can tell "the catalogue says no" from "this server is down".
func apiGet(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var e struct{ Error string }
	switch resp.StatusCode {
	case http.StatusOK:
		return json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v)
	case http.StatusNotFound:
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s: %w", e.Error, catalog.ErrNotFound)
	case http.StatusBadRequest:
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s: %w", e.Error, catalog.ErrInvalid)
	}
	return fmt.Errorf("GET %s: %s", url, resp.Status)
}

// prepareTarget makes sure a regular-file target has at least size bytes.
// It never shrinks it: a longer file is cut to size only after the copy is
// verified (finishTarget), so an interrupted or impossible sync never cuts
// off data that was there. fresh reports a target that held nothing, whose
// pieces need no hashing to know they are missing.
func prepareTarget(path string, size int64) (fresh bool, err error) {
	st, err := os.Stat(path)
	if err == nil && st.Mode()&os.ModeDevice != 0 {
		return false, fmt.Errorf("target %s is a block device: not supported yet, sync into a file", path)
	}
	if err == nil && st.IsDir() {
		return false, fmt.Errorf("target %s is a directory", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err = f.Stat()
	if err != nil || st.Size() >= size {
		return false, err
	}
	return st.Size() == 0, f.Truncate(size)
}

func finishTarget(path string, size int64) error {
	if err := os.Truncate(path, size); err != nil {
		return fmt.Errorf("target %s: %w", path, err)
	}
	return nil
}

// syncer is one torrent client downloading into the target.
type syncer struct {
	cfg    SyncConfig
	plan   *plan
	cl     *torrent.Client
	stor   storage.ClientImplCloser
	pc     storage.PieceCompletion
	t      *torrent.Torrent
	peers  map[string]bool
	fresh  bool // the target held nothing before this sync
	gate   *serverGate
	reveal *revealClient
	upload *rate.Limiter // held back by pace while behind the other clients
	pace   *pacer
}

func newSyncer(cfg SyncConfig, p *plan) (*syncer, error) {
	listen := cfg.ListenAddr
	if listen == "" {
		listen = "0.0.0.0:0"
	}
	tc, err := closedNetwork(listen, cfg.Logger)
	if err != nil {
		return nil, err
	}
	dir, name := filepath.Split(filepath.Clean(cfg.Target))
	// The map completion knows nothing at start, so every piece already in
	// the target is hashed and only the bad ones are fetched (delta sync);
	// part files would trust a stale file of the right size.
	pc := storage.NewMapPieceCompletion()
	stor := storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   dir,
		FilePathMaker:   func(storage.FilePathMakerOpts) string { return name },
		PieceCompletion: pc,
		UsePartFiles:    g.Some(false),
		Logger:          cfg.Logger,
	})
	tc.DefaultStorage = stor
	// Our own limiter (the library's default one is shared by every client
	// in the process); unlimited until the pacer holds uploads back.
	tc.UploadRateLimiter = rate.NewLimiter(rate.Inf, peerRequestBuffer)
	gate := newServerGate(p.peers, agentChunkSize)
	rv := newRevealClient(int((p.blob.Size + p.blob.PieceLength - 1) / p.blob.PieceLength))
	tc.Callbacks.PeerConnAdded = append(tc.Callbacks.PeerConnAdded, rv.added)
	tc.Callbacks.ReadExtendedHandshake = func(pc *torrent.PeerConn, d *pp.ExtendedHandshakeMessage) {
		gate.handshake(pc, d)
		rv.handshake(pc, d)
	}
	tc.Callbacks.ReadMessage = rv.read
	tc.Callbacks.PeerConnClosed = rv.closed
	cl, err := torrent.NewClient(tc)
	if err != nil {
		stor.Close()
		return nil, fmt.Errorf("torrent client on %s: %w", listen, err)
	}
	return &syncer{cfg: cfg, plan: p, cl: cl, stor: stor, pc: pc, peers: map[string]bool{}, gate: gate, reveal: rv, upload: tc.UploadRateLimiter}, nil
}

func (s *syncer) close() {
	s.cl.Close()
	s.stor.Close()
}

func (s *syncer) run(ctx context.Context, rep *SyncReport, report func(SyncProgress)) error {
	ih := s.plan.meta.HashInfoBytes()
	if s.fresh {
		// Nothing to verify in a target that was empty: say every piece is
		// missing instead of hashing zeros (half the CPU of a first sync).
		for i := 0; i < int((rep.Size+s.plan.blob.PieceLength-1)/s.plan.blob.PieceLength); i++ {
			s.pc.Set(metainfo.PieceKey{InfoHash: ih, Index: i}, false)
		}
	}
	t, _ := s.cl.AddTorrentOpt(torrent.AddTorrentOpts{
		InfoHash: ih, InfoBytes: s.plan.meta.InfoBytes, DisableInitialPieceCheck: true,
		ChunkSize: agentChunkSize,
	})
	s.t = t
	<-t.GotInfo()
	if !s.fresh {
		report(SyncProgress{Phase: "verify", Total: rep.Size})
		if err := t.VerifyDataContext(ctx); err != nil {
			return fmt.Errorf("verify %s: %w", s.cfg.Target, err)
		}
	}
	rep.Pieces = t.NumPieces()
	s.connect()
	t.DownloadAll()
	s.pace = newPacer(t, func(pc *torrent.PeerConn) bool { return s.gate.isServer(pc) || s.reveal.seed(pc) }, s.upload)
	if err := s.wait(ctx, report); err != nil {
		return err
	}
	st := t.Stats()
	rep.Fetched = st.BytesReadUsefulData.Int64()
	rep.Reused = max(rep.Size-rep.Fetched, 0)
	rep.WebSeed = st.WebSeeds.BytesReadUsefulData.Int64()
	rep.Hashed = st.BytesHashed.Int64()
	// Piece data that arrived after another peer had already sent the same
	// chunk: the library moves ("steals") a request to a peer with room in
	// its queue and cancels it at the first, which may have sent it already.
	rep.Wasted = max(st.BytesReadData.Int64()-st.BytesReadUsefulData.Int64(), 0)
	rep.BadPieces = st.PiecesDirtiedBad.Int64()
	rep.PeersUsed = s.usedPeers()
	if s.cfg.FullCheck {
		report(SyncProgress{Phase: "check", Done: rep.Size, Total: rep.Size})
		checkStart := time.Now()
		if err := checkSHA256(s.cfg.Target, s.plan.blob); err != nil {
			return err
		}
		rep.CheckSeconds = time.Since(checkStart).Seconds()
	}
	return finishTarget(s.cfg.Target, rep.Size)
}

// connect gives the torrent every way to reach the image: the servers'
// torrent addresses, the nodes' trackers (which also know other clients)
// and the nodes' HTTP web seeds as the fallback.
func (s *syncer) connect() {
	var peers []torrent.PeerInfo
	for _, a := range s.plan.peers {
		if addr, err := net.ResolveTCPAddr("tcp", a); err == nil {
			peers = append(peers, torrent.PeerInfo{Addr: addr, Trusted: true})
		}
	}
	s.t.AddPeers(peers)
	s.t.AddTrackers(s.plan.meta.UpvertedAnnounceList())
}

// webSeedAfter is how long a sync may go without data from BitTorrent peers
// before it also uses the nodes' HTTP web seeds. Not at once: a web seed
// pulls large ranges straight from a server's uplink, which in a boot storm
// is the one link every client shares; peers spread that load.
const webSeedAfter = 5 * time.Second

func (s *syncer) maybeWebSeeds(since time.Time, added *bool) {
	if *added || time.Since(since) < webSeedAfter {
		return
	}
	if st := s.t.Stats(); st.BytesReadUsefulData.Int64() > 0 && s.recentPeerData() {
		return
	}
	s.cfg.Logger.Info("no data from peers; falling back to the nodes' HTTP web seeds")
	s.t.AddWebSeeds(s.plan.meta.UrlList)
	*added = true
}

// recentPeerData: some peer connection is delivering right now.
func (s *syncer) recentPeerData() bool {
	for _, pc := range s.t.PeerConns() {
		if pc.Stats().DownloadRate > 0 {
			return true
		}
	}
	return false
}

func (s *syncer) wait(ctx context.Context, report func(SyncProgress)) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := s.t.BytesCompleted(), time.Now()
	start, webSeeds := time.Now(), false
	for {
		select {
		case <-s.t.Complete().On():
			s.pace.finish()
			return nil
		case <-ctx.Done():
			return fmt.Errorf("sync interrupted at %d of %d bytes (run it again to resume): %w",
				s.t.BytesCompleted(), s.t.Length(), ctx.Err())
		case now := <-tick.C:
			s.pace.step(now)
			s.maybeWebSeeds(start, &webSeeds)
			s.notePeers()
			done := s.t.BytesCompleted()
			rate := float64(done-last) / time.Since(lastAt).Seconds()
			last, lastAt = done, time.Now()
			report(SyncProgress{Phase: "fetch", Done: done, Total: s.t.Length(), Peers: len(s.t.PeerConns()), BytesRate: rate})
		}
	}
}

func (s *syncer) notePeers() {
	for _, pc := range s.t.PeerConns() {
		st := pc.Stats()
		if st.BytesReadUsefulData.Int64() > 0 {
			s.peers[pc.RemoteAddr.String()] = true
		}
	}
}

func (s *syncer) usedPeers() []string {
	s.notePeers()
	out := []string{}
	for p := range s.peers {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// checkSHA256 re-reads the finished target: pieces were verified one by
// one, this proves the whole file is the catalogue's blob.
func checkSHA256(path string, b catalog.Blob) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, b.Size)); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != b.ID {
		return fmt.Errorf("target %s: sha256 %s after sync, want %s", path, got, b.ID)
	}
	return nil
}

// closedNetwork is the torrent client setup for a lab network: no DHT, no
// PEX, no UPnP, no uTP, no WebTorrent; peers come from the cluster.
func closedNetwork(listen string, log *slog.Logger) (*torrent.ClientConfig, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("torrent listen address %q: %w", listen, err)
	}
	tc := torrent.NewDefaultClientConfig()
	tc.NoDHT, tc.DisablePEX, tc.NoDefaultPortForwarding = true, true, true
	tc.DisableUTP, tc.DisableWebtorrent = true, true
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		tc.DisableIPv6 = true // required when listening on an IPv4 host
	}
	tc.Seed = true
	tc.SetListenAddr(listen)
	tc.Slogger = log
	// Plain handshakes, as between server nodes (clientConfig): the data is
	// public within the cluster and verified by hash; MSE only costs CPU.
	tc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{}
	// A booting fleet dials every other client at once: no 10 dials/s limit.
	tc.DialRateLimiter = rate.NewLimiter(rate.Inf, 0)
	tc.DisableAcceptRateLimiting = true
	tc.MaxAllocPeerRequestDataPerConn = peerRequestBuffer
	// No cap on the bytes of pieces requested but not yet verified. The
	// default (64 MiB) lets a client request only from the first 64 pieces
	// of its order, so it cannot take what other clients hold elsewhere in
	// the image and asks the servers for it instead.
	tc.MaxUnverifiedBytes = 0
	return tc, nil
}
