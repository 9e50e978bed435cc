// Package initsys owns the PID-1 mechanics of the diskless shoal agent: what
// a busybox /init does in shell before handing over to the real OS (see
// shared/testenv/make-initrd.sh), done in Go without busybox.
//
// It mounts the pseudo file systems, loads kernel modules from
// modules.dep, brings up the network with DHCPv4, attaches a root image to
// a loop device, stacks a tmpfs overlay on it, and switches root. Each step
// is a small function with an error that names what failed and where; the
// agent decides the order and what to do on failure (usually Consolef and
// PowerOff).
//
// Everything here is Linux only and, apart from the module-dependency
// parser, needs root.
package initsys
