//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Loopback subnets (127.0.N.0) of the tests; benchmarks use 60 and up.
const (
	netKillLeader = 11
	netSnapshot   = 12
	netLeave      = 13
	netBadInput   = 14
	netStable     = 15
	netOwnWrites  = 16
	netJoinLeave  = 17
)

// TestKillLeaderKeepsReadsAndResumesWrites: a crashed leader must not stop
// reads on the survivors (they are served from the local replica), writes
// through a survivor resume once a new leader is elected, and the crashed
// node catches up after a restart with its old data dir.
func TestKillLeaderKeepsReadsAndResumesWrites(t *testing.T) {
	c := newCluster(t, netKillLeader, 3, 0)
	leader := c.start()
	c.waitSettled(30*time.Second, 3)
	f := c.followers(leader)[0]
	t.Logf("leader %s; writing through follower %s", leader.name, f.name)

	c.mustCreate(f, "/v1/groups", map[string]string{"name": "lab1", "boot_mode": "diskless-ram"})
	code, data, err := c.post(f.url("/v1/clients"), map[string]string{"mac": "AA-BB-CC-00-00-01", "hostname": "pc1", "group": "lab1"})
	if err != nil || code != http.StatusCreated {
		t.Fatalf("create client through follower %s: HTTP %d %v: %s", f.name, code, err, brief(data))
	}
	var cl client
	if err := json.Unmarshal(data, &cl); err != nil || cl.MAC != "aa:bb:cc:00:00:01" {
		t.Fatalf("created client %s: want canonical mac aa:bb:cc:00:00:01 (err %v)", data, err)
	}
	before := c.waitConverged(10 * time.Second)

	// Crash the leader; read from both survivors while they elect a new one.
	survivors := c.others(leader)
	killedAt := time.Now()
	leader.kill()

	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		reads    atomic.Int64
		failMu   sync.Mutex
		failures []string
	)
	fail := func(s string) {
		failMu.Lock()
		defer failMu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, s)
		}
	}
	for _, n := range survivors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ { // bounded; stop ends it much sooner
				select {
				case <-stop:
					return
				default:
				}
				var groups []group
				if err := c.getJSON(n.url("/v1/groups"), &groups); err != nil {
					fail(fmt.Sprintf("%s after %s: %v", n.name, time.Since(killedAt).Round(time.Millisecond), err))
				} else if !slices.ContainsFunc(groups, func(g group) bool { return g.Name == "lab1" }) {
					fail(fmt.Sprintf("%s: groups %+v lack lab1", n.name, groups))
				}
				// The digest changes once the write below lands; until then
				// it must be the one from before the crash.
				var d digest
				if err := c.getJSON(n.url("/v1/catalog/digest"), &d); err != nil {
					fail(fmt.Sprintf("%s after %s: %v", n.name, time.Since(killedAt).Round(time.Millisecond), err))
				} else if len(d.Digest) != 64 || d.AppliedIndex < before.AppliedIndex ||
					(d.AppliedIndex == before.AppliedIndex && d.Digest != before.Digest) {
					fail(fmt.Sprintf("%s: digest %+v, before the crash %+v", n.name, d, before))
				}
				reads.Add(2)
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}

	// Write through a survivor until it succeeds (each attempt may itself
	// wait for the election); a fresh name per attempt keeps a retry of an
	// ambiguous failure from turning into a conflict.
	var (
		wrote    time.Duration
		attempts int
		lastErr  string
	)
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 0; attempt < 200 && time.Now().Before(deadline); attempt++ {
		attempts++
		n := survivors[attempt%len(survivors)]
		code, data, err := c.post(n.url("/v1/groups"), map[string]string{"name": fmt.Sprintf("after-%d", attempt)})
		if err == nil && code == http.StatusCreated {
			wrote = time.Since(killedAt)
			t.Logf("first write after the crash succeeded through %s %s after the kill (attempt %d)", n.name, wrote.Round(time.Millisecond), attempts)
			break
		}
		lastErr = fmt.Sprintf("%s: HTTP %d %v %s", n.name, code, err, brief(data))
		t.Logf("write attempt %d at +%s failed: %s", attempts, time.Since(killedAt).Round(time.Millisecond), lastErr)
		time.Sleep(20 * time.Millisecond)
	}
	// Keep reading a little longer, then stop the readers.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d reads on the survivors during the failover, %d failed", reads.Load(), len(failures))
	if len(failures) > 0 {
		t.Errorf("reads during the election failed:\n  %s", strings.Join(failures, "\n  "))
	}
	if wrote == 0 {
		t.Fatalf("no write succeeded within 30s of killing the leader; last: %s", lastErr)
	}
	newLeader := c.leader(10*time.Second, survivors...)
	t.Logf("new leader %s", newLeader.name)

	// Restart the crashed node with its data dir; it must catch up.
	leader.start()
	c.waitHealthy(leader, 30*time.Second)
	c.waitVoters(30*time.Second, "n1", "n2", "n3")
	d := c.waitConverged(30 * time.Second)
	t.Logf("converged after restart at applied index %d digest %s", d.AppliedIndex, d.Digest[:16])
	var groups []group
	if err := c.getJSON(leader.url("/v1/groups"), &groups); err != nil || len(groups) < 2 {
		t.Errorf("restarted %s: groups %+v (%v), want lab1 and the post-failover group", leader.name, groups, err)
	}

	// The CLI against a follower shows the data.
	f = c.followers(c.leader(10 * time.Second))[0]
	var st status
	out := c.cli(f, "status", "--json")
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("shoal status --json: %v\n%s", err, out)
	}
	if st.Node != f.name || st.Catalog.Groups < 2 || st.Catalog.Clients != 1 || st.Catalog.Digest != d.Digest || len(st.Servers) != 3 {
		t.Errorf("shoal status --json on %s: %+v", f.name, st)
	}
	var clients []client
	out = c.cli(f, "client", "ls", "--json")
	if err := json.Unmarshal(out, &clients); err != nil {
		t.Fatalf("shoal client ls --json: %v\n%s", err, out)
	}
	if len(clients) != 1 || clients[0] != (client{MAC: "aa:bb:cc:00:00:01", Hostname: "pc1", Group: "lab1"}) {
		t.Errorf("shoal client ls --json on %s: %+v", f.name, clients)
	}
}

// TestSnapshotCatchUp: a follower that was down while the leader compacted
// its log must catch up by installing a snapshot.
func TestSnapshotCatchUp(t *testing.T) {
	const writes = 1000
	c := newCluster(t, netSnapshot, 3, 0, "--snapshot-threshold", "100", "--snapshot-interval", "1s")
	leader := c.start()
	c.waitSettled(30*time.Second, 3)
	c.mustCreate(leader, "/v1/groups", map[string]string{"name": "fleet"})

	victim := c.followers(leader)[0]
	vst := c.mustStatus(victim)
	t.Logf("leader %s; killing follower %s at last index %d (last snapshot %d)", leader.name, victim.name, vst.LastIndex, vst.LastSnapshotIndex)
	victim.kill()

	live := c.others(victim)
	took, err := c.createClients(live, "fleet", 0x51, "pc", 0, writes, 8)
	t.Logf("%d writes through %s and %s in %s (%.0f writes/s)", writes, live[0].name, live[1].name,
		took.Round(time.Millisecond), float64(writes)/took.Seconds())
	if err != nil {
		t.Errorf("writes while %s was down: %v", victim.name, err)
	}

	// Make sure the survivors compacted their logs past what the victim has.
	c.waitFor(30*time.Second, "a snapshot on the survivors beyond the victim's last index + 100", func() (bool, string) {
		for _, n := range live {
			st, err := c.status(n)
			if err != nil {
				return false, err.Error()
			}
			if st.LastSnapshotIndex <= vst.LastIndex+100 {
				return false, fmt.Sprintf("%s last snapshot index %d", n.name, st.LastSnapshotIndex)
			}
		}
		return true, ""
	})

	// Restart the victim with a threshold it cannot reach, so that it takes
	// no snapshot of its own: any snapshot it has was installed by the leader.
	victim.args = append(victim.args, "--snapshot-threshold", "1000000")
	restarted := time.Now()
	victim.start()
	c.waitHealthy(victim, 30*time.Second)
	d := c.waitConverged(60 * time.Second)
	t.Logf("%s caught up %s after its restart (applied index %d)", victim.name, time.Since(restarted).Round(time.Millisecond), d.AppliedIndex)

	st := c.mustStatus(victim)
	t.Logf("%s after catch-up: last_snapshot_index %d, applied %d, catalogue %d clients", victim.name, st.LastSnapshotIndex, st.AppliedIndex, st.Catalog.Clients)
	if st.LastSnapshotIndex == 0 || st.LastSnapshotIndex <= vst.LastIndex {
		t.Errorf("%s last_snapshot_index %d: want > %d, i.e. a snapshot installed from the leader; "+
			"it caught up through log entries the leader should have compacted away", victim.name, st.LastSnapshotIndex, vst.LastIndex)
	}
	if st.Catalog.Clients != writes {
		t.Errorf("%s catalogue has %d clients, want %d", victim.name, st.Catalog.Clients, writes)
	}
	var clients []client
	if err := c.getJSON(victim.url("/v1/clients?group=fleet"), &clients); err != nil || len(clients) != writes {
		t.Errorf("%s GET /v1/clients?group=fleet: %d clients (%v), want %d", victim.name, len(clients), err, writes)
	}
}

// TestGracefulLeaveRemovesAtOnce: SIGTERM makes a node leave the raft
// configuration at once, not after --dead-server-grace (30 s).
func TestGracefulLeaveRemovesAtOnce(t *testing.T) {
	c := newCluster(t, netLeave, 3, 0)
	leader := c.start()
	f := c.followers(leader)[0]
	t.Logf("leader %s; sending SIGTERM to follower %s", leader.name, f.name)

	sent := time.Now()
	if err := f.term(15 * time.Second); err != nil {
		t.Errorf("%s exited with %v after SIGTERM, want status 0", f.name, err)
	}
	exited := time.Since(sent)
	var removed time.Duration
	waitFor(t, 5*time.Second, fmt.Sprintf("leader %s to drop %s from raft", leader.name, f.name), func() (bool, string) {
		st, err := c.status(leader)
		if err != nil {
			return false, err.Error()
		}
		if _, ok := st.server(f.name); ok {
			return false, fmt.Sprintf("servers %+v", st.Servers)
		}
		removed = time.Since(sent)
		return true, ""
	})
	t.Logf("%s exited %s after SIGTERM; gone from the leader's configuration %s after SIGTERM",
		f.name, exited.Round(time.Millisecond), removed.Round(time.Millisecond))

	// And it stays gone: nothing may add the departed node back (as a
	// non-voter from a stale gossip view, say) while the grace runs.
	absent := 0
	waitFor(t, 10*time.Second, fmt.Sprintf("%s to stay out of %s's configuration for 3s", f.name, leader.name), func() (bool, string) {
		st, err := c.status(leader)
		if err != nil {
			return false, err.Error()
		}
		if sv, ok := st.server(f.name); ok {
			t.Errorf("%s is back in the leader's configuration as %s, %s after SIGTERM", f.name, sv.Suffrage, time.Since(sent).Round(time.Millisecond))
			t.FailNow()
		}
		absent++
		return absent >= 60, "" // 60 polls, 50 ms apart
	})

	// The two remaining voters still make progress.
	rest := c.others(leader)[0]
	c.mustCreate(rest, "/v1/groups", map[string]string{"name": "after-leave"})

	// Gossip tells a goodbye from a crash: /v1/nodes must say "left".
	t.Run("nodes_status_left", func(t *testing.T) {
		waitFor(t, 5*time.Second, fmt.Sprintf("%s listed as left in %s's /v1/nodes", f.name, leader.name), leftCheck(c, leader, f))
	})
}

// leftCheck is true once leader's /v1/nodes lists gone as left (or no
// longer lists it) and no longer gives it a raft role.
func leftCheck(c *cluster, leader, gone *node) func() (bool, string) {
	return func() (bool, string) {
		var nodes []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
			Role   string `json:"role"`
		}
		if err := c.getJSON(leader.url("/v1/nodes"), &nodes); err != nil {
			return false, err.Error()
		}
		for _, n := range nodes {
			if n.Name == gone.name {
				return n.Status == "left" && n.Role == "none", fmt.Sprintf("%+v", n)
			}
		}
		return true, "" // forgotten entirely is fine too
	}
}

// TestBadInput: rejected writes get the documented status codes through a
// follower, with a JSON error, and change nothing.
func TestBadInput(t *testing.T) {
	c := newCluster(t, netBadInput, 3, 0)
	leader := c.start()
	c.waitSettled(30*time.Second, 3)
	f := c.followers(leader)[0]
	c.mustCreate(f, "/v1/groups", map[string]string{"name": "lab1"})
	c.mustCreate(f, "/v1/clients", map[string]string{"mac": "aa:bb:cc:00:00:01", "hostname": "pc1", "group": "lab1"})
	before := c.waitConverged(10 * time.Second)

	big := []byte(`{"mac":"aa:bb:cc:00:00:09","group":"lab1","hostname":"` + strings.Repeat("a", 2<<20) + `"}`)
	cases := []struct {
		name string
		path string
		body any
		want int
	}{
		{"invalid MAC", "/v1/clients", map[string]string{"mac": "aa:bb:cc:zz:00:02", "hostname": "pc2", "group": "lab1"}, 400},
		{"unknown group", "/v1/clients", map[string]string{"mac": "aa:bb:cc:00:00:02", "hostname": "pc2", "group": "nope"}, 400},
		{"duplicate hostname", "/v1/clients", map[string]string{"mac": "aa:bb:cc:00:00:03", "hostname": "pc1", "group": "lab1"}, 409},
		{"duplicate MAC other notation", "/v1/clients", map[string]string{"mac": "AABBCC000001", "hostname": "pc4", "group": "lab1"}, 409},
		{"duplicate group", "/v1/groups", map[string]string{"name": "lab1"}, 409},
		{"malformed JSON", "/v1/clients", []byte(`{"mac": "aa:bb:cc:00:00:05", "hostname":`), 400},
		{"unknown field", "/v1/groups", []byte(`{"name":"lab2","bootmode":"disk"}`), 400},
		{"body over 1 MiB", "/v1/clients", big, 413},
	}
	for _, tc := range cases {
		var (
			code int
			data []byte
			err  error
		)
		// The server may answer 413 before it has read the whole body and
		// close the connection under the client; retry such transport errors.
		for i := 0; i < 3; i++ {
			if code, data, err = c.post(f.url(tc.path), tc.body); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var e struct {
			Error string `json:"error"`
		}
		if code != tc.want {
			t.Errorf("%s: HTTP %d, want %d: %s", tc.name, code, tc.want, brief(data))
		} else if json.Unmarshal(data, &e) != nil || e.Error == "" {
			t.Errorf("%s: HTTP %d with body %q, want {\"error\": ...}", tc.name, code, data)
		} else {
			t.Logf("%s: HTTP %d %s", tc.name, code, e.Error)
		}
	}

	// Nothing changed, on any replica.
	ds, err := c.digests(c.running()...)
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range ds {
		if d != before {
			t.Errorf("%s: digest/applied index %+v after rejected writes, want %+v", name, d, before)
		}
	}
	var clients []client
	if err := c.getJSON(leader.url("/v1/clients"), &clients); err != nil || len(clients) != 1 {
		t.Errorf("leader has clients %+v (%v), want only pc1", clients, err)
	}
}
