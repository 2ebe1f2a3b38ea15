package loader

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pathtrace/pathtrace/internal/hop"
)

// AlwaysAttached are the hop kinds attached whatever --hops asks: the
// free hops end a packet's path (the stitcher renders it at once) and
// stop its skb's tracking in the kernel, so that the skb's next packet is
// not taken for it. They cost other pods' packets one array load.
var AlwaysAttached = []hop.Kind{hop.Drop, hop.Consume}

// ReasonNotAsked is HopSupport.Reason of a hop kind --hops left out.
const ReasonNotAsked = "not asked for (--hops)"

// ParseHops parses a --hops value, "drop,nat": hop kind names
// (hop.Kinds), comma-separated.
func ParseHops(s string) ([]hop.Kind, error) {
	var kinds []hop.Kind
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		var k hop.Kind
		if err := k.UnmarshalText([]byte(name)); err != nil {
			return nil, fmt.Errorf("hop kind %q is not one of %s", name, HopNames())
		}
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("no hop kind in %q", s)
	}
	return kinds, nil
}

// HopNames lists the hop kinds' names, for help texts and errors.
func HopNames() string {
	var names []string
	for _, d := range hop.Kinds() {
		names = append(names, d.Kind.String())
	}
	return strings.Join(names, ", ")
}

// needs are the hop kinds whose programs show another kind: NAT is what
// the netfilter programs' two views of a hook tell, and encap and decap
// are inferred from the device hops' headers where no function shows
// them.
var needs = map[hop.Kind][]hop.Kind{
	hop.NAT:   {hop.Netfilter},
	hop.Encap: {hop.Rx, hop.Tx},
	hop.Decap: {hop.Rx, hop.Tx},
}

// wanted says whether programs of hop kind k are attached with --hops
// kinds (none: every kind).
func wanted(kinds []hop.Kind) func(hop.Kind) bool {
	if len(kinds) == 0 {
		return func(hop.Kind) bool { return true }
	}
	set := slices.Clone(AlwaysAttached)
	for _, k := range kinds {
		set = append(set, k)
		set = append(set, needs[k]...)
	}
	return func(k hop.Kind) bool { return slices.Contains(set, k) }
}

// notAsked marks the rows of the hop kinds --hops left out: not observable
// because not asked for, whatever the kernel could show.
func notAsked(hops []HopSupport, want func(hop.Kind) bool) []HopSupport {
	for i, h := range hops {
		if !want(h.Hop) {
			hops[i] = HopSupport{Hop: h.Hop, Reason: ReasonNotAsked}
		}
	}
	return hops
}
