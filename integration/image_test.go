//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Loopback subnets of the image tests.
const (
	netImageReplicate = 70
	netAgentSync      = 71
	netAria2          = 72
)

// writeRandom writes size pseudo-random bytes (seeded, so reruns match).
func writeRandom(t testing.TB, path string, size int64, seed int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.New(rand.NewSource(seed)), size); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

type importOut struct {
	Image     string `json:"image"`
	Version   string `json:"version"`
	Unchanged bool   `json:"unchanged"`
	Activated bool   `json:"activated"`
}

// importImage makes an image of rootSize random bytes plus a small kernel
// and initrd, and imports it through n with the CLI.
func importImage(t *testing.T, c *cluster, n *node, name string, rootSize int64, seed int64) (importOut, []string) {
	t.Helper()
	dir := t.TempDir()
	root, kernel, initrd := filepath.Join(dir, "root.img"), filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	ids := []string{writeRandom(t, root, rootSize, seed), writeRandom(t, kernel, 1<<20+17, seed+1), writeRandom(t, initrd, 2<<20+5, seed+2)}
	var out importOut
	raw := c.cli(n, "image", "import", name, root, "--kernel", kernel, "--initrd", initrd, "--cmdline", "quiet", "--json")
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("import --json: %v: %s", err, raw)
	}
	if out.Version != ids[0] {
		t.Fatalf("imported version %s, want the root's sha256 %s", out.Version, ids[0])
	}
	return out, ids
}

type blobsAnswer struct {
	Node     string   `json:"node"`
	Complete []string `json:"complete"`
	Progress []struct {
		ID             string `json:"id"`
		BytesCompleted int64  `json:"bytes_completed"`
		Peers          int    `json:"peers"`
	} `json:"progress"`
}

func holdsAll(c *cluster, n *node, ids []string) (bool, string) {
	var b blobsAnswer
	if err := c.getJSON(n.url("/v1/blobs"), &b); err != nil {
		return false, err.Error()
	}
	have := strings.Join(b.Complete, ",")
	for _, id := range ids {
		if !strings.Contains(have, id) {
			return false, fmt.Sprintf("%s lacks %s (has %d blobs; progress %+v)", n.name, id[:12], len(b.Complete), b.Progress)
		}
	}
	return true, ""
}

// blobSHA256 downloads a blob from a node's web-seed endpoint.
func blobSHA256(t *testing.T, n *node, id string) string {
	t.Helper()
	resp, err := http.Get(n.url("/v1/blobs/" + id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: GET blob %s: %s", n.name, id[:12], resp.Status)
	}
	h := sha256.New()
	io.Copy(h, resp.Body)
	return hex.EncodeToString(h.Sum(nil))
}

func TestImageImportReplicatesToEveryNode(t *testing.T) {
	c := newCluster(t, netImageReplicate, 3, 1)
	leader := c.start()
	follower := c.others(leader)[0]
	out, ids := importImage(t, c, follower, "deb", 24<<20, 1)
	if !out.Activated {
		t.Fatalf("first import not activated: %+v", out)
	}
	for _, n := range c.running() {
		c.waitFor(90*time.Second, n.name+" holds every blob", func() (bool, string) { return holdsAll(c, n, ids) })
		for _, id := range ids {
			if got := blobSHA256(t, n, id); got != id {
				t.Fatalf("%s serves blob %s with sha256 %s", n.name, id[:12], got)
			}
		}
	}
	var show struct {
		Holders map[string][]string `json:"holders"`
	}
	json.Unmarshal(c.cli(leader, "image", "show", "deb", "--json"), &show)
	if got := strings.Join(show.Holders[out.Version], ","); got != "n1,n2,n3" {
		t.Errorf("image show holders = %q, want n1,n2,n3", got)
	}

	// The same bytes again: nothing changes.
	before, _ := c.digest(leader)
	again, _ := importImage(t, c, leader, "deb", 24<<20, 1)
	if !again.Unchanged {
		t.Errorf("re-import of the same bytes not reported unchanged: %+v", again)
	}
	if after, _ := c.digest(leader); after.Digest != before.Digest {
		t.Errorf("re-import changed the catalogue")
	}

	// A node that joins later fills itself from its peers.
	late := c.addNode("n4", 4, "--join", leader.gossipAddr())
	late.start()
	c.waitHealthy(late, 30*time.Second)
	c.waitFor(90*time.Second, "late joiner holds every blob", func() (bool, string) { return holdsAll(c, late, ids) })
	if got := blobSHA256(t, late, ids[0]); got != ids[0] {
		t.Fatalf("late joiner's root blob has sha256 %s", got)
	}
}

type syncReport struct {
	Size      int64    `json:"size"`
	Pieces    int      `json:"pieces"`
	Reused    int64    `json:"bytes_reused"`
	Fetched   int64    `json:"bytes_fetched"`
	PeersUsed []string `json:"peers_used"`
	Seconds   float64  `json:"seconds"`
	Hashed    int64    `json:"bytes_hashed"`
	Wasted    int64    `json:"bytes_wasted"`
	Check     float64  `json:"check_seconds"`
}

func agentSync(t *testing.T, servers, target string, extra ...string) (syncReport, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	args := append([]string{"agent", "sync", "--server", servers, "--image", "deb", "--target", target,
		"--listen", "127.0.0.1:0", "--json"}, extra...)
	cmd := exec.CommandContext(ctx, shoalBin, args...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var rep syncReport
	if err == nil {
		if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
			t.Fatalf("sync report: %v: %s", jerr, stdout.Bytes())
		}
	}
	return rep, stderr.String(), err
}

func TestAgentSyncFetchesOnlyWhatDiffers(t *testing.T) {
	c := newCluster(t, netAgentSync, 1, 0)
	n := c.start()
	const size = 64 << 20
	out, ids := importImage(t, c, n, "deb", size, 7)
	c.waitFor(30*time.Second, "node holds the image", func() (bool, string) { return holdsAll(c, n, ids) })
	target := filepath.Join(t.TempDir(), "disk.img")

	rep, stderr, err := agentSync(t, n.url(""), target)
	if err != nil {
		t.Fatalf("sync into an empty target: %v\n%s", err, stderr)
	}
	if sha256File(t, target) != out.Version || rep.Fetched < size || rep.Reused != 0 || rep.Hashed != size || rep.Check != 0 {
		t.Fatalf("empty target (every piece hashed once, no full re-read by default): %+v", rep)
	}
	// One node is the only source: no request can move to another peer, so
	// no chunk arrives twice (the counter excludes protocol overhead).
	if rep.Wasted != 0 {
		t.Fatalf("single source, yet %d bytes reported wasted: %+v", rep.Wasted, rep)
	}
	t.Logf("empty target: fetched %d bytes in %.2fs from %v", rep.Fetched, rep.Seconds, rep.PeersUsed)
	// The node revealed its pieces to the agent one by one (super-seeding):
	// each exactly once, and each left the node exactly once.
	for name, want := range map[string]int64{"shoal_transfer_reveals_total": int64(rep.Pieces), "shoal_transfer_bytes_uploaded_total": size} {
		v, err := c.metric(n, name)
		if got, _ := strconv.ParseFloat(v, 64); err != nil || int64(got) != want {
			t.Fatalf("after one sync the node's %s = %q (%v), want %d", name, v, err, want)
		}
	}

	// A target longer than the image (an older, bigger version) keeps its
	// bytes until the copy is verified, then is cut to the image's size.
	f, _ := os.OpenFile(target, os.O_RDWR|os.O_APPEND, 0)
	f.Write(bytes.Repeat([]byte{1}, 3<<20))
	f.Close()
	done := target + ".done"
	os.WriteFile(done, []byte("stale"), 0o644)
	rep, stderr, err = agentSync(t, n.url(""), target, "--done-file", done, "--full-check")
	if err != nil || rep.Fetched != 0 || rep.Reused != size || rep.Check <= 0 {
		t.Fatalf("identical target with --full-check: %+v err=%v %s", rep, err, stderr)
	}
	if st, _ := os.Stat(target); st.Size() != size || sha256File(t, target) != out.Version {
		t.Fatalf("longer target not cut to the image after the sync: %d bytes", st.Size())
	}
	if b, _ := os.ReadFile(done); !bytes.Contains(b, []byte(`"bytes_reused"`)) {
		t.Fatalf("done file %q", b)
	}

	// 1 MiB changed in the middle, not aligned to a piece: at most two
	// pieces (1 MiB each) may be fetched.
	f, _ = os.OpenFile(target, os.O_RDWR, 0)
	f.WriteAt(bytes.Repeat([]byte{0xAB}, 1<<20), size/2+12345)
	f.Close()
	rep, stderr, err = agentSync(t, n.url(""), target)
	if err != nil {
		t.Fatalf("changed target: %v %s", err, stderr)
	}
	if rep.Fetched > 2<<20 || rep.Fetched == 0 || sha256File(t, target) != out.Version {
		t.Fatalf("1 MiB changed: fetched %d bytes (want 1..2 MiB), report %+v", rep.Fetched, rep)
	}
	t.Logf("1 MiB changed: fetched %d bytes, reused %d", rep.Fetched, rep.Reused)

	// No server answers: a clear error and the target untouched.
	f, _ = os.OpenFile(target, os.O_RDWR, 0)
	f.WriteAt([]byte("local change"), 100)
	f.Close()
	before := sha256File(t, target)
	_, stderr, err = agentSync(t, "http://127.0.0.1:1", target)
	if err == nil || !strings.Contains(stderr, "no shoal server answered") {
		t.Fatalf("unreachable server: err=%v stderr=%s", err, stderr)
	}
	if sha256File(t, target) != before {
		t.Fatal("a sync that reached no server changed the target")
	}
}

func TestStockBitTorrentClientDownloads(t *testing.T) {
	aria, err := exec.LookPath("aria2c")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("aria2c missing in CI: make deps installs the aria2 package")
		}
		t.Skip("aria2c not installed (apt-get install aria2)")
	}
	c := newCluster(t, netAria2, 2, 0)
	leader := c.start()
	_, ids := importImage(t, c, leader, "deb", 8<<20, 3)
	for _, n := range c.running() {
		c.waitFor(60*time.Second, n.name+" holds the image", func() (bool, string) { return holdsAll(c, n, ids) })
	}
	dir := t.TempDir()
	resp, err := http.Get(leader.url("/v1/blobs/" + ids[0] + "/torrent"))
	if err != nil {
		t.Fatal(err)
	}
	tor, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tf := filepath.Join(dir, "img.torrent")
	os.WriteFile(tf, tor, 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, aria, "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
		"--enable-peer-exchange=false", "--seed-time=0", "--check-integrity=true", "--summary-interval=0",
		"--listen-port=51413", "--dir", dir, tf)
	outp, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("aria2c: %v\n%s", err, outp)
	}
	if got := sha256File(t, filepath.Join(dir, ids[0])); got != ids[0] {
		t.Fatalf("aria2c download has sha256 %s", got)
	}
}
