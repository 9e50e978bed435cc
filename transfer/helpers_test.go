package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// quiet keeps test output clean; SHOAL_TEST_LOG=1 shows the logs.
func quiet() *slog.Logger {
	if os.Getenv("SHOAL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// fakeCatalog is a mutable catalogue: images and groups.
type fakeCatalog struct {
	mu     sync.Mutex
	images []catalog.Image
	groups []catalog.Group
}

func (c *fakeCatalog) Images() []catalog.Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.images)
}

func (c *fakeCatalog) Groups() []catalog.Group {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.groups)
}

// setCurrent makes a version holding blobs the current one of image name,
// keeping older versions (as the real catalogue does).
func (c *fakeCatalog) setCurrent(name string, blobs ...catalog.Blob) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := catalog.ImageVersion{ID: blobs[0].ID, Size: blobs[0].Size, SHA256: blobs[0].ID, Blobs: blobs}
	for i, im := range c.images {
		if im.Name == name {
			c.images[i].Versions = append(slices.Clone(im.Versions), v)
			c.images[i].Current = v.ID
			return v.ID
		}
	}
	c.images = append(c.images, catalog.Image{Name: name, Current: v.ID, Versions: []catalog.ImageVersion{v}})
	return v.ID
}

func (c *fakeCatalog) removeVersion(name, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, im := range c.images {
		if im.Name == name {
			c.images[i].Versions = slices.DeleteFunc(slices.Clone(im.Versions), func(v catalog.ImageVersion) bool { return v.ID == id })
		}
	}
}

// mesh gives each server the torrent addresses of every server in it (the
// server skips its own), like gossip would; extra adds more.
type mesh struct {
	mu      sync.Mutex
	servers []*Server
	extra   []string
}

func (m *mesh) add(s ...*Server) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.servers = append(m.servers, s...)
}

func (m *mesh) TorrentPeers() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.extra)
	for _, s := range m.servers {
		out = append(out, s.Addr())
	}
	return out
}

type testNode struct {
	*Server
	reg *prometheus.Registry
}

// startNode starts a server on 127.0.0.1:0 in its own dir (or dir, if set)
// and runs it until the test ends.
func startNode(t *testing.T, cat Catalog, peers Peers, dir string, grace time.Duration) testNode {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := DefaultConfig()
	cfg.Dir, cfg.ListenAddr, cfg.Interval, cfg.Logger = dir, "127.0.0.1:0", 100*time.Millisecond, quiet()
	if grace > 0 {
		cfg.GCGrace = grace
	}
	reg := prometheus.NewRegistry()
	s, err := NewServer(cfg, cat, peers, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return testNode{s, reg}
}

// metric reads a counter or gauge from the node's registry.
func (n testNode) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// waitFor polls cond until it holds, failing with why after timeout. The
// timeouts are generous: the race detector on a loaded 2-core machine is
// slow, and every wait ends as soon as the condition holds.
func waitFor(t *testing.T, timeout time.Duration, why string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const waitLong = 90 * time.Second

func randomData(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

// ingestData stores data as a blob in dir.
func ingestData(t *testing.T, dir string, data []byte) catalog.Blob {
	t.Helper()
	b, err := Ingest(dir, bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func haveBlob(s *Server, id string) bool { return slices.Contains(s.Have(), id) }

// fileSum is the sha256 of dir/id, or "" if unreadable.
func fileSum(dir, id string) string {
	b, err := os.ReadFile(filepath.Join(dir, id))
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return string(sum[:])
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return string(s[:])
}

// piecesComplete counts the verified pieces of blob id on s.
func piecesComplete(s *Server, id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.blobs[id]
	if e == nil {
		return 0
	}
	st := e.t.Stats()
	return st.PiecesComplete
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
