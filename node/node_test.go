package node_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/shoal-project/shoal/cluster/clustertest"
	"github.com/shoal-project/shoal/node"
	"github.com/shoal-project/shoal/node/nodetest"
)

var ipSeq atomic.Uint32

// startNode runs a single-node server on its own loopback IP.
func startNode(t *testing.T, mods ...func(*node.Config)) string {
	t.Helper()
	return nodetest.Start(t, "t1", fmt.Sprintf("127.251.%d.%d", os.Getpid()%250, ipSeq.Add(1)), mods...)
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func digest(t *testing.T, base string) string {
	t.Helper()
	_, body := do(t, "GET", base+"/v1/catalog/digest", "")
	var d struct{ Digest string }
	if err := json.Unmarshal([]byte(body), &d); err != nil || d.Digest == "" {
		t.Fatalf("digest answer %q: %v", body, err)
	}
	return d.Digest
}

func TestAPI(t *testing.T) {
	base := startNode(t)
	const sha = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	big := `{"name":"` + strings.Repeat("x", 2<<20) + `"}`
	steps := []struct {
		name, method, path, body string
		code                     int
		contains                 string
	}{
		{"create group", "POST", "/v1/groups", `{"name":"lab1"}`, 201, `"boot_mode": "diskless-ram"`},
		{"duplicate group", "POST", "/v1/groups", `{"name":"lab1"}`, 409, "error"},
		{"bad group name", "POST", "/v1/groups", `{"name":"../x"}`, 400, "error"},
		{"malformed json", "POST", "/v1/groups", `{"name":`, 400, "malformed JSON"},
		{"unknown field", "POST", "/v1/groups", `{"name":"g2","nmae":"x"}`, 400, "unknown field"},
		{"trailing data", "POST", "/v1/groups", `{"name":"g2"} {"name":"g3"}`, 400, "trailing data"},
		{"oversized body", "POST", "/v1/groups", big, 413, "over 1048576 bytes"},
		{"client dash notation", "POST", "/v1/clients", `{"mac":"AA-BB-CC-00-00-01","hostname":"PC1","group":"lab1"}`, 201, `"mac": "aa:bb:cc:00:00:01"`},
		{"client by cisco notation", "GET", "/v1/clients/aabb.cc00.0001", "", 200, `"hostname": "pc1"`},
		{"invalid mac", "POST", "/v1/clients", `{"mac":"zz","hostname":"pc2","group":"lab1"}`, 400, "mac"},
		{"unknown group", "POST", "/v1/clients", `{"mac":"aa:bb:cc:00:00:02","hostname":"pc2","group":"nope"}`, 400, "unknown group"},
		{"duplicate hostname", "POST", "/v1/clients", `{"mac":"aa:bb:cc:00:00:02","hostname":"pc1","group":"lab1"}`, 409, "pc1"},
		{"hostile hostname", "POST", "/v1/clients", `{"mac":"aa:bb:cc:00:00:03","hostname":"a;reboot","group":"lab1"}`, 400, "hostname"},
		{"update client", "PUT", "/v1/clients/aa:bb:cc:00:00:01", `{"hostname":"pc9","group":"lab1","ip":"10.0.0.9"}`, 200, `"ip": "10.0.0.9"`},
		{"mac mismatch", "PUT", "/v1/clients/aa:bb:cc:00:00:01", `{"mac":"aa:bb:cc:00:00:05","hostname":"pc9","group":"lab1"}`, 400, "differs"},
		{"missing client", "GET", "/v1/clients/aa:bb:cc:00:00:77", "", 404, "not found"},
		{"group in use", "DELETE", "/v1/groups/lab1", "", 409, "client"},
		{"image version", "POST", "/v1/images/deb/versions", `{"id":"` + sha + `","sha256":"` + sha + `","size":1,"format":"squashfs"}`, 201, `"current": "` + sha + `"`},
		{"list images", "GET", "/v1/images", "", 200, sha},
		{"pin group", "PUT", "/v1/groups/lab1", `{"image":"deb","version":"` + sha + `","boot_mode":"disk"}`, 200, `"boot_mode": "disk"`},
		{"image pinned", "DELETE", "/v1/images/deb", "", 409, "error"},
		{"consistent read", "GET", "/v1/groups?consistent=true", "", 200, "lab1"},
		{"delete client", "DELETE", "/v1/clients/AABBCC000001", "", 204, ""},
		{"delete group", "DELETE", "/v1/groups/lab1", "", 204, ""},
		{"group gone", "GET", "/v1/groups/lab1", "", 404, "not found"},
		{"unknown endpoint", "GET", "/v1/nope", "", 404, "no such endpoint"},
		{"status", "GET", "/v1/status", "", 200, `"suffrage": "voter"`},
		{"nodes", "GET", "/v1/nodes", "", 200, `"role": "leader"`},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := digest(t, base)
			code, body := do(t, s.method, base+s.path, s.body)
			if code != s.code || !strings.Contains(body, s.contains) {
				t.Fatalf("%s %s: got %d %.300s; want %d containing %q", s.method, s.path, code, body, s.code, s.contains)
			}
			if code >= 400 {
				if !json.Valid([]byte(body)) || !strings.Contains(body, `"error"`) {
					t.Errorf("error answer is not a JSON error: %.200s", body)
				}
				if after := digest(t, base); after != before {
					t.Errorf("a rejected request changed the catalogue")
				}
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	base := startNode(t)
	do(t, "POST", base+"/v1/groups", `{"name":"m1"}`)
	code, body := do(t, "GET", base+"/metrics", "")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		"shoal_raft_leader 1", "shoal_raft_state 2", "shoal_raft_servers 1",
		"shoal_gossip_members_alive 1", "shoal_raft_commit_seconds_count",
		`shoal_api_requests_total{code="201",route="POST /v1/groups"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	var applied float64
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "shoal_raft_applied_index ") {
			fmt.Sscan(strings.TrimPrefix(l, "shoal_raft_applied_index "), &applied)
		}
	}
	if applied < 2 {
		t.Errorf("applied index metric %v after a write", applied)
	}
}

func TestDataDirOfAnotherNodeRefused(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/node-name", []byte("other\n"), 0o600)
	cfg := node.DefaultConfig()
	cfg.Cluster.NodeName, cfg.Cluster.DataDir = "t1", dir
	cfg.Cluster.HTTPAddr = "127.252.0.1:7480"
	cfg.Logger = clustertest.Logger("t1")
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `belongs to node "other"`) {
		t.Fatalf("want refusal naming the other node, got %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.Cluster.NodeName = "Bad Name"
	cfg.Cluster.RaftAddr = "nope"
	cfg.Cluster.Advertise = "x.y"
	err := cfg.Validate()
	for _, want := range []string{"node name", "raft address", "advertise"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation error %v does not mention %q", err, want)
		}
	}
	good := node.DefaultConfig()
	good.Cluster.HTTPAddr = "0.0.0.0:7480"
	if _, err := node.New(good); err == nil || !strings.Contains(err.Error(), "--advertise") {
		t.Errorf("binding 0.0.0.0 without --advertise: got %v", err)
	}
}

func TestLocalImportStaysInImportDir(t *testing.T) {
	root := t.TempDir()
	imp := filepath.Join(root, "import")
	os.MkdirAll(imp, 0o755)
	os.WriteFile(filepath.Join(imp, "ok.img"), []byte("image bytes"), 0o600)
	secret := filepath.Join(root, "secret")
	os.WriteFile(secret, []byte("not for export"), 0o600)
	os.Symlink(secret, filepath.Join(imp, "link"))
	blobDir := filepath.Join(root, "blobs")
	base := startNode(t, func(c *node.Config) { c.ImportDir, c.Transfer.Dir = imp, blobDir })
	cases := []struct {
		path string
		code int
	}{
		{"ok.img", 201},
		{filepath.Join(imp, "ok.img"), 201},
		{"../secret", 400},
		{secret, 400},
		{"link", 400},
		{"missing", 400},
		{".", 400},
	}
	for _, c := range cases {
		code, body := do(t, "POST", base+"/v1/blobs?path="+url.QueryEscape(c.path), "")
		if code != c.code {
			t.Errorf("local import of %q: %d %s, want %d", c.path, code, body, c.code)
		}
	}
	// The blob store holds the imported file and nothing else.
	ok := sha256.Sum256([]byte("image bytes"))
	ents, _ := os.ReadDir(filepath.Join(blobDir, ""))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != hex.EncodeToString(ok[:]) {
		t.Errorf("blob dir after the imports: %v, want only %x", names, ok)
	}
}
