package topology

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"
	"github.com/vishvananda/netlink"
)

// kube-proxy IPVS mode (Options.IPVS): the ClusterIP on a kube-ipvs0 dummy
// device on every node, an IPVS virtual service with round-robin over two
// real servers, one per node, and kube-proxy's masquerade rules.
const (
	IPVSDev        = "kube-ipvs0"   // kube-proxy's dummy device holding the service addresses
	PodServerLocal = "server-local" // on node1: the service's second endpoint in IPVS mode
	IPVSScheduler  = "rr"
)

var (
	ServerLocalIP = netip.MustParseAddr("10.244.1.8")
	// ServerLocalAddr is the echo port of the server-local pod.
	ServerLocalAddr = netip.AddrPortFrom(ServerLocalIP, ServerPort)
	// IPVSRealServers are the service's real servers in IPVS mode.
	IPVSRealServers = []netip.AddrPort{ServerAddr, ServerLocalAddr}
)

// ipvsPodSpecs are the pods added in IPVS mode.
var ipvsPodSpecs = []podSpec{{name: PodServerLocal, node: Node1, ip: ServerLocalIP}}

// ErrNoIPVS is returned by Build, wrapped, when the kernel cannot give the
// IPVS mode what it needs (the ip_vs module, dummy devices).
var ErrNoIPVS = errors.New("IPVS mode not available on this kernel")

// setupIPVS does on a node what kube-proxy in IPVS mode does: kube-ipvs0
// (a dummy device, left down as kube-proxy leaves it) with the ClusterIP,
// the virtual service with its real servers (NAT forwarding), conntrack for
// IPVS connections, and the iptables masquerade rules.
func (n *Node) setupIPVS(ctx context.Context) error {
	h, err := n.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	dummy := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: IPVSDev}}
	if err := h.LinkAdd(dummy); err != nil {
		return fmt.Errorf("%w: add dummy device %s: %v", ErrNoIPVS, IPVSDev, err)
	}
	if err := n.AddIPVSService(ClusterIP, IPVSMasq, IPVSRealServers...); err != nil {
		return err
	}
	// kube-proxy's sysctls for IPVS mode; vs.conntrack exists once ip_vs is
	// loaded.
	for k, v := range map[string]string{"net.ipv4.vs.conntrack": "1", "net.ipv4.vs.conn_reuse_mode": "0"} {
		if err := n.SetSysctl(k, v); err != nil {
			return err
		}
	}
	if _, err := runInNetns(ctx, n.NetnsName, []byte(ipvsIPTablesRules()), "iptables-restore"); err != nil {
		return fmt.Errorf("load iptables rules: %w", err)
	}
	return nil
}

// IPVS forwarding methods (ipvsadm -m, -g, -i). kube-proxy uses masq.
const (
	IPVSMasq   = ipvs.Masquerade
	IPVSRoute  = ipvs.DirectRoute
	IPVSTunnel = ipvs.Tunnel
)

// AddIPVSService does on a node in IPVS mode what kube-proxy does for a
// Service: the service address on kube-ipvs0 and an IPVS virtual service
// (TCP, round-robin) with the given real servers, forwarded by method;
// none for a Service without ready endpoints.
func (n *Node) AddIPVSService(svc netip.AddrPort, method ipvs.ForwardType, reals ...netip.AddrPort) error {
	h, err := n.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	dummy, err := h.LinkByName(IPVSDev)
	if err != nil {
		return fmt.Errorf("find %s on %s: %w", IPVSDev, n.Name, err)
	}
	if err := addAddr(h, dummy, netip.PrefixFrom(svc.Addr(), 32)); err != nil {
		return err
	}
	vs := ipvs.Service{
		Address:   svc.Addr(),
		Port:      svc.Port(),
		Netmask:   netmask.MaskFrom(32, 32),
		Family:    ipvs.INET,
		Protocol:  ipvs.TCP,
		Scheduler: IPVSScheduler,
	}
	return n.Do(func() error {
		// The generic netlink socket belongs to this namespace.
		c, err := ipvs.New()
		if err != nil {
			return fmt.Errorf("%w: open IPVS netlink: %v", ErrNoIPVS, err)
		}
		if err := c.CreateService(vs); err != nil {
			return fmt.Errorf("create IPVS service %s: %w", svc, err)
		}
		for _, rs := range reals {
			d := ipvs.Destination{
				Address:   rs.Addr(),
				Port:      rs.Port(),
				Family:    ipvs.INET,
				FwdMethod: method,
				Weight:    1,
			}
			if err := c.CreateDestination(vs, d); err != nil {
				return fmt.Errorf("add IPVS real server %s: %w", rs, err)
			}
		}
		return nil
	})
}

// ipvsIPTablesRules is the iptables-restore input for a node in IPVS mode:
// kube-proxy's masquerade chains (the ipset KUBE-CLUSTER-IP match written
// as the one address and port) and flannel's rules.
func ipvsIPTablesRules() string {
	cidr := ClusterCIDR.String()
	vip := ClusterIP.Addr().String() + "/32"
	port := fmt.Sprint(ClusterIP.Port())
	return nodeRules(nil, nil,
		fmt.Sprintf(`-A KUBE-SERVICES ! -s %s -d %s -p tcp -m tcp --dport %s -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -j KUBE-MARK-MASQ`, cidr, vip, port),
		fmt.Sprintf(`-A KUBE-SERVICES -d %s -p tcp -m tcp --dport %s -j ACCEPT`, vip, port),
	)
}

// IPVSConn is one entry of the node's IPVS connection table.
type IPVSConn struct {
	Proto   string
	Client  netip.AddrPort
	Virtual netip.AddrPort
	Real    netip.AddrPort
	State   string
}

// IPVSConns reads the node's IPVS connection table (/proc/net/ip_vs_conn,
// what `ipvsadm -Lnc` shows): the connections the kernel made.
func (n *Node) IPVSConns() ([]IPVSConn, error) {
	var b []byte
	err := n.Do(func() (err error) {
		// thread-self: /proc/net follows the thread's namespace only there.
		b, err = os.ReadFile("/proc/thread-self/net/ip_vs_conn")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read IPVS connections of %s: %w", n.Name, err)
	}
	return parseIPVSConns(b)
}

// parseIPVSConns parses /proc/net/ip_vs_conn:
//
//	Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
//	TCP 0AF40105 9C4C 0A60000A 0050 0AF40207 1F90 SYN_RECV         59
func parseIPVSConns(b []byte) ([]IPVSConn, error) {
	var conns []IPVSConn
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] == "Pro" {
			continue
		}
		var ap [3]netip.AddrPort
		for i := range ap {
			a, err := hexAddrPort(f[1+2*i], f[2+2*i])
			if err != nil {
				return nil, fmt.Errorf("parse IPVS connection %q: %w", sc.Text(), err)
			}
			ap[i] = a
		}
		conns = append(conns, IPVSConn{Proto: f[0], Client: ap[0], Virtual: ap[1], Real: ap[2], State: f[7]})
	}
	return conns, sc.Err()
}

func hexAddrPort(addr, port string) (netip.AddrPort, error) {
	a, err := hex.DecodeString(addr)
	if err != nil || len(a) != 4 {
		return netip.AddrPort{}, fmt.Errorf("address %q is not 8 hex digits", addr)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", port, err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a)), uint16(p)), nil
}
