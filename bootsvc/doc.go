// Package bootsvc owns what a booting machine talks to before it has an
// operating system: DHCPv4 (proxyDHCP by default, full DHCP as an option),
// TFTP for the first-stage iPXE binaries, and the HTTP boot endpoints (the
// per-client iPXE script and the iPXE binaries for UEFI HTTP boot).
//
// The boot chain it implements (see shared DESIGN.md):
//
//	PXE ROM --DHCP--> boot file by architecture (TFTP, or HTTP for UEFI HTTP boot)
//	iPXE    --DHCP--> http://<node>/v1/boot/ipxe?mac=<mac>
//	iPXE    --HTTP--> script: kernel + initrd(s) from /v1/blobs/<id>, boot
//
// Every piece here is pure or takes its socket from the caller: nothing in
// this package binds to a real interface or reads configuration. The node
// package wires it: it opens the sockets (port 67 with SO_BINDTODEVICE and
// SO_BROADCAST via server4.NewIPv4UDPConn, 4011, 69), hands in a Catalog
// (the local replica, so booting a known client never needs the Raft
// leader) and mounts the HTTP handler.
//
// Anything that ends up inside an iPXE script (hostnames, kernel arguments,
// URLs, names) is validated and rejected if it could inject iPXE commands;
// it is never escaped, because iPXE has no quoting rules that would make
// escaping reliable across the iPXE versions found in the field.
//
// Not here yet: dynamic leases for full DHCP (they need a lease table in
// the catalogue, see ErrNoLease), the NBD export, the IPv6 router
// advertisement responder that spares iPXE a 16 s wait (RECIPE.md) and
// Prometheus metrics (Decision.Reason is the label to count by).
package bootsvc
