package transfer

import (
	"net"
	"slices"
	"testing"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

const (
	none   = torrent.PiecePriorityNone
	normal = torrent.PiecePriorityNormal
	high   = torrent.PiecePriorityHigh
)

func TestPlanSharesSplitsServerOnlyPieces(t *testing.T) {
	n := 8
	order := []int{7, 6, 5, 4, 3, 2, 1, 0}
	avail := make([]int, n)
	complete := make([]bool, n)
	var seen [8]int
	for rank := 0; rank < 2; rank++ {
		want := make([]torrent.PiecePriority, n)
		if got := planShares(order, avail, complete, 2, rank, 1, want); got != 4 {
			t.Fatalf("rank %d: %d pieces wanted from a server, want 4 (%v)", rank, got, want)
		}
		for i, p := range want {
			switch p {
			case high:
				seen[i]++
			case none:
			default:
				t.Fatalf("rank %d: piece %d has priority %v, want High or None", rank, i, p)
			}
		}
	}
	for i, c := range seen {
		if c != 1 {
			t.Errorf("piece %d is wanted from a server by %d of 2 clients, want exactly 1", i, c)
		}
	}
}

func TestPlanSharesHeldAndCompletePiecesAreNormal(t *testing.T) {
	order := []int{0, 1, 2, 3}
	avail := []int{1, 0, 0, 2}                    // pieces 0 and 3 are held by other clients
	complete := []bool{false, false, true, false} // piece 2 is ours already
	want := make([]torrent.PiecePriority, 4)
	planShares(order, avail, complete, 1, 0, 1, want)
	if exp := []torrent.PiecePriority{normal, high, normal, normal}; !slices.Equal(want, exp) {
		t.Fatalf("priorities %v, want %v", want, exp)
	}
}

func TestPlanSharesTakesOthersPiecesOnceOwnShareIsDone(t *testing.T) {
	// Two downloading clients; rank 0's share (0, 2) is held by others or
	// complete, so it takes one server-only piece of rank 1's share, the
	// first in its own order.
	order := []int{3, 1, 0, 2}
	avail := []int{1, 0, 0, 0}
	complete := []bool{false, false, true, false}
	want := make([]torrent.PiecePriority, 4)
	if got := planShares(order, avail, complete, 2, 0, 1, want); got != 1 {
		t.Fatalf("%d pieces wanted from a server, want 1 (%v)", got, want)
	}
	if exp := []torrent.PiecePriority{normal, none, normal, high}; !slices.Equal(want, exp) {
		t.Fatalf("priorities %v, want %v", want, exp)
	}
	// Alone (no other client connected) every missing piece is its share.
	planShares(order, []int{0, 0, 0, 0}, complete, 1, 0, 1, want)
	if exp := []torrent.PiecePriority{high, high, normal, high}; !slices.Equal(want, exp) {
		t.Fatalf("alone: priorities %v, want %v", want, exp)
	}
}

func TestServerGateCapsOnlyServers(t *testing.T) {
	g := newServerGate([]string{"10.0.0.1:7482"}, 64<<10)
	if g.busy != 64 {
		t.Fatalf("busy cap %d requests of 64 KiB, want 64 (4 MiB)", g.busy)
	}
	srv := &torrent.PeerConn{}
	srv.RemoteAddr = &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 7482}
	cl := &torrent.PeerConn{}
	cl.RemoteAddr = &net.TCPAddr{IP: net.IPv4(10, 0, 0, 11), Port: 7482}
	for _, pc := range []*torrent.PeerConn{srv, cl} {
		d := pp.ExtendedHandshakeMessage{Reqq: 1024}
		g.handshake(pc, &d)
		if want := map[bool]int{true: 64, false: 1024}[pc == srv]; d.Reqq != want {
			t.Errorf("%v: reqq %d, want %d", pc.RemoteAddr, d.Reqq, want)
		}
	}
	g.limit.Store(serverReqsIdle)
	g.read(srv, &pp.Message{})
	g.read(cl, &pp.Message{})
	if srv.PeerMaxRequests != serverReqsIdle || cl.PeerMaxRequests != 0 {
		t.Errorf("after read: server %d, client %d requests allowed; want %d and untouched",
			srv.PeerMaxRequests, cl.PeerMaxRequests, serverReqsIdle)
	}
}
