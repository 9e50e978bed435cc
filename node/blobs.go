package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/cluster"
	"github.com/shoal-project/shoal/cluster/catalog"
	"github.com/shoal-project/shoal/transfer"
)

// gossipPeers gives the transfer server the torrent addresses of the other
// live servers, from gossip metadata.
type gossipPeers struct {
	cl   *cluster.Cluster
	self string
}

// MetaTorrent is the gossip metadata key of a node's torrent address.
const MetaTorrent = "torrent"

// MetaNBD is the gossip metadata key of a node's NBD export address.
const MetaNBD = "nbd"

func (p gossipPeers) TorrentPeers() []string {
	var out []string
	for _, m := range p.cl.AliveMembers() {
		if a := m.Meta[MetaTorrent]; a != "" && m.Name != p.self {
			out = append(out, a)
		}
	}
	return out
}

// httpAddrs lists every live node's API address, for metainfo and tracker
// lists handed to clients.
func httpAddrs(cl *cluster.Cluster) func() []string {
	return func() []string {
		var out []string
		for _, m := range cl.AliveMembers() {
			if a := m.HTTPAddr(); a != "" {
				out = append(out, a)
			}
		}
		return out
	}
}

// uploadBlob stores the request body as a blob (POST /v1/blobs), or with
// ?path= a file on this node below the import directory (--local import).
// The blob seeds from this node at once; it becomes wanted cluster-wide
// when an image version that lists it is added.
func (a *api) uploadBlob(r *http.Request) (int, any, error) {
	var b catalog.Blob
	var err error
	if p := r.URL.Query().Get("path"); p != "" {
		b, err = a.ingestLocal(p)
	} else {
		b, err = transfer.Ingest(a.blobDir, r.Body, r.ContentLength, nil)
	}
	if err != nil {
		return 0, nil, err
	}
	if err := a.xfer.AddLocal(b); err != nil {
		return 0, nil, err
	}
	a.log.Info("blob stored", "blob", b.ID, "size", b.Size)
	return http.StatusCreated, b, nil
}

// ingestLocal reads a file that must lie below the import directory once
// symlinks are resolved: the API must not become a way to publish any file
// of the server (say /etc/shadow) as a blob.
func (a *api) ingestLocal(p string) (catalog.Blob, error) {
	if a.importDir == "" {
		return catalog.Blob{}, fmt.Errorf("local import is disabled on this node (no --import-dir): %w", catalog.ErrInvalid)
	}
	root, err := filepath.EvalSymlinks(a.importDir)
	if err != nil {
		return catalog.Blob{}, fmt.Errorf("import dir %s: %v: %w", a.importDir, err, catalog.ErrInvalid)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(root, p)
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(p))
	if err != nil {
		return catalog.Blob{}, fmt.Errorf("local file %q: %v: %w", p, err, catalog.ErrInvalid)
	}
	if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return catalog.Blob{}, fmt.Errorf("local file %q is outside the import dir %s: %w", p, a.importDir, catalog.ErrInvalid)
	}
	f, err := os.Open(real)
	if err != nil {
		return catalog.Blob{}, fmt.Errorf("local file %q: %v: %w", p, err, catalog.ErrInvalid)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return catalog.Blob{}, fmt.Errorf("local file %q is not a regular file: %w", p, catalog.ErrInvalid)
	}
	return transfer.Ingest(a.blobDir, f, st.Size(), nil)
}

// haveBody is GET /v1/blobs: what this node holds.
type haveBody struct {
	Node     string                  `json:"node"`
	Complete []string                `json:"complete"`
	Progress []transfer.BlobProgress `json:"progress"`
}

func (a *api) listBlobs(r *http.Request) (int, any, error) {
	return http.StatusOK, haveBody{Node: a.cl.Name(), Complete: nonNil(a.xfer.Have()), Progress: nonNil(a.xfer.Progress())}, nil
}

// imageView is an image with, per version, the nodes that hold every blob
// of it completely.
type imageView struct {
	catalog.Image
	Holders map[string][]string `json:"holders"`
}

// holders asks every live node what it holds, in parallel, briefly: a node
// that does not answer within a second simply is not listed.
func (a *api) holders(ctx context.Context) map[string]map[string]bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	out := map[string]map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range a.cl.AliveMembers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h haveBody
			if err := getJSON(ctx, "http://"+m.HTTPAddr()+"/v1/blobs", &h); err != nil {
				return
			}
			set := map[string]bool{}
			for _, id := range h.Complete {
				set[id] = true
			}
			mu.Lock()
			out[m.Name] = set
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (a *api) view(im catalog.Image, have map[string]map[string]bool) imageView {
	v := imageView{Image: im, Holders: map[string][]string{}}
	for _, ver := range im.Versions {
		nodes := []string{}
		for node, set := range have {
			if len(ver.Blobs) > 0 && holdsAll(set, ver.BlobIDs()) {
				nodes = append(nodes, node)
			}
		}
		sort.Strings(nodes)
		v.Holders[ver.ID] = nodes
	}
	return v
}

func holdsAll(set map[string]bool, ids []string) bool {
	for _, id := range ids {
		if !set[id] {
			return false
		}
	}
	return true
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
