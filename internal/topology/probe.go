package topology

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Ping sends one ICMP echo request from the pod to addr over a raw socket,
// as ping does where ping sockets are not allowed, and waits for the reply
// with the same id and sequence. addr may be an IPv6 address with a zone
// (fe80::1%eth0, ff02::1%eth0): then the first reply from anyone counts.
func Ping(ctx context.Context, from *Pod, addr netip.Addr, id, seq uint16) error {
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	network, echo, reply := "ip4:icmp", byte(8), byte(0)
	if addr.Is6() {
		network, echo, reply = "ip6:ipv6-icmp", 128, 129
	}
	var conn net.PacketConn
	err := from.Do(func() (err error) {
		conn, err = net.ListenPacket(network, "")
		return err
	})
	if err != nil {
		return fmt.Errorf("open raw ICMP socket in pod %s: %w", from.Name, err)
	}
	defer conn.Close()
	defer bound(ctx, conn)()

	msg := []byte{echo, 0, 0, 0, 0, 0, 0, 0, 'p', 'a', 't', 'h', 't', 'r', 'a', 'c', 'e'}
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	if addr.Is4() {
		binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg)) // the kernel fills ICMPv6's
	}
	// Inside the pod: a zone names one of its interfaces.
	err = from.Do(func() error {
		_, err := conn.WriteTo(msg, &net.IPAddr{IP: addr.AsSlice(), Zone: addr.Zone()})
		return err
	})
	if err != nil {
		return fmt.Errorf("send echo request to %s: %w", addr, err)
	}
	b := make([]byte, 1500)
	for {
		n, _, err := conn.ReadFrom(b)
		if err != nil {
			return fmt.Errorf("read echo reply from %s: %w", addr, err)
		}
		if n >= 8 && b[0] == reply && binary.BigEndian.Uint16(b[4:]) == id && binary.BigEndian.Uint16(b[6:]) == seq {
			return nil
		}
	}
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// UDPEchoServer answers each datagram with "<pod>: <datagram>".
type UDPEchoServer struct {
	Addr netip.AddrPort
	pc   net.PacketConn
	wg   sync.WaitGroup
}

// StartUDPEchoServer listens on the pod's IP and UDP port until Close.
func StartUDPEchoServer(pod *Pod, port uint16) (*UDPEchoServer, error) {
	return StartUDPEchoServerOn(pod, netip.AddrPortFrom(pod.IP, port))
}

// StartUDPEchoServerOn listens on addr, one of the pod's addresses of
// either family, until Close.
func StartUDPEchoServerOn(pod *Pod, addr netip.AddrPort) (*UDPEchoServer, error) {
	pc, err := pod.ListenPacket(inet("udp", addr.Addr()), addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen on udp %s in pod %s: %w", addr, pod.Name, err)
	}
	s := &UDPEchoServer{Addr: addr, pc: pc}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		b := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo(fmt.Appendf(nil, "%s: %s", pod.Name, b[:n]), from)
		}
	}()
	return s, nil
}

// Close stops the server.
func (s *UDPEchoServer) Close() error {
	err := s.pc.Close()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// UDPExchange sends payload in one datagram from the pod to addr and
// returns the reply, bounded by ctx and a 5 s timeout.
func UDPExchange(ctx context.Context, from *Pod, to netip.AddrPort, payload string) (string, error) {
	conn, done, err := dial(ctx, from, inet("udp", to.Addr()), to)
	if err != nil {
		return "", err
	}
	defer done()
	if _, err := conn.Write([]byte(payload)); err != nil {
		return "", fmt.Errorf("send to udp %s: %w", to, err)
	}
	b := make([]byte, 1500)
	n, err := conn.Read(b)
	if err != nil {
		return "", fmt.Errorf("read reply from udp %s: %w", to, err)
	}
	return strings.TrimSpace(string(b[:n])), nil
}

// inet is network ("tcp", "udp") for a's family: "tcp4", "tcp6", ...
func inet(network string, a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return network + "6"
	}
	return network + "4"
}

// dial connects from the pod to addr for one exchange, bounded by ctx and
// a 5 s timeout; done closes the connection.
func dial(ctx context.Context, from *Pod, network string, to netip.AddrPort) (conn net.Conn, done func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	conn, err = from.Dial(ctx, network, to.String())
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("dial %s %s from pod %s: %w", network, to, from.Name, err)
	}
	stop := bound(ctx, conn)
	return conn, func() { stop(); conn.Close(); cancel() }, nil
}

// bound makes conn's reads and writes end with ctx: at its deadline, or at
// once when it is canceled. The returned func undoes the latter.
func bound(ctx context.Context, conn interface{ SetDeadline(time.Time) error }) (stop func() bool) {
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
}
