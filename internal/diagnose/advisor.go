package diagnose

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pathtrace/pathtrace/internal/doctor"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/stitch"
)

// Advisor fills Hop.Advice on drop hops and Path.Warnings from the node
// reports taken when the trace started. It implements trace.Annotator.
//
// Its output is a pure function of the path and the reports: replay, given
// the reports stored in a recording, prints the same advice. It never asks
// the live system anything. An Advisor is safe for concurrent use once made;
// its SYN-copy advice reads the paths annotated before (see Annotate).
type Advisor struct {
	nodes map[uint32]*node
	// syns are the connections whose SYN reached a socket, from the
	// paths annotated so far (in start order), to tell a SYN's copy.
	syns *handshakes
}

// New returns an Advisor for the nodes whose reports are given, keyed by the
// node's network namespace inode (stitch.Hop.NetnsInode of hops in that
// node). A nil or empty map gives an Advisor that still explains drops by
// their reason, without node facts.
func New(reports map[uint32]*doctor.Report) *Advisor {
	a := &Advisor{nodes: make(map[uint32]*node, len(reports)), syns: &handshakes{}}
	for inode, r := range reports {
		if r != nil {
			a.nodes[inode] = newNode(r)
		}
	}
	return a
}

// Annotate sets the advice of every drop hop of p and adds the path's
// warnings (each once, after any p already has). Paths come in start
// order: a SYN's drop is told from the connections of earlier ones.
func (a *Advisor) Annotate(p *stitch.Path) {
	defer a.syns.note(p)
	for i := range p.Hops {
		switch h := &p.Hops[i]; h.Kind {
		case hop.Drop:
			h.Advice = a.advise(p, i)
		case hop.IPVS:
			a.scheduler(p, h)
		}
	}
	for _, w := range a.warnings(p) {
		if !slices.Contains(p.Warnings, w) {
			p.Warnings = append(p.Warnings, w)
		}
	}
}

// note builds a piece of advice: one or more sentences on the first line,
// then one line per manual check, each starting with "$ ".
type note struct {
	b strings.Builder
}

func (n *note) say(format string, args ...any) {
	if n.b.Len() > 0 {
		n.b.WriteByte(' ')
	}
	fmt.Fprintf(&n.b, format, args...)
}

func (n *note) run(cmd string) {
	n.b.WriteString("\n$ ")
	n.b.WriteString(cmd)
}

func (n *note) String() string { return n.b.String() }

// nodeLabel names a hop's namespace for people.
func nodeLabel(h *stitch.Hop) string {
	if h.Netns != "" {
		return h.Netns
	}
	if h.NetnsInode != 0 {
		return fmt.Sprintf("netns:%d", h.NetnsInode)
	}
	return "an unknown namespace"
}

// ipLen is the length of the packet's IP header and payload at hop i (the
// outer packet when encapsulated), or 0 when the hop does not tell. At rx
// and netfilter hops skb->len starts at the IP header; at tx on an Ethernet
// device (veth, bridge, VXLAN, NICs) it includes the 14-byte Ethernet
// header; a drop or consume hop has the length of the hop before it, since
// where the kernel frees a packet says nothing about its headers.
func (a *Advisor) ipLen(p *stitch.Path, i int) uint32 {
	h := &p.Hops[i]
	switch h.Kind {
	case hop.Drop, hop.Consume:
		if i > 0 {
			return a.ipLen(p, i-1)
		}
		return 0
	case hop.Tx:
		if n := a.nodes[h.NetnsInode]; n != nil {
			if o := n.overlay(h.Dev); o != nil && o.Kind == "ipip" {
				return h.Len // no link-layer header on an IP tunnel
			}
		}
		if h.Len <= ethHeader {
			return 0
		}
		return h.Len - ethHeader
	}
	return h.Len
}

const ethHeader = 14

// hookOf is the netfilter hook a drop happened in, as the path names it
// (stitch.Path.DropHook: the stitcher's when the hook's last slot never
// ran, else that of a table or IPVS verdict of drop right before it). A
// partial netfilter hop before the drop does not make it the drop's hook:
// one with the last view only was accepted by the hook (a packet that
// matched only after a translation, a hairpin dropped past the bridge).
// nf is that hook's netfilter hop, by the table or IPVS hop inside it that
// returned the drop, where one shows it.
func hookOf(p *stitch.Path, i int) (hook hop.Hook, nf, by *stitch.Hop) {
	h := &p.Hops[i]
	hook = p.DropHook(i)
	for j := i - 1; j >= 0; j-- {
		prev := &p.Hops[j]
		if prev.NetnsInode != h.NetnsInode || !inHook(prev) {
			break
		}
		if by == nil && ((prev.Table != nil && prev.Table.Verdict == hop.VerdictDrop) ||
			(prev.IPVS != nil && prev.IPVS.Verdict == hop.VerdictDrop)) {
			by = prev
		}
		if prev.Kind == hop.Netfilter && hook != hop.NoHook && prev.Hook == hook {
			nf = prev
			break
		}
	}
	return hook, nf, by
}

// inHook reports whether a hop belongs to a netfilter hook: the hook's own
// hop, its NAT, the verdicts of the tables and of IPVS inside it.
func inHook(h *stitch.Hop) bool {
	switch h.Kind {
	case hop.Netfilter, hop.NAT, hop.Table:
		return true
	case hop.IPVS:
		return h.IPVS != nil && h.IPVS.Verdict != hop.NoVerdict
	}
	return false
}

// sameNetnsBefore reports whether a hop before i in the namespace of hop i
// satisfies f.
func sameNetnsBefore(p *stitch.Path, i int, f func(*stitch.Hop) bool) bool {
	ns := p.Hops[i].NetnsInode
	for j := range i {
		if p.Hops[j].NetnsInode == ns && f(&p.Hops[j]) {
			return true
		}
	}
	return false
}

// podHop returns the first hop of the path when it is in a namespace that
// is not a traced node: the pod that sent the packet.
func (a *Advisor) podHop(p *stitch.Path) *stitch.Hop {
	if len(p.Hops) == 0 {
		return nil
	}
	h := &p.Hops[0]
	if _, isNode := a.nodes[h.NetnsInode]; isNode || h.Kind != hop.Tx {
		return nil
	}
	return h
}

// scheduler names the scheduler of an IPVS hop whose program could not
// read it (no BTF for the ip_vs module) from the virtual service in the
// node's report.
func (a *Advisor) scheduler(p *stitch.Path, h *stitch.Hop) {
	v := h.IPVS
	if v == nil || v.Scheduler != "" || !v.Service.IsValid() {
		return
	}
	proto := h.Proto
	if proto == 0 {
		proto = p.Proto
	}
	if vs, ok := a.nodes[h.NetnsInode].virtualService(proto, v.Service); ok {
		v.Scheduler = vs.Scheduler
	}
}
