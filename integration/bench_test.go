//go:build integration

package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Loopback subnets of the benchmarks (tests use 11-59).
const (
	netBenchFailover = 61
	netBenchWrites   = 62
	netBenchJoin     = 63
)

// The benchmarks measure wall-clock figures of a real cluster, so each runs
// its rounds once whatever b.N is; run them with -benchtime 1x. They print
// their figures and report them with b.ReportMetric.

// BenchmarkFailover: kill -9 the leader of a 3-node cluster (default raft
// timings) and time until a write through a survivor succeeds; the writer
// retries every 20 ms and each write itself waits for a leader.
func BenchmarkFailover(b *testing.B) {
	const rounds = 10
	c := newCluster(b, netBenchFailover, 3, 0)
	leader := c.start()
	c.waitSettled(30*time.Second, 3)
	c.mustCreate(leader, "/v1/groups", map[string]string{"name": "bench"})
	b.ResetTimer()

	var times []time.Duration
	var lines []string
	for r := 0; r < rounds; r++ {
		leader = c.waitVoters(30*time.Second, "n1", "n2", "n3")
		survivors := c.others(leader)
		killed := time.Now()
		leader.kill()

		var took time.Duration
		var attempts int
		var errs []string
		for attempt := 0; attempt < 1000 && time.Since(killed) < 30*time.Second; attempt++ {
			attempts++
			n := survivors[attempt%len(survivors)]
			code, data, err := c.post(n.url("/v1/groups"), map[string]string{"name": fmt.Sprintf("r%d-a%d", r, attempt)})
			if err == nil && code == http.StatusCreated {
				took = time.Since(killed)
				break
			}
			if len(errs) < 3 {
				errs = append(errs, fmt.Sprintf("+%s %s: HTTP %d %v %s", time.Since(killed).Round(time.Millisecond), n.name, code, err, brief(data)))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if took == 0 {
			b.Fatalf("round %d: no write succeeded within 30s of killing %s: %s", r+1, leader.name, strings.Join(errs, " | "))
		}
		times = append(times, took)
		line := fmt.Sprintf("round %2d: killed leader %s, first write %v later (%d attempts)", r+1, leader.name, took.Round(time.Millisecond), attempts)
		if len(errs) > 0 {
			line += "; failed attempts: " + strings.Join(errs, " | ")
		}
		lines = append(lines, line)

		leader.start()
		c.waitHealthy(leader, 30*time.Second)
		c.waitVoters(30*time.Second, "n1", "n2", "n3")
		c.waitConverged(30 * time.Second)
	}
	b.StopTimer()

	med, worst := median(times), maxDur(times)
	fmt.Printf("\nBenchmarkFailover: 3 nodes, default timings, %d rounds of kill -9 leader -> first successful write through a survivor\n", rounds)
	for _, l := range lines {
		fmt.Println("  " + l)
	}
	fmt.Printf("  median %v, max %v (goal: under 3s)\n", med.Round(time.Millisecond), worst.Round(time.Millisecond))
	b.Logf("failover: median %v max %v over %d rounds", med.Round(time.Millisecond), worst.Round(time.Millisecond), rounds)
	b.ReportMetric(med.Seconds(), "s-failover-median")
	b.ReportMetric(worst.Seconds(), "s-failover-max")
}

// BenchmarkWrites: the same number of writes, with the same concurrency,
// through a follower (forwarded to the leader) and directly on the leader.
func BenchmarkWrites(b *testing.B) {
	const (
		writes  = 500
		writers = 8
	)
	c := newCluster(b, netBenchWrites, 3, 0)
	leader := c.start()
	c.waitSettled(30*time.Second, 3)
	f := c.followers(leader)[0]
	c.mustCreate(leader, "/v1/groups", map[string]string{"name": "w"})
	// Warm up both paths (connections, the follower's forwarding client).
	if _, err := c.createClients([]*node{f, leader}, "w", 0x60, "warm", 0, 50, writers); err != nil {
		b.Logf("warm-up: %v", err)
	}
	b.ResetTimer()

	viaFollower, errF := c.createClients([]*node{f}, "w", 0x61, "f", 0, writes, writers)
	onLeader, errL := c.createClients([]*node{leader}, "w", 0x62, "l", 0, writes, writers)
	b.StopTimer()
	if now := c.leader(10 * time.Second); now != leader {
		b.Fatalf("leadership moved from %s to %s during the benchmark; figures are not comparable", leader.name, now.name)
	}

	rf, rl := float64(writes)/viaFollower.Seconds(), float64(writes)/onLeader.Seconds()
	fmt.Printf("\nBenchmarkWrites: %d client creations, %d concurrent writers, 3 nodes\n", writes, writers)
	fmt.Printf("  through follower %s: %7.1f writes/s (%v)\n", f.name, rf, viaFollower.Round(time.Millisecond))
	fmt.Printf("  on leader %s:       %7.1f writes/s (%v)\n", leader.name, rl, onLeader.Round(time.Millisecond))
	fmt.Printf("  follower/leader throughput ratio: %.2f\n", rf/rl)
	for _, e := range []struct {
		name string
		err  error
	}{{"follower", errF}, {"leader", errL}} {
		if e.err != nil {
			fmt.Printf("  %s path errors: %v\n", e.name, e.err)
			b.Logf("%s path: %v", e.name, e.err)
		}
	}
	b.ReportMetric(rf, "writes/s-follower")
	b.ReportMetric(rl, "writes/s-leader")
	b.ReportMetric(rf/rl, "follower/leader")
	d := c.waitConverged(30 * time.Second)
	if st := c.mustStatus(f); st.Catalog.Clients < 2*writes {
		b.Errorf("%s has %d clients after %d writes (digest %s)", f.name, st.Catalog.Clients, 2*writes+50, d.Digest[:16])
	}
}

// BenchmarkJoinToVoter: start a new node with --join against a running
// cluster (1 node at first) and time from process start until the leader
// lists it as a voter (default --stabilization-time 2s). Each round adds a
// fresh node, so the rounds join clusters of 1, 2, 3 and 4 voters (max 5).
//
// The joined nodes stay: leaving right after a promotion can lose the
// single-node cluster its quorum (see TestJoinThenLeaveKeepsQuorum).
func BenchmarkJoinToVoter(b *testing.B) {
	const rounds = 4
	const stabilization = 2 * time.Second // the server default
	c := newCluster(b, netBenchJoin, 1, rounds)
	leader := c.start()
	// autopilot ignores the stabilization time while it has been running
	// for less than that time; let it run longer so the default applies.
	elected := time.Now()
	b.ResetTimer()

	var toVoter, toAdded []time.Duration
	var lines []string
	for r := 0; r < rounds; r++ {
		if r == 0 {
			waitFor(b, 2*stabilization, "the leader to lead for longer than the stabilization time", func() (bool, string) {
				return time.Since(elected) > stabilization+500*time.Millisecond, ""
			})
		}
		n := c.addNode(fmt.Sprintf("join%d", r+1), r+2, "--join", leader.gossipAddr())
		started := time.Now()
		n.start()
		var added, voter time.Duration
		last := ""
		for i := 0; i < 3000 && time.Since(started) < 60*time.Second; i++ {
			if !n.running() {
				b.Fatalf("%s exited: %v\n%s", n.name, n.exitError(), n.logTail(40))
			}
			st, err := c.status(leader)
			if err == nil {
				if s, ok := st.server(n.name); ok {
					if added == 0 {
						added = time.Since(started)
					}
					if s.Suffrage == "voter" {
						voter = time.Since(started)
						break
					}
					last = s.Suffrage
				}
			} else {
				last = err.Error()
			}
			time.Sleep(20 * time.Millisecond)
		}
		if voter == 0 {
			b.Fatalf("round %d: %s not a voter within 60s; last: %s", r+1, n.name, last)
		}
		toVoter, toAdded = append(toVoter, voter), append(toAdded, added)
		lines = append(lines, fmt.Sprintf("round %d: %s joins %d voter(s): in raft as non-voter after %v, voter after %v",
			r+1, n.name, r+1, added.Round(time.Millisecond), voter.Round(time.Millisecond)))
		var names []string
		for _, x := range c.nodes {
			names = append(names, x.name)
		}
		c.waitVoters(15*time.Second, names...)
	}
	b.StopTimer()

	med := median(toVoter)
	fmt.Printf("\nBenchmarkJoinToVoter: new node --join, process start -> voter on the leader (stabilization %v)\n", stabilization)
	for _, l := range lines {
		fmt.Println("  " + l)
	}
	fmt.Printf("  median %v to voter (max %v); median %v to non-voter\n",
		med.Round(time.Millisecond), maxDur(toVoter).Round(time.Millisecond), median(toAdded).Round(time.Millisecond))
	b.Logf("join to voter: median %v over %d rounds", med.Round(time.Millisecond), rounds)
	b.ReportMetric(med.Seconds(), "s-join-to-voter-median")
	b.ReportMetric(median(toAdded).Seconds(), "s-join-to-nonvoter-median")
}
