package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// MaxBody bounds every request body the public API accepts.
const MaxBody = 1 << 20

// maxCommand bounds a forwarded command: an image version carries the
// piece hashes of its blobs, which can exceed MaxBody for large images.
const maxCommand = 16 << 20

// InternalHandler serves the node-to-node API under /v1/internal/: writes
// forwarded by followers, raft progress for autopilot, read-index for
// linearizable reads, and graceful leaves. node/ mounts it next to the
// public API; keeping both ends of this protocol here keeps the routing in
// one package.
func (c *Cluster) InternalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/internal/apply", c.handleApply)
	mux.HandleFunc("POST /v1/internal/leave", c.handleLeave)
	mux.HandleFunc("GET /v1/internal/read-index", c.handleReadIndex)
	mux.HandleFunc("GET /v1/internal/stats", c.handleStats)
	return mux
}

func (c *Cluster) handleApply(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCommand))
	if err != nil {
		writeWire(w, 0, fmt.Errorf("forwarded command: %v: %w", err, catalog.ErrInvalid))
		return
	}
	cmd, err := catalog.DecodeCommand(b)
	if err == nil {
		cmd, err = cmd.Normalize()
	}
	if err != nil {
		writeWire(w, 0, err)
		return
	}
	// A forwarded write is never forwarded again: if leadership moved, the
	// origin retries with the new leader, so a request cannot loop.
	idx, err := c.applyLocal(cmd)
	writeWire(w, idx, err)
}

func (c *Cluster) handleLeave(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody)).Decode(&req); err != nil || req.ID == "" {
		writeWire(w, 0, errors.Join(catalog.ErrInvalid, errors.New("leave needs an id")))
		return
	}
	writeWire(w, 0, c.removeLocal(req.ID))
}

func (c *Cluster) handleReadIndex(w http.ResponseWriter, r *http.Request) {
	idx, err := c.readIndexLocal()
	writeWire(w, idx, err)
}

func (c *Cluster) handleStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(c.localStats())
}

func writeWire(w http.ResponseWriter, idx uint64, err error) {
	res := wireResult{Index: idx}
	if err != nil {
		res = wireResult{Error: err.Error(), Kind: ErrorKind(err)}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}
