package doctor

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pathtrace/pathtrace/internal/kernel"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func collectFake(t *testing.T, fsys fstest.MapFS, n *fakeNet) *Report {
	t.Helper()
	r, err := Collect(context.Background(), Options{FS: fsys, Net: n})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return r
}

func mustItem(t *testing.T, r *Report, id string) Item {
	t.Helper()
	it := r.Item(id)
	if it == nil {
		t.Fatalf("no item %q", id)
	}
	return *it
}

func wantStatus(t *testing.T, r *Report, id string, want Status, value string) {
	t.Helper()
	it := mustItem(t, r, id)
	if it.Status != want {
		t.Errorf("%s: status %s, want %s (value %q)", id, it.Status, want, it.Value)
	}
	if value != "" && it.Value != value {
		t.Errorf("%s: value %q, want %q", id, it.Value, value)
	}
}

func TestConntrackUsage(t *testing.T) {
	for _, tc := range []struct {
		count, limit int64
		want         Status
	}{
		{0, 262144, StatusOK},
		{79, 100, StatusOK},
		{7999, 10000, StatusOK},
		{80, 100, StatusWarn},
		{94, 100, StatusWarn},
		{9499, 10000, StatusWarn},
		{95, 100, StatusBad},
		{100, 100, StatusBad},
		{120, 100, StatusBad},
		{5, 0, StatusUnknown},
		{-1, 100, StatusUnknown},
	} {
		ct := Conntrack{Count: present(tc.count), Max: present(tc.limit)}
		if got := ct.Grade(); got != tc.want {
			t.Errorf("Conntrack{%d, %d}.Grade() = %s, want %s", tc.count, tc.limit, got, tc.want)
		}
	}
	for _, ct := range []Conntrack{
		{},
		{Count: present(5), Max: Sysctl{State: Absent}},
		{Count: Sysctl{State: Unsure, Text: "lots"}, Max: present(100)},
		{Count: Sysctl{State: Present}, Max: present(100)}, // no value: damaged
	} {
		if got := ct.Grade(); got != StatusUnknown {
			t.Errorf("%+v.Grade() = %s, want unknown", ct, got)
		}
	}
}

func TestSysctlStatus(t *testing.T) {
	set := func(kv ...string) fstest.MapFS {
		fsys := fakeNodeFS()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(fsys, kv[i])
				continue
			}
			fsys[kv[i]] = file(kv[i+1] + "\n")
		}
		return fsys
	}
	const (
		bnf  = "proc/sys/net/bridge/bridge-nf-call-iptables"
		bnf6 = "proc/sys/net/bridge/bridge-nf-call-ip6tables"
		arp  = "proc/sys/net/bridge/bridge-nf-call-arptables"
		fwd  = "proc/sys/net/ipv4/ip_forward"
		fwd6 = "proc/sys/net/ipv6/conf/all/forwarding"
		ctMx = "proc/sys/net/netfilter/nf_conntrack_max"
		ctCn = "proc/sys/net/netfilter/nf_conntrack_count"
		ctTo = "proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"
		vs   = "proc/sys/net/ipv4/vs/conntrack"
		rpA  = "proc/sys/net/ipv4/conf/all/rp_filter"
		rpD  = "proc/sys/net/ipv4/conf/default/rp_filter"
		rpE  = "proc/sys/net/ipv4/conf/eth0/rp_filter"
		rpF  = "proc/sys/net/ipv4/conf/flannel.1/rp_filter"
	)
	for _, tc := range []struct {
		name  string
		fsys  fstest.MapFS
		id    string
		want  Status
		value string
	}{
		{"bridge-nf 0", set(bnf, "0"), "sysctl.net.bridge.bridge-nf-call-iptables", StatusWarn, "0"},
		{"bridge-nf 1", set(bnf, "1"), "sysctl.net.bridge.bridge-nf-call-iptables", StatusOK, "1"},
		{"bridge-nf absent", set(bnf, ""), "sysctl.net.bridge.bridge-nf-call-iptables", StatusWarn, "absent"},
		{"bridge-nf6 0", set(bnf6, "0"), "sysctl.net.bridge.bridge-nf-call-ip6tables", StatusWarn, "0"},
		{"arptables 0 is info", set(arp, "0"), "sysctl.net.bridge.bridge-nf-call-arptables", StatusInfo, "0"},
		{"ip_forward 0", set(fwd, "0"), "sysctl.net.ipv4.ip_forward", StatusBad, "0"},
		{"ip_forward 1", set(fwd, "1"), "sysctl.net.ipv4.ip_forward", StatusOK, "1"},
		{"ip_forward unreadable", set(fwd, ""), "sysctl.net.ipv4.ip_forward", StatusUnknown, "absent"},
		{"ipv6 forwarding 0", set(fwd6, "0"), "sysctl.net.ipv6.conf.all.forwarding", StatusInfo, "0"},
		{"ipv6 disabled", set(fwd6, ""), "sysctl.net.ipv6.conf.all.forwarding", StatusInfo, "absent"},
		{"conntrack 85%", set(ctMx, "1000", ctCn, "850"), "sysctl.net.netfilter.nf_conntrack_usage", StatusWarn, "850 / 1000 (85.0% full)"},
		{"conntrack 96%", set(ctMx, "1000", ctCn, "960"), "sysctl.net.netfilter.nf_conntrack_usage", StatusBad, ""},
		{"conntrack 10%", set(ctMx, "1000", ctCn, "100"), "sysctl.net.netfilter.nf_conntrack_usage", StatusOK, ""},
		{"conntrack absent", set(ctMx, "", ctCn, ""), "sysctl.net.netfilter.nf_conntrack_usage", StatusInfo, "absent"},
		{"conntrack garbage", set(ctMx, "lots"), "sysctl.net.netfilter.nf_conntrack_usage", StatusUnknown, ""},
		{"tcp established short", set(ctTo, "600"), "sysctl.net.netfilter.nf_conntrack_tcp_timeout_established", StatusWarn, "600s"},
		{"tcp established default", set(ctTo, "432000"), "sysctl.net.netfilter.nf_conntrack_tcp_timeout_established", StatusOK, "432000s"},
		{"vs.conntrack absent", set(vs, ""), "sysctl.net.ipv4.vs.conntrack", StatusInfo, "absent"},
		{"vs.conntrack 0 no ipvs mode", set(vs, "0"), "sysctl.net.ipv4.vs.conntrack", StatusInfo, "0"},
		{"rp_filter all strict", set(rpA, "1"), "sysctl.net.ipv4.conf.all.rp_filter", StatusWarn, "1 (strict)"},
		{"rp_filter all loose", set(rpA, "2"), "sysctl.net.ipv4.conf.all.rp_filter", StatusOK, "2 (loose)"},
		{"rp_filter default strict", set(rpD, "1"), "sysctl.net.ipv4.conf.default.rp_filter", StatusWarn, "1 (strict)"},
		{"rp_filter underlay strict", set(rpE, "1"), "sysctl.net.ipv4.conf.eth0.rp_filter", StatusWarn, "1 (strict)"},
		{"rp_filter overlay strict via all", set(rpA, "1", rpF, "0"), "sysctl.net.ipv4.conf.flannel.1.rp_filter", StatusWarn, "0 (effective 1: strict, from all)"},
		{"rp_filter overlay loose beats all off", set(rpA, "0", rpF, "2"), "sysctl.net.ipv4.conf.flannel.1.rp_filter", StatusOK, "2 (loose)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := collectFake(t, tc.fsys, fakeFlannelNet())
			wantStatus(t, r, tc.id, tc.want, tc.value)
		})
	}

	t.Run("vs.conntrack 0 in ipvs mode", func(t *testing.T) {
		n := fakeFlannelNet()
		n.ipvs, n.ipvsErr = IPVS{Available: true, Services: 3, RealServers: 5, Schedulers: []string{"rr"}}, nil
		r := collectFake(t, set(vs, "0"), n)
		wantStatus(t, r, "sysctl.net.ipv4.vs.conntrack", StatusWarn, "0")
	})

	t.Run("rp_filter names devices with dots the sysctl way", func(t *testing.T) {
		r := collectFake(t, fakeNodeFS(), fakeFlannelNet())
		it := mustItem(t, r, "sysctl.net.ipv4.conf.flannel.1.rp_filter")
		if it.Name != "net.ipv4.conf.flannel/1.rp_filter" || it.Source != "/proc/sys/net/ipv4/conf/flannel.1/rp_filter" {
			t.Errorf("name %q source %q", it.Name, it.Source)
		}
	})
}

func TestModuleStates(t *testing.T) {
	base := func() fstest.MapFS {
		return fstest.MapFS{"proc/sys/kernel/osrelease": file(fakeRelease)}
	}
	modDir := "lib/modules/" + fakeRelease + "/"
	for _, tc := range []struct {
		name   string
		fsys   fstest.MapFS
		module string
		want   string
		status Status
	}{
		{"loaded", fstest.MapFS{"proc/modules": file("bridge 1 0 - Live 0x0\n")}, "bridge", modLoaded, StatusOK},
		{"built-in by modules.builtin", fstest.MapFS{"proc/modules": file(""), modDir + "modules.builtin": file("kernel/net/bridge/bridge.ko\n")}, "bridge", modBuiltin, StatusOK},
		{"loadable by config", fstest.MapFS{"proc/modules": file(""), "boot/config-" + fakeRelease: file("CONFIG_BRIDGE_NETFILTER=m\n")}, "br_netfilter", modAvailable, StatusWarn},
		{"loadable ip_vs is info", fstest.MapFS{"proc/modules": file(""), "boot/config-" + fakeRelease: file("CONFIG_IP_VS=m\n")}, "ip_vs", modAvailable, StatusInfo},
		{"built-in by config", fstest.MapFS{"boot/config-" + fakeRelease: file("CONFIG_VETH=y\n")}, "veth", modBuiltin, StatusOK},
		{"absent by config, core", fstest.MapFS{"boot/config-" + fakeRelease: file("# CONFIG_BRIDGE is not set\n")}, "bridge", modAbsent, StatusWarn},
		{"absent by config, optional", fstest.MapFS{"boot/config-" + fakeRelease: file("CONFIG_VXLAN=y\n")}, "ip_vs", modAbsent, StatusInfo},
		{"built-in by /sys/module", fstest.MapFS{"proc/modules": file(""), "sys/module/vxlan/version": file("")}, "vxlan", modBuiltin, StatusOK},
		{"built-in by /sys/module, no module support", fstest.MapFS{"sys/module/bridge/parameters/x": file("")}, "bridge", modBuiltin, StatusOK},
		{"loadable by modules.dep", fstest.MapFS{"proc/modules": file(""), modDir + "modules.dep": file("kernel/net/ipv4/ipip.ko.xz: kernel/net/ipv4/ip_tunnel.ko.xz\n")}, "ipip", modAvailable, StatusInfo},
		{"absent by builtin+dep", fstest.MapFS{"proc/modules": file(""), modDir + "modules.builtin": file(""), modDir + "modules.dep": file("")}, "geneve", modAbsent, StatusInfo},
		{"not loaded, no dep", fstest.MapFS{"proc/modules": file(""), modDir + "modules.builtin": file("")}, "geneve", modNotLoaded, StatusInfo},
		{"no evidence", fstest.MapFS{"proc/modules": file("")}, "nf_nat", modUnknown, StatusUnknown},
		{"nothing at all", fstest.MapFS{}, "nf_nat", modUnknown, StatusUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := base()
			for k, v := range tc.fsys {
				fsys[k] = v
			}
			r := collectFake(t, fsys, &fakeNet{})
			wantStatus(t, r, "module."+tc.module, tc.status, tc.want)
		})
	}
}

func TestKernelItems(t *testing.T) {
	t.Run("fake node", func(t *testing.T) {
		r := collectFake(t, fakeNodeFS(), fakeFlannelNet())
		wantStatus(t, r, "kernel.release", StatusInfo, fakeRelease)
		wantStatus(t, r, "kernel.btf", StatusOK, "present")
		wantStatus(t, r, "tracing.tracefs", StatusOK, "mounted at /sys/kernel/tracing")
		wantStatus(t, r, "tracing.kprobes", StatusOK, "available")
		wantStatus(t, r, "tracing.lockdown", StatusOK, "none")
	})
	t.Run("this VM's kernel", func(t *testing.T) {
		// No modules, no kprobes, tracefs unmounted, securityfs unmounted,
		// lockdown forced to integrity at build time.
		fsys := fstest.MapFS{
			"proc/sys/kernel/osrelease": file("6.18.44"),
			"proc/mounts":               file("sysfs /sys sysfs rw 0 0\n"),
			"boot/config-6.18.44":       file("# CONFIG_MODULES is not set\n# CONFIG_KPROBES is not set\nCONFIG_SECURITY_LOCKDOWN_LSM=y\nCONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY=y\n"),
		}
		r := collectFake(t, fsys, &fakeNet{})
		wantStatus(t, r, "kernel.btf", StatusWarn, "absent")
		wantStatus(t, r, "tracing.tracefs", StatusWarn, "not mounted")
		wantStatus(t, r, "tracing.kprobes", StatusWarn, "not built")
		wantStatus(t, r, "tracing.lockdown", StatusWarn, "integrity or stricter")
		wantStatus(t, r, "module.support", StatusInfo, "disabled")
	})
	t.Run("lockdown modes", func(t *testing.T) {
		for content, want := range map[string]Status{
			"none [integrity] confidentiality": StatusWarn,
			"none integrity [confidentiality]": StatusBad,
			"[none] integrity confidentiality": StatusOK,
		} {
			fsys := fakeNodeFS()
			fsys["sys/kernel/security/lockdown"] = file(content + "\n")
			r := collectFake(t, fsys, fakeFlannelNet())
			wantStatus(t, r, "tracing.lockdown", want, kernel.ParseLockdown(content))
		}
	})
	t.Run("lockdown unknown without securityfs or config", func(t *testing.T) {
		fsys := fstest.MapFS{"proc/mounts": file("")}
		r := collectFake(t, fsys, &fakeNet{})
		wantStatus(t, r, "tracing.lockdown", StatusUnknown, "unknown")
		wantStatus(t, r, "tracing.kprobes", StatusUnknown, "unknown")
	})
}

func TestKubeProxyMode(t *testing.T) {
	nat := func(chains ...string) NFTable { return NFTable{Family: "ip", Name: "nat", Chains: chains} }
	legacyNat := fstest.MapFS{"proc/net/ip_tables_names": file("filter\nnat\n")}
	legacyNat6 := fstest.MapFS{"proc/net/ip6_tables_names": file("nat\n")}
	for _, tc := range []struct {
		name   string
		fsys   fstest.MapFS
		net    fakeNet
		mode   string
		status Status
	}{
		{"none", nil, fakeNet{ipvsErr: ErrIPVSUnavailable}, ModeNone, StatusInfo},
		{"iptables-nft", nil, fakeNet{tables: []NFTable{nat("KUBE-SERVICES")}, ipvsErr: ErrIPVSUnavailable}, ModeIPTables, StatusInfo},
		{"nat without KUBE-SERVICES", nil, fakeNet{tables: []NFTable{nat("POSTROUTING")}, ipvsErr: ErrIPVSUnavailable}, ModeNone, StatusInfo},
		{"ip6tables-nft only (an IPv6-only node)", nil, fakeNet{tables: []NFTable{{Family: "ip6", Name: "nat", Chains: []string{"KUBE-SERVICES"}}}, ipvsErr: ErrIPVSUnavailable}, ModeIPTables, StatusInfo},
		{"KUBE-SERVICES in another table", nil, fakeNet{tables: []NFTable{{Family: "inet", Name: "filter", Chains: []string{"KUBE-SERVICES"}}}, ipvsErr: ErrIPVSUnavailable}, ModeNone, StatusInfo},
		{"iptables-legacy", legacyNat, fakeNet{legacy: map[string][]string{"nat": {"KUBE-SERVICES", "KUBE-NODEPORTS"}}, ipvsErr: ErrIPVSUnavailable}, ModeIPTables, StatusInfo},
		{"ip6tables-legacy only (an IPv6-only node)", legacyNat6, fakeNet{legacy: map[string][]string{"ip6 nat": {"KUBE-SERVICES"}}, ipvsErr: ErrIPVSUnavailable}, ModeIPTables, StatusInfo},
		{"legacy: ip nat without, ip6 nat with", fstest.MapFS{"proc/net/ip_tables_names": file("nat\n"), "proc/net/ip6_tables_names": file("nat\n")},
			fakeNet{legacy: map[string][]string{"nat": {"POSTROUTING"}, "ip6 nat": {"KUBE-SERVICES"}}, ipvsErr: ErrIPVSUnavailable}, ModeIPTables, StatusInfo},
		{"legacy unreadable", legacyNat, fakeNet{legacyErr: errors.New("EPERM"), ipvsErr: ErrIPVSUnavailable}, ModeUnknown, StatusUnknown},
		{"nftables", nil, fakeNet{tables: []NFTable{{Family: "ip", Name: "kube-proxy"}, {Family: "ip6", Name: "kube-proxy"}}, ipvsErr: ErrIPVSUnavailable}, ModeNFTables, StatusInfo},
		{"nftables plus leftover iptables", nil, fakeNet{tables: []NFTable{{Family: "ip", Name: "kube-proxy"}, nat("KUBE-SERVICES")}, ipvsErr: ErrIPVSUnavailable}, ModeNFTables, StatusWarn},
		{"ipvs", nil, fakeNet{links: []Link{{Index: 7, Name: "kube-ipvs0", Kind: "dummy"}}, tables: []NFTable{nat("KUBE-SERVICES")}, ipvs: IPVS{Available: true, Services: 12, RealServers: 20, Schedulers: []string{"rr"}}}, ModeIPVS, StatusInfo},
		{"ipvs services without device", nil, fakeNet{ipvs: IPVS{Available: true, Services: 1, RealServers: 1}}, ModeIPVS, StatusInfo},
		{"ipvs with both iptables backends", legacyNat, fakeNet{links: []Link{{Index: 7, Name: "kube-ipvs0", Kind: "dummy"}}, tables: []NFTable{nat("KUBE-SERVICES")}, legacy: map[string][]string{"nat": {"KUBE-SERVICES"}}, ipvs: IPVS{Available: true}}, ModeIPVS, StatusWarn},
		{"nft unreadable", nil, fakeNet{nftErr: errors.New("EPERM"), ipvsErr: ErrIPVSUnavailable}, ModeUnknown, StatusUnknown},
		{"ipvs unreadable", nil, fakeNet{ipvsErr: errors.New("EPERM")}, ModeUnknown, StatusUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := tc.fsys
			if fsys == nil {
				fsys = fstest.MapFS{}
			}
			r := collectFake(t, fsys, &tc.net)
			if r.KubeProxy.Mode != tc.mode {
				t.Errorf("mode %s, want %s", r.KubeProxy.Mode, tc.mode)
			}
			wantStatus(t, r, "kube_proxy.mode", tc.status, tc.mode)
		})
	}

	t.Run("legacy nat table not asked for unless listed", func(t *testing.T) {
		// Asking the kernel for a legacy table instantiates it.
		for _, names := range []string{"", "filter\n"} {
			n := &fakeNet{ipvsErr: ErrIPVSUnavailable}
			r := collectFake(t, fstest.MapFS{"proc/net/ip_tables_names": file(names), "proc/net/ip6_tables_names": file(names)}, n)
			if len(n.legacyAsked) != 0 {
				t.Errorf("ip_tables_names %q: asked for %v", names, n.legacyAsked)
			}
			if r.KubeProxy.KubeServicesLegacy != Absent {
				t.Errorf("legacy = %s", r.KubeProxy.KubeServicesLegacy)
			}
		}
	})
	t.Run("ipvs counts", func(t *testing.T) {
		n := &fakeNet{ipvs: IPVS{Available: true, Services: 2, RealServers: 3, Schedulers: []string{"rr", "sh"}}}
		r := collectFake(t, fstest.MapFS{}, n)
		wantStatus(t, r, "kube_proxy.ipvs", StatusInfo, "2 services, 3 real servers (rr, sh)")
		// A service without real servers is a warning, named.
		n = &fakeNet{ipvs: IPVS{Available: true, Services: 2, RealServers: 3, Schedulers: []string{"rr"},
			VirtualServices: []VirtualService{
				{Protocol: "TCP", Address: "10.96.0.10:80", Scheduler: "rr", RealServers: 3},
				{Protocol: "UDP", Address: "10.96.0.20:53", Scheduler: "rr"},
			}}}
		r = collectFake(t, fstest.MapFS{}, n)
		wantStatus(t, r, "kube_proxy.ipvs", StatusWarn, "2 services, 3 real servers (rr); without real servers: UDP 10.96.0.20:53")
		if vs := r.KubeProxy.IPVS.VirtualServices; len(vs) != 2 || vs[1].Address != "10.96.0.20:53" {
			t.Errorf("virtual services %+v", vs)
		}
		n = &fakeNet{ipvsErr: ErrIPVSUnavailable}
		r = collectFake(t, fstest.MapFS{}, n)
		wantStatus(t, r, "kube_proxy.ipvs", StatusInfo, "ip_vs not available")
		if r.KubeProxy.IPVS.Available {
			t.Error("IPVS available")
		}
	})
}

func TestNetwork(t *testing.T) {
	t.Run("flannel", func(t *testing.T) {
		r := collectFake(t, fakeNodeFS(), fakeFlannelNet())
		nw := r.Network
		if nw.CNI != CNIFlannel {
			t.Errorf("CNI %s", nw.CNI)
		}
		if len(nw.Overlays) != 1 {
			t.Fatalf("overlays %+v", nw.Overlays)
		}
		o := nw.Overlays[0]
		if o.Name != "flannel.1" || o.VNI != 1 || o.Port != 8472 || o.Underlay != "eth0" || o.UnderlayFrom != "link" ||
			o.Local != "192.168.50.11" || o.Learning == nil || *o.Learning || o.Overhead != 50 {
			t.Errorf("overlay %+v", o)
		}
		wantStatus(t, r, "network.overlay.flannel.1.mtu", StatusOK, "1450 (eth0 1500 − 50 = 1450)")
		if len(nw.Bridges) != 1 || nw.Bridges[0].Name != "cni0" || nw.Bridges[0].VethPorts != 2 ||
			!slices.Equal(nw.Bridges[0].Ports, []string{"veth5f3a2b1c", "veth9d8e7f6a"}) {
			t.Errorf("bridges %+v", nw.Bridges)
		}
		wantStatus(t, r, "network.bridge.cni0", StatusOK, "")
	})
	t.Run("overlay MTU too big", func(t *testing.T) {
		n := fakeFlannelNet()
		n.links[2].MTU = 1500
		r := collectFake(t, fakeNodeFS(), n)
		wantStatus(t, r, "network.overlay.flannel.1.mtu", StatusBad, "1500 (eth0 1500 − 50 = 1450)")
	})
	t.Run("bridge MTU above overlay", func(t *testing.T) {
		n := fakeFlannelNet()
		n.links[3].MTU = 1500
		r := collectFake(t, fakeNodeFS(), n)
		wantStatus(t, r, "network.bridge.cni0", StatusWarn, "")
	})
	t.Run("calico vxlan, underlay by local address", func(t *testing.T) {
		n := &fakeNet{links: []Link{
			{Index: 2, Name: "ens3", Kind: "device", MTU: 9001, Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/24")}},
			{Index: 3, Name: "vxlan.calico", Kind: "vxlan", MTU: 8951, VNI: 4096, Port: 4789, Local: netip.MustParseAddr("10.0.0.5")},
			{Index: 4, Name: "cali1234abcd", Kind: "veth", MTU: 8951},
		}}
		r := collectFake(t, fstest.MapFS{}, n)
		o := r.Network.Overlays[0]
		if r.Network.CNI != CNICalico || o.Underlay != "ens3" || o.UnderlayFrom != "local-address" {
			t.Errorf("cni %s overlay %+v", r.Network.CNI, o)
		}
		wantStatus(t, r, "network.overlay.vxlan.calico.mtu", StatusOK, "8951 (ens3 9001 − 50 = 8951)")
		wantStatus(t, r, "network.bridges", StatusInfo, "none")
	})
	t.Run("cilium geneve flow-based, underlay by default route, IPv6", func(t *testing.T) {
		n := &fakeNet{links: []Link{
			{Index: 2, Name: "eth0", Kind: "device", MTU: 1500, DefaultRoute: true},
			{Index: 3, Name: "cilium_geneve", Kind: "geneve", MTU: 1450, FlowBased: true, Port: 6081, Remote: netip.MustParseAddr("fd00::1")},
			{Index: 4, Name: "cilium_host", Kind: "veth", MTU: 1500},
		}}
		r := collectFake(t, fstest.MapFS{}, n)
		o := r.Network.Overlays[0]
		if r.Network.CNI != CNICilium || o.Underlay != "eth0" || o.UnderlayFrom != "default-route" || o.Overhead != 70 {
			t.Errorf("cni %s overlay %+v", r.Network.CNI, o)
		}
		wantStatus(t, r, "network.overlay.cilium_geneve.mtu", StatusBad, "1450 (eth0 1500 − 70 = 1430)")
		if v := mustItem(t, r, "network.overlay.cilium_geneve").Value; !strings.HasPrefix(v, "flow-based") {
			t.Errorf("value %q", v)
		}
	})
	t.Run("ipip without underlay", func(t *testing.T) {
		n := &fakeNet{links: []Link{{Index: 2, Name: "tunl0", Kind: "ipip", MTU: 1480}}}
		r := collectFake(t, fstest.MapFS{}, n)
		wantStatus(t, r, "network.overlay.tunl0.mtu", StatusUnknown, "1480 (underlay unknown)")
	})
	t.Run("idle ipip fallback device", func(t *testing.T) {
		// Every namespace has tunl0 once ipip is loaded: down, no
		// address, it is no overlay.
		n := &fakeNet{links: []Link{{Index: 2, Name: "tunl0", Kind: "ipip", MTU: 1480, Down: true}}}
		r := collectFake(t, fstest.MapFS{}, n)
		if len(r.Network.Overlays) != 0 {
			t.Errorf("overlays %+v", r.Network.Overlays)
		}
		wantStatus(t, r, "network.overlays", StatusInfo, "none")
	})
	t.Run("two CNIs", func(t *testing.T) {
		n := fakeFlannelNet()
		n.links = append(n.links, Link{Index: 9, Name: "vxlan.calico", Kind: "vxlan", MTU: 1450, VNI: 4096, Port: 4789, UnderlayIndex: 2})
		r := collectFake(t, fakeNodeFS(), n)
		wantStatus(t, r, "network.cni", StatusWarn, "")
	})
	t.Run("links unreadable", func(t *testing.T) {
		r := collectFake(t, fstest.MapFS{}, &fakeNet{linkErr: errors.New("EPERM")})
		wantStatus(t, r, "network.links", StatusUnknown, "unknown")
		wantStatus(t, r, "kube_proxy.kube_ipvs0", StatusUnknown, "unknown")
	})
}

func TestJSONRoundTrip(t *testing.T) {
	r := collectFake(t, fakeNodeFS(), fakeFlannelNet())
	r.SetBackends([]Item{{ID: "backend.netfilter", Name: "netfilter links", Value: "supported", Status: StatusOK}})
	roundTrip(t, r)
	roundTrip(t, collectFake(t, fstest.MapFS{}, &fakeNet{linkErr: errors.New("x"), nftErr: errors.New("y"), ipvsErr: errors.New("z")}))
	roundTrip(t, &Report{})
}

func roundTrip(t *testing.T, r *Report) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, &back) {
		t.Errorf("round trip differs:\n%+v\n%+v", r, &back)
	}
}

func TestSetBackends(t *testing.T) {
	r := collectFake(t, fakeNodeFS(), fakeFlannelNet())
	if s := r.Section(SectionBackends); s == nil || len(s.Items) != 0 {
		t.Fatalf("backends section %+v", s)
	}
	r.SetBackends([]Item{{ID: "backend.kprobe", Name: "kprobe", Value: "not supported", Status: StatusWarn}})
	if it := r.Item("backend.kprobe"); it == nil || r.Worst() != StatusWarn && r.Worst() != StatusBad {
		t.Errorf("item %+v worst %s", it, r.Worst())
	}
	var ids []string
	for _, s := range r.Sections {
		ids = append(ids, s.ID)
	}
	want := []string{SectionKernel, SectionBackends, SectionModules, SectionSysctls, SectionKubeProxy, SectionNetwork}
	if !slices.Equal(ids, want) {
		t.Errorf("sections %v, want %v", ids, want)
	}
}

// TestGolden renders the fake flannel node as text and JSON; regenerate with
// go test ./internal/doctor/ -update.
func TestGolden(t *testing.T) {
	r := collectFake(t, fakeNodeFS(), fakeFlannelNet())
	var text bytes.Buffer
	if err := r.WriteText(&text, false); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "flannel-node.txt", text.Bytes())
	golden(t, "flannel-node.json", append(js, '\n'))

	var colored bytes.Buffer
	if err := r.WriteText(&colored, true); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(colored.Bytes(), []byte("\x1b[33mwarn")) || bytes.Contains(text.Bytes(), []byte("\x1b[")) {
		t.Error("color only when asked")
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden (run with -update to accept):\n%s", name, got)
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteTextError(t *testing.T) {
	r := collectFake(t, fakeNodeFS(), fakeFlannelNet())
	if err := r.WriteText(errWriter{}, false); err == nil {
		t.Error("no error")
	}
}

func TestCollectCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Collect(ctx, Options{FS: fstest.MapFS{}, Net: &fakeNet{}}); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
}

func TestParseIPTablesSave(t *testing.T) {
	out := "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n"
	if got := parseIPTablesSave([]byte(out)); !slices.Equal(got, []string{"PREROUTING", "KUBE-SERVICES"}) {
		t.Errorf("got %v", got)
	}
}

// iptEntry builds one ipt_entry with an xt_entry_target carrying data.
func iptEntry(target, data string) []byte { return xtEntry(xtIPv4, target, data) }

// xtEntry builds one entry of the family with an xt_entry_target carrying
// data.
func xtEntry(fam xtFamily, target, data string) []byte {
	tsize := xtTargetDataOff + (len(data)+1+7)&^7
	e := make([]byte, fam.entrySize+tsize)
	binary.NativeEndian.PutUint16(e[fam.targetOff:], uint16(fam.entrySize))
	binary.NativeEndian.PutUint16(e[fam.nextOff:], uint16(len(e)))
	t := e[fam.entrySize:]
	binary.NativeEndian.PutUint16(t, uint16(tsize))
	copy(t[xtTargetNameOff:], target)
	copy(t[xtTargetDataOff:], data)
	return e
}

func TestParseIPTEntries(t *testing.T) {
	var blob []byte
	blob = append(blob, iptEntry("", "\x00\x00\x00\x00")...) // PREROUTING policy
	blob = append(blob, iptEntry("ERROR", "KUBE-SERVICES")...)
	blob = append(blob, iptEntry("DNAT", "xxxxxxxx")...)
	blob = append(blob, iptEntry("ERROR", "KUBE-NODEPORTS")...)
	blob = append(blob, iptEntry("ERROR", "ERROR")...)
	got, err := xtIPv4.parseEntries(blob)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"KUBE-SERVICES", "KUBE-NODEPORTS"}) {
		t.Errorf("got %v", got)
	}
	if _, err := xtIPv4.parseEntries(blob[:len(blob)-5]); err == nil {
		t.Error("truncated blob parsed")
	}
	bad := iptEntry("ERROR", "X")
	binary.NativeEndian.PutUint16(bad[xtIPv4.nextOff:], 8)
	if _, err := xtIPv4.parseEntries(bad); err == nil {
		t.Error("bad next_offset parsed")
	}
}
