package decode

import (
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// The C names of the contract's values (bpf/include/event.h) and the Go
// values that stand for them.
var (
	contractKinds = map[string]Kind{
		"PT_EV_RX": KindRx, "PT_EV_TX": KindTx, "PT_EV_NF": KindNF, "PT_EV_DROP": KindDrop,
		"PT_EV_CONSUME": KindConsume, "PT_EV_BRIDGE": KindBridge, "PT_EV_IPVS": KindIPVS,
		"PT_EV_ENCAP": KindEncap, "PT_EV_TABLE": KindTable, "PT_EV_IPVS_VERDICT": KindIPVSVerdict,
		"PT_EV_DECAP": KindDecap,
	}
	contractFlags = map[string]Flags{
		"PT_F_NEW": FlagNew, "PT_F_L3": FlagL3, "PT_F_INNER": FlagInner, "PT_F_L4": FlagL4,
		"PT_F_INNER_L4": FlagInnerL4, "PT_F_REASON": FlagReason, "PT_F_FENTRY": FlagFentry,
		"PT_F_KPROBE": FlagKprobe,
	}
	contractSlots   = map[string]Slot{"PT_SLOT_NONE": SlotNone, "PT_SLOT_FIRST": SlotFirst, "PT_SLOT_LAST": SlotLast}
	contractTunnels = map[string]TunnelKind{"PT_TUNNEL_VXLAN": TunnelVXLAN, "PT_TUNNEL_GENEVE": TunnelGeneve, "PT_TUNNEL_IPIP": TunnelIPIP}
)

// contractEnum returns the values of a C enum of the compiled objects, by
// name.
func contractEnum(t *testing.T, name string) map[string]uint64 {
	t.Helper()
	spec, err := bpf.LoadTracepoint()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName(name, &e); err != nil {
		t.Fatalf("enum %s in the tracepoint object: %v", name, err)
	}
	vals := map[string]uint64{}
	for _, v := range e.Values {
		vals[v.Name] = v.Value
	}
	return vals
}

// checkContract checks that every value of the C enum has a Go value equal
// to it, and that the Go side has no value the C enum lacks.
func checkContract[T ~uint8](t *testing.T, enum string, goVals map[string]T, all []T) {
	t.Helper()
	c := contractEnum(t, enum)
	for name, v := range c {
		g, ok := goVals[name]
		switch {
		case !ok:
			t.Errorf("enum %s: %s = %d has no Go value", enum, name, v)
		case uint64(g) != v:
			t.Errorf("enum %s: %s = %d in C, %d in Go", enum, name, v, g)
		}
	}
	for name := range goVals {
		if _, ok := c[name]; !ok {
			t.Errorf("enum %s has no %s", enum, name)
		}
	}
	if len(all) != len(c) {
		t.Errorf("enum %s has %d values, the Go side lists %d", enum, len(c), len(all))
	}
}

// The kind, flag and slot values are the kernel programs': every one of
// them, read from the compiled object's BTF.
func TestContract(t *testing.T) {
	checkContract(t, "pathtrace_kind", contractKinds, Kinds())
	var flags []Flags
	for f := Flags(1); f != 0; f <<= 1 {
		flags = append(flags, f)
	}
	checkContract(t, "pathtrace_flags", contractFlags, flags)
	checkContract(t, "pathtrace_slot", contractSlots, []Slot{SlotNone, SlotFirst, SlotLast})
	checkContract(t, "pathtrace_tunnel", contractTunnels, TunnelKinds)
	for _, k := range TunnelKinds {
		if k.Hop() == hop.NoTunnel {
			t.Errorf("tunnel kind %d has no hop tunnel", k)
		}
	}
	checkContract(t, "pathtrace_family", map[string]uint8{"PT_FAMILY_IPV4": familyIPv4, "PT_FAMILY_IPV6": familyIPv6},
		[]uint8{familyIPv4, familyIPv6})
	for _, k := range Kinds() {
		if k.Hop() == hop.NoKind || k.String() == "kind("+strconv.Itoa(int(k))+")" {
			t.Errorf("event kind %d has no name or hop kind", k)
		}
	}
}

// The programs write hooks as enum nf_inet_hooks of the vmlinux header
// they are compiled against.
func TestHooksMatchKernel(t *testing.T) {
	h, err := os.ReadFile("../../bpf/include/vmlinux_x86.h")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]hop.Hook{
		"NF_INET_PRE_ROUTING": hop.Prerouting, "NF_INET_LOCAL_IN": hop.Input, "NF_INET_FORWARD": hop.Forward,
		"NF_INET_LOCAL_OUT": hop.Output, "NF_INET_POST_ROUTING": hop.Postrouting,
	} {
		m := regexp.MustCompile(`\b` + name + ` = (\d+),`).FindSubmatch(h)
		if m == nil {
			t.Fatalf("%s not in vmlinux_x86.h", name)
		}
		v, _ := strconv.Atoi(string(m[1]))
		if got := hop.HookFromKernel(uint8(v)); got != want {
			t.Errorf("%s = %d decodes as %s, want %s", name, v, got, want)
		}
	}
}

func TestBackend(t *testing.T) {
	for _, tt := range []struct {
		kind  Kind
		flags Flags
		want  hop.Backend
	}{
		{KindRx, 0, hop.Tracepoint},
		{KindDrop, 0, hop.Tracepoint},
		{KindNF, 0, hop.NetfilterLink},
		{KindNF, FlagFentry, hop.Fentry},
		{KindNF, FlagKprobe | FlagL3, hop.Kprobe},
		{KindIPVS, FlagFentry, hop.Fentry},
		{KindBridge, 0, hop.NoBackend},
		{Kind(99), 0, hop.NoBackend},
	} {
		if got := BackendOf(tt.kind, tt.flags); got != tt.want {
			t.Errorf("%s flags %#x: backend %s, want %s", tt.kind, tt.flags, got, tt.want)
		}
	}
}

// Function hops' ext fields decode by kind into typed values.
func TestDecodeExt(t *testing.T) {
	decodeKind := decodeRecord
	t.Run("ipvs", func(t *testing.T) {
		var r bpf.TracepointEvent
		r.Kind, r.Flags = uint8(KindIPVS), uint8(FlagFentry)
		r.Ext.Addr = [2]uint32{ip("10.96.0.10")[0], ip("10.244.2.7")[0]}
		r.Ext.Port = [2]uint16{80, 8080}
		r.Ext.Val = [3]uint32{3, 6, 1}
		r.Ext.Name = name("rr")
		ev := decodeKind(t, r)
		want := IPVS{Service: netip.MustParseAddrPort("10.96.0.10:80"), RealServer: netip.MustParseAddrPort("10.244.2.7:8080"),
			Method: hop.MethodRoute, Proto: 6, Scheduler: "rr"}
		if ev.IPVS != want || ev.Backend != hop.Fentry {
			t.Errorf("ipvs %+v backend %s, want %+v fentry", ev.IPVS, ev.Backend, want)
		}
		r.Ext.Val[2] = 0 // scheduler not readable
		if ev := decodeKind(t, r); ev.IPVS.Scheduler != "" {
			t.Errorf("scheduler %q without val[2]", ev.IPVS.Scheduler)
		}
	})
	t.Run("encap", func(t *testing.T) {
		var r bpf.TracepointEvent
		r.Kind = uint8(KindEncap)
		r.Ext.Val = [3]uint32{1, 0, 1} // recorded before val[1] was the tunnel: VXLAN
		r.Ext.Port = [2]uint16{0, 8472}
		if ev := decodeKind(t, r); ev.TunnelFunc != (TunnelFunc{Tunnel: hop.TunnelVXLAN, Known: true, VNI: 1, DPort: 8472}) {
			t.Errorf("vxlan %+v", ev.TunnelFunc)
		}
		r.Ext.Val[2] = 0
		if ev := decodeKind(t, r); ev.TunnelFunc.Known {
			t.Errorf("vxlan known without val[2]: %+v", ev.TunnelFunc)
		}
		r.Ext.Val = [3]uint32{10, uint32(TunnelGeneve), 1}
		r.Ext.Port = [2]uint16{0, 6081}
		if ev := decodeKind(t, r); ev.TunnelFunc != (TunnelFunc{Tunnel: hop.TunnelGeneve, Known: true, VNI: 10, DPort: 6081}) {
			t.Errorf("geneve %+v", ev.TunnelFunc)
		}
		r.Ext.Val, r.Ext.Port = [3]uint32{0, uint32(TunnelIPIP), 0}, [2]uint16{}
		if ev := decodeKind(t, r); ev.TunnelFunc != (TunnelFunc{Tunnel: hop.TunnelIPIP}) {
			t.Errorf("ipip %+v", ev.TunnelFunc)
		}
		r.Ext.Val[1] = 0x100 + uint32(TunnelIPIP)
		if ev := decodeKind(t, r); ev.TunnelFunc.Tunnel != hop.NoTunnel {
			t.Errorf("tunnel %#x: %s, want none", r.Ext.Val[1], ev.TunnelFunc.Tunnel)
		}
	})
	t.Run("decap", func(t *testing.T) {
		var r bpf.TracepointEvent
		r.Kind, r.Flags = uint8(KindDecap), uint8(FlagKprobe)
		r.Ext.Val = [3]uint32{7, uint32(TunnelGeneve), 1} // val[0], val[2]: not a decap's
		if ev := decodeKind(t, r); ev.TunnelFunc != (TunnelFunc{Tunnel: hop.TunnelGeneve}) || ev.Backend != hop.Kprobe {
			t.Errorf("geneve decap %+v backend %s", ev.TunnelFunc, ev.Backend)
		}
		r.Ext.Val = [3]uint32{}
		if ev := decodeKind(t, r); ev.TunnelFunc.Tunnel != hop.TunnelVXLAN {
			t.Errorf("decap recorded before val[1]: %s, want vxlan", ev.TunnelFunc.Tunnel)
		}
	})
	t.Run("table", func(t *testing.T) {
		var r bpf.TracepointEvent
		r.Kind, r.Flags, r.Hook = uint8(KindTable), uint8(FlagKprobe), 2 // FORWARD
		r.Dev, r.InDev, r.OutDev = name("KUBE-FORWARD"), name("cni0"), name("flannel.1")
		r.Ext.Name = name("filter")
		r.Ext.Val = [3]uint32{0 | 1<<16, 2, 2} // NF_DROP with an errno, ip, nf_tables
		ev := decodeKind(t, r)
		want := Table{Engine: hop.EngineNFTables, Family: hop.FamilyIPv4, Name: "filter", Chain: "KUBE-FORWARD"}
		if ev.Table != want || ev.Verdict != hop.VerdictDrop || ev.Dev != "cni0" || ev.Hook != hop.Forward {
			t.Errorf("table %+v verdict %s dev %s hook %s", ev.Table, ev.Verdict, ev.Dev, ev.Hook)
		}
		// x_tables: no chain of its own, the hook's; POSTROUTING shows
		// the output device.
		r.Dev, r.Hook = [16]int8{}, 4
		r.Ext.Val = [3]uint32{1, 2, 1}
		ev = decodeKind(t, r)
		if ev.Table.Chain != "POSTROUTING" || ev.Table.Engine != hop.EngineXTables || ev.Verdict != hop.VerdictAccept || ev.Dev != "flannel.1" {
			t.Errorf("x_tables %+v verdict %s dev %s", ev.Table, ev.Verdict, ev.Dev)
		}
		// A hook the program could not read.
		r.Hook = 0xff
		if ev := decodeKind(t, r); ev.Hook != hop.HookUnknown || ev.Table.Chain != "" {
			t.Errorf("unknown hook: %s chain %q", ev.Hook, ev.Table.Chain)
		}
	})
	t.Run("netfilter-ct", func(t *testing.T) {
		var r bpf.TracepointEvent
		r.Kind = uint8(KindNF)
		for val, want := range map[uint32]struct {
			ct    CT
			reply bool
		}{
			0: {NoCT, false}, // no conntrack, or a recording made before
			1: {CTEstablished, false},
			3: {CTNew, false},
			4: {CTEstablishedReply, true},
			5: {CTRelatedReply, true},
			8: {CTUntracked, false},
		} {
			r.Ext.Val[0] = val
			ev := decodeKind(t, r)
			if ev.CT != want.ct || ev.CT.Reply() != want.reply {
				t.Errorf("val[0]=%d: ct %d reply %v, want %d %v", val, ev.CT, ev.CT.Reply(), want.ct, want.reply)
			}
		}
		r.Kind, r.Ext.Val[0] = uint8(KindRx), 4 // only netfilter events carry it
		if ev := decodeKind(t, r); ev.CT != NoCT {
			t.Errorf("rx event with ct %d", ev.CT)
		}
	})
	t.Run("ipvs-verdict", func(t *testing.T) {
		var r bpf.TracepointEvent
		r.Kind, r.Hook = uint8(KindIPVSVerdict), 1 // INPUT
		r.InDev = name("eth0")
		if ev := decodeKind(t, r); ev.Verdict != hop.VerdictDrop || ev.Dev != "eth0" || ev.Hook != hop.Input {
			t.Errorf("ipvs verdict %s dev %s hook %s", ev.Verdict, ev.Dev, ev.Hook)
		}
	})
}
