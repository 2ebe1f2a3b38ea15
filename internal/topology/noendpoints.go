package topology

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// KubeProxyMode is how Options.NoEndpoints writes the Service without
// endpoints: as kube-proxy's iptables or its nftables mode does.
type KubeProxyMode int

const (
	// NoService adds no Service without endpoints.
	NoService KubeProxyMode = iota
	// KubeProxyIPTables writes kube-proxy iptables mode's REJECT rules in
	// the filter table (iptables-nft): KUBE-SERVICES for the ClusterIP,
	// KUBE-EXTERNAL-SERVICES for the NodePort, jumped to from INPUT,
	// FORWARD and OUTPUT for new connections.
	KubeProxyIPTables
	// KubeProxyNFTables writes kube-proxy nftables mode's table "ip
	// kube-proxy" as far as Services without endpoints go: the
	// no-endpoint-services and no-endpoint-nodeports verdict maps, their
	// check chains on the filter hooks and reject-chain.
	KubeProxyNFTables
)

// String names the mode as kube-proxy's --proxy-mode does; "none" for
// NoService.
func (m KubeProxyMode) String() string {
	switch m {
	case KubeProxyIPTables:
		return "iptables"
	case KubeProxyNFTables:
		return "nftables"
	}
	return "none"
}

// The Service without endpoints (Options.NoEndpoints).
const (
	// NoEndpointsService is its Service port as kube-proxy names it.
	NoEndpointsService = "default/nosvc:http"
	// NoEndpointsNodePort is its NodePort.
	NoEndpointsNodePort = 30081
)

var (
	// NoEndpointsAddr is its ClusterIP and port.
	NoEndpointsAddr = netip.MustParseAddrPort("10.96.0.11:80")
	// ServiceCIDR holds the ClusterIPs. Nodes route it through eth0 when
	// Options.NoEndpoints is set, as a default route would: a packet to a
	// ClusterIP that no rule DNATs is routed, then rejected in FORWARD.
	ServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")
)

// noEndpointsFilter is what kube-proxy's iptables mode adds to the filter
// table for the Service without endpoints: its chains and its jumps
// (prepended, before flannel's rules) and the REJECT rules, as
// iptables-save prints them.
func noEndpointsFilter() []string {
	svc, vip, port := NoEndpointsService, NoEndpointsAddr.Addr().String()+"/32", NoEndpointsAddr.Port()
	return []string{
		":KUBE-SERVICES - [0:0]",
		":KUBE-EXTERNAL-SERVICES - [0:0]",
		`-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES`,
		`-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES`,
		`-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		fmt.Sprintf(`-A KUBE-SERVICES -d %s -p tcp -m comment --comment "%s has no endpoints" -m tcp --dport %d -j REJECT --reject-with icmp-port-unreachable`, vip, svc, port),
		fmt.Sprintf(`-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "%s has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport %d -j REJECT --reject-with icmp-port-unreachable`, svc, NoEndpointsNodePort),
	}
}

// Names in kube-proxy's nftables table (pkg/proxy/nftables/proxier.go).
const (
	nftKubeProxyTable   = "kube-proxy"
	nftNoEndpointSvcs   = "no-endpoint-services"
	nftNoEndpointNPs    = "no-endpoint-nodeports"
	nftNodePortIPs      = "nodeport-ips"
	nftRejectChain      = "reject-chain"
	nftSvcEndpointsChk  = "service-endpoints-check"
	nftNodePortEndpChk  = "nodeport-endpoints-check"
	nftICMPPortUnreach  = 3 // ICMP_PORT_UNREACH
	nftRegConcatSecond  = 9 // NFT_REG32_01: the second field of a key that starts in register 1
	nftRegConcatThird   = 10
	nftTransportDPort   = 2 // offset of the destination port in TCP, UDP and SCTP
	nftIPv4DaddrOffset  = 16
	nftIPv4AddrLen      = 4
	nftConcatFieldBytes = 4 // each field of a concatenated key fills a 32-bit register
)

// addNoEndpointsNFT writes, in the node's namespace over nf_tables
// netlink, what kube-proxy's nftables mode writes for the Service without
// endpoints (see KubeProxyNFTables); rules as `nft list table ip
// kube-proxy` would print them:
//
//	chain filter-input { type filter hook input priority 0; ct state new jump nodeport-endpoints-check; ct state new jump service-endpoints-check }
//	chain filter-forward { type filter hook forward priority 0; ct state new jump service-endpoints-check }
//	chain filter-output { type filter hook output priority 0; ct state new jump service-endpoints-check }
//	chain service-endpoints-check { ip daddr . meta l4proto . th dport vmap @no-endpoint-services }
//	chain nodeport-endpoints-check { ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports }
//	chain reject-chain { reject }
func (n *Node) addNoEndpointsNFT() error {
	c, err := nftables.New(nftables.WithNetNSFd(int(n.ns)))
	if err != nil {
		return fmt.Errorf("open nftables netlink: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: nftKubeProxyTable})

	svcKey, err := nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	if err != nil {
		return err
	}
	npKey, err := nftables.ConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	if err != nil {
		return err
	}
	reject := c.AddChain(&nftables.Chain{Name: nftRejectChain, Table: t})
	c.AddRule(&nftables.Rule{Table: t, Chain: reject, Exprs: []expr.Any{
		&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: nftICMPPortUnreach},
	}})
	goReject := &expr.Verdict{Kind: expr.VerdictGoto, Chain: nftRejectChain}

	svcs := &nftables.Set{Table: t, Name: nftNoEndpointSvcs, IsMap: true, Concatenation: true, KeyType: svcKey, DataType: nftables.TypeVerdict,
		Comment: "vmap to drop or reject packets to services with no endpoints"}
	if err := c.AddSet(svcs, []nftables.SetElement{{Key: serviceKey(NoEndpointsAddr.Addr(), unix.IPPROTO_TCP, NoEndpointsAddr.Port()),
		VerdictData: goReject, Comment: NoEndpointsService}}); err != nil {
		return fmt.Errorf("add nftables map %s: %w", nftNoEndpointSvcs, err)
	}
	nps := &nftables.Set{Table: t, Name: nftNoEndpointNPs, IsMap: true, Concatenation: true, KeyType: npKey, DataType: nftables.TypeVerdict,
		Comment: "vmap to drop or reject packets to service nodeports with no endpoints"}
	if err := c.AddSet(nps, []nftables.SetElement{{Key: serviceKey(netip.Addr{}, unix.IPPROTO_TCP, NoEndpointsNodePort),
		VerdictData: goReject, Comment: NoEndpointsService}}); err != nil {
		return fmt.Errorf("add nftables map %s: %w", nftNoEndpointNPs, err)
	}
	ips := &nftables.Set{Table: t, Name: nftNodePortIPs, KeyType: nftables.TypeIPAddr, Comment: "IPs that accept NodePort traffic"}
	if err := c.AddSet(ips, []nftables.SetElement{{Key: n.UnderlayIP.AsSlice()}}); err != nil {
		return fmt.Errorf("add nftables set %s: %w", nftNodePortIPs, err)
	}

	daddr := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: nftIPv4DaddrOffset, Len: nftIPv4AddrLen}
	svcCheck := c.AddChain(&nftables.Chain{Name: nftSvcEndpointsChk, Table: t})
	c.AddRule(&nftables.Rule{Table: t, Chain: svcCheck, Exprs: []expr.Any{
		daddr,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: nftRegConcatSecond},
		&expr.Payload{DestRegister: nftRegConcatThird, Base: expr.PayloadBaseTransportHeader, Offset: nftTransportDPort, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: svcs.Name, SetID: svcs.ID, IsDestRegSet: true},
	}})
	npCheck := c.AddChain(&nftables.Chain{Name: nftNodePortEndpChk, Table: t})
	c.AddRule(&nftables.Rule{Table: t, Chain: npCheck, Exprs: []expr.Any{
		daddr,
		&expr.Lookup{SourceRegister: 1, SetName: ips.Name, SetID: ips.ID},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Payload{DestRegister: nftRegConcatSecond, Base: expr.PayloadBaseTransportHeader, Offset: nftTransportDPort, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: nps.Name, SetID: nps.ID, IsDestRegSet: true},
	}})

	for _, base := range []struct {
		name  string
		hook  *nftables.ChainHook
		jumps []string
	}{
		{"filter-input", nftables.ChainHookInput, []string{nftNodePortEndpChk, nftSvcEndpointsChk}},
		{"filter-forward", nftables.ChainHookForward, []string{nftSvcEndpointsChk}},
		{"filter-output", nftables.ChainHookOutput, []string{nftSvcEndpointsChk}},
	} {
		ch := c.AddChain(&nftables.Chain{Name: base.name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: base.hook, Priority: nftables.ChainPriorityFilter})
		for _, j := range base.jumps {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ctStateNewJump(j)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write nftables table ip %s: %w", nftKubeProxyTable, err)
	}
	return nil
}

// ctStateNewJump is `ct state new jump CHAIN`.
func ctStateNewJump(chain string) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chain},
	}
}

// serviceKey is a key of kube-proxy's service maps: "ipv4_addr .
// inet_proto . inet_service", or without the address when addr is
// invalid. Each field fills whole 32-bit registers.
func serviceKey(addr netip.Addr, proto uint8, port uint16) []byte {
	var key []byte
	if addr.IsValid() {
		key = append(key, addr.AsSlice()...)
	}
	field := make([]byte, 2*nftConcatFieldBytes)
	field[0] = proto
	binary.BigEndian.PutUint16(field[nftConcatFieldBytes:], port)
	return append(key, field...)
}

// addNoEndpoints adds the Service without endpoints in mode: the route for
// ServiceCIDR, and in nftables mode the kube-proxy table (iptables mode's
// rules come with the node's iptables-restore input).
func (n *Node) addNoEndpoints(mode KubeProxyMode) error {
	if mode == NoService {
		return nil
	}
	h, err := n.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	eth0, err := h.LinkByName(UnderlayDev)
	if err != nil {
		return fmt.Errorf("find %s: %w", UnderlayDev, err)
	}
	route := &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: prefixNet(ServiceCIDR), Scope: netlink.SCOPE_LINK}
	if err := h.RouteAdd(route); err != nil {
		return fmt.Errorf("add route %s dev %s: %w", ServiceCIDR, UnderlayDev, err)
	}
	if mode == KubeProxyNFTables {
		return n.addNoEndpointsNFT()
	}
	return nil
}
