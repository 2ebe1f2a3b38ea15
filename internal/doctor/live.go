package doctor

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/cloudflare/ipvs"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/kernel"
)

// ErrIPVSUnavailable is returned by NetSource.IPVS when the kernel has no
// IPVS (the "IPVS" generic netlink family does not exist).
var ErrIPVSUnavailable = errors.New("ip_vs not available")

// inNetns runs fn on a locked OS thread that joined the network namespace
// spec names (a name or a path, see kernel.NetnsPath; "" = stay in the
// caller's). Sockets fn opens and the /proc/sys/net and /proc/thread-self/net
// files it reads belong to that namespace. If the thread cannot return to its
// original namespace it stays locked, so the runtime ends it instead of
// reusing it.
func inNetns(spec string, fn func() error) error {
	var target netns.NsHandle = -1
	if spec != "" {
		var err error
		target, err = kernel.OpenNetns(spec)
		if err != nil {
			return err
		}
		defer target.Close()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if spec == "" {
			err := fn()
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", spec, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// liveFS reads the real filesystem. proc/net is redirected to
// /proc/thread-self/net: /proc/net is /proc/self/net, which shows the
// namespace of the process's main thread, not of the thread that reads.
type liveFS struct{}

func (liveFS) path(name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if name == "proc/net" || strings.HasPrefix(name, "proc/net/") {
		return "/proc/thread-self/net" + strings.TrimPrefix(name, "proc/net"), nil
	}
	return "/" + name, nil
}

func (f liveFS) Open(name string) (fs.File, error) {
	p, err := f.path(name)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

// ReadFile reads with one large first read: a sysctl file returns nothing
// for a read at a non-zero offset, so fs.ReadFile's 1-byte first read (proc
// files report size 0) would cut "262144" to "2".
func (f liveFS) ReadFile(name string) ([]byte, error) {
	p, err := f.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// liveNet asks the kernel from the calling thread's network namespace; Collect
// calls it from inside inNetns.
type liveNet struct{}

func (liveNet) Links() ([]Link, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	defer h.Close()
	nls, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	defRoute := map[int]bool{}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.LinkIndex > 0 {
			defRoute[r.LinkIndex] = true
		}
		for _, nh := range r.MultiPath {
			defRoute[nh.LinkIndex] = true
		}
	}
	links := make([]Link, 0, len(nls))
	for _, nl := range nls {
		a := nl.Attrs()
		l := Link{
			Index:        a.Index,
			Name:         a.Name,
			Kind:         nl.Type(),
			MTU:          a.MTU,
			MasterIndex:  a.MasterIndex,
			DefaultRoute: defRoute[a.Index],
			Down:         a.Flags&net.FlagUp == 0,
		}
		for _, ad := range addrs {
			if ad.LinkIndex != a.Index || ad.IPNet == nil {
				continue
			}
			if p, ok := ipnetPrefix(ad.IPNet); ok {
				l.Addrs = append(l.Addrs, p)
			}
		}
		switch d := nl.(type) {
		case *netlink.Vxlan:
			l.VNI = uint32(d.VxlanId)
			l.Port = uint16(d.Port)
			l.Learning = d.Learning
			l.FlowBased = d.FlowBased
			l.UnderlayIndex = d.VtepDevIndex
			l.Local = ipAddr(d.SrcAddr)
			l.Remote = ipAddr(d.Group)
		case *netlink.Geneve:
			l.VNI = d.ID
			l.Port = d.Dport
			l.FlowBased = d.FlowBased
			l.Remote = ipAddr(d.Remote)
		case *netlink.Iptun:
			l.UnderlayIndex = int(d.Link)
			l.FlowBased = d.FlowBased
			l.Local = ipAddr(d.Local)
			l.Remote = ipAddr(d.Remote)
		}
		links = append(links, l)
	}
	return links, nil
}

func ipAddr(ip net.IP) netip.Addr {
	if ip == nil {
		return netip.Addr{}
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a.Unmap()
}

func ipnetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a := ipAddr(n.IP)
	if !a.IsValid() {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}

var nftFamilies = map[nftables.TableFamily]string{
	nftables.TableFamilyINet:   "inet",
	nftables.TableFamilyIPv4:   "ip",
	nftables.TableFamilyIPv6:   "ip6",
	nftables.TableFamilyARP:    "arp",
	nftables.TableFamilyNetdev: "netdev",
	nftables.TableFamilyBridge: "bridge",
}

func nftFamily(f nftables.TableFamily) string {
	if s, ok := nftFamilies[f]; ok {
		return s
	}
	return fmt.Sprintf("family-%d", f)
}

func (liveNet) NFTables() ([]NFTable, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	out := make([]NFTable, 0, len(tables))
	for _, t := range tables {
		nt := NFTable{Family: nftFamily(t.Family), Name: t.Name}
		for _, ch := range chains {
			if ch.Table != nil && ch.Table.Name == t.Name && ch.Table.Family == t.Family {
				nt.Chains = append(nt.Chains, ch.Name)
			}
		}
		slices.Sort(nt.Chains)
		out = append(out, nt)
	}
	return out, nil
}

func (liveNet) IPVS() (IPVS, error) {
	c, err := ipvs.New()
	if errors.Is(err, os.ErrNotExist) {
		return IPVS{}, fmt.Errorf("look up IPVS generic netlink family: %w", ErrIPVSUnavailable)
	}
	if err != nil {
		return IPVS{}, fmt.Errorf("open IPVS generic netlink: %w", err)
	}
	if cl, ok := c.(io.Closer); ok {
		defer cl.Close()
	}
	svcs, err := c.Services()
	if errors.Is(err, os.ErrNotExist) {
		// cloudflare/ipvs answers an empty dump with os.ErrNotExist.
		return IPVS{Available: true}, nil
	}
	if err != nil {
		return IPVS{Available: true}, fmt.Errorf("list IPVS services: %w", err)
	}
	res := IPVS{Available: true, Services: len(svcs)}
	for _, s := range svcs {
		if s.Scheduler != "" && !slices.Contains(res.Schedulers, s.Scheduler) {
			res.Schedulers = append(res.Schedulers, s.Scheduler)
		}
		dests, err := c.Destinations(s.Service)
		if err != nil && !errors.Is(err, os.ErrNotExist) { // ErrNotExist: none
			return res, fmt.Errorf("list IPVS real servers: %w", err)
		}
		res.RealServers += len(dests)
		vs := VirtualService{Protocol: s.Protocol.String(), Scheduler: s.Scheduler, RealServers: len(dests)}
		if s.FWMark != 0 {
			vs.Address = fmt.Sprintf("fwmark:%d", s.FWMark)
		} else {
			vs.Address = netip.AddrPortFrom(s.Address, s.Port).String()
		}
		res.VirtualServices = append(res.VirtualServices, vs)
	}
	slices.Sort(res.Schedulers)
	slices.SortFunc(res.VirtualServices, func(a, b VirtualService) int {
		return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Protocol, b.Protocol))
	})
	if len(res.VirtualServices) > MaxVirtualServices {
		res.VirtualServices = res.VirtualServices[:MaxVirtualServices]
	}
	return res, nil
}

func (liveNet) LegacyChains(family, table string) ([]string, error) {
	fam, err := xtFamilyOf(family)
	if err != nil {
		return nil, err
	}
	chains, err := iptLegacyChains(fam, table)
	if err == nil {
		return chains, nil
	}
	// Fall back to the userspace tool, if the node has it.
	save, lerr := lookPath(fam.tool + "-save")
	if lerr != nil {
		return nil, err
	}
	out, xerr := runCommand(save, "-t", table)
	if xerr != nil {
		return nil, errors.Join(err, fmt.Errorf("run %s: %w", save, xerr))
	}
	return parseIPTablesSave(out), nil
}

func (liveNet) LegacyRules(family, table string) ([]Rule, error) {
	fam, err := xtFamilyOf(family)
	if err != nil {
		return nil, err
	}
	b, err := iptLegacyEntries(fam, table)
	if err != nil {
		return nil, err
	}
	return fam.parseRules(b)
}

// parseIPTablesSave returns the chain names declared (":NAME POLICY ...") in
// iptables-save output.
func parseIPTablesSave(out []byte) []string {
	var chains []string
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, ":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				chains = append(chains, f[0])
			}
		}
	}
	return chains
}
