//go:build linux

package initsys

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file speaks just enough rtnetlink to add an IPv4 address and a
// default route. The classic ioctls would do for the address, but
// SIOCADDRT needs struct rtentry, whose layout x/sys does not provide;
// one small netlink path for both keeps it uniform and gives us the
// prefix length and the onlink flag directly.

// setLinkUp sets IFF_UP on ifname with SIOCGIFFLAGS/SIOCSIFFLAGS.
func setLinkUp(ifname string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("link %s up: socket: %w", ifname, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return fmt.Errorf("link %s up: %w", ifname, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("link %s up: SIOCGIFFLAGS: %w", ifname, err)
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("link %s up: SIOCSIFFLAGS: %w", ifname, err)
	}
	return nil
}

// addAddr4 adds ip/mask (with its broadcast address) to the interface.
// An address that is already there is fine.
func addAddr4(ifindex int, ip net.IP, mask net.IPMask) error {
	ip4 := ip.To4()
	ones, _ := mask.Size()
	brd := make(net.IP, 4)
	for i := range brd {
		brd[i] = ip4[i] | ^mask[len(mask)-4+i]
	}
	msg := unix.IfAddrmsg{Family: unix.AF_INET, Prefixlen: uint8(ones), Scope: unix.RT_SCOPE_UNIVERSE, Index: uint32(ifindex)}
	body := structBytes(unsafe.Pointer(&msg), unix.SizeofIfAddrmsg)
	body = appendAttr(body, unix.IFA_LOCAL, ip4)
	body = appendAttr(body, unix.IFA_ADDRESS, ip4)
	body = appendAttr(body, unix.IFA_BROADCAST, brd)
	err := netlinkDo(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
	if err != nil && err != unix.EEXIST {
		return fmt.Errorf("add address %s/%d: RTM_NEWADDR: %w", ip4, ones, err)
	}
	return nil
}

// addDefaultRoute4 sets the default route via gw out of ifindex, replacing
// any other default. onlink says gw is reachable although outside the
// interface's subnet (a /32 lease).
func addDefaultRoute4(ifindex int, gw net.IP, onlink bool) error {
	msg := unix.RtMsg{
		Family:   unix.AF_INET,
		Table:    unix.RT_TABLE_MAIN,
		Protocol: unix.RTPROT_DHCP,
		Scope:    unix.RT_SCOPE_UNIVERSE,
		Type:     unix.RTN_UNICAST,
	}
	if onlink {
		msg.Flags = unix.RTNH_F_ONLINK
	}
	body := structBytes(unsafe.Pointer(&msg), unix.SizeofRtMsg)
	body = appendAttr(body, unix.RTA_GATEWAY, gw.To4())
	body = appendAttr(body, unix.RTA_OIF, binary.NativeEndian.AppendUint32(nil, uint32(ifindex)))
	if err := netlinkDo(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body); err != nil {
		return fmt.Errorf("add default route via %s: RTM_NEWROUTE: %w", gw, err)
	}
	return nil
}

func structBytes(p unsafe.Pointer, n int) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(p), n)...)
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// netlinkDo sends one rtnetlink request and waits (at most 5 s) for its
// acknowledgement, returning the kernel's errno if it refused.
func netlinkDo(typ, flags uint16, body []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("bind", err)
	}
	const seq = 1
	hdr := unix.NlMsghdr{
		Len:   uint32(unix.SizeofNlMsghdr + len(body)),
		Type:  typ,
		Flags: flags | unix.NLM_F_REQUEST | unix.NLM_F_ACK,
		Seq:   seq,
	}
	msg := append(structBytes(unsafe.Pointer(&hdr), unix.SizeofNlMsghdr), body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("sendto", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return os.NewSyscallError("recvfrom", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("parse netlink reply: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return fmt.Errorf("short netlink error message")
			}
			if errno := int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
				return unix.Errno(-errno)
			}
			return nil
		}
	}
}
