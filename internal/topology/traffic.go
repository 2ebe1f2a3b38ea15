package topology

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ioTimeout bounds every exchange of the traffic helpers.
const ioTimeout = 5 * time.Second

// Listen opens a listening socket inside the pod's namespace (net.Listen).
func (p *Pod) Listen(network, addr string) (ln net.Listener, err error) {
	err = p.Do(func() error {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet socket inside the pod's namespace (net.ListenPacket).
func (p *Pod) ListenPacket(network, addr string) (pc net.PacketConn, err error) {
	err = p.Do(func() error {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// Dial connects from inside the pod's namespace. addr must be a literal IP and port: name
// resolution would run outside the namespace.
func (p *Pod) Dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = p.Do(func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// EchoServer answers each line a TCP client sends with "<pod>: <line>" and closes the
// connection.
type EchoServer struct {
	Addr netip.AddrPort
	ln   net.Listener
	wg   sync.WaitGroup
	once sync.Once
	stop context.CancelFunc
}

// StartEchoServer listens on the pod's IP and port until ctx ends or Close is called.
func StartEchoServer(ctx context.Context, pod *Pod, port uint16) (*EchoServer, error) {
	addr := netip.AddrPortFrom(pod.IP, port)
	ln, err := pod.Listen("tcp4", addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen on %s in pod %s: %w", addr, pod.Name, err)
	}
	ctx, stop := context.WithCancel(ctx)
	s := &EchoServer{Addr: addr, ln: ln, stop: stop}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				serveEcho(ctx, conn, pod.Name)
			}()
		}
	}()
	return s, nil
}

func serveEcho(ctx context.Context, conn net.Conn, name string) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	fmt.Fprintf(conn, "%s: %s\n", name, strings.TrimRight(line, "\r\n"))
}

// Close stops the server and waits for its connections to finish.
func (s *EchoServer) Close() error {
	s.once.Do(func() {
		s.stop()
		s.wg.Wait()
	})
	return nil
}

// TCPExchange connects from a pod to addr, sends payload as one line, and returns the reply
// line without its newline. The whole exchange is bounded by ctx and a 5 s timeout.
func TCPExchange(ctx context.Context, from *Pod, to netip.AddrPort, payload string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	conn, err := from.Dial(ctx, "tcp4", to.String())
	if err != nil {
		return "", fmt.Errorf("dial %s from pod %s: %w", to, from.Name, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	if !strings.HasSuffix(payload, "\n") {
		payload += "\n"
	}
	if _, err := conn.Write([]byte(payload)); err != nil {
		return "", fmt.Errorf("send to %s: %w", to, err)
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read reply from %s: %w", to, err)
	}
	return strings.TrimRight(reply, "\r\n"), nil
}

// ICMP echo types of ICMPv4 and ICMPv6.
const (
	icmpEcho        = 8
	icmpEchoReply   = 0
	icmpv6Echo      = 128
	icmpv6EchoReply = 129
)

// Ping sends one ICMP echo request (ICMPv6 for an IPv6 dst) with id and
// seq from the pod over a raw socket, and waits for its reply; bounded by
// ctx and a 5 s timeout. The id is ours, not the kernel's: tests know the
// echo id to look for.
func Ping(ctx context.Context, from *Pod, dst netip.Addr, id, seq uint16) error {
	network, local, req, reply := "ip4:icmp", "0.0.0.0", byte(icmpEcho), byte(icmpEchoReply)
	if dst.Is6() && !dst.Is4In6() {
		network, local, req, reply = "ip6:ipv6-icmp", "::", icmpv6Echo, icmpv6EchoReply
	}
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	pc, err := from.ListenPacket(network, local)
	if err != nil {
		return fmt.Errorf("open raw socket in %s: %w", from.Name, err)
	}
	defer pc.Close()
	stop := context.AfterFunc(ctx, func() { pc.SetDeadline(time.Now()) })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		pc.SetDeadline(deadline)
	}
	msg := []byte{req, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq), 'p', 't', 'p', 'i', 'n', 'g', 0, 0}
	if req == icmpEcho { // the kernel sums ICMPv6 itself
		sum := icmpChecksum(msg)
		msg[2], msg[3] = byte(sum>>8), byte(sum)
	}
	if _, err := pc.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("send echo request to %s: %w", dst, err)
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("read echo reply from %s: %w", dst, err)
		}
		if b := buf[:n]; n >= 8 && b[0] == reply && b[4] == byte(id>>8) && b[5] == byte(id) &&
			b[6] == byte(seq>>8) && b[7] == byte(seq) {
			return nil
		}
	}
}

// icmpChecksum is the Internet checksum of b (RFC 1071).
func icmpChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
