package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/topology"
)

// udpSink drops, with an iptables rule in the pod's INPUT chain, the
// datagrams that reach a port, and counts them. A drop in a netfilter hook
// frees every datagram the same way (kfree_skb, NETFILTER_DROP): each makes
// the same number of events, which a socket's receive path does not
// guarantee (some frees have no tracepoint).
type udpSink struct {
	pod  *topology.Pod
	rule []string
}

func startSink(p *topology.Pod, port int) (*udpSink, error) {
	s := &udpSink{pod: p, rule: []string{"INPUT", "-p", "udp", "--dport", strconv.Itoa(port), "-j", "DROP"}}
	if out, err := p.Run(context.Background(), "iptables", append([]string{"-A"}, s.rule...)...); err != nil {
		return nil, fmt.Errorf("add sink rule in %s: %w: %s", p.Name, err, out)
	}
	return s, nil
}

// count is the number of datagrams the rule dropped so far.
func (s *udpSink) count() uint64 {
	out, err := s.pod.Run(context.Background(), "iptables", "-n", "-v", "-x", "-L", "INPUT")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "DROP" && strings.Contains(line, "dpt:"+s.rule[4]) {
			n, _ := strconv.ParseUint(f[0], 10, 64)
			return n
		}
	}
	return 0
}

func (s *udpSink) Close() {
	s.pod.Run(context.Background(), "iptables", append([]string{"-D"}, s.rule...)...)
}

// udpGen sends 64-byte UDP datagrams from the client pod's bench address.
type udpGen struct {
	conn *net.UDPConn
	raw  interface {
		Write(func(fd uintptr) bool) error
	}
}

func newUDPGen(from *topology.Pod, src netip.Addr, dst netip.AddrPort) (*udpGen, error) {
	var conn *net.UDPConn
	err := from.Do(func() (err error) {
		conn, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", dst, src, err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &udpGen{conn: conn, raw: raw}, nil
}

func (g *udpGen) Close() { g.conn.Close() }

// send sends n datagrams at rate per second (0: as fast as possible) and
// returns how many the kernel accepted and how long it took.
func (g *udpGen) send(ctx context.Context, n int, rate float64) (int, time.Duration) {
	return g.sendFor(ctx, n, rate, 0)
}

// sendFor is send, stopping after limit (0: none) if n are not sent by then.
func (g *udpGen) sendFor(ctx context.Context, n int, rate float64, limit time.Duration) (int, time.Duration) {
	payload := make([]byte, 64)
	sent := 0
	start := time.Now()
	const batch = 32
	for i := 0; sent < n && ctx.Err() == nil; i++ {
		if limit > 0 && i%128 == 0 && time.Since(start) >= limit {
			break
		}
		if rate > 0 {
			// Pace: sleep until the batch is due, spinning the last
			// stretch (timers are coarse on a loaded machine).
			due := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
			if d := time.Until(due); d > 200*time.Microsecond {
				time.Sleep(d - 100*time.Microsecond)
			}
			for time.Now().Before(due) {
			}
		}
		k := min(batch, n-sent)
		g.raw.Write(func(fd uintptr) bool {
			for range k {
				payload[0] = byte(sent)
				if _, err := unix.Write(int(fd), payload); err != nil {
					// ENOBUFS and the like: the datagram was not sent.
					continue
				}
				sent++
			}
			return true
		})
	}
	return sent, time.Since(start)
}

// readSink reads and discards the datagrams that reach a pod's port:
// delivered packets, most of which the kernel frees without a tracepoint
// (so their paths end only by the stitcher's idle time or eviction).
type readSink struct {
	conn *net.UDPConn
	done chan struct{}
}

func startReadSink(p *topology.Pod, port int) (*readSink, error) {
	pc, err := p.ListenPacket("udp4", netip.AddrPortFrom(p.IP, uint16(port)).String())
	if err != nil {
		return nil, fmt.Errorf("listen in %s: %w", p.Name, err)
	}
	s := &readSink{conn: pc.(*net.UDPConn), done: make(chan struct{})}
	s.conn.SetReadBuffer(4 << 20)
	go func() {
		defer close(s.done)
		buf := make([]byte, 2048)
		for {
			if _, err := s.conn.Read(buf); err != nil {
				return
			}
		}
	}()
	return s, nil
}

func (s *readSink) Close() {
	s.conn.Close()
	<-s.done
}
