package bootsvc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Errors of the file root. Their text is short on purpose: the TFTP library
// sends the error text to the client, and a client has no business learning
// server paths.
var (
	// ErrBadPath: the requested name is not acceptable (empty, "..",
	// control characters, backslashes, too long).
	ErrBadPath = errors.New("bad file name")
	// ErrFileNotFound: no such file inside the root, or it would resolve
	// outside the root (a symlink escape looks like a missing file).
	ErrFileNotFound = errors.New("file not found")
	// ErrNotRegular: the name is a directory, device, FIFO or socket.
	ErrNotRegular = errors.New("not a regular file")
)

// maxRequestPath bounds a requested name; TFTP's RRQ fits in one 512-byte
// datagram anyway and no boot file needs more.
const maxRequestPath = 255

// FileRoot serves regular files from one directory and never anything
// outside it. It is shared by TFTP and the HTTP boot-file route so both
// apply exactly the same rules.
//
// Containment is enforced by os.Root (Go 1.24+), which resolves every path
// component, symlinks included, relative to the opened directory and fails
// on any escape; CleanRequestPath additionally rejects ".." up front so the
// log says why.
type FileRoot struct {
	dir  string
	root *os.Root
}

// OpenFileRoot opens dir as a file root. The directory handle is held until
// Close, so renaming or replacing dir later does not redirect requests.
func OpenFileRoot(dir string) (*FileRoot, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("boot file root: %w", err)
	}
	return &FileRoot{dir: dir, root: r}, nil
}

// Dir is the directory the root was opened from (for logs).
func (r *FileRoot) Dir() string { return r.dir }

// Close releases the directory handle.
func (r *FileRoot) Close() error { return r.root.Close() }

// Open opens the regular file name (a client-supplied path) below the root
// and returns it with its size. The caller closes the file.
//
// The mode is checked with Stat before opening because opening a FIFO
// would block the transfer goroutine until a writer appears; it is checked
// again on the open descriptor so a swap in between cannot slip a
// directory or device through.
func (r *FileRoot) Open(name string) (*os.File, int64, error) {
	clean, err := CleanRequestPath(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := r.root.Stat(clean)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s", ErrFileNotFound, clean)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotRegular, clean)
	}
	f, err := r.root.Open(clean)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s", ErrFileNotFound, clean)
	}
	fi2, err := f.Stat()
	if err != nil || !fi2.Mode().IsRegular() || !os.SameFile(fi, fi2) {
		f.Close()
		return nil, 0, fmt.Errorf("%w: %s changed while opening", ErrNotRegular, clean)
	}
	return f, fi2.Size(), nil
}

// CleanRequestPath turns a client-supplied file name into a clean path
// relative to a root, or fails with ErrBadPath. Leading slashes are
// stripped because PXE ROMs and iPXE commonly ask for "/undionly.kpxe"
// meaning "at the TFTP root". A ".." component is rejected even where it
// would stay inside the root ("a/../b"): no boot client needs one, and
// refusing it outright is easier to reason about than cleaning it.
// Backslashes are rejected rather than translated: only Windows loaders
// send them, and shoal does not boot Windows.
func CleanRequestPath(name string) (string, error) {
	if len(name) > maxRequestPath {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrBadPath, len(name), maxRequestPath)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "", fmt.Errorf("%w: byte 0x%02x at offset %d", ErrBadPath, c, i)
		}
	}
	rel := strings.TrimLeft(name, "/")
	for _, part := range strings.Split(rel, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: %q contains \"..\"", ErrBadPath, name)
		}
	}
	clean := path.Clean(rel)
	if clean == "." || !fs.ValidPath(clean) {
		return "", fmt.Errorf("%w: %q names no file", ErrBadPath, name)
	}
	return clean, nil
}
