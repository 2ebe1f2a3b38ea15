package stitch

import (
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// A hook is partial only when the packet ended or was stolen inside it. A
// packet that matches the filter only after a hook's NAT (traced by the
// backend pod's address, a request to a ClusterIP) starts at that hook's
// last view: whole, not partial. A last view without its first in the
// middle of a path is.
func TestPartialOnlyInsideTheHook(t *testing.T) {
	s := newSeq(0x7500, 1e9, ack("10.244.1.5:40312", "10.244.2.7:8080"))
	s.add(decode.Event{Kind: decode.KindNF, Hook: hop.Prerouting, Slot: decode.SlotLast, Netns: nsNode1, Dev: "cni0", In: "cni0"}).
		dev(decode.KindRx, nsNode1, "cni0").
		add(decode.Event{Kind: decode.KindNF, Hook: hop.Forward, Slot: decode.SlotLast, Netns: nsNode1, Dev: "cni0", In: "cni0", Out: "flannel.1"}).
		hook(hop.Postrouting, nsNode1, "cni0", "flannel.1", nil).
		dev(decode.KindTx, nsNode1, "flannel.1")
	paths, _ := collect(t, Config{}, s.events)
	if len(paths) != 1 {
		t.Fatalf("got %d paths", len(paths))
	}
	p := paths[0]
	if got, want := kinds(p), "netfilter:PREROUTING rx:cni0 netfilter:FORWARD netfilter:POSTROUTING tx:flannel.1"; got != want {
		t.Fatalf("hops %s, want %s", got, want)
	}
	for i, want := range map[int]bool{0: false, 2: true, 3: false} {
		if h := p.Hops[i]; h.Partial != want {
			t.Errorf("%s hop partial=%v, want %v", h.Hook, h.Partial, want)
		}
	}
}
