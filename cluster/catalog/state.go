package catalog

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
)

// content is the catalogue proper, keyed by each entity's identity. It has
// no lock of its own; State guards it.
type content struct {
	groups  map[string]Group  // by name
	clients map[string]Client // by canonical MAC
	images  map[string]Image  // by name
	nodes   map[string]Node   // by ID
	leases  map[string]Lease  // by canonical MAC
	// leaseIPs indexes leases by address (see ipNum). It is derived from
	// leases, never snapshotted, and kept in step only by setLease and
	// dropLease.
	leaseIPs map[uint32]leaseSlot
}

// leaseSlot is what the address index knows of a lease: enough to judge
// whether the address is free without touching the lease table, which
// keeps a scan of a large, full pool to one map lookup per address.
type leaseSlot struct {
	mac     string
	expires int64
}

func newContent() content {
	return content{
		groups:   map[string]Group{},
		clients:  map[string]Client{},
		images:   map[string]Image{},
		nodes:    map[string]Node{},
		leases:   map[string]Lease{},
		leaseIPs: map[uint32]leaseSlot{},
	}
}

// checkGroup validates g and the image and version it references. A missing
// image or version is ErrInvalid, not ErrNotFound: the group is the subject
// of the request, the image only one of its values.
func (c *content) checkGroup(g Group) error {
	if err := g.validateFields(); err != nil {
		return err
	}
	if g.Image == "" {
		return nil
	}
	im, ok := c.images[g.Image]
	if !ok {
		return fmt.Errorf("group %q: unknown image %q: %w", g.Name, g.Image, ErrInvalid)
	}
	if g.Version != "" && im.version(g.Version) < 0 {
		return fmt.Errorf("group %q: image %q has no version %s: %w", g.Name, g.Image, g.Version, ErrInvalid)
	}
	return nil
}

// checkClient validates cl, that its group exists and that no other client
// already uses its hostname or IP.
func (c *content) checkClient(cl Client) error {
	if err := c.checkClientRefs(cl); err != nil {
		return err
	}
	if other, ok := c.firstClient(func(o Client) bool { return o.MAC != cl.MAC && o.Hostname == cl.Hostname }); ok {
		return hostnameTaken(cl, other)
	}
	if cl.IP == "" {
		return nil
	}
	if other, ok := c.firstClient(func(o Client) bool { return o.MAC != cl.MAC && o.IP == cl.IP }); ok {
		return ipTaken(cl, other)
	}
	return nil
}

// checkClientRefs validates cl on its own and that its group exists.
func (c *content) checkClientRefs(cl Client) error {
	if err := cl.validateFields(); err != nil {
		return err
	}
	if _, ok := c.groups[cl.Group]; !ok {
		return fmt.Errorf("client %s: unknown group %q: %w", cl.MAC, show(cl.Group), ErrInvalid)
	}
	return nil
}

func hostnameTaken(cl Client, other string) error {
	return fmt.Errorf("client %s: hostname %q already used by %s: %w", cl.MAC, cl.Hostname, other, ErrConflict)
}

func ipTaken(cl Client, other string) error {
	return fmt.Errorf("client %s: ip %s already used by %s: %w", cl.MAC, cl.IP, other, ErrConflict)
}

// findGroup, findImage and findVersion resolve the subject of a command:
// a malformed reference is ErrInvalid, a well-formed but absent one ErrNotFound.

func (c *content) findGroup(name string) error {
	if err := validateName("group", name); err != nil {
		return err
	}
	if _, ok := c.groups[name]; !ok {
		return fmt.Errorf("group %q not found: %w", name, ErrNotFound)
	}
	return nil
}

func (c *content) findImage(name string) error {
	if err := validateName("image", name); err != nil {
		return err
	}
	if _, ok := c.images[name]; !ok {
		return fmt.Errorf("image %q not found: %w", name, ErrNotFound)
	}
	return nil
}

func (c *content) findVersion(r ImageVersionRef) (Image, error) {
	if err := c.findImage(r.Image); err != nil {
		return Image{}, err
	}
	if err := validateHex64("version", r.Version, false); err != nil {
		return Image{}, fmt.Errorf("image %q: %w", r.Image, err)
	}
	im := c.images[r.Image]
	if im.version(r.Version) < 0 {
		return Image{}, fmt.Errorf("image %q has no version %s: %w", r.Image, r.Version, ErrNotFound)
	}
	return im, nil
}

// firstGroup returns the smallest name of a group matching pred. Choosing the
// smallest rather than the first in map order keeps error messages identical
// on every replica and every run.
func (c *content) firstGroup(pred func(Group) bool) (string, bool) {
	return firstKey(c.groups, pred)
}

// firstClient returns the smallest MAC of a client matching pred.
func (c *content) firstClient(pred func(Client) bool) (string, bool) {
	return firstKey(c.clients, pred)
}

func firstKey[V any](m map[string]V, pred func(V) bool) (string, bool) {
	best, found := "", false
	for k, v := range m {
		if pred(v) && (!found || k < best) {
			best, found = k, true
		}
	}
	return best, found
}

// clientsOf counts the clients in group and returns the smallest MAC among them.
func (c *content) clientsOf(group string) (n int, first string) {
	first, _ = c.firstClient(func(cl Client) bool { return cl.Group == group })
	for _, cl := range c.clients {
		if cl.Group == group {
			n++
		}
	}
	return n, first
}

// leaseNum returns the index key of a stored lease's address.
func leaseNum(l Lease) uint32 { return ipNum(netip.MustParseAddr(l.IP)) }

// setLease records l as its MAC's only lease. The caller has made sure no
// other MAC holds its address.
func (c *content) setLease(l Lease) {
	if old, ok := c.leases[l.MAC]; ok {
		delete(c.leaseIPs, leaseNum(old))
	}
	c.leases[l.MAC] = l
	c.leaseIPs[leaseNum(l)] = leaseSlot{mac: l.MAC, expires: l.Expires}
}

// dropLease removes mac's lease, if any.
func (c *content) dropLease(mac string) {
	if old, ok := c.leases[mac]; ok {
		delete(c.leaseIPs, leaseNum(old))
		delete(c.leases, mac)
	}
}

// fixedIPs returns the set of clients' fixed addresses inside r. Scanning
// the clients once per acquire keeps client commands free of lease
// bookkeeping; the result is a set, so map order cannot leak out of it.
func (c *content) fixedIPs(r ipRange) map[uint32]bool {
	fixed := map[uint32]bool{}
	for _, cl := range c.clients {
		if cl.IP == "" {
			continue
		}
		if n := ipNum(netip.MustParseAddr(cl.IP)); r.first <= n && n <= r.last {
			fixed[n] = true
		}
	}
	return fixed
}

// pickLease chooses the address mac gets from r at now, or reports that the
// pool is full. In order: mac's own lease, if its address is in r and is not
// (now) a client's fixed address, even if it has expired; the requested
// address, if in r and free; the lowest free address of r. An address is
// free if it is no client's fixed address and not leased to another MAC
// with Expires > now. The scan walks addresses in numeric order with one
// or two map lookups each, so it is O(size of r) at worst and deterministic.
func (c *content) pickLease(mac string, r ipRange, requested netip.Addr, fixed map[uint32]bool, now int64) (netip.Addr, bool) {
	if l, ok := c.leases[mac]; ok {
		if n := leaseNum(l); r.first <= n && n <= r.last && !fixed[n] {
			return numIP(n), true
		}
	}
	// From here on mac's own lease, if any, is outside r or on a fixed
	// address, so every lease met in r belongs to another MAC.
	free := func(n uint32) bool {
		if len(fixed) > 0 && fixed[n] {
			return false
		}
		slot, leased := c.leaseIPs[n]
		return !leased || slot.expires <= now
	}
	if r.contains(requested) && free(ipNum(requested)) {
		return requested, true
	}
	for n := r.first; ; n++ {
		if free(n) {
			return numIP(n), true
		}
		if n == r.last {
			return netip.Addr{}, false
		}
	}
}

// sortedLeases returns all leases ordered by address, numerically (so
// 10.0.0.20 sorts before 10.0.0.100). No two leases share an address, so
// this is also the order by address then MAC.
func (c *content) sortedLeases() []Lease {
	out := make([]Lease, 0, len(c.leases))
	for _, n := range slices.Sorted(maps.Keys(c.leaseIPs)) {
		out = append(out, c.leases[c.leaseIPs[n].mac])
	}
	return out
}

// State is the replicated catalogue plus the Raft index it reflects. The zero
// value is not usable; call New.
type State struct {
	mu      sync.RWMutex
	cat     content
	applied uint64
}

// New returns an empty catalogue at applied index 0.
func New() *State {
	return &State{cat: newContent()}
}

// Validate reports whether Apply(c) would succeed on the current state,
// returning the error it would return. It never mutates the state, so a
// leader can reject a bad request before it enters the log.
func (s *State) Validate(c Command) error {
	op, err := c.decode()
	if err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return op.check(&s.cat)
}

// Apply normalises, validates and applies c atomically. On error the state
// is unchanged. The result depends only on the state and c (never on the
// wall clock), so every replica reaches the same state.
func (s *State) Apply(c Command) error {
	op, err := c.decode()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := op.check(&s.cat); err != nil {
		return err
	}
	op.apply(&s.cat, c.At)
	return nil
}

// AppliedIndex returns the Raft log index last recorded with SetAppliedIndex.
func (s *State) AppliedIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// SetAppliedIndex records the Raft log index the state reflects. It is saved
// in snapshots but excluded from Digest, since replicas that agree on content
// may have applied it at different indexes (e.g. after no-op entries).
func (s *State) SetAppliedIndex(i uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = i
}

// Groups returns all groups sorted by name.
func (s *State) Groups() []Group {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedValues(s.cat.groups, Group.clone)
}

// Group returns the group with the given name.
func (s *State) Group(name string) (Group, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g, ok := s.cat.groups[name]
	return g.clone(), ok
}

// Clients returns all clients sorted by MAC.
func (s *State) Clients() []Client {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedValues(s.cat.clients, identity[Client])
}

// Client returns the client with the given MAC, in any notation NormalizeMAC
// accepts. An unparsable MAC is simply not found.
func (s *State) Client(mac string) (Client, bool) {
	key, err := NormalizeMAC(mac)
	if err != nil {
		return Client{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	cl, ok := s.cat.clients[key]
	return cl, ok
}

// ClientsInGroup returns the clients of the named group sorted by MAC.
func (s *State) ClientsInGroup(name string) []Client {
	out := []Client{}
	for _, cl := range s.Clients() {
		if cl.Group == name {
			out = append(out, cl)
		}
	}
	return out
}

// Images returns all images sorted by name; versions stay in the order added.
func (s *State) Images() []Image {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedValues(s.cat.images, Image.clone)
}

// Image returns the image with the given name.
func (s *State) Image(name string) (Image, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	im, ok := s.cat.images[name]
	return im.clone(), ok
}

// Nodes returns all nodes sorted by ID.
func (s *State) Nodes() []Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedValues(s.cat.nodes, identity[Node])
}

// Node returns the node with the given ID.
func (s *State) Node(id string) (Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n, ok := s.cat.nodes[id]
	return n, ok
}

// Lease returns the lease held by mac, in any notation NormalizeMAC
// accepts, whether or not it has expired: compare Expires with the time
// that matters to the caller. An unparsable MAC is simply not found.
func (s *State) Lease(mac string) (Lease, bool) {
	key, err := NormalizeMAC(mac)
	if err != nil {
		return Lease{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.cat.leases[key]
	return l, ok
}

// Leases returns all leases, expired ones included, sorted by address
// (numerically) then MAC.
func (s *State) Leases() []Lease {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cat.sortedLeases()
}

// LeaseByIP returns the lease of the IPv4 address ip, expired or not. An
// unparsable address is simply not found.
func (s *State) LeaseByIP(ip string) (Lease, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return Lease{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	slot, ok := s.cat.leaseIPs[ipNum(a)]
	if !ok {
		return Lease{}, false
	}
	return s.cat.leases[slot.mac], true
}

// Counts returns the number of groups, clients, images and nodes.
func (s *State) Counts() (groups, clients, images, nodes int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.cat.groups), len(s.cat.clients), len(s.cat.images), len(s.cat.nodes)
}

// sortedValues returns deep copies of m's values ordered by key. The result
// is never nil so that it encodes as [] and compares equal when empty.
func sortedValues[V any](m map[string]V, clone func(V) V) []V {
	out := make([]V, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, clone(m[k]))
	}
	return out
}
