package bootsvc

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
)

// startDHCP serves h on a 127.0.0.1 high port standing for port, and stops
// it (checking Serve's result) at cleanup.
func startDHCP(t *testing.T, h *Handler, port int) *net.UDPAddr {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, conn, port) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after cancel", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not stop within 5 s of cancel")
		}
	})
	return conn.LocalAddr().(*net.UDPAddr)
}

// newClient is nclient4 over a plain UDP socket: no raw socket, no root.
func newClient(t *testing.T, mac string, server *net.UDPAddr) *nclient4.Client {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	hw, _ := net.ParseMAC(mac)
	cl, err := nclient4.NewWithConn(conn, hw, nclient4.WithServerAddr(server),
		nclient4.WithTimeout(time.Second), nclient4.WithRetry(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestServeFullDORA runs DISCOVER-OFFER-REQUEST-ACK over real UDP.
func TestServeFullDORA(t *testing.T) {
	srv := startDHCP(t, newTestHandler(t, testDHCPConfig(ModeFull)), PortDHCP)
	cl := newClient(t, macKnown, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := cl.Request(ctx, mods(pxeClient(iana.EFI_X86_64), ipxeUserClass, dhcpv4.WithNetboot)...)
	if err != nil {
		t.Fatalf("DORA: %v", err)
	}
	ack := lease.ACK
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "10.77.0.11" {
		t.Fatalf("ack %s yiaddr %s, want ACK 10.77.0.11", ack.MessageType(), ack.YourIPAddr)
	}
	if got, want := ack.BootFileNameOption(), ScriptURL(testBase, macKnown); got != want {
		t.Errorf("boot file %q, want %q", got, want)
	}
	if lease.Offer.YourIPAddr.String() != "10.77.0.11" {
		t.Errorf("offer yiaddr %s", lease.Offer.YourIPAddr)
	}
}

// TestServeProxyPXEPort: a PXE client that has its address asks the
// 4011-like port and gets boot information, no address.
func TestServeProxyPXEPort(t *testing.T) {
	h := newTestHandler(t, testDHCPConfig(ModeProxy))
	srv := startDHCP(t, h, PortPXE)
	cl := newClient(t, macKnown, srv)
	hw, _ := net.ParseMAC(macKnown)
	req, err := dhcpv4.New(mods(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP("10.77.0.150")), pxeClient(iana.EFI_X86_64))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := cl.SendAndRead(ctx, srv, req, nclient4.IsMessageType(dhcpv4.MessageTypeAck))
	if err != nil {
		t.Fatalf("proxy request: %v", err)
	}
	if ack.BootFileNameOption() != "snponly.efi" || !ack.YourIPAddr.IsUnspecified() || ack.ClassIdentifier() != "PXEClient" {
		t.Errorf("ack file %q yiaddr %s class %q", ack.BootFileNameOption(), ack.YourIPAddr, ack.ClassIdentifier())
	}
}

// TestServeIgnoresAndSurvivesGarbage: garbage and non-PXE packets get no
// answer, and the server still answers the next good packet.
func TestServeIgnoresAndSurvivesGarbage(t *testing.T) {
	srv := startDHCP(t, newTestHandler(t, testDHCPConfig(ModeProxy)), PortDHCP)
	raw, err := net.DialUDP("udp4", nil, srv)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, b := range [][]byte{{0xff}, make([]byte, 300), request(t, macKnown, dhcpv4.MessageTypeDiscover).ToBytes()} {
		if _, err := raw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	raw.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := raw.Read(make([]byte, 1500)); err == nil {
		t.Fatalf("got a %d-byte answer to garbage / non-PXE", n)
	}
	cl := newClient(t, macKnown, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offer, err := cl.DiscoverOffer(ctx, pxeClient(iana.INTEL_X86PC)...)
	if err != nil || offer.BootFileNameOption() != "undionly.kpxe" {
		t.Fatalf("offer after garbage: %v %v", offer, err)
	}
}

func TestServeBadPort(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := newTestHandler(t, testDHCPConfig(ModeProxy))
	if err := h.Serve(context.Background(), conn, 69); err == nil {
		t.Fatal("Serve accepted port 69")
	}
}

func TestReplyAddr(t *testing.T) {
	bcast := "255.255.255.255:68"
	cases := []struct {
		name   string
		giaddr string
		peer   net.Addr
		want   string
	}{
		{"no address yet", "", &net.UDPAddr{IP: net.IPv4zero, Port: 68}, bcast},
		{"server4 rewrote to broadcast", "", &net.UDPAddr{IP: net.IPv4bcast, Port: 68}, bcast},
		{"nil ip", "", &net.UDPAddr{Port: 68}, bcast},
		{"client has address", "", &net.UDPAddr{IP: net.ParseIP("10.77.0.150"), Port: 68}, "10.77.0.150:68"},
		{"pxe client on 4011 source", "", &net.UDPAddr{IP: net.ParseIP("10.77.0.150"), Port: 4011}, "10.77.0.150:4011"},
		{"relay", "10.1.0.1", &net.UDPAddr{IP: net.ParseIP("10.1.0.1"), Port: 67}, "10.1.0.1:67"},
		{"not udp", "", &net.IPAddr{IP: net.ParseIP("10.77.0.150")}, bcast},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := request(t, macKnown, dhcpv4.MessageTypeDiscover)
			if tc.giaddr != "" {
				req.GatewayIPAddr = net.ParseIP(tc.giaddr)
			}
			if got := ReplyAddr(req, tc.peer).String(); got != tc.want {
				t.Errorf("ReplyAddr = %s, want %s", got, tc.want)
			}
		})
	}
}
