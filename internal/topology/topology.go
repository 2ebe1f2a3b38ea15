package topology

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Options configures Build. The zero value builds the cluster as a default flannel +
// kube-proxy node would look.
type Options struct {
	// Prefix starts every namespace name ("<prefix>-node1", "<prefix>-client"). Empty means
	// "pt" and 4 random hex characters.
	Prefix string
	// NoBridgeNF sets net.bridge.bridge-nf-call-iptables=0 on the nodes, so bridged same-node
	// pod traffic skips iptables. By default it is 1, as kube-proxy requires.
	NoBridgeNF bool
	// IPVS sets the service up as kube-proxy's IPVS mode does instead of its
	// iptables DNAT rules: the ClusterIP on a kube-ipvs0 dummy device, an
	// IPVS virtual service (rr) with real servers on both nodes (adding the
	// server-local pod on node1) and kube-proxy's masquerade rules. Build
	// fails with ErrNoIPVS where the kernel has no IPVS.
	IPVS bool
	// NoEndpoints adds a second Service, NoEndpointsService, with a
	// ClusterIP (NoEndpointsAddr) and a NodePort (NoEndpointsNodePort) but
	// no endpoints, written as kube-proxy writes one in the mode given
	// (KubeProxyIPTables, KubeProxyNFTables; the rest of kube-proxy's rules
	// stay iptables-nft's), and routes ServiceCIDR through eth0. Not with
	// IPVS, whose Service without endpoints is a virtual service without
	// real servers (Node.AddIPVSService).
	NoEndpoints KubeProxyMode
	// External adds a host outside the cluster (Cluster.External, at
	// ExternalIP) on the underlay, which becomes a switch (a bridge in a
	// namespace of its own) joining the nodes' eth0 and the host's, and
	// kube-proxy's NodePort rules for the service (NodePort, iptables
	// mode only: reached on NodePortAddr, DNAT to the server and
	// masquerade). The host is a client of the NodePort and a server for
	// pods going out through flanneld's masquerade.
	External bool
	// CNI is the pod network: flannel VXLAN (the zero value), Calico
	// IPIP or VXLAN with routed veths, or Geneve. The others than flannel
	// do not go with IPVS or External.
	CNI CNI
	// DualStack gives the pods IPv6 addresses too (ClientIP6, PeerIP6,
	// ServerIP6 in the nodes' PodCIDR6), routes IPv6 between the nodes
	// inside flannel.1's IPv4 VXLAN, turns on IPv6 forwarding and
	// bridge-nf-call-ip6tables, and loads kube-proxy's ip6tables rules:
	// ClusterIP6 DNAT to ServerAddr6. Duplicate address detection is off
	// in every namespace (addresses are usable at once).
	DualStack bool
}

// Cluster is a built demo cluster. Close removes it.
type Cluster struct {
	Prefix string
	CNI    CNI // the pod network it was built with
	Nodes  []*Node
	Pods   []*Pod
	// External is the host outside the cluster (Options.External): a
	// Pod without a Node, whose IP is on the underlay; nil without it.
	External *Pod

	switchNs netns.NsHandle // the underlay switch's namespace, with External
	mu       sync.Mutex
	closed   bool
}

// Node is a Kubernetes node: one network namespace with eth0 on the underlay, cni0 and
// flannel.1 (or what Options.CNI makes of it: no bridge with routed veths, another tunnel
// device).
type Node struct {
	Name       string
	NetnsName  string // name under /run/netns, for `ip netns exec`
	NetnsPath  string
	UnderlayIP netip.Addr   // eth0 address
	PodCIDR    netip.Prefix // this node's pod subnet
	BridgeIP   netip.Addr   // cni0 address, the pods' default gateway (none with routed veths)
	VXLANIP    netip.Addr   // tunnel device's address (the pod subnet's network address)
	VXLANMAC   net.HardwareAddr
	TunnelDev  string // the overlay device: flannel.1, tunl0, vxlan.calico or genev_sys_6081
	Pods       []*Pod

	peerUnderlay netip.Addr // the other node's underlay address (a Geneve device's remote)
	// With Options.DualStack (zero without): the IPv6 pod subnet, cni0's
	// and flannel.1's IPv6 addresses.
	PodCIDR6  netip.Prefix
	BridgeIP6 netip.Addr
	VXLANIP6  netip.Addr

	ns netns.NsHandle
}

// Pod is a pod: a network namespace with eth0, attached to its node's cni0 by a veth pair.
type Pod struct {
	Name      string
	NetnsName string
	NetnsPath string
	IP        netip.Addr
	IP6       netip.Addr       // with Options.DualStack; zero without
	MAC       net.HardwareAddr // eth0 inside the pod
	HostVeth  string           // host end in the node, "veth" + 8 hex characters ("cali" + 11 with routed veths)
	Node      *Node

	ns netns.NsHandle
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// Build creates the demo cluster in fresh network namespaces. On error everything it created
// is removed again.
func Build(ctx context.Context, opts Options) (_ *Cluster, err error) {
	prefix := opts.Prefix
	if prefix == "" {
		var b [2]byte
		rand.Read(b[:])
		prefix = "pt" + hex.EncodeToString(b[:])
	}
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("invalid prefix %q: want up to 32 letters, digits, '_', '.', '-'", prefix)
	}
	if opts.IPVS && opts.NoEndpoints != NoService {
		return nil, errors.New("a Service without endpoints in IPVS mode is a virtual service without real servers: use Node.AddIPVSService")
	}
	if opts.External && opts.IPVS {
		return nil, errors.New("build cluster: the external host's NodePort rules are kube-proxy's iptables mode, not IPVS")
	}
	if opts.CNI != CNIFlannel && (opts.External || opts.IPVS) {
		return nil, fmt.Errorf("build cluster: %s goes without External and IPVS", opts.CNI)
	}
	if opts.DualStack && (opts.IPVS || opts.External || opts.CNI != CNIFlannel) {
		return nil, errors.New("build cluster: dual-stack is built for the flannel iptables-mode cluster without an external host")
	}

	loadModules(ctx, opts)

	c := &Cluster{Prefix: prefix, CNI: opts.CNI, switchNs: netns.None()}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	for _, s := range nodeSpecs {
		n := &Node{
			Name:       s.name,
			NetnsName:  prefix + "-" + s.name,
			UnderlayIP: s.underlayIP,
			PodCIDR:    s.podCIDR,
			BridgeIP:   s.podCIDR.Addr().Next(),
			VXLANIP:    s.podCIDR.Addr(),
			VXLANMAC:   mac(macVXLAN, 0, s.index),
			TunnelDev:  opts.CNI.TunnelDev(),
			ns:         netns.None(),
		}
		if opts.CNI.Routed() {
			n.BridgeIP = netip.Addr{}
		}
		n.NetnsPath = filepath.Join(netnsDir, n.NetnsName)
		if n.ns, err = createNamedNetns(n.NetnsName); err != nil {
			return nil, fmt.Errorf("create node %s: %w", n.Name, err)
		}
		if opts.DualStack {
			n.PodCIDR6 = s.podCIDR6
			n.VXLANIP6 = s.podCIDR6.Addr()
			n.BridgeIP6 = s.podCIDR6.Addr().Next()
			if err := nodad(n.Do); err != nil {
				return nil, fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		for _, peer := range c.Nodes {
			if peer != n {
				n.peerUnderlay = peer.UnderlayIP
			}
		}
	}
	pods := podSpecs
	if opts.IPVS {
		pods = append(slices.Clip(pods), ipvsPodSpecs...)
	}
	for _, s := range pods {
		node := c.Node(s.node)
		p := &Pod{
			Name:      s.name,
			NetnsName: prefix + "-" + s.name,
			IP:        s.ip,
			MAC:       mac(macPod, node.PodCIDR.Addr().As4()[2], s.ip.As4()[3]),
			Node:      node,
			ns:        netns.None(),
		}
		p.NetnsPath = filepath.Join(netnsDir, p.NetnsName)
		sum := sha256.Sum256([]byte(p.NetnsName))
		p.HostVeth = hostVethName(opts.CNI, sum)
		if p.ns, err = createNamedNetns(p.NetnsName); err != nil {
			return nil, fmt.Errorf("create pod %s: %w", p.Name, err)
		}
		if opts.DualStack {
			p.IP6 = ip6Of(node, s.ip)
			if err := nodad(p.Do); err != nil {
				return nil, fmt.Errorf("pod %s: %w", p.Name, err)
			}
		}
		c.Pods = append(c.Pods, p)
		node.Pods = append(node.Pods, p)
	}

	if opts.External {
		if err := c.createExternal(); err != nil {
			return nil, err
		}
	}

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := c.setupLinks(opts.DualStack); err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		bridgeNF := "1"
		if opts.NoBridgeNF {
			bridgeNF = "0"
		}
		if err := n.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := n.SetSysctl("net.bridge.bridge-nf-call-iptables", bridgeNF); err != nil {
			return nil, fmt.Errorf("node %s: %w (is br_netfilter available?)", n.Name, err)
		}
		if opts.DualStack {
			if err := n.setup6(ctx, bridgeNF); err != nil {
				return nil, fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
		if opts.IPVS {
			if err := n.setupIPVS(ctx); err != nil {
				return nil, fmt.Errorf("node %s: %w", n.Name, err)
			}
			continue
		}
		if err := n.loadIPTables(ctx, opts); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := n.addNoEndpoints(opts.NoEndpoints); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return c, nil
}

// createExternal creates the namespaces of the external host and of the
// underlay switch.
func (c *Cluster) createExternal() (err error) {
	e := &Pod{Name: HostExternal, NetnsName: c.Prefix + "-" + HostExternal, IP: ExternalIP, ns: netns.None()}
	e.NetnsPath = filepath.Join(netnsDir, e.NetnsName)
	e.MAC = mac(macUnderlay, 0, ExternalIP.As4()[3])
	c.External = e
	if e.ns, err = createNamedNetns(e.NetnsName); err != nil {
		return fmt.Errorf("create host %s: %w", e.Name, err)
	}
	if c.switchNs, err = createNamedNetns(c.Prefix + "-" + SwitchName); err != nil {
		return fmt.Errorf("create switch: %w", err)
	}
	return nil
}

// Node returns the node with that name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Pod returns the pod with that name, or nil.
func (c *Cluster) Pod(name string) *Pod {
	for _, p := range c.Pods {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Close removes every namespace of the cluster, and with them every link in them. It is safe
// to call more than once and on a partially built cluster.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	// Pods first, so their veth pairs go before the bridges they are attached to.
	for _, p := range c.Pods {
		if p.ns.IsOpen() {
			p.ns.Close()
			p.ns = netns.None()
		}
		if err := deleteNamedNetns(p.NetnsName); err != nil {
			errs = append(errs, fmt.Errorf("delete pod %s: %w", p.Name, err))
		}
	}
	if e := c.External; e != nil {
		if e.ns.IsOpen() {
			e.ns.Close()
			e.ns = netns.None()
		}
		if err := deleteNamedNetns(e.NetnsName); err != nil {
			errs = append(errs, fmt.Errorf("delete host %s: %w", e.Name, err))
		}
		if c.switchNs.IsOpen() {
			c.switchNs.Close()
			c.switchNs = netns.None()
		}
		if err := deleteNamedNetns(c.Prefix + "-" + SwitchName); err != nil {
			errs = append(errs, fmt.Errorf("delete switch: %w", err))
		}
	}
	for _, n := range c.Nodes {
		if n.ns.IsOpen() {
			n.ns.Close()
			n.ns = netns.None()
		}
		if err := deleteNamedNetns(n.NetnsName); err != nil {
			errs = append(errs, fmt.Errorf("delete node %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

var errClosed = errors.New("cluster closed")

// Do runs fn with the calling goroutine's OS thread in the node's network namespace. Sockets
// fn creates stay in the namespace; goroutines fn starts do not run in it.
func (n *Node) Do(fn func() error) error {
	if !n.ns.IsOpen() {
		return fmt.Errorf("node %s: %w", n.Name, errClosed)
	}
	return doInNetns(n.ns, fn)
}

// Do runs fn with the calling goroutine's OS thread in the pod's network namespace, like
// (*Node).Do.
func (p *Pod) Do(fn func() error) error {
	if !p.ns.IsOpen() {
		return fmt.Errorf("pod %s: %w", p.Name, errClosed)
	}
	return doInNetns(p.ns, fn)
}

// NewHandle returns a netlink handle working in the node's namespace. The caller closes it.
func (n *Node) NewHandle() (*netlink.Handle, error) {
	if !n.ns.IsOpen() {
		return nil, fmt.Errorf("node %s: %w", n.Name, errClosed)
	}
	return netlink.NewHandleAt(n.ns)
}

// NewHandle returns a netlink handle working in the pod's namespace. The caller closes it.
func (p *Pod) NewHandle() (*netlink.Handle, error) {
	if !p.ns.IsOpen() {
		return nil, fmt.Errorf("pod %s: %w", p.Name, errClosed)
	}
	return netlink.NewHandleAt(p.ns)
}

// loadModules loads, where the kernel has modules, what the cluster is
// made of (on a node they are loaded by the CNI plugin and kube-proxy). A
// failure is not an error here: the module may be built in, and what is
// truly missing fails the step that needs it, saying what.
func loadModules(ctx context.Context, opts Options) {
	if _, err := os.Stat("/proc/modules"); err != nil {
		return // no module support: everything is built in or absent
	}
	mods := opts.CNI.modules()
	if opts.IPVS {
		mods = append(mods, "dummy", "ip_vs", "ip_vs_rr")
	}
	for _, m := range mods {
		exec.CommandContext(ctx, "modprobe", "-q", m).Run()
	}
}
