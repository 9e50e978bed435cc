package nbd

// Wire constants from the NBD protocol (doc/proto.md). Only what this
// server sends or recognises is named here.

// DefaultPort is the IANA-assigned NBD port, where clients expect the
// newstyle handshake.
const DefaultPort = 10809

const (
	magicNBD         = 0x4e42444d41474943 // "NBDMAGIC"
	magicIHaveOpt    = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply    = 0x0003e889045565a9
	magicRequest     = 0x25609513
	magicSimpleReply = 0x67446698
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	clientFlagFixedNewstyle = 1 << 0
	clientFlagNoZeroes      = 1 << 1
	clientFlagsKnown        = clientFlagFixedNewstyle | clientFlagNoZeroes
)

// Transmission flags. A read-only export that several connections may
// share safely (there is nothing to keep coherent).
const (
	tflagHasFlags     = 1 << 0
	tflagReadOnly     = 1 << 1
	tflagSendFlush    = 1 << 2
	tflagCanMultiConn = 1 << 8

	transmissionFlags = tflagHasFlags | tflagReadOnly | tflagSendFlush | tflagCanMultiConn
)

// Options.
const (
	optExportName = 1
	optAbort      = 2
	optList       = 3
	optStartTLS   = 5
	optInfo       = 6
	optGo         = 7
)

// Option reply types; errors have bit 31 set.
const (
	repAck        = 1
	repServer     = 2
	repInfo       = 3
	repErrUnsup   = 1<<31 + 1
	repErrInvalid = 1<<31 + 3
	repErrUnknown = 1<<31 + 6
)

// Information types in NBD_REP_INFO replies.
const (
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3
)

// Commands.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6
)

// Error values in simple replies (Linux errno numbers, as the protocol
// fixes them).
const (
	errPerm  = 1
	errIO    = 5
	errInval = 22
)

// Limits.
const (
	// maxOptionLen bounds one option's data. The longest legitimate one is
	// NBD_OPT_GO: a 4096-byte name plus a short list of info requests.
	maxOptionLen = 64 << 10
	// maxNameLen is the protocol's limit on strings.
	maxNameLen = 4096
	// maxRequestLen bounds one read (and the write payload we are willing
	// to read and discard); it is also the maximum block size we announce.
	// The Linux client sends at most max_sectors_kb (usually 128 KiB to
	// a few MiB) per request.
	maxRequestLen = 32 << 20
	// preferredBlockSize is what we suggest clients use; squashfs and ext4
	// pages are 4 KiB.
	preferredBlockSize = 4096
)
