package bootsvc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/shoal-project/shoal/cluster/catalog"
)

// The two ports a DHCP handler answers on. Reply takes the port the request
// arrived at in these terms, not the socket's real port, so tests can bind
// high ports on 127.0.0.1 and still exercise the 67 and 4011 rules.
const (
	PortDHCP = 67   // DHCP/proxyDHCP, broadcast from clients without an address
	PortPXE  = 4011 // PXE boot server: unicast REQUEST from a client that has one
)

// ClientPort is where DHCP clients listen for broadcast replies.
const ClientPort = 68

// Action is what the handler did with a request.
type Action string

const (
	ActionIgnore Action = "ignore"
	ActionOffer  Action = "offer"
	ActionAck    Action = "ack"
	ActionNak    Action = "nak"
)

// Reason explains a Decision. The set is small and fixed so it can be a
// metrics label; per-packet details go to Decision.Detail.
type Reason string

const (
	ReasonMalformed     Reason = "malformed"     // not a DHCP request we can parse or answer
	ReasonMessageType   Reason = "message-type"  // a type this port does not answer
	ReasonOtherServer   Reason = "other-server"  // REQUEST addressed to another server
	ReasonNotPXE        Reason = "not-pxe"       // no PXEClient/HTTPClient vendor class (proxy mode)
	ReasonUnknownMAC    Reason = "unknown-mac"   // not in the catalogue, policy ignore
	ReasonUnknownGroup  Reason = "unknown-group" // default or client group missing
	ReasonArch          Reason = "unsupported-arch"
	ReasonNoLease       Reason = "no-lease"       // needs a dynamic lease: ErrNoLease
	ReasonOutsideSubnet Reason = "outside-subnet" // fixed IP not on this server's network
	ReasonWrongAddress  Reason = "wrong-address"  // client asked for an address that is not its own
	ReasonProxy         Reason = "proxy"          // answered with boot information only
	ReasonFixedIP       Reason = "fixed-ip"       // answered with the catalogue's address
	ReasonDynamic       Reason = "dynamic"        // answered with a lease from the catalogue's lease table
	ReasonReleased      Reason = "released"       // RELEASE: the client's lease was dropped
	ReasonDeclined      Reason = "declined"       // DECLINE: the address is in use; the client moves to another
)

// Decision records what Reply decided and why, for logs and metrics.
type Decision struct {
	Action   Action
	Reason   Reason
	Detail   string // human-readable, may hold packet data: logs only
	MAC      string // canonical, when the packet had one
	XID      string
	Arch     string // firmware family ("bios", "uefi-x86_64", ...)
	IPXE     bool   // the client is already iPXE
	BootFile string // option 67 as sent
	IP       string // yiaddr, full mode
	Hostname string // the catalogue client's, if known
	Group    string
}

// Handler decides DHCP replies. It holds no per-client state: every answer
// is a pure function of the request, the config and the catalogue, so any
// node answers any client identically.
type Handler struct {
	cfg     DHCPConfig
	net     dhcpNet
	cat     Catalog
	log     *slog.Logger
	leases  LeaseStore       // nil: no dynamic leases
	clock   func() time.Time // nil: time.Now
	observe func(Decision)   // nil: none
}

// SetLeases gives the handler the catalogue's lease table; without one,
// full mode hands out fixed catalogue addresses only. Call before Serve.
func (h *Handler) SetLeases(l LeaseStore) { h.leases = l }

// SetObserver is called with every decision Serve makes, after the reply
// was sent (or not): the node counts boot events with it. Call before Serve.
func (h *Handler) SetObserver(f func(Decision)) { h.observe = f }

// NewHandler validates cfg. log may be nil.
func NewHandler(cfg DHCPConfig, cat Catalog, log *slog.Logger) (*Handler, error) {
	n, err := cfg.parse()
	if err != nil {
		return nil, err
	}
	if cat == nil {
		return nil, errors.New("dhcp: a catalogue is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, net: n, cat: cat, log: log}, nil
}

// Reply decides the answer to req, which arrived on port (PortDHCP or
// PortPXE). A nil reply with ActionIgnore means stay silent; the Decision
// says why. A non-nil error means the fault is on our side (a reply that
// should have been built could not be) and deserves a warning.
func (h *Handler) Reply(req *dhcpv4.DHCPv4, port int) (*dhcpv4.DHCPv4, Decision, error) {
	if port != PortDHCP && port != PortPXE {
		return nil, Decision{Action: ActionIgnore, Reason: ReasonMalformed}, fmt.Errorf("dhcp: port %d is neither %d nor %d", port, PortDHCP, PortPXE)
	}
	d := Decision{Action: ActionIgnore}
	mac, err := checkRequest(req)
	if err != nil {
		d.Reason, d.Detail = ReasonMalformed, err.Error()
		return nil, d, nil
	}
	d.MAC, d.XID = mac, req.TransactionID.String()
	if t := req.MessageType(); port == PortDHCP && !h.net.isProxy && (t == dhcpv4.MessageTypeRelease || t == dhcpv4.MessageTypeDecline) {
		return nil, h.giveBack(req, t, d), nil
	}
	cl := classify(req)
	d.Arch, d.IPXE = cl.fw.String(), cl.ipxe
	mt, ok := h.replyType(req, port, &d)
	if !ok {
		return nil, d, nil
	}
	bootOnly := port == PortPXE || h.net.isProxy
	if bootOnly && !cl.pxe && !cl.http {
		// Checked before the catalogue: most traffic on a shared network
		// is ordinary DHCP that a proxy must leave alone.
		d.Reason, d.Detail = ReasonNotPXE, fmt.Sprintf("vendor class %q", req.ClassIdentifier())
		return nil, d, nil
	}
	t, ok := h.target(mac, &d)
	if !ok {
		return nil, d, nil
	}
	if bootOnly {
		return h.proxyReply(req, mt, cl, &d)
	}
	return h.fullReply(req, mt, cl, t, &d)
}

// checkRequest accepts only Ethernet BOOTREQUESTs that carry a message type
// and a usable MAC, and returns the canonical MAC.
func checkRequest(req *dhcpv4.DHCPv4) (string, error) {
	switch {
	case req == nil:
		return "", errors.New("no packet")
	case req.OpCode != dhcpv4.OpcodeBootRequest:
		return "", fmt.Errorf("opcode %s is not a request", req.OpCode)
	case req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6:
		return "", fmt.Errorf("hardware type %s with %d-byte address: want Ethernet", req.HWType, len(req.ClientHWAddr))
	case req.MessageType() == dhcpv4.MessageTypeNone:
		return "", errors.New("no DHCP message type (BOOTP is not served)")
	}
	mac, err := catalog.NormalizeMAC(req.ClientHWAddr.String())
	if err != nil {
		return "", err
	}
	return mac, nil
}

// replyType maps the request's message type to the reply's, by port and
// mode. ok is false (and d explains) when the request is not ours.
func (h *Handler) replyType(req *dhcpv4.DHCPv4, port int, d *Decision) (dhcpv4.MessageType, bool) {
	mt := req.MessageType()
	switch {
	case port == PortPXE && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
		return dhcpv4.MessageTypeAck, true
	case port == PortDHCP && mt == dhcpv4.MessageTypeDiscover:
		return dhcpv4.MessageTypeOffer, true
	case port == PortDHCP && mt == dhcpv4.MessageTypeRequest:
		return h.requestType(req, d)
	}
	d.Reason, d.Detail = ReasonMessageType, fmt.Sprintf("%s on port %d", mt, port)
	return dhcpv4.MessageTypeNone, false
}

// requestType handles a REQUEST on port 67. One naming another server
// (selecting its offer) is not ours. Without a server identifier the client
// is rebooting or renewing: its address server answers that, which in
// proxy mode is never us.
func (h *Handler) requestType(req *dhcpv4.DHCPv4, d *Decision) (dhcpv4.MessageType, bool) {
	sid := req.ServerIdentifier()
	switch {
	case sid != nil && !sid.Equal(net.IP(h.net.server.AsSlice())):
		d.Reason, d.Detail = ReasonOtherServer, "server identifier "+sid.String()
		return dhcpv4.MessageTypeNone, false
	case sid == nil && h.net.isProxy:
		d.Reason, d.Detail = ReasonOtherServer, "REQUEST without server identifier goes to the address server"
		return dhcpv4.MessageTypeNone, false
	}
	return dhcpv4.MessageTypeAck, true
}

// bootTarget is who the client boots as.
type bootTarget struct {
	client catalog.Client // zero for an unknown MAC under the default group
	known  bool
	group  string
}

func (h *Handler) target(mac string, d *Decision) (bootTarget, bool) {
	t := bootTarget{group: h.cfg.DefaultGroup}
	if c, ok := h.cat.Client(mac); ok {
		t = bootTarget{client: c, known: true, group: c.Group}
		d.Hostname = c.Hostname
	} else if h.cfg.Unknown != UnknownDefaultGroup {
		d.Reason = ReasonUnknownMAC
		return t, false
	}
	d.Group = t.group
	if _, ok := h.cat.Group(t.group); !ok {
		d.Reason, d.Detail = ReasonUnknownGroup, "group "+t.group+" is not in the catalogue"
		return t, false
	}
	return t, true
}

// firmware is the family of boot firmware, which picks the iPXE binary.
type firmware int

const (
	fwUnsupported firmware = iota
	fwBIOS
	fwUEFIX64
	fwUEFIARM64
)

func (f firmware) String() string {
	return [...]string{"unsupported", "bios", "uefi-x86_64", "uefi-arm64"}[f]
}

// clientClass is what the request says about the booting firmware.
type clientClass struct {
	pxe  bool // vendor class PXEClient...: a PXE ROM (or iPXE posing as one)
	http bool // UEFI HTTP boot: vendor class HTTPClient or an HTTP arch type
	ipxe bool // already running iPXE: wants the script, not a binary
	fw   firmware
	arch iana.Arch
}

func classify(req *dhcpv4.DHCPv4) clientClass {
	vc := req.ClassIdentifier()
	c := clientClass{
		pxe:  strings.HasPrefix(vc, "PXEClient"),
		http: strings.HasPrefix(vc, "HTTPClient"),
		ipxe: isIPXE(req),
	}
	c.arch = clientArch(req, vc)
	var httpArch bool
	c.fw, httpArch = archFirmware(c.arch)
	c.http = c.http || httpArch
	return c
}

// isIPXE: iPXE sends user class "iPXE" (option 77, raw or RFC 3004; the
// library's UserClass reads both) and its own option 175.
func isIPXE(req *dhcpv4.DHCPv4) bool {
	return slices.Contains(req.UserClass(), "iPXE") || req.Options.Has(dhcpv4.GenericOptionCode(175))
}

// clientArch takes option 93, else the "Arch:NNNNN" field PXE ROMs put in
// the vendor class, else BIOS: ROMs older than RFC 4578 are all BIOS.
func clientArch(req *dhcpv4.DHCPv4, vc string) iana.Arch {
	if archs := req.ClientArch(); len(archs) > 0 {
		return archs[0]
	}
	if _, rest, ok := strings.Cut(vc, ":Arch:"); ok && len(rest) >= 5 {
		if n, err := strconv.ParseUint(rest[:5], 10, 16); err == nil {
			return iana.Arch(n)
		}
	}
	return iana.INTEL_X86PC
}

// archFirmware maps RFC 4578 / IANA arch types to what we can boot. Types 7
// and 9 are both x86_64 UEFI in the field (9 was meant for EFI byte code,
// but firmware vendors use it for x64), so both map to the x64 binary.
func archFirmware(a iana.Arch) (fw firmware, http bool) {
	switch a {
	case iana.INTEL_X86PC:
		return fwBIOS, false
	case iana.EFI_X86_64, iana.EFI_BC:
		return fwUEFIX64, false
	case iana.EFI_ARM64:
		return fwUEFIARM64, false
	case iana.EFI_X86_64_HTTP:
		return fwUEFIX64, true
	case iana.EFI_ARM64_HTTP:
		return fwUEFIARM64, true
	}
	return fwUnsupported, false
}

// bootFile picks option 67: the script URL for iPXE, an http:// URL of the
// iPXE binary for UEFI HTTP boot, else the binary's name on TFTP.
//
// The script URL carries the MAC from chaddr rather than iPXE's
// ${net0/mac}: on a machine with several NICs iPXE may be configuring net1,
// and chaddr is by definition the NIC that is asking. A canonical MAC is
// hex and colons only, so it is safe in a URL and in iPXE's expansion.
func (h *Handler) bootFile(c clientClass, mac string) (string, error) {
	if c.ipxe {
		return ScriptURL(h.net.base, mac), nil
	}
	var name string
	switch c.fw {
	case fwBIOS:
		name = h.cfg.Files.BIOS
	case fwUEFIX64:
		name = h.cfg.Files.UEFIX64
	case fwUEFIARM64:
		name = h.cfg.Files.UEFIARM64
	default:
		return "", fmt.Errorf("client architecture %d", c.arch)
	}
	if c.http {
		return h.net.base + BootFilesPath + name, nil
	}
	return name, nil
}

// ScriptURL is where iPXE fetches the boot script of mac.
func ScriptURL(base, mac string) string {
	return base + ScriptPath + "?mac=" + mac
}

// netIP converts for the library, which speaks net.IP.
func netIP(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }
