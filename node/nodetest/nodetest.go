// Package nodetest runs a single-node shoal server in the test process on
// its own loopback address, for tests of the API and of the CLI.
package nodetest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/cluster"
	"github.com/shoal-project/shoal/cluster/clustertest"
	"github.com/shoal-project/shoal/node"
)

// Start runs a node named name on ip (default ports), applies mods to its
// configuration, waits until /healthz answers 200 and says it leads and returns its API base URL. The node stops in t.Cleanup.
func Start(t *testing.T, name, ip string, mods ...func(*node.Config)) string {
	t.Helper()
	cfg := node.DefaultConfig()
	c := &cfg.Cluster
	c.NodeName, c.DataDir = name, t.TempDir()
	c.HTTPAddr, c.RaftAddr, c.GossipAddr = ip+":7480", ip+":7481", ip+":7946"
	cfg.Transfer.ListenAddr = ip + ":7482"
	c.Timing = cluster.FastTiming()
	cfg.Logger = clustertest.Logger(name)
	for _, m := range mods {
		m(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: node run: %v", name, err)
		}
	})
	base := "http://" + c.HTTPAddr
	clustertest.Wait(t, name+" healthy and leading", 10*time.Second, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(b), `"Leader"`)
	})
	return base
}
