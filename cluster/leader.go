package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// leaderLoop runs for the node's lifetime and does the leader's chores only
// while this node leads: autopilot (promotion, dead-server cleanup) and
// turning gossip members into raft servers.
func (c *Cluster) leaderLoop(ctx context.Context) {
	tick := time.NewTicker(c.cfg.Timing.AutopilotInterval)
	defer tick.Stop()
	running := false
	stopPilot := func() {}
	defer func() { stopPilot() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.raft.LeaderCh():
		case <-c.reg.changed:
		case <-tick.C:
		}
		leading := c.raft.State() == raft.Leader
		switch {
		case leading && !running:
			c.log.Info("became leader; starting voter manager")
			pctx, cancel := context.WithCancel(ctx)
			c.pilot.reset()
			c.ap.Start(pctx)
			stopPilot = func() { cancel(); <-c.ap.Stop() }
			running = true
		case !leading && running:
			c.log.Info("lost leadership; stopping voter manager")
			stopPilot()
			stopPilot, running = func() {}, false
		}
		if leading {
			c.reconcileMembers()
		}
	}
}

// reconcileMembers adds live gossip members that raft does not know as
// non-voters (autopilot promotes them once stable, up to MaxVoters), fixes
// changed addresses, and keeps the catalogue's node records current.
func (c *Cluster) reconcileMembers() {
	known := map[raft.ServerID]raft.Server{}
	for _, s := range c.servers() {
		known[s.ID] = s
	}
	for _, m := range c.reg.alive() {
		if m.RaftAddr() == "" || m.Leaving() || c.reg.recentlyLeft(m) {
			continue
		}
		id, addr := raft.ServerID(m.Name), raft.ServerAddress(m.RaftAddr())
		s, ok := known[id]
		var err error
		switch {
		case !ok:
			c.log.Info("adding server as non-voter", "server", id, "raft", addr)
			err = c.raft.AddNonvoter(id, addr, 0, 5*time.Second).Error()
		case s.Address != addr && s.Suffrage == raft.Voter:
			c.log.Info("server moved", "server", id, "from", s.Address, "to", addr)
			err = c.raft.AddVoter(id, addr, 0, 5*time.Second).Error()
		case s.Address != addr:
			err = c.raft.AddNonvoter(id, addr, 0, 5*time.Second).Error()
		}
		if err != nil {
			c.log.Warn("cannot add server", "server", id, "err", err)
			continue
		}
		c.upsertNodeRecord(m)
	}
}

func (c *Cluster) upsertNodeRecord(m Member) {
	want := catalog.Node{ID: m.Name, RaftAddr: m.RaftAddr(), HTTPAddr: m.HTTPAddr()}
	if have, ok := c.state.Node(m.Name); ok && have == want {
		return
	}
	c.proposeInternal(catalog.CmdNodeUpsert, want)
}

func (c *Cluster) removeNodeRecord(id string) {
	if _, ok := c.state.Node(id); ok {
		c.proposeInternal(catalog.CmdNodeRemove, catalog.NameRef{Name: id})
	}
}

// proposeInternal is for the leader's own bookkeeping writes.
func (c *Cluster) proposeInternal(t catalog.CommandType, body any) {
	cmd, err := catalog.NewCommand(t, time.Now().Unix(), body)
	if err == nil {
		_, err = c.applyLocal(cmd)
	}
	if err != nil {
		c.log.Warn("catalogue bookkeeping write failed", "command", t, "err", err)
	}
}

func (c *Cluster) servers() []raft.Server {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}

func (c *Cluster) leaderID() string {
	_, id := c.raft.LeaderWithID()
	return string(id)
}
