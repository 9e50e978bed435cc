package catalog

import (
	"strings"
	"testing"
)

func TestValidateArgs(t *testing.T) {
	cases := []struct {
		name, in string
		ok       bool
		msg      string
	}{
		{"empty", "", true, ""},
		{"typical", "console=ttyS0,115200n8 root=live:http://10.0.0.1/img ip=dhcp rd.neednet=1 quiet", true, ""},
		{"punctuation", "a=b,c:d/e.f-g_h+i%j@k~l(m)n[o]p{q}r!s?t*u^v", true, ""},
		{"max length", strings.Repeat("a", 2048), true, ""},
		{"too long", strings.Repeat("a", 2049), false, "2049 bytes"},
		{"dollar", "x=${net0/ip}", false, `'$' at offset 2`},
		{"semicolon", "quiet;reboot", false, `';'`},
		{"backtick", "x=`id`", false, "'`'"},
		{"backslash", `x=\n`, false, `'\\'`},
		{"double quote", `x="a b"`, false, `'"'`},
		{"single quote", "x='a b'", false, `'\''`},
		{"hash", "quiet #comment", false, `'#'`},
		{"pipe", "quiet || shell", false, `'|'`},
		{"ampersand", "quiet && shell", false, `'&'`},
		{"redirect", "quiet >x", false, `'>'`},
		{"newline", "quiet\nchain http://evil/", false, "byte 0x0a at offset 5"},
		{"carriage return", "quiet\r", false, "0x0d"},
		{"tab", "a\tb", false, "0x09"},
		{"nul", "a\x00b", false, "0x00"},
		{"del", "a\x7f", false, "0x7f"},
		{"non-ascii", "lang=fr_FR.é", false, "0xc3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateArgs(tc.in)
			if tc.ok {
				checkErr(t, "ValidateArgs", err, nil, "")
				return
			}
			checkErr(t, "ValidateArgs", err, ErrInvalid, tc.msg)
		})
	}
}

func TestValidateNote(t *testing.T) {
	cases := []struct {
		name, in string
		ok       bool
	}{
		{"empty", "", true},
		{"unicode", "Rocky 9.4 — für GPU-Knoten ✓", true},
		{"256 bytes", strings.Repeat("x", 256), true},
		{"257 bytes", strings.Repeat("x", 257), false},
		{"invalid utf8", "ab\xff", false},
		{"newline", "a\nb", false},
		{"tab", "a\tb", false},
		{"escape", "\x1b[31m", false},
		{"bidi override", "abc\u202edcba", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := error(nil)
			if !tc.ok {
				want = ErrInvalid
			}
			checkErr(t, "validateNote", validateNote(tc.in), want, "")
		})
	}
}

func TestValidateName(t *testing.T) {
	cases := []struct {
		in string
		ok bool
	}{
		{"a", true}, {"0", true}, {"rocky-9.4_x", true}, {strings.Repeat("z", 63), true}, {"a..b", true},
		{"", false}, {".", false}, {"..", false}, {".hidden", false}, {"_x", false}, {"-x", false},
		{"Upper", false}, {strings.Repeat("z", 64), false}, {"a b", false}, {"a/b", false}, {"a\n", false},
		{"a\x00", false}, {"é", false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			want := error(nil)
			if !tc.ok {
				want = ErrInvalid
			}
			checkErr(t, "validateName", validateName("group", tc.in), want, "")
		})
	}
}

func TestShowClipsHostileValues(t *testing.T) {
	long := strings.Repeat("x", 10000)
	err := validateName("image", long)
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("error for a 10000-byte name should be short, got %d bytes", len(err.Error()))
	}
}
