package transfer

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	httpTrackerServer "github.com/anacrolix/torrent/tracker/http/server"
	trackerServer "github.com/anacrolix/torrent/tracker/server"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// Handler serves the node's transfer endpoints; nodes lists every live
// node's HTTP address (host:port), this node included:
//
//	GET /announce               BitTorrent HTTP tracker (compact peer lists): the live
//	                            servers' torrent addresses, plus clients that announced
//	                            the info hash in the last 10 minutes
//	GET /v1/blobs/{id}          the blob's bytes (Range supported), 404 unless complete
//	                            here; the BEP 19 web seed
//	GET /v1/blobs/{id}/torrent  a .torrent: the catalogue's info, announce-list = every
//	                            node's tracker, url-list = every node's web seed
//
// Anything else is a 404 with a JSON {"error"} body.
func (s *Server) Handler(nodes func() []string) http.Handler {
	mux := http.NewServeMux()
	ann := httpTrackerServer.Handler{Announce: &trackerServer.AnnounceHandler{AnnounceTracker: s.tracker}}
	mux.HandleFunc("GET /announce", func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), requestHostKey{}, r.Host)
		ann.ServeHTTP(w, r.WithContext(ctx))
	})
	mux.HandleFunc("GET /v1/blobs/{id}", s.serveBlob)
	mux.HandleFunc("GET /v1/blobs/{id}/torrent", func(w http.ResponseWriter, r *http.Request) {
		s.serveTorrent(w, r, nodes)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		jsonError(w, http.StatusNotFound, "not found")
	})
	return mux
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// serveBlob is the web seed. Blobs are content-addressed, so the id is a
// strong ETag and the response never goes stale.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !ValidID(id) {
		jsonError(w, http.StatusNotFound, "no such blob")
		return
	}
	f, size, err := s.Open(id)
	if err != nil {
		jsonError(w, http.StatusNotFound, "blob "+id+" is not complete on this node")
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+id+`"`)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(f, 0, size))
}

// serveTorrent builds the metainfo from the catalogue's info bytes (so its
// info hash is the catalogue's), pointing at every node as tracker and web
// seed. A single announce tier: clients shuffle within it.
func (s *Server) serveTorrent(w http.ResponseWriter, r *http.Request, nodes func() []string) {
	id := r.PathValue("id")
	if !ValidID(id) {
		jsonError(w, http.StatusNotFound, "no such blob")
		return
	}
	b, ok := s.catalogBlob(func(b catalog.Blob) bool { return b.ID == id })
	if !ok {
		jsonError(w, http.StatusNotFound, "no such blob")
		return
	}
	if _, err := checkBlob(b); err != nil {
		jsonError(w, http.StatusNotFound, "blob "+id+" has no usable metainfo")
		return
	}
	addrs := slices.Compact(slices.Sorted(slices.Values(nodes())))
	if len(addrs) == 0 {
		addrs = []string{r.Host} // at least this node, as the client reached it
	}
	mi := metainfo.MetaInfo{InfoBytes: b.Info, CreatedBy: "shoal"}
	var tier []string
	for _, a := range addrs {
		tier = append(tier, "http://"+a+"/announce")
		// Trailing slash: the client appends info.Name, which is the id.
		mi.UrlList = append(mi.UrlList, "http://"+a+"/v1/blobs/")
	}
	mi.Announce = tier[0]
	mi.AnnounceList = metainfo.AnnounceList{tier}
	w.Header().Set("Content-Type", "application/x-bittorrent")
	w.Header().Set("Content-Disposition", `attachment; filename="`+id+`.torrent"`)
	if err := mi.Write(w); err != nil {
		s.log.Debug("writing metainfo", "blob", id, "err", err)
	}
}
