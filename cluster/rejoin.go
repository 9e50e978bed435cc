package cluster

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"
)

// gossipLoop keeps this node in the gossip pool for its whole life. memberlist
// alone does not: a node restarted without --join (the seed of the quick
// start), a node whose seeds are down, or the two sides of a long partition
// (memberlist stops probing dead nodes) would stay apart for good, and the
// leader would remove the lost side after the grace. So the loop joins the
// configured seeds, the peers remembered on disk and the last addresses of
// failed members, whenever this node is alone or some member is failed; and
// it remembers the live peers in the data dir for the next start.
func (c *Cluster) gossipLoop(ctx context.Context) {
	backoff := 200 * time.Millisecond
	var saved []string
	for {
		targets, lonely := c.rejoinTargets()
		if len(targets) > 0 {
			n, err := c.ml.Join(targets)
			switch {
			case n > 0 && lonely:
				c.log.Info("joined cluster through gossip", "contacted", n)
				backoff = 200 * time.Millisecond
			case n == 0 && lonely:
				c.log.Warn("cannot reach any peer yet, retrying", "peers", targets, "err", err, "in", backoff)
			}
		}
		if peers := c.livePeers(); len(peers) > 0 && !slices.Equal(peers, saved) {
			c.savePeers(peers)
			saved = peers
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// rejoinTargets says whom to contact: everyone known when this node is
// alone, else only the failed members (whose failure may be a partition).
func (c *Cluster) rejoinTargets() (targets []string, lonely bool) {
	self := c.gossipSelf
	lonely = len(c.reg.alive()) <= 1
	add := func(a string) {
		if a != "" && a != self && !slices.Contains(targets, a) {
			targets = append(targets, a)
		}
	}
	for _, m := range c.reg.list() {
		if m.Status == StatusFailed {
			add(m.GossipAddr)
		}
	}
	if lonely {
		for _, a := range c.cfg.Join {
			add(a)
		}
		for _, a := range c.loadPeers() {
			add(a)
		}
	}
	return targets, lonely
}

func (c *Cluster) livePeers() []string {
	self := c.gossipSelf
	var out []string
	for _, m := range c.reg.alive() {
		if m.GossipAddr != self {
			out = append(out, m.GossipAddr)
		}
	}
	sort.Strings(out)
	return out
}

func (c *Cluster) peersFile() string { return filepath.Join(c.cfg.DataDir, "peers.json") }

func (c *Cluster) loadPeers() []string {
	b, err := os.ReadFile(c.peersFile())
	if err != nil {
		return nil
	}
	var peers []string
	if json.Unmarshal(b, &peers) != nil {
		return nil
	}
	return peers
}

// savePeers writes atomically: a crash mid-write must not lose the list.
func (c *Cluster) savePeers(peers []string) {
	b, _ := json.Marshal(peers)
	if err := writeFileAtomic(c.peersFile(), b); err != nil {
		c.log.Warn("cannot remember peers", "err", err)
	}
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
