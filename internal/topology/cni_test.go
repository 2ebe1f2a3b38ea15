package topology

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// The other CNIs: their tunnel device, Calico's routed veths (no bridge,
// proxy ARP, /32 routes, 169.254.1.1 as the pods' gateway), and traffic
// across nodes, on one node, and from a hostNetwork pod.
func TestBuildCNIs(t *testing.T) {
	for _, tt := range []struct {
		cni  CNI
		kind string // the tunnel device's link type
	}{
		{CNICalicoVXLAN, "vxlan"},
		{CNICalicoIPIP, "ipip"},
		{CNIGeneve, "geneve"},
	} {
		t.Run(tt.cni.String(), func(t *testing.T) {
			testutil.RequireRoot(t)
			c := newCluster(t, Options{CNI: tt.cni})
			for _, n := range c.Nodes {
				h, err := n.NewHandle()
				if err != nil {
					t.Fatal(err)
				}
				defer h.Close()
				if n.TunnelDev != tt.cni.TunnelDev() {
					t.Errorf("%s tunnel device %q, want %q", n.Name, n.TunnelDev, tt.cni.TunnelDev())
				}
				tun := mustLink(t, h, n.TunnelDev)
				checkAddr(t, h, n.TunnelDev, n.VXLANIP.String()+"/32")
				if tun.Type() != tt.kind {
					t.Errorf("%s %s: type %s, want %s", n.Name, n.TunnelDev, tun.Type(), tt.kind)
				}
				switch l := tun.(type) {
				case *netlink.Vxlan:
					if l.VxlanId != CalicoVXLANID || l.Port != CalicoVXLANPort {
						t.Errorf("%s: vni %d port %d", n.TunnelDev, l.VxlanId, l.Port)
					}
				case *netlink.Geneve:
					if l.ID != GeneveID || (l.Dport != 0 && l.Dport != GenevePort) {
						t.Errorf("%s: vni %d port %d", n.TunnelDev, l.ID, l.Dport)
					}
				}
				_, err = h.LinkByName(BridgeDev)
				if hasBridge := err == nil; hasBridge == tt.cni.Routed() {
					t.Errorf("%s: %s there %v with routed veths %v", n.Name, BridgeDev, hasBridge, tt.cni.Routed())
				}
				if !tt.cni.Routed() {
					continue
				}
				for _, p := range n.Pods {
					if !regexp.MustCompile(`^cali[0-9a-f]{11}$`).MatchString(p.HostVeth) {
						t.Errorf("host veth name %q", p.HostVeth)
					}
					hv := mustLink(t, h, p.HostVeth)
					if hv.Attrs().MasterIndex != 0 {
						t.Errorf("%s has a master", p.HostVeth)
					}
					if v, err := n.Sysctl("net.ipv4.conf." + p.HostVeth + ".proxy_arp"); err != nil || v != "1" {
						t.Errorf("%s proxy_arp %q, %v", p.HostVeth, v, err)
					}
					routes, err := h.RouteList(hv, unix.AF_INET)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
						return r.Dst != nil && r.Dst.IP.Equal(net.IP(p.IP.AsSlice())) && r.Dst.Mask.String() == net.CIDRMask(32, 32).String()
					}) {
						t.Errorf("no /32 route to %s via %s: %+v", p.IP, p.HostVeth, routes)
					}
				}
			}
			if tt.cni.Routed() {
				for _, p := range c.Pods {
					h, err := p.NewHandle()
					if err != nil {
						t.Fatal(err)
					}
					defer h.Close()
					checkAddr(t, h, UnderlayDev, p.IP.String()+"/32")
					routes, err := h.RouteList(mustLink(t, h, UnderlayDev), unix.AF_INET)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
						return (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(net.IP(CalicoGateway.AsSlice()))
					}) {
						t.Errorf("pod %s: no default route via %s: %+v", p.Name, CalicoGateway, routes)
					}
				}
			}

			ctx := context.Background()
			srv := startEcho(t, c.Pod(PodServer))
			startEcho(t, c.Pod(PodPeer))
			for _, x := range []struct {
				name string
				from *Pod
				to   string
				want string
			}{
				{"cluster IP across nodes", c.Pod(PodClient), ClusterIP.String(), "server: x"},
				{"pod IP across nodes", c.Pod(PodClient), srv.Addr.String(), "server: x"},
				{"same node", c.Pod(PodClient), PeerAddr.String(), "peer: x"},
				{"hostNetwork pod to a pod on the other node", c.Node(Node1).HostNetworkPod(), srv.Addr.String(), "server: x"},
			} {
				reply, err := TCPExchange(ctx, x.from, netip.MustParseAddrPort(x.to), "x")
				if err != nil || reply != x.want {
					t.Errorf("%s: reply %q, %v; want %q", x.name, reply, err, x.want)
				}
			}
		})
	}
}
