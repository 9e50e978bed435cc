package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-project/shoal/cluster/catalog"
	"github.com/shoal-project/shoal/nbd"
	"github.com/shoal-project/shoal/transfer"
)

// nbdExports exports every image version this node holds completely, read
// only, from its local blobs: "<image>" is the image's current version,
// "<image>@<version>" (a unique prefix will do) any held version. Looked up
// at each client's negotiation, so a new version or an activation shows
// at once; a connected client keeps the version it opened.
type nbdExports struct {
	cat  *catalog.State
	xfer *transfer.Server

	mu    sync.Mutex
	files map[string]*os.File // blob id -> open file, shared by all clients
}

func (e *nbdExports) Lookup(name string) (nbd.Export, bool) {
	image, want, _ := strings.Cut(name, "@")
	im, ok := e.cat.Image(image)
	if !ok {
		return nbd.Export{}, false
	}
	if want == "" {
		want = im.Current
	}
	var match []catalog.ImageVersion
	for _, v := range im.Versions {
		if strings.HasPrefix(v.ID, want) && want != "" {
			match = append(match, v)
		}
	}
	if len(match) != 1 {
		return nbd.Export{}, false
	}
	v := match[0]
	f, err := e.open(v.ID)
	if err != nil {
		return nbd.Export{}, false
	}
	return nbd.Export{Name: name, Size: v.Size, ReaderAt: f,
		Description: fmt.Sprintf("%s@%.12s (%s, read-only)", im.Name, v.ID, v.Format)}, true
}

// open returns the blob's shared read-only file; only complete blobs are
// served (transfer.Server.Open checks), so a client never reads a piece
// that is not verified.
func (e *nbdExports) open(id string) (*os.File, error) {
	held := map[string]bool{}
	for _, h := range e.xfer.Have() {
		held[h] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// A blob no longer held (its version removed and collected) is not
	// exported to new clients. Its cached file stays open: machines that
	// run from it still read through it (nbd.Export has no close hook to
	// count them), so its disk space comes back when the node restarts.
	if !held[id] {
		return nil, fmt.Errorf("blob %s is not complete here", id)
	}
	if f := e.files[id]; f != nil {
		return f, nil
	}
	f, _, err := e.xfer.Open(id)
	if err != nil {
		return nil, err
	}
	if e.files == nil {
		e.files = map[string]*os.File{}
	}
	e.files[id] = f
	return f, nil
}

func (e *nbdExports) List() []string {
	held := map[string]bool{}
	for _, id := range e.xfer.Have() {
		held[id] = true
	}
	var out []string
	for _, im := range e.cat.Images() {
		for _, v := range im.Versions {
			if !held[v.ID] {
				continue
			}
			out = append(out, im.Name+"@"+v.ID)
			if v.ID == im.Current {
				out = append(out, im.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (e *nbdExports) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, f := range e.files {
		f.Close()
		delete(e.files, id)
	}
}

// listenNBD opens the NBD port; the returned function serves until ctx ends.
func (b *bootServices) listenNBD(addr string, ex *nbdExports, reg prometheus.Registerer) (func(context.Context) error, error) {
	if addr == "" {
		return func(ctx context.Context) error { <-ctx.Done(); return nil }, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: listen %s: %w", addr, err)
	}
	read := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_nbd_read_bytes_total", Help: "Bytes read by NBD clients, per export.",
	}, []string{"export"})
	reg.MustRegister(read)
	srv := &nbd.Server{Exports: ex, Log: b.log.With("service", "nbd"),
		OnRead: func(export string, n int) { read.WithLabelValues(export).Add(float64(n)) }}
	b.log.Info("nbd serving image versions read-only", "addr", ln.Addr().String())
	return func(ctx context.Context) error {
		defer ex.close()
		return srv.Serve(ctx, ln)
	}, nil
}
