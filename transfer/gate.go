package transfer

import (
	"net"

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

// serverGate caps how many chunk requests a client keeps outstanding at a
// server node at 4 MiB. A node reveals its pieces a few at a time
// (reveal.go), so a client asks it only for those; the cap keeps a client
// whose node does not reveal (or has revealed much) from queueing a
// server's whole uplink behind it.
type serverGate struct {
	servers map[string]bool // torrent addresses of the server nodes
	busy    int
}

func newServerGate(servers []string, chunk int) *serverGate {
	g := &serverGate{servers: map[string]bool{}, busy: max(4, (4<<20)/chunk)}
	for _, a := range servers {
		if ta, err := net.ResolveTCPAddr("tcp", a); err == nil {
			g.servers[ta.String()] = true
		}
	}
	return g
}

func (g *serverGate) isServer(pc *torrent.PeerConn) bool {
	return pc.RemoteAddr != nil && g.servers[pc.RemoteAddr.String()]
}

// handshake replaces the request queue length a server offers (reqq); the
// library takes its cap at the peer from it. A node found through a tracker
// rather than the server list says what it is by revealing its pieces.
func (g *serverGate) handshake(pc *torrent.PeerConn, d *pp.ExtendedHandshakeMessage) {
	if g.isServer(pc) || d.M[extSeed] != 0 {
		d.Reqq = g.busy
	}
}
