package trace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
	"github.com/pathtrace/pathtrace/internal/loader"
	"github.com/pathtrace/pathtrace/internal/render"
	"github.com/pathtrace/pathtrace/internal/stitch"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/internal/topology"
)

// Each cause of a drop (or warning) the diagnosis knows is reproduced in the
// demo cluster and the kernel's answer asserted: the drop hop, the reason
// this kernel gives, and the advice built from the node report taken when
// the trace started.

// failTCP tries a TCP exchange that the test expects to fail.
func failTCP(t *testing.T, from *topology.Pod, to netip.AddrPort) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if _, err := topology.TCPExchange(ctx, from, to, "ping"); err == nil {
		t.Fatalf("TCP exchange %s → %s went through", from.IP, to)
	}
}

// sendDF sends one UDP datagram of size payload bytes with the DF bit set
// (IP_PMTUDISC_PROBE: DF, at the device MTU, ignoring any learnt path MTU).
func sendDF(t *testing.T, from *topology.Pod, to netip.AddrPort, size int) {
	t.Helper()
	err := from.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE); err != nil {
			return err
		}
		return unix.Sendto(fd, make([]byte, size), 0, &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()})
	})
	if err != nil {
		t.Fatalf("send %d-byte DF datagram %s → %s: %v", size, from.IP, to, err)
	}
}

func run(t *testing.T, r interface {
	Run(context.Context, string, ...string) ([]byte, error)
}, args ...string) {
	t.Helper()
	if out, err := r.Run(context.Background(), args[0], args[1:]...); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// pathWhere returns the first path f accepts.
func pathWhere(t *testing.T, paths []*stitch.Path, what string, f func(*stitch.Path) bool) *stitch.Path {
	t.Helper()
	for _, p := range paths {
		if f(p) {
			return p
		}
	}
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(dump(p))
	}
	t.Fatalf("no path %s among %d:\n%s", what, len(paths), b.String())
	return nil
}

// udpTo matches a UDP packet of ipLen bytes of IP; a path first seen at tx
// on an Ethernet device has 14 bytes more.
func udpTo(src netip.Addr, dst netip.AddrPort, ipLen uint32) func(*stitch.Path) bool {
	return func(p *stitch.Path) bool {
		return p.Proto == decode.ProtoUDP && p.Src.Addr() == src && p.Dst == dst && (p.Len == ipLen || p.Len == ipLen+14)
	}
}

// icmpError matches an ICMP error of the given type and code (the tuple's
// ports) sent to dst.
func icmpError(dst netip.Addr, typ, code uint16) func(*stitch.Path) bool {
	return func(p *stitch.Path) bool {
		return p.Proto == decode.ProtoICMP && p.Dst.Addr() == dst && p.Src.Port() == typ && p.Dst.Port() == code
	}
}

// show logs the path as the text and JSON renderers print it (go test -v).
func show(t *testing.T, p *stitch.Path) {
	t.Helper()
	var text, js bytes.Buffer
	for _, r := range []render.Renderer{render.NewText(&text, render.TextOptions{}), render.NewJSON(&js)} {
		if err := r.Render(p); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("\n%s%s", text.String(), js.String())
}

// lastDrop returns the path's final hop, which must be a drop.
func lastDrop(t *testing.T, p *stitch.Path) *stitch.Hop {
	t.Helper()
	show(t, p)
	if p.Verdict != stitch.VerdictDropped || len(p.Hops) == 0 || p.Hops[len(p.Hops)-1].Kind != hop.Drop {
		t.Fatalf("path does not end in a drop:\n%s", dump(p))
	}
	return &p.Hops[len(p.Hops)-1]
}

func requireAdvice(t *testing.T, h *stitch.Hop, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(h.Advice, w) {
			t.Errorf("advice on the %s drop lacks %q:\n%s", h.Reason, w, h.Advice)
		}
	}
}

// requireWarning checks one warning of p contains every part of want.
func requireWarning(t *testing.T, p *stitch.Path, want ...string) {
	t.Helper()
	if p.Verdict != stitch.VerdictDropped {
		show(t, p)
	}
	for _, w := range p.Warnings {
		ok := true
		for _, part := range want {
			ok = ok && strings.Contains(w, part)
		}
		if ok {
			return
		}
	}
	t.Errorf("path #%d has no warning with %q; warnings:\n%s\n%s", p.ID, want, strings.Join(p.Warnings, "\n"), dump(p))
}

func requireReports(t *testing.T, sum Summary) {
	t.Helper()
	if len(sum.Reports) != 2 {
		t.Fatalf("%d node reports, want one per traced node (2)", len(sum.Reports))
	}
	for _, n := range sum.Nodes {
		if sum.Reports[n.Inode] == nil {
			t.Errorf("no report for node netns %s (inode %d)", n.Path, n.Inode)
		}
	}
}

func TestDiagnoseForwardDrop(t *testing.T) {
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	if err := n1.IPTables("-I", "FORWARD", "-s", topology.ClientIP.String(), "-d", topology.ServerIP.String(), "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	stop := tracing(t, c, topology.ClientIP)
	failTCP(t, c.Pod(topology.PodClient), topology.ClusterIP)
	paths, sum := stop()
	requireReports(t, sum)

	req := findPath(t, paths, topology.ClientIP, topology.ClusterIP.Addr(), tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Netfilter, hook: hop.Forward, netns: n1.NetnsName, out: "flannel.1", description: "FORWARD cni0 → flannel.1"},
		{kind: hop.Drop, hook: hop.Forward, netns: n1.NetnsName, reason: wantReason("NETFILTER_DROP"), description: "a NETFILTER_DROP in FORWARD"},
	})
	drop := lastDrop(t, req)
	if expectHop(hop.Table) {
		// The kernel shows the table's verdict: the advice names the
		// chain that returned it (nftables or iptables-legacy, as the
		// node's iptables writes its rules).
		requireAdvice(t, drop, "chain FORWARD", " on "+n1.NetnsName+" (in=cni0 out=flannel.1) returned ",
			"$ ip netns exec "+n1.NetnsName+" ")
		return
	}
	requireAdvice(t, drop,
		"A netfilter rule in FORWARD on "+n1.NetnsName+" (in=cni0 out=flannel.1)", "NetworkPolicy",
		"$ ip netns exec "+n1.NetnsName+" iptables -L FORWARD -v -n --line-numbers",
		"$ ip netns exec "+n1.NetnsName+" nft list ruleset")
}

func TestDiagnoseIPForwardOff(t *testing.T) {
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	if err := n1.SetSysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	stop := tracing(t, c, topology.ClientIP)
	failTCP(t, c.Pod(topology.PodClient), topology.ServerAddr)
	paths, sum := stop()
	requireReports(t, sum)

	// This kernel frees it in ip_error with IP_INADDRERRORS (forwarding
	// disabled on the input device) after the routing lookup on cni0, and
	// sends no ICMP error.
	req := findPath(t, paths, topology.ClientIP, topology.ServerIP, tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Netfilter, hook: hop.Prerouting, netns: n1.NetnsName, description: "PREROUTING on node1"},
		{kind: hop.Rx, dev: "cni0", netns: n1.NetnsName, description: "rx on cni0"},
		{kind: hop.Drop, dev: "cni0", netns: n1.NetnsName, reason: wantReason("IP_INADDRERRORS"), description: "an IP_INADDRERRORS drop on cni0"},
	})
	for _, h := range req.Hops {
		if h.Hook == hop.Forward {
			t.Errorf("a FORWARD hop although ip_forward=0:\n%s", dump(req))
		}
	}
	requireAdvice(t, lastDrop(t, req),
		"net.ipv4.ip_forward=0 on "+n1.NetnsName+": the node drops what it should route",
		"$ ip netns exec "+n1.NetnsName+" sysctl net.ipv4.ip_forward")
}

func TestDiagnoseRPFilterStrict(t *testing.T) {
	c := cluster(t, topology.Options{})
	n2 := c.Node(topology.Node2)
	// Node2 routes node1's pod CIDR over the underlay, while node1 sends
	// through the overlay: the packets come in on flannel.1 and the route
	// back leaves through eth0.
	if err := n2.SetSysctl("net.ipv4.conf.all.rp_filter", "1"); err != nil {
		t.Fatal(err)
	}
	run(t, n2, "ip", "route", "replace", topology.Node1PodCIDR.String(), "via", topology.Node1UnderlayIP.String(), "dev", "eth0")
	stop := tracing(t, c, topology.ClientIP)
	failTCP(t, c.Pod(topology.PodClient), topology.ServerAddr)
	paths, sum := stop()
	requireReports(t, sum)

	req := findPath(t, paths, topology.ClientIP, topology.ServerIP, tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Decap, dev: "flannel.1", netns: n2.NetnsName, description: "decap on node2"},
		{kind: hop.Netfilter, hook: hop.Prerouting, in: "flannel.1", netns: n2.NetnsName, description: "PREROUTING on node2 flannel.1"},
		{kind: hop.Drop, dev: "flannel.1", netns: n2.NetnsName, reason: wantReason("IP_RPFILTER"), description: "an IP_RPFILTER drop on flannel.1"},
	})
	requireAdvice(t, lastDrop(t, req),
		"Strict reverse-path filtering (rp_filter=1, from all) on "+n2.NetnsName,
		"route back to "+topology.ClientIP.String()+" does not leave through flannel.1",
		"$ ip netns exec "+n2.NetnsName+" ip route get "+topology.ClientIP.String(),
		"sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.flannel/1.rp_filter")
}

func TestDiagnoseNoRoute(t *testing.T) {
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	run(t, n1, "ip", "route", "del", topology.Node2PodCIDR.String())
	stop := tracing(t, c, topology.ClientIP)
	failTCP(t, c.Pod(topology.PodClient), topology.ServerAddr)
	paths, sum := stop()
	requireReports(t, sum)

	req := findPath(t, paths, topology.ClientIP, topology.ServerIP, tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Rx, dev: "cni0", netns: n1.NetnsName, description: "rx on cni0"},
		{kind: hop.Drop, dev: "cni0", netns: n1.NetnsName, reason: wantReason("IP_INNOROUTES"), description: "an IP_INNOROUTES drop on cni0"},
	})
	requireAdvice(t, lastDrop(t, req),
		"No route to "+topology.ServerIP.String()+" on "+n1.NetnsName, "ICMP net unreachable",
		"$ ip netns exec "+n1.NetnsName+" ip route get "+topology.ServerIP.String(),
		"$ ip netns exec "+n1.NetnsName+" ip route show dev flannel.1")
	// The kernel answers with ICMP net unreachable (type 3, code 0) from
	// cni0's address.
	icmp := pathWhere(t, paths, "ICMP net unreachable to the client", icmpError(topology.ClientIP, 3, 0))
	requireWarning(t, icmp, "ICMP error from "+n1.BridgeIP.String(), "net unreachable")
}

func TestDiagnoseConntrackFull(t *testing.T) {
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	topUp := fillConntrack(t, n1)
	stop := tracing(t, c, topology.ClientIP)
	// Entries the fill counted can go before the SYN (the node's own:
	// the conntrack GC evicts unassured ones from a table this full,
	// the likely cause): twice in six runs on arm64 6.12 under QEMU,
	// the SYN found room after the trace's slow start. The table is
	// full again now.
	topUp()
	failTCP(t, c.Pod(topology.PodClient), topology.PeerAddr)
	paths, sum := stop()
	requireReports(t, sum)

	// A new connection finds no room: nf_conntrack_in returns NF_DROP at
	// PREROUTING (called by br_netfilter for this bridged packet), before
	// the hook's last priority.
	req := findPath(t, paths, topology.ClientIP, topology.PeerIP, tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Netfilter, hook: hop.Prerouting, in: "cni0", netns: n1.NetnsName, description: "PREROUTING on cni0"},
		{kind: hop.Drop, hook: hop.Prerouting, netns: n1.NetnsName, reason: wantReason("NETFILTER_DROP"), description: "a NETFILTER_DROP in PREROUTING"},
	})
	if nf := req.Hops[len(req.Hops)-2]; nf.Kind != hop.Netfilter || !nf.Partial {
		t.Errorf("the PREROUTING hop before the drop is not partial:\n%s", dump(req))
	}
	requireAdvice(t, lastDrop(t, req),
		"The conntrack table of "+n1.NetnsName+" was", "(100% full)", "table full",
		"net.netfilter.nf_conntrack_max",
		"$ ip netns exec "+n1.NetnsName+" conntrack -C")
	requireWarning(t, req, "The conntrack table of "+n1.NetnsName, "100% full")
}

// fillConntrack fills the node's conntrack table up to nf_conntrack_max with
// assured UDP entries made over ctnetlink (what `conntrack -I` does), so
// early drop cannot make room. nf_conntrack_max is global and read-only in a
// non-initial namespace on this kernel, while the count it is compared with
// is per namespace: filling the node's own table is the only way to make it
// full without touching the host. The entries go with the namespace.
// topUp fills it up again, with tuples of its own, where entries went
// meanwhile.
func fillConntrack(t *testing.T, n *topology.Node) (topUp func()) {
	t.Helper()
	read := func(key string) int {
		v, err := n.Sysctl(key)
		if err != nil {
			t.Fatal(err)
		}
		i, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return i
	}
	limit, count := read("net.netfilter.nf_conntrack_max"), read("net.netfilter.nf_conntrack_count")
	if limit-count > 1<<20 {
		testutil.Missing(t, testutil.ConntrackFillable, fmt.Errorf("nf_conntrack_max is %d: filling the table would take too long", limit))
	}
	// An entry counted when the count was read can be gone when the fill
	// ends (one was, in a full package run: 262143 of 262144 after it),
	// so the table is topped up with new tuples until the count holds.
	made := 0
	fill := func() {
		t.Helper()
		for try := 0; count < limit; try++ {
			if try == 3 {
				t.Fatalf("conntrack count %d after filling three times, want %d", count, limit)
			}
			err := n.Do(func() error { return ctnetlinkFill(made, limit-count) })
			if err != nil {
				t.Fatalf("fill conntrack table: %v", err)
			}
			made += limit - count
			count = read("net.netfilter.nf_conntrack_count")
		}
	}
	fill()
	return func() {
		t.Helper()
		count = read("net.netfilter.nf_conntrack_count")
		fill()
	}
}

// ctnetlinkFill creates n UDP conntrack entries, its tuples from the from'th
// on, in the calling thread's namespace, in batches of messages without
// acks (errors still come back).
func ctnetlinkFill(from, n int) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("open ctnetlink socket: %w", err)
	}
	defer unix.Close(fd)
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind ctnetlink socket: %w", err)
	}
	errs := func() error {
		buf := make([]byte, 1<<16)
		for {
			k, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read ctnetlink: %w", err)
			}
			for m := buf[:k]; len(m) >= unix.SizeofNlMsghdr+4; {
				l := int(binary.NativeEndian.Uint32(m))
				if l < unix.SizeofNlMsghdr || l > len(m) {
					break
				}
				if binary.NativeEndian.Uint16(m[4:]) == unix.NLMSG_ERROR {
					if e := int32(binary.NativeEndian.Uint32(m[16:])); e != 0 {
						return fmt.Errorf("create conntrack entry: %w", unix.Errno(-e))
					}
				}
				m = m[(l+3)&^3:]
			}
		}
	}
	const (
		ctnetlinkNew    = 1<<8 | 0 // NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW
		ctaTupleOrig    = 1
		ctaTupleReply   = 2
		ctaStatus       = 3
		ctaTimeout      = 7
		ctaTupleIP      = 1
		ctaTupleProto   = 2
		ctaIPv4Src      = 1
		ctaIPv4Dst      = 2
		ctaProtoNum     = 1
		ctaProtoSrcPort = 2
		ctaProtoDstPort = 3
		// IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED: ctnetlink marks
		// a new entry confirmed and refuses a status that differs in it.
		status = 1<<1 | 1<<2 | 1<<3
	)
	attr := func(b []byte, typ uint16, payload []byte) []byte {
		b = binary.NativeEndian.AppendUint16(b, uint16(4+len(payload)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, payload...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	tuple := func(src, dst [4]byte, sport, dport uint16) []byte {
		ip := attr(attr(nil, ctaIPv4Src, src[:]), ctaIPv4Dst, dst[:])
		pr := attr(nil, ctaProtoNum, []byte{unix.IPPROTO_UDP})
		pr = attr(pr, ctaProtoSrcPort, binary.BigEndian.AppendUint16(nil, sport))
		pr = attr(pr, ctaProtoDstPort, binary.BigEndian.AppendUint16(nil, dport))
		return attr(attr(nil, ctaTupleIP|unix.NLA_F_NESTED, ip), ctaTupleProto|unix.NLA_F_NESTED, pr)
	}
	var batch []byte
	for i := from; i < from+n; i++ {
		// 172.31.0.0/16 × source ports: unique tuples no test traffic uses.
		src, dst := [4]byte{172, 31, byte(i >> 8), byte(i)}, [4]byte{172, 30, 0, 1}
		sport, dport := uint16(10000+i>>16), uint16(53)
		msg := []byte{unix.AF_INET, 0, 0, 0} // nfgenmsg
		msg = attr(msg, ctaTupleOrig|unix.NLA_F_NESTED, tuple(src, dst, sport, dport))
		msg = attr(msg, ctaTupleReply|unix.NLA_F_NESTED, tuple(dst, src, dport, sport))
		msg = attr(msg, ctaStatus, binary.BigEndian.AppendUint32(nil, status))
		msg = attr(msg, ctaTimeout, binary.BigEndian.AppendUint32(nil, 600))
		batch = binary.NativeEndian.AppendUint32(batch, uint32(unix.SizeofNlMsghdr+len(msg)))
		batch = binary.NativeEndian.AppendUint16(batch, ctnetlinkNew)
		batch = binary.NativeEndian.AppendUint16(batch, unix.NLM_F_REQUEST|unix.NLM_F_CREATE)
		batch = binary.NativeEndian.AppendUint32(batch, uint32(i+1))
		batch = binary.NativeEndian.AppendUint32(batch, 0)
		batch = append(batch, msg...)
		if (i+1)%256 == 0 || i == from+n-1 {
			if err := unix.Sendto(fd, batch, 0, kernel); err != nil {
				return fmt.Errorf("write ctnetlink: %w", err)
			}
			batch = batch[:0]
			if err := errs(); errors.Is(err, unix.ENOMEM) {
				return nil // full already: the node made entries of its own meanwhile
			} else if err != nil {
				return fmt.Errorf("entry %d: %w", i, err)
			}
		}
	}
	return nil
}

// TestDiagnoseTooBigDF sends DF datagrams from a pod whose MTU (1500) is
// larger than the overlay's (1450). On this kernel the host veth must be
// raised too: a veth frees a frame larger than its peer's MTU before any
// node hook sees it. 1400 bytes of payload (1428 of IP) still fit the
// overlay; 1440 (1468 of IP) do not, and node1 drops them in ip_forward with
// PKT_TOO_BIG after sending ICMP fragmentation-needed back.
func TestDiagnoseTooBigDF(t *testing.T) {
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	client, server := c.Pod(topology.PodClient), c.Pod(topology.PodServer)
	run(t, client, "ip", "link", "set", "eth0", "mtu", "1500")
	run(t, n1, "ip", "link", "set", client.HostVeth, "mtu", "1500")
	to := netip.AddrPortFrom(topology.ServerIP, 9999)
	pc, err := server.ListenPacket("udp4", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	stop := tracing(t, c, topology.ClientIP)
	sendDF(t, client, to, 1400)
	sendDF(t, client, to, 1440)
	time.Sleep(100 * time.Millisecond) // let the ICMP error come back
	paths, sum := stop()
	requireReports(t, sum)

	fits := pathWhere(t, paths, "of the 1400-byte datagram", udpTo(topology.ClientIP, to, 1400+28))
	requireHops(t, fits, []hopMatch{
		{kind: hop.Encap, dev: "flannel.1", netns: n1.NetnsName, description: "VXLAN encap on node1"},
		{kind: hop.Rx, dev: "eth0", netns: server.NetnsName, description: "rx on the server pod"},
	})
	if fits.Verdict != stitch.VerdictDelivered || len(fits.Warnings) != 0 {
		t.Errorf("the 1428-byte packet fits the overlay, want it delivered without warnings: %q\n%s", fits.Warnings, dump(fits))
	}

	big := pathWhere(t, paths, "of the 1440-byte datagram", udpTo(topology.ClientIP, to, 1440+28))
	requireHops(t, big, []hopMatch{
		{kind: hop.Rx, dev: "cni0", netns: n1.NetnsName, description: "rx on cni0"},
		{kind: hop.Drop, dev: "cni0", netns: n1.NetnsName, reason: wantReason("PKT_TOO_BIG"), description: "a PKT_TOO_BIG drop on cni0"},
	})
	requireAdvice(t, lastDrop(t, big),
		"A 1468-byte packet with DF set does not fit the MTU 1450 of flannel.1 on "+n1.NetnsName,
		"ICMP fragmentation-needed (mtu 1450) back to "+topology.ClientIP.String(),
		"eth0 MTU 1500 − 50 bytes of VXLAN headers",
		"$ ip netns exec "+client.NetnsName+" ip link show eth0")
	requireWarning(t, big, "A 1468-byte packet on its way through flannel.1 on "+n1.NetnsName, "MTU is 1450")

	icmp := pathWhere(t, paths, "ICMP fragmentation needed to the client", icmpError(topology.ClientIP, 3, 4))
	requireWarning(t, icmp, "ICMP error from "+n1.BridgeIP.String(), "fragmentation needed")
}

// TestDiagnoseVethMTU raises only the pod's MTU: the host veth keeps 1450,
// and this kernel's veth frees the larger frame on transmit, with no reason
// (NOT_SPECIFIED), before any node hook sees it.
func TestDiagnoseVethMTU(t *testing.T) {
	c := cluster(t, topology.Options{})
	client := c.Pod(topology.PodClient)
	run(t, client, "ip", "link", "set", "eth0", "mtu", "1500")
	stop := tracing(t, c, topology.ClientIP)
	to := netip.AddrPortFrom(topology.ServerIP, 9999)
	sendDF(t, client, to, 1440)
	paths, _ := stop()

	p := pathWhere(t, paths, "of the 1440-byte datagram", udpTo(topology.ClientIP, to, 1440+28))
	requireHops(t, p, []hopMatch{
		{kind: hop.Tx, dev: "eth0", netns: client.NetnsName, description: "tx on the client's eth0"},
		{kind: hop.Drop, dev: "eth0", netns: client.NetnsName, reason: wantReason("NOT_SPECIFIED"), description: "a NOT_SPECIFIED drop on the client's eth0"},
	})
	requireAdvice(t, lastDrop(t, p),
		"Freed right after it was queued on eth0 in "+client.NetnsName, "larger than its peer's MTU (this packet: 1468 bytes of IP)",
		"The pod bridge cni0 has MTU 1450 on "+c.Node(topology.Node1).NetnsName+":")
}

// TestDiagnoseUnderlayMTU makes the underlay smaller than the overlay
// expects (eth0 MTU 1400 under flannel.1's 1450). The kernel does not drop:
// VXLAN's outer header does not inherit DF, so node1 fragments the 1478-byte
// outer packet on eth0 (the original skb is consumed there, its fragments
// travel as new ones) and node2 reassembles it. The path says so in a
// warning.
func TestDiagnoseUnderlayMTU(t *testing.T) {
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	for _, n := range c.Nodes {
		run(t, n, "ip", "link", "set", "eth0", "mtu", "1400")
	}
	stop := tracing(t, c, topology.ClientIP)
	to := netip.AddrPortFrom(topology.ServerIP, 9999)
	sendDF(t, c.Pod(topology.PodClient), to, 1400)
	paths, sum := stop()
	requireReports(t, sum)

	p := pathWhere(t, paths, "of the datagram leaving the client", func(p *stitch.Path) bool {
		return udpTo(topology.ClientIP, to, 1400+28)(p) && len(p.Hops) > 0 && p.Hops[0].Netns == c.Pod(topology.PodClient).NetnsName
	})
	requireHops(t, p, []hopMatch{
		{kind: hop.Encap, dev: "flannel.1", netns: n1.NetnsName, description: "VXLAN encap on node1"},
		{kind: hop.Netfilter, hook: hop.Postrouting, out: "eth0", netns: n1.NetnsName, description: "POSTROUTING out eth0"},
	})
	requireWarning(t, p, "The encapsulated packet (1478 bytes) is larger than the MTU 1400 of eth0, the underlay of flannel.1 on "+n1.NetnsName,
		"fragmented", "should be ≤ 1350")
	for _, h := range p.Hops {
		if h.Kind == hop.Drop {
			t.Errorf("the kernel dropped it (want fragmented):\n%s", dump(p))
		}
	}
}

// TestDiagnoseGSONoMTUWarning sends 200 kB over one TCP connection across
// the nodes, and the server sends them back. The packets leave it as GSO packets of several
// segments, larger than any MTU on the way, which the kernel segments where
// needed (and GRO merges again on node2): no MTU problem, and no warning.
func TestDiagnoseGSONoMTUWarning(t *testing.T) {
	c := cluster(t, topology.Options{})
	n1 := c.Node(topology.Node1)
	stop := tracing(t, c, topology.ClientIP)
	err := c.Pod(topology.PodClient).Do(func() error {
		conn, err := net.DialTimeout("tcp4", topology.ServerAddr.String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return err
		}
		msg := strings.Repeat("gso ", 50_000)
		if _, err := conn.Write([]byte(msg + "\n")); err != nil {
			return err
		}
		// The server's echo, as large, comes back the same way.
		reply, err := bufio.NewReader(conn).ReadString('\n')
		if err == nil && reply != topology.PodServer+": "+msg+"\n" {
			err = fmt.Errorf("reply of %d bytes, want the %d sent back", len(reply), len(msg))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	paths, _ := stop()
	whole := 0
	for _, p := range paths {
		for _, h := range p.Hops {
			if h.Kind == hop.Tx && h.Dev == topology.VXLANDev && h.Netns == n1.NetnsName && h.Len > topology.PodMTU+14 {
				whole++
				break
			}
		}
		for _, w := range p.Warnings {
			if strings.Contains(w, "MTU") {
				t.Errorf("path #%d: %s\n%s", p.ID, w, dump(p))
			}
		}
	}
	if whole == 0 {
		t.Errorf("no packet larger than flannel.1's MTU sent on it whole among %d paths: the kernel made no GSO packet, the test tests nothing", len(paths))
	}
	t.Logf("%d paths, %d of them GSO packets on flannel.1", len(paths), whole)
}

func TestDiagnoseBridgeNFOff(t *testing.T) {
	c := cluster(t, topology.Options{NoBridgeNF: true})
	n1 := c.Node(topology.Node1)
	client, peer := c.Pod(topology.PodClient), c.Pod(topology.PodPeer)
	stop := tracing(t, c, topology.ClientIP)
	exchange(t, client, topology.PeerAddr)
	paths, sum := stop()
	requireReports(t, sum)

	req := findPath(t, paths, topology.ClientIP, topology.PeerIP, tcpSYN)
	requireHops(t, req, []hopMatch{
		{kind: hop.Rx, dev: client.HostVeth, netns: n1.NetnsName, description: "rx on the client's host veth"},
		{kind: hop.Tx, dev: peer.HostVeth, netns: n1.NetnsName, description: "tx on the peer's host veth"},
		{kind: hop.Rx, dev: "eth0", netns: peer.NetnsName, description: "rx in the peer pod"},
	})
	for _, h := range req.Hops {
		if h.Kind == hop.Netfilter || h.Kind == hop.NAT {
			t.Errorf("a %s hop on a bridged path with bridge-nf-call-iptables=0:\n%s", h.Kind, dump(req))
		}
	}
	requireWarning(t, req,
		"Bridged pod-to-pod traffic on "+n1.NetnsName+" ("+client.HostVeth+" → "+peer.HostVeth+" through cni0) passed no netfilter hook",
		"net.bridge.bridge-nf-call-iptables=0", "kube-proxy and NetworkPolicy do not see it",
		"ip netns exec "+n1.NetnsName+" sysctl net.bridge.bridge-nf-call-iptables")
}

// TestNodeReportsFailure checks a node whose report cannot be taken is left
// out with a warning, not an error.
func TestNodeReportsFailure(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	got := nodeReports(context.Background(), []loader.Node{{Path: "/nonexistent/netns", Inode: 7}}, log)
	if len(got) != 0 {
		t.Errorf("reports %v for a namespace that does not exist", got)
	}
	if !strings.Contains(logged.String(), "no node report") || !strings.Contains(logged.String(), "/nonexistent/netns") {
		t.Errorf("log %q does not say which report is missing", logged.String())
	}
}
