package transfer

import (
	"slices"
	"time"

	"github.com/anacrolix/torrent"
	"golang.org/x/time/rate"
)

// pacer holds back the uploads of a client that has fallen behind the
// clients it is connected to. In the fleet benchmark the clients that
// uploaded most finished last: a client's uplink and its share of the CPU
// also carry its downloads (their ACKs, their reads and writes), and the
// last client sets the fleet's time. So a client more than paceBehind of
// the pieces behind the median of the downloading clients it sees halves
// its upload rate, and keeps halving it (down to paceFloor) while it stays
// behind; once it has caught up the limit is lifted. The clients ahead,
// and the complete ones that keep seeding, serve the others meanwhile.
type pacer struct {
	t      *torrent.Torrent
	server func(*torrent.PeerConn) bool // server nodes are not in the pack
	limit  *rate.Limiter
	last   int64 // bytes uploaded at the last step
	lastAt time.Time
}

const (
	paceBehind = 1.0 / 32 // of the pieces
	paceFloor  = 1 << 20  // bytes/s
)

func newPacer(t *torrent.Torrent, server func(*torrent.PeerConn) bool, limit *rate.Limiter) *pacer {
	return &pacer{t: t, server: server, limit: limit, lastAt: time.Now()}
}

// finish lifts the limit: a complete client seeds at full speed.
func (p *pacer) finish() {
	p.limit.SetLimit(rate.Inf)
}

// step runs on the agent's progress tick.
func (p *pacer) step(now time.Time) {
	st := p.t.Stats()
	up := st.BytesWrittenData.Int64()
	dt := now.Sub(p.lastAt).Seconds()
	rateNow := float64(up-p.last) / max(dt, 1e-3)
	p.last, p.lastAt = up, now
	n := p.t.NumPieces()
	var others []int
	for _, pc := range p.t.PeerConns() {
		if p.server(pc) {
			continue
		}
		if c := int(pc.PeerPieces().GetCardinality()); c < n {
			others = append(others, c)
		}
	}
	own := st.PiecesComplete
	if lim := nextUploadLimit(p.limit.Limit(), rateNow, own < n && behindPack(own, others, n)); lim != p.limit.Limit() {
		p.limit.SetLimit(lim)
	}
}

// nextUploadLimit: while behind, half the upload rate just measured, or
// half the current limit (cur) if that is lower, never below paceFloor;
// once caught up, no limit (rate.Inf).
func nextUploadLimit(cur rate.Limit, rateNow float64, behind bool) rate.Limit {
	if !behind {
		return rate.Inf
	}
	next := rateNow / 2
	if cur != rate.Inf {
		next = min(next, float64(cur)/2)
	}
	return rate.Limit(max(next, paceFloor))
}

// behindPack: own is more than paceBehind of n pieces behind the median of
// the other downloading clients (at least three of them).
func behindPack(own int, others []int, n int) bool {
	if len(others) < 3 {
		return false
	}
	s := slices.Clone(others)
	slices.Sort(s)
	return float64(s[len(s)/2]-own) > paceBehind*float64(n)
}
