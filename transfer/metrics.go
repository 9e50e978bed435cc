package transfer

import (
	"errors"

	"github.com/anacrolix/torrent"
	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics exports the client's own counters rather than keeping
// copies: torrent.Client keeps them for its whole life, across torrents
// being dropped, so they are monotonic as Prometheus counters must be.
func (s *Server) registerMetrics(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shoal_transfer_pieces_failed_total",
			Help: "Pieces received from peers that failed the hash check (corrupt or malicious peers).",
		}, s.connStat(func(c *torrent.ConnStats) *torrent.Count { return &c.PiecesDirtiedBad })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shoal_transfer_bytes_downloaded_total",
			Help: "Blob data bytes received from peers and web seeds.",
		}, s.connStat(func(c *torrent.ConnStats) *torrent.Count { return &c.BytesReadData })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shoal_transfer_bytes_uploaded_total",
			Help: "Blob data bytes sent to peers.",
		}, s.connStat(func(c *torrent.ConnStats) *torrent.Count { return &c.BytesWrittenData })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shoal_transfer_reveals_total",
			Help: "Pieces this node revealed to fleet clients one at a time (super-seeding), so each leaves it about once.",
		}, func() float64 { return float64(s.reveal.sent.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "shoal_transfer_reveal_clients_total",
			Help: "Agent connections that took this node's pieces as reveals.",
		}, func() float64 { return float64(s.reveal.taken.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_transfer_blobs_wanted",
			Help: "Blobs the catalogue wants on every server node.",
		}, func() float64 { s.mu.Lock(); defer s.mu.Unlock(); return float64(len(s.wanted)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_transfer_blobs_complete",
			Help: "Blobs complete (every piece verified) on this node.",
		}, func() float64 { return float64(len(s.Have())) }),
	}
	var errs []error
	for _, c := range cs {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}

// connStat reads one of the client-wide connection counters; 0 before Start.
func (s *Server) connStat(field func(*torrent.ConnStats) *torrent.Count) func() float64 {
	return func() float64 {
		s.mu.Lock()
		cl := s.cl
		s.mu.Unlock()
		if cl == nil {
			return 0
		}
		st := cl.ConnStats()
		return float64(field(&st).Int64())
	}
}
