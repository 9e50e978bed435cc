package catalog

import (
	"fmt"
	"net/netip"
)

// operation is one decoded command. check must detect every failure, because
// apply is called only after check passed and must not fail: that is what
// makes State.Apply all-or-nothing and State.Validate agree with it.
type operation interface {
	body() any        // pointer the JSON body is decoded into
	normalize() error // canonicalise the decoded body in place
	check(*content) error
	apply(c *content, at int64)
}

// clocked is implemented by operations whose rules depend on the time
// (lease expiry). decode hands them Command.At before check runs, so check
// judges at the same instant apply records; it is the only clock they see.
type clocked interface{ setNow(at int64) }

// Body holders shared by the operations that take the same body type.

type groupBody struct{ g Group }

func (o *groupBody) body() any { return &o.g }

// normalize defaults the boot mode on update as well as create: update
// replaces all fields, so an omitted boot mode means the default, not "keep".
func (o *groupBody) normalize() error {
	if o.g.BootMode == "" {
		o.g.BootMode = BootDisklessRAM
	}
	if len(o.g.StatePaths) == 0 {
		o.g.StatePaths = nil
	}
	return nil
}

type clientBody struct{ cl Client }

func (o *clientBody) body() any { return &o.cl }

func (o *clientBody) normalize() error {
	return normalizeClient(&o.cl)
}

// normalizeClient canonicalises the MAC and lower-cases the hostname. It
// leaves other fields alone so that validation can name the bad value.
func normalizeClient(cl *Client) error {
	mac, err := NormalizeMAC(cl.MAC)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	cl.MAC = mac
	cl.Hostname = toLowerASCII(cl.Hostname)
	return nil
}

type nameBody struct{ r NameRef }

func (o *nameBody) body() any        { return &o.r }
func (o *nameBody) normalize() error { return nil }

type macBody struct{ r MACRef }

func (o *macBody) body() any { return &o.r }

func (o *macBody) normalize() error {
	mac, err := NormalizeMAC(o.r.MAC)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	o.r.MAC = mac
	return nil
}

type versionRefBody struct{ r ImageVersionRef }

func (o *versionRefBody) body() any        { return &o.r }
func (o *versionRefBody) normalize() error { return nil }

// group.create

type groupCreate struct{ groupBody }

func (o *groupCreate) check(c *content) error {
	if err := c.checkGroup(o.g); err != nil {
		return err
	}
	if _, ok := c.groups[o.g.Name]; ok {
		return fmt.Errorf("group %q already exists: %w", o.g.Name, ErrConflict)
	}
	return nil
}

func (o *groupCreate) apply(c *content, _ int64) { c.groups[o.g.Name] = o.g }

// group.update

type groupUpdate struct{ groupBody }

func (o *groupUpdate) check(c *content) error {
	if err := c.checkGroup(o.g); err != nil {
		return err
	}
	if _, ok := c.groups[o.g.Name]; !ok {
		return fmt.Errorf("group %q not found: %w", o.g.Name, ErrNotFound)
	}
	return nil
}

func (o *groupUpdate) apply(c *content, _ int64) { c.groups[o.g.Name] = o.g }

// group.delete

type groupDelete struct{ nameBody }

func (o *groupDelete) check(c *content) error {
	if err := c.findGroup(o.r.Name); err != nil {
		return err
	}
	n, first := c.clientsOf(o.r.Name)
	if n > 0 {
		return fmt.Errorf("group %q still has %d client(s), e.g. %s; move or delete them first: %w",
			o.r.Name, n, first, ErrConflict)
	}
	return nil
}

func (o *groupDelete) apply(c *content, _ int64) { delete(c.groups, o.r.Name) }

// client.create

type clientCreate struct{ clientBody }

func (o *clientCreate) check(c *content) error {
	if err := c.checkClient(o.cl); err != nil {
		return err
	}
	if _, ok := c.clients[o.cl.MAC]; ok {
		return fmt.Errorf("client %s already exists: %w", o.cl.MAC, ErrConflict)
	}
	return nil
}

func (o *clientCreate) apply(c *content, at int64) {
	o.cl.Created, o.cl.Updated = at, at
	c.clients[o.cl.MAC] = o.cl
}

// client.update

type clientUpdate struct{ clientBody }

func (o *clientUpdate) check(c *content) error {
	if err := c.checkClient(o.cl); err != nil {
		return err
	}
	if _, ok := c.clients[o.cl.MAC]; !ok {
		return fmt.Errorf("client %s not found: %w", o.cl.MAC, ErrNotFound)
	}
	return nil
}

func (o *clientUpdate) apply(c *content, at int64) {
	o.cl.Created, o.cl.Updated = c.clients[o.cl.MAC].Created, at
	c.clients[o.cl.MAC] = o.cl
}

// client.delete

type clientDelete struct{ macBody }

func (o *clientDelete) check(c *content) error {
	if _, ok := c.clients[o.r.MAC]; !ok {
		return fmt.Errorf("client %s not found: %w", o.r.MAC, ErrNotFound)
	}
	return nil
}

func (o *clientDelete) apply(c *content, _ int64) { delete(c.clients, o.r.MAC) }

// image.version.add

type imageVersionAdd struct{ a ImageVersionAdd }

func (o *imageVersionAdd) body() any        { return &o.a }
func (o *imageVersionAdd) normalize() error { return nil }

func (o *imageVersionAdd) check(c *content) error {
	if err := validateName("image", o.a.Image); err != nil {
		return err
	}
	if err := o.a.Version.validateFields(); err != nil {
		return fmt.Errorf("image %q: %w", o.a.Image, err)
	}
	if im, ok := c.images[o.a.Image]; ok && im.version(o.a.Version.ID) >= 0 {
		return fmt.Errorf("image %q already has version %s: %w", o.a.Image, o.a.Version.ID, ErrConflict)
	}
	return nil
}

// apply appends the version; it becomes current when asked to or when the
// image has no current version yet (its first version).
func (o *imageVersionAdd) apply(c *content, at int64) {
	im, ok := c.images[o.a.Image]
	if !ok {
		im = Image{Name: o.a.Image}
	}
	v := o.a.Version
	v.Created = at
	im.Versions = append(im.Versions, v)
	if o.a.Activate || im.Current == "" {
		im.Current = v.ID
	}
	c.images[o.a.Image] = im
}

// image.version.remove

type imageVersionRemove struct{ versionRefBody }

// check refuses to remove a version a group pins, and the current version
// unless it is the image's only version and no group uses the image (so
// removing it, which deletes the image, strands nobody).
func (o *imageVersionRemove) check(c *content) error {
	im, err := c.findVersion(o.r)
	if err != nil {
		return err
	}
	name, id := o.r.Image, o.r.Version
	if g, ok := c.firstGroup(func(g Group) bool { return g.Image == name && g.Version == id }); ok {
		return fmt.Errorf("image %q version %s is pinned by group %q: %w", name, id, g, ErrConflict)
	}
	if id != im.Current {
		return nil
	}
	if len(im.Versions) > 1 {
		return fmt.Errorf("image %q version %s is current; activate another version first: %w", name, id, ErrConflict)
	}
	if g, ok := c.firstGroup(func(g Group) bool { return g.Image == name }); ok {
		return fmt.Errorf("image %q version %s is its last version and group %q uses the image: %w", name, id, g, ErrConflict)
	}
	return nil
}

func (o *imageVersionRemove) apply(c *content, _ int64) {
	im := c.images[o.r.Image]
	if len(im.Versions) == 1 {
		delete(c.images, o.r.Image)
		return
	}
	i := im.version(o.r.Version)
	// Build a new slice rather than splice in place, so no earlier copy of
	// the stored Image can observe the removal through a shared array.
	im.Versions = append(append([]ImageVersion(nil), im.Versions[:i]...), im.Versions[i+1:]...)
	c.images[o.r.Image] = im
}

// image.activate

type imageActivate struct{ versionRefBody }

func (o *imageActivate) check(c *content) error {
	_, err := c.findVersion(o.r)
	return err
}

func (o *imageActivate) apply(c *content, _ int64) {
	im := c.images[o.r.Image]
	im.Current = o.r.Version
	c.images[o.r.Image] = im
}

// image.delete

type imageDelete struct{ nameBody }

func (o *imageDelete) check(c *content) error {
	if err := c.findImage(o.r.Name); err != nil {
		return err
	}
	if g, ok := c.firstGroup(func(g Group) bool { return g.Image == o.r.Name }); ok {
		return fmt.Errorf("image %q is used by group %q: %w", o.r.Name, g, ErrConflict)
	}
	return nil
}

func (o *imageDelete) apply(c *content, _ int64) { delete(c.images, o.r.Name) }

// node.upsert

// nodeUpsert does not enforce unique addresses across nodes: the spec does
// not ask for it, and a rebuilt node may legitimately rejoin under a new ID
// at its old address before the old entry is removed.
type nodeUpsert struct{ n Node }

func (o *nodeUpsert) body() any                 { return &o.n }
func (o *nodeUpsert) normalize() error          { return nil }
func (o *nodeUpsert) check(*content) error      { return o.n.validateFields() }
func (o *nodeUpsert) apply(c *content, _ int64) { c.nodes[o.n.ID] = o.n }

// node.remove

type nodeRemove struct{ nameBody }

func (o *nodeRemove) check(c *content) error {
	if err := validateName("node", o.r.Name); err != nil {
		return err
	}
	if _, ok := c.nodes[o.r.Name]; !ok {
		return fmt.Errorf("node %q not found: %w", o.r.Name, ErrNotFound)
	}
	return nil
}

func (o *nodeRemove) apply(c *content, _ int64) { delete(c.nodes, o.r.Name) }

// lease.acquire

// leaseAcquire chooses the address in check, which Apply runs under the same
// lock right before apply, and apply records that choice. Validate runs check
// alone and discards it; an entry's choice is always remade where it is
// applied, against the state every replica has at that point of the log.
type leaseAcquire struct {
	a   LeaseAcquire
	now int64
	ip  netip.Addr // chosen by check
}

func (o *leaseAcquire) body() any       { return &o.a }
func (o *leaseAcquire) setNow(at int64) { o.now = at }

func (o *leaseAcquire) normalize() error {
	mac, err := NormalizeMAC(o.a.MAC)
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	o.a.MAC = mac
	return nil
}

func (o *leaseAcquire) check(c *content) error {
	r, requested, err := o.a.validateFields(o.now)
	if err != nil {
		return err
	}
	mac := o.a.MAC
	if cl, ok := c.clients[mac]; ok && cl.IP != "" {
		return fmt.Errorf("client %s (%s) has a fixed address %s and gets no dynamic lease: %w", mac, cl.Hostname, cl.IP, ErrConflict)
	}
	fixed := c.fixedIPs(r)
	ip, ok := c.pickLease(mac, r, requested, fixed, o.now)
	if !ok {
		return fmt.Errorf("lease for %s: lease pool exhausted: %d addresses in use in %s (%d fixed client addresses, %d unexpired leases): %w",
			mac, r.size(), r, len(fixed), r.size()-int64(len(fixed)), ErrConflict)
	}
	o.ip = ip
	return nil
}

// apply grants or renews the lease. Taking over another MAC's expired lease
// removes that MAC's record, so every address has at most one lease.
func (o *leaseAcquire) apply(c *content, at int64) {
	if slot, ok := c.leaseIPs[ipNum(o.ip)]; ok && slot.mac != o.a.MAC {
		c.dropLease(slot.mac)
	}
	c.setLease(Lease{MAC: o.a.MAC, IP: o.ip.String(), Expires: at + o.a.Duration, Updated: at})
}

// lease.release

type leaseRelease struct{ r MACRef }

func (o *leaseRelease) body() any { return &o.r }

func (o *leaseRelease) normalize() error {
	mac, err := NormalizeMAC(o.r.MAC)
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	o.r.MAC = mac
	return nil
}

func (o *leaseRelease) check(c *content) error {
	if _, ok := c.leases[o.r.MAC]; !ok {
		return fmt.Errorf("no lease for %s: %w", o.r.MAC, ErrNotFound)
	}
	return nil
}

func (o *leaseRelease) apply(c *content, _ int64) { c.dropLease(o.r.MAC) }

// toLowerASCII lower-cases only A-Z. strings.ToLower would also fold
// non-ASCII letters (e.g. the Kelvin sign to "k"), letting a hostile name
// sneak past the RFC 1123 check that follows.
func toLowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
