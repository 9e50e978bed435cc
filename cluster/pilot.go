package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// pilot is shoal's raft-autopilot integration: autopilot decides promotions
// and dead-server cleanup, pilot tells it who exists (from gossip, keeping
// failed and left members, and every server of the raft configuration) and
// enforces the dead-server grace, which autopilot itself does not have.
type pilot struct {
	c *Cluster

	mu      sync.Mutex
	missing map[raft.ServerID]time.Time // raft servers gossip has never shown us
	state   *autopilot.State
}

func (p *pilot) AutopilotConfig() *autopilot.Config {
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    4 * p.c.cfg.Timing.HeartbeatTimeout,
		MaxTrailingLogs:         500,
		MinQuorum:               0,
		ServerStabilizationTime: p.c.cfg.StabilizationTime,
	}
}

// reset forgets what an earlier leadership term noticed: a server missing
// then may have come back since.
func (p *pilot) reset() {
	p.mu.Lock()
	p.missing, p.state = nil, nil
	p.mu.Unlock()
}

func (p *pilot) NotifyState(s *autopilot.State) {
	p.mu.Lock()
	p.state = s
	p.mu.Unlock()
}

func (p *pilot) health(id string) (healthy, known bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return false, false
	}
	s, ok := p.state.Servers[raft.ServerID(id)]
	if !ok {
		return false, false
	}
	return s.Health.Healthy, true
}

var statusToNode = map[MemberStatus]autopilot.NodeStatus{
	StatusAlive: autopilot.NodeAlive, StatusFailed: autopilot.NodeFailed, StatusLeft: autopilot.NodeLeft,
}

// KnownServers must include raft servers gossip does not know: autopilot
// removes "stale" servers absent from this map at once, which would skip
// the grace for a node that died before this leader ever saw it.
func (p *pilot) KnownServers() map[raft.ServerID]*autopilot.Server {
	out := map[raft.ServerID]*autopilot.Server{}
	leader := p.c.leaderID()
	for _, m := range p.c.reg.list() {
		if m.RaftAddr() == "" {
			continue
		}
		id := raft.ServerID(m.Name)
		status := statusToNode[m.Status]
		if m.Leaving() {
			status = autopilot.NodeLeft
		}
		out[id] = &autopilot.Server{
			ID: id, Name: m.Name, Address: raft.ServerAddress(m.RaftAddr()),
			NodeStatus: status, IsLeader: m.Name == leader,
			NodeType: autopilot.NodeVoter, Meta: m.Meta,
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.c.servers() {
		if _, ok := out[s.ID]; ok {
			delete(p.missing, s.ID)
			continue
		}
		if p.missing == nil {
			p.missing = map[raft.ServerID]time.Time{}
		}
		if _, ok := p.missing[s.ID]; !ok {
			p.missing[s.ID] = time.Now()
		}
		out[s.ID] = &autopilot.Server{ID: s.ID, Name: string(s.ID), Address: s.Address,
			NodeStatus: autopilot.NodeFailed, NodeType: autopilot.NodeVoter}
	}
	return out
}

// RemoveFailedServer is where the grace is enforced: a node that left
// gracefully goes at once, a failed one only after DeadServerGrace.
func (p *pilot) RemoveFailedServer(s *autopilot.Server) {
	since, ok := p.failedSince(s)
	if !ok || (s.NodeStatus != autopilot.NodeLeft && time.Since(since) < p.c.cfg.DeadServerGrace) {
		return
	}
	p.c.log.Info("removing server from raft configuration", "server", s.ID, "status", s.NodeStatus,
		"down_for", time.Since(since).Round(time.Millisecond))
	if err := p.c.raft.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
		p.c.log.Warn("remove server failed", "server", s.ID, "err", err)
		return
	}
	p.c.removeNodeRecord(string(s.ID))
}

func (p *pilot) failedSince(s *autopilot.Server) (time.Time, bool) {
	if m, ok := p.c.reg.get(string(s.ID)); ok {
		return m.Since, m.Status != StatusAlive
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.missing[s.ID]
	return t, ok
}

// FetchServerStats asks every live server for its raft progress over the
// internal HTTP API, in parallel, within autopilot's deadline.
func (p *pilot) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	out := map[raft.ServerID]*autopilot.ServerStats{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := p.c.fetchStats(ctx, string(id))
			if err != nil {
				return
			}
			mu.Lock()
			out[id] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// raftStats is the wire form of autopilot.ServerStats.
type raftStats struct {
	LastContactNS int64  `json:"last_contact_ns"`
	LastTerm      uint64 `json:"last_term"`
	LastIndex     uint64 `json:"last_index"`
	// Leader is who the node follows; bootstrap asks, to never start a
	// second cluster beside an existing one.
	Leader string `json:"leader,omitempty"`
}

func (c *Cluster) localStats() raftStats {
	s := c.raft.Stats()
	var st raftStats
	fmt.Sscan(s["last_log_term"], &st.LastTerm)
	fmt.Sscan(s["last_log_index"], &st.LastIndex)
	if c.raft.State() != raft.Leader {
		st.LastContactNS = int64(time.Since(c.raft.LastContact()))
	}
	st.Leader = c.leaderID()
	return st
}

func (c *Cluster) fetchStats(ctx context.Context, id string) (*autopilot.ServerStats, error) {
	var st raftStats
	if id == c.cfg.NodeName {
		st = c.localStats()
	} else {
		m, ok := c.reg.get(id)
		if !ok || m.HTTPAddr() == "" {
			return nil, fmt.Errorf("no http address for %s", id)
		}
		if err := c.getJSON(ctx, "http://"+m.HTTPAddr()+"/v1/internal/stats", &st); err != nil {
			return nil, err
		}
	}
	return &autopilot.ServerStats{LastContact: time.Duration(st.LastContactNS), LastTerm: st.LastTerm, LastIndex: st.LastIndex}, nil
}

func (c *Cluster) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// promoter promotes healthy, stable non-voters while fewer than max voters
// exist, lowest name first so the choice is predictable; it never demotes.
// autopilot's StablePromoter would promote everyone. Its state can be one
// update interval old, so each candidate is checked against the live raft
// configuration: promoting a server that was just removed would re-add it
// as a voter and could cost the quorum.
type promoter struct {
	autopilot.StablePromoter
	max     int
	current func() []raft.Server
}

func (p *promoter) CalculatePromotionsAndDemotions(c *autopilot.Config, s *autopilot.State) autopilot.RaftChanges {
	var changes autopilot.RaftChanges
	live := map[raft.ServerID]raft.ServerSuffrage{}
	voters := 0
	for _, srv := range p.current() {
		live[srv.ID] = srv.Suffrage
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	slots := p.max - voters
	if slots <= 0 {
		return changes
	}
	now := time.Now()
	stable := s.ServerStabilizationTime(c)
	var ids []raft.ServerID
	for id, srv := range s.Servers {
		if suf, ok := live[id]; !ok || suf != raft.Nonvoter {
			continue
		}
		if srv.State == autopilot.RaftNonVoter && srv.Server.NodeStatus == autopilot.NodeAlive && srv.Health.IsStable(now, stable) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if len(ids) > slots {
		ids = ids[:slots]
	}
	changes.Promotions = ids
	return changes
}
