package cluster

import (
	"context"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

var closedCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

type metrics struct {
	commit     prometheus.Histogram
	collectors []prometheus.Collector
}

func newMetrics(c *Cluster) *metrics {
	m := &metrics{
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_raft_commit_seconds",
			Help:    "Time from proposing a catalogue write on the leader to its commit and apply.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	isReady := func() bool { return c.waitReady(closedCtx) == nil }
	m.collectors = []prometheus.Collector{
		m.commit,
		gauge("shoal_raft_leader", "1 when this node is the raft leader.", func() float64 {
			if isReady() && c.raft.State() == raft.Leader {
				return 1
			}
			return 0
		}),
		gauge("shoal_raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown, -1 starting.", func() float64 {
			if !isReady() {
				return -1
			}
			return float64(c.raft.State())
		}),
		gauge("shoal_raft_applied_index", "Last raft log index applied to the local catalogue.", func() float64 {
			if !isReady() {
				return 0
			}
			return float64(c.raft.AppliedIndex())
		}),
		gauge("shoal_raft_servers", "Servers in the raft configuration.", func() float64 {
			if !isReady() {
				return 0
			}
			return float64(len(c.servers()))
		}),
		gauge("shoal_gossip_members_alive", "Members gossip reports alive.", func() float64 {
			return float64(len(c.reg.alive()))
		}),
		gauge("shoal_gossip_members", "Members gossip has seen, including failed and left ones.", func() float64 {
			return float64(len(c.reg.list()))
		}),
	}
	return m
}

// Collectors are the cluster's Prometheus metrics, for node/ to register.
func (c *Cluster) Collectors() []prometheus.Collector { return c.metrics.collectors }
