package catalog

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits. The spec fixes all but maxStatePathLen and maxShown.
const (
	maxArgsLen     = 2048
	maxNoteLen     = 256
	maxStatePaths  = 32
	minPieceLength = 16 << 10
	// maxStatePathLen is Linux PATH_MAX; the spec leaves path length open, but
	// a longer path can never be bind-mounted, so accepting it only defers the
	// failure to boot time.
	maxStatePathLen = 4096
	// maxShown bounds how much of a hostile value is echoed in an error, so an
	// oversized field cannot blow up logs or HTTP responses.
	maxShown = 80
	// maxLeasePool bounds a lease.acquire range (a /16), so choosing an
	// address is one bounded scan.
	maxLeasePool = 1 << 16
	// maxLeaseDuration is the longest lease in seconds (about 68 years; DHCP
	// itself encodes lease times in 32 bits).
	maxLeaseDuration = 1 << 31
)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// argForbidden lists bytes that could break out of the context kernel args
// are rendered into: "$" expands iPXE settings and shell variables, ";" "`"
// "\" quotes and "#" split, quote or comment out script lines. The spec's
// final list stops there; "|", "&", "<" and ">" are also rejected here
// because iPXE treats a standalone "||" or "&&" token in a script line as a
// command separator (src/core/exec.c, command_terminator), so args written
// into a generated script as "quiet || chain http://evil/x" would run a
// second command; in a shell they pipe, background or redirect. Common
// kernel parameters do not use any of them.
const argForbidden = "$;`\\\"'#|&<>"

// ValidateArgs reports whether s is safe to use as kernel command-line
// arguments that will be embedded in an iPXE script: at most 2048 bytes of
// printable ASCII (0x20-0x7e; no newline, tab or other control character)
// without any of the characters $ ; ` \ " ' # | & < >. The error wraps
// ErrInvalid and names the offending byte and its offset.
func ValidateArgs(s string) error {
	if len(s) > maxArgsLen {
		return fmt.Errorf("args are %d bytes, limit is %d: %w", len(s), maxArgsLen, ErrInvalid)
	}
	if i := firstUnsafe(s, ""); i >= 0 {
		return fmt.Errorf("args %q: %s: %w", show(s), describeByte(s, i), ErrInvalid)
	}
	return nil
}

// firstUnsafe returns the offset of the first byte of s that is not
// printable ASCII or is in argForbidden or extra, or -1 if there is none.
func firstUnsafe(s, extra string) int {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x20 || b > 0x7e || strings.IndexByte(argForbidden, b) >= 0 || strings.IndexByte(extra, b) >= 0 {
			return i
		}
	}
	return -1
}

// describeByte explains why the byte at offset i of s was refused.
func describeByte(s string, i int) string {
	if b := s[i]; b < 0x20 || b > 0x7e {
		return fmt.Sprintf("byte 0x%02x at offset %d is not printable ASCII", b, i)
	}
	return fmt.Sprintf("character %q at offset %d is not allowed (it could break out of the iPXE script, kernel command line or a shell)", s[i], i)
}

// show truncates s for inclusion in an error message; callers quote it with %q.
func show(s string) string {
	if len(s) <= maxShown {
		return s
	}
	return s[:maxShown] + "..."
}

// validateName applies the rule shared by group names, image names and node
// IDs. kind ("group", "image", "node") makes the message self-explanatory.
func validateName(kind, s string) error {
	if s == "." || s == ".." {
		return fmt.Errorf("%s name %q is reserved: %w", kind, s, ErrInvalid)
	}
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%s name %q: want 1-63 characters of a-z, 0-9, '.', '_', '-' starting with a letter or digit: %w",
			kind, show(s), ErrInvalid)
	}
	return nil
}

// validateHex64 checks a sha256-style digest; empty is allowed only if optional.
func validateHex64(field, s string, optional bool) error {
	if s == "" && optional {
		return nil
	}
	if len(s) != 64 || !isHex(s) || strings.ToLower(s) != s {
		return fmt.Errorf("%s %q: want 64 lower-case hex digits: %w", field, show(s), ErrInvalid)
	}
	return nil
}

// validateNote allows any printable UTF-8 (notes are for humans, so accents
// and the like are fine) but no control characters such as newlines.
func validateNote(s string) error {
	if len(s) > maxNoteLen {
		return fmt.Errorf("note is %d bytes, limit is %d: %w", len(s), maxNoteLen, ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("note %q is not valid UTF-8: %w", show(s), ErrInvalid)
	}
	for i, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("note %q: character %q at offset %d is not printable: %w", show(s), r, i, ErrInvalid)
		}
	}
	return nil
}

func validatePieceLength(n int64) error {
	if n == 0 || (n >= minPieceLength && n&(n-1) == 0) {
		return nil
	}
	return fmt.Errorf("piece_length %d: want 0 or a power of two >= %d: %w", n, minPieceLength, ErrInvalid)
}

// validateIPv4 requires a dotted quad that can be a unicast host address.
func validateIPv4(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return fmt.Errorf("ip %q: want an IPv4 dotted quad such as 10.0.0.5: %w", show(s), ErrInvalid)
	}
	var reason string
	switch {
	case a.IsUnspecified():
		reason = "the unspecified address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		reason = "the broadcast address"
	case a.IsMulticast():
		reason = "a multicast address"
	case a.IsLoopback():
		reason = "a loopback address"
	default:
		return nil
	}
	return fmt.Errorf("ip %q is %s, not a host address: %w", s, reason, ErrInvalid)
}

// parseIPv4 applies validateIPv4 and returns the address; field names the
// value in the error.
func parseIPv4(field, s string) (netip.Addr, error) {
	if err := validateIPv4(s); err != nil {
		return netip.Addr{}, fmt.Errorf("%s: %w", field, err)
	}
	return netip.MustParseAddr(s), nil
}

// ipRange is an inclusive range of IPv4 addresses as 32-bit numbers.
type ipRange struct{ first, last uint32 }

func ipNum(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func numIP(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

func (r ipRange) size() int64 { return int64(r.last) - int64(r.first) + 1 }

func (r ipRange) contains(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	n := ipNum(a)
	return r.first <= n && n <= r.last
}

func (r ipRange) String() string { return numIP(r.first).String() + "-" + numIP(r.last).String() }

// validateFields checks a lease.acquire body whose MAC is already
// normalised, for a command applied at now. It returns the pool and the
// requested address (invalid if none was asked for). A requested address
// outside the pool is not an error: DHCP clients ask for whatever they had
// last, possibly on another network.
func (a LeaseAcquire) validateFields(now int64) (ipRange, netip.Addr, error) {
	var none netip.Addr
	wrap := func(err error) error { return fmt.Errorf("lease for %s: %w", a.MAC, err) }
	start, err := parseIPv4("range_start", a.RangeStart)
	if err != nil {
		return ipRange{}, none, wrap(err)
	}
	end, err := parseIPv4("range_end", a.RangeEnd)
	if err != nil {
		return ipRange{}, none, wrap(err)
	}
	r := ipRange{ipNum(start), ipNum(end)}
	switch {
	case r.first > r.last:
		return ipRange{}, none, wrap(fmt.Errorf("range_start %s is after range_end %s: %w", start, end, ErrInvalid))
	case r.size() > maxLeasePool:
		return ipRange{}, none, wrap(fmt.Errorf("range %s has %d addresses, limit is %d: %w", r, r.size(), maxLeasePool, ErrInvalid))
	case a.Duration < 1 || a.Duration > maxLeaseDuration:
		return ipRange{}, none, wrap(fmt.Errorf("duration %d: want 1 to %d seconds: %w", a.Duration, int64(maxLeaseDuration), ErrInvalid))
	case now > math.MaxInt64-a.Duration:
		return ipRange{}, none, wrap(fmt.Errorf("expiry %d + %d seconds overflows: %w", now, a.Duration, ErrInvalid))
	}
	if a.Requested == "" {
		return r, none, nil
	}
	req, err := parseIPv4("requested", a.Requested)
	if err != nil {
		return ipRange{}, none, wrap(err)
	}
	return r, req, nil
}

// validateHostPort checks a host:port advertised to other nodes. The spec
// only says host:port; an empty host (":8300") is rejected because peers
// could not dial it, and the host must be an IP literal or a DNS name.
func validateHostPort(field, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fmt.Errorf("%s %q: want host:port such as 10.0.0.1:8300: %w", field, show(s), ErrInvalid)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("%s %q: port %q must be a number from 1 to 65535: %w", field, show(s), show(port), ErrInvalid)
	}
	if _, err := netip.ParseAddr(host); err != nil && !IsDNSName(host) {
		return fmt.Errorf("%s %q: host %q is neither an IP address nor a DNS name: %w", field, show(s), show(host), ErrInvalid)
	}
	return nil
}

// IsDNSName reports whether s is a syntactically valid DNS host name.
func IsDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.ToLower(s), ".") {
		if !hostnameRE.MatchString(label) {
			return false
		}
	}
	return true
}

func validateStatePaths(paths []string) error {
	if len(paths) > maxStatePaths {
		return fmt.Errorf("state_paths has %d entries, limit is %d: %w", len(paths), maxStatePaths, ErrInvalid)
	}
	seen := make(map[string]bool, len(paths))
	for _, p := range paths {
		if err := validateStatePath(p); err != nil {
			return err
		}
		// Duplicates are rejected rather than silently merged so that what
		// the administrator sees stored is exactly what they sent.
		if seen[p] {
			return fmt.Errorf("state path %q is listed twice: %w", p, ErrInvalid)
		}
		seen[p] = true
	}
	return nil
}

// validateStatePath requires an absolute, clean path other than "/". Beyond
// the spec, "/" is refused (persisting the whole root defeats a diskless
// image) and so are spaces, control characters and the ValidateArgs
// metacharacters, because state paths are likely to be rendered into a boot
// script or kernel command line, where a space would split the value.
func validateStatePath(p string) error {
	switch {
	case len(p) > maxStatePathLen:
		return fmt.Errorf("state path is %d bytes, limit is %d: %w", len(p), maxStatePathLen, ErrInvalid)
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("state path %q must be absolute: %w", show(p), ErrInvalid)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Errorf("state path %q must not contain \"..\": %w", show(p), ErrInvalid)
	case path.Clean(p) != p:
		return fmt.Errorf("state path %q is not clean (want %q): %w", show(p), show(path.Clean(p)), ErrInvalid)
	case p == "/":
		return fmt.Errorf("state path \"/\" would make the whole root persistent: %w", ErrInvalid)
	}
	if i := firstUnsafe(p, " "); i >= 0 {
		return fmt.Errorf("state path %q: %s: %w", show(p), describeByte(p, i), ErrInvalid)
	}
	return nil
}

// The validateFields methods check one entity in isolation (syntax and
// limits). References to other entities are checked by content in apply.go,
// because they depend on the current state.

func (g Group) validateFields() error {
	if err := validateName("group", g.Name); err != nil {
		return err
	}
	if err := g.validateSettings(); err != nil {
		return fmt.Errorf("group %q: %w", g.Name, err)
	}
	return nil
}

func (g Group) validateSettings() error {
	if g.Image != "" {
		if err := validateName("image", g.Image); err != nil {
			return err
		}
	}
	if err := validateHex64("version", g.Version, true); err != nil {
		return err
	}
	if g.Version != "" && g.Image == "" {
		return fmt.Errorf("version %s is pinned but no image is set: %w", g.Version, ErrInvalid)
	}
	if !g.BootMode.valid() {
		return fmt.Errorf("boot_mode %q: want %s, %s or %s: %w",
			show(string(g.BootMode)), BootDisklessRAM, BootDisklessNBD, BootDisk, ErrInvalid)
	}
	if err := ValidateArgs(g.KernelArgs); err != nil {
		return fmt.Errorf("kernel_args: %w", err)
	}
	return validateStatePaths(g.StatePaths)
}

func (cl Client) validateFields() error {
	mac, err := NormalizeMAC(cl.MAC)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if mac != cl.MAC {
		return fmt.Errorf("client: mac %q is not in canonical form %q: %w", cl.MAC, mac, ErrInvalid)
	}
	if err := cl.validateSettings(); err != nil {
		return fmt.Errorf("client %s: %w", cl.MAC, err)
	}
	return nil
}

func (cl Client) validateSettings() error {
	if !hostnameRE.MatchString(cl.Hostname) {
		return fmt.Errorf("hostname %q: want an RFC 1123 label of 1-63 characters a-z, 0-9 and '-', not starting or ending with '-': %w",
			show(cl.Hostname), ErrInvalid)
	}
	if cl.Group == "" {
		return fmt.Errorf("group is required: %w", ErrInvalid)
	}
	if cl.IP != "" {
		if err := validateIPv4(cl.IP); err != nil {
			return err
		}
	}
	if err := ValidateArgs(cl.KernelArgs); err != nil {
		return fmt.Errorf("kernel_args: %w", err)
	}
	return nil
}

// validateFields does not require ID == SHA256: the spec documents both as
// sha256 values but does not say they hash the same bytes (the id may cover
// the unpacked root while sha256 covers the stored file).
func (v ImageVersion) validateFields() error {
	if err := validateHex64("version id", v.ID, false); err != nil {
		return err
	}
	if err := v.validateContent(); err != nil {
		return fmt.Errorf("version %s: %w", v.ID, err)
	}
	return nil
}

func (v ImageVersion) validateContent() error {
	if v.Size < 0 {
		return fmt.Errorf("size %d must not be negative: %w", v.Size, ErrInvalid)
	}
	if err := validateHex64("sha256", v.SHA256, false); err != nil {
		return err
	}
	if err := validatePieceLength(v.PieceLength); err != nil {
		return err
	}
	if !v.Format.valid() {
		return fmt.Errorf("format %q: want %s, %s or %s: %w", show(string(v.Format)), FormatSquashfs, FormatExt4, FormatRaw, ErrInvalid)
	}
	return v.validateBoot()
}

func (v ImageVersion) validateBoot() error {
	if err := validateHex64("kernel_blob", v.KernelBlob, true); err != nil {
		return err
	}
	if err := validateHex64("initrd_blob", v.InitrdBlob, true); err != nil {
		return err
	}
	if err := ValidateArgs(v.Cmdline); err != nil {
		return fmt.Errorf("cmdline: %w", err)
	}
	if err := validateNote(v.Note); err != nil {
		return err
	}
	return v.validateBlobs()
}

// maxInfo bounds one blob's info dictionary: 20 bytes of hash per piece,
// so 1 MiB covers 200 GiB at 4 MiB pieces.
const maxInfo = 1 << 20

// validateBlobs: every blob is well formed, its info hash matches its info
// bytes, and the version's root, kernel and initrd are among its blobs.
func (v ImageVersion) validateBlobs() error {
	if len(v.Blobs) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, b := range v.Blobs {
		if err := b.validate(); err != nil {
			return err
		}
		if seen[b.ID] {
			return fmt.Errorf("blob %s listed twice: %w", b.ID, ErrInvalid)
		}
		seen[b.ID] = true
	}
	root, ok := v.Blob(v.SHA256)
	if !ok || root.Size != v.Size {
		return fmt.Errorf("no blob with the version's sha256 %s and size %d: %w", v.SHA256, v.Size, ErrInvalid)
	}
	for _, ref := range []string{v.KernelBlob, v.InitrdBlob} {
		if ref != "" && !seen[ref] {
			return fmt.Errorf("blob %s is referenced but not described: %w", ref, ErrInvalid)
		}
	}
	return nil
}

func (b Blob) validate() error {
	if err := validateHex64("blob id", b.ID, false); err != nil {
		return err
	}
	switch {
	case b.Size < 0:
		return fmt.Errorf("blob %s: size %d is negative: %w", b.ID, b.Size, ErrInvalid)
	case b.PieceLength == 0:
		return fmt.Errorf("blob %s: piece length missing: %w", b.ID, ErrInvalid)
	case len(b.Info) == 0 || len(b.Info) > maxInfo:
		return fmt.Errorf("blob %s: info dictionary of %d bytes (want 1..%d): %w", b.ID, len(b.Info), maxInfo, ErrInvalid)
	}
	if err := validatePieceLength(b.PieceLength); err != nil {
		return fmt.Errorf("blob %s: %w", b.ID, err)
	}
	sum := sha1.Sum(b.Info)
	if hex.EncodeToString(sum[:]) != b.InfoHash {
		return fmt.Errorf("blob %s: info hash %q does not match its info bytes: %w", b.ID, show(b.InfoHash), ErrInvalid)
	}
	return nil
}

func (n Node) validateFields() error {
	if err := validateName("node", n.ID); err != nil {
		return err
	}
	if err := validateHostPort("raft_addr", n.RaftAddr); err != nil {
		return fmt.Errorf("node %q: %w", n.ID, err)
	}
	if err := validateHostPort("http_addr", n.HTTPAddr); err != nil {
		return fmt.Errorf("node %q: %w", n.ID, err)
	}
	return nil
}
