package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The client side, only as far as the Linux kernel needs it: negotiate an
// export and hand the socket over (initsys.NBDAttach). Transmission is the
// kernel's business, so there is no read path here.

// DialTimeout bounds the TCP connect and the whole negotiation of Dial
// when ctx has no earlier deadline: a server that accepts and then says
// nothing must not hold a booting machine.
const DialTimeout = 10 * time.Second

// Transmission flags a client may test in ClientConn.Flags.
const (
	FlagReadOnly     = tflagReadOnly
	FlagCanMultiConn = tflagCanMultiConn
)

// ErrUnknownExport is wrapped by Dial's error when the server has no
// export of the requested name.
var ErrUnknownExport = errors.New("nbd: unknown export")

// ClientConn is a connection that has finished negotiation and is ready
// for transmission: the next bytes on Conn are the client's first request.
type ClientConn struct {
	Conn   *net.TCPConn
	Size   int64  // export size in bytes, as the server announced it
	Flags  uint16 // transmission flags (NBD_FLAG_*)
	Export string
	Addr   string
	// BlockSize is the server's preferred block size (NBD_INFO_BLOCK_SIZE),
	// or 0 if it did not say (NBD_OPT_EXPORT_NAME, or an older server).
	BlockSize uint32
	// Description is the server's NBD_INFO_DESCRIPTION, if it sent one.
	// Shoal's servers put the resolved image version there, which lets a
	// client check that two servers serve the same bytes under one name.
	Description string
}

// ReadOnly reports whether the server announced the export read-only.
func (c *ClientConn) ReadOnly() bool { return c.Flags&FlagReadOnly != 0 }

// Close closes the connection without the protocol's goodbye; once the
// kernel owns the socket, it says goodbye itself.
func (c *ClientConn) Close() error { return c.Conn.Close() }

// Dial connects to addr and negotiates export with the fixed newstyle
// handshake: NBD_OPT_GO asking for the block sizes, or, from a server that
// does not know GO, NBD_OPT_EXPORT_NAME (whose only answer to an unknown
// export is closing the connection). ctx bounds connect and negotiation;
// without a deadline of its own, DialTimeout applies.
func Dial(ctx context.Context, addr, export string) (*ClientConn, error) {
	if len(export) > maxNameLen {
		return nil, fmt.Errorf("nbd: export name of %d bytes over the %d-byte limit", len(export), maxNameLen)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DialTimeout)
		defer cancel()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	tc := nc.(*net.TCPConn)
	// The deadline covers negotiation; cancelling ctx unblocks it too.
	dl, _ := ctx.Deadline()
	_ = tc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = tc.SetDeadline(time.Unix(1, 0)) })
	cc := &ClientConn{Conn: tc, Export: export, Addr: addr}
	err = cc.negotiate()
	stop()
	if err == nil {
		err = tc.SetDeadline(time.Time{})
	}
	if err != nil {
		tc.Close()
		if ctx.Err() != nil && !errors.Is(err, ErrUnknownExport) {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, fmt.Errorf("nbd: %s export %q: %w", addr, export, err)
	}
	return cc, nil
}

// negotiate reads the greeting, sends the client flags and enters
// transmission. Reads are unbuffered: nothing may be left in a buffer when
// the socket goes to the kernel.
func (c *ClientConn) negotiate() error {
	var g [18]byte
	if _, err := io.ReadFull(c.Conn, g[:]); err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if m := binary.BigEndian.Uint64(g[0:]); m != magicNBD {
		return fmt.Errorf("not an NBD server (greeting magic %#x)", m)
	}
	if m := binary.BigEndian.Uint64(g[8:]); m != magicIHaveOpt {
		return fmt.Errorf("oldstyle NBD server (magic %#x); only newstyle is supported", m)
	}
	hflags := binary.BigEndian.Uint16(g[16:])
	if hflags&flagFixedNewstyle == 0 {
		return errors.New("server does not speak fixed newstyle")
	}
	cflags := uint32(clientFlagFixedNewstyle)
	if hflags&flagNoZeroes != 0 {
		cflags |= clientFlagNoZeroes
	}
	if _, err := c.Conn.Write(binary.BigEndian.AppendUint32(nil, cflags)); err != nil {
		return fmt.Errorf("send client flags: %w", err)
	}
	err := c.optGo()
	if errors.Is(err, errOptUnsupported) {
		return c.optExportName(cflags&clientFlagNoZeroes != 0)
	}
	return err
}

var errOptUnsupported = errors.New("option not supported")

// optGo sends NBD_OPT_GO and reads replies up to the final one.
func (c *ClientConn) optGo() error {
	data := binary.BigEndian.AppendUint32(nil, uint32(len(c.Export)))
	data = append(data, c.Export...)
	data = binary.BigEndian.AppendUint16(data, 2)
	data = binary.BigEndian.AppendUint16(data, infoBlockSize)
	data = binary.BigEndian.AppendUint16(data, infoDescription)
	if err := c.sendOpt(optGo, data); err != nil {
		return err
	}
	gotExport := false
	// A server sends a few infos per GO; 64 bounds a broken one.
	for range 64 {
		typ, data, err := c.readOptReply(optGo)
		if err != nil {
			return err
		}
		switch {
		case typ == repAck:
			if !gotExport {
				return errors.New("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT")
			}
			return nil
		case typ == repInfo:
			gotExport = c.info(data) || gotExport
		case typ == repErrUnsup:
			return errOptUnsupported
		case typ == repErrUnknown:
			return fmt.Errorf("%w %q (server says: %s)", ErrUnknownExport, c.Export, data)
		case typ&(1<<31) != 0:
			return fmt.Errorf("NBD_OPT_GO refused: error %d (server says: %s)", typ&^(1<<31), data)
		}
		// Other reply types are ignorable by the protocol's rules.
	}
	return errors.New("NBD_OPT_GO: no final reply after 64")
}

// info records one NBD_REP_INFO; it reports whether it was
// NBD_INFO_EXPORT, the one a client must see.
func (c *ClientConn) info(data []byte) bool {
	if len(data) < 2 {
		return false
	}
	switch binary.BigEndian.Uint16(data) {
	case infoExport:
		if len(data) != 12 {
			return false
		}
		c.Size = int64(binary.BigEndian.Uint64(data[2:]))
		c.Flags = binary.BigEndian.Uint16(data[10:])
		return c.Size >= 0
	case infoBlockSize:
		if len(data) == 14 {
			c.BlockSize = binary.BigEndian.Uint32(data[6:])
		}
	case infoDescription:
		c.Description = string(data[2:])
	}
	return false
}

// optExportName is the pre-GO way in. The server answers an unknown name
// by closing the connection, so EOF here means exactly that.
func (c *ClientConn) optExportName(noZeroes bool) error {
	if err := c.sendOpt(optExportName, []byte(c.Export)); err != nil {
		return err
	}
	b := make([]byte, 10, 134)
	if !noZeroes {
		b = b[:134]
	}
	if _, err := io.ReadFull(c.Conn, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w %q (server closed the connection on NBD_OPT_EXPORT_NAME)", ErrUnknownExport, c.Export)
		}
		return fmt.Errorf("NBD_OPT_EXPORT_NAME: %w", err)
	}
	c.Size = int64(binary.BigEndian.Uint64(b))
	c.Flags = binary.BigEndian.Uint16(b[8:])
	if c.Size < 0 {
		return fmt.Errorf("NBD_OPT_EXPORT_NAME: size %d", uint64(c.Size))
	}
	return nil
}

func (c *ClientConn) sendOpt(opt uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	if _, err := c.Conn.Write(append(b, data...)); err != nil {
		return fmt.Errorf("send option %d: %w", opt, err)
	}
	return nil
}

// readOptReply reads one option reply to opt; data is bounded like the
// server bounds options.
func (c *ClientConn) readOptReply(opt uint32) (typ uint32, data []byte, err error) {
	var h [20]byte
	if _, err := io.ReadFull(c.Conn, h[:]); err != nil {
		return 0, nil, fmt.Errorf("option %d: read reply: %w", opt, err)
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != magicOptReply {
		return 0, nil, fmt.Errorf("option %d: reply magic %#x", opt, m)
	}
	if got := binary.BigEndian.Uint32(h[8:]); got != opt {
		return 0, nil, fmt.Errorf("reply for option %d, sent %d", got, opt)
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxOptionLen {
		return 0, nil, fmt.Errorf("option %d: reply of %d bytes", opt, n)
	}
	data = make([]byte, n)
	if _, err := io.ReadFull(c.Conn, data); err != nil {
		return 0, nil, fmt.Errorf("option %d: read reply data: %w", opt, err)
	}
	return binary.BigEndian.Uint32(h[12:]), data, nil
}
