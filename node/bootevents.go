package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-project/shoal/bootsvc"
	"github.com/shoal-project/shoal/cluster/catalog"
)

// bootEvents remembers, per MAC, the last boot steps this node served.
// It is local and in memory on purpose: a boot storm must not turn into
// Raft writes, and any node may answer any step. `client show` asks every
// live node and merges (lastBoot).
type bootEvents struct {
	self string
	// known says whether a MAC is a catalogue client: only those get their
	// own metric series, so forged MACs cannot grow /metrics.
	known   func(mac string) bool
	mu      sync.Mutex
	byMAC   map[string]*BootRecord
	counter *prometheus.CounterVec
	peers   *prometheus.CounterVec
}

// maxBootRecords bounds the memory a flood of forged MACs can take; the
// oldest records go first.
const maxBootRecords = 10000

// BootRecord is the last boot of one machine as one node saw it.
type BootRecord struct {
	MAC  string `json:"mac"`
	Node string `json:"node"`
	// Steps maps a step ("dhcp-offer", "dhcp-ack", "script", "kernel",
	// "initrd") to when it last happened.
	Steps  map[string]time.Time `json:"steps"`
	Last   time.Time            `json:"last"`
	LastOf string               `json:"last_step"`
	IP     string               `json:"ip,omitempty"`
	Arch   string               `json:"arch,omitempty"`
	Detail string               `json:"detail,omitempty"`
}

func newBootEvents(self string, known func(string) bool, reg prometheus.Registerer) *bootEvents {
	e := &bootEvents{self: self, known: known, byMAC: map[string]*BootRecord{}}
	e.counter = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_boot_events_total",
		Help: "Boot steps served by this node, per client MAC (empty for MACs the catalogue does not know): dhcp-offer, dhcp-ack, dhcp-nak, dhcp-ignore (with reason), script, kernel, initrd, agent, fetched; result is the reason or HTTP status.",
	}, []string{"mac", "event", "result"})
	e.peers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_boot_fetch_peers_total",
		Help: "Peers that sent image pieces to diskless agents, as the agents reported after their fetch: kind server or client (another machine).",
	}, []string{"kind"})
	reg.MustRegister(e.counter, e.peers)
	return e
}

// dhcp records a DHCP decision. Ignored packets from machines that are not
// ours (not PXE, unknown MAC under "ignore") are counted without a MAC so
// an office network's chatter cannot grow the metric without bound.
func (e *bootEvents) dhcp(d bootsvc.Decision) {
	if d.MAC == "" {
		return
	}
	if d.Action == bootsvc.ActionIgnore {
		switch d.Reason {
		case bootsvc.ReasonNotPXE, bootsvc.ReasonUnknownMAC, bootsvc.ReasonMalformed, bootsvc.ReasonOtherServer, bootsvc.ReasonMessageType:
			e.counter.WithLabelValues("", "dhcp-ignore", string(d.Reason)).Inc()
			return
		}
	}
	e.update(d.MAC, "dhcp-"+string(d.Action), string(d.Reason), func(r *BootRecord) {
		if d.IP != "" {
			r.IP = d.IP
		}
		r.Arch, r.Detail = d.Arch, d.Detail
	})
}

// record is an HTTP step (script, kernel, initrd) with its status code.
func (e *bootEvents) record(mac, step, result, remote string) {
	e.update(mac, step, result, func(r *BootRecord) {
		if r.IP == "" {
			r.IP = remote
		}
	})
}

func (e *bootEvents) update(mac, step, result string, f func(*BootRecord)) {
	label := mac
	if e.known != nil && !e.known(mac) {
		label = ""
	}
	e.counter.WithLabelValues(label, step, result).Inc()
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.byMAC[mac]
	if !ok {
		if len(e.byMAC) >= maxBootRecords {
			e.evictOldest()
		}
		r = &BootRecord{MAC: mac, Node: e.self, Steps: map[string]time.Time{}}
		e.byMAC[mac] = r
	}
	r.Steps[step], r.Last, r.LastOf = now, now, step
	f(r)
}

func (e *bootEvents) evictOldest() {
	var old string
	var t time.Time
	for m, r := range e.byMAC {
		if old == "" || r.Last.Before(t) {
			old, t = m, r.Last
		}
	}
	delete(e.byMAC, old)
}

func (e *bootEvents) get(mac string) (BootRecord, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.byMAC[mac]
	if !ok {
		return BootRecord{}, false
	}
	c := *r
	c.Steps = make(map[string]time.Time, len(r.Steps))
	for k, v := range r.Steps {
		c.Steps[k] = v
	}
	return c, true
}

// localBoot serves GET /v1/boot/last/{mac}: this node's record only.
func (a *api) localBoot(r *http.Request) (int, any, error) {
	mac, err := catalog.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		return 0, nil, err
	}
	rec, ok := a.boot.events.get(mac)
	return found(rec, ok)("boot record", mac)
}

// lastBoot asks every live node for its record of mac and returns them,
// most recent first: the machine's last boot across the cluster, step by
// step, with the node that served each.
func (a *api) lastBoot(ctx context.Context, mac string) []BootRecord {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := []BootRecord{}
	for _, m := range a.cl.AliveMembers() {
		wg.Go(func() {
			var rec BootRecord
			if err := getJSON(ctx, "http://"+m.HTTPAddr()+"/v1/boot/last/"+mac, &rec); err != nil {
				return
			}
			mu.Lock()
			out = append(out, rec)
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Last.After(out[j].Last) })
	return out
}

// FetchReport is what a diskless agent reports after it fetched its image
// (POST /v1/boot/report/{mac}).
type FetchReport struct {
	Image     string   `json:"image"`
	Version   string   `json:"version"`
	Seconds   float64  `json:"seconds"`
	Fetched   int64    `json:"bytes_fetched"`
	PeersUsed []string `json:"peers_used"`
}

// bootReport records an agent's fetch report: which of its peers were
// server nodes and which were other machines.
func (a *api) bootReport(r *http.Request) (int, any, error) {
	mac, err := catalog.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		return 0, nil, err
	}
	var rep FetchReport
	if err := decode(r, &rep); err != nil {
		return 0, nil, err
	}
	servers := map[string]bool{}
	addrs := []string{}
	for _, m := range a.cl.AliveMembers() {
		addrs = append(addrs, m.HTTPAddr())
	}
	for _, n := range a.cat.Nodes() { // also servers that died meanwhile
		addrs = append(addrs, n.HTTPAddr)
	}
	for _, addr := range addrs {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			servers[host] = true
		}
	}
	var fromServers, fromClients int
	for _, p := range rep.PeersUsed {
		host, _, err := net.SplitHostPort(p)
		if err != nil {
			continue
		}
		if servers[host] {
			fromServers++
		} else {
			fromClients++
		}
	}
	a.boot.events.peers.WithLabelValues("server").Add(float64(fromServers))
	a.boot.events.peers.WithLabelValues("client").Add(float64(fromClients))
	detail := fmt.Sprintf("%s@%.12s: %d MiB in %.1fs from %d servers and %d other machines", rep.Image, rep.Version, rep.Fetched>>20, rep.Seconds, fromServers, fromClients)
	a.boot.events.update(mac, "fetched", "ok", func(b *BootRecord) { b.Detail = detail })
	return http.StatusOK, map[string]any{"servers": fromServers, "clients": fromClients}, nil
}
