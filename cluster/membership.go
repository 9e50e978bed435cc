package cluster

import (
	"encoding/json"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberStatus is what gossip last said about a node.
type MemberStatus string

const (
	StatusAlive  MemberStatus = "alive"
	StatusFailed MemberStatus = "failed" // stopped answering probes
	StatusLeft   MemberStatus = "left"   // said goodbye (graceful shutdown)
)

// Metadata keys every server puts in its gossip metadata.
const (
	MetaRaft = "raft"
	MetaHTTP = "http"
	// MetaLeaving is set by a node that is shutting down gracefully, just
	// before it leaves: memberlist's leave event does not say whether the
	// node left or died, the last metadata it gossiped does.
	MetaLeaving = "leaving"
)

// Member is one node as gossip knows it. Failed and left nodes stay in the
// registry: autopilot must see them, otherwise it treats a dead voter as
// unknown and refuses to remove it (see shared dependency notes).
type Member struct {
	Name       string            `json:"name"`
	GossipAddr string            `json:"gossip_addr"`
	Meta       map[string]string `json:"meta"`
	Status     MemberStatus      `json:"status"`
	Since      time.Time         `json:"since"`
}

func (m Member) RaftAddr() string { return m.Meta[MetaRaft] }
func (m Member) HTTPAddr() string { return m.Meta[MetaHTTP] }

// Leaving: the node announced a graceful shutdown.
func (m Member) Leaving() bool { return m.Meta[MetaLeaving] != "" }

// registry is fed by memberlist events and read by the voter manager, the
// write forwarder and the API.
type registry struct {
	mu      sync.RWMutex
	members map[string]*Member
	// left records graceful leaves the leader carried out, so that it does
	// not re-add a leaver that gossip still shows alive for a moment.
	left    map[string]time.Time
	changed chan struct{} // poked (non-blocking) on every change
	log     *slog.Logger
}

func newRegistry(log *slog.Logger) *registry {
	return &registry{members: map[string]*Member{}, left: map[string]time.Time{}, changed: make(chan struct{}, 1), log: log}
}

func (r *registry) set(n *memberlist.Node, status MemberStatus) {
	meta := map[string]string{}
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &meta); err != nil {
			r.log.Warn("ignoring member with unreadable metadata", "member", n.Name, "err", err)
			return
		}
	}
	r.mu.Lock()
	old, ok := r.members[n.Name]
	m := &Member{Name: n.Name, GossipAddr: n.Address(), Meta: meta, Status: status, Since: time.Now()}
	if ok && old.Status == status {
		m.Since = old.Since
	}
	r.members[n.Name] = m
	r.mu.Unlock()
	if !ok || old.Status != status {
		r.log.Info("member "+string(status), "member", n.Name, "addr", n.Address())
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *registry) get(name string) (Member, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.members[name]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

func (r *registry) list() []Member {
	r.mu.RLock()
	out := make([]Member, 0, len(r.members))
	for _, m := range r.members {
		out = append(out, *m)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (r *registry) alive() []Member {
	var out []Member
	for _, m := range r.list() {
		if m.Status == StatusAlive {
			out = append(out, m)
		}
	}
	return out
}

// leaveWindow is how long a graceful leaver is not re-added unless gossip
// shows it coming back (a status change after the leave).
const leaveWindow = 30 * time.Second

func (r *registry) markLeft(name string) {
	r.mu.Lock()
	r.left[name] = time.Now()
	r.mu.Unlock()
}

// recentlyLeft: m left gracefully and has not been seen rejoining since.
func (r *registry) recentlyLeft(m Member) bool {
	r.mu.RLock()
	at, ok := r.left[m.Name]
	r.mu.RUnlock()
	return ok && time.Since(at) < leaveWindow && !m.Since.After(at)
}

// events adapts memberlist's callbacks to the registry.
type events struct{ reg *registry }

func (e events) NotifyJoin(n *memberlist.Node)   { e.reg.set(n, StatusAlive) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.reg.set(n, StatusAlive) }

// NotifyLeave cannot use n.State: memberlist v0.7.0 records left/dead in
// its private node state, not in the Node it hands out.
func (e events) NotifyLeave(n *memberlist.Node) {
	meta := map[string]string{}
	json.Unmarshal(n.Meta, &meta)
	if meta[MetaLeaving] != "" {
		e.reg.set(n, StatusLeft)
		return
	}
	e.reg.set(n, StatusFailed)
}

// delegate publishes this node's metadata; shoal gossips nothing else.
type delegate struct {
	mu   sync.Mutex
	meta map[string]string
}

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, err := json.Marshal(d.meta)
	if err != nil || len(b) > limit {
		return nil
	}
	return b
}

func (d *delegate) setMeta(k, v string) {
	d.mu.Lock()
	d.meta[k] = v
	d.mu.Unlock()
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}
