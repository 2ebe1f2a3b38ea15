package loader

import (
	"context"
	"testing"

	"github.com/pathtrace/pathtrace/internal/filter"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

// heavyFilter uses every shape of code libpcap makes for the primitives
// and its arithmetic: the verifier must take each program with it.
const heavyFilter = "(tcp port 80 or udp portrange 1000-2000 or icmp[icmptype] == icmp-echo) and " +
	"(ip[2:2] / ip[1] > 3 or tcp[tcpflags] & tcp-syn != 0 or len > 100) or " +
	"tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420 or ip[2:2] - ip[8] > ip[1] * 2"

// TestOpenWithFilter: with a heavy filter expression in place, every program
// the plan picks still loads and attaches.
func TestOpenWithFilter(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Require(t, testutil.Tool("tcpdump"))
	testutil.Modprobe(hopModules...)
	p, err := filter.Compile(context.Background(), heavyFilter)
	if err != nil {
		t.Fatal(err)
	}
	fn, err := filter.Translate(p.Insns)
	if err != nil {
		t.Fatal(err)
	}
	plan := Plan(ChoiceAuto, KernelProbes)
	tr, err := Open(Options{Filter: fn})
	if err != nil {
		t.Fatalf("open: %+v", err)
	}
	defer tr.Close()
	for i, h := range tr.Hops {
		if pl := plan[i]; h.Hop != pl.Hop || h.Backend != pl.Backend {
			t.Errorf("hop %s: attached %q (%s), plan said %q (%s)", h.Hop, h.Backend, h.Reason, pl.Backend, pl.Reason)
		}
	}
}
