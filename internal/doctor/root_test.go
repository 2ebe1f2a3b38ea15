package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// testNetns creates a named network namespace (under /run/netns, so `ip
// netns exec` works) and removes it when the test ends. It returns the name
// and a netlink handle inside it.
func testNetns(t *testing.T, short string) (string, netns.NsHandle, *netlink.Handle) {
	t.Helper()
	testutil.RequireRoot(t)
	name := fmt.Sprintf("ptdoc-%s-%d", short, os.Getpid())
	type result struct {
		h   netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		// NewNamed moves the calling thread into the new namespace; move it
		// back, or leave the thread locked so the runtime discards it.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if rerr := netns.Set(orig); rerr != nil {
			done <- result{err: errors.Join(err, rerr)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{h, err}
	}()
	res := <-done
	if res.err != nil {
		t.Fatalf("create netns %s: %v", name, res.err)
	}
	t.Cleanup(func() {
		res.h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	nh, err := netlink.NewHandleAt(res.h)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(nh.Close)
	return name, res.h, nh
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func linkIndex(t *testing.T, h *netlink.Handle, name string) int {
	t.Helper()
	l, err := h.LinkByName(name)
	must(t, "find "+name, err)
	return l.Attrs().Index
}

// addUnderlay adds eth0 (a veth whose peer stays in the same netns) with
// 192.168.50.11/24. No traffic is sent.
func addUnderlay(t *testing.T, h *netlink.Handle) int {
	t.Helper()
	must(t, "add eth0", h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}, PeerName: "ul-peer"}))
	eth0, err := h.LinkByName("eth0")
	must(t, "find eth0", err)
	addr, err := netlink.ParseAddr("192.168.50.11/24")
	must(t, "parse addr", err)
	must(t, "addr eth0", h.AddrAdd(eth0, addr))
	must(t, "up eth0", h.LinkSetUp(eth0))
	return eth0.Attrs().Index
}

// addBridge adds a bridge with one veth port per name.
func addBridge(t *testing.T, h *netlink.Handle, name string, mtu int, ports ...string) {
	t.Helper()
	must(t, "add "+name, h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}))
	br := linkIndex(t, h, name)
	for i, p := range ports {
		must(t, "add "+p, h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p, MTU: mtu, MasterIndex: br},
			PeerName: fmt.Sprintf("pod%d", i)}))
	}
}

func addVXLAN(t *testing.T, h *netlink.Handle, name string, vni, port, under, mtu int) {
	t.Helper()
	must(t, "add "+name, h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu},
		VxlanId: vni, Port: port, VtepDevIndex: under, SrcAddr: net.ParseIP("192.168.50.11"), Learning: false}))
}

func nsExec(t *testing.T, ns string, args ...string) {
	t.Helper()
	testutil.Require(t, testutil.Tool(args[0]))
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec %s %v: %v\n%s", ns, args, err, out)
	}
}

func collectLive(t *testing.T, ns string) *Report {
	t.Helper()
	r, err := Collect(context.Background(), Options{Netns: ns})
	if err != nil {
		t.Fatalf("Collect(%q): %v", ns, err)
	}
	roundTrip(t, r)
	if t.Failed() || testing.Verbose() {
		var b strings.Builder
		_ = r.WriteText(&b, false)
		t.Log("\n" + b.String())
	}
	return r
}

func TestLiveFlannel(t *testing.T) {
	ns, _, h := testNetns(t, "flannel")
	eth0 := addUnderlay(t, h)
	addBridge(t, h, "cni0", 1450, "veth1a2b3c4d")
	addVXLAN(t, h, "flannel.1", 1, 8472, eth0, 1450)
	nsExec(t, ns, "iptables", "-t", "nat", "-N", "KUBE-SERVICES")

	r := collectLive(t, ns)
	nw := r.Network
	if nw.CNI != CNIFlannel {
		t.Errorf("CNI %q", nw.CNI)
	}
	if len(nw.Overlays) != 1 {
		t.Fatalf("overlays %+v", nw.Overlays)
	}
	o := nw.Overlays[0]
	if o.Name != "flannel.1" || o.Kind != "vxlan" || o.VNI != 1 || o.Port != 8472 || o.Underlay != "eth0" ||
		o.UnderlayFrom != "link" || o.UnderlayMTU != 1500 || o.MTU != 1450 || o.Local != "192.168.50.11" ||
		o.Learning == nil || *o.Learning {
		t.Errorf("overlay %+v", o)
	}
	wantStatus(t, r, "network.overlay.flannel.1.mtu", StatusOK, "")
	if r.KubeProxy.Mode != ModeIPTables || r.KubeProxy.KubeServicesNFT != Present {
		t.Errorf("kube-proxy %+v", r.KubeProxy)
	}
	if len(nw.Bridges) != 1 || nw.Bridges[0].Name != "cni0" || nw.Bridges[0].VethPorts != 1 ||
		!slices.Equal(nw.Bridges[0].Ports, []string{"veth1a2b3c4d"}) || nw.Bridges[0].MTU != 1450 {
		t.Errorf("bridges %+v", nw.Bridges)
	}
	// rp_filter is reported for the bridge, overlay and underlay devices.
	for _, dev := range []string{"cni0", "eth0", "flannel.1"} {
		mustItem(t, r, "sysctl.net.ipv4.conf."+dev+".rp_filter")
	}
	// The same namespace by path.
	if r2 := collectLive(t, "/run/netns/"+ns); r2.Network.CNI != CNIFlannel || r2.Netns != "/run/netns/"+ns {
		t.Errorf("by path: %+v", r2.Network)
	}
}

func TestLiveCalicoNFTables(t *testing.T) {
	ns, nsh, h := testNetns(t, "calico")
	eth0 := addUnderlay(t, h)
	addVXLAN(t, h, "vxlan.calico", 4096, 4789, eth0, 1450)
	c, err := nftables.New(nftables.WithNetNSFd(int(nsh)))
	must(t, "nftables conn", err)
	c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "kube-proxy"})
	c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv6, Name: "kube-proxy"})
	must(t, "add kube-proxy tables", c.Flush())

	r := collectLive(t, ns)
	if r.Network.CNI != CNICalico {
		t.Errorf("CNI %q", r.Network.CNI)
	}
	if len(r.Network.Overlays) != 1 || r.Network.Overlays[0].VNI != 4096 || r.Network.Overlays[0].Port != 4789 ||
		r.Network.Overlays[0].Underlay != "eth0" {
		t.Errorf("overlays %+v", r.Network.Overlays)
	}
	if r.KubeProxy.Mode != ModeNFTables || !slices.Equal(r.KubeProxy.NFTablesFamilies, []string{"ip", "ip6"}) {
		t.Errorf("kube-proxy %+v", r.KubeProxy)
	}
	wantStatus(t, r, "kube_proxy.mode", StatusInfo, ModeNFTables)
}

func TestLivePlainBridge(t *testing.T) {
	ns, _, h := testNetns(t, "plain")
	addBridge(t, h, "cbr0", 1500, "vethaaaa")
	r := collectLive(t, ns)
	if r.KubeProxy.Mode != ModeNone {
		t.Errorf("mode %q: %+v", r.KubeProxy.Mode, r.Section("kube_proxy"))
	}
	if r.Network.CNI != CNIUnknown || len(r.Network.Overlays) != 0 {
		t.Errorf("network %+v", r.Network)
	}
	if len(r.Network.Bridges) != 1 || r.Network.Bridges[0].Name != "cbr0" || r.Network.Bridges[0].VethPorts != 1 {
		t.Errorf("bridges %+v", r.Network.Bridges)
	}
	wantStatus(t, r, "network.overlays", StatusInfo, "none")
	wantStatus(t, r, "kube_proxy.kube_services_legacy", StatusInfo, "absent")
}

// TestLiveSysctlsPerNetns checks that sysctls are read in the inspected
// namespace: two namespaces with opposite settings, and the caller's own
// namespace matching what this process reads directly.
func TestLiveSysctlsPerNetns(t *testing.T) {
	testutil.Modprobe("br_netfilter") // a module on Debian's kernels: its sysctls come with it
	bad, _, _ := testNetns(t, "sysbad")
	good, _, _ := testNetns(t, "sysgood")
	nsExec(t, bad, "sysctl", "-qw", "net.ipv4.ip_forward=0", "net.bridge.bridge-nf-call-iptables=0")
	nsExec(t, good, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1")

	rb := collectLive(t, bad)
	wantStatus(t, rb, "sysctl.net.ipv4.ip_forward", StatusBad, "0")
	wantStatus(t, rb, "sysctl.net.bridge.bridge-nf-call-iptables", StatusWarn, "0")
	rg := collectLive(t, good)
	wantStatus(t, rg, "sysctl.net.ipv4.ip_forward", StatusOK, "1")
	wantStatus(t, rg, "sysctl.net.bridge.bridge-nf-call-iptables", StatusOK, "1")

	host := collectLive(t, "")
	for id, path := range map[string]string{
		"sysctl.net.ipv4.ip_forward":                "/proc/sys/net/ipv4/ip_forward",
		"sysctl.net.bridge.bridge-nf-call-iptables": "/proc/sys/net/bridge/bridge-nf-call-iptables",
	} {
		b, err := os.ReadFile(path)
		must(t, "read "+path, err)
		if got := mustItem(t, host, id).Value; got != strings.TrimSpace(string(b)) {
			t.Errorf("host %s = %q, this process reads %q", id, got, b)
		}
	}
}

// TestLiveLegacyIPTables reads a legacy nat chain with getsockopt (no
// iptables-legacy-save fallback), and checks that a namespace without a
// legacy nat table still has none after Collect.
func TestLiveLegacyIPTables(t *testing.T) {
	ns, _, _ := testNetns(t, "legacy")
	nsExec(t, ns, "iptables-legacy", "-t", "nat", "-N", "KUBE-SERVICES")
	orig := lookPath
	lookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	t.Cleanup(func() { lookPath = orig })

	r := collectLive(t, ns)
	if r.KubeProxy.KubeServicesLegacy != Present || r.KubeProxy.Mode != ModeIPTables {
		t.Errorf("kube-proxy %+v", r.KubeProxy)
	}

	empty, _, _ := testNetns(t, "nolegacy")
	r = collectLive(t, empty)
	if r.KubeProxy.KubeServicesLegacy != Absent {
		t.Errorf("legacy %s", r.KubeProxy.KubeServicesLegacy)
	}
	out, err := exec.Command("ip", "netns", "exec", empty, "cat", "/proc/net/ip_tables_names").Output()
	must(t, "read ip_tables_names", err)
	if strings.Contains(string(out), "nat") {
		t.Errorf("Collect created the legacy nat table: %q", out)
	}
}

// TestLiveLegacyIP6Tables reads ip6tables-legacy's tables with getsockopt
// on an IPv6 socket, in a namespace whose legacy IPv4 tables have no
// kube-proxy chain: the mode, the Service ports in its nat table and the
// rules for Services without endpoints in its filter table, as kube-proxy
// writes them on an IPv6-only node with the legacy backend. A namespace
// without an ip6 nat table still has none after Collect.
func TestLiveLegacyIP6Tables(t *testing.T) {
	ns, _, _ := testNetns(t, "legacy6")
	rules := `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-EXT-WEB - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d fd96::10/128 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEB
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 -j KUBE-EXT-WEB
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d fd96::11/128 -p tcp -m comment --comment "default/nosvc:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp6-port-unreachable
COMMIT
`
	restore(t, ns, "ip6tables-legacy-restore", rules)
	nsExec(t, ns, "iptables-legacy", "-t", "nat", "-N", "OTHER") // an IPv4 legacy nat table without KUBE-SERVICES
	orig := lookPath
	lookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	t.Cleanup(func() { lookPath = orig })

	r := collectLive(t, ns)
	if r.KubeProxy.KubeServicesLegacy != Present || r.KubeProxy.Mode != ModeIPTables {
		t.Errorf("kube-proxy: legacy KUBE-SERVICES %s, mode %s; want present, iptables", r.KubeProxy.KubeServicesLegacy, r.KubeProxy.Mode)
	}
	fd := netip.MustParseAddr("fd96::10")
	wantPorts := []ServicePort{
		{Service: "default/web:http", Kind: KindClusterIP, Addr: fd, Proto: 6, Port: 80},
		{Service: "default/web:http", Kind: KindNodePort, Proto: 6, Port: 30080},
	}
	if got := r.KubeProxy.ServicePorts; !slices.ContainsFunc(got, func(sp ServicePort) bool { return sp == wantPorts[0] }) ||
		!slices.ContainsFunc(got, func(sp ServicePort) bool { return sp == wantPorts[1] }) {
		t.Errorf("Service ports %+v, want among them %+v", got, wantPorts)
	}
	wantNE := []NoEndpointsRule{{Service: "default/nosvc:http", Address: "fd96::11", Protocol: "TCP", Port: 80, Action: ActionReject, Rule: "ip6tables-legacy filter KUBE-SERVICES"}}
	if got := r.KubeProxy.NoEndpoints; !slices.Equal(got, wantNE) {
		t.Errorf("no-endpoint rules %+v, want %+v", got, wantNE)
	}

	empty, _, _ := testNetns(t, "nolegacy6")
	if r = collectLive(t, empty); r.KubeProxy.KubeServicesLegacy != Absent {
		t.Errorf("legacy %s", r.KubeProxy.KubeServicesLegacy)
	}
	out, err := exec.Command("ip", "netns", "exec", empty, "cat", "/proc/net/ip6_tables_names").Output()
	if err == nil && strings.Contains(string(out), "nat") {
		t.Errorf("Collect created the legacy ip6 nat table: %q", out)
	}
}

// TestLiveProcNetIsThreadGroupWide pins the kernel fact liveFS relies on:
// /proc/net (= /proc/self/net) shows the main thread's namespace, while
// /proc/thread-self/net and /proc/sys/net follow the reading thread.
func TestLiveProcNetIsThreadGroupWide(t *testing.T) {
	ns, _, _ := testNetns(t, "procnet")
	nsExec(t, ns, "iptables-legacy", "-t", "mangle", "-N", "X")
	var self, thread []byte
	mainThread := false
	err := inNetns(ns, func() error {
		mainThread = unix.Gettid() == unix.Getpid()
		var err error
		if self, err = os.ReadFile("/proc/self/net/ip_tables_names"); err != nil {
			return err
		}
		thread, err = os.ReadFile("/proc/thread-self/net/ip_tables_names")
		return err
	})
	must(t, "read in netns", err)
	if !strings.Contains(string(thread), "mangle") {
		t.Errorf("thread-self: %q", thread)
	}
	if mainThread {
		t.Log("ran on the main thread: /proc/self/net is the thread's own there")
		return
	}
	hostNames, _ := os.ReadFile("/proc/self/net/ip_tables_names")
	if string(self) != string(hostNames) {
		// The test binary's main thread stays in the host namespace, so
		// /proc/self/net must show the host's tables.
		t.Errorf("/proc/self/net from a setns'd thread = %q, host = %q", self, hostNames)
	}
}

func TestLiveMissingNetns(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := Collect(context.Background(), Options{Netns: "ptdoc-does-not-exist"}); err == nil {
		t.Error("no error for a missing netns")
	}
}

// TestLiveIPVSLayout builds the demo cluster in kube-proxy IPVS mode
// (kube-ipvs0, an rr virtual service with a real server on each node) and
// checks that the report of node1 says so, read from the kernel. Where the
// kernel has no IPVS (our 6.18 host) it checks that the report says that
// instead; the QEMU matrix runs the IPVS half.
func TestLiveIPVSLayout(t *testing.T) {
	testutil.RequireRoot(t)
	c, err := topology.Build(context.Background(), topology.Options{IPVS: true})
	if errors.Is(err, topology.ErrNoIPVS) {
		r, cerr := Collect(context.Background(), Options{})
		if cerr != nil {
			t.Fatal(cerr)
		}
		if r.KubeProxy.IPVS.Available {
			t.Errorf("the cluster could not use IPVS (%v) but the report says IPVS is available", err)
		}
		wantStatus(t, r, "kube_proxy.ipvs", StatusInfo, "ip_vs not available")
		testutil.Missing(t, testutil.IPVS, fmt.Errorf("IPVS half not run: %w", err))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := collectLive(t, c.Node(topology.Node1).NetnsName)
	kp := r.KubeProxy
	if kp.Mode != ModeIPVS || kp.KubeIPVS0 != Present {
		t.Errorf("kube-proxy mode %q, kube-ipvs0 %v; want ipvs, present", kp.Mode, kp.KubeIPVS0)
	}
	if !kp.IPVS.Available || kp.IPVS.Services != 1 || kp.IPVS.RealServers != 2 || !slices.Contains(kp.IPVS.Schedulers, "rr") {
		t.Errorf("IPVS %+v, want 1 rr service with 2 real servers", kp.IPVS)
	}
	want := []VirtualService{{Protocol: "TCP", Address: topology.ClusterIP.String(), Scheduler: "rr", RealServers: 2}}
	if !slices.Equal(kp.IPVS.VirtualServices, want) {
		t.Errorf("IPVS virtual services %+v, want %+v", kp.IPVS.VirtualServices, want)
	}

	// A Service whose endpoints are gone: its virtual service stays,
	// without real servers, and the report warns.
	if err := c.Node(topology.Node1).AddIPVSService(netip.MustParseAddrPort("10.96.0.20:80"), topology.IPVSMasq); err != nil {
		t.Fatal(err)
	}
	r = collectLive(t, c.Node(topology.Node1).NetnsName)
	it := r.Item("kube_proxy.ipvs")
	if it == nil || it.Status != StatusWarn || !strings.Contains(it.Value, "without real servers: TCP 10.96.0.20:80") {
		t.Errorf("IPVS item %+v, want a warning naming TCP 10.96.0.20:80", it)
	}
}

// TestLiveNoEndpoints builds the demo cluster with a Service without
// endpoints as kube-proxy's iptables mode (iptables-nft) and its nftables
// mode write it, and checks that node1's report reads the rules from the
// kernel: the ClusterIP and the NodePort, both rejected.
func TestLiveNoEndpoints(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		mode       topology.KubeProxyMode
		svc, nport string
	}{
		{topology.KubeProxyIPTables, "iptables-nft filter KUBE-SERVICES", "iptables-nft filter KUBE-EXTERNAL-SERVICES"},
		{topology.KubeProxyNFTables, "nftables ip kube-proxy no-endpoint-services", "nftables ip kube-proxy no-endpoint-nodeports"},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			c, err := topology.Build(context.Background(), topology.Options{NoEndpoints: tc.mode})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			r := collectLive(t, c.Node(topology.Node1).NetnsName)
			want := []NoEndpointsRule{
				{Service: topology.NoEndpointsService, Protocol: "TCP", Port: topology.NoEndpointsNodePort, NodePort: true, Action: ActionReject, Rule: tc.nport},
				{Service: topology.NoEndpointsService, Address: topology.NoEndpointsAddr.Addr().String(), Protocol: "TCP",
					Port: topology.NoEndpointsAddr.Port(), Action: ActionReject, Rule: tc.svc},
			}
			if got := r.KubeProxy.NoEndpoints; !slices.Equal(got, want) {
				t.Errorf("no-endpoint rules %+v, want %+v", got, want)
			}
			wantStatus(t, r, "kube_proxy.no_endpoints", StatusWarn, "2 Service ports: default/nosvc:http NodePort 30081/TCP reject, default/nosvc:http 10.96.0.11:80/TCP reject")
		})
	}
}

// restore loads rules into the namespace with an iptables-restore tool.
func restore(t *testing.T, ns, tool, rules string) {
	t.Helper()
	testutil.Require(t, testutil.Tool(tool))
	cmd := exec.Command("ip", "netns", "exec", ns, tool)
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, out)
	}
}

// TestLiveNoEndpointsLegacy reads kube-proxy's REJECT rules from a legacy
// filter table with getsockopt.
func TestLiveNoEndpointsLegacy(t *testing.T) {
	ns, _, _ := testNetns(t, "nelegacy")
	rules := `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.11/32 -p tcp -m comment --comment "default/nosvc:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-SERVICES -d 10.96.0.12/32 -p udp -m comment --comment "kube-system/dns:dns has no local endpoints" -m udp --dport 53 -j DROP
COMMIT
`
	restore(t, ns, "iptables-legacy-restore", rules)
	r := collectLive(t, ns)
	want := []NoEndpointsRule{
		{Service: "default/nosvc:http", Address: "10.96.0.11", Protocol: "TCP", Port: 80, Action: ActionReject, Rule: "iptables-legacy filter KUBE-SERVICES"},
		{Service: "kube-system/dns:dns", Address: "10.96.0.12", Protocol: "UDP", Port: 53, Action: ActionDrop, Rule: "iptables-legacy filter KUBE-SERVICES"},
	}
	if got := r.KubeProxy.NoEndpoints; !slices.Equal(got, want) {
		t.Errorf("no-endpoint rules %+v, want %+v", got, want)
	}
}
