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
	return StartEchoServerOn(ctx, pod, netip.AddrPortFrom(pod.IP, port))
}

// StartEchoServerOn is StartEchoServer on one of the pod's addresses
// (its IPv6 one, in a dual-stack cluster).
func StartEchoServerOn(ctx context.Context, pod *Pod, addr netip.AddrPort) (*EchoServer, error) {
	ln, err := pod.Listen(inet("tcp", addr.Addr()), addr.String())
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
	conn, done, err := dial(ctx, from, inet("tcp", to.Addr()), to)
	if err != nil {
		return "", err
	}
	defer done()
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
