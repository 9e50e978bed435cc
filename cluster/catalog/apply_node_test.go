package catalog

import (
	"reflect"
	"testing"
)

func TestNodeUpsert(t *testing.T) {
	node := func(id, raft, http string) Node { return Node{ID: id, RaftAddr: raft, HTTPAddr: http} }
	runRules(t, []ruleCase{
		{name: "insert", typ: CmdNodeUpsert, body: node("ctl2", "10.0.1.2:8300", "10.0.1.2:8080"),
			after: func(t *testing.T, s *State) {
				if n, ok := s.Node("ctl2"); !ok || !reflect.DeepEqual(n, node("ctl2", "10.0.1.2:8300", "10.0.1.2:8080")) {
					t.Fatalf("got %+v, %v", n, ok)
				}
			}},
		{name: "replace", typ: CmdNodeUpsert, body: node("ctl1", "10.0.1.9:8300", "10.0.1.9:8080"),
			after: func(t *testing.T, s *State) {
				if n, _ := s.Node("ctl1"); n.RaftAddr != "10.0.1.9:8300" {
					t.Fatalf("got %+v", n)
				}
			}},
		{name: "identical", typ: CmdNodeUpsert, body: node("ctl1", "10.0.1.1:8300", "10.0.1.1:8080"), same: true},
		{name: "dns names", typ: CmdNodeUpsert, body: node("ctl2", "ctl2.lab.example:8300", "CTL2:8080")},
		{name: "ipv6", typ: CmdNodeUpsert, body: node("ctl2", "[fd00::2]:8300", "[fd00::2]:8080")},
		{name: "bad id", typ: CmdNodeUpsert, body: node("Ctl2", "10.0.1.2:8300", "10.0.1.2:8080"), want: ErrInvalid, msg: `node name "Ctl2"`},
		{name: "no port", typ: CmdNodeUpsert, body: node("ctl2", "10.0.1.2", "10.0.1.2:8080"), want: ErrInvalid, msg: `raft_addr "10.0.1.2"`},
		{name: "no host", typ: CmdNodeUpsert, body: node("ctl2", ":8300", "10.0.1.2:8080"), want: ErrInvalid, msg: "raft_addr"},
		{name: "port zero", typ: CmdNodeUpsert, body: node("ctl2", "h:0", "h:8080"), want: ErrInvalid, msg: "port"},
		{name: "port too big", typ: CmdNodeUpsert, body: node("ctl2", "h:65536", "h:8080"), want: ErrInvalid},
		{name: "port name", typ: CmdNodeUpsert, body: node("ctl2", "h:raft", "h:8080"), want: ErrInvalid},
		{name: "port sign", typ: CmdNodeUpsert, body: node("ctl2", "h:+80", "h:8080"), want: ErrInvalid},
		{name: "host with space", typ: CmdNodeUpsert, body: node("ctl2", "bad host:8300", "h:8080"), want: ErrInvalid, msg: "host"},
		{name: "host injection", typ: CmdNodeUpsert, body: node("ctl2", "h;reboot:8300", "h:8080"), want: ErrInvalid},
		{name: "bad http addr", typ: CmdNodeUpsert, body: node("ctl2", "h:8300", "h"), want: ErrInvalid, msg: "http_addr"},
	})
}

func TestNodeRemove(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "existing", typ: CmdNodeRemove, body: NameRef{Name: "ctl1"},
			after: func(t *testing.T, s *State) {
				if _, ok := s.Node("ctl1"); ok {
					t.Fatal("node still present")
				}
			}},
		{name: "missing", typ: CmdNodeRemove, body: NameRef{Name: "ctl9"}, want: ErrNotFound, msg: `"ctl9"`},
		{name: "malformed", typ: CmdNodeRemove, body: NameRef{Name: ".."}, want: ErrInvalid},
	})
}
