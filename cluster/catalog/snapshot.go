package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// snapshotVersion is the version of the Snapshot format, independent of
// CommandVersion because the two evolve separately.
const snapshotVersion = 1

// snapshotDoc is the Snapshot wire format.
type snapshotDoc struct {
	V            int        `json:"v"`
	AppliedIndex uint64     `json:"applied_index"`
	Catalog      catalogDoc `json:"catalog"`
}

// catalogDoc is the canonical form of the catalogue: every list sorted by
// key and never null, so equal content always encodes to equal bytes.
//
// Leases came later and are omitted when there are none, so a catalogue
// without leases encodes (and digests) exactly as it did before leases
// existed, and snapshots from before leases, which lack the field, restore
// as having none.
type catalogDoc struct {
	Groups  []Group  `json:"groups"`
	Clients []Client `json:"clients"`
	Images  []Image  `json:"images"`
	Nodes   []Node   `json:"nodes"`
	Leases  []Lease  `json:"leases,omitempty"` // sorted by address
}

func (c *content) export() catalogDoc {
	return catalogDoc{
		Groups:  sortedValues(c.groups, Group.clone),
		Clients: sortedValues(c.clients, identity[Client]),
		Images:  sortedValues(c.images, Image.clone),
		Nodes:   sortedValues(c.nodes, identity[Node]),
		Leases:  c.sortedLeases(),
	}
}

// Snapshot returns the canonical JSON encoding of the whole catalogue and
// the applied index. Equal states produce byte-identical snapshots.
func (s *State) Snapshot() ([]byte, error) {
	s.mu.RLock()
	doc := snapshotDoc{V: snapshotVersion, AppliedIndex: s.applied, Catalog: s.cat.export()}
	s.mu.RUnlock()
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding snapshot: %w", err)
	}
	return b, nil
}

// Digest returns the hex SHA-256 of the canonical catalogue content,
// excluding the applied index, so replicas can compare content cheaply.
func (s *State) Digest() string {
	s.mu.RLock()
	doc := s.cat.export()
	s.mu.RUnlock()
	b, err := json.Marshal(doc)
	if err != nil {
		// Unreachable: the document holds only strings, integers, bools and
		// slices of them. Panicking beats returning a digest that would make
		// diverged replicas look equal.
		panic("catalog: encoding digest: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Restore replaces the whole state with a snapshot produced by Snapshot.
// The snapshot is checked as thoroughly as commands are (field rules,
// references, uniqueness, and each image having a valid current version);
// any error wraps ErrInvalid and leaves the state unchanged.
func (s *State) Restore(b []byte) error {
	doc, err := decodeSnapshot(b)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	cat, err := loadContent(doc.Catalog)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cat, s.applied = cat, doc.AppliedIndex
	return nil
}

// decodeSnapshot checks the format version before decoding strictly, so a
// snapshot from a newer shoal is reported as such rather than as an
// unknown field.
func decodeSnapshot(b []byte) (snapshotDoc, error) {
	var head struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return snapshotDoc{}, fmt.Errorf("decoding snapshot: %v: %w", err, ErrInvalid)
	}
	switch {
	case head.V > snapshotVersion:
		return snapshotDoc{}, fmt.Errorf("snapshot version %d was written by a newer shoal (this one understands %d): %w",
			head.V, snapshotVersion, ErrInvalid)
	case head.V != snapshotVersion:
		return snapshotDoc{}, fmt.Errorf("unsupported snapshot version %d (want %d): %w", head.V, snapshotVersion, ErrInvalid)
	}
	var doc snapshotDoc
	if err := decodeStrict(b, &doc); err != nil {
		return snapshotDoc{}, fmt.Errorf("decoding snapshot: %v: %w", err, ErrInvalid)
	}
	return doc, nil
}

// loadContent rebuilds a content from a decoded snapshot, in dependency
// order (images before the groups that use them, groups before clients).
// Leases depend on nothing.
func loadContent(d catalogDoc) (content, error) {
	c := newContent()
	u := uniqueClients{hostnames: map[string]string{}, ips: map[string]string{}}
	err := loadAll(d.Images, c.loadImage)
	if err == nil {
		err = loadAll(d.Groups, c.loadGroup)
	}
	if err == nil {
		err = loadAll(d.Clients, func(cl Client) error { return c.loadClient(cl, u) })
	}
	if err == nil {
		err = loadAll(d.Nodes, c.loadNode)
	}
	if err == nil {
		err = loadAll(d.Leases, c.loadLease)
	}
	return c, err
}

func loadAll[T any](items []T, load func(T) error) error {
	for _, it := range items {
		if err := load(it); err != nil {
			return err
		}
	}
	return nil
}

func (c *content) loadImage(im Image) error {
	if err := validateName("image", im.Name); err != nil {
		return err
	}
	if _, dup := c.images[im.Name]; dup {
		return fmt.Errorf("image %q appears twice: %w", im.Name, ErrInvalid)
	}
	if err := validateVersions(im.Versions); err != nil {
		return fmt.Errorf("image %q: %w", im.Name, err)
	}
	if im.version(im.Current) < 0 {
		return fmt.Errorf("image %q: current version %q is not one of its versions: %w", im.Name, show(im.Current), ErrInvalid)
	}
	c.images[im.Name] = im
	return nil
}

// validateVersions requires at least one version (an image without versions
// is deleted, never stored) and unique, valid versions.
func validateVersions(vs []ImageVersion) error {
	if len(vs) == 0 {
		return fmt.Errorf("has no versions: %w", ErrInvalid)
	}
	seen := make(map[string]bool, len(vs))
	for _, v := range vs {
		if err := v.validateFields(); err != nil {
			return err
		}
		if seen[v.ID] {
			return fmt.Errorf("version %s appears twice: %w", v.ID, ErrInvalid)
		}
		seen[v.ID] = true
	}
	return nil
}

// loadGroup normalises like a command would, so a hand-edited snapshot gets
// the same treatment as a request; for snapshots written by Snapshot it is a
// no-op.
func (c *content) loadGroup(g Group) error {
	b := groupBody{g}
	if err := b.normalize(); err != nil {
		return err
	}
	if err := c.checkGroup(b.g); err != nil {
		return err
	}
	if _, dup := c.groups[b.g.Name]; dup {
		return fmt.Errorf("group %q appears twice: %w", b.g.Name, ErrInvalid)
	}
	c.groups[b.g.Name] = b.g
	return nil
}

// uniqueClients indexes hostnames and IPs during a restore, where scanning
// all clients for each one (as checkClient does) would be quadratic.
type uniqueClients struct {
	hostnames map[string]string // hostname -> MAC
	ips       map[string]string // ip -> MAC
}

func (c *content) loadClient(cl Client, u uniqueClients) error {
	if err := normalizeClient(&cl); err != nil {
		return err
	}
	if err := c.checkClientRefs(cl); err != nil {
		return err
	}
	if _, dup := c.clients[cl.MAC]; dup {
		return fmt.Errorf("client %s appears twice: %w", cl.MAC, ErrInvalid)
	}
	if err := u.claim(cl); err != nil {
		return err
	}
	c.clients[cl.MAC] = cl
	return nil
}

// claim records cl's hostname and IP. A duplicate is ErrInvalid here, not
// ErrConflict as in a command: it means the snapshot itself is corrupt.
func (u uniqueClients) claim(cl Client) error {
	if other, taken := u.hostnames[cl.Hostname]; taken {
		return fmt.Errorf("clients %s and %s share hostname %q: %w", other, cl.MAC, cl.Hostname, ErrInvalid)
	}
	if other, taken := u.ips[cl.IP]; taken {
		return fmt.Errorf("clients %s and %s share ip %s: %w", other, cl.MAC, cl.IP, ErrInvalid)
	}
	u.hostnames[cl.Hostname] = cl.MAC
	if cl.IP != "" {
		u.ips[cl.IP] = cl.MAC
	}
	return nil
}

func (c *content) loadNode(n Node) error {
	if err := n.validateFields(); err != nil {
		return err
	}
	if _, dup := c.nodes[n.ID]; dup {
		return fmt.Errorf("node %q appears twice: %w", n.ID, ErrInvalid)
	}
	c.nodes[n.ID] = n
	return nil
}

// loadLease normalises the MAC like a command would and requires a host
// IPv4 address held by no other lease. A lease whose address has since
// become a client's fixed address, or whose MAC has since become a client
// with a fixed address, is legitimate: client commands do not touch leases,
// and the next acquire moves or refuses it.
func (c *content) loadLease(l Lease) error {
	mac, err := NormalizeMAC(l.MAC)
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	l.MAC = mac
	ip, err := parseIPv4("ip", l.IP)
	if err != nil {
		return fmt.Errorf("lease for %s: %w", mac, err)
	}
	if _, dup := c.leases[mac]; dup {
		return fmt.Errorf("lease for %s appears twice: %w", mac, ErrInvalid)
	}
	if other, taken := c.leaseIPs[ipNum(ip)]; taken {
		return fmt.Errorf("leases of %s and %s share ip %s: %w", other.mac, mac, ip, ErrInvalid)
	}
	l.IP = ip.String()
	c.setLease(l)
	return nil
}
