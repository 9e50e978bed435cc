package transfer

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shoal-project/shoal/cluster/catalog"
)

const blobSize = 8 << 20 // 8 pieces of 1 MiB

// One server imports a blob; the others fetch it from the swarm.
func TestSwarmFetch(t *testing.T) {
	cat := &fakeCatalog{}
	m := &mesh{}
	a, b, c := startNode(t, cat, m, "", 0), startNode(t, cat, m, "", 0), startNode(t, cat, m, "", 0)
	m.add(a.Server, b.Server, c.Server)
	data := randomData(1, blobSize)
	blob := ingestData(t, a.cfg.Dir, data)
	if err := a.AddLocal(blob); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "A to verify its imported blob", func() bool { return haveBlob(a.Server, blob.ID) })
	cat.setCurrent("img", blob)
	for _, n := range []testNode{b, c} {
		waitFor(t, waitLong, "B and C to complete the blob", func() bool { return haveBlob(n.Server, blob.ID) })
		if fileSum(n.cfg.Dir, blob.ID) != sumOf(data) {
			t.Fatal("fetched file differs from the original")
		}
		if got := n.Have(); !slices.Equal(got, []string{blob.ID}) {
			t.Errorf("Have = %v", got)
		}
		p := n.Progress()
		if len(p) != 1 || !p[0].Complete || p[0].BytesCompleted != blobSize || p[0].Size != blobSize {
			t.Errorf("Progress = %+v", p)
		}
		f, size, err := n.Open(blob.ID)
		if err != nil || size != blobSize {
			t.Fatalf("Open: %v, size %d", err, size)
		}
		f.Close()
		if v := n.metric(t, "shoal_transfer_blobs_complete"); v != 1 {
			t.Errorf("blobs_complete = %v", v)
		}
		if v := n.metric(t, "shoal_transfer_blobs_wanted"); v != 1 {
			t.Errorf("blobs_wanted = %v", v)
		}
	}
	down := b.metric(t, "shoal_transfer_bytes_downloaded_total") + c.metric(t, "shoal_transfer_bytes_downloaded_total")
	up := a.metric(t, "shoal_transfer_bytes_uploaded_total") + b.metric(t, "shoal_transfer_bytes_uploaded_total") +
		c.metric(t, "shoal_transfer_bytes_uploaded_total")
	if down < 2*blobSize || up < 2*blobSize {
		t.Errorf("downloaded %v, uploaded %v: want at least %d each", down, up, 2*blobSize)
	}
	t.Logf("downloaded %v bytes in all, A uploaded %v", down, a.metric(t, "shoal_transfer_bytes_uploaded_total"))
}

// A node restarted mid-transfer keeps its verified pieces: only the missing
// half is fetched.
func TestResume(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(data []byte) []byte // what is on disk after the good first half
	}{
		{"zeros", func(d []byte) []byte { return make([]byte, len(d)/2) }},
		{"truncated", func([]byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat := &fakeCatalog{}
			m := &mesh{}
			a := startNode(t, cat, m, "", 0)
			m.add(a.Server)
			data := randomData(2, blobSize)
			blob := ingestData(t, a.cfg.Dir, data)
			if err := a.AddLocal(blob); err != nil {
				t.Fatal(err)
			}
			cat.setCurrent("img", blob)
			cdir := t.TempDir()
			partial := append(slices.Clone(data[:blobSize/2]), tc.tail(data)...)
			if err := os.WriteFile(filepath.Join(cdir, blob.ID), partial, 0o600); err != nil {
				t.Fatal(err)
			}
			c := startNode(t, cat, m, cdir, 0)
			waitFor(t, waitLong, "C to complete the blob", func() bool { return haveBlob(c.Server, blob.ID) })
			if fileSum(cdir, blob.ID) != sumOf(data) {
				t.Fatal("resumed file differs from the original")
			}
			c.mu.Lock()
			st := c.cl.ConnStats()
			c.mu.Unlock()
			useful, read := st.BytesReadUsefulData.Int64(), c.metric(t, "shoal_transfer_bytes_downloaded_total")
			t.Logf("useful %d, read %v of %d", useful, read, blobSize)
			if useful > blobSize/2 || read > blobSize/2 {
				t.Errorf("downloaded %d useful / %v total bytes, want at most the missing %d", useful, read, blobSize/2)
			}
			if useful < blobSize/2 {
				t.Errorf("downloaded %d useful bytes, less than the missing %d", useful, blobSize/2)
			}
		})
	}
}

// A seeder with a corrupt piece it believes complete cannot make C accept
// wrong bytes; C counts the failure and completes once a good seeder appears.
func TestTamperedSeeder(t *testing.T) {
	cat := &fakeCatalog{}
	data := randomData(3, blobSize)
	a := startNode(t, cat, &mesh{}, "", 0)
	blob := ingestData(t, a.cfg.Dir, data)
	if err := a.AddLocal(blob); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "A to verify its blob", func() bool { return haveBlob(a.Server, blob.ID) })
	// Corrupt piece 2 behind A's back: A's completion still says complete.
	f, err := os.OpenFile(filepath.Join(a.cfg.Dir, blob.ID), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("tampered with"), 2<<20+4321); err != nil {
		t.Fatal(err)
	}
	f.Close()

	b := startNode(t, cat, &mesh{}, "", 0)
	ingestData(t, b.cfg.Dir, data)
	if err := b.AddLocal(blob); err != nil {
		t.Fatal(err)
	}
	cPeers := &mesh{}
	cPeers.add(a.Server)
	c := startNode(t, cat, cPeers, "", 0)
	cat.setCurrent("img", blob)

	waitFor(t, waitLong, "C to reject A's bad piece", func() bool {
		return c.metric(t, "shoal_transfer_pieces_failed_total") >= 1
	})
	// Wait for every good piece before adding B: the library smart-bans A's
	// IP once the piece passes, and here every node shares 127.0.0.1.
	waitFor(t, waitLong, "C to get every good piece from A", func() bool { return piecesComplete(c.Server, blob.ID) == 7 })
	if haveBlob(c.Server, blob.ID) {
		t.Fatal("C claims the blob complete with a bad piece")
	}
	if _, _, err := c.Open(blob.ID); err == nil {
		t.Fatal("C opens an incomplete blob")
	}
	if v := a.metric(t, "shoal_transfer_pieces_failed_total"); v != 0 {
		t.Errorf("A counted %v failed pieces, it received none", v)
	}

	cPeers.add(b.Server)
	waitFor(t, waitLong, "C to complete from B", func() bool { return haveBlob(c.Server, blob.ID) })
	if fileSum(c.cfg.Dir, blob.ID) != sumOf(data) {
		t.Fatal("C completed with wrong bytes")
	}
	t.Logf("C failed %v pieces", c.metric(t, "shoal_transfer_pieces_failed_total"))
}

// Unwanted blobs, imported-but-never-listed blobs and orphan files are
// deleted after the grace, and not before; other files are left alone.
func TestGC(t *testing.T) {
	const grace = 1500 * time.Millisecond
	cat := &fakeCatalog{}
	dir := t.TempDir()
	n := startNode(t, cat, &mesh{}, dir, grace)
	old := ingestData(t, dir, randomData(4, 3<<20))
	cur := ingestData(t, dir, randomData(5, 2<<20))
	local := ingestData(t, dir, randomData(6, 1<<20))
	cat.setCurrent("img", old)
	cat.setCurrent("other", cur)
	since := map[string]time.Time{local.ID: time.Now()} // when each became unwanted, at the latest
	for _, b := range []catalog.Blob{old, cur, local} {
		if err := n.AddLocal(b); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, waitLong, "the blobs to verify", func() bool { return len(n.Have()) == 3 })
	orphan := ingestData(t, t.TempDir(), randomData(7, 1000)).ID
	keep := []string{".ingest-123", "notes"}
	since[orphan] = time.Now()
	for _, name := range append(keep, orphan) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cat.setCurrent("img", cur)
	waitGone := func(since map[string]time.Time) {
		for id, from := range since {
			waitFor(t, waitLong, "an unwanted blob to be deleted", func() bool { return !fileExists(filepath.Join(dir, id)) })
			if d := time.Since(from); d < grace {
				t.Errorf("blob deleted %v after it became unwanted, before the %v grace", d, grace)
			}
		}
	}
	waitGone(since)
	// The grace has passed for the orphans; the previous version is still
	// listed by the catalogue, so its bytes stay for a rollback...
	if !fileExists(filepath.Join(dir, old.ID)) {
		t.Fatal("the previous version's blob was deleted while the catalogue still lists it")
	}
	// ...until its version is removed.
	removed := time.Now()
	cat.removeVersion("img", old.ID)
	waitGone(map[string]time.Time{old.ID: removed})
	if got := n.Have(); !slices.Equal(got, []string{cur.ID}) {
		t.Errorf("Have = %v, want only the current blob", got)
	}
	for _, name := range append(keep, cur.ID) {
		if !fileExists(filepath.Join(dir, name)) {
			t.Errorf("%s was deleted", name)
		}
	}
}

func TestWantedBlobs(t *testing.T) {
	bl := func(id string) catalog.Blob { return catalog.Blob{ID: id} }
	images := []catalog.Image{
		{Name: "a", Current: "a2", Versions: []catalog.ImageVersion{
			{ID: "a1", Blobs: []catalog.Blob{bl("k1"), bl("r1")}},
			{ID: "a2", Blobs: []catalog.Blob{bl("k1"), bl("r2")}},
			{ID: "a3", Blobs: []catalog.Blob{bl("r3")}},
		}},
		{Name: "b", Current: "b1", Versions: []catalog.ImageVersion{{ID: "b1"}}}, // metadata only
	}
	groups := []catalog.Group{
		{Name: "pinned", Image: "a", Version: "a1"},
		{Name: "follows", Image: "a"},
		{Name: "none"},
		{Name: "dangling", Image: "gone", Version: "x"},
	}
	got := wantedBlobs(images, groups)
	var ids []string
	for id := range got {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if want := []string{"k1", "r1", "r2"}; !slices.Equal(ids, want) {
		t.Errorf("wanted %v, want %v", ids, want)
	}
}

func TestStartPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := DefaultConfig()
	cfg.Dir, cfg.ListenAddr, cfg.Logger = t.TempDir(), ln.Addr().String(), quiet()
	s, err := NewServer(cfg, &fakeCatalog{}, &mesh{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err == nil {
		t.Fatal("Start on a taken port succeeded")
	}
}

func TestAddLocalRejects(t *testing.T) {
	n := startNode(t, &fakeCatalog{}, &mesh{}, "", 0)
	b := ingestData(t, n.cfg.Dir, randomData(8, 4096))
	bad := b
	bad.ID = "../" + b.ID[3:]
	if err := n.AddLocal(bad); err == nil {
		t.Error("hostile id accepted")
	}
	bad = b
	bad.InfoHash = b.InfoHash[:39] + "0"
	if bad.InfoHash == b.InfoHash {
		bad.InfoHash = b.InfoHash[:39] + "1"
	}
	if err := n.AddLocal(bad); err == nil {
		t.Error("wrong info hash accepted")
	}
	other := ingestData(t, t.TempDir(), randomData(9, 4096))
	if err := n.AddLocal(other); err == nil {
		t.Error("blob without a file accepted")
	}
	if err := n.AddLocal(b); err != nil {
		t.Errorf("good blob: %v", err)
	}
}
