package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"testing"
)

// The fixture's lease pool and the MACs holding its leases (see fixtureCommands).
const (
	poolStart = "10.0.0.100"
	poolEnd   = "10.0.0.199"
	macA1     = "0a:00:00:00:00:a1" // 10.0.0.100, unexpired at testAt
	macA2     = "0a:00:00:00:00:a2" // 10.0.0.101, expires exactly at testAt
	macB1     = "0a:00:00:00:00:b1" // no lease, no client
)

// acquire asks for a lease from the fixture's pool.
func acquire(mac, requested string, duration int64) LeaseAcquire {
	return acquireIn(mac, poolStart, poolEnd, requested, duration)
}

func acquireIn(mac, start, end, requested string, duration int64) LeaseAcquire {
	return LeaseAcquire{MAC: mac, RangeStart: start, RangeEnd: end, Requested: requested, Duration: duration}
}

// wantLease checks that mac holds exactly want (found by MAC and by
// address), that the lease table has n entries, and that the address index
// agrees with the table.
func wantLease(mac, ip string, expires int64, n int) func(*testing.T, *State) {
	return func(t *testing.T, s *State) {
		t.Helper()
		want := Lease{MAC: mac, IP: ip, Expires: expires, Updated: testAt}
		if got, ok := s.Lease(mac); !ok || got != want {
			t.Fatalf("Lease(%s) = %+v, %v; want %+v", mac, got, ok, want)
		}
		if got, ok := s.LeaseByIP(ip); !ok || got != want {
			t.Fatalf("LeaseByIP(%s) = %+v, %v; want %+v", ip, got, ok, want)
		}
		if got := len(s.Leases()); got != n {
			t.Fatalf("%d leases, want %d: %+v", got, n, s.Leases())
		}
		checkLeaseIndex(t, s)
	}
}

// noLease checks that mac has no lease and nobody holds ip.
func noLease(t *testing.T, s *State, mac, ip string) {
	t.Helper()
	if l, ok := s.Lease(mac); ok {
		t.Fatalf("%s still holds %+v", mac, l)
	}
	if l, ok := s.LeaseByIP(ip); ok {
		t.Fatalf("%s still leased: %+v", ip, l)
	}
}

// checkLeaseIndex checks the address index against the lease table.
func checkLeaseIndex(t *testing.T, s *State) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.cat.leaseIPs) != len(s.cat.leases) {
		t.Fatalf("index has %d addresses, table %d leases", len(s.cat.leaseIPs), len(s.cat.leases))
	}
	for mac, l := range s.cat.leases {
		if want := (leaseSlot{mac: mac, expires: l.Expires}); l.MAC != mac || s.cat.leaseIPs[leaseNum(l)] != want {
			t.Fatalf("lease %+v stored under %s is not indexed", l, mac)
		}
	}
}

func TestLeaseAcquire(t *testing.T) {
	const fresh = 3 + 1 // the fixture's leases plus a new one
	runRules(t, []ruleCase{
		{name: "new lease takes lowest address", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.1.1", "10.0.1.10", "", 600),
			after: wantLease(macB1, "10.0.1.1", testAt+600, fresh)},
		{name: "any mac notation", typ: CmdLeaseAcquire, body: acquireIn("0A00.0000.00B1", "10.0.1.1", "10.0.1.10", "", 600),
			after: wantLease(macB1, "10.0.1.1", testAt+600, fresh)},
		{name: "single-address pool", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.1.7", "10.0.1.7", "", 1),
			after: wantLease(macB1, "10.0.1.7", testAt+1, fresh)},
		{name: "65536-address pool", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.1.0.0", "10.1.255.255", "10.1.255.255", 60),
			after: wantLease(macB1, "10.1.255.255", testAt+60, fresh)},
		{name: "top of the address space", typ: CmdLeaseAcquire, body: acquireIn(macB1, "255.255.255.254", "255.255.255.254", "", 60),
			after: wantLease(macB1, "255.255.255.254", testAt+60, fresh)},
		{name: "longest duration", typ: CmdLeaseAcquire, body: acquire(macB1, "10.0.0.150", 1<<31),
			after: wantLease(macB1, "10.0.0.150", testAt+1<<31, fresh)},

		// Renewal.
		{name: "renewal keeps ip over requested", typ: CmdLeaseAcquire, body: acquire(macA1, "10.0.0.150", 7200),
			after: wantLease(macA1, "10.0.0.100", testAt+7200, 3)},
		{name: "renewal of own expired lease", typ: CmdLeaseAcquire, body: acquire(macA2, "", 60),
			after: wantLease(macA2, "10.0.0.101", testAt+60, 3)},
		{name: "renewal in narrower pool holding the ip", typ: CmdLeaseAcquire, body: acquireIn(macA1, "10.0.0.100", "10.0.0.100", "", 60),
			after: wantLease(macA1, "10.0.0.100", testAt+60, 3)},
		{name: "renewal by client without fixed ip", typ: CmdLeaseAcquire, body: acquire("020000000003", "", 60),
			after: wantLease("02:00:00:00:00:03", "10.0.0.102", testAt+60, 3)},
		{name: "lease outside the pool moves", typ: CmdLeaseAcquire, body: acquireIn(macA1, "10.0.1.1", "10.0.1.10", "", 60),
			after: func(t *testing.T, s *State) {
				wantLease(macA1, "10.0.1.1", testAt+60, 3)(t, s)
				noLease(t, s, "", "10.0.0.100")
			}},

		// Requested address.
		{name: "requested honoured", typ: CmdLeaseAcquire, body: acquire(macB1, "10.0.0.150", 600),
			after: wantLease(macB1, "10.0.0.150", testAt+600, fresh)},
		{name: "requested first of pool", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.1.1", "10.0.1.10", "10.0.1.1", 600),
			after: wantLease(macB1, "10.0.1.1", testAt+600, fresh)},
		{name: "requested leased to other, lowest free instead", typ: CmdLeaseAcquire,
			body:  acquireIn(macB1, "10.0.0.102", "10.0.0.110", "10.0.0.102", 600),
			after: wantLease(macB1, "10.0.0.103", testAt+600, fresh)},
		{name: "requested fixed client ip, lowest free instead", typ: CmdLeaseAcquire,
			body:  acquireIn(macB1, "10.0.0.1", "10.0.0.10", "10.0.0.2", 600),
			after: wantLease(macB1, "10.0.0.3", testAt+600, fresh)},
		{name: "requested outside pool ignored", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.1.1", "10.0.1.10", "10.0.0.150", 600),
			after: wantLease(macB1, "10.0.1.1", testAt+600, fresh)},
		{name: "requested expired lease of other mac", typ: CmdLeaseAcquire, body: acquire(macB1, "10.0.0.101", 600),
			after: func(t *testing.T, s *State) {
				wantLease(macB1, "10.0.0.101", testAt+600, 3)(t, s)
				noLease(t, s, macA2, "")
			}},

		// Expiry, evaluated at Command.At.
		{name: "expired lease of other mac reused", typ: CmdLeaseAcquire, body: acquire(macB1, "", 600),
			after: func(t *testing.T, s *State) {
				wantLease(macB1, "10.0.0.101", testAt+600, 3)(t, s) // .100 is a1's, unexpired
				noLease(t, s, macA2, "")
			}},
		{name: "unexpired lease not reused", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.0.100", "10.0.0.100", "", 600),
			want: ErrConflict, msg: "lease pool exhausted: 1 addresses in use"},

		// Fixed client addresses.
		{name: "fixed client ips skipped", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.0.1", "10.0.0.10", "", 600),
			after: wantLease(macB1, "10.0.0.3", testAt+600, fresh)},
		{name: "fixed client ips exhaust pool", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.0.1", "10.0.0.2", "", 600),
			want: ErrConflict, msg: "lease pool exhausted: 2 addresses in use in 10.0.0.1-10.0.0.2 (2 fixed client addresses, 0 unexpired leases)"},
		{name: "mixed exhaustion", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.0.100", "10.0.0.100", "", 600),
			want: ErrConflict, msg: "(0 fixed client addresses, 1 unexpired leases)"},
		{name: "client with fixed ip refused", typ: CmdLeaseAcquire, body: acquire("02:00:00:00:00:01", "", 600),
			want: ErrConflict, msg: "client 02:00:00:00:00:01 (node01) has a fixed address 10.0.0.1"},
		{name: "client with fixed ip refused in other notation", typ: CmdLeaseAcquire, body: acquire("02-00-00-00-00-02", "10.0.0.150", 600),
			want: ErrConflict, msg: "has a fixed address"},

		// Bad input.
		{name: "bad mac", typ: CmdLeaseAcquire, body: acquire("zz:00:00:00:00:01", "", 600), want: ErrInvalid, msg: `lease: mac "zz:00:00:00:00:01"`},
		{name: "zero mac", typ: CmdLeaseAcquire, body: acquire("00:00:00:00:00:00", "", 600), want: ErrInvalid, msg: "all-zero"},
		{name: "no mac", typ: CmdLeaseAcquire, body: acquire("", "", 600), want: ErrInvalid},
		{name: "reversed range", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.1.10", "10.0.1.1", "", 600),
			want: ErrInvalid, msg: "range_start 10.0.1.10 is after range_end 10.0.1.1"},
		{name: "range too large", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.1.0.0", "10.2.0.0", "", 600),
			want: ErrInvalid, msg: "range 10.1.0.0-10.2.0.0 has 65537 addresses, limit is 65536"},
		{name: "whole address space", typ: CmdLeaseAcquire, body: acquireIn(macB1, "0.0.0.1", "255.255.255.254", "", 600),
			want: ErrInvalid, msg: "limit is 65536"},
		{name: "zero duration", typ: CmdLeaseAcquire, body: acquire(macB1, "", 0), want: ErrInvalid, msg: "duration 0: want 1 to 2147483648 seconds"},
		{name: "negative duration", typ: CmdLeaseAcquire, body: acquire(macB1, "", -5), want: ErrInvalid, msg: "duration -5"},
		{name: "duration too long", typ: CmdLeaseAcquire, body: acquire(macB1, "", 1<<31+1), want: ErrInvalid, msg: "duration"},
		{name: "bad range start", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.1", "10.0.1.10", "", 600),
			want: ErrInvalid, msg: `range_start: ip "10.0.1"`},
		{name: "missing range start", typ: CmdLeaseAcquire, body: acquireIn(macB1, "", "10.0.1.10", "", 600), want: ErrInvalid, msg: "range_start"},
		{name: "missing range end", typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.1.1", "", "", 600), want: ErrInvalid, msg: "range_end"},
		{name: "ipv6 range", typ: CmdLeaseAcquire, body: acquireIn(macB1, "fd00::1", "fd00::9", "", 600), want: ErrInvalid, msg: "range_start"},
		{name: "multicast range end", typ: CmdLeaseAcquire, body: acquireIn(macB1, "224.0.0.1", "224.0.0.9", "", 600),
			want: ErrInvalid, msg: "multicast"},
		{name: "unspecified range start", typ: CmdLeaseAcquire, body: acquireIn(macB1, "0.0.0.0", "0.0.0.9", "", 600),
			want: ErrInvalid, msg: "unspecified"},
		{name: "bad requested", typ: CmdLeaseAcquire, body: acquire(macB1, "10.0.0.999", 600), want: ErrInvalid, msg: `requested: ip "10.0.0.999"`},
		{name: "broadcast requested", typ: CmdLeaseAcquire, body: acquire(macB1, "255.255.255.255", 600), want: ErrInvalid, msg: "requested"},
		{name: "ipv6 requested", typ: CmdLeaseAcquire, body: acquire(macB1, "::ffff:10.0.0.150", 600), want: ErrInvalid, msg: "requested"},
		{name: "bad input beats fixed-ip conflict", typ: CmdLeaseAcquire, body: acquire("02:00:00:00:00:01", "", 0), want: ErrInvalid},
	})
}

func TestLeaseRelease(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "unexpired", typ: CmdLeaseRelease, body: MACRef{MAC: macA1},
			after: func(t *testing.T, s *State) {
				noLease(t, s, macA1, "10.0.0.100")
				checkLeaseIndex(t, s)
				// The address is free again at once.
				if err := s.Apply(mustCommand(t, CmdLeaseAcquire, testAt, acquireIn(macB1, "10.0.0.100", "10.0.0.100", "", 60))); err != nil {
					t.Fatal(err)
				}
				wantLease(macB1, "10.0.0.100", testAt+60, 3)(t, s)
			}},
		{name: "expired", typ: CmdLeaseRelease, body: MACRef{MAC: macA2},
			after: func(t *testing.T, s *State) { noLease(t, s, macA2, "10.0.0.101") }},
		{name: "cisco notation", typ: CmdLeaseRelease, body: MACRef{MAC: "0200.0000.0003"},
			after: func(t *testing.T, s *State) {
				noLease(t, s, "02:00:00:00:00:03", "10.0.0.102")
				mustClient(t, s, "02:00:00:00:00:03") // the client itself stays
			}},
		{name: "no lease", typ: CmdLeaseRelease, body: MACRef{MAC: macB1}, want: ErrNotFound, msg: "no lease for 0a:00:00:00:00:b1"},
		{name: "client without lease", typ: CmdLeaseRelease, body: MACRef{MAC: "02:00:00:00:00:01"}, want: ErrNotFound},
		{name: "bad mac", typ: CmdLeaseRelease, body: MACRef{MAC: "node01"}, want: ErrInvalid, msg: `lease: mac "node01"`},
		{name: "empty mac", typ: CmdLeaseRelease, body: MACRef{}, want: ErrInvalid},
	})
}

// leaseStep is one command of a sequence; at 0 means testAt.
type leaseStep struct {
	typ  CommandType
	at   int64
	body any
	want error
	msg  string
}

// TestLeaseSequences covers rules that need more than one command. Every
// step must be judged identically by Validate and Apply.
func TestLeaseSequences(t *testing.T) {
	cases := []struct {
		name  string
		steps []leaseStep
		check func(*testing.T, *State)
	}{
		{name: "renewal after the ip became a fixed client address moves",
			steps: []leaseStep{
				{typ: CmdClientUpdate, body: Client{MAC: "02:00:00:00:00:01", Hostname: "node01", Group: "compute", IP: "10.0.0.100"}},
				{typ: CmdLeaseAcquire, body: acquire(macA1, "10.0.0.100", 60)},
			},
			check: func(t *testing.T, s *State) {
				wantLease(macA1, "10.0.0.101", testAt+60, 2)(t, s) // took over a2's expired lease
				noLease(t, s, macA2, "")
			}},
		{name: "mac that became a client with a fixed ip keeps its lease but cannot renew it",
			steps: []leaseStep{
				{typ: CmdClientCreate, body: Client{MAC: macA1, Hostname: "a1", Group: "empty", IP: "10.0.0.50"}},
				{typ: CmdLeaseAcquire, body: acquire(macA1, "", 60), want: ErrConflict, msg: "has a fixed address 10.0.0.50"},
				{typ: CmdLeaseRelease, body: MACRef{MAC: macA1}},
			},
			check: func(t *testing.T, s *State) { noLease(t, s, macA1, "10.0.0.100") }},
		{name: "one lease per mac",
			steps: []leaseStep{
				{typ: CmdLeaseAcquire, body: acquire(macB1, "10.0.0.150", 60)},
				{typ: CmdLeaseAcquire, body: acquireIn(macB1, "10.0.5.1", "10.0.5.9", "10.0.5.5", 60)},
				{typ: CmdLeaseAcquire, body: acquire(macB1, "", 60)},
			},
			check: func(t *testing.T, s *State) {
				wantLease(macB1, "10.0.0.101", testAt+60, 3)(t, s) // lowest free; .150 and 10.0.5.5 were given up
				noLease(t, s, "", "10.0.0.150")
				noLease(t, s, "", "10.0.5.5")
			}},
		{name: "dispossessed mac gets a new address",
			steps: []leaseStep{
				{typ: CmdLeaseAcquire, body: acquire(macB1, "10.0.0.101", 60)},
				{typ: CmdLeaseAcquire, body: acquire(macA2, "10.0.0.101", 60)},
			},
			check: func(t *testing.T, s *State) {
				wantLease(macA2, "10.0.0.103", testAt+60, 4)(t, s)
				wantLease(macB1, "10.0.0.101", testAt+60, 4)(t, s)
			}},
		{name: "expiry follows Command.At",
			steps: []leaseStep{
				// One second before testAt, a2's lease (expiring at testAt) is still held.
				{typ: CmdLeaseAcquire, at: testAt - 1, body: acquireIn(macB1, "10.0.0.101", "10.0.0.101", "", 60),
					want: ErrConflict, msg: "lease pool exhausted"},
				{typ: CmdLeaseAcquire, at: testAt, body: acquireIn(macB1, "10.0.0.101", "10.0.0.101", "", 60)},
			},
			check: func(t *testing.T, s *State) { wantLease(macB1, "10.0.0.101", testAt+60, 3)(t, s) }},
		{name: "expiry that would overflow",
			steps: []leaseStep{
				{typ: CmdLeaseAcquire, at: math.MaxInt64 - 10, body: acquire(macB1, "", 11), want: ErrInvalid, msg: "overflows"},
				{typ: CmdLeaseAcquire, at: math.MaxInt64 - 10, body: acquire(macB1, "", 10)},
			}},
		{name: "released mac acquires afresh",
			steps: []leaseStep{
				{typ: CmdLeaseRelease, body: MACRef{MAC: macA1}},
				{typ: CmdLeaseRelease, body: MACRef{MAC: macA1}, want: ErrNotFound},
				{typ: CmdLeaseAcquire, body: acquire(macA1, "10.0.0.120", 60)},
			},
			check: func(t *testing.T, s *State) { wantLease(macA1, "10.0.0.120", testAt+60, 3)(t, s) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture(t)
			for i, st := range tc.steps {
				at := st.at
				if at == 0 {
					at = testAt
				}
				cmd := mustCommand(t, st.typ, at, st.body)
				before := s.Digest()
				what := fmt.Sprintf("step %d (%s)", i, st.typ)
				checkErr(t, what+" Validate", s.Validate(cmd), st.want, st.msg)
				if s.Digest() != before {
					t.Fatalf("%s: Validate changed the state", what)
				}
				checkErr(t, what+" Apply", s.Apply(cmd), st.want, st.msg)
				if st.want != nil && s.Digest() != before {
					t.Fatalf("%s: failed Apply changed the state", what)
				}
				checkLeaseIndex(t, s)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// leaseLog is a lease-heavy log: grants, renewals, requests, expiry,
// takeovers, exhaustion and releases, at advancing times.
func leaseLog(t *testing.T) []Command {
	t.Helper()
	var cmds []Command
	add := func(typ CommandType, at int64, body any) { cmds = append(cmds, mustCommand(t, typ, at, body)) }
	mac := func(i int) string { return fmt.Sprintf("0e:00:00:00:00:%02x", i) }
	for i := range 32 {
		at := testAt + 2*int64(i)
		req := ""
		if i%3 == 0 {
			req = fmt.Sprintf("10.0.0.%d", 1+(i*7)%14) // sometimes free, sometimes fixed or taken, sometimes outside
		}
		add(CmdLeaseAcquire, at, acquireIn(mac(i), "10.0.0.1", "10.0.0.12", req, int64(30+10*(i%4))))
		if i%5 == 4 {
			add(CmdLeaseRelease, at, MACRef{MAC: mac(i - 2)})
		}
		if i%7 == 6 {
			add(CmdLeaseAcquire, at, acquireIn(mac(i-6), "10.0.0.1", "10.0.0.12", "", 5))
		}
	}
	return cmds
}

// TestLeaseDeterminism applies the same lease log to several replicas (each
// with its own map iteration order) and checks that they agree on every
// outcome, every digest and the final snapshot, and that Validate predicted
// every outcome.
func TestLeaseDeterminism(t *testing.T) {
	const replicas = 8
	states := make([]*State, replicas)
	for i := range states {
		states[i] = fixture(t)
	}
	failures := 0
	for i, c := range leaseLog(t) {
		var want error
		for r, s := range states {
			verr := s.Validate(c)
			err := s.Apply(c)
			if fmt.Sprint(verr) != fmt.Sprint(err) {
				t.Fatalf("entry %d replica %d: Validate said %v, Apply %v", i, r, verr, err)
			}
			if r == 0 {
				want = err
			} else if fmt.Sprint(err) != fmt.Sprint(want) {
				t.Fatalf("entry %d: replica %d got %v, replica 0 %v", i, r, err, want)
			}
			if s.Digest() != states[0].Digest() {
				t.Fatalf("entry %d (%s): replica %d diverged", i, c.Type, r)
			}
		}
		if errors.Is(want, ErrConflict) {
			checkErr(t, fmt.Sprintf("entry %d", i), want, ErrConflict, "lease pool exhausted")
			failures++
		} else if want != nil {
			checkErr(t, fmt.Sprintf("entry %d", i), want, ErrNotFound, "no lease for")
		}
	}
	if failures == 0 {
		t.Fatal("the log never exhausted the pool; it should exercise that path too")
	}
	snap0, _ := states[0].Snapshot()
	for _, s := range states[1:] {
		if snap, _ := s.Snapshot(); !bytes.Equal(snap, snap0) {
			t.Fatal("equal logs produced different snapshots")
		}
		checkLeaseIndex(t, s)
	}
	// The leases round-trip through a snapshot and keep being enforced.
	r := New()
	if err := r.Restore(snap0); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(readAll(r), readAll(states[0])) {
		t.Fatal("restored lease table differs")
	}
	checkLeaseIndex(t, r)
	next := mustCommand(t, CmdLeaseAcquire, testAt+100, acquireIn("0f:00:00:00:00:01", "10.0.0.1", "10.0.0.20", "", 60))
	errA, errB := states[0].Apply(next), r.Apply(next)
	if fmt.Sprint(errA) != fmt.Sprint(errB) || states[0].Digest() != r.Digest() {
		t.Fatalf("restored replica diverged on the next acquire: %v / %v", errA, errB)
	}
}

func TestLeaseApplyUsesOnlyAt(t *testing.T) {
	a, b := New(), New()
	for _, s := range []*State{a, b} {
		c := mustCommand(t, CmdLeaseAcquire, 1700000000, acquireIn(macB1, "10.0.0.1", "10.0.0.9", "", 3600))
		if err := s.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	want := Lease{MAC: macB1, IP: "10.0.0.1", Expires: 1700003600, Updated: 1700000000}
	if got, _ := a.Lease(macB1); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if a.Digest() != b.Digest() {
		t.Fatal("replicas diverged")
	}
}

func TestLeaseLookup(t *testing.T) {
	s := fixture(t)
	mustApply(t, s, CmdLeaseAcquire, acquireIn(macB1, "10.0.0.20", "10.0.0.20", "", 60))
	cases := []struct {
		in  string
		mac string // "" means not found
	}{
		{"0a:00:00:00:00:a1", macA1},
		{"0A-00-00-00-00-A1", macA1},
		{"0a00.0000.00a1", macA1},
		{"0a00000000a2", macA2},
		{macB1, macB1},
		{"02:00:00:00:00:01", ""}, // a client with a fixed address, no lease
		{"0a:00:00:00:00:ff", ""},
		{"node01", ""},
		{"", ""},
	}
	for _, tc := range cases {
		t.Run("mac "+tc.in, func(t *testing.T) {
			l, ok := s.Lease(tc.in)
			if ok != (tc.mac != "") || l.MAC != tc.mac {
				t.Fatalf("Lease(%q) = %+v, %v; want mac %q", tc.in, l, ok, tc.mac)
			}
		})
	}
	ipCases := []struct {
		in  string
		mac string
	}{
		{"10.0.0.100", macA1},
		{"10.0.0.101", macA2}, // expired but recorded
		{"10.0.0.20", macB1},
		{"10.0.0.1", ""}, // a fixed client address
		{"10.0.0.103", ""},
		{"::ffff:10.0.0.100", ""},
		{"10.0.0.0100", ""},
		{"", ""},
	}
	for _, tc := range ipCases {
		t.Run("ip "+tc.in, func(t *testing.T) {
			l, ok := s.LeaseByIP(tc.in)
			if ok != (tc.mac != "") || l.MAC != tc.mac {
				t.Fatalf("LeaseByIP(%q) = %+v, %v; want mac %q", tc.in, l, ok, tc.mac)
			}
		})
	}
	// Sorted numerically by address, not as strings; results are copies.
	got := s.Leases()
	var ips []string
	for _, l := range got {
		ips = append(ips, l.IP)
	}
	if want := []string{"10.0.0.20", "10.0.0.100", "10.0.0.101", "10.0.0.102"}; !reflect.DeepEqual(ips, want) {
		t.Fatalf("Leases() order %v, want %v", ips, want)
	}
	before := s.Digest()
	got[0].IP, got[0].Expires = "10.9.9.9", 0
	if s.Digest() != before {
		t.Fatal("mutating Leases() changed the state")
	}
}

// fillPool leases every address of r except skip, each to its own MAC and
// unexpired at testAt, writing the content directly (acquiring them one by
// one would be quadratic).
func fillPool(s *State, r ipRange, skip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n := r.first; ; n++ {
		if a := numIP(n); a != skip {
			mac := colonForm(fmt.Sprintf("0c%010x", n))
			s.cat.setLease(Lease{MAC: mac, IP: a.String(), Expires: testAt + 1, Updated: fixtureAt})
		}
		if n == r.last {
			return
		}
	}
}

// TestLeaseLargePool fills a 65536-address pool but for its last address and
// checks that the remaining address is found, then that the pool is full.
func TestLeaseLargePool(t *testing.T) {
	s := New()
	r := ipRange{ipNum(netip.MustParseAddr("10.8.0.0")), ipNum(netip.MustParseAddr("10.8.255.255"))}
	fillPool(s, r, numIP(r.last))
	body := acquireIn(macB1, "10.8.0.0", "10.8.255.255", "10.8.0.7", 60)
	if err := s.Apply(mustCommand(t, CmdLeaseAcquire, testAt, body)); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Lease(macB1); l.IP != "10.8.255.255" {
		t.Fatalf("got %+v, want the pool's last free address", l)
	}
	body.MAC = "0a:00:00:00:00:b2"
	err := s.Apply(mustCommand(t, CmdLeaseAcquire, testAt, body))
	checkErr(t, "Apply on a full pool", err, ErrConflict, "lease pool exhausted: 65536 addresses in use")
	// Once they expire, the lowest address is taken over.
	if err := s.Apply(mustCommand(t, CmdLeaseAcquire, testAt+1, acquireIn("0a:00:00:00:00:b2", "10.8.0.0", "10.8.255.255", "", 60))); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Lease("0a:00:00:00:00:b2"); l.IP != "10.8.0.0" {
		t.Fatalf("got %+v, want 10.8.0.0", l)
	}
	if got := len(s.Leases()); got != 1<<16 {
		t.Fatalf("%d leases, want %d", got, 1<<16)
	}
	checkLeaseIndex(t, s)
}

// BenchmarkLeaseAcquireFullPool measures the worst case: a 65536-address
// pool whose only free address is the last one.
func BenchmarkLeaseAcquireFullPool(b *testing.B) {
	s := New()
	r := ipRange{ipNum(netip.MustParseAddr("10.8.0.0")), ipNum(netip.MustParseAddr("10.8.255.255"))}
	fillPool(s, r, numIP(r.last))
	c, err := NewCommand(CmdLeaseAcquire, testAt, acquireIn(macB1, "10.8.0.0", "10.8.255.255", "", 60))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.Validate(c); err != nil {
			b.Fatal(err)
		}
	}
}
