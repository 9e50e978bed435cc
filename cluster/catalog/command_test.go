package catalog

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestNewCommandEncodeDecodeRoundTrip(t *testing.T) {
	for typ := range operations {
		t.Run(string(typ), func(t *testing.T) {
			c := mustCommand(t, typ, 1234, NameRef{Name: "x"})
			b, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeCommand(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) || got.V != CommandVersion || got.At != 1234 {
				t.Fatalf("round trip: got %+v, want %+v", got, c)
			}
		})
	}
}

func TestNewCommandErrors(t *testing.T) {
	cases := []struct {
		name string
		typ  CommandType
		body any
	}{
		{"unknown type", "group.rename", NameRef{Name: "x"}},
		{"empty type", "", NameRef{Name: "x"}},
		{"unencodable body", CmdGroupCreate, map[string]any{"x": make(chan int)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCommand(tc.typ, 1, tc.body)
			checkErr(t, "NewCommand", err, ErrInvalid, "")
		})
	}
}

func TestDecodeCommand(t *testing.T) {
	cases := []struct {
		name, in string
		msg      string // "" means success
	}{
		{"ok", `{"v":1,"type":"group.delete","at":5,"body":{"name":"x"}}`, ""},
		{"unknown envelope field ignored", `{"v":1,"type":"group.delete","at":5,"body":{},"trace":"abc"}`, ""},
		{"not json", `v=1 type=group.create`, "decoding command"},
		{"empty", ``, "decoding command"},
		{"array", `[1,2]`, "decoding command"},
		{"truncated", `{"v":1,"type":"group.cre`, "decoding command"},
		{"trailing garbage", `{"v":1,"type":"group.delete","body":{}} x`, "decoding command"},
		{"wrong field type", `{"v":"1","type":"group.delete"}`, "decoding command"},
		{"missing version", `{"type":"group.delete","body":{}}`, "unsupported command version 0"},
		{"negative version", `{"v":-1,"type":"group.delete","body":{}}`, "unsupported command version -1"},
		{"newer version", `{"v":2,"type":"group.delete","body":{}}`, "written by a newer shoal"},
		{"unknown type", `{"v":1,"type":"group.rename","body":{}}`, `unknown command type "group.rename"`},
		{"missing type", `{"v":1,"body":{}}`, `unknown command type ""`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeCommand([]byte(tc.in))
			if tc.msg == "" {
				if err != nil || c.V != CommandVersion {
					t.Fatalf("got %+v, %v", c, err)
				}
				return
			}
			checkErr(t, "DecodeCommand", err, ErrInvalid, tc.msg)
		})
	}
}

func TestNormalize(t *testing.T) {
	cases := []struct {
		name string
		typ  CommandType
		body string
		want string // normalised body
	}{
		{"client mac and hostname", CmdClientCreate,
			`{"mac":"AA-BB-CC-DD-EE-01","hostname":"Node-01","group":"g"}`,
			`{"mac":"aa:bb:cc:dd:ee:01","hostname":"node-01","group":"g","created":0,"updated":0}`},
		{"client hostname left for validation", CmdClientUpdate,
			`{"mac":"aabb.ccdd.ee01","hostname":"Bad Host;","group":"g"}`,
			`{"mac":"aa:bb:cc:dd:ee:01","hostname":"bad host;","group":"g","created":0,"updated":0}`},
		{"mac ref", CmdClientDelete, `{"mac":"AABBCCDDEE01"}`, `{"mac":"aa:bb:cc:dd:ee:01"}`},
		{"group default boot mode", CmdGroupCreate, `{"name":"g"}`, `{"name":"g","boot_mode":"diskless-ram"}`},
		{"group update default boot mode", CmdGroupUpdate, `{"name":"g","boot_mode":""}`, `{"name":"g","boot_mode":"diskless-ram"}`},
		{"group keeps boot mode", CmdGroupCreate, `{"name":"g","boot_mode":"disk"}`, `{"name":"g","boot_mode":"disk"}`},
		{"group empty state paths dropped", CmdGroupCreate, `{"name":"g","state_paths":[]}`, `{"name":"g","boot_mode":"diskless-ram"}`},
		{"names are not folded", CmdNodeRemove, `{"name":"CTL1"}`, `{"name":"CTL1"}`},
		{"lease acquire mac", CmdLeaseAcquire, `{"mac":"0A-00-00-00-00-B1","range_start":"10.0.0.1","range_end":"10.0.0.9","duration":60}`,
			`{"mac":"0a:00:00:00:00:b1","range_start":"10.0.0.1","range_end":"10.0.0.9","duration":60}`},
		{"lease acquire left for validation", CmdLeaseAcquire, `{"mac":"0a0000000001","range_start":"x","range_end":"","requested":"y","duration":-1}`,
			`{"mac":"0a:00:00:00:00:01","range_start":"x","range_end":"","requested":"y","duration":-1}`},
		{"lease release mac", CmdLeaseRelease, `{"mac":"0A00.0000.00B1"}`, `{"mac":"0a:00:00:00:00:b1"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Command{V: CommandVersion, Type: tc.typ, At: 9, Body: json.RawMessage(tc.body)}
			n, err := c.Normalize()
			if err != nil {
				t.Fatal(err)
			}
			if string(n.Body) != tc.want || n.Type != c.Type || n.At != c.At || n.V != c.V {
				t.Fatalf("got %+v body %s, want body %s", n, n.Body, tc.want)
			}
			if string(c.Body) != tc.body {
				t.Fatal("Normalize modified its receiver's body")
			}
			again, err := n.Normalize()
			if err != nil || string(again.Body) != string(n.Body) {
				t.Fatalf("not idempotent: %s -> %s, %v", n.Body, again.Body, err)
			}
		})
	}
}

// TestMalformedCommands checks that envelope and body errors are reported
// identically by Normalize, Validate and Apply, and that Apply changes nothing.
func TestMalformedCommands(t *testing.T) {
	cases := []struct {
		name string
		c    Command
		msg  string
	}{
		{"unknown body field", Command{V: 1, Type: CmdGroupCreate, Body: json.RawMessage(`{"name":"g","bootmode":"disk"}`)}, `unknown field "bootmode"`},
		{"nested unknown field", Command{V: 1, Type: CmdImageVersionAdd,
			Body: json.RawMessage(`{"image":"i","version":{"id":"x","sizee":1}}`)}, `unknown field "sizee"`},
		{"missing body", Command{V: 1, Type: CmdGroupCreate}, "body is missing"},
		{"null body", Command{V: 1, Type: CmdGroupCreate, Body: json.RawMessage(`null`)}, "body is missing"},
		{"array body", Command{V: 1, Type: CmdGroupCreate, Body: json.RawMessage(`["g"]`)}, "malformed body"},
		{"wrong field type", Command{V: 1, Type: CmdImageVersionAdd, Body: json.RawMessage(`{"image":"i","version":{"size":"big"}}`)}, "malformed body"},
		{"trailing data", Command{V: 1, Type: CmdNodeRemove, Body: json.RawMessage(`{"name":"a"}{"name":"b"}`)}, "trailing data"},
		{"bad client mac", Command{V: 1, Type: CmdClientCreate, Body: json.RawMessage(`{"mac":"nope","hostname":"h","group":"compute"}`)}, `mac "nope"`},
		{"bad ref mac", Command{V: 1, Type: CmdClientDelete, Body: json.RawMessage(`{"mac":"ff:ff:ff:ff:ff:ff"}`)}, "broadcast"},
		{"lease unknown field", Command{V: 1, Type: CmdLeaseAcquire,
			Body: json.RawMessage(`{"mac":"0a:00:00:00:00:b1","range_start":"10.0.0.1","range_end":"10.0.0.9","lease_time":60}`)}, `unknown field "lease_time"`},
		{"lease duration as string", Command{V: 1, Type: CmdLeaseAcquire,
			Body: json.RawMessage(`{"mac":"0a:00:00:00:00:b1","range_start":"10.0.0.1","range_end":"10.0.0.9","duration":"1h"}`)}, "malformed body"},
		{"lease release bad mac", Command{V: 1, Type: CmdLeaseRelease, Body: json.RawMessage(`{"mac":"x"}`)}, `lease: mac "x"`},
		{"newer version", Command{V: 2, Type: CmdNodeRemove, Body: json.RawMessage(`{"name":"ctl1"}`)}, "newer shoal"},
		{"zero version", Command{Type: CmdNodeRemove, Body: json.RawMessage(`{"name":"ctl1"}`)}, "version 0"},
		{"unknown type", Command{V: 1, Type: "node.reboot", Body: json.RawMessage(`{"name":"ctl1"}`)}, "node.reboot"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.Normalize()
			checkErr(t, "Normalize", err, ErrInvalid, tc.msg)
			s := fixture(t)
			before := s.Digest()
			checkErr(t, "Validate", s.Validate(tc.c), ErrInvalid, tc.msg)
			checkErr(t, "Apply", s.Apply(tc.c), ErrInvalid, tc.msg)
			if s.Digest() != before {
				t.Fatal("failed Apply changed the state")
			}
		})
	}
}

// TestApplyUsesOnlyAt checks that timestamps come from the command, so two
// replicas applying the same entry at different wall-clock times agree.
func TestApplyUsesOnlyAt(t *testing.T) {
	a, b := New(), New()
	for _, s := range []*State{a, b} {
		mustApply(t, s, CmdGroupCreate, Group{Name: "g"})
		c := mustCommand(t, CmdClientCreate, 1700000000, Client{MAC: "02:00:00:00:00:01", Hostname: "h", Group: "g"})
		if err := s.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustClient(t, a, "02:00:00:00:00:01"); got.Created != 1700000000 || got.Updated != 1700000000 {
		t.Fatalf("timestamps %d/%d, want the command's At", got.Created, got.Updated)
	}
	if a.Digest() != b.Digest() {
		t.Fatal("replicas diverged")
	}
}
