package trace

import (
	"net/netip"
	"testing"

	"github.com/pathtrace/pathtrace/internal/stitch"
)

func TestConnLimit(t *testing.T) {
	c := connLimit{max: 2}
	a := netip.MustParseAddrPort("10.244.1.5:40000")
	b := netip.MustParseAddrPort("10.96.0.10:80")
	other := netip.MustParseAddrPort("10.244.2.7:80")
	path := func(src, dst netip.AddrPort) *stitch.Path {
		return &stitch.Path{Proto: 6, Src: src, Dst: dst}
	}
	for i, tc := range []struct {
		p    *stitch.Path
		want bool
	}{
		{path(a, b), true},
		{path(b, a), true}, // the reply: the same connection
		{path(a, b), false},
		{path(a, other), true}, // another connection
		{&stitch.Path{Proto: 17, Src: a, Dst: b}, true},
	} {
		if got := c.allow(tc.p); got != tc.want {
			t.Errorf("path %d: allow %v, want %v", i, got, tc.want)
		}
	}
	if none := (connLimit{}); !none.allow(path(a, b)) || !none.allow(path(a, b)) {
		t.Error("no limit: a path refused")
	}
}
