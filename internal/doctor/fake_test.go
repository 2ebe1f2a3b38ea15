package doctor

import (
	"net/netip"
	"slices"
	"testing/fstest"
)

// fakeNet is a NetSource with canned answers.
type fakeNet struct {
	links     []Link
	linkErr   error
	tables    []NFTable
	nftErr    error
	ipvs      IPVS
	ipvsErr   error
	legacy    map[string][]string
	legacyErr error
	// Rules by "FAMILY TABLE" for nf_tables, by legacyKey for legacy; map
	// elements by "FAMILY TABLE MAP".
	nftRules    map[string][]Rule
	legacyRules map[string][]Rule
	maps        map[string][]MapElement
	rulesErr    error

	legacyAsked []string
}

func (f *fakeNet) Links() ([]Link, error)       { return f.links, f.linkErr }
func (f *fakeNet) NFTables() ([]NFTable, error) { return f.tables, f.nftErr }
func (f *fakeNet) IPVS() (IPVS, error)          { return f.ipvs, f.ipvsErr }

// legacyKey keys the legacy answers: the table for family "ip", "ip6 TABLE"
// for ip6.
func legacyKey(family, table string) string {
	if family == "ip6" {
		return "ip6 " + table
	}
	return table
}

func (f *fakeNet) LegacyChains(family, table string) ([]string, error) {
	k := legacyKey(family, table)
	f.legacyAsked = append(f.legacyAsked, k)
	return f.legacy[k], f.legacyErr
}

func (f *fakeNet) NFTRules(family, table string, chains []string) ([]Rule, error) {
	var out []Rule
	for _, r := range f.nftRules[family+" "+table] {
		if slices.Contains(chains, r.Chain) {
			out = append(out, r)
		}
	}
	return out, f.rulesErr
}
func (f *fakeNet) NFTMap(family, table, name string) ([]MapElement, error) {
	return f.maps[family+" "+table+" "+name], f.rulesErr
}
func (f *fakeNet) LegacyRules(family, table string) ([]Rule, error) {
	return f.legacyRules[legacyKey(family, table)], f.rulesErr
}

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

const fakeRelease = "6.1.0-28-amd64"

// fakeNodeFS is a Debian 6.1 node with modules, a flannel-like setup and a
// few problems: bridge-nf-call-iptables=0, a conntrack table 85% full, strict
// rp_filter on the underlay.
func fakeNodeFS() fstest.MapFS {
	return fstest.MapFS{
		"proc/sys/kernel/osrelease":                       file(fakeRelease + "\n"),
		"sys/kernel/btf/vmlinux":                          file(""),
		"proc/mounts":                                     file("sysfs /sys sysfs rw 0 0\ntracefs /sys/kernel/tracing tracefs rw 0 0\nsecurityfs /sys/kernel/security securityfs rw 0 0\n"),
		"sys/kernel/tracing/kprobe_events":                file(""),
		"sys/kernel/security/lockdown":                    file("[none] integrity confidentiality\n"),
		"boot/config-" + fakeRelease:                      file("CONFIG_MODULES=y\nCONFIG_BRIDGE=m\nCONFIG_BRIDGE_NETFILTER=m\nCONFIG_NF_CONNTRACK=m\nCONFIG_NF_NAT=m\nCONFIG_IP_NF_IPTABLES=m\nCONFIG_NF_TABLES=m\nCONFIG_IP_VS=m\nCONFIG_IP_VS_RR=m\nCONFIG_IP_VS_WRR=m\nCONFIG_IP_VS_SH=m\nCONFIG_IP_VS_LC=m\nCONFIG_IP_VS_WLC=m\nCONFIG_VXLAN=m\nCONFIG_NET_IPIP=m\nCONFIG_GENEVE=m\nCONFIG_VETH=m\nCONFIG_KPROBES=y\n"),
		"proc/modules":                                    file("vxlan 102400 0 - Live 0x0\nveth 40960 0 - Live 0x0\nbridge 311296 1 br_netfilter, Live 0x0\nbr_netfilter 32768 0 - Live 0x0\nnf_nat 57344 1 - Live 0x0\nnf_conntrack 192512 1 nf_nat, Live 0x0\nnf_tables 282624 0 - Live 0x0\n"),
		"lib/modules/" + fakeRelease + "/modules.builtin": file("kernel/net/ipv4/ip_tables.ko\n"),

		"proc/sys/net/bridge/bridge-nf-call-iptables":                 file("0\n"),
		"proc/sys/net/bridge/bridge-nf-call-ip6tables":                file("1\n"),
		"proc/sys/net/bridge/bridge-nf-call-arptables":                file("0\n"),
		"proc/sys/net/ipv4/ip_forward":                                file("1\n"),
		"proc/sys/net/ipv6/conf/all/forwarding":                       file("1\n"),
		"proc/sys/net/netfilter/nf_conntrack_max":                     file("131072\n"),
		"proc/sys/net/netfilter/nf_conntrack_count":                   file("111412\n"),
		"proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established": file("86400\n"),
		"proc/sys/net/ipv4/conf/all/rp_filter":                        file("0\n"),
		"proc/sys/net/ipv4/conf/default/rp_filter":                    file("2\n"),
		"proc/sys/net/ipv4/conf/eth0/rp_filter":                       file("1\n"),
		"proc/sys/net/ipv4/conf/cni0/rp_filter":                       file("0\n"),
		"proc/sys/net/ipv4/conf/flannel.1/rp_filter":                  file("0\n"),
		"proc/net/ip_tables_names":                                    file(""),
	}
}

func fakeFlannelNet() *fakeNet {
	return &fakeNet{
		links: []Link{
			{Index: 1, Name: "lo", Kind: "device", MTU: 65536},
			{Index: 2, Name: "eth0", Kind: "device", MTU: 1500, DefaultRoute: true,
				Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.50.11/24")}},
			{Index: 3, Name: "flannel.1", Kind: "vxlan", MTU: 1450, VNI: 1, Port: 8472, UnderlayIndex: 2,
				Local: netip.MustParseAddr("192.168.50.11")},
			{Index: 4, Name: "cni0", Kind: "bridge", MTU: 1450},
			{Index: 5, Name: "veth5f3a2b1c", Kind: "veth", MTU: 1450, MasterIndex: 4},
			{Index: 6, Name: "veth9d8e7f6a", Kind: "veth", MTU: 1450, MasterIndex: 4},
		},
		tables: []NFTable{
			{Family: "ip", Name: "nat", Chains: []string{"KUBE-MARK-MASQ", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-SERVICES", "POSTROUTING", "PREROUTING"}},
			{Family: "ip", Name: "filter", Chains: []string{"FORWARD", "KUBE-FORWARD"}},
		},
		ipvsErr: ErrIPVSUnavailable,
	}
}
