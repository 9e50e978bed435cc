package nbd

import (
	"io"
	"sort"
)

// Export is one read-only disk image a client may connect to.
//
// Clients see Size rounded up to a multiple of 4 KiB, the rounding reading
// as zeros (see padSize).
type Export struct {
	Name        string
	Size        int64 // bytes of image; ReaderAt is not read past it
	ReaderAt    io.ReaderAt
	Description string // optional, shown by clients that ask (NBD_INFO_DESCRIPTION)
}

// Exports is what the server asks, at each client's negotiation, which
// images exist. Implementations must be safe for concurrent use.
type Exports interface {
	// Lookup returns the export a client asked for by name.
	Lookup(name string) (Export, bool)
	// List returns the names NBD_OPT_LIST shows.
	List() []string
}

// ExportMap is a fixed set of exports keyed by name, for tests and for
// callers whose set does not change.
type ExportMap map[string]Export

// Lookup implements Exports.
func (m ExportMap) Lookup(name string) (Export, bool) {
	e, ok := m[name]
	if ok && e.Name == "" {
		e.Name = name
	}
	return e, ok
}

// List implements Exports, in name order.
func (m ExportMap) List() []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// sizeAlign is what an export's size is rounded up to on the wire. The
// Linux client's capacity is whole blocks (up to 4 KiB) and drops a partial
// one; qemu 7.2 rounds up to 512 and then hangs in qemu-img convert on a
// server that refuses the rounded tail. Zeros past the image suit both, and
// squashfs and ext4 images are 4 KiB multiples anyway.
const sizeAlign = 4096

func padSize(size int64) int64 {
	return (size + sizeAlign - 1) / sizeAlign * sizeAlign
}

// paddedReader reads r up to size and zeros from there on.
type paddedReader struct {
	r    io.ReaderAt
	size int64
}

func (p paddedReader) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	if off < p.size {
		want := int(min(int64(len(b)), p.size-off))
		var err error
		n, err = p.r.ReadAt(b[:want], off)
		if n < want {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	clear(b[n:])
	return len(b), nil
}
