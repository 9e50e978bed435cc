package bootsvc

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/cluster/catalog"
)

func TestHTTPBoot(t *testing.T) {
	dir, data := bootRoot(t)
	files, err := OpenFileRoot(dir)
	must(t, err)
	defer files.Close()
	cat := newFakeCatalog()
	// A value the real catalogue would refuse, as if it came from an old
	// snapshot: the script endpoint must refuse to render it.
	cat.clients["aa:bb:cc:00:00:66"] = catalog.Client{MAC: "aa:bb:cc:00:00:66", Hostname: "pc6\nshell", Group: "lab"}
	cat.clients["aa:bb:cc:00:00:77"] = catalog.Client{MAC: "aa:bb:cc:00:00:77", Hostname: "pc7", Group: "noimage"}
	b := &HTTPBoot{Source: ScriptSource{Catalog: cat, BaseURL: testBase}, Files: files, Retry: 5 * time.Second}
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()

	cases := []struct {
		name, path string
		code       int
		has, hasnt string
	}{
		{"known client", ScriptPath + "?mac=" + url.QueryEscape(macKnown), 200, "kernel " + testBase + BootBlobURLPath(macKnown, testKernel), ""},
		{"mac in dash notation", ScriptPath + "?mac=AA-BB-CC-00-00-01", 200, "shoal.hostname=pc1", ""},
		{"unknown client", ScriptPath + "?mac=" + macUnknown, 200, "is not registered", "kernel"},
		{"group without image", ScriptPath + "?mac=aa:bb:cc:00:00:77", 200, "cannot boot yet", "kernel"},
		{"hostile catalogue value", ScriptPath + "?mac=aa:bb:cc:00:00:66", 500, "unavailable", "shell"},
		{"bad mac", ScriptPath + "?mac=" + url.QueryEscape("x\nshell"), 400, "mac", "shell"},
		{"no mac", ScriptPath, 400, "", ""},
		{"boot file", BootFilesPath + "undionly.kpxe", 200, string(data[:16]), ""},
		{"boot file in subdir", BootFilesPath + "dir/sub/snponly.efi", 200, "efi", ""},
		{"boot file escape", BootFilesPath + "escape-rel", 404, "", "secret"},
		{"boot file dotdot encoded", BootFilesPath + "..%2fsecret", 404, "", "secret"},
		{"boot file directory", BootFilesPath + "dir", 404, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			must(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.has) ||
				(tc.hasnt != "" && strings.Contains(string(body), tc.hasnt)) {
				t.Fatalf("GET %s = %d, body %q; want %d containing %q, not %q", tc.path, resp.StatusCode, shown(string(body)), tc.code, tc.has, tc.hasnt)
			}
		})
	}
}

func TestHTTPBootFileRange(t *testing.T) {
	dir, data := bootRoot(t)
	files, err := OpenFileRoot(dir)
	must(t, err)
	defer files.Close()
	srv := httptest.NewServer((&HTTPBoot{Files: files}).Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+BootFilesPath+"undionly.kpxe", nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(data[10:20]) {
		t.Fatalf("range: %d %x", resp.StatusCode, body)
	}
}
