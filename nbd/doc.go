// Package nbd serves image versions read-only over the Network Block Device
// protocol, so that a diskless client's initramfs (stock nbd-client, or the
// shoal agent) can mount its root from any node.
//
// It speaks the "fixed newstyle" handshake on one port (DefaultPort, 10809)
// with NBD_OPT_EXPORT_NAME, NBD_OPT_LIST, NBD_OPT_INFO, NBD_OPT_GO and
// NBD_OPT_ABORT; every other option (TLS, structured replies, metadata
// contexts) is answered NBD_REP_ERR_UNSUP, so clients fall back to simple
// replies. In transmission it answers NBD_CMD_READ, NBD_CMD_FLUSH and
// NBD_CMD_DISC; anything that would write gets EPERM. Replies come in
// request order on each connection; connections are served concurrently.
// Sizes are announced rounded up to 4 KiB, the padding reading as zeros,
// because both the Linux client and qemu lose or choke on a partial block.
//
// The package owns only the wire protocol. Which exports exist, and the
// bytes behind them, come from an Exports the caller supplies; it is asked
// at negotiation time, so a newly activated image version is exported
// without a restart, and a client keeps the version it negotiated for as
// long as its connection lives.
//
// Protocol reference: doc/proto.md in the NetworkBlockDevice/nbd repository.
package nbd
