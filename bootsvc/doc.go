// Package bootsvc will own what a booting machine talks to: proxyDHCP and
// full DHCP, TFTP for iPXE, HTTP boot scripts and the NBD export. Nothing is
// implemented yet (issues 4 and 5); it will read the catalogue through a
// small interface and never import raft.
package bootsvc
