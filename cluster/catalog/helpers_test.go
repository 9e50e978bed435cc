package catalog

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// fixtureAt is the Command.At of every fixture command; tests applying later
// commands use testAt so Created/Updated changes are visible.
const (
	fixtureAt = 1000
	testAt    = 2000
)

var sentinels = []error{ErrInvalid, ErrNotFound, ErrConflict}

// id returns a valid, distinct 64-hex version id for n.
func id(n int) string { return fmt.Sprintf("%064x", n) }

func version(n int) ImageVersion {
	return ImageVersion{ID: id(n), Size: int64(n) * 1000, SHA256: id(n + 500), Format: FormatSquashfs}
}

func mustCommand(t *testing.T, typ CommandType, at int64, body any) Command {
	t.Helper()
	c, err := NewCommand(typ, at, body)
	if err != nil {
		t.Fatalf("NewCommand(%s): %v", typ, err)
	}
	return c
}

func mustApply(t *testing.T, s *State, typ CommandType, body any) {
	t.Helper()
	if err := s.Apply(mustCommand(t, typ, fixtureAt, body)); err != nil {
		t.Fatalf("Apply(%s, %+v): %v", typ, body, err)
	}
}

// fixtureCommands builds a catalogue that exercises every relation:
//
//	rocky9: versions 1 (current), 2, 3; used by compute (follows current) and gpu (pins 2)
//	alpine: version 10 only, unused
//	debian: version 20 only, used by dev
//	groups compute (2 clients), gpu (1 client), dev, empty
//	node ctl1
//	leases from the pool 10.0.0.100-10.0.0.199 (see leasePool), granted at fixtureAt:
//	  0a:00:00:00:00:a1 10.0.0.100 expires 4600 (after testAt)
//	  0a:00:00:00:00:a2 10.0.0.101 expires 2000 (exactly testAt: expired then)
//	  02:00:00:00:00:03 10.0.0.102 expires 4600 (gpu01, a client without a fixed IP)
func fixtureCommands(t *testing.T) []Command {
	t.Helper()
	type step struct {
		typ  CommandType
		body any
	}
	steps := []step{
		{CmdImageVersionAdd, ImageVersionAdd{Image: "rocky9", Version: version(1)}},
		{CmdImageVersionAdd, ImageVersionAdd{Image: "rocky9", Version: version(2)}},
		{CmdImageVersionAdd, ImageVersionAdd{Image: "rocky9", Version: version(3)}},
		{CmdImageVersionAdd, ImageVersionAdd{Image: "alpine", Version: version(10)}},
		{CmdImageVersionAdd, ImageVersionAdd{Image: "debian", Version: version(20)}},
		{CmdGroupCreate, Group{Name: "compute", Image: "rocky9", KernelArgs: "console=ttyS0,115200", StatePaths: []string{"/var/log"}}},
		{CmdGroupCreate, Group{Name: "gpu", Image: "rocky9", Version: id(2), BootMode: BootDisklessNBD}},
		{CmdGroupCreate, Group{Name: "dev", Image: "debian", BootMode: BootDisk}},
		{CmdGroupCreate, Group{Name: "empty"}},
		{CmdClientCreate, Client{MAC: "02:00:00:00:00:01", Hostname: "node01", Group: "compute", IP: "10.0.0.1"}},
		{CmdClientCreate, Client{MAC: "02:00:00:00:00:02", Hostname: "node02", Group: "compute", IP: "10.0.0.2"}},
		{CmdClientCreate, Client{MAC: "02:00:00:00:00:03", Hostname: "gpu01", Group: "gpu"}},
		{CmdNodeUpsert, Node{ID: "ctl1", RaftAddr: "10.0.1.1:8300", HTTPAddr: "10.0.1.1:8080"}},
		{CmdLeaseAcquire, acquire(macA1, "", 3600)},
		{CmdLeaseAcquire, acquire(macA2, "", testAt-fixtureAt)},
		{CmdLeaseAcquire, acquire("02:00:00:00:00:03", "", 3600)},
	}
	cmds := make([]Command, len(steps))
	for i, st := range steps {
		cmds[i] = mustCommand(t, st.typ, fixtureAt, st.body)
	}
	return cmds
}

func fixture(t *testing.T) *State {
	t.Helper()
	s := New()
	for _, c := range fixtureCommands(t) {
		if err := s.Apply(c); err != nil {
			t.Fatalf("fixture %s: %v", c.Type, err)
		}
	}
	return s
}

// checkErr fails unless err wraps want (and no other sentinel), or is nil
// when want is nil. msg, if set, must appear in the error text.
func checkErr(t *testing.T, what string, err, want error, msg string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: unexpected error: %v", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want one wrapping %v", what, err, want)
	}
	for _, other := range sentinels {
		if other != want && errors.Is(err, other) {
			t.Fatalf("%s: error %v also wraps %v", what, err, other)
		}
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: error %q does not mention %q", what, err, msg)
	}
}

// ruleCase is one command applied to a fresh fixture.
type ruleCase struct {
	name  string
	typ   CommandType
	body  any
	want  error                    // nil for success
	msg   string                   // substring the error must contain
	same  bool                     // success that leaves the content unchanged
	after func(*testing.T, *State) // extra checks after a successful Apply
}

// runRules checks, for every case, that Validate and Apply agree with the
// expectation, that Validate never mutates, and that a failed Apply leaves
// the state (content and applied index) exactly as it was.
func runRules(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture(t)
			s.SetAppliedIndex(7)
			cmd := mustCommand(t, tc.typ, testAt, tc.body)
			before := s.Digest()
			checkErr(t, "Validate", s.Validate(cmd), tc.want, tc.msg)
			if s.Digest() != before {
				t.Fatal("Validate changed the state")
			}
			checkErr(t, "Apply", s.Apply(cmd), tc.want, tc.msg)
			changed := s.Digest() != before
			switch {
			case tc.want != nil && (changed || s.AppliedIndex() != 7):
				t.Fatal("failed Apply changed the state")
			case tc.want == nil && changed == tc.same:
				t.Fatalf("successful Apply: content changed = %v, want %v", changed, !tc.same)
			case tc.want == nil && tc.after != nil:
				tc.after(t, s)
			}
		})
	}
}

func mustGroup(t *testing.T, s *State, name string) Group {
	t.Helper()
	g, ok := s.Group(name)
	if !ok {
		t.Fatalf("group %q missing", name)
	}
	return g
}

func mustClient(t *testing.T, s *State, mac string) Client {
	t.Helper()
	c, ok := s.Client(mac)
	if !ok {
		t.Fatalf("client %s missing", mac)
	}
	return c
}

func mustImage(t *testing.T, s *State, name string) Image {
	t.Helper()
	im, ok := s.Image(name)
	if !ok {
		t.Fatalf("image %q missing", name)
	}
	return im
}

func versionIDs(im Image) []string {
	out := make([]string, len(im.Versions))
	for i, v := range im.Versions {
		out[i] = v.ID
	}
	return out
}
