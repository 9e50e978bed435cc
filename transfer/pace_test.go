package transfer

import (
	"testing"

	"golang.org/x/time/rate"
)

func TestBehindPack(t *testing.T) {
	const n = 256 // paceBehind of it: 8 pieces
	cases := []struct {
		own    int
		others []int
		want   bool
	}{
		{100, []int{120, 110, 90}, true},          // median 110: 10 behind
		{100, []int{108, 108, 108}, false},        // 8 behind: not more than the margin
		{100, []int{200, 200}, false},             // fewer than three others: no pack to compare with
		{100, []int{50, 60, 200, 210, 220}, true}, // median 200
		{200, []int{50, 60, 200, 210, 220}, false},
	}
	for _, c := range cases {
		if got := behindPack(c.own, c.others, n); got != c.want {
			t.Errorf("own %d, others %v: behind = %v, want %v", c.own, c.others, got, c.want)
		}
	}
}

func TestNextUploadLimit(t *testing.T) {
	lim := nextUploadLimit(rate.Inf, 12e6, true)
	if lim != 6e6 {
		t.Fatalf("falling behind at 12 MB/s: limit %v, want 6e6", lim)
	}
	lim = nextUploadLimit(lim, 6e6, true)
	if lim != 3e6 {
		t.Fatalf("still behind: limit %v, want 3e6 (halved again)", lim)
	}
	lim = nextUploadLimit(1.5e6, 1e6, true)
	if lim != paceFloor {
		t.Fatalf("limit %v, want the floor %v", lim, paceFloor)
	}
	lim = nextUploadLimit(lim, 1e6, false)
	if lim != rate.Inf {
		t.Fatalf("caught up: limit %v, want none", lim)
	}
}
