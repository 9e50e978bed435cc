package catalog

import "testing"

func TestNormalizeMAC(t *testing.T) {
	const canon = "aa:bb:cc:0d:ee:0f"
	cases := []struct {
		in, want string // want "" means the input must be rejected
	}{
		{"aa:bb:cc:0d:ee:0f", canon},
		{"AA:BB:CC:0D:EE:0F", canon},
		{"Aa:bB:cC:0d:Ee:0F", canon},
		{"aa-bb-cc-0d-ee-0f", canon},
		{"AA-BB-CC-0D-EE-0F", canon},
		{"aabb.cc0d.ee0f", canon},
		{"AABB.CC0D.EE0F", canon},
		{"aabbcc0dee0f", canon},
		{"AABBCC0DEE0F", canon},
		{"01:23:45:67:89:ab", "01:23:45:67:89:ab"}, // group bit set: accepted
		{"", ""},
		{"aa:bb:cc:dd:ee", ""},          // 5 octets
		{"aa:bb:cc:dd:ee:ff:00", ""},    // 7 octets
		{"aa:bb:cc:dd:ee:ff:00:11", ""}, // EUI-64
		{"aabbccddeeff0011", ""},        // EUI-64 bare
		{"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", ""}, // InfiniBand
		{"aa:bb-cc:dd:ee:ff", ""}, // mixed separators
		{"aa.bb.cc.dd.ee.ff", ""}, // dots need 4-digit groups
		{"aabb:ccdd:eeff", ""},
		{"aabb-ccdd-eeff", ""},
		{"a:b:c:d:e:f", ""}, // octets must be two digits
		{"aa:bb:cc:dd:ee:fg", ""},
		{"aa:bb:cc:dd:ee:f ", ""},
		{" aa:bb:cc:dd:ee:ff", ""},
		{"aa:bb:cc:dd:ee:ff\n", ""},
		{"aabbccddeef\n", ""},
		{"+a:bb:cc:dd:ee:ff", ""},
		{"aabbccddeeffx", ""},
		{"00:00:00:00:00:00", ""},
		{"000000000000", ""},
		{"ff:ff:ff:ff:ff:ff", ""},
		{"FFFF.FFFF.FFFF", ""},
		{"ａa:bb:cc:dd:ee:ff", ""}, // full-width letter
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeMAC(tc.in)
			if tc.want == "" {
				checkErr(t, "NormalizeMAC", err, ErrInvalid, "mac")
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeMAC(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			if again, err := NormalizeMAC(got); err != nil || again != got {
				t.Fatalf("not idempotent: %q -> %q, %v", got, again, err)
			}
		})
	}
}
