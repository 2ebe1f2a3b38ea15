package doctor

import (
	"net/netip"
	"strings"
)

// SchemaVersion is the version of the Report JSON shape. It changes only when
// a field is removed or changes meaning; new fields do not bump it.
const SchemaVersion = 1

// Status grades one item of the report.
type Status string

// Item statuses, from best to worst; Info and Unknown are not grades.
const (
	StatusOK      Status = "ok"      // as Kubernetes networking expects
	StatusInfo    Status = "info"    // a fact, not good or bad by itself
	StatusWarn    Status = "warn"    // works, but some traffic class may break or hide
	StatusBad     Status = "bad"     // traffic will be dropped or mis-routed
	StatusUnknown Status = "unknown" // could not be determined; Source says why
)

// Section identifiers, in the order Collect fills them.
const (
	SectionKernel    = "kernel"
	SectionBackends  = "backends"
	SectionModules   = "modules"
	SectionSysctls   = "sysctls"
	SectionKubeProxy = "kube_proxy"
	SectionNetwork   = "network"
)

// Item is one checked fact.
type Item struct {
	// ID is a stable key, e.g. "sysctl.net.ipv4.ip_forward", "module.bridge".
	ID string `json:"id"`
	// Name is what an operator would call it, e.g. "net.ipv4.ip_forward".
	Name string `json:"name"`
	// Value is the current value as text ("1", "built-in", "absent", ...).
	Value  string `json:"value"`
	Status Status `json:"status"`
	// Explain says in one line what the value means for Kubernetes networking.
	Explain string `json:"explain"`
	// Check is the shell command an operator would run to see it by hand.
	Check string `json:"check,omitempty"`
	// Source says where the value was read, or why it is unknown.
	Source string `json:"source,omitempty"`
}

// Section is an ordered group of items.
type Section struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Items []Item `json:"items"`
}

// Presence is a three-state answer to "is it there?".
type Presence string

// Presence values.
const (
	Present Presence = "present"
	Absent  Presence = "absent"
	Unsure  Presence = "unknown"
)

// Kube-proxy modes as the node shows them.
const (
	ModeIPTables = "iptables"
	ModeIPVS     = "ipvs"
	ModeNFTables = "nftables"
	ModeNone     = "none"
	ModeUnknown  = "unknown"
)

// KubeProxy is the structured result of the kube-proxy mode detection.
type KubeProxy struct {
	// Mode is iptables, ipvs, nftables, none or unknown.
	Mode string `json:"mode"`
	// KubeServicesNFT: chain KUBE-SERVICES in nf_tables table "ip nat" or
	// "ip6 nat" (iptables-nft, ip6tables-nft).
	KubeServicesNFT Presence `json:"kube_services_nft"`
	// KubeServicesLegacy: chain KUBE-SERVICES in a legacy x_tables nat
	// table, iptables-legacy's or ip6tables-legacy's.
	KubeServicesLegacy Presence `json:"kube_services_legacy"`
	// NFTablesFamilies lists the families ("ip", "ip6", "inet") that hold an
	// nftables table named kube-proxy; empty when none does.
	NFTablesFamilies []string `json:"nftables_kube_proxy_families"`
	// KubeIPVS0: the kube-ipvs0 dummy device that holds IPVS service IPs.
	KubeIPVS0 Presence `json:"kube_ipvs0"`
	IPVS      IPVS     `json:"ipvs"`
	// NoEndpoints lists kube-proxy's rules for Service ports without
	// endpoints, which reject or drop every packet sent to them: the first
	// MaxVirtualServices of them (sorted), read from the iptables filter
	// table (iptables-nft and iptables-legacy) and from the nftables
	// kube-proxy table's no-endpoint maps.
	NoEndpoints []NoEndpointsRule `json:"no_endpoints,omitempty"`
	// Services counts the Services (namespace/name) kube-proxy's rules
	// name, with or without endpoints: the comments of the nat
	// KUBE-SERVICES and KUBE-NODEPORTS rules (iptables mode, IPv4 and
	// IPv6), of the kube-proxy table's
	// service-ips and service-nodeports maps (nftables mode), and of the
	// rules for ports without endpoints. IPVS mode's rules name none (see
	// IPVS).
	Services int `json:"services"`
	// ServicePorts lists the addresses and ports kube-proxy's rules send
	// to a Service port, each with the port's name: the first
	// MaxServicePorts of them, sorted (by Service, Kind, Addr, Proto,
	// Port). Read from the same rules as Services: the nat table's
	// KUBE-SERVICES (cluster, external and load-balancer IPs) and
	// KUBE-NODEPORTS (node ports) chains of iptables-nft (tables ip nat and
	// ip6 nat) and of iptables-legacy (IPv4), and the service-ips and
	// service-nodeports maps of the kube-proxy tables (nftables mode).
	// IPVS mode's rules name none.
	ServicePorts []ServicePort `json:"service_ports,omitempty"`
}

// MaxServicePorts bounds KubeProxy.ServicePorts: a node report travels in
// every recording.
const MaxServicePorts = 4096

// ServicePort is one address and port on which kube-proxy's rules send
// packets to a Service port.
type ServicePort struct {
	// Service is "NAMESPACE/NAME:PORT", PORT being the port's name, or its
	// number when the port is unnamed (kube-proxy then names the Service
	// alone; a node port's number is the Service port's, taken from the
	// Service's other addresses, and is left out when they do not tell).
	Service string `json:"service"`
	// Kind is KindClusterIP, KindExternalIP, KindLoadBalancerIP or
	// KindNodePort. nftables mode does not tell load-balancer IPs from
	// external IPs: both are KindExternalIP there.
	Kind string `json:"kind"`
	// Addr is the Service address; invalid (left out of the JSON) for a
	// node port, which is open on every local address of the node
	// (Network.Addresses).
	Addr  netip.Addr `json:"addr,omitzero"`
	Proto uint8      `json:"proto"` // 6 (TCP), 17 (UDP), 132 (SCTP)
	Port  uint16     `json:"port"`  // the Service port, or the node port
}

// ServicePort kinds.
const (
	KindClusterIP      = "cluster IP"
	KindExternalIP     = "external IP"
	KindLoadBalancerIP = "load balancer IP"
	KindNodePort       = "node port"
)

// NoEndpointsRule is one rule kube-proxy writes for a Service port that has
// no endpoints: packets to its address and port are rejected (ICMP port
// unreachable) or dropped before any DNAT.
type NoEndpointsRule struct {
	// Service is the Service port as kube-proxy names it in the rule:
	// "NAMESPACE/NAME", with ":PORT-NAME" for a named port.
	Service string `json:"service"`
	// Address is the ClusterIP, external IP or load-balancer IP; "" for a
	// NodePort, which the rule matches on every local address.
	Address  string `json:"address"`
	Protocol string `json:"protocol"` // "TCP", "UDP", "SCTP"
	Port     uint16 `json:"port"`     // the Service port, or the NodePort
	NodePort bool   `json:"node_port,omitempty"`
	// Action is "reject" (kube-proxy's answer when the Service has no
	// endpoints at all) or "drop" (it has endpoints, but its traffic
	// policy is Local and none is on this node).
	Action string `json:"action"`
	// Rule says where the rule is, in the words of the tool that lists
	// it: "iptables-nft filter KUBE-SERVICES", "iptables-legacy filter
	// KUBE-EXTERNAL-SERVICES", "nftables ip kube-proxy no-endpoint-services".
	Rule string `json:"rule"`
}

// NoEndpoints actions.
const (
	ActionReject = "reject"
	ActionDrop   = "drop"
)

// NamespaceName splits Service into the Service's namespace and name
// (without the port name); ok is false when it is not "NAMESPACE/NAME".
func (r NoEndpointsRule) NamespaceName() (ns, name string, ok bool) {
	ns, name, ok = strings.Cut(r.Service, "/")
	name, _, _ = strings.Cut(name, ":")
	return ns, name, ok && ns != "" && name != ""
}

// IPVS summarises the kernel's IPVS virtual services.
type IPVS struct {
	// Available is false when the kernel has no IPVS generic netlink family.
	Available   bool     `json:"available"`
	Services    int      `json:"services"`
	RealServers int      `json:"real_servers"`
	Schedulers  []string `json:"schedulers,omitempty"`
	// VirtualServices lists the services, the first MaxVirtualServices
	// of them (sorted), for pathtrace to name a connection's scheduler
	// where the kernel does not let its programs read it, and to tell a
	// service without real servers.
	VirtualServices []VirtualService `json:"virtual_services,omitempty"`
	Error           string           `json:"error,omitempty"`
}

// MaxVirtualServices bounds IPVS.VirtualServices: a node report travels in
// every recording.
const MaxVirtualServices = 4096

// VirtualService is one IPVS virtual service.
type VirtualService struct {
	Protocol    string `json:"protocol"` // "TCP", "UDP", "SCTP"
	Address     string `json:"address"`  // "10.96.0.10:80"; "fwmark:N" for a firewall-mark service
	Scheduler   string `json:"scheduler"`
	RealServers int    `json:"real_servers"`
}

// Network is the structured overlay and bridge view, with the node's
// addresses.
type Network struct {
	// CNI is the plugin guessed from device names: flannel, calico, cilium or
	// unknown.
	CNI      string    `json:"cni"`
	Overlays []Overlay `json:"overlays"`
	Bridges  []Bridge  `json:"bridges"`
	// Addresses are the node's own addresses, of every device but
	// kube-ipvs0 (whose addresses are IPVS mode's Service IPs), sorted
	// and without duplicates, the first MaxAddresses of them: a node port
	// is open on each. None when the devices could not be listed.
	Addresses []netip.Addr `json:"addresses,omitempty"`
}

// MaxAddresses bounds Network.Addresses.
const MaxAddresses = 1024

// Overlay is one tunnel device.
type Overlay struct {
	Name string `json:"name"`
	// Kind is the rtnetlink kind: vxlan, ipip or geneve.
	Kind string `json:"kind"`
	MTU  int    `json:"mtu"`
	// VNI is the VXLAN or Geneve network identifier (0 for ipip or
	// flow-based devices).
	VNI uint32 `json:"vni"`
	// Port is the UDP destination port (VXLAN, Geneve).
	Port uint16 `json:"port"`
	// FlowBased: external/collect_md device (cilium), VNI chosen per packet.
	FlowBased bool `json:"flow_based,omitempty"`
	// Learning is set for VXLAN only.
	Learning *bool  `json:"learning,omitempty"`
	Local    string `json:"local,omitempty"`
	Remote   string `json:"remote,omitempty"`
	// Underlay is the device the encapsulated packets leave through, and
	// UnderlayFrom how it was found: "link" (the device's own underlay
	// attribute), "local-address" or "default-route"; "" when not found.
	Underlay     string `json:"underlay,omitempty"`
	UnderlayFrom string `json:"underlay_from,omitempty"`
	UnderlayMTU  int    `json:"underlay_mtu,omitempty"`
	// Overhead is the encapsulation overhead in bytes used for the MTU check.
	Overhead int `json:"overhead"`
}

// Bridge is one pod bridge: cni0, cbr0 or any bridge with veth ports.
type Bridge struct {
	Name  string   `json:"name"`
	MTU   int      `json:"mtu"`
	Ports []string `json:"ports"`
	// VethPorts counts the ports that are veth devices.
	VethPorts int `json:"veth_ports"`
}

// Report is the node report. It round-trips through encoding/json unchanged,
// so it can be embedded in recordings.
type Report struct {
	SchemaVersion int `json:"schema_version"`
	// Netns is the namespace as requested: a name under /run/netns, a path,
	// or "" for the caller's own.
	Netns     string    `json:"netns"`
	Kernel    string    `json:"kernel_release"`
	Sections  []Section `json:"sections"`
	KubeProxy KubeProxy `json:"kube_proxy"`
	Network   Network   `json:"network"`
	// Facts are the settings the sysctls section shows, as values. A
	// report written before they existed has none in its JSON:
	// DecodeReports makes them from its items.
	Facts *Facts `json:"facts,omitempty"`
}

// Section returns the section with the given ID, or nil.
func (r *Report) Section(id string) *Section {
	for i := range r.Sections {
		if r.Sections[i].ID == id {
			return &r.Sections[i]
		}
	}
	return nil
}

// Item returns the item with the given ID from any section, or nil.
func (r *Report) Item(id string) *Item {
	for i := range r.Sections {
		for j := range r.Sections[i].Items {
			if r.Sections[i].Items[j].ID == id {
				return &r.Sections[i].Items[j]
			}
		}
	}
	return nil
}

// SetBackends fills the backends section (BPF attach families and their
// probes), which Collect leaves empty for the caller.
func (r *Report) SetBackends(items []Item) {
	if s := r.Section(SectionBackends); s != nil {
		s.Items = items
		return
	}
	r.Sections = append(r.Sections, Section{ID: SectionBackends, Title: "BPF backends", Items: items})
}

// Counts returns how many items have each status.
func (r *Report) Counts() map[Status]int {
	c := map[Status]int{}
	for _, s := range r.Sections {
		for _, it := range s.Items {
			c[it.Status]++
		}
	}
	return c
}

// Worst returns the worst grade in the report: bad, warn or ok. Info and
// unknown items do not count.
func (r *Report) Worst() Status {
	c := r.Counts()
	switch {
	case c[StatusBad] > 0:
		return StatusBad
	case c[StatusWarn] > 0:
		return StatusWarn
	}
	return StatusOK
}
