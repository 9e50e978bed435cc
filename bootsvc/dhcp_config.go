package bootsvc

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// Catalog is what the boot services read from the catalogue. The node hands
// in its local replica (*catalog.State satisfies it), so answering a known
// client never needs the Raft leader.
type Catalog interface {
	// Client looks a client up by MAC in any notation catalog.NormalizeMAC
	// accepts.
	Client(mac string) (catalog.Client, bool)
	Group(name string) (catalog.Group, bool)
	Image(name string) (catalog.Image, bool)
}

// Mode selects how much of DHCP this node answers.
type Mode string

const (
	// ModeProxy (the default) answers only PXE/HTTP boot clients and never
	// hands out an address, so shoal coexists with the site's DHCP server.
	ModeProxy Mode = "proxy"
	// ModeFull also hands out addresses: a client's fixed IP from the
	// catalogue, or a dynamic lease from its lease table (LeaseStore).
	ModeFull Mode = "full"
)

// UnknownPolicy says what to do with a MAC the catalogue does not know.
type UnknownPolicy string

const (
	// UnknownIgnore stays silent, so another server (or nobody) answers.
	UnknownIgnore UnknownPolicy = "ignore"
	// UnknownDefaultGroup boots the machine like a member of DefaultGroup.
	UnknownDefaultGroup UnknownPolicy = "default-group"
)

// BootFiles names the first-stage iPXE binary per firmware, as files below
// the TFTP root (and the HTTP boot-file route, which serves the same root).
type BootFiles struct {
	BIOS      string // legacy BIOS PXE (arch 0): a UNDI iPXE chainloader
	UEFIX64   string // x86_64 UEFI (arch 7/9, HTTP 16)
	UEFIARM64 string // arm64 UEFI (arch 11, HTTP 19)
}

// DHCPConfig configures the DHCP handler. Addresses are strings so that
// cmd/ can fill them from viper without decode hooks; Validate parses them.
type DHCPConfig struct {
	Mode Mode
	// ServerIP is this node's IPv4 address on the boot network: siaddr
	// (next-server), option 54 and the TFTP server. Required.
	ServerIP string
	// HTTPBase is this node's HTTP base URL as clients reach it, for
	// example "http://10.77.0.1:7480". Required.
	HTTPBase string
	Files    BootFiles
	Unknown  UnknownPolicy
	// DefaultGroup is the group unknown machines boot under
	// UnknownDefaultGroup.
	DefaultGroup string

	// Full mode only. Netmask is required there; Router and DNS are
	// optional. RangeStart/RangeEnd delimit the pool of dynamic leases
	// (see LeaseStore); without a range only fixed addresses are given.
	Netmask    string
	Router     string
	DNS        []string
	RangeStart string
	RangeEnd   string
	LeaseTime  time.Duration
}

// DefaultDHCPConfig is proxyDHCP with Debian's iPXE file names. ServerIP and
// HTTPBase have no sensible default: the node fills them from its
// advertised address.
func DefaultDHCPConfig() DHCPConfig {
	return DHCPConfig{
		Mode: ModeProxy,
		Files: BootFiles{
			BIOS:    "undionly.kpxe",
			UEFIX64: "snponly.efi",
			// Debian's ipxe package ships x86 binaries only; an arm64
			// snponly.efi must be built or copied in under this name.
			UEFIARM64: "snponly-arm64.efi",
		},
		Unknown:   UnknownIgnore,
		Netmask:   "255.255.255.0",
		LeaseTime: time.Hour,
	}
}

// dhcpNet is the parsed form of the address fields.
type dhcpNet struct {
	server  netip.Addr
	base    string
	subnet  netip.Prefix // full mode: ServerIP's network
	router  netip.Addr   // zero if unset
	dns     []netip.Addr
	start   netip.Addr // zero if no range
	end     netip.Addr
	leaseS  uint32
	isProxy bool
}

// Validate checks every field and how they fit together.
func (c DHCPConfig) Validate() error {
	_, err := c.parse()
	return err
}

func (c DHCPConfig) parse() (dhcpNet, error) {
	var n dhcpNet
	if c.Mode != ModeProxy && c.Mode != ModeFull {
		return n, fmt.Errorf("dhcp: mode %q: want %q or %q", c.Mode, ModeProxy, ModeFull)
	}
	n.isProxy = c.Mode == ModeProxy
	var err error
	if n.server, err = parseHostIPv4("server IP", c.ServerIP); err != nil {
		return n, err
	}
	if n.base, err = ValidateBaseURL(c.HTTPBase); err != nil {
		return n, fmt.Errorf("dhcp: http base: %w", err)
	}
	if err := c.Files.validate(); err != nil {
		return n, err
	}
	if err := c.validateUnknown(); err != nil {
		return n, err
	}
	if c.Mode == ModeFull {
		err = c.parseFull(&n)
	}
	return n, err
}

func (f BootFiles) validate() error {
	for _, kv := range [][2]string{{"bios", f.BIOS}, {"uefi x86_64", f.UEFIX64}, {"uefi arm64", f.UEFIARM64}} {
		clean, err := CleanRequestPath(kv[1])
		if err != nil || clean != kv[1] || !safeToken(clean) {
			return fmt.Errorf("dhcp: %s boot file %q: want a clean relative path of letters, digits, '.', '_', '-', '/'", kv[0], kv[1])
		}
	}
	return nil
}

func (c DHCPConfig) validateUnknown() error {
	switch c.Unknown {
	case UnknownIgnore:
		return nil
	case UnknownDefaultGroup:
		if !nameRE.MatchString(c.DefaultGroup) {
			return fmt.Errorf("dhcp: unknown-MAC policy %q needs a valid default group, got %q", c.Unknown, c.DefaultGroup)
		}
		return nil
	}
	return fmt.Errorf("dhcp: unknown-MAC policy %q: want %q or %q", c.Unknown, UnknownIgnore, UnknownDefaultGroup)
}

func (c DHCPConfig) parseFull(n *dhcpNet) error {
	mask, err := parseMask(c.Netmask)
	if err != nil {
		return err
	}
	n.subnet = netip.PrefixFrom(n.server, mask).Masked()
	if c.Router != "" {
		if n.router, err = n.inSubnet("router", c.Router); err != nil {
			return err
		}
	}
	for _, s := range c.DNS {
		a, err := parseHostIPv4("dns server", s)
		if err != nil {
			return err
		}
		n.dns = append(n.dns, a)
	}
	if err := c.parseRange(n); err != nil {
		return err
	}
	if c.LeaseTime < time.Second || c.LeaseTime.Seconds() >= math.MaxUint32 {
		return fmt.Errorf("dhcp: lease time %s: want 1s to 136 years", c.LeaseTime)
	}
	n.leaseS = uint32(c.LeaseTime / time.Second)
	return nil
}

func (c DHCPConfig) parseRange(n *dhcpNet) error {
	if c.RangeStart == "" && c.RangeEnd == "" {
		return nil
	}
	var err error
	if n.start, err = n.inSubnet("range start", c.RangeStart); err != nil {
		return err
	}
	if n.end, err = n.inSubnet("range end", c.RangeEnd); err != nil {
		return err
	}
	if n.end.Less(n.start) {
		return fmt.Errorf("dhcp: range %s-%s is reversed", n.start, n.end)
	}
	return nil
}

func (n dhcpNet) inSubnet(what, s string) (netip.Addr, error) {
	a, err := parseHostIPv4(what, s)
	if err != nil {
		return a, err
	}
	if !n.subnet.Contains(a) {
		return a, fmt.Errorf("dhcp: %s %s is outside the server's subnet %s", what, a, n.subnet)
	}
	return a, nil
}

func parseHostIPv4(what, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, fmt.Errorf("dhcp: %s %q: want a unicast IPv4 address", what, s)
	}
	return a, nil
}

// parseMask accepts a dotted netmask with contiguous ones, /1 to /30.
func parseMask(s string) (int, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("dhcp: netmask %q: want a dotted IPv4 netmask", s)
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for ones < 32 && v&(1<<(31-ones)) != 0 {
		ones++
	}
	if v != ^uint32(0)<<(32-ones) || ones < 1 || ones > 30 {
		return 0, fmt.Errorf("dhcp: netmask %q: want contiguous ones, /1 to /30", s)
	}
	return ones, nil
}

// ErrNoLease means a client needs a dynamic address and none can be given:
// no range is configured, the pool is full, or a new lease needs the Raft
// leader and none is reachable. The handler turns it into an ignore
// decision with ReasonNoLease and says which in Decision.Detail.
var ErrNoLease = errors.New("no address")
