package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/features"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

// Addresses of the packets TestDirectFormAgrees runs the programs on: a
// traced pod (v4 and v6), two other pods, two nodes.
var (
	leanPod   = netip.MustParseAddr("10.244.1.6")
	leanPod6  = netip.MustParseAddr("fd00:10:244:1::6")
	leanA     = netip.MustParseAddr("10.244.1.5")
	leanB     = netip.MustParseAddr("10.244.2.7")
	leanA6    = netip.MustParseAddr("fd00:10:244:1::5")
	leanB6    = netip.MustParseAddr("fd00:10:244:2::7")
	leanNode1 = netip.MustParseAddr("192.168.50.1")
	leanNode2 = netip.MustParseAddr("192.168.50.2")
)

// leanL4 is a transport header and what follows it.
type leanL4 struct {
	proto layers.IPProtocol
	sport uint16
	dport uint16
	after []gopacket.SerializableLayer // a tunnel's header and packet
}

// leanTCPLayer is a TCP header as leanIP's put it, for a payload.
func leanTCPLayer(sport, dport uint16) *layers.TCP {
	return &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Ack: 2000, ACK: true, Window: 512}
}

// leanRawTCP is the same header as bytes (no checksum), for where no IP
// layer is there to compute one with (after an extension header).
func leanRawTCP(sport, dport uint16) gopacket.Payload {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], 1000)
	binary.BigEndian.PutUint32(h[8:], 2000)
	h[12], h[13] = 0x50, 0x10 // 20 bytes, ACK
	binary.BigEndian.PutUint16(h[14:], 512)
	return h
}

func leanTCP(sport, dport uint16) leanL4 {
	return leanL4{proto: layers.IPProtocolTCP, sport: sport, dport: dport}
}

func leanUDP(sport, dport uint16, after ...gopacket.SerializableLayer) leanL4 {
	return leanL4{proto: layers.IPProtocolUDP, sport: sport, dport: dport, after: after}
}

// leanIP is an IP header of either family with l4 after it. frag: a later
// fragment's offset (no transport header follows); opts: IPv4 options.
type leanIP struct {
	src, dst netip.Addr
	l4       leanL4
	frag     uint16
	id       uint16 // IPv4: 0x1234 when 0
	opts     bool
	icmpEcho bool
	payload  []gopacket.SerializableLayer // in place of l4 (IPIP)
	protocol layers.IPProtocol            // with payload
}

func (p leanIP) layers() []gopacket.SerializableLayer {
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	proto := p.l4.proto
	if p.icmpEcho {
		proto = layers.IPProtocolICMPv4
	}
	if p.payload != nil {
		proto = p.protocol
	}
	if p.src.Is4() {
		id := p.id
		if id == 0 {
			id = 0x1234
		}
		ip := &layers.IPv4{Version: 4, TTL: 64, Id: id, Protocol: proto,
			SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), FragOffset: p.frag}
		if p.opts {
			ip.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}}
		}
		ls, nl = append(ls, ip), ip
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, FlowLabel: 0x5678,
			SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice()}
		ls, nl = append(ls, ip), ip
	}
	switch {
	case p.payload != nil:
		return append(ls, p.payload...)
	case p.frag != 0:
		return append(ls, gopacket.Payload(make([]byte, 32)))
	case p.icmpEcho:
		return append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1},
			gopacket.Payload(make([]byte, 16)))
	case p.l4.proto == layers.IPProtocolTCP:
		tcp := leanTCPLayer(p.l4.sport, p.l4.dport)
		_ = tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	default:
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.l4.sport), DstPort: layers.UDPPort(p.l4.dport)}
		_ = udp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, udp)
	}
	if p.l4.after != nil {
		return append(ls, p.l4.after...)
	}
	return append(ls, gopacket.Payload(make([]byte, 24)))
}

// leanEth is an Ethernet header for ip's family.
func leanEth(ip leanIP) *layers.Ethernet {
	t := layers.EthernetTypeIPv4
	if !ip.src.Is4() {
		t = layers.EthernetTypeIPv6
	}
	return &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: t}
}

// leanFrame serializes ip behind an Ethernet header.
func leanFrame(t *testing.T, ip leanIP) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	ls := append([]gopacket.SerializableLayer{leanEth(ip)}, ip.layers()...)
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

// leanVXLAN is a VXLAN header (valid: the I flag) and inner's frame.
func leanVXLAN(valid bool, inner leanIP) []gopacket.SerializableLayer {
	return append([]gopacket.SerializableLayer{&layers.VXLAN{ValidIDFlag: valid, VNI: 1}, leanEth(inner)}, inner.layers()...)
}

// leanGeneve is a Geneve header carrying inner's frame.
func leanGeneve(inner leanIP) []gopacket.SerializableLayer {
	g := gopacket.Payload([]byte{0, 0, 0x65, 0x58, 0, 0, 1, 0})
	return append([]gopacket.SerializableLayer{g, leanEth(inner)}, inner.layers()...)
}

// A packet of TestDirectFormAgrees: what it is, and whether the programs
// keep it with no connection or tracked skb in the maps (byAddr), and with
// the connection of conn in them.
type leanCase struct {
	name   string
	ip     leanIP
	byAddr bool
	conn   *leanConn
	// The connection is not what the packet is matched by: a tunnel's
	// packet is matched by its inner connection only.
	connUnused bool
	pod6       bool // byAddr: by the IPv6 pod's address
}

// leanConn is a conns key as the kernel side builds it (conn_lookup).
type leanConn struct {
	src, dst     netip.Addr
	sport, dport uint16
	proto        uint8
}

func (c leanConn) key() []byte {
	var k [40]byte
	s, d := c.src.As16(), c.dst.As16()
	if c.src.Is4() {
		s4, d4 := c.src.As4(), c.dst.As4()
		copy(k[0:4], s4[:])
		copy(k[16:20], d4[:])
	} else {
		copy(k[0:16], s[:])
		copy(k[16:32], d[:])
	}
	binary.BigEndian.PutUint16(k[32:], c.sport)
	binary.BigEndian.PutUint16(k[34:], c.dport)
	k[36] = c.proto
	return k[:]
}

// hintSlot is conn_hint_slot's slot of the key, computed here on its own:
// a slot that differs from the kernel side's leaves the connection's
// packets unkept by both forms, which the test's expectations catch.
func (c leanConn) hintSlot() uint32 {
	k := c.key()
	var h uint32
	for i := 0; i < 32; i += 4 {
		h ^= binary.NativeEndian.Uint32(k[i:])
	}
	sport := uint32(binary.NativeEndian.Uint16(k[32:]))
	dport := uint32(binary.NativeEndian.Uint16(k[34:]))
	h ^= (sport << 16) | dport
	h ^= uint32(k[36])
	return (h * 0x9e3779b1) >> 16
}

// TestDirectFormAgrees runs the netfilter programs on packets through
// BPF_PROG_TEST_RUN: the direct form, whose lean_reject turns away the
// packets it is sure are not kept before any parse, and the form that
// reads with the helper and parses every packet. For each packet, each
// state of the maps (empty; every tracked hint set; every connection hint
// set; the packet's connection in conns with its hint) and each pod-IP
// configuration (IPv4 and IPv6, IPv4 only, IPv6 only) they must emit the
// same event, or none, and accept; the expectations say which packets are
// kept. The packets are lean_reject's common ones (IPv4 and IPv6 TCP and
// UDP, VXLAN with IPv4 inside) and ones it hands on (options, fragments,
// ICMP, Geneve, IPIP, VXLAN without its flag, with IPv6 inside or over
// IPv6, an IPv6 extension header). Then a packet tracked at one hop and
// masqueraded before the next must still be followed, by both forms.
func TestDirectFormAgrees(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireSupported(t, testutil.NetfilterLinks, features.NetfilterLink())
	testutil.RequireSupported(t, testutil.DirectSKBReads, features.DirectSKBRead())
	tcpAB := leanConn{leanA, leanB, 40000, 80, 6}
	udpAB := leanConn{leanA, leanB, 40001, 53, 17}
	tcp6 := leanConn{leanA6, leanB6, 40002, 80, 6}
	pkt := func(src, dst netip.Addr, l4 leanL4) leanIP { return leanIP{src: src, dst: dst, l4: l4} }
	vxlan := func(port uint16, valid bool, inner leanIP) leanIP {
		return pkt(leanNode1, leanNode2, leanUDP(50000, port, leanVXLAN(valid, inner)...))
	}
	cases := []leanCase{
		{name: "TCP between other pods", ip: pkt(leanA, leanB, leanTCP(40000, 80)), conn: &tcpAB},
		{name: "TCP to the pod", ip: pkt(leanA, leanPod, leanTCP(40000, 80)), byAddr: true},
		{name: "TCP from the pod", ip: pkt(leanPod, leanB, leanTCP(80, 40000)), byAddr: true},
		{name: "UDP between other pods", ip: pkt(leanA, leanB, leanUDP(40001, 53)), conn: &udpAB},
		{name: "UDP to the pod", ip: pkt(leanA, leanPod, leanUDP(40001, 53)), byAddr: true},
		{name: "TCP reply between other pods", ip: pkt(leanB, leanA, leanTCP(80, 40000)), conn: &leanConn{leanB, leanA, 80, 40000, 6}},
		{name: "VXLAN between other pods", ip: vxlan(8472, true, pkt(leanA, leanB, leanTCP(40000, 80))), conn: &tcpAB},
		{name: "VXLAN to the pod", ip: vxlan(8472, true, pkt(leanA, leanPod, leanTCP(40000, 80))), byAddr: true},
		{name: "VXLAN from the pod", ip: vxlan(8472, true, pkt(leanPod, leanB, leanUDP(40001, 53))), byAddr: true},
		{name: "VXLAN on the IANA port to the pod", ip: vxlan(4789, true, pkt(leanA, leanPod, leanTCP(40000, 80))), byAddr: true},
		{name: "VXLAN on the IANA port, other pods", ip: vxlan(4789, true, pkt(leanA, leanB, leanUDP(40001, 53))), conn: &udpAB},
		{name: "VXLAN without its flag, the pod inside", ip: vxlan(8472, false, pkt(leanA, leanPod, leanTCP(40000, 80)))},
		{name: "VXLAN without its flag, the outer connection known", ip: vxlan(8472, false, pkt(leanA, leanB, leanTCP(40000, 80))),
			conn: &leanConn{leanNode1, leanNode2, 50000, 8472, 17}},
		{name: "VXLAN, the outer connection known", ip: vxlan(8472, true, pkt(leanA, leanB, leanTCP(40000, 80))),
			conn: &leanConn{leanNode1, leanNode2, 50000, 8472, 17}, connUnused: true},
		{name: "VXLAN from the pod's address outside", ip: leanIP{src: leanPod, dst: leanNode2,
			l4: leanUDP(50000, 8472, leanVXLAN(true, pkt(leanA, leanB, leanTCP(40000, 80)))...)}, byAddr: true},
		{name: "VXLAN with IPv6 inside, the pod", ip: vxlan(8472, true, pkt(leanA6, leanPod6, leanTCP(40000, 80))), byAddr: true, pod6: true},
		{name: "VXLAN with IPv6 inside, other pods", ip: vxlan(8472, true, pkt(leanA6, leanB6, leanTCP(40002, 80))), conn: &tcp6},
		{name: "VXLAN with an ICMP echo to the pod inside", ip: vxlan(8472, true, leanIP{src: leanA, dst: leanPod, icmpEcho: true}), byAddr: true},
		{name: "Geneve to the pod", ip: pkt(leanNode1, leanNode2, leanUDP(50000, 6081, leanGeneve(pkt(leanA, leanPod, leanTCP(40000, 80)))...)), byAddr: true},
		{name: "Geneve between other pods", ip: pkt(leanNode1, leanNode2, leanUDP(50000, 6081, leanGeneve(pkt(leanA, leanB, leanTCP(40000, 80)))...)), conn: &tcpAB},
		{name: "IPIP to the pod", ip: leanIP{src: leanNode1, dst: leanNode2, protocol: layers.IPProtocolIPv4,
			payload: pkt(leanA, leanPod, leanTCP(40000, 80)).layers()}, byAddr: true},
		{name: "IPIP between other pods", ip: leanIP{src: leanNode1, dst: leanNode2, protocol: layers.IPProtocolIPv4,
			payload: pkt(leanA, leanB, leanTCP(40000, 80)).layers()}, conn: &tcpAB},
		{name: "options, to the pod", ip: leanIP{src: leanA, dst: leanPod, l4: leanTCP(40000, 80), opts: true}, byAddr: true},
		{name: "options, other pods", ip: leanIP{src: leanA, dst: leanB, l4: leanTCP(40000, 80), opts: true}, conn: &tcpAB},
		{name: "a later fragment to the pod", ip: leanIP{src: leanA, dst: leanPod, l4: leanUDP(1, 2), frag: 100}, byAddr: true},
		{name: "a later fragment, other pods", ip: leanIP{src: leanA, dst: leanB, l4: leanUDP(1, 2), frag: 100}},
		{name: "ICMP echo to the pod", ip: leanIP{src: leanA, dst: leanPod, icmpEcho: true}, byAddr: true},
		{name: "ICMP echo, other pods", ip: leanIP{src: leanA, dst: leanB, icmpEcho: true},
			conn: &leanConn{leanA, leanB, 7, 7, 1}},
		{name: "IPv6 TCP to the pod", ip: pkt(leanA6, leanPod6, leanTCP(40000, 80)), byAddr: true, pod6: true},
		{name: "IPv6 UDP from the pod", ip: pkt(leanPod6, leanB6, leanUDP(53, 40003)), byAddr: true, pod6: true},
		{name: "IPv6 UDP between other pods", ip: pkt(leanA6, leanB6, leanUDP(40003, 53)),
			conn: &leanConn{leanA6, leanB6, 40003, 53, 17}},
		{name: "IPv6 with a hop-by-hop header, to the pod", ip: leanIP{src: leanA6, dst: leanPod6, protocol: 0,
			payload: []gopacket.SerializableLayer{gopacket.Payload{6, 0, 1, 4, 0, 0, 0, 0}, leanRawTCP(40000, 80)}},
			byAddr: true, pod6: true},
		{name: "IPv6 with a hop-by-hop header, other pods", ip: leanIP{src: leanA6, dst: leanB6, protocol: 0,
			payload: []gopacket.SerializableLayer{gopacket.Payload{6, 0, 1, 4, 0, 0, 0, 0}, leanRawTCP(40002, 80)}},
			conn: &tcp6},
		{name: "VXLAN over IPv6 to the pod", ip: leanIP{src: leanA6, dst: leanB6,
			l4: leanUDP(50000, 8472, leanVXLAN(true, pkt(leanA, leanPod, leanTCP(40000, 80)))...)}, byAddr: true},
		{name: "VXLAN over IPv6 between other pods", ip: leanIP{src: leanA6, dst: leanB6,
			l4: leanUDP(50000, 8472, leanVXLAN(true, pkt(leanA, leanB, leanTCP(40000, 80)))...)}, conn: &tcpAB},
		{name: "IPv6 TCP between other pods", ip: pkt(leanA6, leanB6, leanTCP(40002, 80)), conn: &tcp6},
	}
	type state struct {
		name        string
		trackedHint bool // every tracked_hint slot set (none in tracked)
		connsHint   bool // every conns_hint slot set (none in conns)
		conn        bool // the case's connection in conns, its slot set
	}
	states := []state{{name: "empty maps"}, {name: "tracked hints set", trackedHint: true},
		{name: "connection hints set", connsHint: true}, {name: "the connection known", conn: true}}

	configs := []struct {
		name   string
		v4, v6 bool
	}{{"IPv4 and IPv6 pod IPs", true, true}, {"an IPv4 pod IP", true, false}, {"an IPv6 pod IP", false, true}}
	var objs *leanObjs
	for _, cfg := range configs {
		var pods []netip.Addr
		if cfg.v4 {
			pods = append(pods, leanPod)
		}
		if cfg.v6 {
			pods = append(pods, leanPod6)
		}
		o := leanLoad(t, pods)
		if objs == nil {
			objs = o
		}
		run := func(prog *ebpf.Program, frame []byte, c leanCase, st state) [][]byte {
			t.Helper()
			o.m.reset(st.trackedHint, st.connsHint)
			if st.conn && c.conn != nil {
				o.m.putConn(*c.conn)
			}
			evs := leanRun(t, prog, o.rd, frame)
			for _, ev := range evs {
				clear(ev[0:16])  // skb, ts: differ from run to run
				clear(ev[52:54]) // cpu
			}
			o.m.dirty = o.m.dirty || len(evs) > 0 // a tracked skb, its hint
			return evs
		}
		for _, c := range cases {
			frame := leanFrame(t, c.ip)
			for _, st := range states {
				direct := run(o.Direct, frame, c, st)
				plain := run(o.Plain, frame, c, st)
				if len(direct) != len(plain) || (len(direct) == 1 && !bytes.Equal(direct[0], plain[0])) {
					t.Errorf("%s: %s, %s: the direct form emitted %d events, the helper form %d, or they differ",
						cfg.name, c.name, st.name, len(direct), len(plain))
					continue
				}
				byAddr := c.byAddr && ((c.pod6 && cfg.v6) || (!c.pod6 && cfg.v4))
				want := byAddr || (st.conn && c.conn != nil && !c.connUnused)
				if got := len(plain) == 1; got != want || len(plain) > 1 {
					t.Errorf("%s: %s, %s: %d events, want kept=%v", cfg.name, c.name, st.name, len(plain), want)
				}
			}
		}
	}

	// A packet tracked at an earlier hop is followed when NAT took the
	// pod's address out of its header (masquerade to the node's): only its
	// skb's tracked entry keeps it. The test runs reuse a freed skb on the
	// same CPU, mostly, so the NAT'd packet comes on the tracked skb: a
	// try whose event shows the same skb shows it followed; a form that
	// keeps it in no try does not follow it.
	pod := leanFrame(t, pkt(leanPod, leanB, leanTCP(40000, 80)))
	masq := leanFrame(t, pkt(leanNode1, leanB, leanTCP(40000, 80)))
	reused := pkt(leanA, leanB, leanTCP(40000, 80))
	reused.id = 0x4321
	other := leanFrame(t, reused)
	defer leanPinCPU(t)()
	for _, f := range []struct {
		name string
		prog *ebpf.Program
	}{{"direct", objs.Direct}, {"helper", objs.Plain}} {
		followed := false
		for try := 0; try < 20 && !followed; try++ {
			objs.m.dirty = true
			objs.m.reset(false, false)
			first := leanRun(t, f.prog, objs.rd, pod)
			if len(first) != 1 {
				t.Fatalf("%s form: the pod's packet gave %d events", f.name, len(first))
			}
			next := leanRun(t, f.prog, objs.rd, masq)
			followed = len(next) == 1 && bytes.Equal(next[0][:8], first[0][:8])
		}
		if !followed {
			t.Errorf("%s form: the masqueraded packet on the tracked skb was not followed in 20 tries", f.name)
		}
		// Another packet on the tracked skb (another IP id: the skb
		// was freed unseen and reused) is not followed.
		objs.m.dirty = true
		objs.m.reset(false, false)
		leanRun(t, f.prog, objs.rd, pod)
		if evs := leanRun(t, f.prog, objs.rd, other); len(evs) != 0 {
			t.Errorf("%s form: another packet between other pods on a tracked skb was kept", f.name)
		}
	}
}

// leanObjs are what TestDirectFormAgrees runs and looks at.
type leanObjs struct {
	leanProgs
	rd *ringbuf.Reader
	m  leanMaps
}

type leanProgs struct {
	Direct      *ebpf.Program `ebpf:"nf_first_direct"`
	Plain       *ebpf.Program `ebpf:"nf_first"`
	Events      *ebpf.Map     `ebpf:"events"`
	Tracked     *ebpf.Map     `ebpf:"tracked"`
	TrackedHint *ebpf.Map     `ebpf:"tracked_hint"`
	Conns       *ebpf.Map     `ebpf:"conns"`
	ConnsHint   *ebpf.Map     `ebpf:"conns_hint"`
}

// leanLoad loads the netfilter programs as the loader sets them up, with
// pods for the pod-IP filter; the test's end closes them.
func leanLoad(t *testing.T, pods []netip.Addr) *leanObjs {
	t.Helper()
	spec, err := bpf.LoadNetfilter()
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{PodIPs: pods, VXLANPorts: DefaultVXLANPorts}
	if err := setVariables(spec, &opts); err != nil {
		t.Fatal(err)
	}
	if err := inlineFilter(spec, nil); err != nil {
		t.Fatal(err)
	}
	var o leanObjs
	if err := spec.LoadAndAssign(&o.leanProgs, nil); err != nil {
		t.Fatalf("load: %v", err)
	}
	for _, c := range []interface{ Close() error }{o.Direct, o.Plain, o.Events, o.Tracked, o.TrackedHint, o.Conns, o.ConnsHint} {
		t.Cleanup(func() { _ = c.Close() })
	}
	if o.rd, err = ringbuf.NewReader(o.Events); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.rd.Close() })
	o.m = leanMaps{t: t, tracked: o.Tracked, trackedHint: o.TrackedHint, conns: o.Conns, connsHint: o.ConnsHint}
	o.m.init()
	return &o
}

// leanMaps puts TestDirectFormAgrees's map states in place: the hint
// arrays filled only when they must change (65536 entries each).
type leanMaps struct {
	t                             *testing.T
	tracked, trackedHint          *ebpf.Map
	conns, connsHint              *ebpf.Map
	keys, zero, ones              []uint32
	trackedOnes, connsOnes, dirty bool
}

func (m *leanMaps) init() {
	m.keys, m.zero, m.ones = make([]uint32, 1<<16), make([]uint32, 1<<16), make([]uint32, 1<<16)
	for i := range m.keys {
		m.keys[i], m.ones[i] = uint32(i), 1
	}
	m.dirty = true
	m.trackedOnes, m.connsOnes = true, true
	m.reset(false, false)
}

func (m *leanMaps) fill(mp *ebpf.Map, ones bool) {
	vals := m.zero
	if ones {
		vals = m.ones
	}
	if _, err := mp.BatchUpdate(m.keys, vals, nil); err != nil {
		m.t.Fatalf("fill %v: %v", mp, err)
	}
}

// reset empties tracked and conns and sets every hint slot of each array
// to one or zero.
func (m *leanMaps) reset(trackedOnes, connsOnes bool) {
	m.empty(m.tracked)
	if m.dirty || m.trackedOnes != trackedOnes {
		m.fill(m.trackedHint, trackedOnes)
	}
	if m.dirty || m.connsOnes != connsOnes || m.empty(m.conns) > 0 {
		m.fill(m.connsHint, connsOnes)
	}
	m.trackedOnes, m.connsOnes, m.dirty = trackedOnes, connsOnes, false
}

// empty deletes every key of a hash map; it returns how many there were.
func (m *leanMaps) empty(mp *ebpf.Map) int {
	var k, v []byte
	var ks [][]byte
	for it := mp.Iterate(); it.Next(&k, &v); {
		ks = append(ks, slices.Clone(k))
	}
	for _, k := range ks {
		if err := mp.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			m.t.Fatalf("empty %v: %v", mp, err)
		}
	}
	return len(ks)
}

// putConn puts c in conns and sets its hint slot.
func (m *leanMaps) putConn(c leanConn) {
	if err := m.conns.Put(c.key(), uint32(1)); err != nil {
		m.t.Fatal(err)
	}
	if err := m.connsHint.Put(c.hintSlot(), uint32(1)); err != nil {
		m.t.Fatal(err)
	}
}

// leanRun runs a netfilter program on an Ethernet frame at PRE_ROUTING and
// returns the events it emitted; it must accept.
func leanRun(t *testing.T, prog *ebpf.Program, rd *ringbuf.Reader, frame []byte) [][]byte {
	t.Helper()
	// A struct nf_hook_state with only its hook (PRE_ROUTING, so that
	// the frame is taken as Ethernet and the network header set) and
	// family.
	var hookState [48]byte
	hookState[1] = 2 // NFPROTO_IPV4
	if binary.BigEndian.Uint16(frame[12:]) == uint16(layers.EthernetTypeIPv6) {
		hookState[1] = 10 // NFPROTO_IPV6
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame, Context: hookState})
	if err != nil {
		t.Fatalf("run %v: %v", prog, err)
	}
	if ret != 1 {
		t.Errorf("%v returned %d, want NF_ACCEPT", prog, ret)
	}
	var evs [][]byte
	rd.SetDeadline(time.Now())
	for {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return evs
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, slices.Clone(rec.RawSample))
	}
}

// leanPinCPU keeps the test's thread on one CPU, so that test runs reuse
// the skb the run before freed; it returns what undoes it.
func leanPinCPU(t *testing.T) func() {
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	var one unix.CPUSet
	for c := range 1024 {
		if old.IsSet(c) {
			one.Set(c)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	return func() {
		_ = unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	}
}
