package topology

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Run runs a command in the node's namespace (`ip netns exec`) and returns its combined
// output.
func (n *Node) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runInNetns(ctx, n.NetnsName, nil, name, args...)
}

// Run runs a command in the pod's namespace (`ip netns exec`) and returns its combined
// output.
func (p *Pod) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runInNetns(ctx, p.NetnsName, nil, name, args...)
}

func runInNetns(ctx context.Context, netnsName string, stdin []byte, name string, args ...string) ([]byte, error) {
	argv := append([]string{"netns", "exec", netnsName, name}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("run %s in netns %s: %w: %s", name, netnsName, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// SetSysctl writes a sysctl in the node's namespace. key is in sysctl's dotted form
// ("net.ipv4.ip_forward") or, for names containing dots such as flannel.1, slash-separated
// ("net/ipv4/conf/flannel.1/rp_filter").
func (n *Node) SetSysctl(key, value string) error {
	return writeSysctl(n.Do, key, value)
}

// SetSysctl writes a sysctl in the pod's namespace (key as for Node.SetSysctl).
func (p *Pod) SetSysctl(key, value string) error {
	return writeSysctl(p.Do, key, value)
}

// writeSysctl writes a sysctl in the namespace do runs in.
func writeSysctl(do func(func() error) error, key, value string) error {
	path := sysctlPath(key)
	err := do(func() error {
		// /proc/sys/net follows the network namespace of the thread that opens the file.
		return os.WriteFile(path, []byte(value), 0)
	})
	if err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// Sysctl reads a sysctl in the node's namespace (key as for SetSysctl).
func (n *Node) Sysctl(key string) (string, error) {
	var b []byte
	err := n.Do(func() (err error) {
		b, err = os.ReadFile(sysctlPath(key))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func sysctlPath(key string) string {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return filepath.Join("/proc/sys", filepath.Clean("/"+key))
}

// IPTables runs iptables with args in the node's namespace, for example
// n.IPTables("-I", "FORWARD", "-s", "10.244.1.5", "-j", "DROP").
func (n *Node) IPTables(args ...string) error {
	_, err := runInNetns(context.Background(), n.NetnsName, nil, "iptables", args...)
	return err
}

// IPTablesLegacy runs iptables-legacy (x_tables, the ip_tables module)
// with args in the node's namespace, as on nodes that never moved to
// nf_tables.
func (n *Node) IPTablesLegacy(args ...string) error {
	_, err := runInNetns(context.Background(), n.NetnsName, nil, "iptables-legacy", args...)
	return err
}

// loadIPTables loads the rules kube-proxy (iptables mode) and flanneld would have installed,
// in one iptables-restore call; with Options.NoEndpoints in iptables mode, also
// kube-proxy's rules for the Service without endpoints.
func (n *Node) loadIPTables(ctx context.Context, opts Options) error {
	var filter []string
	if opts.NoEndpoints == KubeProxyIPTables {
		filter = noEndpointsFilter()
	}
	if _, err := runInNetns(ctx, n.NetnsName, []byte(iptablesRules(opts, filter)), "iptables-restore"); err != nil {
		return fmt.Errorf("load iptables rules: %w", err)
	}
	return nil
}

// iptablesRules is the iptables-restore input for a node: kube-proxy's chains for the one
// service (ClusterIP → ServerAddr; its NodePort with Options.External), filter are more
// filter table lines, and flannel's masquerade and forward rules.
func iptablesRules(opts Options, filter []string) string {
	var chains, rules []string
	if opts.External {
		chains, rules = nodePortRules()
	}
	return nodeRulesFor(ClusterCIDR, chains, filter, ServerAddr, ClusterIP, rules...)
}

// nodeRulesFor is the iptables-restore (or ip6tables-restore) input of a
// node in iptables mode for the pod network cidr: kube-proxy's chains for
// the one service (clusterIP → ep), more chains and rules, filter table
// lines, and flannel's rules (nodeRules).
func nodeRulesFor(cidrP netip.Prefix, chains, filter []string, ep, clusterIP netip.AddrPort, more ...string) string {
	svc := ServiceChain
	sep := kubeChainName("KUBE-SEP-", ServicePortName+"tcp"+ep.String())
	cidr := cidrP.String()
	vip := netip.PrefixFrom(clusterIP.Addr(), clusterIP.Addr().BitLen()).String()
	port := fmt.Sprint(clusterIP.Port())
	epIP := netip.PrefixFrom(ep.Addr(), ep.Addr().BitLen()).String()
	spn := ServicePortName
	rules := []string{
		fmt.Sprintf(`-A KUBE-SERVICES -d %s -p tcp -m comment --comment "%s cluster IP" -m tcp --dport %s -j %s`, vip, spn, port, svc),
		fmt.Sprintf(`-A %s ! -s %s -d %s -p tcp -m comment --comment "%s cluster IP" -m tcp --dport %s -j KUBE-MARK-MASQ`, svc, cidr, vip, spn, port),
		fmt.Sprintf(`-A %s -m comment --comment "%s -> %s" -j %s`, svc, spn, ep, sep),
		fmt.Sprintf(`-A %s -s %s -m comment --comment "%s" -j KUBE-MARK-MASQ`, sep, epIP, spn),
		fmt.Sprintf(`-A %s -p tcp -m comment --comment "%s" -m tcp -j DNAT --to-destination %s`, sep, spn, ep),
	}
	return nodeRulesCIDR(cidrP, append([]string{svc, sep}, chains...), filter, append(rules, more...)...)
}

// nodeRules is the iptables-restore input both kube-proxy modes share:
// kube-proxy's entry and masquerade chains and flannel's masquerade and
// forward rules, with the mode's own nat chains and service rules, and
// filter table lines (chains, then rules) before flannel's.
func nodeRules(chains, filter []string, serviceRules ...string) string {
	return nodeRulesCIDR(ClusterCIDR, chains, filter, serviceRules...)
}

// nodeRulesCIDR is nodeRules for the pod network cidrP (IPv4 or IPv6).
func nodeRulesCIDR(cidrP netip.Prefix, chains, filter []string, serviceRules ...string) string {
	cidr := cidrP.String()
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("*nat")
	w(":PREROUTING ACCEPT [0:0]")
	w(":INPUT ACCEPT [0:0]")
	w(":OUTPUT ACCEPT [0:0]")
	w(":POSTROUTING ACCEPT [0:0]")
	w(":KUBE-SERVICES - [0:0]")
	w(":KUBE-POSTROUTING - [0:0]")
	w(":KUBE-MARK-MASQ - [0:0]")
	for _, c := range chains {
		w(":%s - [0:0]", c)
	}
	w(`-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`)
	w(`-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`)
	w(`-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`)
	w(`-A POSTROUTING -s %s ! -d %s -m comment --comment "flanneld masq" -j MASQUERADE`, cidr, cidr)
	w(`-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000`)
	w(`-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN`)
	w(`-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0`)
	w(`-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE`)
	for _, r := range serviceRules {
		w("%s", r)
	}
	w("COMMIT")
	w("*filter")
	w(":INPUT ACCEPT [0:0]")
	w(":FORWARD ACCEPT [0:0]")
	w(":OUTPUT ACCEPT [0:0]")
	for _, l := range filter {
		w("%s", l)
	}
	w(`-A FORWARD -s %s -m comment --comment "flanneld forward" -j ACCEPT`, cidr)
	w(`-A FORWARD -d %s -m comment --comment "flanneld forward" -j ACCEPT`, cidr)
	w("COMMIT")
	return b.String()
}
