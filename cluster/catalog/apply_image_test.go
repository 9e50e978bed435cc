package catalog

import (
	"reflect"
	"strings"
	"testing"
)

func addVersion(image string, f func(*ImageVersion)) ImageVersionAdd {
	v := version(50)
	if f != nil {
		f(&v)
	}
	return ImageVersionAdd{Image: image, Version: v}
}

func wantImage(name, current string, ids ...string) func(*testing.T, *State) {
	return func(t *testing.T, s *State) {
		t.Helper()
		im := mustImage(t, s, name)
		if im.Current != current || !reflect.DeepEqual(versionIDs(im), ids) {
			t.Fatalf("image %q: current %s versions %v, want current %s versions %v", name, im.Current, versionIDs(im), current, ids)
		}
	}
}

func TestImageVersionAdd(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "new image: first version is current", typ: CmdImageVersionAdd, body: addVersion("ubuntu", nil),
			after: func(t *testing.T, s *State) {
				wantImage("ubuntu", id(50), id(50))(t, s)
				if v := mustImage(t, s, "ubuntu").Versions[0]; v.Created != testAt {
					t.Fatalf("created %d, want %d (the command's At)", v.Created, testAt)
				}
			}},
		{name: "appended, current kept", typ: CmdImageVersionAdd, body: addVersion("rocky9", nil),
			after: wantImage("rocky9", id(1), id(1), id(2), id(3), id(50))},
		{name: "activate", typ: CmdImageVersionAdd, body: ImageVersionAdd{Image: "rocky9", Version: version(50), Activate: true},
			after: wantImage("rocky9", id(50), id(1), id(2), id(3), id(50))},
		{name: "same id in another image", typ: CmdImageVersionAdd, body: ImageVersionAdd{Image: "alpine", Version: version(1)}},
		{name: "all optional fields", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) {
			v.PieceLength, v.Format, v.KernelBlob, v.InitrdBlob = 1<<22, FormatExt4, id(7), id(8)
			v.Cmdline, v.Note = "root=live:shoal rd.neednet=1", "Rocky 9.4 — CUDA 12, built by ops"
		})},
		{name: "zero size", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.Size = 0 })},
		{name: "min piece length", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.PieceLength = 16 << 10 })},
		{name: "note 256 bytes", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.Note = strings.Repeat("n", 256) })},
		{name: "duplicate id", typ: CmdImageVersionAdd, body: ImageVersionAdd{Image: "rocky9", Version: version(2)},
			want: ErrConflict, msg: `"rocky9" already has version ` + id(2)},
		{name: "bad image name", typ: CmdImageVersionAdd, body: addVersion("Rocky", nil), want: ErrInvalid, msg: `"Rocky"`},
		{name: "empty image name", typ: CmdImageVersionAdd, body: addVersion("", nil), want: ErrInvalid},
		{name: "upper-case id", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.ID = strings.ToUpper(id(0xabc)) }),
			want: ErrInvalid, msg: "version id"},
		{name: "short id", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.ID = "abc" }), want: ErrInvalid},
		{name: "empty id", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.ID = "" }), want: ErrInvalid},
		{name: "bad sha256", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.SHA256 = id(1)[1:] + "g" }),
			want: ErrInvalid, msg: "sha256"},
		{name: "negative size", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.Size = -1 }),
			want: ErrInvalid, msg: "size -1"},
		{name: "piece length not power of two", typ: CmdImageVersionAdd,
			body: addVersion("rocky9", func(v *ImageVersion) { v.PieceLength = 3 << 14 }), want: ErrInvalid, msg: "piece_length 49152"},
		{name: "piece length too small", typ: CmdImageVersionAdd,
			body: addVersion("rocky9", func(v *ImageVersion) { v.PieceLength = 8 << 10 }), want: ErrInvalid},
		{name: "piece length negative", typ: CmdImageVersionAdd,
			body: addVersion("rocky9", func(v *ImageVersion) { v.PieceLength = -(16 << 10) }), want: ErrInvalid},
		{name: "no format", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.Format = "" }),
			want: ErrInvalid, msg: "format"},
		{name: "unknown format", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.Format = "qcow2" }),
			want: ErrInvalid, msg: `"qcow2"`},
		{name: "bad kernel blob", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.KernelBlob = "vmlinuz" }),
			want: ErrInvalid, msg: "kernel_blob"},
		{name: "bad initrd blob", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.InitrdBlob = "x" }),
			want: ErrInvalid, msg: "initrd_blob"},
		{name: "cmdline injection", typ: CmdImageVersionAdd,
			body: addVersion("rocky9", func(v *ImageVersion) { v.Cmdline = "quiet; chain http://evil/" }), want: ErrInvalid, msg: "cmdline"},
		{name: "note too long", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.Note = strings.Repeat("n", 257) }),
			want: ErrInvalid, msg: "257 bytes"},
		{name: "note newline", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.Note = "a\nb" }),
			want: ErrInvalid, msg: "not printable"},
		{name: "note escape", typ: CmdImageVersionAdd, body: addVersion("rocky9", func(v *ImageVersion) { v.Note = "\x1b[2J" }),
			want: ErrInvalid},
	})
}

func TestImageVersionRemove(t *testing.T) {
	ref := func(image string, n int) ImageVersionRef { return ImageVersionRef{Image: image, Version: id(n)} }
	runRules(t, []ruleCase{
		{name: "unpinned non-current", typ: CmdImageVersionRemove, body: ref("rocky9", 3), after: wantImage("rocky9", id(1), id(1), id(2))},
		{name: "last version of unused image deletes it", typ: CmdImageVersionRemove, body: ref("alpine", 10),
			after: func(t *testing.T, s *State) {
				if _, ok := s.Image("alpine"); ok {
					t.Fatal("image still present")
				}
			}},
		{name: "pinned by group", typ: CmdImageVersionRemove, body: ref("rocky9", 2), want: ErrConflict, msg: `pinned by group "gpu"`},
		{name: "current with others", typ: CmdImageVersionRemove, body: ref("rocky9", 1), want: ErrConflict, msg: "activate another version first"},
		{name: "last version of used image", typ: CmdImageVersionRemove, body: ref("debian", 20), want: ErrConflict, msg: `group "dev"`},
		{name: "missing image", typ: CmdImageVersionRemove, body: ref("ghost", 1), want: ErrNotFound, msg: `"ghost"`},
		{name: "missing version", typ: CmdImageVersionRemove, body: ref("rocky9", 99), want: ErrNotFound, msg: id(99)},
		{name: "version of other image", typ: CmdImageVersionRemove, body: ref("rocky9", 10), want: ErrNotFound},
		{name: "malformed version", typ: CmdImageVersionRemove, body: ImageVersionRef{Image: "rocky9", Version: "latest"},
			want: ErrInvalid, msg: `"latest"`},
		{name: "malformed image", typ: CmdImageVersionRemove, body: ImageVersionRef{Image: "../x", Version: id(1)}, want: ErrInvalid},
	})
}

func TestImageActivate(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "switch current", typ: CmdImageActivate, body: ImageVersionRef{Image: "rocky9", Version: id(3)},
			after: wantImage("rocky9", id(3), id(1), id(2), id(3))},
		{name: "already current", typ: CmdImageActivate, body: ImageVersionRef{Image: "rocky9", Version: id(1)}, same: true},
		{name: "missing image", typ: CmdImageActivate, body: ImageVersionRef{Image: "ghost", Version: id(1)}, want: ErrNotFound},
		{name: "missing version", typ: CmdImageActivate, body: ImageVersionRef{Image: "rocky9", Version: id(99)}, want: ErrNotFound},
		{name: "empty ref", typ: CmdImageActivate, body: ImageVersionRef{}, want: ErrInvalid},
	})
}

func TestImageDelete(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "unused", typ: CmdImageDelete, body: NameRef{Name: "alpine"},
			after: func(t *testing.T, s *State) {
				if _, ok := s.Image("alpine"); ok {
					t.Fatal("image still present")
				}
			}},
		{name: "used by groups", typ: CmdImageDelete, body: NameRef{Name: "rocky9"}, want: ErrConflict, msg: `group "compute"`},
		{name: "missing", typ: CmdImageDelete, body: NameRef{Name: "ghost"}, want: ErrNotFound},
		{name: "malformed", typ: CmdImageDelete, body: NameRef{Name: "A"}, want: ErrInvalid},
	})
}
