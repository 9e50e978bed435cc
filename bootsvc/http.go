package bootsvc

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// HTTPBoot serves the boot script and the iPXE binaries over HTTP. The node
// mounts Handler on its API mux; blobs (kernel, initrd) are the transfer
// package's routes.
type HTTPBoot struct {
	Source ScriptSource
	Files  *FileRoot     // the TFTP root, for UEFI HTTP boot; nil disables the route
	Retry  time.Duration // how long notice scripts wait; 0 means 30 s
	Log    *slog.Logger  // nil discards
}

// Handler routes GET ScriptPath and GET BootFilesPath{name...}.
func (b *HTTPBoot) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ScriptPath, b.serveScript)
	mux.HandleFunc("GET "+BootFilesPath+"{name...}", b.serveFile)
	return mux
}

func (b *HTTPBoot) logger() *slog.Logger {
	if b.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Log
}

// serveScript answers 200 with a boot script, 200 with a notice script when
// the machine cannot boot yet (so its console says why), 400 for a bad
// MAC, and 500 when the catalogue holds something RenderScript refuses
// (a hostile or broken value: the operator must see it, the client must not
// get a half-safe script).
func (b *HTTPBoot) serveScript(w http.ResponseWriter, r *http.Request) {
	mac := r.URL.Query().Get("mac")
	log := b.logger().With("mac", mac, "remote", r.RemoteAddr)
	data, err := b.Source.Resolve(mac)
	var buf bytes.Buffer
	switch {
	case errors.Is(err, catalog.ErrInvalid):
		http.Error(w, "mac: want aa:bb:cc:dd:ee:ff", http.StatusBadRequest)
		return
	case errors.Is(err, ErrUnknownClient):
		err = RenderNotice(&buf, UnknownClientNotice(data.MAC, b.retry()))
		log.Info("boot script: unknown client")
	case errors.Is(err, ErrNotBootable):
		log.Warn("boot script: not bootable", "err", err)
		err = RenderNotice(&buf, Notice{Retry: b.retry(), Lines: []string{"this machine is registered, but its group cannot boot yet."}})
	case err == nil:
		err = RenderScript(&buf, data)
	}
	if err != nil {
		log.Error("boot script refused", "err", err)
		http.Error(w, "boot script unavailable, see the server log", http.StatusInternalServerError)
		return
	}
	log.Info("boot script served", "host", data.Hostname, "group", data.Group)
	w.Header().Set("Content-Type", "text/plain; charset=us-ascii")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

func (b *HTTPBoot) retry() time.Duration {
	if b.Retry <= 0 {
		return 30 * time.Second
	}
	return b.Retry
}

// serveFile serves an iPXE binary from the TFTP root with Range support.
func (b *HTTPBoot) serveFile(w http.ResponseWriter, r *http.Request) {
	if b.Files == nil {
		http.NotFound(w, r)
		return
	}
	f, _, err := b.Files.Open(r.PathValue("name"))
	if err != nil {
		b.logger().Info("boot file refused", "name", r.PathValue("name"), "remote", r.RemoteAddr, "err", err)
		http.Error(w, clientError(err).Error(), http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "stat failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}
