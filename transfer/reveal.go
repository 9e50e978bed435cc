package transfer

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// Super-seeding (BEP 16 in spirit, over an extension of our own): a server
// node's uplink is the one link a fleet syncing at once shares, so each
// piece should leave it about once and travel between clients after that.
// The node sees every client's bitfield; a client sees only its own
// neighbours. So the node decides what each client may take from it:
//
//   - A node advertises extSeed in its extended handshake. An agent that
//     sees it ignores the node's bitfield and Have messages (it rewrites
//     them to "have none" as they arrive) and learns the node's pieces only
//     from reveals: extReveal messages carrying one piece index each, which
//     it turns into Have messages. The library then requests from the node
//     exactly the pieces the node revealed, and everything else from
//     whichever client holds it.
//   - An agent advertises extReveal. The node shows each such client a few
//     pieces at a time (revealWindow per blob in all, at least one piece
//     each): first only
//     pieces that no client holds and none is being sent, so the first copy
//     of the image leaves the node once; once every piece is held by some
//     client, the rarest piece the client lacks.
//
// Stock clients and older agents do not advertise extReveal and see the
// node's real bitfield; nodes do not advertise it either, so servers fill
// each other as before.
const (
	extSeed   pp.ExtensionName = "shoal_seed"
	extReveal pp.ExtensionName = "shoal_reveal"
)

// revealWindow is how much revealed, not yet delivered data of one blob a
// node keeps out across its clients (at least one piece each): enough to keep its uplink busy while reveals
// travel, little enough that a piece reaches its first client fast.
const revealWindow = 8 << 20

// revealStale: a revealed piece its client has not got after this long,
// while the node sent that client nothing either, is taken as lost and may
// be revealed to someone else.
const revealStale = 10 * time.Second

// revealMinGap spaces the node's reveal rounds; Haves wake it sooner than
// the tick.
const (
	revealMinGap = 10 * time.Millisecond
	revealTick   = 250 * time.Millisecond
)

// revealer is the node's side.
type revealer struct {
	window atomic.Int64 // revealWindow; 0 reveals nothing (tests)
	mu     sync.Mutex
	conns  map[*torrent.PeerConn]*revealConn
	wake   chan struct{}
	sent   atomic.Int64 // reveals sent, for /metrics
	taken  atomic.Int64 // agent connections that took reveals, for /metrics

	orders map[*torrent.Torrent][]int // run goroutine only
}

// revealConn is what the node showed one client. Only the run goroutine
// touches its fields after registration.
type revealConn struct {
	pc       *torrent.PeerConn
	t        *torrent.Torrent
	since    time.Time // extended handshake
	ready    bool      // its bitfield (or have all / none) arrived; under revealer.mu
	shown    []bool
	shownAt  []time.Time
	written  int64     // data bytes sent to the client, as last seen
	progress time.Time // when that last grew
}

func newRevealer() *revealer {
	r := &revealer{conns: map[*torrent.PeerConn]*revealConn{}, wake: make(chan struct{}, 1),
		orders: map[*torrent.Torrent][]int{}}
	r.window.Store(revealWindow)
	return r
}

// install hooks the revealer into a node's client configuration.
func (r *revealer) install(cc *torrent.ClientConfig) {
	cc.Callbacks.PeerConnAdded = append(cc.Callbacks.PeerConnAdded, func(pc *torrent.PeerConn) {
		addExtension(pc, extSeed)
	})
	cc.Callbacks.ReadExtendedHandshake = func(pc *torrent.PeerConn, d *pp.ExtendedHandshakeMessage) {
		if d.M[extReveal] == 0 || pc.Torrent() == nil {
			return
		}
		r.mu.Lock()
		if r.conns[pc] == nil {
			now := time.Now()
			r.conns[pc] = &revealConn{pc: pc, t: pc.Torrent(), since: now, progress: now}
			r.taken.Add(1)
		}
		r.mu.Unlock()
	}
	cc.Callbacks.PeerConnClosed = func(pc *torrent.PeerConn) {
		r.mu.Lock()
		delete(r.conns, pc)
		r.mu.Unlock()
	}
	cc.Callbacks.ReadMessage = func(pc *torrent.PeerConn, m *pp.Message) {
		if m.Keepalive {
			return
		}
		switch m.Type {
		case pp.Bitfield, pp.HaveAll, pp.HaveNone:
			// What the client holds is known once the library has applied
			// this message, which it does before it lets go of the lock
			// the next round needs: reveal nothing it holds already.
			r.mu.Lock()
			if rc := r.conns[pc]; rc != nil {
				rc.ready = true
			}
			r.mu.Unlock()
			r.nudge()
		case pp.Have:
			r.nudge() // a client got a piece: it may take the next
		}
	}
}

func (r *revealer) nudge() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run reveals pieces until done is closed.
func (r *revealer) run(done <-chan struct{}) {
	tick := time.NewTicker(revealTick)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		case <-r.wake:
		}
		r.round(time.Now())
		select {
		case <-done:
			return
		case <-time.After(revealMinGap):
		}
	}
}

// round tops up every client's reveals. The library is only called with
// r.mu released: its callbacks take r.mu under the client's lock.
func (r *revealer) round(now time.Time) {
	r.mu.Lock()
	byT := map[*torrent.Torrent][]*revealConn{}
	for _, rc := range r.conns {
		// A client that never says what it holds is served all the same.
		if rc.ready || now.Sub(rc.since) > time.Second {
			byT[rc.t] = append(byT[rc.t], rc)
		}
	}
	r.mu.Unlock()
	for t, rcs := range byT {
		r.roundTorrent(t, rcs, now)
	}
	for t := range r.orders {
		if byT[t] == nil {
			delete(r.orders, t) // no reveal clients left: forget the torrent
		}
	}
}

func (r *revealer) roundTorrent(t *torrent.Torrent, rcs []*revealConn, now time.Time) {
	info := t.Info()
	if info == nil {
		return
	}
	n := t.NumPieces()
	order := r.orders[t]
	if len(order) != n {
		// Each node its own order, so two nodes rarely send the same piece
		// first.
		order = rand.Perm(n)
		r.orders[t] = order
	}
	ours := make([]bool, n)
	if t.Complete().Bool() {
		for i := range ours {
			ours[i] = true
		}
	} else {
		completeRuns(t.PieceStateRuns(), ours) // one lock for all pieces, not one each
	}
	held := make([][]bool, len(rcs))
	count := make([]int, len(rcs)) // pieces each client holds
	holders := make([]int, n)
	for c, rc := range rcs {
		if len(rc.shown) != n {
			rc.shown, rc.shownAt = make([]bool, n), make([]time.Time, n)
		}
		held[c] = make([]bool, n)
		it := rc.pc.PeerPieces().Iterator()
		for it.HasNext() {
			if i := int(it.Next()); i < n {
				held[c][i] = true
				holders[i]++
				count[c]++
			}
		}
		st := rc.pc.Stats()
		if w := st.BytesWrittenData.Int64(); w > rc.written {
			rc.written, rc.progress = w, now
		}
	}
	// Pieces on their way: shown to a client that lacks them, recently or
	// while the node is still sending it data.
	onWay := make([]int, n)
	pending := make([]int, len(rcs))
	for c, rc := range rcs {
		active := now.Sub(rc.progress) < revealStale
		for i, s := range rc.shown {
			if s && !held[c][i] && (active || now.Sub(rc.shownAt[i]) < revealStale) {
				onWay[i]++
				pending[c]++
			}
		}
	}
	// A piece's score: twice the copies out (held by clients or on their
	// way), plus one while none has arrived anywhere, so a piece already held
	// is duplicated before one whose first copy is still on its way.
	score := make([]int, n)
	firstCopy := false // some piece of ours has not left the node yet
	for i := range score {
		score[i] = revealScore(holders[i], onWay[i])
		if ours[i] && score[i] == 0 {
			firstCopy = true
		}
	}
	window := int(r.window.Load())
	k := max(1, window/(int(info.PieceLength)*len(rcs)))
	if window == 0 {
		k = 0
	}
	// The clients that hold least go first: once the first copy is out, the
	// node's uplink is best spent on whoever is furthest behind.
	turn := rand.Perm(len(rcs))
	slices.SortStableFunc(turn, func(a, b int) int { return count[a] - count[b] })
	var buf [4]byte
	for _, c := range turn {
		rc := rcs[c]
		for ; pending[c] < k; pending[c]++ {
			i := pickReveal(order, ours, held[c], rc.shown, score, firstCopy)
			if i < 0 {
				break
			}
			binary.BigEndian.PutUint32(buf[:], uint32(i))
			if rc.pc.WriteExtendedMessage(extReveal, buf[:]) != nil {
				break
			}
			rc.shown[i], rc.shownAt[i] = true, now
			onWay[i]++
			score[i] = revealScore(holders[i], onWay[i])
			r.sent.Add(1)
		}
	}
}

// completeRuns marks in ours the pieces the runs say are complete.
func completeRuns(runs torrent.PieceStateRuns, ours []bool) {
	i := 0
	for _, run := range runs {
		for j := i; j < i+run.Length && j < len(ours); j++ {
			ours[j] = run.Complete
		}
		i += run.Length
	}
}

// revealScore orders pieces for reveals once the first copy is out: 0 for
// a piece no client holds or is being sent (only these are revealed while
// any is left), then by copies out, a piece none has received yet after
// one held with as many copies out.
func revealScore(holders, onWay int) int {
	s := 2 * (holders + onWay)
	if holders == 0 && onWay > 0 {
		s++
	}
	return s
}

// pickReveal is the piece to show a client next, or -1: one the node has
// (ours), the client lacks (held) and was not shown yet. While firstCopy
// (some piece has score 0: no client holds it and none is being sent it)
// only those qualify, so the first copy leaves the node once; after that
// the lowest score, the rarest. order breaks ties.
func pickReveal(order []int, ours, held, shown []bool, score []int, firstCopy bool) int {
	best := -1
	for _, i := range order {
		if !ours[i] || held[i] || shown[i] || (firstCopy && score[i] > 0) {
			continue
		}
		if best < 0 || score[i] < score[best] {
			best = i
			if score[i] == 0 {
				break
			}
		}
	}
	return best
}

// revealClient is the agent's side: it hides the bitfield of nodes that
// advertise extSeed and turns their reveals into Have messages.
type revealClient struct {
	pieces int // in the one torrent the agent syncs
	mu     sync.Mutex
	conns  map[*torrent.PeerConn]bool
}

func newRevealClient(pieces int) *revealClient {
	return &revealClient{pieces: pieces, conns: map[*torrent.PeerConn]bool{}}
}

func (rc *revealClient) added(pc *torrent.PeerConn) {
	addExtension(pc, extReveal)
}

// addExtension advertises ext on pc. The connection starts out pointing at
// the client's shared map, which the library says not to modify: give it
// its own copy.
func addExtension(pc *torrent.PeerConn, ext pp.ExtensionName) {
	m := *pc.LocalLtepProtocolMap
	m.Index = slices.Clone(m.Index)
	m.AddUserProtocol(ext)
	pc.LocalLtepProtocolMap = &m
}

func (rc *revealClient) handshake(pc *torrent.PeerConn, d *pp.ExtendedHandshakeMessage) {
	if d.M[extSeed] != 0 {
		rc.mu.Lock()
		rc.conns[pc] = true
		rc.mu.Unlock()
	}
}

func (rc *revealClient) closed(pc *torrent.PeerConn) {
	rc.mu.Lock()
	delete(rc.conns, pc)
	rc.mu.Unlock()
}

// read rewrites a revealing node's piece announcements: its bitfield
// becomes "none", its own Haves are dropped, and a reveal becomes a Have.
// It runs under the client's lock, before the library handles m.
func (rc *revealClient) read(pc *torrent.PeerConn, m *pp.Message) {
	if m.Keepalive {
		return
	}
	switch m.Type {
	case pp.HaveAll, pp.Bitfield, pp.Have, pp.Extended:
	default:
		return // requests, pieces and the rest pass untouched
	}
	if !rc.seed(pc) {
		return
	}
	switch m.Type {
	case pp.HaveAll:
		*m = pp.Message{Type: pp.HaveNone}
	case pp.Bitfield:
		m.Bitfield = make([]bool, len(m.Bitfield))
	case pp.Have:
		*m = pp.Message{Keepalive: true}
	case pp.Extended:
		if m.ExtendedID == pp.HandshakeExtendedID {
			return
		}
		name, _, err := pc.LocalLtepProtocolMap.LookupId(m.ExtendedID)
		if err != nil || name != extReveal {
			return
		}
		n := rc.pieces
		if t := pc.Torrent(); t != nil && t.Info() != nil {
			n = t.NumPieces() // what the library will check the Have against
		}
		p := m.ExtendedPayload
		if len(p) != 4 || int64(binary.BigEndian.Uint32(p)) >= int64(n) {
			*m = pp.Message{Keepalive: true} // malformed: ignore it
			return
		}
		*m = pp.Message{Type: pp.Have, Index: pp.Integer(binary.BigEndian.Uint32(p))}
	}
}

// seed: pc is a node that reveals its pieces.
func (rc *revealClient) seed(pc *torrent.PeerConn) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.conns[pc]
}
