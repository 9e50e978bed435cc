//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHealthAndStatusAreStable: once a node is up, /healthz, /v1/status and
// /metrics must report it as running on every call, not only on some.
func TestHealthAndStatusAreStable(t *testing.T) {
	const calls = 40
	c := newCluster(t, netStable, 3, 0)
	leader := c.start()
	f := c.followers(leader)[0]

	for _, n := range []*node{leader, f} {
		bad := map[string]int{}
		for i := 0; i < calls; i++ {
			code, body, err := c.do("GET", n.url("/healthz"), nil)
			if err != nil || code != http.StatusOK {
				bad[fmt.Sprintf("healthz HTTP %d %s", code, brief(body))]++
			}
			var st status
			if err := c.getJSON(n.url("/v1/status"), &st); err != nil {
				bad["status error: "+err.Error()]++
			} else if st.State == "Starting" || len(st.Servers) != 3 || st.Leader == "" {
				bad[fmt.Sprintf("status state=%q leader=%q servers=%d", st.State, st.Leader, len(st.Servers))]++
			}
			if v, err := c.metric(n, "shoal_raft_state"); err != nil || v == "-1" {
				bad[fmt.Sprintf("metric shoal_raft_state=%s %v", v, err)]++
			}
			if v, err := c.metric(n, "shoal_raft_servers"); err != nil || v != "3" {
				bad[fmt.Sprintf("metric shoal_raft_servers=%s %v", v, err)]++
			}
		}
		for what, count := range bad {
			t.Errorf("%s (%s): %d of %d calls: %s", n.name, map[bool]string{true: "leader", false: "follower"}[n == leader], count, calls, what)
		}
	}
}

// metric returns the value of an unlabelled metric from n's /metrics.
func (c *cluster) metric(n *node, name string) (string, error) {
	code, body, err := c.do("GET", n.url("/metrics"), nil)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("/metrics: HTTP %d", code)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("/metrics has no %s", name)
}

// TestFollowerReadsOwnWrites: a write answered through a follower (201 with
// the object) is visible in that follower's local reads right away; the API
// promises that by waiting for the replica to apply the write.
func TestFollowerReadsOwnWrites(t *testing.T) {
	const writes = 300
	c := newCluster(t, netOwnWrites, 3, 0)
	leader := c.start()
	fs := c.followers(leader)
	c.mustCreate(leader, "/v1/groups", map[string]string{"name": "own"}) // the leader path has no such race

	bad := map[string]int{}
	var first []string
	note := func(kind, detail string) {
		bad[kind]++
		if len(first) < 5 {
			first = append(first, detail)
		}
	}
	start := time.Now()
	for i := 0; i < writes; i++ {
		f := fs[i%len(fs)]
		m := mac(0x77, i)
		code, data, err := c.post(f.url("/v1/clients"), map[string]string{"mac": m, "hostname": fmt.Sprintf("own-%d", i), "group": "own"})
		if err != nil || code != http.StatusCreated {
			note(fmt.Sprintf("create HTTP %d", code), fmt.Sprintf("write %d via %s: HTTP %d %v %s", i, f.name, code, err, brief(data)))
			continue
		}
		code, data, err = c.do("GET", f.url("/v1/clients/"+m), nil)
		if err != nil || code != http.StatusOK {
			note(fmt.Sprintf("read-back HTTP %d", code), fmt.Sprintf("read %d via %s: HTTP %d %v %s", i, f.name, code, err, brief(data)))
		}
	}
	t.Logf("%d write+read pairs through followers in %s", writes, time.Since(start).Round(time.Millisecond))
	if len(bad) > 0 {
		t.Errorf("follower did not show its own writes: %v; first: %s", bad, strings.Join(first, " | "))
	}
}

// TestJoinThenLeaveKeepsQuorum: a node that joins a single-node cluster and
// leaves gracefully right after its promotion must leave the cluster as it
// was: one voter, leading, writable. Repeated because the window is short.
func TestJoinThenLeaveKeepsQuorum(t *testing.T) {
	const rounds = 3
	c := newCluster(t, netJoinLeave, 1, rounds)
	leader := c.start()
	for r := 0; r < rounds; r++ {
		n := c.addNode(fmt.Sprintf("quick%d", r+1), r+2, "--join", leader.gossipAddr())
		n.start()
		waitFor(t, 30*time.Second, n.name+" promoted to voter", func() (bool, string) {
			st, err := c.status(leader)
			if err != nil {
				return false, err.Error()
			}
			s, _ := st.server(n.name)
			return s.Suffrage == "voter", fmt.Sprintf("servers %+v", st.Servers)
		})
		if err := n.term(15 * time.Second); err != nil {
			t.Errorf("%s: exit after SIGTERM: %v", n.name, err)
		}
		// Removed at once, and not added back.
		c.waitVoters(5*time.Second, leader.name)
		stable := 0
		waitFor(t, 10*time.Second, fmt.Sprintf("%s alone in the configuration for 2s after %s left", leader.name, n.name), func() (bool, string) {
			st, err := c.status(leader)
			if err != nil {
				stable = 0
				return false, err.Error()
			}
			if st.State != "Leader" || len(st.Servers) != 1 {
				stable = 0
				return false, fmt.Sprintf("state %s, servers %+v", st.State, st.Servers)
			}
			stable++
			return stable >= 40, "" // 40 polls, 50 ms apart
		})
		c.mustCreate(leader, "/v1/groups", map[string]string{"name": fmt.Sprintf("after-%s", n.name)})
	}
}
