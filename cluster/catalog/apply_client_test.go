package catalog

import (
	"reflect"
	"strings"
	"testing"
)

// newClient returns a valid client that conflicts with nothing in the fixture.
func newClient() Client {
	return Client{MAC: "02:00:00:00:00:99", Hostname: "fresh", Group: "empty"}
}

func withClient(f func(*Client)) Client {
	c := newClient()
	f(&c)
	return c
}

func TestClientCreate(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "normalised on input", typ: CmdClientCreate,
			body: Client{MAC: "02-00-00-00-00-AA", Hostname: "Node-AA", Group: "compute", IP: "10.0.0.170", KernelArgs: "nomodeset",
				Created: 5, Updated: 6},
			after: func(t *testing.T, s *State) {
				want := Client{MAC: "02:00:00:00:00:aa", Hostname: "node-aa", Group: "compute", IP: "10.0.0.170",
					KernelArgs: "nomodeset", Created: testAt, Updated: testAt}
				if got := mustClient(t, s, "02:00:00:00:00:aa"); !reflect.DeepEqual(got, want) {
					t.Fatalf("got %+v, want %+v", got, want)
				}
			}},
		{name: "minimal", typ: CmdClientCreate, body: newClient()},
		{name: "63-char hostname", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = strings.Repeat("h", 63) })},
		{name: "single-char hostname", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "h" })},
		{name: "all-digit hostname", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "0042" })},
		{name: "mac exists in other notation", typ: CmdClientCreate,
			body: withClient(func(c *Client) { c.MAC = "0200.0000.0001" }), want: ErrConflict, msg: "02:00:00:00:00:01 already exists"},
		{name: "hostname taken", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "node01" }),
			want: ErrConflict, msg: `hostname "node01" already used by 02:00:00:00:00:01`},
		{name: "hostname taken other case", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "NODE01" }),
			want: ErrConflict},
		{name: "ip taken", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "10.0.0.2" }),
			want: ErrConflict, msg: "ip 10.0.0.2 already used by 02:00:00:00:00:02"},
		{name: "unknown group", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Group = "x" }),
			want: ErrInvalid, msg: `unknown group "x"`},
		{name: "no group", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Group = "" }), want: ErrInvalid, msg: "group is required"},
		{name: "bad mac", typ: CmdClientCreate, body: withClient(func(c *Client) { c.MAC = "zz:00:00:00:00:01" }), want: ErrInvalid, msg: "zz:00"},
		{name: "zero mac", typ: CmdClientCreate, body: withClient(func(c *Client) { c.MAC = "000000000000" }), want: ErrInvalid, msg: "all-zero"},
		{name: "broadcast mac", typ: CmdClientCreate, body: withClient(func(c *Client) { c.MAC = "FF:FF:FF:FF:FF:FF" }), want: ErrInvalid},
		{name: "hostname semicolon", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "a;reboot" }),
			want: ErrInvalid, msg: `"a;reboot"`},
		{name: "hostname space", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "a b" }), want: ErrInvalid},
		{name: "hostname newline", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "ab\n" }), want: ErrInvalid},
		{name: "hostname empty", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "" }), want: ErrInvalid},
		{name: "hostname leading dash", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "-ab" }), want: ErrInvalid},
		{name: "hostname trailing dash", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "ab-" }), want: ErrInvalid},
		{name: "hostname dotted", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "a.lab" }), want: ErrInvalid},
		{name: "hostname underscore", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "a_b" }), want: ErrInvalid},
		{name: "hostname non-ascii", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "nöde" }), want: ErrInvalid},
		{name: "hostname kelvin sign", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = "\u212Aab" }), want: ErrInvalid},
		{name: "hostname 64 chars", typ: CmdClientCreate, body: withClient(func(c *Client) { c.Hostname = strings.Repeat("h", 64) }),
			want: ErrInvalid},
		{name: "hostname huge is clipped in message", typ: CmdClientCreate,
			body: withClient(func(c *Client) { c.Hostname = strings.Repeat("h", 100000) }), want: ErrInvalid, msg: `hhh..."`},
		{name: "ip unspecified", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "0.0.0.0" }), want: ErrInvalid, msg: "unspecified"},
		{name: "ip broadcast", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "255.255.255.255" }), want: ErrInvalid, msg: "broadcast"},
		{name: "ip multicast", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "224.0.0.1" }), want: ErrInvalid, msg: "multicast"},
		{name: "ip loopback", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "127.0.0.5" }), want: ErrInvalid, msg: "loopback"},
		{name: "ip short", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "10.0.0" }), want: ErrInvalid, msg: `"10.0.0"`},
		{name: "ip v6", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "fd00::1" }), want: ErrInvalid},
		{name: "ip v4-mapped", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "::ffff:10.0.0.9" }), want: ErrInvalid},
		{name: "ip leading zero", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "10.0.0.09" }), want: ErrInvalid},
		{name: "ip trailing space", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "10.0.0.9 " }), want: ErrInvalid},
		{name: "ip cidr", typ: CmdClientCreate, body: withClient(func(c *Client) { c.IP = "10.0.0.9/24" }), want: ErrInvalid},
		{name: "args dollar", typ: CmdClientCreate, body: withClient(func(c *Client) { c.KernelArgs = "x=${y}" }), want: ErrInvalid, msg: "kernel_args"},
		{name: "args newline", typ: CmdClientCreate, body: withClient(func(c *Client) { c.KernelArgs = "a\nb" }), want: ErrInvalid},
	})
}

func TestClientUpdate(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "keeps created, sets updated", typ: CmdClientUpdate,
			body: Client{MAC: "02:00:00:00:00:01", Hostname: "renamed", Group: "empty", IP: "10.0.0.50", Created: 1, Updated: 1},
			after: func(t *testing.T, s *State) {
				want := Client{MAC: "02:00:00:00:00:01", Hostname: "renamed", Group: "empty", IP: "10.0.0.50",
					Created: fixtureAt, Updated: testAt}
				if got := mustClient(t, s, "02:00:00:00:00:01"); !reflect.DeepEqual(got, want) {
					t.Fatalf("got %+v, want %+v", got, want)
				}
			}},
		{name: "own hostname and ip are no conflict", typ: CmdClientUpdate,
			body: Client{MAC: "02:00:00:00:00:01", Hostname: "node01", Group: "compute", IP: "10.0.0.1", KernelArgs: "debug"}},
		{name: "drop ip frees it", typ: CmdClientUpdate,
			body: Client{MAC: "02:00:00:00:00:01", Hostname: "node01", Group: "compute"},
			after: func(t *testing.T, s *State) {
				mustApply(t, s, CmdClientUpdate, Client{MAC: "02:00:00:00:00:02", Hostname: "node02", Group: "compute", IP: "10.0.0.1"})
			}},
		{name: "any notation", typ: CmdClientUpdate, body: Client{MAC: "020000000003", Hostname: "GPU01", Group: "gpu", IP: "10.0.0.3"}},
		{name: "missing", typ: CmdClientUpdate, body: newClient(), want: ErrNotFound, msg: "02:00:00:00:00:99 not found"},
		{name: "hostname of other", typ: CmdClientUpdate, body: Client{MAC: "02:00:00:00:00:01", Hostname: "node02", Group: "compute"},
			want: ErrConflict, msg: "02:00:00:00:00:02"},
		{name: "ip of other", typ: CmdClientUpdate, body: Client{MAC: "02:00:00:00:00:03", Hostname: "gpu01", Group: "gpu", IP: "10.0.0.1"},
			want: ErrConflict},
		{name: "unknown group", typ: CmdClientUpdate, body: Client{MAC: "02:00:00:00:00:01", Hostname: "node01", Group: "nope"},
			want: ErrInvalid, msg: `unknown group "nope"`},
		{name: "hostile hostname", typ: CmdClientUpdate, body: Client{MAC: "02:00:00:00:00:01", Hostname: "x`id`", Group: "compute"},
			want: ErrInvalid},
	})
}

func TestClientDelete(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "cisco notation", typ: CmdClientDelete, body: MACRef{MAC: "0200.0000.0002"},
			after: func(t *testing.T, s *State) {
				if _, ok := s.Client("02:00:00:00:00:02"); ok {
					t.Fatal("client still present")
				}
				// Its hostname and IP are free again.
				mustApply(t, s, CmdClientCreate, Client{MAC: "02:00:00:00:00:77", Hostname: "node02", Group: "empty", IP: "10.0.0.2"})
			}},
		{name: "missing", typ: CmdClientDelete, body: MACRef{MAC: "02:00:00:00:00:99"}, want: ErrNotFound},
		{name: "bad mac", typ: CmdClientDelete, body: MACRef{MAC: "node01"}, want: ErrInvalid, msg: `"node01"`},
		{name: "empty mac", typ: CmdClientDelete, body: MACRef{}, want: ErrInvalid},
	})
}
