package loader

import (
	"slices"
	"testing"

	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

func TestParseHops(t *testing.T) {
	got, err := ParseHops("drop, nat,drop")
	if err != nil || !slices.Equal(got, []hop.Kind{hop.Drop, hop.NAT}) {
		t.Errorf("ParseHops: %v, %v", got, err)
	}
	for _, bad := range []string{"", ",", "drops"} {
		if _, err := ParseHops(bad); err == nil {
			t.Errorf("ParseHops(%q): no error", bad)
		}
	}
}

func TestWanted(t *testing.T) {
	all := wanted(nil)
	for _, d := range hop.Kinds() {
		if !all(d.Kind) {
			t.Errorf("no --hops: %s not wanted", d.Kind)
		}
	}
	want := wanted([]hop.Kind{hop.NAT})
	for _, d := range hop.Kinds() {
		in := slices.Contains([]hop.Kind{hop.NAT, hop.Netfilter, hop.Drop, hop.Consume}, d.Kind)
		if want(d.Kind) != in {
			t.Errorf("--hops nat: %s wanted %v, want %v", d.Kind, want(d.Kind), in)
		}
	}
}

// TestOpenAttachesAskedHops checks that --hops drop attaches the free
// hops only and says the others were not asked for.
func TestOpenAttachesAskedHops(t *testing.T) {
	testutil.RequireRoot(t)
	tr, err := Open(Options{Hops: []hop.Kind{hop.Drop}})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer tr.Close()
	if len(tr.links) != 2 {
		t.Errorf("%d links attached, want 2 (kfree_skb, consume_skb)", len(tr.links))
	}
	for _, h := range tr.Hops {
		always := h.Hop == hop.Drop || h.Hop == hop.Consume
		if always != h.Observable() || !always && h.Reason != ReasonNotAsked {
			t.Errorf("hop %s: %s", h.Hop, h)
		}
	}
}
