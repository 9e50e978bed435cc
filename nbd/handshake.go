package nbd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
)

// errClientDone ends a connection the client closed properly (NBD_OPT_ABORT,
// NBD_CMD_DISC, or EOF between messages): nothing worth a warning.
var errClientDone = errors.New("client done")

// conn is one client connection: buffered both ways, since every message is
// a handful of small fixed fields.
type conn struct {
	c        net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	log      *slog.Logger
	noZeroes bool
	buf      []byte // read buffer, reused across requests
}

// negotiate runs the fixed newstyle handshake until the client picks an
// export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) or leaves.
func (c *conn) negotiate(exports Exports) (Export, error) {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], magicNBD)
	binary.BigEndian.PutUint64(hello[8:], magicIHaveOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	c.w.Write(hello[:])
	if err := c.w.Flush(); err != nil {
		return Export{}, fmt.Errorf("send greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.r, cf[:]); err != nil {
		return Export{}, fmt.Errorf("read client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^clientFlagsKnown != 0 {
		// The protocol says the server MUST close on flags it does not know.
		return Export{}, fmt.Errorf("unknown client flags %#x", flags)
	}
	c.noZeroes = flags&clientFlagNoZeroes != 0

	// Each option costs the client a round trip and a few bytes of ours;
	// the handshake deadline bounds how many it can send.
	for {
		opt, data, err := c.readOption()
		if err != nil {
			return Export{}, err
		}
		exp, done, err := c.handleOption(exports, opt, data)
		if err != nil || done {
			return exp, err
		}
		if err := c.w.Flush(); err != nil {
			return Export{}, fmt.Errorf("send option reply: %w", err)
		}
	}
}

// readOption reads one option header and its data. An option whose data is
// longer than any option this server knows is taken as garbage or abuse.
func (c *conn) readOption() (uint32, []byte, error) {
	var h [16]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, fmt.Errorf("client left during negotiation: %w", err)
		}
		return 0, nil, fmt.Errorf("read option header: %w", err)
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != magicIHaveOpt {
		return 0, nil, fmt.Errorf("bad option magic %#x", m)
	}
	opt := binary.BigEndian.Uint32(h[8:])
	n := binary.BigEndian.Uint32(h[12:])
	if n > maxOptionLen {
		return 0, nil, fmt.Errorf("option %d: data length %d over the %d-byte limit", opt, n, maxOptionLen)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(c.r, data); err != nil {
		return 0, nil, fmt.Errorf("option %d: read data: %w", opt, err)
	}
	return opt, data, nil
}

// handleOption answers one option. done is true when the client has chosen
// an export and transmission starts.
func (c *conn) handleOption(exports Exports, opt uint32, data []byte) (exp Export, done bool, err error) {
	switch opt {
	case optExportName:
		return c.optExportName(exports, data)
	case optAbort:
		// The client may not wait for the ack; a failed write is fine.
		c.reply(opt, repAck, nil)
		c.w.Flush()
		return Export{}, false, errClientDone
	case optList:
		if len(data) != 0 {
			c.replyErr(opt, repErrInvalid, "NBD_OPT_LIST takes no data")
			return Export{}, false, nil
		}
		for _, name := range exports.List() {
			b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
			c.reply(opt, repServer, append(b, name...))
		}
		c.reply(opt, repAck, nil)
		return Export{}, false, nil
	case optInfo, optGo:
		return c.optInfoGo(exports, opt, data)
	case optStartTLS:
		c.replyErr(opt, repErrUnsup, "TLS is not supported")
		return Export{}, false, nil
	default:
		// Structured replies, metadata contexts, extended headers: clients
		// fall back to simple replies when told these are unsupported.
		c.replyErr(opt, repErrUnsup, "option not supported")
		return Export{}, false, nil
	}
}

// optExportName is the old way in: no error reply is possible, so an
// unknown export ends the connection.
func (c *conn) optExportName(exports Exports, data []byte) (Export, bool, error) {
	name := string(data)
	exp, ok := lookup(exports, name)
	if !ok {
		return Export{}, false, fmt.Errorf("NBD_OPT_EXPORT_NAME: unknown export %q", name)
	}
	b := binary.BigEndian.AppendUint64(nil, uint64(exp.Size))
	b = binary.BigEndian.AppendUint16(b, transmissionFlags)
	if !c.noZeroes {
		b = append(b, make([]byte, 124)...)
	}
	c.w.Write(b)
	if err := c.w.Flush(); err != nil {
		return Export{}, false, fmt.Errorf("send export info: %w", err)
	}
	return exp, true, nil
}

// optInfoGo answers NBD_OPT_INFO and NBD_OPT_GO: the export's size and
// flags, block sizes always (minimum 1, so any client's I/O is fine), name
// and description when asked. GO then starts transmission.
func (c *conn) optInfoGo(exports Exports, opt uint32, data []byte) (Export, bool, error) {
	name, infos, ok := parseInfoRequest(data)
	if !ok {
		c.replyErr(opt, repErrInvalid, "malformed info request")
		return Export{}, false, nil
	}
	exp, ok := lookup(exports, name)
	if !ok {
		c.replyErr(opt, repErrUnknown, "unknown export")
		return Export{}, false, nil
	}
	for _, t := range infos {
		switch t {
		case infoName:
			c.reply(opt, repInfo, append(binary.BigEndian.AppendUint16(nil, infoName), exp.Name...))
		case infoDescription:
			if exp.Description != "" && len(exp.Description) <= maxNameLen {
				c.reply(opt, repInfo, append(binary.BigEndian.AppendUint16(nil, infoDescription), exp.Description...))
			}
		}
	}
	bs := binary.BigEndian.AppendUint16(nil, infoBlockSize)
	bs = binary.BigEndian.AppendUint32(bs, 1)
	bs = binary.BigEndian.AppendUint32(bs, preferredBlockSize)
	bs = binary.BigEndian.AppendUint32(bs, maxRequestLen)
	c.reply(opt, repInfo, bs)
	ei := binary.BigEndian.AppendUint16(nil, infoExport)
	ei = binary.BigEndian.AppendUint64(ei, uint64(exp.Size))
	ei = binary.BigEndian.AppendUint16(ei, transmissionFlags)
	c.reply(opt, repInfo, ei)
	c.reply(opt, repAck, nil)
	if opt == optInfo {
		return Export{}, false, nil
	}
	if err := c.w.Flush(); err != nil {
		return Export{}, false, fmt.Errorf("send NBD_OPT_GO reply: %w", err)
	}
	return exp, true, nil
}

// parseInfoRequest splits NBD_OPT_INFO/GO data: a 32-bit name length, the
// name, a 16-bit count and that many 16-bit information types.
func parseInfoRequest(data []byte) (name string, infos []uint16, ok bool) {
	if len(data) < 6 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(data)
	if n > maxNameLen || uint64(n)+6 > uint64(len(data)) {
		return "", nil, false
	}
	name = string(data[4 : 4+n])
	rest := data[4+n:]
	count := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*count {
		return "", nil, false
	}
	for i := range count {
		infos = append(infos, binary.BigEndian.Uint16(rest[2*i:]))
	}
	return name, infos, true
}

// lookup asks exports, refuses what cannot be served, and returns the
// export as clients see it: size padded, zeros past the image.
func lookup(exports Exports, name string) (Export, bool) {
	exp, ok := exports.Lookup(name)
	if !ok || exp.Size < 0 || exp.Size > math.MaxInt64-sizeAlign || exp.ReaderAt == nil {
		return Export{}, false
	}
	if exp.Name == "" {
		exp.Name = name
	}
	if padded := padSize(exp.Size); padded != exp.Size {
		exp.ReaderAt = paddedReader{r: exp.ReaderAt, size: exp.Size}
		exp.Size = padded
	}
	return exp, true
}

// reply buffers one option reply; negotiate flushes after each option.
func (c *conn) reply(opt, typ uint32, data []byte) {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], magicOptReply)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	c.w.Write(h[:])
	c.w.Write(data)
}

// replyErr sends an error reply with a message for the user, and logs it.
func (c *conn) replyErr(opt, typ uint32, msg string) {
	c.log.Debug("nbd option refused", "option", opt, "reply", typ&^(1<<31), "msg", msg)
	c.reply(opt, typ, []byte(msg))
}
