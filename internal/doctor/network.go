package doctor

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// CNI guesses.
const (
	CNIFlannel = "flannel"
	CNICalico  = "calico"
	CNICilium  = "cilium"
	CNIUnknown = "unknown"
)

// Encapsulation overheads in bytes (outer IP + UDP + header + inner Ethernet).
const (
	vxlanOverhead4 = 50
	vxlanOverhead6 = 70
	ipipOverhead   = 20
)

func isOverlayKind(kind string) bool {
	return kind == "vxlan" || kind == "ipip" || kind == "geneve"
}

// isIdleFallback reports whether l is the ipip module's fallback device
// (tunl0), which every network namespace gets once the module is loaded,
// left down and without an address: nothing uses it. Calico's IPIP mode
// sets it up with an address.
func isIdleFallback(l Link) bool {
	return l.Kind == "ipip" && l.Down && len(l.Addrs) == 0 && !l.Local.IsValid() && !l.Remote.IsValid()
}

// network finds overlay devices and pod bridges in the inspected netns.
func (c *collector) network() Network {
	nw := Network{CNI: CNIUnknown, Overlays: []Overlay{}, Bridges: []Bridge{}}
	if c.linkErr != nil {
		return nw
	}
	for _, l := range c.links {
		if !isOverlayKind(l.Kind) || isIdleFallback(l) {
			continue
		}
		o := Overlay{Name: l.Name, Kind: l.Kind, MTU: l.MTU, VNI: l.VNI, Port: l.Port, FlowBased: l.FlowBased}
		if l.Local.IsValid() {
			o.Local = l.Local.String()
		}
		if l.Remote.IsValid() {
			o.Remote = l.Remote.String()
		}
		v6 := l.Local.Is6() || l.Remote.Is6()
		switch l.Kind {
		case "vxlan":
			learning := l.Learning
			o.Learning = &learning
			o.Overhead = vxlanOverhead4
			if v6 {
				o.Overhead = vxlanOverhead6
			}
		case "geneve":
			o.Overhead = vxlanOverhead4
			if v6 {
				o.Overhead = vxlanOverhead6
			}
		case "ipip":
			o.Overhead = ipipOverhead
		}
		if u, from := c.underlay(l); u != nil {
			o.Underlay, o.UnderlayFrom, o.UnderlayMTU = u.Name, from, u.MTU
		}
		nw.Overlays = append(nw.Overlays, o)
	}
	slices.SortFunc(nw.Overlays, func(a, b Overlay) int { return strings.Compare(a.Name, b.Name) })

	for _, l := range c.links {
		if l.Kind != "bridge" {
			continue
		}
		b := Bridge{Name: l.Name, MTU: l.MTU, Ports: []string{}}
		for _, p := range c.links {
			if p.MasterIndex == l.Index && p.Index != l.Index {
				b.Ports = append(b.Ports, p.Name)
				if p.Kind == "veth" {
					b.VethPorts++
				}
			}
		}
		slices.Sort(b.Ports)
		if l.Name == "cni0" || l.Name == "cbr0" || b.VethPorts > 0 {
			nw.Bridges = append(nw.Bridges, b)
		}
	}
	slices.SortFunc(nw.Bridges, func(a, b Bridge) int { return strings.Compare(a.Name, b.Name) })

	nw.CNI, _ = guessCNI(c.links)
	nw.Addresses = c.addresses()
	return nw
}

// addresses are the node's own addresses (Network.Addresses).
func (c *collector) addresses() []netip.Addr {
	var out []netip.Addr
	for _, l := range c.links {
		if l.Name == kubeIPVSDevice {
			continue
		}
		for _, p := range l.Addrs {
			if a := p.Addr().Unmap(); a.IsValid() {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	out = slices.Compact(out)
	return out[:min(len(out), MaxAddresses)]
}

// underlay finds the device an overlay's encapsulated packets leave through:
// its own link attribute, else the owner of its local address, else the
// default-route device.
func (c *collector) underlay(l Link) (*Link, string) {
	if l.UnderlayIndex > 0 {
		if u := c.linkByIndex(l.UnderlayIndex); u != nil {
			return u, "link"
		}
	}
	if l.Local.IsValid() {
		for i := range c.links {
			for _, p := range c.links[i].Addrs {
				if p.Addr() == l.Local && c.links[i].Index != l.Index {
					return &c.links[i], "local-address"
				}
			}
		}
	}
	for i := range c.links {
		if c.links[i].DefaultRoute && !isOverlayKind(c.links[i].Kind) {
			return &c.links[i], "default-route"
		}
	}
	return nil, ""
}

var cniOrder = []string{CNICilium, CNICalico, CNIFlannel}

// guessCNI names the CNI plugin from device names, and returns the names
// that told, per plugin. The plugin with the most devices wins.
func guessCNI(links []Link) (string, map[string][]string) {
	evidence := map[string][]string{}
	for _, l := range links {
		n := l.Name
		switch {
		case strings.HasPrefix(n, "flannel"):
			evidence[CNIFlannel] = append(evidence[CNIFlannel], n)
		case strings.HasSuffix(n, ".calico"), strings.HasPrefix(n, "cali") && l.Kind == "veth":
			evidence[CNICalico] = append(evidence[CNICalico], n)
		case strings.HasPrefix(n, "cilium_"), strings.HasPrefix(n, "lxc") && l.Kind == "veth":
			evidence[CNICilium] = append(evidence[CNICilium], n)
		}
	}
	best, n := CNIUnknown, 0
	for _, cni := range cniOrder {
		slices.Sort(evidence[cni])
		if len(evidence[cni]) > n {
			best, n = cni, len(evidence[cni])
		}
	}
	return best, evidence
}

func (c *collector) networkItems(nw Network) []Item {
	var items []Item
	if c.linkErr != nil {
		return []Item{{ID: "network.links", Name: "network devices", Value: "unknown", Status: StatusUnknown,
			Explain: "cannot list devices over rtnetlink", Check: "ip -d link show", Source: c.linkErr.Error()}}
	}

	cni := Item{ID: "network.cni", Name: "CNI (guessed from device names)", Value: nw.CNI, Status: StatusInfo,
		Check: "ls /etc/cni/net.d/; ip -br link"}
	_, evidence := guessCNI(c.links)
	if len(evidence) > 0 {
		var told []string
		for _, cn := range cniOrder {
			if len(evidence[cn]) > 0 {
				told = append(told, cn+": "+strings.Join(evidence[cn], ", "))
			}
		}
		cni.Source = "devices " + strings.Join(told, "; ")
		cni.Explain = "the plugin that wired pods and overlay on this node"
		if len(evidence) > 1 {
			cni.Status = StatusWarn
			cni.Explain = "devices of more than one CNI plugin: leftovers can capture pod traffic"
		}
	} else {
		cni.Source = "no flannel*, *.calico, cali*, cilium_* or lxc* devices"
		cni.Explain = "no known CNI device names"
	}
	items = append(items, cni)

	if len(nw.Overlays) == 0 {
		items = append(items, Item{ID: "network.overlays", Name: "overlay devices", Value: "none", Status: StatusInfo,
			Explain: "no vxlan/ipip/geneve device: single node, or a routed CNI (BGP, native routing)",
			Check:   "ip -d link show type vxlan; ip -d link show type ipip; ip -d link show type geneve", Source: "rtnetlink"})
	}
	minOverlayMTU := 0
	for _, o := range nw.Overlays {
		items = append(items, overlayItem(o), overlayMTUItem(o))
		if minOverlayMTU == 0 || o.MTU < minOverlayMTU {
			minOverlayMTU = o.MTU
		}
	}

	if len(nw.Bridges) == 0 {
		items = append(items, Item{ID: "network.bridges", Name: "pod bridges", Value: "none", Status: StatusInfo,
			Explain: "no cni0/cbr0 or bridge with veth ports: pods attach by routing (calico, cilium) or no pods yet",
			Check:   "ip -d link show type bridge", Source: "rtnetlink"})
	}
	for _, b := range nw.Bridges {
		it := Item{ID: "network.bridge." + b.Name, Name: b.Name + " (bridge)", Status: StatusOK,
			Check: "bridge link show master " + b.Name + "; ip -d link show " + b.Name, Source: "rtnetlink"}
		it.Value = fmt.Sprintf("MTU %d, %s", b.MTU, plural(len(b.Ports), "port", "ports"))
		if len(b.Ports) > 0 {
			it.Value += ": " + strings.Join(b.Ports, ", ")
		}
		it.Explain = "same-node pod traffic is switched here (and through netfilter with br_netfilter)"
		if b.VethPorts == 0 {
			it.Status = StatusInfo
			it.Explain = "pod bridge without veth ports: no pods attached yet"
		}
		if minOverlayMTU > 0 && b.MTU > minOverlayMTU {
			it.Status = StatusWarn
			it.Explain = fmt.Sprintf("bridge MTU %d above overlay MTU %d: large pod packets to other nodes are dropped or fragmented", b.MTU, minOverlayMTU)
		}
		items = append(items, it)
	}
	return items
}

func overlayItem(o Overlay) Item {
	it := Item{ID: "network.overlay." + o.Name, Name: o.Name + " (" + o.Kind + ")", Status: StatusInfo,
		Check: "ip -d link show " + o.Name, Source: "rtnetlink"}
	var parts []string
	switch {
	case o.FlowBased:
		parts = append(parts, "flow-based (VNI per packet)")
	case o.Kind != "ipip":
		parts = append(parts, fmt.Sprintf("VNI %d", o.VNI))
	}
	if o.Port != 0 {
		parts = append(parts, fmt.Sprintf("port %d", o.Port))
	}
	if o.Underlay != "" {
		u := "underlay " + o.Underlay
		if o.UnderlayFrom != "link" {
			u += " (by " + o.UnderlayFrom + ")"
		}
		parts = append(parts, u)
	} else {
		parts = append(parts, "underlay unknown")
	}
	if o.Local != "" {
		parts = append(parts, "local "+o.Local)
	}
	if o.Remote != "" {
		parts = append(parts, "remote "+o.Remote)
	}
	parts = append(parts, fmt.Sprintf("MTU %d", o.MTU))
	if o.Learning != nil {
		if *o.Learning {
			parts = append(parts, "learning on")
		} else {
			parts = append(parts, "learning off")
		}
	}
	it.Value = strings.Join(parts, ", ")
	switch o.Kind {
	case "vxlan":
		it.Explain = "pod traffic to other nodes is wrapped in UDP here and leaves through the underlay"
		it.Check += "; bridge fdb show dev " + o.Name
	case "geneve":
		it.Explain = "pod traffic to other nodes is wrapped in Geneve/UDP here"
	case "ipip":
		it.Explain = "pod traffic to other nodes is wrapped in an outer IPv4 header here"
	}
	return it
}

func overlayMTUItem(o Overlay) Item {
	it := Item{ID: "network.overlay." + o.Name + ".mtu", Name: o.Name + " MTU",
		Check: "ip link show " + o.Name + " | grep -o 'mtu [0-9]*'", Source: "rtnetlink"}
	if o.Underlay == "" || o.UnderlayMTU == 0 {
		it.Value, it.Status = fmt.Sprintf("%d (underlay unknown)", o.MTU), StatusUnknown
		it.Explain = fmt.Sprintf("must be at most the underlay MTU − %d", o.Overhead)
		return it
	}
	limit := o.UnderlayMTU - o.Overhead
	it.Value = fmt.Sprintf("%d (%s %d − %d = %d)", o.MTU, o.Underlay, o.UnderlayMTU, o.Overhead, limit)
	if o.MTU > limit {
		it.Status = StatusBad
		it.Explain = fmt.Sprintf("%s adds %d bytes: full-size pod packets exceed the underlay MTU and are dropped or fragmented", o.Kind, o.Overhead)
	} else {
		it.Status = StatusOK
		it.Explain = fmt.Sprintf("encapsulated packets (+%d bytes) fit the underlay MTU", o.Overhead)
	}
	if o.Kind == "geneve" {
		// Options ride in each packet's header, not in the device's
		// configuration: what the OVS or eBPF datapath adds is not seen here.
		it.Explain += "; Geneve options, which the datapath adds per packet (4 to 252 bytes), come on top"
	}
	return it
}
