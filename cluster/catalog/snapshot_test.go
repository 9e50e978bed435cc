package catalog

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// reads captures everything observable through the read API.
type reads struct {
	Groups  []Group
	Clients []Client
	Images  []Image
	Nodes   []Node
	Leases  []Lease
	Applied uint64
	Digest  string
}

func readAll(s *State) reads {
	return reads{s.Groups(), s.Clients(), s.Images(), s.Nodes(), s.Leases(), s.AppliedIndex(), s.Digest()}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := fixture(t)
	src.SetAppliedIndex(42)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	dst := New()
	if err := dst.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(dst), readAll(src); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state differs:\n got %+v\nwant %+v", got, want)
	}
	again, err := dst.Snapshot()
	if err != nil || !bytes.Equal(again, snap) {
		t.Fatalf("re-snapshot differs (%v):\n%s\n%s", err, again, snap)
	}
	// The restored state keeps enforcing the rules.
	err = dst.Apply(mustCommand(t, CmdGroupDelete, testAt, NameRef{Name: "compute"}))
	checkErr(t, "Apply after Restore", err, ErrConflict, "")
}

func TestRestoreReplacesEverything(t *testing.T) {
	empty, err := New().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s := fixture(t)
	s.SetAppliedIndex(9)
	if err := s.Restore(empty); err != nil {
		t.Fatal(err)
	}
	g, c, i, n := s.Counts()
	if _, ok := s.LeaseByIP("10.0.0.100"); ok || len(s.Leases()) != 0 {
		t.Fatal("leases survived restoring an empty snapshot")
	}
	if g+c+i+n != 0 || s.AppliedIndex() != 0 || s.Digest() != New().Digest() {
		t.Fatalf("after restoring an empty snapshot: counts %d %d %d %d, index %d", g, c, i, n, s.AppliedIndex())
	}
}

// corrupt returns a snapshot of the fixture with f applied to its document.
func corrupt(t *testing.T, f func(*snapshotDoc)) string {
	t.Helper()
	s := fixture(t)
	doc := snapshotDoc{V: snapshotVersion, AppliedIndex: 3, Catalog: s.cat.export()}
	f(&doc)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	cases := []struct {
		name, in, msg string
	}{
		{"not json", "garbage", "decoding snapshot"},
		{"empty", "", "decoding snapshot"},
		{"truncated", `{"v":1,"catalog":{"groups":[`, "decoding snapshot"},
		{"no version", `{"catalog":{}}`, "unsupported snapshot version 0"},
		{"newer version", `{"v":2,"catalog":{},"extra":1}`, "written by a newer shoal"},
		{"unknown field", `{"v":1,"catalog":{"groups":[],"widgets":[]}}`, `unknown field "widgets"`},
		{"trailing data", `{"v":1,"catalog":{}} {}`, "decoding snapshot"},
		{"duplicate group", corrupt(t, func(d *snapshotDoc) { d.Catalog.Groups = append(d.Catalog.Groups, d.Catalog.Groups[0]) }), "appears twice"},
		{"bad group", corrupt(t, func(d *snapshotDoc) { d.Catalog.Groups[0].BootMode = "floppy" }), `"floppy"`},
		{"group unknown image", corrupt(t, func(d *snapshotDoc) { d.Catalog.Images = d.Catalog.Images[:1] }), "unknown image"},
		{"client unknown group", corrupt(t, func(d *snapshotDoc) { d.Catalog.Clients[0].Group = "ghost" }), `unknown group "ghost"`},
		{"client bad mac", corrupt(t, func(d *snapshotDoc) { d.Catalog.Clients[0].MAC = "00:00:00:00:00:00" }), "all-zero"},
		{"duplicate client", corrupt(t, func(d *snapshotDoc) { d.Catalog.Clients[1].MAC = d.Catalog.Clients[0].MAC }), "appears twice"},
		{"shared hostname", corrupt(t, func(d *snapshotDoc) { d.Catalog.Clients[1].Hostname = d.Catalog.Clients[0].Hostname }), "share hostname"},
		{"shared ip", corrupt(t, func(d *snapshotDoc) { d.Catalog.Clients[1].IP = d.Catalog.Clients[0].IP }), "share ip"},
		{"image without versions", corrupt(t, func(d *snapshotDoc) { d.Catalog.Images[0].Versions = nil }), "no versions"},
		{"current not a version", corrupt(t, func(d *snapshotDoc) { d.Catalog.Images[0].Current = id(77) }), "current version"},
		{"empty current", corrupt(t, func(d *snapshotDoc) { d.Catalog.Images[0].Current = "" }), "current version"},
		{"duplicate version", corrupt(t, func(d *snapshotDoc) {
			im := &d.Catalog.Images[0]
			im.Versions = append(im.Versions, im.Versions[0])
		}), "appears twice"},
		{"bad version", corrupt(t, func(d *snapshotDoc) { d.Catalog.Images[0].Versions[0].Format = "iso" }), `"iso"`},
		{"duplicate image", corrupt(t, func(d *snapshotDoc) { d.Catalog.Images = append(d.Catalog.Images, d.Catalog.Images[0]) }), "appears twice"},
		{"bad node", corrupt(t, func(d *snapshotDoc) { d.Catalog.Nodes[0].RaftAddr = "nowhere" }), "raft_addr"},
		{"duplicate node", corrupt(t, func(d *snapshotDoc) { d.Catalog.Nodes = append(d.Catalog.Nodes, d.Catalog.Nodes[0]) }), "appears twice"},
		{"lease bad mac", corrupt(t, func(d *snapshotDoc) { d.Catalog.Leases[0].MAC = "ff:ff:ff:ff:ff:ff" }), "broadcast"},
		{"lease bad ip", corrupt(t, func(d *snapshotDoc) { d.Catalog.Leases[0].IP = "10.0.0.300" }), `"10.0.0.300"`},
		{"lease loopback ip", corrupt(t, func(d *snapshotDoc) { d.Catalog.Leases[0].IP = "127.0.0.1" }), "loopback"},
		{"lease no ip", corrupt(t, func(d *snapshotDoc) { d.Catalog.Leases[0].IP = "" }), "lease for 0a:00:00:00:00:a1"},
		{"duplicate lease mac", corrupt(t, func(d *snapshotDoc) { d.Catalog.Leases[1].MAC = strings.ToUpper(d.Catalog.Leases[0].MAC) }),
			"lease for 0a:00:00:00:00:a1 appears twice"},
		{"shared lease ip", corrupt(t, func(d *snapshotDoc) { d.Catalog.Leases[1].IP = d.Catalog.Leases[0].IP }), "share ip 10.0.0.100"},
		{"lease unknown field", `{"v":1,"catalog":{"leases":[{"mac":"02:00:00:00:00:01","ip":"10.0.0.9","lease":1}]}}`, `unknown field "lease"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture(t)
			s.SetAppliedIndex(11)
			before := readAll(s)
			checkErr(t, "Restore", s.Restore([]byte(tc.in)), ErrInvalid, tc.msg)
			if !reflect.DeepEqual(readAll(s), before) {
				t.Fatal("failed Restore changed the state")
			}
		})
	}
}

func TestRestoreNormalises(t *testing.T) {
	in := corrupt(t, func(d *snapshotDoc) {
		d.Catalog.Clients[0].MAC = strings.ToUpper(d.Catalog.Clients[0].MAC)
		d.Catalog.Clients[0].Hostname = strings.ToUpper(d.Catalog.Clients[0].Hostname)
		d.Catalog.Groups[2].StatePaths = []string{} // "empty" has none
		d.Catalog.Leases[0].MAC = "0A-00-00-00-00-A1"
		slices.Reverse(d.Catalog.Leases)
	})
	s := New()
	if err := s.Restore([]byte(in)); err != nil {
		t.Fatal(err)
	}
	if s.Digest() != fixture(t).Digest() {
		t.Fatal("a non-canonical but valid snapshot should restore to the canonical content")
	}
}

// TestSnapshotWithoutLeases checks compatibility with snapshots written
// before leases existed: they restore (as having no leases), and a
// catalogue without leases still encodes without the field, so its digest
// and snapshot bytes are what older builds produce and can restore.
func TestSnapshotWithoutLeases(t *testing.T) {
	old := corrupt(t, func(d *snapshotDoc) { d.Catalog.Leases = nil })
	if strings.Contains(old, "leases") {
		t.Fatalf("an empty lease list must be omitted: %s", old)
	}
	s := New()
	if err := s.Restore([]byte(old)); err != nil {
		t.Fatal(err)
	}
	if got := s.Leases(); len(got) != 0 {
		t.Fatalf("leases from nowhere: %+v", got)
	}
	snap, err := s.Snapshot()
	if err != nil || string(snap) != old {
		t.Fatalf("lease-free snapshot is not in the pre-lease format (%v):\n got %s\nwant %s", err, snap, old)
	}
	if s.Digest() == fixture(t).Digest() {
		t.Fatal("leases are not covered by the digest")
	}
	// Literally the pre-lease format; the digest is the one builds without
	// leases computed for an empty catalogue.
	if err := s.Restore([]byte(`{"v":1,"applied_index":5,"catalog":{"groups":[],"clients":[],"images":[],"nodes":[]}}`)); err != nil {
		t.Fatal(err)
	}
	if d := s.Digest(); d != "ae1538fc8a64bcb9b8a8a83ca6718dd0bd5f9b5c962fdbfa8a9447e96d3b4522" {
		t.Fatalf("empty catalogue digest %s differs from the pre-lease one", d)
	}
}

func TestDigest(t *testing.T) {
	if d := New().Digest(); !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(d) {
		t.Fatalf("digest %q is not 64 lower-case hex", d)
	}
	s := fixture(t)
	d0 := s.Digest()
	snap0, _ := s.Snapshot()
	s.SetAppliedIndex(100)
	snap1, _ := s.Snapshot()
	if s.Digest() != d0 {
		t.Fatal("digest must not depend on the applied index")
	}
	if bytes.Equal(snap0, snap1) {
		t.Fatal("snapshot must include the applied index")
	}
	if New().Digest() == d0 {
		t.Fatal("different content, same digest")
	}
}

// TestDeterminism applies the same log to two states and checks they agree
// after every entry, and that every successful entry changes the digest.
func TestDeterminism(t *testing.T) {
	a, b := New(), New()
	seen := map[string]bool{a.Digest(): true}
	for i, c := range fixtureCommands(t) {
		errA, errB := a.Apply(c), b.Apply(c)
		if errA != nil || errB != nil {
			t.Fatalf("entry %d: %v / %v", i, errA, errB)
		}
		d := a.Digest()
		if d != b.Digest() {
			t.Fatalf("entry %d (%s): replicas diverged", i, c.Type)
		}
		if seen[d] {
			t.Fatalf("entry %d (%s) did not change the digest", i, c.Type)
		}
		seen[d] = true
	}
	sa, _ := a.Snapshot()
	sb, _ := b.Snapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatal("equal states produced different snapshots")
	}
}

// TestDigestIndependentOfInsertionOrder checks that map iteration order
// never leaks into the canonical form.
func TestDigestIndependentOfInsertionOrder(t *testing.T) {
	build := func(order []int) string {
		s := New()
		mustApply(t, s, CmdGroupCreate, Group{Name: "g"})
		for _, i := range order {
			mac := []string{"02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"}[i]
			mustApply(t, s, CmdClientCreate, Client{MAC: mac, Hostname: "h" + mac[15:], Group: "g"})
			mustApply(t, s, CmdNodeUpsert, Node{ID: "n" + mac[15:], RaftAddr: "h:1", HTTPAddr: "h:2"})
		}
		return s.Digest()
	}
	if build([]int{0, 1, 2}) != build([]int{2, 0, 1}) {
		t.Fatal("digest depends on insertion order")
	}
}
