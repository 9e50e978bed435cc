package catalog

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func manyPaths(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("/var/lib/p%d", i)
	}
	return out
}

func TestGroupCreate(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "minimal gets default boot mode", typ: CmdGroupCreate, body: Group{Name: "new"},
			after: func(t *testing.T, s *State) {
				if g := mustGroup(t, s, "new"); g.BootMode != BootDisklessRAM {
					t.Fatalf("boot mode %q, want %q", g.BootMode, BootDisklessRAM)
				}
			}},
		{name: "full", typ: CmdGroupCreate, body: Group{Name: "hpc-2.a_b", Image: "rocky9", Version: id(3),
			BootMode: BootDisklessNBD, KernelArgs: "quiet ip=dhcp", StatePaths: []string{"/var/lib/slurm", "/etc/ssh"}},
			after: func(t *testing.T, s *State) {
				want := Group{Name: "hpc-2.a_b", Image: "rocky9", Version: id(3), BootMode: BootDisklessNBD,
					KernelArgs: "quiet ip=dhcp", StatePaths: []string{"/var/lib/slurm", "/etc/ssh"}}
				if g := mustGroup(t, s, "hpc-2.a_b"); !reflect.DeepEqual(g, want) {
					t.Fatalf("got %+v, want %+v", g, want)
				}
			}},
		{name: "32 state paths", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: manyPaths(32)}},
		{name: "63-char name", typ: CmdGroupCreate, body: Group{Name: strings.Repeat("a", 63)}},
		{name: "exists", typ: CmdGroupCreate, body: Group{Name: "compute"}, want: ErrConflict, msg: `"compute" already exists`},
		{name: "upper-case name", typ: CmdGroupCreate, body: Group{Name: "Compute2"}, want: ErrInvalid, msg: `"Compute2"`},
		{name: "empty name", typ: CmdGroupCreate, body: Group{}, want: ErrInvalid},
		{name: "dot", typ: CmdGroupCreate, body: Group{Name: "."}, want: ErrInvalid, msg: "reserved"},
		{name: "dotdot", typ: CmdGroupCreate, body: Group{Name: ".."}, want: ErrInvalid, msg: "reserved"},
		{name: "leading dash", typ: CmdGroupCreate, body: Group{Name: "-x"}, want: ErrInvalid},
		{name: "64-char name", typ: CmdGroupCreate, body: Group{Name: strings.Repeat("a", 64)}, want: ErrInvalid},
		{name: "name with space", typ: CmdGroupCreate, body: Group{Name: "a b"}, want: ErrInvalid},
		{name: "name with newline", typ: CmdGroupCreate, body: Group{Name: "ab\n"}, want: ErrInvalid},
		{name: "name with slash", typ: CmdGroupCreate, body: Group{Name: "a/b"}, want: ErrInvalid},
		{name: "boot mode", typ: CmdGroupCreate, body: Group{Name: "new", BootMode: "pxe"}, want: ErrInvalid, msg: `boot_mode "pxe"`},
		{name: "unknown image", typ: CmdGroupCreate, body: Group{Name: "new", Image: "nope"}, want: ErrInvalid, msg: `unknown image "nope"`},
		{name: "bad image name", typ: CmdGroupCreate, body: Group{Name: "new", Image: "No!"}, want: ErrInvalid, msg: `"No!"`},
		{name: "version of other image", typ: CmdGroupCreate, body: Group{Name: "new", Image: "rocky9", Version: id(10)},
			want: ErrInvalid, msg: "has no version " + id(10)},
		{name: "version without image", typ: CmdGroupCreate, body: Group{Name: "new", Version: id(1)}, want: ErrInvalid, msg: "no image"},
		{name: "version not hex", typ: CmdGroupCreate, body: Group{Name: "new", Image: "rocky9", Version: "v1"}, want: ErrInvalid, msg: `"v1"`},
		{name: "args dollar", typ: CmdGroupCreate, body: Group{Name: "new", KernelArgs: "init=$(reboot)"}, want: ErrInvalid, msg: "kernel_args"},
		{name: "args newline", typ: CmdGroupCreate, body: Group{Name: "new", KernelArgs: "quiet\nchain http://x/"}, want: ErrInvalid},
		{name: "args ipxe operator", typ: CmdGroupCreate, body: Group{Name: "new", KernelArgs: "quiet || shell"}, want: ErrInvalid},
		{name: "args oversized", typ: CmdGroupCreate, body: Group{Name: "new", KernelArgs: strings.Repeat("a", 2049)}, want: ErrInvalid, msg: "2049 bytes"},
		{name: "path escapes", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"../etc"}}, want: ErrInvalid, msg: `"../etc"`},
		{name: "path dotdot inside", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"/var/../etc"}}, want: ErrInvalid, msg: `".."`},
		{name: "path relative", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"var/log"}}, want: ErrInvalid, msg: "absolute"},
		{name: "path trailing slash", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"/var/log/"}}, want: ErrInvalid, msg: "not clean"},
		{name: "path double slash", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"//var"}}, want: ErrInvalid},
		{name: "path dot", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"/var/./log"}}, want: ErrInvalid},
		{name: "path root", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"/"}}, want: ErrInvalid},
		{name: "path empty", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{""}}, want: ErrInvalid},
		{name: "path space", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"/var/my data"}}, want: ErrInvalid, msg: "' ' at offset 7"},
		{name: "path newline", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"/var/x\n"}}, want: ErrInvalid},
		{name: "path semicolon", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"/var;reboot"}}, want: ErrInvalid},
		{name: "path long but allowed", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"/" + strings.Repeat("a", 4095)}}},
		{name: "path oversized", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"/" + strings.Repeat("a", 4096)}}, want: ErrInvalid, msg: "4097 bytes"},
		{name: "path duplicate", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: []string{"/a", "/a"}}, want: ErrInvalid, msg: "twice"},
		{name: "33 state paths", typ: CmdGroupCreate, body: Group{Name: "new", StatePaths: manyPaths(33)}, want: ErrInvalid, msg: "33 entries"},
	})
}

func TestGroupUpdate(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "replaces all fields", typ: CmdGroupUpdate, body: Group{Name: "compute", BootMode: BootDisk},
			after: func(t *testing.T, s *State) {
				want := Group{Name: "compute", BootMode: BootDisk}
				if g := mustGroup(t, s, "compute"); !reflect.DeepEqual(g, want) {
					t.Fatalf("got %+v, want %+v", g, want)
				}
			}},
		{name: "omitted boot mode is default", typ: CmdGroupUpdate, body: Group{Name: "gpu", Image: "rocky9"},
			after: func(t *testing.T, s *State) {
				if g := mustGroup(t, s, "gpu"); g.BootMode != BootDisklessRAM || g.Version != "" {
					t.Fatalf("got %+v", g)
				}
			}},
		{name: "pin version", typ: CmdGroupUpdate, body: Group{Name: "compute", Image: "rocky9", Version: id(3)}},
		{name: "missing", typ: CmdGroupUpdate, body: Group{Name: "ghost"}, want: ErrNotFound, msg: `"ghost"`},
		{name: "unknown image", typ: CmdGroupUpdate, body: Group{Name: "compute", Image: "nope"}, want: ErrInvalid},
		{name: "bad name", typ: CmdGroupUpdate, body: Group{Name: "COMPUTE"}, want: ErrInvalid},
		{name: "bad args", typ: CmdGroupUpdate, body: Group{Name: "compute", KernelArgs: "a;b"}, want: ErrInvalid, msg: `';'`},
	})
}

func TestGroupDelete(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "unused", typ: CmdGroupDelete, body: NameRef{Name: "empty"},
			after: func(t *testing.T, s *State) {
				if _, ok := s.Group("empty"); ok {
					t.Fatal("group still present")
				}
			}},
		{name: "group with image but no clients", typ: CmdGroupDelete, body: NameRef{Name: "dev"}},
		{name: "missing", typ: CmdGroupDelete, body: NameRef{Name: "ghost"}, want: ErrNotFound},
		{name: "has clients", typ: CmdGroupDelete, body: NameRef{Name: "compute"}, want: ErrConflict, msg: "2 client(s), e.g. 02:00:00:00:00:01"},
		{name: "bad name", typ: CmdGroupDelete, body: NameRef{Name: "a b"}, want: ErrInvalid},
		{name: "empty name", typ: CmdGroupDelete, body: NameRef{}, want: ErrInvalid},
	})
}
