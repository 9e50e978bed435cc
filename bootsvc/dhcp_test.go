package bootsvc

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

func testDHCPConfig(mode Mode) DHCPConfig {
	c := DefaultDHCPConfig()
	c.Mode = mode
	c.ServerIP = testServer
	c.HTTPBase = testBase
	c.Router = "10.77.0.254"
	c.DNS = []string{"10.77.0.53"}
	c.RangeStart, c.RangeEnd = "10.77.0.100", "10.77.0.199"
	return c
}

func newTestHandler(t testing.TB, cfg DHCPConfig) *Handler {
	t.Helper()
	h, err := NewHandler(cfg, newFakeCatalog(), nil)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	return h
}

// Request builders: what real firmware sends.
func pxeClient(a iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", a))),
		dhcpv4.WithOption(dhcpv4.OptClientArch(a)),
	}
}

func httpClient(a iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("HTTPClient:Arch:%05d:UNDI:003001", a))),
		dhcpv4.WithOption(dhcpv4.OptClientArch(a)),
	}
}

var (
	ipxeUserClass = dhcpv4.WithUserClass("iPXE", false) // what iPXE sends: the raw string
	ipxeRFC3004   = dhcpv4.WithUserClass("iPXE", true)
	ipxeOpt175    = dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e})
	ourServerID   = dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(testServer)))
)

func mods(groups ...any) []dhcpv4.Modifier {
	var out []dhcpv4.Modifier
	for _, g := range groups {
		switch v := g.(type) {
		case dhcpv4.Modifier:
			out = append(out, v)
		case []dhcpv4.Modifier:
			out = append(out, v...)
		}
	}
	return out
}

func request(t testing.TB, mac string, mt dhcpv4.MessageType, extra ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(mt), dhcpv4.WithBroadcast(true),
	}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// want describes the expected reply; empty fields are not checked, except
// that an ignore must come without a reply.
type want struct {
	action Action
	reason Reason
	mt     dhcpv4.MessageType
	file   string // "-" for none
	yiaddr string // "0.0.0.0" for proxy replies
	vendor string // option 60 in the reply, "-" for none
	opt43  bool
	ipxe   bool // option 175.176 present
}

func TestReply(t *testing.T) {
	proxy := testDHCPConfig(ModeProxy)
	full := testDHCPConfig(ModeFull)
	deflt := testDHCPConfig(ModeProxy)
	deflt.Unknown, deflt.DefaultGroup = UnknownDefaultGroup, "guests"
	fullDeflt := full
	fullDeflt.Unknown, fullDeflt.DefaultGroup = UnknownDefaultGroup, "guests"
	badDeflt := deflt
	badDeflt.DefaultGroup = "nosuchgroup"
	script := testBase + "/v1/boot/ipxe?mac=" + macKnown
	D, R := dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest

	cases := []struct {
		name string
		cfg  DHCPConfig
		port int
		req  *dhcpv4.DHCPv4
		want want
	}{
		{"bios pxe", proxy, PortDHCP, request(t, macKnown, D, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionOffer, reason: ReasonProxy, mt: dhcpv4.MessageTypeOffer, file: "undionly.kpxe", yiaddr: "0.0.0.0", vendor: "PXEClient", opt43: true}},
		{"uefi x86_64 pxe arch 7", proxy, PortDHCP, request(t, macKnown, D, pxeClient(iana.EFI_X86_64)...),
			want{action: ActionOffer, file: "snponly.efi", yiaddr: "0.0.0.0", vendor: "PXEClient", opt43: true}},
		{"uefi x86_64 pxe arch 9", proxy, PortDHCP, request(t, macKnown, D, pxeClient(iana.EFI_BC)...),
			want{action: ActionOffer, file: "snponly.efi"}},
		{"uefi arm64 pxe", proxy, PortDHCP, request(t, macKnown, D, pxeClient(iana.EFI_ARM64)...),
			want{action: ActionOffer, file: "snponly-arm64.efi", opt43: true}},
		{"arch from vendor class only", proxy, PortDHCP, request(t, macKnown, D,
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"))),
			want{action: ActionOffer, file: "snponly.efi"}},
		{"ipxe user class", proxy, PortDHCP, request(t, macKnown, D, mods(pxeClient(iana.INTEL_X86PC), ipxeUserClass)...),
			want{action: ActionOffer, file: script, yiaddr: "0.0.0.0", vendor: "PXEClient"}},
		{"ipxe rfc 3004 user class", proxy, PortDHCP, request(t, macKnown, D, mods(pxeClient(iana.EFI_X86_64), ipxeRFC3004)...),
			want{action: ActionOffer, file: script}},
		{"ipxe option 175 only", proxy, PortDHCP, request(t, macKnown, D, mods(pxeClient(iana.EFI_X86_64), ipxeOpt175)...),
			want{action: ActionOffer, file: script}},
		{"uefi http boot x86_64", proxy, PortDHCP, request(t, macKnown, D, httpClient(iana.EFI_X86_64_HTTP)...),
			want{action: ActionOffer, file: testBase + "/v1/boot/files/snponly.efi", yiaddr: "0.0.0.0", vendor: "HTTPClient"}},
		{"uefi http boot arm64", proxy, PortDHCP, request(t, macKnown, D, httpClient(iana.EFI_ARM64_HTTP)...),
			want{action: ActionOffer, file: testBase + "/v1/boot/files/snponly-arm64.efi", vendor: "HTTPClient"}},
		{"non-pxe discover ignored", proxy, PortDHCP, request(t, macKnown, D),
			want{action: ActionIgnore, reason: ReasonNotPXE}},
		{"non-pxe unknown mac says not-pxe", proxy, PortDHCP, request(t, macUnknown, D, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("udhcp 1.35.0"))),
			want{action: ActionIgnore, reason: ReasonNotPXE}},
		{"unsupported arch", proxy, PortDHCP, request(t, macKnown, D, pxeClient(iana.EFI_IA32)...),
			want{action: ActionIgnore, reason: ReasonArch}},
		{"unknown mac ignored", proxy, PortDHCP, request(t, macUnknown, D, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionIgnore, reason: ReasonUnknownMAC}},
		{"unknown mac default group", deflt, PortDHCP, request(t, macUnknown, D, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionOffer, reason: ReasonProxy, file: "undionly.kpxe"}},
		{"unknown mac default group ipxe", deflt, PortDHCP, request(t, macUnknown, D, mods(pxeClient(iana.INTEL_X86PC), ipxeUserClass)...),
			want{action: ActionOffer, file: testBase + "/v1/boot/ipxe?mac=" + macUnknown}},
		{"default group missing", badDeflt, PortDHCP, request(t, macUnknown, D, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionIgnore, reason: ReasonUnknownGroup}},
		{"proxy 4011 request", proxy, PortPXE, request(t, macKnown, R, mods(pxeClient(iana.EFI_X86_64), dhcpv4.WithClientIP(net.ParseIP("10.77.0.150")))...),
			want{action: ActionAck, reason: ReasonProxy, mt: dhcpv4.MessageTypeAck, file: "snponly.efi", yiaddr: "0.0.0.0", vendor: "PXEClient", opt43: true}},
		{"4011 discover ignored", proxy, PortPXE, request(t, macKnown, D, pxeClient(iana.EFI_X86_64)...),
			want{action: ActionIgnore, reason: ReasonMessageType}},
		{"proxy request for another server", proxy, PortDHCP, request(t, macKnown, R, mods(pxeClient(iana.INTEL_X86PC),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.250"))))...),
			want{action: ActionIgnore, reason: ReasonOtherServer}},
		{"proxy request without server id", proxy, PortDHCP, request(t, macKnown, R, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionIgnore, reason: ReasonOtherServer}},
		{"proxy request naming us", proxy, PortDHCP, request(t, macKnown, R, mods(pxeClient(iana.INTEL_X86PC), ourServerID)...),
			want{action: ActionAck, file: "undionly.kpxe", yiaddr: "0.0.0.0"}},
		{"release ignored", full, PortDHCP, request(t, macKnown, dhcpv4.MessageTypeRelease),
			want{action: ActionIgnore, reason: ReasonMessageType}},
		{"full bios pxe fixed ip", full, PortDHCP, request(t, macKnown, D, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionOffer, reason: ReasonFixedIP, file: "undionly.kpxe", yiaddr: "10.77.0.11", vendor: "-"}},
		{"full ipxe fixed ip", full, PortDHCP, request(t, macKnown, D, mods(pxeClient(iana.INTEL_X86PC), ipxeUserClass)...),
			want{action: ActionOffer, reason: ReasonFixedIP, file: script, yiaddr: "10.77.0.11", vendor: "-", ipxe: true}},
		{"full http boot", full, PortDHCP, request(t, macKnown, D, httpClient(iana.EFI_X86_64_HTTP)...),
			want{action: ActionOffer, file: testBase + "/v1/boot/files/snponly.efi", yiaddr: "10.77.0.11", vendor: "HTTPClient"}},
		{"full os client gets address only", full, PortDHCP, request(t, macKnown, D, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("udhcp 1.35.0"))),
			want{action: ActionOffer, reason: ReasonFixedIP, file: "-", yiaddr: "10.77.0.11", vendor: "-"}},
		{"full request own ip", full, PortDHCP, request(t, macKnown, R, mods(ourServerID,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.11"))))...),
			want{action: ActionAck, mt: dhcpv4.MessageTypeAck, yiaddr: "10.77.0.11"}},
		{"full renew by ciaddr", full, PortDHCP, request(t, macKnown, R, dhcpv4.WithClientIP(net.ParseIP("10.77.0.11"))),
			want{action: ActionAck, yiaddr: "10.77.0.11"}},
		{"full request foreign ip", full, PortDHCP, request(t, macKnown, R, mods(ourServerID,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.12"))))...),
			want{action: ActionNak, reason: ReasonWrongAddress, mt: dhcpv4.MessageTypeNak, yiaddr: "0.0.0.0"}},
		{"full request for another server", full, PortDHCP, request(t, macKnown, R,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.2")))),
			want{action: ActionIgnore, reason: ReasonOtherServer}},
		{"full unknown mac default group needs lease", fullDeflt, PortDHCP, request(t, macUnknown, D, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionIgnore, reason: ReasonNoLease}},
		{"full unknown mac ignored", full, PortDHCP, request(t, macUnknown, D, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionIgnore, reason: ReasonUnknownMAC}},
		{"full known without ip needs lease", full, PortDHCP, request(t, macNoIP, D, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionIgnore, reason: ReasonNoLease}},
		{"full fixed ip outside subnet", full, PortDHCP, request(t, macFar, D, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionIgnore, reason: ReasonOutsideSubnet}},
		{"full 4011 is boot info only", full, PortPXE, request(t, macKnown, R, pxeClient(iana.EFI_X86_64)...),
			want{action: ActionAck, reason: ReasonProxy, file: "snponly.efi", yiaddr: "0.0.0.0", vendor: "PXEClient", opt43: true}},
		{"full 4011 non-pxe ignored", full, PortPXE, request(t, macKnown, R),
			want{action: ActionIgnore, reason: ReasonNotPXE}},
		{"reply opcode", proxy, PortDHCP, func() *dhcpv4.DHCPv4 {
			m := request(t, macKnown, D, pxeClient(iana.INTEL_X86PC)...)
			m.OpCode = dhcpv4.OpcodeBootReply
			return m
		}(), want{action: ActionIgnore, reason: ReasonMalformed}},
		{"no message type (bootp)", proxy, PortDHCP, func() *dhcpv4.DHCPv4 {
			m := request(t, macKnown, D, pxeClient(iana.INTEL_X86PC)...)
			m.Options.Del(dhcpv4.OptionDHCPMessageType)
			return m
		}(), want{action: ActionIgnore, reason: ReasonMalformed}},
		{"infiniband hardware", proxy, PortDHCP, func() *dhcpv4.DHCPv4 {
			m := request(t, macKnown, D, pxeClient(iana.INTEL_X86PC)...)
			m.HWType = iana.HWTypeInfiniband
			return m
		}(), want{action: ActionIgnore, reason: ReasonMalformed}},
		{"all-zero mac", proxy, PortDHCP, request(t, "00:00:00:00:00:00", D, pxeClient(iana.INTEL_X86PC)...),
			want{action: ActionIgnore, reason: ReasonMalformed}},
		{"nil packet", proxy, PortDHCP, nil, want{action: ActionIgnore, reason: ReasonMalformed}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, tc.cfg)
			resp, d, err := h.Reply(tc.req, tc.port)
			if err != nil {
				t.Fatalf("Reply error: %v (decision %+v)", err, d)
			}
			checkReply(t, tc.req, resp, d, tc.want)
		})
	}
}

func checkReply(t *testing.T, req, resp *dhcpv4.DHCPv4, d Decision, w want) {
	t.Helper()
	if d.Action != w.action || (w.reason != "" && d.Reason != w.reason) {
		t.Fatalf("decision = %s/%s (%s), want %s/%s", d.Action, d.Reason, d.Detail, w.action, w.reason)
	}
	if w.action == ActionIgnore {
		if resp != nil {
			t.Fatalf("ignored but a reply was built: %s", resp.Summary())
		}
		return
	}
	if resp == nil {
		t.Fatal("no reply")
	}
	// Round-trip through bytes: what the client sees.
	got, err := dhcpv4.FromBytes(resp.ToBytes())
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	checkCommon(t, req, got)
	if w.mt != dhcpv4.MessageTypeNone && got.MessageType() != w.mt {
		t.Errorf("message type %s, want %s", got.MessageType(), w.mt)
	}
	switch f := got.BootFileNameOption(); {
	case w.file == "-" && (f != "" || got.BootFileName != ""):
		t.Errorf("boot file %q / header %q, want none", f, got.BootFileName)
	case w.file != "" && w.file != "-" && (f != w.file || d.BootFile != w.file):
		t.Errorf("option 67 %q (decision %q), want %q", f, d.BootFile, w.file)
	}
	if w.yiaddr != "" && got.YourIPAddr.String() != w.yiaddr {
		t.Errorf("yiaddr %s, want %s", got.YourIPAddr, w.yiaddr)
	}
	checkVendor(t, got, w)
}

func checkCommon(t *testing.T, req, got *dhcpv4.DHCPv4) {
	t.Helper()
	if got.OpCode != dhcpv4.OpcodeBootReply || got.TransactionID != req.TransactionID ||
		got.ClientHWAddr.String() != req.ClientHWAddr.String() {
		t.Errorf("header: op %s xid %s chaddr %s", got.OpCode, got.TransactionID, got.ClientHWAddr)
	}
	if sid := got.ServerIdentifier(); sid.String() != testServer {
		t.Errorf("server identifier %s, want %s", sid, testServer)
	}
	if got.MessageType() != dhcpv4.MessageTypeNak && got.ServerIPAddr.String() != testServer {
		t.Errorf("siaddr %s, want %s", got.ServerIPAddr, testServer)
	}
}

func checkVendor(t *testing.T, got *dhcpv4.DHCPv4, w want) {
	t.Helper()
	vc := got.ClassIdentifier()
	if w.vendor == "-" && vc != "" {
		t.Errorf("option 60 %q, want none", vc)
	} else if w.vendor != "" && w.vendor != "-" && vc != w.vendor {
		t.Errorf("option 60 %q, want %q", vc, w.vendor)
	}
	o43 := got.GetOneOption(dhcpv4.OptionVendorSpecificInformation)
	if w.opt43 && !bytes.Equal(o43, []byte{6, 1, 8, 0xff}) {
		t.Errorf("option 43 % x, want 06 01 08 ff", o43)
	}
	if w.vendor == "HTTPClient" && o43 != nil {
		t.Errorf("HTTP boot reply carries option 43 % x", o43)
	}
	if o175 := got.GetOneOption(dhcpv4.GenericOptionCode(175)); w.ipxe != (o175 != nil) {
		t.Errorf("option 175 = % x, want present=%v", o175, w.ipxe)
	}
}

// TestFullOfferOptions checks the address options of a full-mode offer.
func TestFullOfferOptions(t *testing.T) {
	h := newTestHandler(t, testDHCPConfig(ModeFull))
	req := request(t, macKnown, dhcpv4.MessageTypeDiscover, pxeClient(iana.INTEL_X86PC)...)
	resp, _, err := h.Reply(req, PortDHCP)
	if err != nil || resp == nil {
		t.Fatalf("Reply: %v %v", resp, err)
	}
	checks := map[string][2]string{
		"netmask":  {net.IP(resp.SubnetMask()).String(), "255.255.255.0"},
		"router":   {fmt.Sprint(resp.Router()), "[10.77.0.254]"},
		"dns":      {fmt.Sprint(resp.DNS()), "[10.77.0.53]"},
		"lease":    {resp.IPAddressLeaseTime(0).String(), time.Hour.String()},
		"hostname": {resp.HostName(), "pc1"},
		"option66": {resp.TFTPServerName(), testServer},
		"header":   {resp.BootFileName, "undionly.kpxe"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %s, want %s", name, c[0], c[1])
		}
	}
}

// TestReplyEchoesClientUUID: option 97 goes back to PXE clients.
func TestReplyEchoesClientUUID(t *testing.T) {
	uuid := append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...)
	h := newTestHandler(t, testDHCPConfig(ModeProxy))
	req := request(t, macKnown, dhcpv4.MessageTypeDiscover,
		mods(pxeClient(iana.EFI_X86_64), dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))...)
	resp, _, err := h.Reply(req, PortDHCP)
	if err != nil || resp == nil {
		t.Fatalf("Reply: %v %v", resp, err)
	}
	if got := resp.GetOneOption(dhcpv4.OptionClientMachineIdentifier); !bytes.Equal(got, uuid) {
		t.Errorf("option 97 = % x, want % x", got, uuid)
	}
}

// TestLongBootURL: a script URL longer than the 128-byte header field goes
// in option 67 only (the library would truncate the header copy).
func TestLongBootURL(t *testing.T) {
	cfg := testDHCPConfig(ModeProxy)
	cfg.HTTPBase = "http://" + strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + ".example:7480"
	h := newTestHandler(t, cfg)
	req := request(t, macKnown, dhcpv4.MessageTypeDiscover, mods(pxeClient(iana.INTEL_X86PC), ipxeUserClass)...)
	resp, _, err := h.Reply(req, PortDHCP)
	if err != nil || resp == nil {
		t.Fatalf("Reply: %v %v", resp, err)
	}
	got, _ := dhcpv4.FromBytes(resp.ToBytes())
	if want := ScriptURL(cfg.HTTPBase, macKnown); got.BootFileNameOption() != want || got.BootFileName != "" {
		t.Errorf("option 67 %q header %q, want option %q and empty header", got.BootFileNameOption(), got.BootFileName, want)
	}
}

func TestReplyBadPort(t *testing.T) {
	h := newTestHandler(t, testDHCPConfig(ModeProxy))
	if _, _, err := h.Reply(request(t, macKnown, dhcpv4.MessageTypeDiscover), 68); err == nil {
		t.Fatal("port 68 accepted")
	}
}

func TestDHCPConfigValidate(t *testing.T) {
	ok := testDHCPConfig(ModeFull)
	cases := []struct {
		name string
		mut  func(*DHCPConfig)
		fail bool
	}{
		{"valid full", func(*DHCPConfig) {}, false},
		{"valid proxy", func(c *DHCPConfig) { c.Mode = ModeProxy; c.Netmask = "garbage" }, false},
		{"default needs server ip", func(c *DHCPConfig) { *c = DefaultDHCPConfig() }, true},
		{"bad mode", func(c *DHCPConfig) { c.Mode = "relay" }, true},
		{"server ip v6", func(c *DHCPConfig) { c.ServerIP = "fd77::1" }, true},
		{"server ip broadcast", func(c *DHCPConfig) { c.ServerIP = "255.255.255.255" }, true},
		{"base with query", func(c *DHCPConfig) { c.HTTPBase = testBase + "/?x=1" }, true},
		{"base with expansion", func(c *DHCPConfig) { c.HTTPBase = "http://${next-server}:7480" }, true},
		{"base trailing slash ok", func(c *DHCPConfig) { c.HTTPBase = testBase + "/" }, false},
		{"file with dotdot", func(c *DHCPConfig) { c.Files.BIOS = "../undionly.kpxe" }, true},
		{"file with space", func(c *DHCPConfig) { c.Files.UEFIX64 = "snp only.efi" }, true},
		{"file empty", func(c *DHCPConfig) { c.Files.UEFIARM64 = "" }, true},
		{"file in subdir ok", func(c *DHCPConfig) { c.Files.UEFIARM64 = "arm64/snponly.efi" }, false},
		{"policy unknown", func(c *DHCPConfig) { c.Unknown = "boot-anything" }, true},
		{"default group missing", func(c *DHCPConfig) { c.Unknown = UnknownDefaultGroup }, true},
		{"default group set", func(c *DHCPConfig) { c.Unknown, c.DefaultGroup = UnknownDefaultGroup, "guests" }, false},
		{"netmask holes", func(c *DHCPConfig) { c.Netmask = "255.0.255.0" }, true},
		{"netmask /31", func(c *DHCPConfig) { c.Netmask = "255.255.255.254" }, true},
		{"router off subnet", func(c *DHCPConfig) { c.Router = "10.78.0.1" }, true},
		{"range reversed", func(c *DHCPConfig) { c.RangeStart, c.RangeEnd = "10.77.0.199", "10.77.0.100" }, true},
		{"range half", func(c *DHCPConfig) { c.RangeEnd = "" }, true},
		{"range off subnet", func(c *DHCPConfig) { c.RangeEnd = "10.77.1.5" }, true},
		{"lease zero", func(c *DHCPConfig) { c.LeaseTime = 0 }, true},
		{"dns garbage", func(c *DHCPConfig) { c.DNS = []string{"dns.example"} }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.DNS = append([]string(nil), ok.DNS...)
			tc.mut(&c)
			if err := c.Validate(); (err != nil) != tc.fail {
				t.Fatalf("Validate() = %v, want failure %v", err, tc.fail)
			}
		})
	}
}

// TestMalformedBytes feeds garbage through the same path the server uses:
// FromBytes must fail cleanly or Reply must cope, never panic.
func TestMalformedBytes(t *testing.T) {
	valid := request(t, macKnown, dhcpv4.MessageTypeDiscover, pxeClient(iana.INTEL_X86PC)...).ToBytes()
	cases := map[string][]byte{
		"empty":            {},
		"one byte":         {1},
		"short header":     valid[:100],
		"no cookie":        valid[:236],
		"bad cookie":       append(append([]byte{}, valid[:236]...), 1, 2, 3, 4),
		"truncated option": append(append([]byte{}, valid[:240]...), 53, 10, 1),
		"hlen 255":         func() []byte { b := append([]byte{}, valid...); b[2] = 255; return b }(),
		"zero options":     append(append([]byte{}, valid[:240]...), 255),
		"random":           bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 150),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			parseAndReply(t, b)
		})
	}
}

// fuzzHandlers is built once: the fuzz body runs many times per process.
var fuzzHandlers = sync.OnceValue(func() []*Handler {
	deflt := testDHCPConfig(ModeProxy)
	deflt.Unknown, deflt.DefaultGroup = UnknownDefaultGroup, "guests"
	var hs []*Handler
	for _, c := range []DHCPConfig{testDHCPConfig(ModeProxy), testDHCPConfig(ModeFull), deflt} {
		h, err := NewHandler(c, newFakeCatalog(), nil)
		if err != nil {
			panic(err)
		}
		hs = append(hs, h)
	}
	return hs
})

// parseAndReply is the body of the fuzz target: any bytes, every mode and
// port; a reply that is built must serialise and parse again.
func parseAndReply(t testing.TB, b []byte) {
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		return
	}
	for _, h := range fuzzHandlers() {
		for _, port := range []int{PortDHCP, PortPXE} {
			resp, d, err := h.Reply(m, port)
			if err != nil {
				t.Fatalf("Reply error on %x: %v", b, err)
			}
			if (resp == nil) != (d.Action == ActionIgnore) {
				t.Fatalf("reply %v with decision %+v", resp != nil, d)
			}
			if resp != nil {
				if _, err := dhcpv4.FromBytes(resp.ToBytes()); err != nil {
					t.Fatalf("own reply does not parse: %v", err)
				}
			}
		}
	}
}

func FuzzParseAndReply(f *testing.F) {
	D := dhcpv4.MessageTypeDiscover
	seeds := []*dhcpv4.DHCPv4{
		request(f, macKnown, D, pxeClient(iana.INTEL_X86PC)...),
		request(f, macKnown, D, mods(pxeClient(iana.EFI_X86_64), ipxeUserClass)...),
		request(f, macUnknown, D, httpClient(iana.EFI_ARM64_HTTP)...),
		request(f, macKnown, dhcpv4.MessageTypeRequest, mods(ourServerID, pxeClient(iana.EFI_ARM64))...),
		request(f, macNoIP, D),
	}
	for _, s := range seeds {
		f.Add(s.ToBytes())
	}
	f.Add([]byte{1, 1, 6, 0})
	f.Fuzz(func(t *testing.T, b []byte) { parseAndReply(t, b) })
}
