package cluster

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// Server is one entry of the raft configuration.
type Server struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"` // voter | nonvoter | staging
	Leader   bool   `json:"leader"`
}

// Status is this node's view of raft; none of it needs a leader.
type Status struct {
	Node         string `json:"node"`
	State        string `json:"state"` // Leader | Follower | Candidate | Shutdown
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LastIndex    uint64 `json:"last_index"`
	// LastSnapshotIndex is the index of the newest snapshot this node took
	// or installed from the leader.
	LastSnapshotIndex uint64   `json:"last_snapshot_index"`
	Servers           []Server `json:"servers"`
}

// Status reports raft state from this node's point of view.
func (c *Cluster) Status() Status {
	if c.waitReady(closedCtx) != nil {
		return Status{Node: c.cfg.NodeName, State: "Starting"}
	}
	leader := c.leaderID()
	st := Status{
		Node: c.cfg.NodeName, State: c.raft.State().String(), Leader: leader,
		Term: c.raft.CurrentTerm(), AppliedIndex: c.raft.AppliedIndex(),
		CommitIndex: c.raft.CommitIndex(), LastIndex: c.raft.LastIndex(),
	}
	fmt.Sscan(c.raft.Stats()["last_snapshot_index"], &st.LastSnapshotIndex)
	for _, s := range c.servers() {
		st.Servers = append(st.Servers, Server{
			ID: string(s.ID), Address: string(s.Address), Suffrage: suffrage(s.Suffrage), Leader: string(s.ID) == leader,
		})
	}
	return st
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	default:
		return "staging"
	}
}

// NodeInfo joins the gossip view with the raft role of each node.
type NodeInfo struct {
	Member
	Role string `json:"role"` // leader | voter | nonvoter | none
	// Healthy: alive in gossip and, when this node leads and autopilot has
	// judged it, keeping up with the log.
	Healthy bool `json:"healthy"`
}

// Nodes lists every node gossip has seen, dead and left ones included, and
// raft servers gossip has not (yet) seen.
func (c *Cluster) Nodes() []NodeInfo {
	roles := map[string]string{}
	if c.waitReady(closedCtx) == nil {
		leader := c.leaderID()
		for _, s := range c.servers() {
			roles[string(s.ID)] = suffrage(s.Suffrage)
			if string(s.ID) == leader {
				roles[string(s.ID)] = "leader"
			}
		}
	}
	var out []NodeInfo
	for _, m := range c.reg.list() {
		out = append(out, c.nodeInfo(m, roles))
		delete(roles, m.Name)
	}
	for id, role := range roles {
		out = append(out, NodeInfo{Member: Member{Name: id, Status: "unknown"}, Role: role})
	}
	return out
}

func (c *Cluster) nodeInfo(m Member, roles map[string]string) NodeInfo {
	n := NodeInfo{Member: m, Role: roles[m.Name], Healthy: m.Status == StatusAlive}
	if n.Role == "" {
		n.Role = "none"
	}
	if h, known := c.pilot.health(m.Name); known && c.raft.State() == raft.Leader {
		n.Healthy = n.Healthy && h
	}
	return n
}

// AliveMembers lists the members gossip reports alive and not leaving, this
// node included: the peers other subsystems (transfer) should talk to.
func (c *Cluster) AliveMembers() []Member {
	var out []Member
	for _, m := range c.reg.alive() {
		if !m.Leaving() {
			out = append(out, m)
		}
	}
	return out
}
