package bootsvc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Options without typed helpers in the library.
var (
	optVendorSpecific = dhcpv4.OptionVendorSpecificInformation // 43
	optClientUUID     = dhcpv4.OptionClientMachineIdentifier   // 97
	optIPXEEncap      = dhcpv4.GenericOptionCode(175)          // iPXE's encapsulated settings
	pxeDiscoveryCtl   = []byte{6, 1, 8, 0xff}                  // 43: PXE_DISCOVERY_CONTROL = 8 (use the boot file), end
	ipxeNoPXEDHCP     = []byte{176, 1, 1}                      // 175.176 = 1: do not wait for proxyDHCP offers
)

// maxHeaderFile is what the BOOTP file field holds besides its NUL.
const maxHeaderFile = 127

// proxyReply answers with boot information only: no address (yiaddr
// 0.0.0.0), vendor class PXEClient and option 43 telling the ROM to take
// the boot file as given instead of running PXE boot-server discovery.
// It also answers PortPXE in full mode, where the client has its address
// already and only asks for the boot file.
func (h *Handler) proxyReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, c clientClass, d *Decision) (*dhcpv4.DHCPv4, Decision, error) {
	file, err := h.bootFile(c, d.MAC)
	if err != nil {
		d.Reason, d.Detail = ReasonArch, err.Error()
		return nil, *d, nil
	}
	resp, err := h.newReply(req, mt, dhcpv4.WithYourIP(net.IPv4zero))
	if err != nil {
		return nil, *d, err
	}
	setVendor(resp, c)
	h.setBootFile(resp, c, file, d)
	copyClientUUID(resp, req)
	return finish(resp, mt, ReasonProxy, d)
}

// fullReply hands out the client's fixed address, plus boot information
// when the client is a boot firmware. Unlike dnsmasq's reference setup it
// sends no vendor class PXEClient here: with one, iPXE treats the offer as
// proxyDHCP and asks port 4011 again (RECIPE.md, "175.176=1 is optional as
// long as you don't send option 60 PXEClient").
func (h *Handler) fullReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, c clientClass, t bootTarget, d *Decision) (*dhcpv4.DHCPv4, Decision, error) {
	ip, secs, err := h.address(req, mt, t, d)
	if err != nil {
		d.Reason, d.Detail = reasonOf(err), err.Error()
		return nil, *d, nil
	}
	d.IP = ip.String()
	if mt == dhcpv4.MessageTypeAck && !requestMatches(req, ip) {
		return h.nak(req, d)
	}
	resp, err := h.newReply(req, mt, h.leaseModifiers(ip, secs)...)
	if err != nil {
		return nil, *d, err
	}
	if t.known {
		resp.UpdateOption(dhcpv4.OptHostName(t.client.Hostname))
	}
	h.addBootInfo(resp, req, c, d)
	reason := ReasonFixedIP
	if !t.known || t.client.IP == "" {
		reason = ReasonDynamic
	}
	return finish(resp, mt, reason, d)
}

// addBootInfo adds the boot file for boot firmware; an OS DHCP client
// (udhcpc in the initramfs) gets the address alone. An architecture we have
// no binary for still gets its address: the firmware will try its next
// boot device, which beats no network at all.
func (h *Handler) addBootInfo(resp, req *dhcpv4.DHCPv4, c clientClass, d *Decision) {
	if !c.pxe && !c.http && !c.ipxe {
		return
	}
	file, err := h.bootFile(c, d.MAC)
	if err != nil {
		d.Detail = "no boot file: " + err.Error()
		return
	}
	if c.http {
		setVendor(resp, c) // UEFI HTTP boot ignores offers without HTTPClient
	}
	if c.ipxe {
		resp.UpdateOption(dhcpv4.OptGeneric(optIPXEEncap, ipxeNoPXEDHCP))
	}
	h.setBootFile(resp, c, file, d)
	copyClientUUID(resp, req)
}

// fixedIP is the client's catalogue address.
func (h *Handler) fixedIP(t bootTarget) (netip.Addr, error) {
	ip, err := netip.ParseAddr(t.client.IP)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("catalogue IP %q of %s is not IPv4", t.client.IP, t.client.MAC)
	}
	if !h.net.subnet.Contains(ip) || ip == h.net.server {
		return netip.Addr{}, fmt.Errorf("%w: %s is not a client address on %s", errOutsideSubnet, ip, h.net.subnet)
	}
	return ip, nil
}

var errOutsideSubnet = errors.New("outside subnet")

func reasonOf(err error) Reason {
	switch {
	case errors.Is(err, ErrNoLease):
		return ReasonNoLease
	case errors.Is(err, errOutsideSubnet):
		return ReasonOutsideSubnet
	}
	return ReasonMalformed
}

// requestMatches: a REQUEST must ask for the client's own address, via
// option 50 (selecting, init-reboot) or ciaddr (renewing); asking for none
// is accepted.
func requestMatches(req *dhcpv4.DHCPv4, ip netip.Addr) bool {
	want := req.RequestedIPAddress()
	if want == nil || want.IsUnspecified() {
		want = req.ClientIPAddr
	}
	return want == nil || want.IsUnspecified() || want.Equal(netIP(ip))
}

// nak tells a client that asked for a foreign address to start over; it
// will DISCOVER and be offered its own.
func (h *Handler) nak(req *dhcpv4.DHCPv4, d *Decision) (*dhcpv4.DHCPv4, Decision, error) {
	resp, err := h.newReply(req, dhcpv4.MessageTypeNak,
		dhcpv4.WithOption(dhcpv4.OptMessage("requested address is not this client's")))
	if err != nil {
		return nil, *d, err
	}
	d.Action, d.Reason, d.Detail = ActionNak, ReasonWrongAddress, "asked for "+req.RequestedIPAddress().String()
	return resp, *d, nil
}

func (h *Handler) leaseModifiers(ip netip.Addr, secs uint32) []dhcpv4.Modifier {
	mask := net.CIDRMask(h.net.subnet.Bits(), 32)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithYourIP(netIP(ip)),
		dhcpv4.WithNetmask(mask),
		dhcpv4.WithLeaseTime(secs),
	}
	if h.net.router.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(netIP(h.net.router))))
	}
	if len(h.net.dns) > 0 {
		ips := make([]net.IP, len(h.net.dns))
		for i, a := range h.net.dns {
			ips[i] = netIP(a)
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(ips...)))
	}
	return mods
}

// newReply builds the common part: message type, our server identifier
// and siaddr, with the client identifier and relay information copied as
// RFC 6842 and RFC 3046 require (NewReplyFromRequest does that).
func (h *Handler) newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	server := netIP(h.net.server)
	base := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(server),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, append(base, mods...)...)
	if err != nil {
		return nil, fmt.Errorf("dhcp: build %s: %w", mt, err)
	}
	return resp, nil
}

// setVendor: UEFI HTTP boot requires "HTTPClient" in the reply; PXE ROMs
// take "PXEClient" plus option 43 as the sign of a proxyDHCP/boot server.
func setVendor(resp *dhcpv4.DHCPv4, c clientClass) {
	if c.http && !c.ipxe {
		resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
		return
	}
	resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	resp.UpdateOption(dhcpv4.OptGeneric(optVendorSpecific, pxeDiscoveryCtl))
}

// setBootFile puts the file in option 67 and, where it fits, in the BOOTP
// header field that older PXE ROMs read instead. TFTP boots also get option
// 66, which some ROMs prefer over siaddr.
func (h *Handler) setBootFile(resp *dhcpv4.DHCPv4, c clientClass, file string, d *Decision) {
	resp.UpdateOption(dhcpv4.OptBootFileName(file))
	if len(file) <= maxHeaderFile {
		resp.BootFileName = file
	}
	if !c.ipxe && !c.http {
		resp.UpdateOption(dhcpv4.OptTFTPServerName(h.net.server.String()))
	}
	d.BootFile = file
}

// copyClientUUID echoes option 97: the PXE spec requires it in replies to
// PXE clients, and some Intel ROMs drop offers without it.
func copyClientUUID(resp, req *dhcpv4.DHCPv4) {
	if v := req.GetOneOption(optClientUUID); v != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(optClientUUID, v))
	}
}

func finish(resp *dhcpv4.DHCPv4, mt dhcpv4.MessageType, r Reason, d *Decision) (*dhcpv4.DHCPv4, Decision, error) {
	d.Action, d.Reason = ActionAck, r
	if mt == dhcpv4.MessageTypeOffer {
		d.Action = ActionOffer
	}
	return resp, *d, nil
}
