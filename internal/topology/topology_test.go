package topology

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

func newCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Build(context.Background(), opts)
	switch {
	case errors.Is(err, ErrNoIPIP):
		testutil.Missing(t, testutil.IPIP, err)
	case errors.Is(err, ErrNoGeneve):
		testutil.Missing(t, testutil.Geneve, err)
	case err != nil:
		t.Fatalf("build cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	return c
}

func TestBuild(t *testing.T) {
	testutil.RequireRoot(t)
	c := newCluster(t, Options{})
	if !regexp.MustCompile(`^pt[0-9a-f]{4}$`).MatchString(c.Prefix) {
		t.Errorf("default prefix %q, want pt + 4 hex", c.Prefix)
	}
	for _, want := range []string{"-node1", "-node2", "-client", "-peer", "-server"} {
		if _, err := os.Stat(netnsDir + "/" + c.Prefix + want); err != nil {
			t.Errorf("netns %s%s: %v", c.Prefix, want, err)
		}
	}

	t.Run("nodes", func(t *testing.T) {
		for _, n := range c.Nodes {
			h, err := n.NewHandle()
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			checkAddr(t, h, "lo", "127.0.0.1/8")
			checkAddr(t, h, UnderlayDev, n.UnderlayIP.String()+"/24")
			checkAddr(t, h, BridgeDev, n.BridgeIP.String()+"/24")
			checkAddr(t, h, VXLANDev, n.VXLANIP.String()+"/32")

			br := mustLink(t, h, BridgeDev)
			if br.Type() != "bridge" || br.Attrs().MTU != PodMTU {
				t.Errorf("%s %s: type %s mtu %d", n.Name, BridgeDev, br.Type(), br.Attrs().MTU)
			}
			vx, ok := mustLink(t, h, VXLANDev).(*netlink.Vxlan)
			if !ok {
				t.Fatalf("%s %s is not vxlan", n.Name, VXLANDev)
			}
			eth0 := mustLink(t, h, UnderlayDev)
			if vx.VxlanId != VXLANID || vx.Port != VXLANPort || vx.Learning || vx.MTU != PodMTU ||
				!vx.SrcAddr.Equal(net.IP(n.UnderlayIP.AsSlice())) || vx.VtepDevIndex != eth0.Attrs().Index ||
				vx.HardwareAddr.String() != n.VXLANMAC.String() {
				t.Errorf("%s %s: %+v", n.Name, VXLANDev, vx)
			}

			for _, p := range n.Pods {
				hv := mustLink(t, h, p.HostVeth)
				if !regexp.MustCompile(`^veth[0-9a-f]{8}$`).MatchString(p.HostVeth) {
					t.Errorf("host veth name %q", p.HostVeth)
				}
				if hv.Attrs().MasterIndex != br.Attrs().Index || hv.Attrs().MTU != PodMTU ||
					hv.Attrs().OperState != netlink.OperUp {
					t.Errorf("%s %s: master %d mtu %d state %s", n.Name, p.HostVeth,
						hv.Attrs().MasterIndex, hv.Attrs().MTU, hv.Attrs().OperState)
				}
			}

			peer := c.Node(Node2)
			if n == peer {
				peer = c.Node(Node1)
			}
			routes, err := h.RouteListFiltered(unix.AF_INET,
				&netlink.Route{Dst: prefixNet(peer.PodCIDR)}, netlink.RT_FILTER_DST)
			if err != nil {
				t.Fatal(err)
			}
			if len(routes) != 1 || routes[0].LinkIndex != vx.Index ||
				!routes[0].Gw.Equal(net.IP(peer.VXLANIP.AsSlice())) || routes[0].Flags&int(netlink.FLAG_ONLINK) == 0 {
				t.Errorf("%s route to %s: %+v", n.Name, peer.PodCIDR, routes)
			}
			neighs, err := h.NeighList(vx.Index, unix.AF_INET)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(neighs, func(nb netlink.Neigh) bool {
				return nb.IP.Equal(net.IP(peer.VXLANIP.AsSlice())) && nb.State == netlink.NUD_PERMANENT &&
					nb.HardwareAddr.String() == peer.VXLANMAC.String()
			}) {
				t.Errorf("%s: no permanent neighbour %s: %+v", n.Name, peer.VXLANIP, neighs)
			}
			fdb, err := h.NeighList(vx.Index, unix.AF_BRIDGE)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(fdb, func(nb netlink.Neigh) bool {
				return nb.IP.Equal(net.IP(peer.UnderlayIP.AsSlice())) && nb.HardwareAddr.String() == peer.VXLANMAC.String()
			}) {
				t.Errorf("%s: no fdb %s -> %s: %+v", n.Name, peer.VXLANMAC, peer.UnderlayIP, fdb)
			}

			for key, want := range map[string]string{
				"net.ipv4.ip_forward":                "1",
				"net.bridge.bridge-nf-call-iptables": "1",
			} {
				if got, err := n.Sysctl(key); err != nil || got != want {
					t.Errorf("%s %s = %q, %v; want %q", n.Name, key, got, err, want)
				}
			}
			// Cross-check that the sysctl write landed in the node, not in our namespace.
			out, err := n.Run(context.Background(), "sysctl", "-n", "net.ipv4.ip_forward")
			if err != nil || strings.TrimSpace(string(out)) != "1" {
				t.Errorf("%s: sysctl via ip netns exec: %q, %v", n.Name, out, err)
			}

			out, err = n.Run(context.Background(), "iptables-save")
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				"-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
				"-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
				"-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
				"-j " + ServiceChain,
				"-A " + EndpointChain + " -p tcp -m comment --comment \"" + ServicePortName + "\" -m tcp -j DNAT --to-destination 10.244.2.7:8080",
				"-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
				"-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16",
				"-A FORWARD -s 10.244.0.0/16",
			} {
				if !strings.Contains(string(out), want) {
					t.Errorf("%s iptables-save lacks %q:\n%s", n.Name, want, out)
				}
			}
		}
	})

	t.Run("pods", func(t *testing.T) {
		for _, p := range c.Pods {
			h, err := p.NewHandle()
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			checkAddr(t, h, "lo", "127.0.0.1/8")
			checkAddr(t, h, UnderlayDev, p.IP.String()+"/24")
			eth0 := mustLink(t, h, UnderlayDev)
			if eth0.Attrs().MTU != PodMTU || eth0.Attrs().OperState != netlink.OperUp {
				t.Errorf("pod %s eth0: mtu %d state %s", p.Name, eth0.Attrs().MTU, eth0.Attrs().OperState)
			}
			routes, err := h.RouteList(eth0, unix.AF_INET)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
				return (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(net.IP(p.Node.BridgeIP.AsSlice()))
			}) {
				t.Errorf("pod %s: no default route via %s: %+v", p.Name, p.Node.BridgeIP, routes)
			}
		}
	})

	ctx := context.Background()
	srv := startEcho(t, c.Pod(PodServer))
	startEcho(t, c.Pod(PodPeer))

	t.Run("cluster IP across nodes", func(t *testing.T) {
		reply, err := TCPExchange(ctx, c.Pod(PodClient), ClusterIP, "hello")
		if err != nil {
			t.Fatal(err)
		}
		if reply != "server: hello" {
			t.Errorf("reply %q, want %q", reply, "server: hello")
		}
	})
	t.Run("pod IP across nodes", func(t *testing.T) {
		reply, err := TCPExchange(ctx, c.Pod(PodClient), srv.Addr, "direct")
		if err != nil || reply != "server: direct" {
			t.Errorf("reply %q, %v", reply, err)
		}
	})
	t.Run("same node", func(t *testing.T) {
		reply, err := TCPExchange(ctx, c.Pod(PodClient), PeerAddr, "neighbour")
		if err != nil || reply != "peer: neighbour" {
			t.Errorf("reply %q, %v", reply, err)
		}
	})
	t.Run("forward drop", func(t *testing.T) {
		// Last, because it changes node1.
		n1 := c.Node(Node1)
		if err := n1.IPTables("-I", "FORWARD", "-s", ClientIP.String(), "-d", ServerIP.String(), "-j", "DROP"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if reply, err := TCPExchange(ctx, c.Pod(PodClient), ClusterIP, "dropped"); err == nil {
			t.Errorf("exchange through a DROP rule got %q", reply)
		}
		// The peer on the same node is unaffected.
		if _, err := TCPExchange(context.Background(), c.Pod(PodClient), PeerAddr, "still"); err != nil {
			t.Error(err)
		}
	})
}

func startEcho(t *testing.T, p *Pod) *EchoServer {
	t.Helper()
	s, err := StartEchoServer(context.Background(), p, ServerPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func checkAddr(t *testing.T, h *netlink.Handle, dev, cidr string) {
	t.Helper()
	l := mustLink(t, h, dev)
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s is down", dev)
	}
	addrs, err := h.AddrList(l, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == cidr {
			return
		}
	}
	t.Errorf("%s: no address %s in %v", dev, cidr, addrs)
}

func TestNoBridgeNF(t *testing.T) {
	testutil.RequireRoot(t)
	c := newCluster(t, Options{NoBridgeNF: true})
	for _, n := range c.Nodes {
		if got, err := n.Sysctl("net.bridge.bridge-nf-call-iptables"); err != nil || got != "0" {
			t.Errorf("%s bridge-nf-call-iptables = %q, %v; want 0", n.Name, got, err)
		}
	}
	// Routed traffic does not depend on it.
	startEcho(t, c.Pod(PodServer))
	if _, err := TCPExchange(context.Background(), c.Pod(PodClient), ClusterIP, "x"); err != nil {
		t.Error(err)
	}
}

// ourNetns lists /run/netns entries that belong to prefix.
func ourNetns(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			names = append(names, e.Name())
		}
	}
	return names
}

func rootLinkNames(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

func TestCloseRemovesEverything(t *testing.T) {
	testutil.RequireRoot(t)
	before := rootLinkNames(t)
	c, err := Build(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ours := []string{BridgeDev, VXLANDev}
	for _, p := range c.Pods {
		ours = append(ours, p.HostVeth)
	}
	// Only our names count: other tests may add links to the root netns meanwhile.
	for _, name := range rootLinkNames(t) {
		if !slices.Contains(before, name) && slices.Contains(ours, name) {
			t.Errorf("Build created link %s in the root netns", name)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if left := ourNetns(t, c.Prefix); len(left) > 0 {
		t.Errorf("netns left behind: %v", left)
	}
	for _, name := range rootLinkNames(t) {
		if slices.Contains(ours, name) {
			t.Errorf("link %s leaked into the root netns", name)
		}
	}
	if err := c.Node(Node1).Do(func() error { return nil }); err == nil {
		t.Error("Do after Close succeeded")
	}

	// A namespace lives on while any fd refers to it: a second Build+Close (the first one
	// warmed up the runtime's own fds) must leave the number of open fds unchanged.
	fds := openFDs(t)
	c2, err := Build(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c2.Close() })
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("open fds: %d before Build, %d after Close", fds, got)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestTwoClustersOneAfterTheOther(t *testing.T) {
	testutil.RequireRoot(t)
	for _, prefix := range []string{"pttesta", "pttestb"} {
		c, err := Build(context.Background(), Options{Prefix: prefix})
		if err != nil {
			t.Fatalf("build %s: %v", prefix, err)
		}
		t.Cleanup(func() { c.Close() })
		if c.Pod(PodClient).NetnsName != prefix+"-client" || c.Node(Node2).NetnsPath != "/run/netns/"+prefix+"-node2" {
			t.Errorf("names: %s %s", c.Pod(PodClient).NetnsName, c.Node(Node2).NetnsPath)
		}
		s, err := StartEchoServer(context.Background(), c.Pod(PodServer), ServerPort)
		if err != nil {
			t.Fatal(err)
		}
		reply, err := TCPExchange(context.Background(), c.Pod(PodClient), ClusterIP, prefix)
		s.Close()
		if err != nil || reply != "server: "+prefix {
			t.Errorf("%s: reply %q, %v", prefix, reply, err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if left := ourNetns(t, prefix); len(left) > 0 {
			t.Errorf("netns left behind: %v", left)
		}
	}
}

func TestBuildFailureCleansUp(t *testing.T) {
	testutil.RequireRoot(t)
	const prefix = "pttestfail"
	// Someone else's namespace holds the server's name: Build must fail, remove what it
	// created and leave that namespace alone.
	taken := prefix + "-" + PodServer
	if out, err := exec.Command("ip", "netns", "add", taken).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", taken).Run() })

	c, err := Build(context.Background(), Options{Prefix: prefix})
	if err == nil {
		c.Close()
		t.Fatal("Build succeeded with a taken namespace name")
	}
	t.Logf("build error: %v", err)
	if left := ourNetns(t, prefix); !slices.Equal(left, []string{taken}) {
		t.Errorf("netns after failed build: %v, want only %s", left, taken)
	}
}

func TestBuildCanceled(t *testing.T) {
	testutil.RequireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, Options{Prefix: "pttestcancel"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Build with canceled ctx: %v", err)
	}
	if left := ourNetns(t, "pttestcancel"); len(left) > 0 {
		t.Errorf("netns left behind: %v", left)
	}
}

func TestBadPrefix(t *testing.T) {
	for _, p := range []string{"a/b", "-x", strings.Repeat("a", 40)} {
		if _, err := Build(context.Background(), Options{Prefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

func TestKubeChainNames(t *testing.T) {
	re := regexp.MustCompile(`^KUBE-(SVC|SEP)-[A-Z2-7]{16}$`)
	for _, name := range []string{ServiceChain, EndpointChain} {
		if !re.MatchString(name) {
			t.Errorf("chain name %q", name)
		}
	}
	if ServiceChain[9:] == EndpointChain[9:] {
		t.Error("service and endpoint chains hash the same")
	}
}

func TestSysctlPath(t *testing.T) {
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":               "/proc/sys/net/ipv4/ip_forward",
		"net/ipv4/conf/flannel.1/rp_filter": "/proc/sys/net/ipv4/conf/flannel.1/rp_filter",
		"../../etc/passwd":                  "/proc/sys/etc/passwd",
	} {
		if got := sysctlPath(key); got != want {
			t.Errorf("sysctlPath(%q) = %q, want %q", key, got, want)
		}
	}
}
