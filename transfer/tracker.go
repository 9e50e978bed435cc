package transfer

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/tracker"
	trackerServer "github.com/anacrolix/torrent/tracker/server"
	"github.com/anacrolix/torrent/tracker/udp"

	"github.com/shoal-project/shoal/cluster/catalog"
)

const (
	trackerPeerTTL  = 10 * time.Minute // a client that stops announcing is forgotten after this
	trackerMaxPeers = 10000            // clients remembered per info hash
	// trackerInterval (seconds) asks clients to re-announce well within the
	// TTL, so a booting fleet learns of each other quickly.
	trackerInterval = 120
)

// memTracker is the peer store behind the HTTP tracker. Server nodes are
// not stored: they come from gossip at each request. Only info hashes of
// catalogue blobs are tracked, which bounds the number of swarms; each swarm
// is bounded too, and entries expire.
type memTracker struct {
	s         *Server
	mu        sync.Mutex
	swarms    map[trackerServer.InfoHash]map[netip.AddrPort]trackedPeer
	lastSweep time.Time
}

type trackedPeer struct {
	seen time.Time
	seed bool
}

var _ trackerServer.AnnounceTracker = (*memTracker)(nil)

func newMemTracker(s *Server) *memTracker {
	return &memTracker{s: s, swarms: map[trackerServer.InfoHash]map[netip.AddrPort]trackedPeer{}}
}

// TrackAnnounce records (or on "stopped" forgets) an announcing client.
func (m *memTracker) TrackAnnounce(_ context.Context, req udp.AnnounceRequest, addr trackerServer.AnnounceAddr) error {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !addr.Addr().IsValid() || addr.Port() == 0 || !m.s.knownInfoHash(req.InfoHash) {
		return nil // nothing we could hand out, or not ours to track
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(now)
	sw := m.swarms[req.InfoHash]
	if req.Event == tracker.Stopped {
		delete(sw, addr)
		return nil
	}
	if sw == nil {
		sw = map[netip.AddrPort]trackedPeer{}
		m.swarms[req.InfoHash] = sw
	}
	if _, ok := sw[addr]; !ok && len(sw) >= trackerMaxPeers {
		evictOldest(sw, now)
	}
	sw[addr] = trackedPeer{seen: now, seed: req.Left == 0}
	return nil
}

// sweepLocked expires peers in every swarm, at most once per TTL, so swarms
// nobody announces to any more do not linger.
func (m *memTracker) sweepLocked(now time.Time) {
	if now.Sub(m.lastSweep) < trackerPeerTTL {
		return
	}
	m.lastSweep = now
	for ih, sw := range m.swarms {
		expire(sw, now)
		if len(sw) == 0 {
			delete(m.swarms, ih)
		}
	}
}

func expire(sw map[netip.AddrPort]trackedPeer, now time.Time) {
	for a, p := range sw {
		if now.Sub(p.seen) > trackerPeerTTL {
			delete(sw, a)
		}
	}
}

// evictOldest makes room in a full swarm: expired entries first, else the
// least recently seen one.
func evictOldest(sw map[netip.AddrPort]trackedPeer, now time.Time) {
	expire(sw, now)
	if len(sw) < trackerMaxPeers {
		return
	}
	var oldest netip.AddrPort
	var at time.Time
	for a, p := range sw {
		if at.IsZero() || p.seen.Before(at) {
			oldest, at = a, p.seen
		}
	}
	delete(sw, oldest)
}

// Scrape reports the clients' counts per info hash.
func (m *memTracker) Scrape(_ context.Context, ihs []trackerServer.InfoHash) ([]udp.ScrapeInfohashResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]udp.ScrapeInfohashResult, len(ihs))
	now := time.Now()
	for i, ih := range ihs {
		for _, p := range m.swarms[ih] {
			switch {
			case now.Sub(p.seen) > trackerPeerTTL:
			case p.seed:
				out[i].Seeders++
			default:
				out[i].Leechers++
			}
		}
	}
	return out, nil
}

// GetPeers returns the live server nodes first (they hold every wanted blob
// or soon will), then a random sample of the clients, without the asker.
func (m *memTracker) GetPeers(ctx context.Context, ih trackerServer.InfoHash, opts trackerServer.GetPeersOpts,
	remote trackerServer.AnnounceAddr) trackerServer.ServerAnnounceResult {
	res := trackerServer.ServerAnnounceResult{Interval: g.Some[int32](trackerInterval)}
	if !m.s.knownInfoHash(ih) {
		return res
	}
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	seen := map[netip.AddrPort]bool{remote: true}
	add := func(a netip.AddrPort) {
		if !seen[a] && (!opts.MaxCount.Ok || uint(len(res.Peers)) < opts.MaxCount.Value) {
			seen[a] = true
			res.Peers = append(res.Peers, trackerServer.PeerInfo{AnnounceAddr: a})
		}
	}
	for _, a := range m.s.serverPeers(ctx) {
		add(a)
	}
	clients, seeds, leechers := m.clients(ih)
	for _, a := range clients {
		add(a)
	}
	res.Seeders, res.Leechers = g.Some(seeds), g.Some(leechers)
	return res
}

// clients lists the live clients of a swarm in random order, with counts.
func (m *memTracker) clients(ih trackerServer.InfoHash) (addrs []netip.AddrPort, seeds, leechers int32) {
	now := time.Now()
	m.mu.Lock()
	for a, p := range m.swarms[ih] {
		if now.Sub(p.seen) > trackerPeerTTL {
			continue
		}
		addrs = append(addrs, a)
		if p.seed {
			seeds++
		} else {
			leechers++
		}
	}
	m.mu.Unlock()
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	return addrs, seeds, leechers
}

// requestHostKey carries the HTTP Host of an announce, see selfPeer.
type requestHostKey struct{}

// serverPeers is every live server's torrent address, this one included.
func (s *Server) serverPeers(ctx context.Context) []netip.AddrPort {
	var out []netip.AddrPort
	if self, ok := s.selfPeer(ctx); ok {
		out = append(out, self)
	}
	for _, a := range s.peers.TorrentPeers() {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
	}
	return out
}

// selfPeer is our torrent address as a client can dial it. When listening
// on all interfaces the address says nothing, so the host the client used
// to reach this tracker is taken instead.
func (s *Server) selfPeer(ctx context.Context) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s.Addr())
	if err != nil {
		return ap, false
	}
	if ap.Addr().IsUnspecified() {
		host, _ := ctx.Value(requestHostKey{}).(string)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return ap, false
		}
		ap = netip.AddrPortFrom(ip, ap.Port())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// knownInfoHash reports whether any catalogue version has a blob with ih.
func (s *Server) knownInfoHash(ih trackerServer.InfoHash) bool {
	hex := ih.HexString()
	_, ok := s.catalogBlob(func(b catalog.Blob) bool { return b.InfoHash == hex })
	return ok
}

// catalogBlob finds a blob in any version of any image.
func (s *Server) catalogBlob(match func(catalog.Blob) bool) (catalog.Blob, bool) {
	for _, im := range s.cat.Images() {
		for _, v := range im.Versions {
			for _, b := range v.Blobs {
				if match(b) {
					return b, true
				}
			}
		}
	}
	return catalog.Blob{}, false
}
