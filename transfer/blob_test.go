package transfer

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// Ingest must hash exactly as BitTorrent does, or no client would accept
// the pieces it serves.
func TestIngestMatchesBuildFromFilePath(t *testing.T) {
	const pl = 1 << 20
	if PieceLengthFor(pl*4) != pl {
		t.Fatalf("piece length for small blobs is %d, test assumes %d", PieceLengthFor(pl*4), pl)
	}
	for _, size := range []int{0, 1, pl - 1, pl, pl*3 + pl/2} {
		data := randomData(uint64(size), size)
		for _, known := range []bool{true, false} {
			dir := t.TempDir()
			n := int64(size)
			if !known {
				n = -1
			}
			b, err := Ingest(dir, bytes.NewReader(data), n, nil)
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			checkIngested(t, dir, data, b.ID)
			info, err := Info(b)
			if err != nil {
				t.Fatalf("size %d: Info: %v", size, err)
			}
			src := filepath.Join(t.TempDir(), "src")
			if err := os.WriteFile(src, data, 0o600); err != nil {
				t.Fatal(err)
			}
			want := metainfo.Info{PieceLength: pl}
			if err := want.BuildFromFilePath(src); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(info.Pieces, want.Pieces) || info.Length != want.Length || info.PieceLength != want.PieceLength {
				t.Errorf("size %d (known %v): pieces/length differ from BuildFromFilePath", size, known)
			}
			ih := sha1.Sum(b.Info)
			if b.InfoHash != hex.EncodeToString(ih[:]) {
				t.Errorf("size %d: info hash is not sha1 of the info", size)
			}
		}
	}
}

func checkIngested(t *testing.T, dir string, data []byte, id string) {
	t.Helper()
	want := sha256.Sum256(data)
	if id != hex.EncodeToString(want[:]) {
		t.Errorf("id %s is not the sha256 of the content", id)
	}
	got, err := os.ReadFile(filepath.Join(dir, id))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("stored file differs from the input (err %v)", err)
	}
}

func TestIngestSizeMismatch(t *testing.T) {
	dir := t.TempDir()
	data := randomData(7, 1000)
	for _, size := range []int64{999, 1001} {
		if _, err := Ingest(dir, bytes.NewReader(data), size, nil); err == nil {
			t.Errorf("size %d for 1000 bytes: no error", size)
		}
	}
	if _, err := Ingest(dir, iotest.ErrReader(os.ErrClosed), 10, nil); err == nil {
		t.Error("reader error: no error")
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Errorf("failed ingests left files behind: %v", left)
	}
}

func TestIngestProgress(t *testing.T) {
	data := randomData(3, 3<<20)
	var last int64
	if _, err := Ingest(t.TempDir(), bytes.NewReader(data), int64(len(data)), func(n int64) { last = n }); err != nil {
		t.Fatal(err)
	}
	if last != int64(len(data)) {
		t.Errorf("last progress %d, want %d", last, len(data))
	}
}

func TestValidID(t *testing.T) {
	good := strings.Repeat("ab", 32)
	if !ValidID(good) {
		t.Errorf("rejects %s", good)
	}
	for _, id := range []string{"", "../x", "..", strings.ToUpper(good), good[:63], good + "0",
		strings.Repeat("g", 64), "../" + good[3:], good[:62] + "/x", good[:63] + "\n"} {
		if ValidID(id) {
			t.Errorf("accepts %q", id)
		}
	}
}

// Info must refuse metainfo that does not describe the blob.
func TestInfoChecks(t *testing.T) {
	b := ingestData(t, t.TempDir(), randomData(1, 5000))
	bad := b
	bad.Size++
	if _, err := Info(bad); err == nil {
		t.Error("size mismatch accepted")
	}
	bad = b
	bad.ID = strings.Repeat("0", 64)
	if _, err := Info(bad); err == nil {
		t.Error("name mismatch accepted")
	}
	bad = b
	bad.InfoHash = strings.Repeat("0", 40)
	if _, err := checkBlob(bad); err == nil {
		t.Error("info hash mismatch accepted")
	}
	if _, err := checkBlob(b); err != nil {
		t.Errorf("good blob: %v", err)
	}
}

func TestCheckSHA256(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	data := bytes.Repeat([]byte("shoal"), 1000)
	os.WriteFile(path, append(data, "trailing bytes beyond the image"...), 0o644)
	sum := sha256.Sum256(data)
	b := catalog.Blob{ID: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	if err := checkSHA256(path, b); err != nil {
		t.Fatalf("the image's own bytes: %v", err)
	}
	b.Size--
	if err := checkSHA256(path, b); err == nil || !strings.Contains(err.Error(), "after sync") {
		t.Fatalf("one byte short: err=%v, want a sha256 mismatch", err)
	}
}
