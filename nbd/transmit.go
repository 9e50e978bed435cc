package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// request is one transmission-phase request header.
type request struct {
	flags  uint16
	typ    uint16
	handle uint64
	offset uint64
	length uint32
}

// transmit answers requests in order until the client disconnects. Replies
// are flushed only when no further request is already buffered, so a
// client that pipelines gets its replies in batches.
func (c *conn) transmit(exp Export, onRead func(string, int)) error {
	for {
		req, err := c.readRequest()
		if err != nil {
			return err
		}
		if err := c.handle(exp, req, onRead); err != nil {
			return err
		}
		if c.r.Buffered() == 0 {
			if err := c.w.Flush(); err != nil {
				return fmt.Errorf("send reply: %w", err)
			}
		}
	}
}

func (c *conn) readRequest() (request, error) {
	var h [28]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return request{}, errClientDone // closed without NBD_CMD_DISC
		}
		return request{}, fmt.Errorf("read request: %w", err)
	}
	if m := binary.BigEndian.Uint32(h[0:]); m != magicRequest {
		return request{}, fmt.Errorf("bad request magic %#x", m)
	}
	return request{
		flags:  binary.BigEndian.Uint16(h[4:]),
		typ:    binary.BigEndian.Uint16(h[6:]),
		handle: binary.BigEndian.Uint64(h[8:]),
		offset: binary.BigEndian.Uint64(h[16:]),
		length: binary.BigEndian.Uint32(h[24:]),
	}, nil
}

// handle answers one request; an error ends the connection.
func (c *conn) handle(exp Export, req request, onRead func(string, int)) error {
	switch req.typ {
	case cmdRead:
		return c.read(exp, req, onRead)
	case cmdDisc:
		c.w.Flush()
		return errClientDone
	case cmdFlush:
		// Nothing is ever written, so there is nothing to flush.
		return c.simpleReply(req.handle, 0, nil)
	case cmdWrite:
		// The payload follows the header; skip it to stay in step. A larger
		// one than we would ever read cannot be skipped cheaply: hang up.
		if req.length > maxRequestLen {
			return fmt.Errorf("write of %d bytes to a read-only export", req.length)
		}
		if _, err := io.CopyN(io.Discard, c.r, int64(req.length)); err != nil {
			return fmt.Errorf("skip write payload: %w", err)
		}
		return c.simpleReply(req.handle, errPerm, nil)
	case cmdTrim, cmdWriteZeroes:
		return c.simpleReply(req.handle, errPerm, nil)
	default:
		c.log.Debug("nbd unknown command", "type", req.typ)
		return c.simpleReply(req.handle, errInval, nil)
	}
}

// read sends the requested bytes, or an error with no data: EINVAL when
// the range is outside the export or too long, EIO when the source fails.
func (c *conn) read(exp Export, req request, onRead func(string, int)) error {
	if req.length == 0 || req.length > maxRequestLen ||
		req.offset > uint64(exp.Size) || uint64(req.length) > uint64(exp.Size)-req.offset {
		return c.simpleReply(req.handle, errInval, nil)
	}
	if cap(c.buf) < int(req.length) {
		c.buf = make([]byte, req.length)
	}
	b := c.buf[:req.length]
	n, err := exp.ReaderAt.ReadAt(b, int64(req.offset))
	if n < len(b) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		c.log.Warn("nbd read failed", "offset", req.offset, "length", req.length, "err", err)
		return c.simpleReply(req.handle, errIO, nil)
	}
	if err := c.simpleReply(req.handle, 0, b); err != nil {
		return err
	}
	// A rare huge read should not pin its buffer for the connection's life.
	if cap(c.buf) > 1<<20 {
		c.buf = nil
	}
	if onRead != nil {
		onRead(exp.Name, len(b))
	}
	return nil
}

// simpleReply buffers a reply header and its data. Data larger than the
// buffer goes straight to the socket (bufio does so without copying).
func (c *conn) simpleReply(handle uint64, errno uint32, data []byte) error {
	var h [16]byte
	binary.BigEndian.PutUint32(h[0:], magicSimpleReply)
	binary.BigEndian.PutUint32(h[4:], errno)
	binary.BigEndian.PutUint64(h[8:], handle)
	c.w.Write(h[:])
	if _, err := c.w.Write(data); err != nil {
		return fmt.Errorf("send reply: %w", err)
	}
	return nil
}
