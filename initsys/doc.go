// Package initsys owns the PID-1 mechanics of the diskless shoal agent: what
// a busybox /init does in shell before handing over to the real OS (see
// shared/testenv/make-initrd.sh), done in Go without busybox.
//
// It mounts the pseudo file systems, loads kernel modules from
// modules.dep, brings up the network with DHCPv4, attaches a root image to
// a loop device, stacks a tmpfs overlay on it, and switches root. Each step
// is a small function with an error that names what failed and where; the
// agent decides the order and what to do on failure (usually Consolef and
// PowerOff). A typical sequence:
//
//	MountBasics()                      // /proc /sys /dev /run
//	AttachConsole()                    // fds 0-2, in case the cpio has no /dev/console
//	LoadModules("/", "virtio_pci", "virtio_net", "loop", "squashfs", "overlay")
//	lease, _ := NetUp(ctx, "", hostname, log)
//	... fetch the image into /run (tmpfs) or attach it over NBD ...
//	loop, _ := LoopAttach("/run/shoal-image/root.squashfs")
//	MountOverlayRoot(loop.Path, "squashfs", "/newroot", "/run/shoal", "")
//	loop.Close()                       // the mount now holds the device
//	SwitchRoot("/newroot", "/sbin/init", env)
//
// The kernel runs no module loader of its own in this initramfs (no
// /sbin/modprobe), so every module a later step needs, including ones the
// kernel would request itself (crc32c for ext4, when not built in), must
// be in the LoadModules list.
//
// Everything here is Linux only and, apart from the module-dependency
// parser, needs root. The tests that need root re-run the test binary in
// namespaces they create (unshare -m -p -f for the boot sequence, ip netns
// with dnsmasq for DHCP), so they never touch the host's mounts or network.
package initsys
