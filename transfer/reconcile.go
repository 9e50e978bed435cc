package transfer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// wantedBlobs is every blob of every image's current version and of every
// version a group pins: what each server node must hold.
func wantedBlobs(images []catalog.Image, groups []catalog.Group) map[string]catalog.Blob {
	out := map[string]catalog.Blob{}
	byName := make(map[string]catalog.Image, len(images))
	addVersion := func(im catalog.Image, version string) {
		for _, v := range im.Versions {
			if v.ID == version {
				for _, b := range v.Blobs {
					out[b.ID] = b
				}
			}
		}
	}
	for _, im := range images {
		byName[im.Name] = im
		addVersion(im, im.Current)
	}
	for _, gr := range groups {
		if im, ok := byName[gr.Image]; ok && gr.Version != "" {
			addVersion(im, gr.Version)
		}
	}
	return out
}

// referencedBlobs is every blob any catalogue version lists. Those a node
// has are kept even when no longer wanted (rollback = activate an older
// version must find its bytes); only blobs no version lists any more are
// garbage-collected.
func referencedBlobs(images []catalog.Image) map[string]bool {
	out := map[string]bool{}
	for _, im := range images {
		for _, v := range im.Versions {
			for _, b := range v.Blobs {
				out[b.ID] = true
			}
		}
	}
	return out
}

// checkBlob validates a catalogue blob before it touches the disk or the
// client: the id must be a plain id (it becomes a file name; Info only
// checks that the info's name equals it), the info must describe it, and
// the info hash must be the hash of those info bytes.
func checkBlob(b catalog.Blob) (metainfo.Hash, error) {
	if !ValidID(b.ID) {
		return metainfo.Hash{}, fmt.Errorf("transfer: invalid blob id %q", b.ID)
	}
	if _, err := Info(b); err != nil {
		return metainfo.Hash{}, err
	}
	ih := metainfo.HashBytes(b.Info)
	if ih.HexString() != b.InfoHash {
		return ih, fmt.Errorf("blob %s: info hash %s does not match its info (%s)", b.ID, b.InfoHash, ih.HexString())
	}
	return ih, nil
}

// reconcile brings the client in line with the catalogue; it reports false
// once the server is closed. Catalogue, gossip and disk are read before
// taking the lock, so handlers are not held up by them.
func (s *Server) reconcile() bool {
	images := s.cat.Images()
	wanted := wantedBlobs(images, s.cat.Groups())
	kept := referencedBlobs(images)
	peers := s.resolvePeers()
	files := s.blobFiles()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wanted, s.kept = wanted, kept
	s.addWantedLocked()
	s.addPeersLocked(peers)
	s.noteFailuresLocked()
	s.collectLocked(files, time.Now())
	return true
}

// noteFailuresLocked logs which blob received pieces that failed the hash
// check since the last pass; the metric only has the total.
func (s *Server) noteFailuresLocked() {
	for id, e := range s.blobs {
		st := e.t.Stats()
		if bad := st.PiecesDirtiedBad.Int64(); bad > e.failed {
			s.log.Warn("pieces from peers failed the hash check and were discarded",
				"blob", id, "count", bad-e.failed)
			e.failed = bad
		}
	}
}

func (s *Server) addWantedLocked() {
	bad := map[string]bool{}
	for id, b := range s.wanted {
		delete(s.gcSince, id)
		if e := s.blobs[id]; e != nil {
			if e.paused { // wanted again within the grace
				e.t.AllowDataDownload()
				e.paused = false
			}
			continue
		}
		if err := s.addLocked(b); err != nil {
			key := id + "/" + b.InfoHash
			bad[key] = true
			if !s.badInfo[key] {
				s.log.Warn("wanted blob cannot be fetched", "blob", id, "err", err)
			}
		}
	}
	s.badInfo = bad
}

// addLocked adds b to the client. The fresh in-memory completion makes the
// client hash whatever is already at Dir/<id> before fetching anything, so a
// node restarted mid-transfer keeps its verified pieces and fetches only
// missing or bad ones.
func (s *Server) addLocked(b catalog.Blob) error {
	ih, err := checkBlob(b)
	if err != nil {
		return err
	}
	t, isNew := s.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: ih, InfoBytes: b.Info, Storage: s.newStorage()})
	if !isNew {
		// Cannot happen: the info names the blob, so one info hash is one id.
		return fmt.Errorf("blob %s: info hash %s already in the client", b.ID, ih.HexString())
	}
	if t.Info() == nil {
		t.Drop()
		return fmt.Errorf("blob %s: the client rejected its info", b.ID)
	}
	t.DownloadAll()
	s.blobs[b.ID] = &entry{blob: b, t: t}
	return nil
}

func (s *Server) dropLocked(id string) {
	e := s.blobs[id]
	if e == nil {
		return
	}
	delete(s.blobs, id)
	e.t.Drop() // closes its files; its storage needs no closing (newStorage)
}

// addPeersLocked gives every incomplete torrent the other servers. Complete
// ones get none: they only seed, and whoever lacks data dials them; adding
// peers there would make two complete servers connect and drop each other
// (DropMutuallyCompletePeers) every interval.
func (s *Server) addPeersLocked(peers []torrent.PeerInfo) {
	if len(peers) == 0 {
		return
	}
	for _, e := range s.blobs {
		if !e.paused && !e.t.Complete().Bool() {
			e.t.AddPeers(peers)
		}
	}
}

// resolvePeers turns the gossip addresses into peer infos, skipping our own.
// Servers are Trusted: a bad piece from one is not answered with an
// immediate ban of its IP (which on one host, as in tests, would be every
// server's IP); the library still smart-bans it once another peer supplies
// the right bytes, and no bad piece is ever accepted either way.
func (s *Server) resolvePeers() []torrent.PeerInfo {
	self, _ := netip.ParseAddrPort(s.Addr())
	var out []torrent.PeerInfo
	seen := map[netip.AddrPort]bool{}
	for _, a := range s.peers.TorrentPeers() {
		ap, err := resolveAddrPort(a)
		if err != nil {
			s.log.Debug("skipping peer address", "addr", a, "err", err)
			continue
		}
		if ap == self || seen[ap] {
			continue
		}
		seen[ap] = true
		out = append(out, torrent.PeerInfo{
			Addr:    net.TCPAddrFromAddrPort(ap),
			Source:  torrent.PeerSourceDirect,
			Trusted: true,
		})
	}
	return out
}

// resolveAddrPort parses host:port, looking the host up if it is a name.
func resolveAddrPort(a string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(a); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host, port, err := splitListen(a)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(ips) == 0 || port == 0 {
		return netip.AddrPort{}, errors.New("no address")
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(port)), nil
}

// blobFiles lists the blob files in Dir; in-progress ingests (.ingest-*)
// and anything else not named like a blob are left alone.
func (s *Server) blobFiles() map[string]time.Time {
	des, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		s.log.Warn("reading blob dir", "dir", s.cfg.Dir, "err", err)
		return nil
	}
	out := map[string]time.Time{}
	for _, de := range des {
		if !ValidID(de.Name()) || !de.Type().IsRegular() {
			continue
		}
		if fi, err := de.Info(); err == nil {
			out[de.Name()] = fi.ModTime()
		}
	}
	return out
}

// collectLocked drops torrents and deletes files no longer wanted once they
// have been unwanted for GCGrace. During the grace an unwanted torrent keeps
// seeding (a client may still be fetching the previous version) but stops
// downloading.
func (s *Server) collectLocked(files map[string]time.Time, now time.Time) {
	present := map[string]bool{}
	for id := range files {
		present[id] = true
	}
	for id, e := range s.blobs {
		present[id] = true
		if _, ok := s.wanted[id]; !ok && !e.paused {
			e.t.DisallowDataDownload()
			e.paused = true
		}
	}
	for id := range present {
		_, wanted := s.wanted[id]
		switch {
		case wanted:
		case s.kept[id]:
			delete(s.gcSince, id) // an older version's bytes: keep for rollback
		default:
			if _, ok := s.gcSince[id]; !ok {
				s.gcSince[id] = now
			}
		}
	}
	for id, since := range s.gcSince {
		switch {
		case !present[id]:
			delete(s.gcSince, id)
		case now.Sub(since) < s.cfg.GCGrace:
		case s.blobs[id] == nil && files[id].After(since):
			// An orphan file rewritten meanwhile: a fresh ingest whose
			// AddLocal is about to come. Count the grace from then.
			s.gcSince[id] = files[id]
		default:
			s.deleteLocked(id)
		}
	}
}

func (s *Server) deleteLocked(id string) {
	s.dropLocked(id)
	delete(s.gcSince, id)
	err := os.Remove(filepath.Join(s.cfg.Dir, id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("deleting unwanted blob", "blob", id, "err", err)
		return
	}
	s.log.Info("deleted unwanted blob", "blob", id)
}
