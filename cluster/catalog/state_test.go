package catalog

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
)

func TestReadsAreSortedDeepCopies(t *testing.T) {
	s := fixture(t)
	before := s.Digest()

	groups := s.Groups()
	groups[0].StatePaths = append(groups[0].StatePaths[:0], "/hacked")
	g := mustGroup(t, s, "compute")
	g.StatePaths[0] = "/hacked"
	images := s.Images()
	images[0].Versions[0].ID = "hacked"
	im := mustImage(t, s, "rocky9")
	im.Versions[0].ID = "hacked"

	if s.Digest() != before {
		t.Fatal("mutating a read result changed the state")
	}
	names := func(gs []Group) (out []string) {
		for _, g := range gs {
			out = append(out, g.Name)
		}
		return out
	}
	if got := names(s.Groups()); !reflect.DeepEqual(got, []string{"compute", "dev", "empty", "gpu"}) {
		t.Fatalf("groups not sorted: %v", got)
	}
	if got := s.Images(); got[0].Name != "alpine" || got[2].Name != "rocky9" {
		t.Fatalf("images not sorted: %+v", got)
	}
}

func TestClientLookup(t *testing.T) {
	s := fixture(t)
	cases := []struct {
		in string
		ok bool
	}{
		{"02:00:00:00:00:01", true},
		{"02-00-00-00-00-01", true},
		{"0200.0000.0001", true},
		{"020000000001", true},
		{"02:00:00:00:00:99", false},
		{"node01", false},
		{"", false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			c, ok := s.Client(tc.in)
			if ok != tc.ok || (ok && c.Hostname != "node01") {
				t.Fatalf("Client(%q) = %+v, %v; want found=%v", tc.in, c, ok, tc.ok)
			}
		})
	}
}

func TestLookupsMissing(t *testing.T) {
	s := fixture(t)
	if _, ok := s.Group("ghost"); ok {
		t.Error("Group(ghost) found")
	}
	if _, ok := s.Image("ghost"); ok {
		t.Error("Image(ghost) found")
	}
	if _, ok := s.Node("ghost"); ok {
		t.Error("Node(ghost) found")
	}
}

func TestClientsInGroupAndCounts(t *testing.T) {
	s := fixture(t)
	cases := []struct {
		group string
		macs  []string
	}{
		{"compute", []string{"02:00:00:00:00:01", "02:00:00:00:00:02"}},
		{"gpu", []string{"02:00:00:00:00:03"}},
		{"empty", []string{}},
		{"ghost", []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.group, func(t *testing.T) {
			got := []string{}
			for _, c := range s.ClientsInGroup(tc.group) {
				got = append(got, c.MAC)
			}
			if !reflect.DeepEqual(got, tc.macs) {
				t.Fatalf("got %v, want %v", got, tc.macs)
			}
		})
	}
	if g, c, i, n := s.Counts(); g != 4 || c != 3 || i != 3 || n != 1 {
		t.Fatalf("Counts = %d %d %d %d, want 4 3 3 1", g, c, i, n)
	}
	if g, c, i, n := New().Counts(); g+c+i+n != 0 {
		t.Fatal("new state is not empty")
	}
}

func TestEmptyReadsEncodeAsArrays(t *testing.T) {
	s := New()
	if s.Groups() == nil || s.Clients() == nil || s.Images() == nil || s.Nodes() == nil || s.ClientsInGroup("x") == nil || s.Leases() == nil {
		t.Fatal("empty reads must be empty slices, not nil, so they encode as []")
	}
}

// TestConcurrentUse exercises the lock under -race: writers apply while
// readers snapshot, digest and list.
func TestConcurrentUse(t *testing.T) {
	s := fixture(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				mac := fmt.Sprintf("06:00:00:00:%02x:%02x", w, i)
				c, err := NewCommand(CmdClientCreate, int64(i), Client{MAC: mac, Hostname: fmt.Sprintf("w%d-%d", w, i), Group: "empty"})
				if err == nil {
					err = s.Apply(c)
				}
				if err != nil {
					t.Error(err)
					return
				}
				s.SetAppliedIndex(uint64(i))
			}
		})
		del, err := NewCommand(CmdGroupDelete, 0, NameRef{Name: "empty"})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for range 50 {
				_ = s.Validate(del)
				_, _ = s.Snapshot()
				_ = s.Digest()
				_ = s.ClientsInGroup("empty")
				_, _ = s.Client("02:00:00:00:00:01")
				_, _ = s.LeaseByIP("10.0.0.100")
				_ = s.Leases()
				_ = s.AppliedIndex()
			}
		})
	}
	wg.Wait()
	if got := len(s.ClientsInGroup("empty")); got != 200 {
		t.Fatalf("%d clients in group, want 200", got)
	}
}
