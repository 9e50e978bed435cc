package catalog

import (
	"fmt"
	"strings"
)

// NormalizeMAC returns s as a canonical lower-case, colon-separated 48-bit
// MAC address (aa:bb:cc:dd:ee:ff). It accepts, in upper or lower case:
//
//	aa:bb:cc:dd:ee:ff   colon-separated (Linux, most BMCs)
//	aa-bb-cc-dd-ee-ff   dash-separated (Windows, some DHCP servers)
//	aabb.ccdd.eeff      dotted (Cisco switches)
//	aabbccddeeff        bare hex (iPXE ${mac:hexraw}, spreadsheets)
//
// Anything else is rejected, including 8- and 20-octet hardware addresses
// (EUI-64, InfiniBand), which net.ParseMAC would accept but a PXE client
// never presents. The all-zero and broadcast addresses are rejected because
// they can never identify one machine. Multicast addresses are accepted:
// the spec does not exclude them and common test MACs (01:23:45:...) have the
// group bit set.
func NormalizeMAC(s string) (string, error) {
	digits, ok := macDigits(s)
	if !ok {
		return "", fmt.Errorf("mac %q: want 6 octets as aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff: %w",
			show(s), ErrInvalid)
	}
	digits = strings.ToLower(digits)
	switch digits {
	case "000000000000":
		return "", fmt.Errorf("mac %q: the all-zero address cannot identify a client: %w", s, ErrInvalid)
	case "ffffffffffff":
		return "", fmt.Errorf("mac %q: the broadcast address cannot identify a client: %w", s, ErrInvalid)
	}
	return colonForm(digits), nil
}

// macDigits strips the separators of one accepted notation and returns the
// 12 hex digits, reporting false if s matches none of them.
func macDigits(s string) (string, bool) {
	digits, ok := "", false
	switch len(s) {
	case 17: // aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff; one separator throughout
		if s[2] == ':' || s[2] == '-' {
			digits, ok = stripSeparators(s, 2, s[2])
		}
	case 14: // aabb.ccdd.eeff
		digits, ok = stripSeparators(s, 4, '.')
	case 12:
		digits, ok = s, true
	}
	return digits, ok && isHex(digits)
}

// stripSeparators removes sep from s, requiring it after every group of
// digits and nowhere else.
func stripSeparators(s string, group int, sep byte) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if (i+1)%(group+1) == 0 {
			if s[i] != sep {
				return "", false
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), true
}

// colonForm inserts a colon between each pair of the 12 hex digits.
func colonForm(digits string) string {
	var b strings.Builder
	for i := 0; i < len(digits); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(digits[i : i+2])
	}
	return b.String()
}

// isHex reports whether s is non-empty and consists of hex digits of either case.
func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
