package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shoal-project/shoal/cluster"
	"github.com/shoal-project/shoal/cluster/catalog"
	"github.com/shoal-project/shoal/cluster/clustertest"
)

func cmd(t *testing.T, typ catalog.CommandType, body any) catalog.Command {
	t.Helper()
	c, err := catalog.NewCommand(typ, time.Now().Unix(), body)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func apply(t *testing.T, n *clustertest.Node, typ catalog.CommandType, body any) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	idx, err := n.Apply(ctx, cmd(t, typ, body))
	if err != nil {
		t.Fatalf("apply %s on %s: %v", typ, n.Name, err)
	}
	return idx
}

func waitDigestsEqual(t *testing.T, c *clustertest.Cluster) {
	t.Helper()
	c.Wait("equal catalogue digests on all running nodes", 10*time.Second, func() bool {
		var d string
		for i, n := range c.Running() {
			if i == 0 {
				d = n.Catalog().Digest()
			} else if n.Catalog().Digest() != d {
				return false
			}
		}
		return true
	})
}

func count(m map[string]string, want string) int {
	k := 0
	for _, v := range m {
		if v == want {
			k++
		}
	}
	return k
}

func TestThreeNodesJoinByGossipAsVoters(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	c.Wait("3 voters", 10*time.Second, func() bool { return count(c.Suffrages(), "voter") == 3 })
	// The leader records every member in the catalogue's node list.
	waitDigestsEqual(t, c)
	c.Wait("3 node records", 5*time.Second, func() bool { return len(c.Nodes[2].Catalog().Nodes()) == 3 })
	for _, rec := range c.Nodes[1].Catalog().Nodes() {
		if rec.RaftAddr == "" || rec.HTTPAddr == "" {
			t.Errorf("node record without addresses: %+v", rec)
		}
	}
}

func TestBootstrapExpectFormsOneCluster(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{BootstrapAll: true})
	s := c.Suffrages()
	if len(s) != 3 || count(s, "voter") != 3 {
		t.Fatalf("want 3 voters from bootstrap-expect 3, got %v", s)
	}
}

func TestSixNodesFiveVotersOneNonvoter(t *testing.T) {
	c := clustertest.New(t, 6, clustertest.Options{})
	c.Wait("5 voters and 1 non-voter", 20*time.Second, func() bool {
		s := c.Suffrages()
		return len(s) == 6 && count(s, "voter") == 5 && count(s, "nonvoter") == 1
	})
}

func TestRestartedSeedWithoutJoinRejoins(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{DeadServerGrace: 300 * time.Millisecond})
	c.Wait("3 voters", 10*time.Second, func() bool { return count(c.Suffrages(), "voter") == 3 })
	seed := c.Nodes[0] // started without --join
	seed.Kill()
	// Past the grace the dead seed is removed; restarted with its original
	// flags (no --join) it must find the others from its remembered peers
	// and be added back.
	c.Wait("dead seed removed", 10*time.Second, func() bool {
		_, in := c.Suffrages()[seed.Name]
		return !in
	})
	apply(t, c.Running()[0], catalog.CmdGroupCreate, catalog.Group{Name: "while-away"})
	seed.Restart()
	c.Wait("seed back as voter", 20*time.Second, func() bool { return c.Suffrages()[seed.Name] == "voter" })
	waitDigestsEqual(t, c)
	if _, ok := seed.Catalog().Group("while-away"); !ok {
		t.Fatal("rejoined seed lacks the write made while it was away")
	}
}

func TestWriteOnFollowerIsForwarded(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	c.Wait("3 voters", 10*time.Second, func() bool { return count(c.Suffrages(), "voter") == 3 })
	f := c.Followers()[0]
	idx := apply(t, f, catalog.CmdGroupCreate, catalog.Group{Name: "lab1"})
	if idx == 0 {
		t.Fatal("forwarded write returned index 0")
	}
	for _, n := range c.Running() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := n.WaitApplied(ctx, idx); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		cancel()
		if _, ok := n.Catalog().Group("lab1"); !ok {
			t.Errorf("%s does not have group lab1 after applying index %d", n.Name, idx)
		}
	}
	// A rule violation detected on the leader comes back to the follower
	// as the same sentinel error, and changes nothing.
	before := f.Catalog().Digest()
	_, err := f.Apply(context.Background(), cmd(t, catalog.CmdClientCreate,
		catalog.Client{MAC: "aa:bb:cc:dd:ee:01", Hostname: "pc1", Group: "nope"}))
	if !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("unknown group via follower: err = %v, want ErrInvalid", err)
	}
	apply(t, f, catalog.CmdClientCreate, catalog.Client{MAC: "aa:bb:cc:dd:ee:01", Hostname: "pc1", Group: "lab1"})
	_, err = f.Apply(context.Background(), cmd(t, catalog.CmdClientCreate,
		catalog.Client{MAC: "aa:bb:cc:dd:ee:02", Hostname: "pc1", Group: "lab1"}))
	if !errors.Is(err, catalog.ErrConflict) {
		t.Fatalf("duplicate hostname via follower: err = %v, want ErrConflict", err)
	}
	waitDigestsEqual(t, c)
	if f.Catalog().Digest() == before {
		t.Fatal("digest did not change after a successful write")
	}
}

func TestLeaderLossWritesResume(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	c.Wait("3 voters", 10*time.Second, func() bool { return count(c.Suffrages(), "voter") == 3 })
	apply(t, c.Followers()[0], catalog.CmdGroupCreate, catalog.Group{Name: "before"})
	waitDigestsEqual(t, c)
	old := c.WaitLeader()
	old.Kill()
	survivor := c.Running()[0]
	// Reads on survivors need no leader, even mid-election.
	if _, ok := survivor.Catalog().Group("before"); !ok {
		t.Fatal("survivor lost group written before the kill")
	}
	apply(t, survivor, catalog.CmdGroupCreate, catalog.Group{Name: "after"})
	if n := c.WaitLeader(); n == old {
		t.Fatal("killed node still leader")
	}
	old.Restart()
	waitDigestsEqual(t, c)
	if _, ok := old.Catalog().Group("after"); !ok {
		t.Fatal("restarted node did not catch up with the write made while it was down")
	}
}

func TestDeadNodeRemovedOnlyAfterGrace(t *testing.T) {
	const grace = 1500 * time.Millisecond
	c := clustertest.New(t, 3, clustertest.Options{DeadServerGrace: grace})
	c.Wait("3 voters", 10*time.Second, func() bool { return count(c.Suffrages(), "voter") == 3 })
	victim := c.Followers()[0]
	killed := time.Now()
	victim.Kill()
	c.Wait("victim removed from raft", 15*time.Second, func() bool {
		_, in := c.Suffrages()[victim.Name]
		return !in
	})
	if took := time.Since(killed); took < grace {
		t.Fatalf("dead node removed after %s, before the %s grace", took, grace)
	}
}

func TestNonvoterPromotedWhenVoterRemoved(t *testing.T) {
	c := clustertest.New(t, 6, clustertest.Options{DeadServerGrace: 500 * time.Millisecond})
	c.Wait("5 voters and 1 non-voter", 20*time.Second, func() bool {
		s := c.Suffrages()
		return len(s) == 6 && count(s, "voter") == 5
	})
	var victim *clustertest.Node
	for _, n := range c.Followers() {
		if c.Suffrages()[n.Name] == "voter" {
			victim = n
			break
		}
	}
	victim.Kill()
	c.Wait("victim removed and the non-voter promoted: 5 voters of 5 servers", 20*time.Second, func() bool {
		s := c.Suffrages()
		_, in := s[victim.Name]
		return !in && len(s) == 5 && count(s, "voter") == 5
	})
}

func TestGracefulLeaveRemovesAtOnce(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{DeadServerGrace: time.Hour})
	c.Wait("3 voters", 10*time.Second, func() bool { return count(c.Suffrages(), "voter") == 3 })
	leaver := c.Followers()[0]
	leaver.Stop()
	// With an hour of grace, only the graceful leave can explain removal.
	c.Wait("leaver removed from raft", 10*time.Second, func() bool {
		_, in := c.Suffrages()[leaver.Name]
		return !in
	})
	apply(t, c.Running()[0], catalog.CmdGroupCreate, catalog.Group{Name: "after-leave"})
}

func TestLeaderLeavesGracefully(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{DeadServerGrace: time.Hour})
	c.Wait("3 voters", 10*time.Second, func() bool { return count(c.Suffrages(), "voter") == 3 })
	old := c.WaitLeader()
	old.Stop()
	c.Wait("old leader removed", 10*time.Second, func() bool {
		_, in := c.Suffrages()[old.Name]
		return !in
	})
	apply(t, c.Running()[1], catalog.CmdGroupCreate, catalog.Group{Name: "after"})
}

func TestWriteWithoutQuorumFailsClearlyAndReadsGoOn(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{WriteTimeout: time.Second})
	c.Wait("3 voters", 10*time.Second, func() bool { return count(c.Suffrages(), "voter") == 3 })
	apply(t, c.Nodes[0], catalog.CmdGroupCreate, catalog.Group{Name: "lab"})
	waitDigestsEqual(t, c)
	fs := c.Followers()
	c.WaitLeader().Kill()
	fs[0].Kill()
	last := fs[1]
	_, err := last.Apply(context.Background(), cmd(t, catalog.CmdGroupCreate, catalog.Group{Name: "lost"}))
	if !errors.Is(err, cluster.ErrNoLeader) {
		t.Fatalf("write without quorum: err = %v, want ErrNoLeader", err)
	}
	if _, ok := last.Catalog().Group("lab"); !ok {
		t.Fatal("minority node cannot read its replica")
	}
	if _, ok := last.Catalog().Group("lost"); ok {
		t.Fatal("failed write is visible")
	}
}

func TestReadBarrierOnFollower(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	c.Wait("3 voters", 10*time.Second, func() bool { return count(c.Suffrages(), "voter") == 3 })
	f := c.Followers()[0]
	for i := 0; i < 20; i++ {
		apply(t, c.WaitLeader(), catalog.CmdGroupCreate, catalog.Group{Name: fmt.Sprintf("g%d", i)})
		if err := f.ReadBarrier(context.Background()); err != nil {
			t.Fatal(err)
		}
		// After the barrier the follower must see the leader's write.
		if _, ok := f.Catalog().Group(fmt.Sprintf("g%d", i)); !ok {
			t.Fatalf("follower read after barrier misses g%d", i)
		}
	}
}

func TestSnapshotRestoreAcrossRestart(t *testing.T) {
	c := clustertest.New(t, 1, clustertest.Options{})
	n := c.Nodes[0]
	apply(t, n, catalog.CmdGroupCreate, catalog.Group{Name: "lab"})
	for i := 0; i < 50; i++ {
		apply(t, n, catalog.CmdClientCreate, catalog.Client{
			MAC: fmt.Sprintf("02:00:00:00:00:%02x", i), Hostname: fmt.Sprintf("pc%d", i), Group: "lab"})
	}
	want := n.Catalog().Digest()
	n.Kill()
	n.Restart()
	c.Wait("replayed catalogue", 10*time.Second, func() bool { return n.Catalog().Digest() == want })
}
