package catalog

import (
	"errors"
	"slices"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (test with errors.Is) so that API layers can map failures to status
// codes without parsing messages:
//
//   - ErrInvalid: the input is malformed or references something that does
//     not exist as a dependency (e.g. a client naming an unknown group); HTTP 400.
//   - ErrNotFound: the object the command operates on does not exist; HTTP 404.
//   - ErrConflict: the object already exists, is still in use, or a unique
//     value is taken by another object; HTTP 409.
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// BootMode selects how a client boots its image.
type BootMode string

// Boot modes. BootDisklessRAM is the default for a group created without one.
const (
	BootDisklessRAM BootMode = "diskless-ram"
	BootDisklessNBD BootMode = "diskless-nbd"
	BootDisk        BootMode = "disk"
)

func (m BootMode) valid() bool {
	return m == BootDisklessRAM || m == BootDisklessNBD || m == BootDisk
}

// Format is the on-disk format of an image's root filesystem.
type Format string

// Image formats.
const (
	FormatSquashfs Format = "squashfs"
	FormatExt4     Format = "ext4"
	FormatRaw      Format = "raw"
)

func (f Format) valid() bool {
	return f == FormatSquashfs || f == FormatExt4 || f == FormatRaw
}

// Valid reports whether f is a known image format.
func (f Format) Valid() bool { return f.valid() }

// ImageVersion is one immutable build of an image, identified by content.
type ImageVersion struct {
	ID          string `json:"id"`                     // content id: 64 lower-case hex (sha256 of the root image)
	Size        int64  `json:"size"`                   // bytes, >= 0
	SHA256      string `json:"sha256"`                 // 64 lower-case hex
	PieceLength int64  `json:"piece_length,omitempty"` // 0 or a power of two >= 16 KiB
	Format      Format `json:"format"`
	KernelBlob  string `json:"kernel_blob,omitempty"` // empty or 64 lower-case hex
	InitrdBlob  string `json:"initrd_blob,omitempty"` // empty or 64 lower-case hex
	Cmdline     string `json:"cmdline,omitempty"`     // kernel args, see ValidateArgs
	Note        string `json:"note,omitempty"`        // <= 256 bytes, printable
	Created     int64  `json:"created"`               // unix seconds, from Command.At
	// Blobs describes the bytes of the root image, kernel and initrd as
	// BitTorrent metainfo. Versions registered before any bytes were
	// imported (metadata only) have none.
	Blobs []Blob `json:"blobs,omitempty"`
}

// Blob is one content-addressed file (root image, kernel or initrd). Its
// piece hashes come from the catalogue, so no peer can change its bytes.
type Blob struct {
	ID          string `json:"id"`           // sha256 of the content, 64 lower-case hex
	Size        int64  `json:"size"`         // bytes
	PieceLength int64  `json:"piece_length"` // power of two >= 16 KiB
	InfoHash    string `json:"info_hash"`    // BitTorrent v1 info hash: sha1 of Info, 40 hex
	Info        []byte `json:"info"`         // bencoded BitTorrent info dictionary
}

// BlobIDs lists the version's blobs' IDs.
func (v ImageVersion) BlobIDs() []string {
	ids := make([]string, 0, len(v.Blobs))
	for _, b := range v.Blobs {
		ids = append(ids, b.ID)
	}
	return ids
}

// Blob returns the blob with id, if the version has it.
func (v ImageVersion) Blob(id string) (Blob, bool) {
	for _, b := range v.Blobs {
		if b.ID == id {
			return b, true
		}
	}
	return Blob{}, false
}

// Image is a named series of versions, one of which is current.
type Image struct {
	Name     string         `json:"name"`
	Current  string         `json:"current"`  // version id, or "" only transiently
	Versions []ImageVersion `json:"versions"` // in the order they were added
}

func (im Image) clone() Image {
	im.Versions = slices.Clone(im.Versions)
	for i := range im.Versions {
		im.Versions[i].Blobs = slices.Clone(im.Versions[i].Blobs)
	}
	return im
}

// version returns the index of the version with id, or -1.
func (im Image) version(id string) int {
	return slices.IndexFunc(im.Versions, func(v ImageVersion) bool { return v.ID == id })
}

// Group is a set of clients that boot the same image the same way.
type Group struct {
	Name       string   `json:"name"`
	Image      string   `json:"image,omitempty"`   // "" or an existing image name
	Version    string   `json:"version,omitempty"` // "" follows the image's current version; else a pinned version id
	BootMode   BootMode `json:"boot_mode"`
	KernelArgs string   `json:"kernel_args,omitempty"`
	StatePaths []string `json:"state_paths,omitempty"` // absolute, clean paths kept across reboots
}

func (g Group) clone() Group {
	g.StatePaths = slices.Clone(g.StatePaths)
	return g
}

// Client is one bootable machine, identified by its MAC address.
type Client struct {
	MAC        string `json:"mac"`      // canonical aa:bb:cc:dd:ee:ff
	Hostname   string `json:"hostname"` // RFC 1123 label, unique across clients
	Group      string `json:"group"`
	IP         string `json:"ip,omitempty"`          // optional IPv4, unique across clients
	KernelArgs string `json:"kernel_args,omitempty"` // appended after the group's kernel args
	Created    int64  `json:"created"`
	Updated    int64  `json:"updated"`
}

// Node is a member of the shoal control-plane cluster.
type Node struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"` // host:port
	HTTPAddr string `json:"http_addr"` // host:port
}

// Lease is a dynamic DHCP address held by a MAC that has no fixed address in
// the catalogue. A MAC holds at most one lease and an address is leased to
// at most one MAC. An expired lease stays recorded (its MAC renews into the
// same address) until another MAC's acquire takes the address over or the
// lease is released.
type Lease struct {
	MAC     string `json:"mac"`     // canonical aa:bb:cc:dd:ee:ff
	IP      string `json:"ip"`      // IPv4 dotted quad
	Expires int64  `json:"expires"` // unix seconds; the address is free for others once Expires <= Command.At
	Updated int64  `json:"updated"` // Command.At of the acquire that last granted or renewed it
}

// LeaseAcquire is the body of lease.acquire: lease MAC an address from the
// pool RangeStart..RangeEnd (inclusive) for Duration seconds from
// Command.At. The address is chosen when the command is applied, so every
// replica records the same one; read it back with State.Lease.
type LeaseAcquire struct {
	MAC        string `json:"mac"`
	RangeStart string `json:"range_start"`         // first address of the pool, IPv4
	RangeEnd   string `json:"range_end"`           // last address of the pool, IPv4, >= RangeStart
	Requested  string `json:"requested,omitempty"` // optional preferred IPv4 (DHCP option 50); ignored if outside the pool
	Duration   int64  `json:"duration"`            // seconds, 1..2^31
}

func identity[T any](v T) T { return v }
