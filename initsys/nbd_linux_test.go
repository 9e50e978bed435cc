//go:build linux

package initsys

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/nbd"
)

// The attach itself needs root and the nbd module; it is exercised in a
// QEMU guest (see the agent's diskless-nbd test). Here: the checks that
// run before any ioctl.

func TestCheckConns(t *testing.T) {
	ro := uint16(nbd.FlagReadOnly)
	multi := ro | nbd.FlagCanMultiConn
	conn := func(addr string, size int64, flags uint16) *nbd.ClientConn {
		return &nbd.ClientConn{Addr: addr, Export: "deb12", Size: size, Flags: flags}
	}
	cases := []struct {
		name    string
		conns   []*nbd.ClientConn
		wantErr string
	}{
		{"none", nil, "no connection"},
		{"one", []*nbd.ClientConn{conn("a:1", 4096, ro)}, ""},
		{"one without multi-conn is fine", []*nbd.ClientConn{conn("a:1", 4096, 0)}, ""},
		{"empty export", []*nbd.ClientConn{conn("a:1", 0, ro)}, "size 0"},
		{"two", []*nbd.ClientConn{conn("a:1", 8192, multi), conn("b:1", 8192, multi)}, ""},
		{"two, sizes differ", []*nbd.ClientConn{conn("a:1", 8192, multi), conn("b:1", 4096, multi)}, "4096 bytes at b:1 but 8192 at a:1"},
		{"two, no multi-conn", []*nbd.ClientConn{conn("a:1", 8192, multi), conn("b:1", 8192, ro)}, "b:1 does not allow several connections"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkConns(tc.conns)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("checkConns: %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNBDReadyTimesOut(t *testing.T) {
	start := time.Now()
	err := NBDReady("/dev/shoal-no-such-nbd", 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not attached within") {
		t.Fatalf("NBDReady: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("NBDReady took %v", d)
	}
}
