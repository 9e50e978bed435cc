package transfer

import (
	"net"
	"testing"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

func TestServerGateCapsOnlyServers(t *testing.T) {
	g := newServerGate([]string{"10.0.0.1:7482"}, 64<<10)
	if g.busy != 64 {
		t.Fatalf("cap %d requests of 64 KiB, want 64 (4 MiB)", g.busy)
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
}
