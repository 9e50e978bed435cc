package bootsvc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// ErrUnsafe marks a value refused because it could change the meaning of
// an iPXE script or kernel command line.
var ErrUnsafe = errors.New("unsafe for an iPXE script")

// The catalogue's own rules (cluster/catalog/validate.go), repeated because
// they are unexported there and because a boot script must not trust that
// every catalogue entry went through today's validation (snapshots from
// older versions, bugs).
var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	blobIDRE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// safeToken reports whether s is non-empty and made only of characters that
// mean nothing to iPXE's parser, a kernel command line or a URL: letters,
// digits and . _ - / : , [ ] (the last two for IPv6 literals). Notably
// absent: whitespace (splits words), $ (expands settings), || && (chain
// commands), # (comment), quotes and backslash.
func safeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("._-/:,[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ValidateHostname applies the catalogue's rule: one RFC 1123 label,
// lower case.
func ValidateHostname(s string) error {
	if !hostnameRE.MatchString(s) {
		return fmt.Errorf("hostname %q: want an RFC 1123 label (a-z, 0-9, '-'): %w", shown(s), ErrUnsafe)
	}
	return nil
}

// ValidateBaseURL checks an HTTP base URL that goes into boot files and
// scripts ("http://10.77.0.1:7480") and returns it without a trailing
// slash. Only scheme, host, port and a plain path are allowed.
func ValidateBaseURL(s string) (string, error) {
	s = strings.TrimSuffix(s, "/")
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", fmt.Errorf("base URL %q: %w", shown(s), err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("base URL %q: want http:// or https://", shown(s))
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", fmt.Errorf("base URL %q: want scheme://host[:port][/path] only", shown(s))
	case !safeToken(s):
		return "", fmt.Errorf("base URL %q: %w", shown(s), ErrUnsafe)
	}
	return s, nil
}

// validateHostPort checks a node address handed to the agent on the
// kernel command line.
func validateHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || !safeToken(s) {
		return fmt.Errorf("server address %q: want host:port: %w", shown(s), ErrUnsafe)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("server address %q: bad port: %w", shown(s), ErrUnsafe)
	}
	if _, err := netip.ParseAddr(host); err != nil && !catalog.IsDNSName(host) {
		return fmt.Errorf("server address %q: host is neither IP nor DNS name: %w", shown(s), ErrUnsafe)
	}
	return nil
}

// shown truncates a hostile value for an error message.
func shown(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
