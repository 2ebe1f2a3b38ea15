package doctor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
)

var vip = netip.MustParsePrefix

// kubeFilter is the nf_tables table iptables-nft makes for kube-proxy's
// filter rules.
var kubeFilter = NFTable{Family: "ip", Name: "filter", Chains: []string{"FORWARD", "INPUT", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-SERVICES", "OUTPUT"}}

// TestNoEndpoints reads kube-proxy's rules for Service ports without
// endpoints from every source at once: iptables-nft's filter table, the
// legacy filter table and nftables mode's maps, leaving out what only looks
// like them.
func TestNoEndpoints(t *testing.T) {
	n := &fakeNet{
		ipvsErr: ErrIPVSUnavailable,
		tables:  []NFTable{kubeFilter, {Family: "ip", Name: "kube-proxy"}, {Family: "ip6", Name: "kube-proxy"}},
		nftRules: map[string][]Rule{"ip filter": {
			{Chain: "KUBE-SERVICES", Comment: "default/nosvc:http has no endpoints", Dst: vip("10.96.0.11/32"), Proto: 6, DPort: 80, Verdict: VerdictReject},
			{Chain: "KUBE-SERVICES", Comment: "kube-system/dns:dns has no local endpoints", Dst: vip("10.96.0.10/32"), Proto: 17, DPort: 53, Verdict: VerdictDrop},
			{Chain: "KUBE-EXTERNAL-SERVICES", Comment: "default/nosvc:http has no endpoints", DstLocal: true, Proto: 6, DPort: 30081, Verdict: VerdictReject},
			{Chain: "KUBE-EXTERNAL-SERVICES", Comment: `"default/ext has no endpoints"`, Dst: vip("192.0.2.7/32"), Proto: 132, DPort: 9000, Verdict: VerdictReject},
			// Not kube-proxy's rules for Services without endpoints:
			{Chain: "KUBE-SERVICES", Comment: "default/web cluster IP", Dst: vip("10.96.0.12/32"), Proto: 6, DPort: 80, Verdict: "jump KUBE-SVC-X"},
			{Chain: "KUBE-SERVICES", Comment: "default/a has no endpoints", Dst: vip("10.96.0.13/32"), Proto: 6, DPort: 80, Verdict: VerdictReject, Other: true},
			{Chain: "KUBE-SERVICES", Comment: "default/b has no endpoints", Dst: vip("10.96.0.0/16"), Proto: 6, DPort: 80, Verdict: VerdictReject},
			{Chain: "KUBE-SERVICES", Comment: "default/c has no endpoints", Dst: vip("10.96.0.14/32"), Proto: 6, Verdict: VerdictReject},
			{Chain: "KUBE-SERVICES", Comment: "default/d has no endpoints", Dst: vip("10.96.0.15/32"), Proto: 47, DPort: 80, Verdict: VerdictReject},
			{Chain: "KUBE-SERVICES", Comment: "default/e has no endpoints", Dst: vip("10.96.0.16/32"), Proto: 6, DPort: 80, Verdict: VerdictAccept},
			{Chain: "KUBE-SERVICES", Comment: "default/f has no endpoints", Proto: 6, DPort: 80, Verdict: VerdictReject},
			{Chain: "FORWARD", Comment: "default/g has no endpoints", Dst: vip("10.96.0.17/32"), Proto: 6, DPort: 80, Verdict: VerdictReject},
		}},
		legacyRules: map[string][]Rule{"filter": {
			{Chain: "KUBE-SERVICES", Comment: "legacy/old has no endpoints", Dst: vip("10.96.0.30/32"), Proto: 6, DPort: 443, Verdict: VerdictReject},
			{Chain: "", Comment: "legacy/builtin has no endpoints", Dst: vip("10.96.0.31/32"), Proto: 6, DPort: 443, Verdict: VerdictReject},
		}, "ip6 filter": {
			{Chain: "KUBE-SERVICES", Comment: "legacy/old6 has no endpoints", Dst: netip.MustParsePrefix("fd96::30/128"), Proto: 6, DPort: 443, Verdict: VerdictReject},
		}},
		maps: map[string][]MapElement{
			"ip kube-proxy no-endpoint-services": {
				{Addr: netip.MustParseAddr("10.96.0.40"), Proto: 6, Port: 80, Comment: "ns6/svc6:p80", Verdict: "goto reject-chain"},
				{Addr: netip.MustParseAddr("1.2.3.4"), Proto: 6, Port: 80, Comment: "ns2/svc2:p80", Verdict: VerdictDrop},
				{Addr: netip.MustParseAddr("10.96.0.41"), Proto: 6, Port: 80, Comment: "odd", Verdict: "goto service-x"},
				{Proto: 6, Port: 80, Comment: "no address", Verdict: VerdictDrop},
			},
			"ip kube-proxy no-endpoint-nodeports": {
				{Proto: 6, Port: 3001, Comment: "ns2/svc2:p80", Verdict: VerdictDrop},
			},
			"ip6 kube-proxy no-endpoint-services": {
				{Addr: netip.MustParseAddr("fd00::41"), Proto: 17, Port: 53, Comment: "ns7/dns", Verdict: "goto reject-chain"},
			},
		},
	}
	r := collectFake(t, fstest.MapFS{"proc/net/ip_tables_names": file("filter\n"), "proc/net/ip6_tables_names": file("filter\n")}, n)
	want := []NoEndpointsRule{
		{Service: "ns2/svc2:p80", Protocol: "TCP", Port: 3001, NodePort: true, Action: ActionDrop, Rule: "nftables ip kube-proxy no-endpoint-nodeports"},
		{Service: "default/nosvc:http", Protocol: "TCP", Port: 30081, NodePort: true, Action: ActionReject, Rule: "iptables-nft filter KUBE-EXTERNAL-SERVICES"},
		{Service: "ns2/svc2:p80", Address: "1.2.3.4", Protocol: "TCP", Port: 80, Action: ActionDrop, Rule: "nftables ip kube-proxy no-endpoint-services"},
		{Service: "kube-system/dns:dns", Address: "10.96.0.10", Protocol: "UDP", Port: 53, Action: ActionDrop, Rule: "iptables-nft filter KUBE-SERVICES"},
		{Service: "default/nosvc:http", Address: "10.96.0.11", Protocol: "TCP", Port: 80, Action: ActionReject, Rule: "iptables-nft filter KUBE-SERVICES"},
		{Service: "legacy/old", Address: "10.96.0.30", Protocol: "TCP", Port: 443, Action: ActionReject, Rule: "iptables-legacy filter KUBE-SERVICES"},
		{Service: "ns6/svc6:p80", Address: "10.96.0.40", Protocol: "TCP", Port: 80, Action: ActionReject, Rule: "nftables ip kube-proxy no-endpoint-services"},
		{Service: "default/ext", Address: "192.0.2.7", Protocol: "SCTP", Port: 9000, Action: ActionReject, Rule: "iptables-nft filter KUBE-EXTERNAL-SERVICES"},
		{Service: "ns7/dns", Address: "fd00::41", Protocol: "UDP", Port: 53, Action: ActionReject, Rule: "nftables ip6 kube-proxy no-endpoint-services"},
		{Service: "legacy/old6", Address: "fd96::30", Protocol: "TCP", Port: 443, Action: ActionReject, Rule: "ip6tables-legacy filter KUBE-SERVICES"},
	}
	if got := r.KubeProxy.NoEndpoints; !reflect.DeepEqual(got, want) {
		t.Errorf("no-endpoint rules:\n%s\nwant\n%s", fmtRules(got), fmtRules(want))
	}
	wantStatus(t, r, "kube_proxy.no_endpoints", StatusWarn,
		"10 Service ports: ns2/svc2:p80 NodePort 3001/TCP drop, default/nosvc:http NodePort 30081/TCP reject, ns2/svc2:p80 1.2.3.4:80/TCP drop, kube-system/dns:dns 10.96.0.10:53/UDP drop, default/nosvc:http 10.96.0.11:80/TCP reject and 5 more")
	it := r.Item("kube_proxy.no_endpoints")
	for _, w := range []string{"nf_tables netlink: table ip filter", "table ip6 kube-proxy", "legacy filter table", "legacy ip6 filter table"} {
		if !strings.Contains(it.Source, w) {
			t.Errorf("source %q lacks %q", it.Source, w)
		}
	}
	for _, w := range []string{"iptables-save -t filter", "iptables-legacy-save -t filter", "ip6tables-legacy-save -t filter", "nft list map ip6 kube-proxy no-endpoint-services"} {
		if !strings.Contains(it.Check, w) {
			t.Errorf("check %q lacks %q", it.Check, w)
		}
	}
	if got := want[0].String(); got != "ns2/svc2:p80 NodePort 3001/TCP drop" {
		t.Errorf("String() = %q", got)
	}
	if got := want[8].String(); got != "ns7/dns [fd00::41]:53/UDP reject" {
		t.Errorf("String() = %q", got)
	}
	roundTrip(t, r)
}

func fmtRules(rs []NoEndpointsRule) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %+v\n", r)
	}
	return b.String()
}

func TestNoEndpointsNone(t *testing.T) {
	r := collectFake(t, fstest.MapFS{}, &fakeNet{ipvsErr: ErrIPVSUnavailable, tables: []NFTable{kubeFilter}})
	wantStatus(t, r, "kube_proxy.no_endpoints", StatusInfo, "none")
	if r.KubeProxy.NoEndpoints != nil {
		t.Errorf("rules %+v", r.KubeProxy.NoEndpoints)
	}

	// The legacy filter table is read only when the kernel lists it.
	n := &fakeNet{ipvsErr: ErrIPVSUnavailable, legacyRules: map[string][]Rule{"filter": {
		{Chain: "KUBE-SERVICES", Comment: "a/b has no endpoints", Dst: vip("10.96.0.1/32"), Proto: 6, DPort: 1, Verdict: VerdictReject}}}}
	r = collectFake(t, fstest.MapFS{"proc/net/ip_tables_names": file("nat\n")}, n)
	wantStatus(t, r, "kube_proxy.no_endpoints", StatusInfo, "none")
}

func TestNoEndpointsUnreadable(t *testing.T) {
	n := &fakeNet{ipvsErr: ErrIPVSUnavailable, tables: []NFTable{kubeFilter}, rulesErr: errors.New("list nftables rules: EPERM")}
	r := collectFake(t, fstest.MapFS{}, n)
	wantStatus(t, r, "kube_proxy.no_endpoints", StatusUnknown, "unknown")
	if it := r.Item("kube_proxy.no_endpoints"); !strings.Contains(it.Source, "EPERM") {
		t.Errorf("source %q does not say why", it.Source)
	}
	r = collectFake(t, fstest.MapFS{}, &fakeNet{ipvsErr: ErrIPVSUnavailable, nftErr: errors.New("EPERM")})
	wantStatus(t, r, "kube_proxy.no_endpoints", StatusUnknown, "unknown")
}

// TestNoEndpointsBounded keeps the first MaxVirtualServices rules, as the
// IPVS virtual services are kept: a report travels in every recording.
func TestNoEndpointsBounded(t *testing.T) {
	var els []MapElement
	for i := range MaxVirtualServices + 10 {
		els = append(els, MapElement{Addr: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), Proto: 6, Port: 80,
			Comment: fmt.Sprintf("ns/s%d", i), Verdict: "goto reject-chain"})
	}
	n := &fakeNet{ipvsErr: ErrIPVSUnavailable, tables: []NFTable{{Family: "ip", Name: "kube-proxy"}},
		maps: map[string][]MapElement{"ip kube-proxy no-endpoint-services": els}}
	r := collectFake(t, fstest.MapFS{}, n)
	if got := len(r.KubeProxy.NoEndpoints); got != MaxVirtualServices {
		t.Errorf("%d rules kept, want %d", got, MaxVirtualServices)
	}
	if it := r.Item("kube_proxy.no_endpoints"); !strings.HasPrefix(it.Value, fmt.Sprintf("%d Service ports: ", MaxVirtualServices)) {
		t.Errorf("value %q", it.Value)
	}
}

func TestNamespaceName(t *testing.T) {
	for in, want := range map[string][2]string{
		"default/nosvc:http": {"default", "nosvc"},
		"default/nosvc":      {"default", "nosvc"},
		"nosvc":              {"", ""},
		"/x":                 {"", ""},
	} {
		ns, name, ok := NoEndpointsRule{Service: in}.NamespaceName()
		if ok != (want[0] != "") || (ok && (ns != want[0] || name != want[1])) {
			t.Errorf("%q: %q %q %v, want %q", in, ns, name, ok, want)
		}
	}
}

// TestNFTRule reads rules as iptables-nft 1.8.9 writes kube-proxy's
// (expressions as google/nftables decodes them from `iptables-restore`):
//
//	-A KUBE-SERVICES -d 10.96.0.11/32 -p tcp -m comment --comment "default/nosvc:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
//	-A KUBE-SERVICES -d 10.96.0.12/32 -p udp -m comment --comment "default/dns has no local endpoints" -m udp --dport 53 -j DROP
//	-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/nosvc:http has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j REJECT
func TestNFTRule(t *testing.T) {
	comment := func(s string) *expr.Match { c := xt.Comment(s); return &expr.Match{Name: "comment", Info: &c} }
	l4 := func(p byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
	}
	daddr := func(a ...byte) []expr.Any {
		return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a}}
	}
	dport := func(p uint16) []expr.Any {
		return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, p)}}
	}
	ip4proto := func(p byte) []expr.Any {
		return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
	}
	reject := &expr.Target{Name: "REJECT", Info: &xt.Unknown{3, 0, 0, 0}}
	counter := &expr.Counter{}
	for _, tc := range []struct {
		name  string
		exprs []expr.Any
		udata []byte
		want  Rule
	}{
		{"cluster IP reject", slices.Concat(l4(6), daddr(10, 96, 0, 11), []expr.Any{comment("default/nosvc:http has no endpoints")}, dport(80), []expr.Any{counter, reject}), nil,
			Rule{Chain: "C", Comment: "default/nosvc:http has no endpoints", Dst: vip("10.96.0.11/32"), Proto: 6, DPort: 80, Verdict: VerdictReject}},
		{"local drop", slices.Concat(l4(17), daddr(10, 96, 0, 12), []expr.Any{comment("default/dns has no local endpoints")}, dport(53), []expr.Any{counter, &expr.Verdict{Kind: expr.VerdictDrop}}), nil,
			Rule{Chain: "C", Comment: "default/dns has no local endpoints", Dst: vip("10.96.0.12/32"), Proto: 17, DPort: 53, Verdict: VerdictDrop}},
		{"node port", slices.Concat(l4(6), []expr.Any{comment("x has no endpoints"), &expr.Match{Name: "addrtype", Rev: 1, Info: &xt.AddrTypeV1{Dest: uint16(xt.AddrTypeLocal)}}}, dport(30080), []expr.Any{counter, reject}), nil,
			Rule{Chain: "C", Comment: "x has no endpoints", DstLocal: true, Proto: 6, DPort: 30080, Verdict: VerdictReject}},
		{"x_tables tcp match, comment in user data", slices.Concat(l4(6), daddr(10, 96, 0, 11), []expr.Any{&expr.Match{Name: "tcp", Info: &xt.Tcp{SrcPorts: [2]uint16{0, 0xffff}, DstPorts: [2]uint16{80, 80}}}, &expr.Reject{}}),
			userdata.AppendString(nil, userdata.TypeComment, "y has no endpoints"),
			Rule{Chain: "C", Comment: "y has no endpoints", Dst: vip("10.96.0.11/32"), Proto: 6, DPort: 80, Verdict: VerdictReject}},
		{"port range", slices.Concat(l4(6), []expr.Any{&expr.Match{Name: "udp", Info: &xt.Udp{SrcPorts: [2]uint16{0, 0xffff}, DstPorts: [2]uint16{80, 90}}}, reject}), nil,
			Rule{Chain: "C", Proto: 6, Verdict: VerdictReject, Other: true}},
		{"inverted address", slices.Concat(l4(6), []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{10, 0, 0, 1}}, reject}), nil,
			Rule{Chain: "C", Proto: 6, Verdict: VerdictReject, Other: true}},
		{"source address", slices.Concat([]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 0, 0, 1}}}, []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "KUBE-SVC-X"}}), nil,
			Rule{Chain: "C", Verdict: "jump KUBE-SVC-X", Other: true}},
		{"conntrack match", []expr.Any{&expr.Match{Name: "conntrack", Rev: 3, Info: &xt.ConntrackMtinfo3{}}, &expr.Verdict{Kind: expr.VerdictGoto, Chain: "X"}}, nil,
			Rule{Chain: "C", Verdict: "goto X", Other: true}},
		{"addrtype src", []expr.Any{&expr.Match{Name: "addrtype", Info: &xt.AddrType{Source: 4}}, &expr.Target{Name: "MARK"}}, nil,
			Rule{Chain: "C", Verdict: "MARK", Other: true}},
		// iptables-nft 1.8.11 (Debian trixie; `nft --debug=netlink` of its
		// `iptables-restore`): -p tcp is the IPv4 header's protocol field.
		{"1.8.11 cluster IP reject", slices.Concat(daddr(10, 96, 0, 11), ip4proto(6), []expr.Any{comment("default/nosvc:http has no endpoints")}, dport(80), []expr.Any{counter, reject}), nil,
			Rule{Chain: "C", Comment: "default/nosvc:http has no endpoints", Dst: vip("10.96.0.11/32"), Proto: 6, DPort: 80, Verdict: VerdictReject}},
		{"1.8.11 node port", slices.Concat(ip4proto(6), []expr.Any{comment("x has no endpoints"), &expr.Match{Name: "addrtype", Rev: 1, Info: &xt.AddrTypeV1{Dest: uint16(xt.AddrTypeLocal)}}}, dport(30081), []expr.Any{counter, reject}), nil,
			Rule{Chain: "C", Comment: "x has no endpoints", DstLocal: true, Proto: 6, DPort: 30081, Verdict: VerdictReject}},
		{"IPv4 header's TTL", slices.Concat([]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}}}, dport(80), []expr.Any{reject}), nil,
			Rule{Chain: "C", DPort: 80, Verdict: VerdictReject, Other: true}},
	} {
		if got := nftRule("C", nftables.TableFamilyIPv4, tc.exprs, tc.udata); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	ip6 := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: netip.MustParseAddr("fd00::1").AsSlice()}, reject}
	if got := nftRule("C", nftables.TableFamilyIPv6, ip6, nil); got.Dst != vip("fd00::1/128") || got.Other {
		t.Errorf("ip6 rule %+v", got)
	}
	// Offset 9 of an IPv6 header is inside the source address.
	if got := nftRule("C", nftables.TableFamilyIPv6, slices.Concat(ip4proto(6), []expr.Any{reject}), nil); got.Proto != 0 || !got.Other {
		t.Errorf("ip6 rule with a byte of the source address %+v", got)
	}
}

// TestServiceKey reads the keys and verdicts of kube-proxy's maps as the
// kernel returns them (bytes seen from a map the topology wrote).
func TestServiceKey(t *testing.T) {
	m, ok := serviceKey([]byte{10, 96, 0, 11, 6, 0, 0, 0, 0, 80, 0, 0})
	if !ok || m.Addr != netip.MustParseAddr("10.96.0.11") || m.Proto != 6 || m.Port != 80 {
		t.Errorf("ipv4 key: %+v %v", m, ok)
	}
	m, ok = serviceKey([]byte{6, 0, 0, 0, 117, 129, 0, 0})
	if !ok || m.Addr.IsValid() || m.Proto != 6 || m.Port != 30081 {
		t.Errorf("nodeport key: %+v %v", m, ok)
	}
	key6 := append(netip.MustParseAddr("fd00::1").AsSlice(), 17, 0, 0, 0, 0, 53, 0, 0)
	if m, ok = serviceKey(key6); !ok || m.Addr != netip.MustParseAddr("fd00::1") || m.Port != 53 {
		t.Errorf("ipv6 key: %+v %v", m, ok)
	}
	if _, ok := serviceKey([]byte{1, 2, 3}); ok {
		t.Error("a 3-byte key read")
	}

	gotoReject := []byte{8, 0, 1, 0, 255, 255, 255, 252, 17, 0, 2, 0, 'r', 'e', 'j', 'e', 'c', 't', '-', 'c', 'h', 'a', 'i', 'n', 0, 0, 0, 0}
	if v, ok := dataVerdict(gotoReject); !ok || nftVerdict(v) != "goto reject-chain" {
		t.Errorf("verdict %+v %v", v, ok)
	}
	if v, ok := dataVerdict([]byte{8, 0, 1, 0, 0, 0, 0, 0}); !ok || nftVerdict(v) != VerdictDrop {
		t.Errorf("drop verdict %+v %v", v, ok)
	}
	for _, bad := range [][]byte{nil, {8, 0, 1, 0, 0}, {3, 0, 1, 0}, {6, 0, 1, 0, 0, 0}} {
		if v, ok := dataVerdict(bad); ok {
			t.Errorf("% x read as %+v", bad, v)
		}
	}
}

// xtBlob is an xt_entry_match or xt_entry_target: size, name, revision,
// data padded to 8 bytes.
func xtBlob(name string, rev byte, data []byte) []byte {
	size := xtTargetDataOff + (len(data)+7)&^7
	b := make([]byte, size)
	binary.NativeEndian.PutUint16(b, uint16(size))
	copy(b[xtTargetNameOff:], name)
	b[xtTargetNameOff+xtTargetNameLen] = rev
	copy(b[xtTargetDataOff:], data)
	return b
}

// iptRule builds an entry of the family: -d dst (a single address, or
// none), -p proto, the matches and the target.
func iptRule(fam xtFamily, dst string, proto uint16, target []byte, matches ...[]byte) []byte {
	e := make([]byte, fam.entrySize)
	if dst != "" {
		a := netip.MustParseAddr(dst).AsSlice()
		copy(e[fam.dst:], a)
		copy(e[fam.dmsk:], bytes.Repeat([]byte{255}, len(a)))
	}
	binary.NativeEndian.PutUint16(e[fam.proto:], proto)
	for _, m := range matches {
		e = append(e, m...)
	}
	binary.NativeEndian.PutUint16(e[fam.targetOff:], uint16(len(e)))
	e = append(e, target...)
	binary.NativeEndian.PutUint16(e[fam.nextOff:], uint16(len(e)))
	return e
}

func TestParseIPTRules(t *testing.T) {
	for _, fam := range xtFamilies {
		t.Run(fam.name, func(t *testing.T) { parseRules(t, fam) })
	}
}

// parseRules parses a table of kube-proxy's rules for Services without
// endpoints in the family's layout, with IPv4 or IPv6 Service addresses.
func parseRules(t *testing.T, fam xtFamily) {
	vip := func(s string) netip.Prefix { return vip(s) }
	addr := func(v4 string) string { return v4 }
	if fam.name == "ip6" {
		addr = func(v4 string) string { return "fd00:96::" + strings.TrimPrefix(v4, "10.96.0.") }
		vip = func(s string) netip.Prefix {
			return netip.PrefixFrom(netip.MustParseAddr(addr(strings.TrimSuffix(s, "/32"))), 128)
		}
	}
	u16s := func(vs ...uint16) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.NativeEndian.AppendUint16(b, v)
		}
		return b
	}
	comment := func(s string) []byte { return xtBlob("comment", 0, append([]byte(s), make([]byte, 256-len(s))...)) }
	tcp := func(dport uint16) []byte { return xtBlob("tcp", 0, append(u16s(0, 0xffff, dport, dport), 0, 0, 0, 0)) }
	udp := func(dport uint16) []byte { return xtBlob("udp", 0, append(u16s(0, 0xffff, dport, dport), 0)) }
	sctp := make([]byte, xtSCTPSize)
	copy(sctp, u16s(9000, 9000, 0, 0xffff))
	binary.NativeEndian.PutUint32(sctp[xtSCTPFlags:], 2) // XT_SCTP_DEST_PORTS
	local := xtBlob("addrtype", 1, append(u16s(0, uint16(xt.AddrTypeLocal)), 0, 0, 0, 0))
	reject := xtBlob("REJECT", 0, []byte{3, 0, 0, 0})
	standard := func(v int32) []byte { return xtBlob("", 0, binary.NativeEndian.AppendUint32(nil, uint32(v))) }

	var blob []byte
	for _, e := range [][]byte{
		iptRule(fam, "", 0, standard(xtVerdictAcc)), // INPUT's policy
		xtEntry(fam, "ERROR", "KUBE-SERVICES"),
		iptRule(fam, addr("10.96.0.11"), 6, reject, comment("default/nosvc:http has no endpoints"), tcp(80)),
		iptRule(fam, addr("10.96.0.12"), 17, standard(xtVerdictDrop), comment("default/dns has no local endpoints"), udp(53)),
		iptRule(fam, addr("10.96.0.13"), 132, reject, comment("default/s has no endpoints"), xtBlob("sctp", 0, sctp)),
		iptRule(fam, addr("10.96.0.14"), 6, standard(1234), xtBlob("conntrack", 3, make([]byte, 8))),
		xtEntry(fam, "ERROR", "KUBE-EXTERNAL-SERVICES"),
		iptRule(fam, "", 6, reject, comment("default/nosvc:http has no endpoints"), local, tcp(30081)),
		iptRule(fam, "", 6, standard(xtReturn)),
		xtEntry(fam, "ERROR", "ERROR"),
	} {
		blob = append(blob, e...)
	}
	got, err := fam.parseRules(blob)
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Verdict: VerdictAccept},
		{Chain: "KUBE-SERVICES", Comment: "default/nosvc:http has no endpoints", Dst: vip("10.96.0.11/32"), Proto: 6, DPort: 80, Verdict: VerdictReject},
		{Chain: "KUBE-SERVICES", Comment: "default/dns has no local endpoints", Dst: vip("10.96.0.12/32"), Proto: 17, DPort: 53, Verdict: VerdictDrop},
		{Chain: "KUBE-SERVICES", Comment: "default/s has no endpoints", Dst: vip("10.96.0.13/32"), Proto: 132, DPort: 9000, Verdict: VerdictReject},
		{Chain: "KUBE-SERVICES", Dst: vip("10.96.0.14/32"), Proto: 6, Verdict: "jump", Other: true},
		{Chain: "KUBE-EXTERNAL-SERVICES", Comment: "default/nosvc:http has no endpoints", DstLocal: true, Proto: 6, DPort: 30081, Verdict: VerdictReject},
		{Chain: "KUBE-EXTERNAL-SERVICES", Proto: 6, Verdict: "return"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rules\n%+v\nwant\n%+v", got, want)
	}

	// A source address, an interface or an inversion is more than
	// kube-proxy's rules match on.
	src := iptRule(fam, addr("10.96.0.11"), 6, reject, tcp(80))
	copy(src[fam.smsk:], []byte{255, 0, 0, 0})
	iface := iptRule(fam, addr("10.96.0.11"), 6, reject, tcp(80))
	copy(iface[fam.ifaces:], "eth0")
	inv := iptRule(fam, addr("10.96.0.11"), 6, reject, tcp(80))
	inv[fam.invflags] = 0x08 // IPT_INV_DSTIP, IP6T_INV_DSTIP
	badMatch := iptRule(fam, addr("10.96.0.11"), 6, reject, tcp(80))
	binary.NativeEndian.PutUint16(badMatch[fam.entrySize:], 8)
	for name, e := range map[string][]byte{"source": src, "interface": iface, "inverted": inv, "bad match size": badMatch} {
		rs, err := fam.parseRules(e)
		if err != nil || len(rs) != 1 || !rs[0].Other {
			t.Errorf("%s: %+v, %v; want one rule with Other", name, rs, err)
		}
	}
	if _, err := fam.parseRules(blob[:len(blob)-5]); err == nil {
		t.Error("truncated blob parsed")
	}
}
