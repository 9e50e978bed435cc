package transfer

import (
	"bytes"
	"math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// agentChunkSize is the size of the requests a client sends (the library's
// default is 16 KiB). Every request costs bookkeeping, a message, a
// wake-up and a write to the target. In the fleet benchmark (N=20, 2
// cores) 64 KiB chunks cut the agents' CPU by about a third against 16 KiB,
// and 256 KiB by another 10 %; 512 KiB and 1 MiB were slower (longer
// bursts into the 50 ms port buffers, more tail drops). Servers and agents
// (anacrolix) serve any size up to peerRequestBuffer; a stock client that
// announced to a node's tracker may refuse them, and is then simply not
// used as a source.
const agentChunkSize = 256 << 10

// peerRequestBuffer is how many bytes of requested data a node or agent
// buffers per connection for the peer (library default 1 MiB, which would
// serve agent-sized chunks only 4 at a time).
const peerRequestBuffer = 4 << 20

// steerInterval is how often a client re-plans which pieces it wants.
const steerInterval = 250 * time.Millisecond

// steer keeps clients that sync at once from asking the servers for the
// same pieces, and for pieces another client already holds: a server's
// uplink is the one link the whole fleet shares.
//
// Pieces no connected client holds ("server-only") can only come from a
// server. The clients still downloading split them without talking: each
// ranks itself among their peer IDs (in a full mesh every client sees about
// the same set) and piece p is the share of the client ranked p mod count.
// A client wants its own share (High) and leaves the others' (None): their
// owners fetch them and pass them on. Pieces some client holds are Normal
// and come from whoever has them, rarest first. Once its share is done a
// client also wants, one at a time and in its own random order, server-only
// pieces of other shares, so a share whose owner is gone, sees another set
// of peers or does not steer still arrives.
type steer struct {
	t      *torrent.Torrent
	self   torrent.PeerID
	gate   *serverGate
	reveal *revealClient // nil: no node reveals
	order  []int         // this client's random order of the pieces
	prio   []torrent.PiecePriority
	avail  []int // connected clients (not servers) holding each piece
	ids    []torrent.PeerID
}

// steerExtra is how many server-only pieces of other shares a client wants
// at once after its own share is done.
const steerExtra = 1

func newSteer(t *torrent.Torrent, self torrent.PeerID, gate *serverGate, reveal *revealClient) *steer {
	n := t.NumPieces()
	st := &steer{t: t, self: self, gate: gate, reveal: reveal, order: rand.Perm(n),
		prio: make([]torrent.PiecePriority, n), avail: make([]int, n)}
	for i := range st.prio {
		st.prio[i] = torrent.PiecePriorityNormal // what DownloadAll set
	}
	return st
}

// update re-plans the pieces' priorities from what the connected clients
// hold now, and opens or narrows the servers' request queues to match.
func (st *steer) update() {
	if st.reveal != nil && st.reveal.active() {
		// A node that reveals its pieces decides itself what each client
		// takes from it (reveal.go): want everything, from whoever has it.
		st.unsteer()
		return
	}
	clear(st.avail)
	st.ids = append(st.ids[:0], st.self)
	n := len(st.prio)
	for _, pc := range st.t.PeerConns() {
		if st.gate.isServer(pc) {
			continue
		}
		bm := pc.PeerPieces()
		if int(bm.GetCardinality()) < n {
			st.ids = append(st.ids, pc.PeerID) // still downloading: gets a share
		}
		it := bm.Iterator()
		for it.HasNext() {
			if i := int(it.Next()); i < n {
				st.avail[i]++
			}
		}
	}
	complete := make([]bool, n)
	for i := range complete {
		complete[i] = st.t.Piece(i).State().Complete
	}
	high := st.plan(complete)
	if high > 0 {
		st.gate.limit.Store(st.gate.busy)
	} else {
		st.gate.limit.Store(serverReqsIdle)
	}
}

// unsteer wants every piece at the normal priority, as DownloadAll did,
// and opens the servers' request queues.
func (st *steer) unsteer() {
	for i, p := range st.prio {
		if p != torrent.PiecePriorityNormal {
			st.t.Piece(i).SetPriority(torrent.PiecePriorityNormal)
			st.prio[i] = torrent.PiecePriorityNormal
		}
	}
	st.gate.limit.Store(st.gate.busy)
}

// plan sets the priorities for the current avail and ids and returns how
// many pieces it wants from a server.
func (st *steer) plan(complete []bool) int {
	slices.SortFunc(st.ids, func(a, b torrent.PeerID) int { return bytes.Compare(a[:], b[:]) })
	rank := slices.Index(st.ids, st.self)
	want := make([]torrent.PiecePriority, len(st.prio))
	high := planShares(st.order, st.avail, complete, len(st.ids), rank, steerExtra, want)
	for i, p := range want {
		if p != st.prio[i] {
			st.t.Piece(i).SetPriority(p)
			st.prio[i] = p
		}
	}
	return high
}

// planShares is the rule of steer: the priority of every piece for the
// client ranked rank of count downloading clients, given the connected
// clients holding each piece (avail), the pieces it has (complete) and its
// random order of the pieces. It returns how many pieces are High.
func planShares(order, avail []int, complete []bool, count, rank, extra int, want []torrent.PiecePriority) (high int) {
	count, rank = max(count, 1), max(rank, 0)
	serverOnly := func(i int) bool { return !complete[i] && avail[i] == 0 }
	mine := 0
	for i := range want {
		if i%count == rank && serverOnly(i) {
			mine++
		}
	}
	others := 0
	for _, i := range order {
		p := torrent.PiecePriorityNormal
		switch {
		case !serverOnly(i):
		case i%count == rank:
			p = torrent.PiecePriorityHigh
		case mine == 0 && others < extra:
			p = torrent.PiecePriorityHigh
			others++
		default:
			p = torrent.PiecePriorityNone
		}
		if p == torrent.PiecePriorityHigh {
			high++
		}
		want[i] = p
	}
	return high
}

// serverReqsIdle is the request queue a client keeps at a server while it
// wants nothing only a server has.
const serverReqsIdle = 2

// serverGate caps how many chunk requests a client keeps outstanding at a
// server. The library balances request counts between connections without
// regard to who else could serve a piece, so a server connection with room
// in its queue takes (or steals) requests for pieces other clients hold,
// and the server sends them again. Outstanding requests are capped at
// busy (4 MiB) while the client wants server-only pieces (those come
// first: they are High) and at serverReqsIdle otherwise. The cap is set
// from the library's callbacks, which run under the client's lock.
type serverGate struct {
	servers map[string]bool // torrent addresses of the server nodes
	busy    int32
	limit   atomic.Int32
}

func newServerGate(servers []string, chunk int) *serverGate {
	g := &serverGate{servers: map[string]bool{}, busy: int32(max(4, (4<<20)/chunk))}
	for _, a := range servers {
		if ta, err := net.ResolveTCPAddr("tcp", a); err == nil {
			g.servers[ta.String()] = true
		}
	}
	g.limit.Store(g.busy)
	return g
}

func (g *serverGate) isServer(pc *torrent.PeerConn) bool {
	return pc.RemoteAddr != nil && g.servers[pc.RemoteAddr.String()]
}

// handshake replaces the request queue length a server offers (reqq).
func (g *serverGate) handshake(pc *torrent.PeerConn, d *pp.ExtendedHandshakeMessage) {
	if g.isServer(pc) {
		d.Reqq = int(g.limit.Load())
	}
}

// read applies the current cap on every message from a server.
func (g *serverGate) read(pc *torrent.PeerConn, _ *pp.Message) {
	if g.isServer(pc) {
		pc.PeerMaxRequests = int(g.limit.Load())
	}
}
