package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoal-project/shoal/bootsvc"
	"github.com/shoal-project/shoal/cluster"
	"github.com/shoal-project/shoal/cluster/catalog"
	"github.com/shoal-project/shoal/transfer"
)

// api is the public HTTP API, v1, JSON. Reads come from the local replica
// and never need a leader unless the request asks ?consistent=true; writes
// go through cluster.Apply, which forwards to the leader.
type api struct {
	cl        *cluster.Cluster
	cat       *catalog.State
	xfer      *transfer.Server
	blobDir   string
	importDir string
	reg       *prometheus.Registry
	log       *slog.Logger
	requests  *prometheus.CounterVec
	boot      *bootServices
}

func newAPI(cl *cluster.Cluster, xfer *transfer.Server, boot *bootServices, cfg Config, reg *prometheus.Registry, log *slog.Logger) *api {
	a := &api{cl: cl, cat: cl.Catalog(), xfer: xfer, boot: boot, blobDir: cfg.Transfer.Dir, importDir: cfg.ImportDir, reg: reg, log: log}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_api_requests_total", Help: "API requests by route and status code.",
	}, []string{"route", "code"})
	reg.MustRegister(a.requests)
	return a
}

func (a *api) handler(internal http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/internal/", internal)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	// Tracker, web seed and metainfo: the transfer package's own routes.
	th := a.xfer.Handler(httpAddrs(a.cl))
	for _, p := range []string{"GET /announce", "GET /v1/blobs/{id}", "GET /v1/blobs/{id}/torrent"} {
		mux.Handle(p, th)
	}
	// Boot script, boot files and per-MAC blob fetches.
	bh := a.boot.handler(a.bootBase, th, a.blobElsewhere)
	for _, p := range []string{"GET " + bootsvc.ScriptPath, "GET " + bootsvc.BootFilesPath, "GET " + bootsvc.BootBlobPath, "GET " + bootsvc.BootAgentPath} {
		mux.Handle(p, bh)
	}
	routes := []struct {
		pattern string
		h       func(*http.Request) (int, any, error)
	}{
		{"GET /healthz", a.healthz},
		{"GET /v1/status", a.status},
		{"GET /v1/nodes", a.nodes},
		{"GET /v1/catalog/digest", a.digest},
		{"GET /v1/groups", a.listGroups},
		{"POST /v1/groups", a.createGroup},
		{"GET /v1/groups/{name}", a.getGroup},
		{"PUT /v1/groups/{name}", a.updateGroup},
		{"DELETE /v1/groups/{name}", a.deleteGroup},
		{"GET /v1/clients", a.listClients},
		{"POST /v1/clients", a.createClient},
		{"GET /v1/clients/{mac}", a.getClient},
		{"PUT /v1/clients/{mac}", a.updateClient},
		{"DELETE /v1/clients/{mac}", a.deleteClient},
		{"GET /v1/images", a.listImages},
		{"GET /v1/images/{name}", a.getImage},
		{"DELETE /v1/images/{name}", a.deleteImage},
		{"POST /v1/images/{name}/versions", a.addImageVersion},
		{"DELETE /v1/images/{name}/versions/{version}", a.removeImageVersion},
		{"POST /v1/images/{name}/activate", a.activateImage},
		{"POST /v1/blobs", a.uploadBlob},
		{"GET /v1/blobs", a.listBlobs},
		{"GET /v1/leases", a.listLeases},
		{"GET /v1/boot/last/{mac}", a.localBoot},
		{"POST /v1/boot/report/{mac}", a.bootReport},
	}
	for _, rt := range routes {
		mux.Handle(rt.pattern, a.wrap(rt.pattern, rt.h))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errBody{fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})
	return mux
}

type errBody struct {
	Error string `json:"error"`
}

// wrap turns (status, body, err) handlers into HTTP, mapping the sentinel
// errors to status codes in this one place.
func (a *api) wrap(route string, h func(*http.Request) (int, any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, body, err := h(r)
		if err != nil {
			code = statusOf(err)
			body = errBody{err.Error()}
			if code >= 500 {
				a.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
		}
		a.requests.WithLabelValues(route, fmt.Sprint(code)).Inc()
		writeJSON(w, code, body)
	})
}

func statusOf(err error) int {
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, catalog.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, catalog.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, catalog.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotReady), errors.Is(err, cluster.ErrUnknownOutcome):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if body != nil {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(body)
	}
}

// decode reads one JSON object of at most cluster.MaxBody bytes, rejecting
// unknown fields and trailing data, so a typo never silently drops a field.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, cluster.MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return fmt.Errorf("request body over %d bytes: %w", cluster.MaxBody, err)
		}
		return fmt.Errorf("malformed JSON body: %v: %w", err, catalog.ErrInvalid)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("malformed JSON body: trailing data after the object: %w", catalog.ErrInvalid)
	}
	return nil
}

// write proposes one command and waits until this node's replica has
// applied it, so the caller's next read here sees its own write.
func (a *api) write(r *http.Request, t catalog.CommandType, body any) error {
	cmd, err := catalog.NewCommand(t, time.Now().Unix(), body)
	if err != nil {
		return err
	}
	idx, err := a.cl.Apply(r.Context(), cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	return a.cl.WaitApplied(ctx, idx)
}

// consistent honours ?consistent=true with a read barrier through the
// leader; without it reads are served from the local replica.
func (a *api) consistent(r *http.Request) error {
	if r.URL.Query().Get("consistent") != "true" {
		return nil
	}
	return a.cl.ReadBarrier(r.Context())
}

// healthz is 200 only for a running node that is in the raft
// configuration: a node still waiting to be added, or removed after a long
// outage and not yet back, serves stale data and should not be trusted by a
// load balancer.
func (a *api) healthz(r *http.Request) (int, any, error) {
	st := a.cl.Status()
	if st.State == "Starting" || st.State == "Shutdown" {
		return http.StatusServiceUnavailable, map[string]string{"status": st.State}, nil
	}
	for _, s := range st.Servers {
		if s.ID == st.Node {
			return http.StatusOK, map[string]string{"status": "ok", "raft": st.State, "suffrage": s.Suffrage}, nil
		}
	}
	return http.StatusServiceUnavailable, map[string]string{"status": "not a raft member (yet)", "raft": st.State}, nil
}

type statusBody struct {
	cluster.Status
	Catalog catalogInfo `json:"catalog"`
	// Blobs: this node's progress on every blob it should hold.
	Blobs []transfer.BlobProgress `json:"blobs"`
}

type catalogInfo struct {
	AppliedIndex uint64 `json:"applied_index"`
	Digest       string `json:"digest"`
	Groups       int    `json:"groups"`
	Clients      int    `json:"clients"`
	Images       int    `json:"images"`
	Nodes        int    `json:"nodes"`
}

func (a *api) status(r *http.Request) (int, any, error) {
	if err := a.consistent(r); err != nil {
		return 0, nil, err
	}
	g, c, i, n := a.cat.Counts()
	info := catalogInfo{AppliedIndex: a.cat.AppliedIndex(), Digest: a.cat.Digest(), Groups: g, Clients: c, Images: i, Nodes: n}
	return http.StatusOK, statusBody{Status: a.cl.Status(), Catalog: info, Blobs: nonNil(a.xfer.Progress())}, nil
}

func (a *api) nodes(r *http.Request) (int, any, error) {
	return http.StatusOK, a.cl.Nodes(), nil
}

func (a *api) digest(r *http.Request) (int, any, error) {
	if err := a.consistent(r); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"applied_index": a.cat.AppliedIndex(), "digest": a.cat.Digest()}, nil
}
