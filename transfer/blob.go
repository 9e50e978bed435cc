package transfer

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// PieceLengthFor picks the piece length by size: 1 MiB up to 1 GiB, 4 MiB
// above (fewer hashes for big images, still fine-grained for delta sync).
func PieceLengthFor(size int64) int64 {
	if size > 1<<30 {
		return 4 << 20
	}
	return 1 << 20
}

var blobIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidID reports whether id is a well-formed blob id; store paths are
// built only from ids that pass, so an id can never name another path.
func ValidID(id string) bool { return blobIDRE.MatchString(id) }

// Ingest copies r into dir as a new blob: it hashes the content (sha256
// for the id, sha1 per piece for the metainfo) in one pass while writing a
// temporary file, then renames it to dir/<id>. progress, if set, is called
// with the bytes written so far. size is the expected length, or -1.
func Ingest(dir string, r io.Reader, size int64, progress func(int64)) (catalog.Blob, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return catalog.Blob{}, err
	}
	tmp, err := os.CreateTemp(dir, ".ingest-*")
	if err != nil {
		return catalog.Blob{}, err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	pl := PieceLengthFor(size)
	h := newPieceHasher(pl)
	n, err := io.Copy(io.MultiWriter(tmp, h), progressReader{r, progress, new(int64)})
	if err == nil {
		// On disk before the catalogue can list it: this node may be the
		// only holder for a while.
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return catalog.Blob{}, fmt.Errorf("ingest: %w", err)
	}
	if size >= 0 && n != size {
		return catalog.Blob{}, fmt.Errorf("ingest: got %d bytes, expected %d (upload cut short?)", n, size)
	}
	if size < 0 && PieceLengthFor(n) != pl {
		// Unknown size guessed the piece length wrong: hash again.
		return ingestFile(dir, tmp.Name())
	}
	b, err := h.blob(n)
	if err != nil {
		return catalog.Blob{}, err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, b.ID)); err != nil {
		return catalog.Blob{}, err
	}
	return b, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func ingestFile(dir, path string) (catalog.Blob, error) {
	f, err := os.Open(path)
	if err != nil {
		return catalog.Blob{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return catalog.Blob{}, err
	}
	return Ingest(dir, f, st.Size(), nil)
}

// pieceHasher computes the sha256 of everything and the sha1 of each piece.
type pieceHasher struct {
	pl     int64
	all    hashWriter
	piece  hashWriter
	inCur  int64
	pieces []byte
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
	Reset()
}

func newPieceHasher(pl int64) *pieceHasher {
	return &pieceHasher{pl: pl, all: sha256.New(), piece: sha1.New()}
}

func (h *pieceHasher) Write(p []byte) (int, error) {
	n := len(p)
	h.all.Write(p)
	for len(p) > 0 {
		take := min(int64(len(p)), h.pl-h.inCur)
		h.piece.Write(p[:take])
		h.inCur += take
		p = p[take:]
		if h.inCur == h.pl {
			h.pieces = h.piece.Sum(h.pieces)
			h.piece.Reset()
			h.inCur = 0
		}
	}
	return n, nil
}

func (h *pieceHasher) blob(size int64) (catalog.Blob, error) {
	if h.inCur > 0 {
		h.pieces = h.piece.Sum(h.pieces)
	}
	id := hex.EncodeToString(h.all.Sum(nil))
	info := metainfo.Info{Name: id, PieceLength: h.pl, Length: size, Pieces: h.pieces}
	return BlobFromInfo(id, info)
}

// BlobFromInfo wraps an info dictionary as a catalogue blob.
func BlobFromInfo(id string, info metainfo.Info) (catalog.Blob, error) {
	ib, err := bencode.Marshal(info)
	if err != nil {
		return catalog.Blob{}, err
	}
	sum := sha1.Sum(ib)
	return catalog.Blob{ID: id, Size: info.Length, PieceLength: info.PieceLength,
		InfoHash: hex.EncodeToString(sum[:]), Info: ib}, nil
}

// Info decodes and checks a blob's info dictionary: it must describe one
// file named by the blob id, of the blob's size and piece length.
func Info(b catalog.Blob) (metainfo.Info, error) {
	var info metainfo.Info
	if b.PieceLength <= 0 || b.Size < 0 {
		return info, fmt.Errorf("blob %s: piece length %d, size %d", b.ID, b.PieceLength, b.Size)
	}
	if err := bencode.Unmarshal(b.Info, &info); err != nil {
		return info, fmt.Errorf("blob %s: info: %w", b.ID, err)
	}
	switch {
	case info.Name != b.ID || len(info.Files) != 0:
		return info, fmt.Errorf("blob %s: info must describe one file named by the id", b.ID)
	case info.Length != b.Size || info.PieceLength != b.PieceLength:
		return info, fmt.Errorf("blob %s: info length/piece length differ from the blob's", b.ID)
	case int64(info.NumPieces()) != (b.Size+b.PieceLength-1)/b.PieceLength:
		return info, errors.New("blob " + b.ID + ": wrong number of piece hashes")
	}
	return info, nil
}

type progressReader struct {
	r    io.Reader
	f    func(int64)
	done *int64
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	*p.done += int64(n)
	if p.f != nil && n > 0 {
		p.f(*p.done)
	}
	return n, err
}
