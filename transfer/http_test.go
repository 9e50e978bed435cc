package transfer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	httpTracker "github.com/anacrolix/torrent/tracker/http"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// httpFixture: node A holds blob; missing is listed in the catalogue but
// held by nobody; the handler is served at base, and one more (fake) node
// is listed.
type httpFixture struct {
	a       testNode
	blob    catalog.Blob
	data    []byte
	missing catalog.Blob
	base    string
	other   string // a node that is listed but not contacted
	peers   *mesh
}

func newHTTPFixture(t *testing.T) *httpFixture {
	cat := &fakeCatalog{}
	f := &httpFixture{peers: &mesh{extra: []string{"127.0.0.1:1"}}, other: "127.0.0.1:2"}
	f.a = startNode(t, cat, f.peers, "", 0)
	f.peers.add(f.a.Server)
	f.data = randomData(10, 3<<20+12345)
	f.blob = ingestData(t, f.a.cfg.Dir, f.data)
	if err := f.a.AddLocal(f.blob); err != nil {
		t.Fatal(err)
	}
	f.missing = ingestData(t, t.TempDir(), randomData(11, 5000))
	cat.setCurrent("img", f.blob, f.missing)
	waitFor(t, waitLong, "A to verify the blob", func() bool { return haveBlob(f.a.Server, f.blob.ID) })
	var srv *httptest.Server
	srv = httptest.NewServer(f.a.Handler(func() []string { return []string{f.other, srv.Listener.Addr().String()} }))
	t.Cleanup(srv.Close)
	f.base = srv.URL
	return f
}

func getURL(t *testing.T, u string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestHTTPBlob(t *testing.T) {
	f := newHTTPFixture(t)
	resp, body := getURL(t, f.base+"/v1/blobs/"+f.blob.ID)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, f.data) {
		t.Fatalf("full GET: %s, %d bytes", resp.Status, len(body))
	}
	resp, body = getURL(t, f.base+"/v1/blobs/"+f.blob.ID, "Range", "bytes=1048570-1048600")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.data[1048570:1048601]) {
		t.Fatalf("range GET: %s, %q", resp.Status, body)
	}
	last := len(f.data) - 100
	resp, body = getURL(t, f.base+"/v1/blobs/"+f.blob.ID, "Range", "bytes=-100")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.data[last:]) {
		t.Fatalf("suffix range GET: %s, %d bytes", resp.Status, len(body))
	}
	resp, _ = getURL(t, f.base+"/v1/blobs/"+f.blob.ID, "If-None-Match", `"`+f.blob.ID+`"`)
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET with the id as ETag: %s", resp.Status)
	}
	for _, p := range []string{
		"/v1/blobs/" + f.missing.ID,            // listed, not held
		"/v1/blobs/" + strings.Repeat("0", 64), // unknown
		"/v1/blobs/..%2f..%2fetc%2fpasswd",
		"/v1/blobs/..%2F" + f.blob.ID,
		"/v1/blobs/" + strings.ToUpper(f.blob.ID),
		"/v1/blobs/" + f.blob.ID[:63] + "g",
		"/v1/blobs/" + f.blob.ID + "%00",
		"/v1/blobs/x/torrent",
		"/v1/blobs/" + strings.Repeat("0", 64) + "/torrent",
		"/v1/nothing",
	} {
		resp, body := getURL(t, f.base+p)
		var e struct{ Error string }
		if resp.StatusCode != http.StatusNotFound || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("%s: %s %q, want 404 with a JSON error", p, resp.Status, body)
		}
	}
}

func TestHTTPTorrent(t *testing.T) {
	f := newHTTPFixture(t)
	resp, body := getURL(t, f.base+"/v1/blobs/"+f.blob.ID+"/torrent")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-bittorrent" {
		t.Fatalf("%s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	mi, err := metainfo.Load(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ih := mi.HashInfoBytes().HexString(); ih != f.blob.InfoHash {
		t.Errorf("info hash %s, want %s", ih, f.blob.InfoHash)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil || info.Name != f.blob.ID || info.Length != f.blob.Size {
		t.Errorf("info: %v, name %s, length %d", err, info.Name, info.Length)
	}
	self := strings.TrimPrefix(f.base, "http://")
	nodes := []string{self, f.other}
	slices.Sort(nodes)
	var ann, seeds []string
	for _, n := range nodes {
		ann = append(ann, "http://"+n+"/announce")
		seeds = append(seeds, "http://"+n+"/v1/blobs/")
	}
	if len(mi.AnnounceList) != 1 || !slices.Equal(mi.AnnounceList[0], ann) {
		t.Errorf("announce-list %v, want [%v]", mi.AnnounceList, ann)
	}
	if !slices.Equal(mi.UrlList, seeds) {
		t.Errorf("url-list %v, want %v", mi.UrlList, seeds)
	}
	// The missing blob still has metainfo: it comes from the catalogue.
	if resp, _ := getURL(t, f.base+"/v1/blobs/"+f.missing.ID+"/torrent"); resp.StatusCode != http.StatusOK {
		t.Errorf("metainfo of a listed blob not held here: %s", resp.Status)
	}
}

// announceTo sends a compact announce as a BitTorrent client would.
func announceTo(t *testing.T, base string, ih string, port int, event string) httpTracker.HttpResponse {
	t.Helper()
	h := metainfo.NewHashFromHex(ih)
	q := url.Values{
		"info_hash": {string(h[:])},
		"peer_id":   {fmt.Sprintf("-XX0001-%012d", port)},
		"port":      {fmt.Sprint(port)},
		"left":      {"100"},
		"compact":   {"1"},
	}
	if event != "" {
		q.Set("event", event)
	}
	resp, body := getURL(t, base+"/announce?"+q.Encode())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("announce: %s %q", resp.Status, body)
	}
	var r httpTracker.HttpResponse
	if err := bencode.Unmarshal(body, &r); err != nil {
		t.Fatalf("announce response %q: %v", body, err)
	}
	if r.FailureReason != "" {
		t.Fatalf("announce failed: %s", r.FailureReason)
	}
	return r
}

func peerStrings(r httpTracker.HttpResponse) []string {
	var out []string
	for _, p := range r.Peers.List {
		ap, _ := p.ToNetipAddrPort()
		out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String())
	}
	slices.Sort(out)
	return out
}

func TestHTTPAnnounce(t *testing.T) {
	f := newHTTPFixture(t)
	servers := []string{"127.0.0.1:1", f.a.Addr()}
	slices.Sort(servers)
	r := announceTo(t, f.base, f.blob.InfoHash, 6881, "started")
	if got := peerStrings(r); !slices.Equal(got, servers) {
		t.Errorf("first announce: peers %v, want the servers %v", got, servers)
	}
	if r.Interval <= 0 {
		t.Errorf("interval %d", r.Interval)
	}
	r = announceTo(t, f.base, f.blob.InfoHash, 6882, "")
	want := slices.Sorted(slices.Values(append(slices.Clone(servers), "127.0.0.1:6881")))
	if got := peerStrings(r); !slices.Equal(got, want) {
		t.Errorf("second announce: peers %v, want %v", got, want)
	}
	announceTo(t, f.base, f.blob.InfoHash, 6881, "stopped")
	r = announceTo(t, f.base, f.blob.InfoHash, 6882, "")
	if got := peerStrings(r); !slices.Equal(got, servers) {
		t.Errorf("after stopped: peers %v, want %v", got, servers)
	}
	// An info hash the catalogue does not know is neither tracked nor served.
	other := strings.Repeat("ab", 20)
	announceTo(t, f.base, other, 6883, "started")
	if got := peerStrings(announceTo(t, f.base, other, 6884, "")); len(got) != 0 {
		t.Errorf("unknown info hash: peers %v", got)
	}
}

// A plain BitTorrent client with only the .torrent finds A through the
// tracker and downloads the blob.
func TestHTTPClientDownload(t *testing.T) {
	f := newHTTPFixture(t)
	_, body := getURL(t, f.base+"/v1/blobs/"+f.blob.ID+"/torrent")
	mi, err := metainfo.Load(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stor := storage.NewFileOpts(storage.NewFileClientOpts{ClientBaseDir: dir,
		PieceCompletion: storage.NewMapPieceCompletion(), UsePartFiles: g.Some(false)})
	defer stor.Close()
	cc := torrent.NewDefaultClientConfig()
	cc.SetListenAddr("127.0.0.1:0")
	cc.DisableIPv6, cc.NoDHT, cc.DisablePEX, cc.NoDefaultPortForwarding = true, true, true, true
	cc.DisableUTP, cc.DisableWebtorrent, cc.DisableWebseeds = true, true, true // peers via the tracker only
	cc.DefaultStorage, cc.Slogger = stor, quiet()
	cl, err := torrent.NewClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	tor, err := cl.AddTorrent(mi)
	if err != nil {
		t.Fatal(err)
	}
	tor.DownloadAll()
	select {
	case <-tor.Complete().On():
	case <-time.After(waitLong):
		t.Fatal("client did not complete through the tracker")
	}
	if fileSum(dir, f.blob.ID) != sumOf(f.data) {
		t.Fatal("client downloaded wrong bytes")
	}
}
