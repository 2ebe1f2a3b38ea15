package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/pathtrace/pathtrace/internal/topology"
)

// benchIP is a second address of the client pod that only ptbench's own
// traffic uses. Other clusters built on this machine (tests) reuse the demo
// addresses, and the tracepoints see every namespace: a filter on benchIP
// sees ptbench's packets and nothing else, which makes exact event counts
// possible.
var benchIP = netip.MustParseAddr("10.244.1.205")

// Ports of the iperf3 servers.
const (
	iperfServerPort = topology.ServerPort // behind the ClusterIP (TCP)
	iperfUDPPort    = 5201                // server pod, direct (kube-proxy's rule is TCP only)
	iperfPeerPort   = 5201                // peer pod, same node
	sinkPort        = 9000                // UDP sink of the load generator
)

// cluster is the demo cluster with the iperf3 servers running.
type cluster struct {
	*topology.Cluster
	servers []*exec.Cmd
}

func buildCluster(ctx context.Context) (*cluster, error) {
	tc, err := topology.Build(ctx, topology.Options{Prefix: fmt.Sprintf("ptb%d", os.Getpid()%100000)})
	if err != nil {
		return nil, fmt.Errorf("build demo cluster: %w", err)
	}
	c := &cluster{Cluster: tc}
	client := c.Pod(topology.PodClient)
	if _, err := client.Run(ctx, "ip", "addr", "add", benchIP.String()+"/24", "dev", topology.UnderlayDev); err != nil {
		c.Close()
		return nil, fmt.Errorf("add bench address: %w", err)
	}
	for _, s := range []struct {
		pod  string
		port int
	}{
		{topology.PodServer, iperfServerPort},
		{topology.PodServer, iperfUDPPort},
		{topology.PodPeer, iperfPeerPort},
	} {
		p := c.Pod(s.pod)
		cmd := exec.Command("ip", "netns", "exec", p.NetnsName, "iperf3", "-s", "-p", fmt.Sprint(s.port), "-B", p.IP.String())
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			c.Close()
			return nil, fmt.Errorf("start iperf3 server in %s: %w", s.pod, err)
		}
		c.servers = append(c.servers, cmd)
	}
	// iperf3 servers listen within a few ms; wait until they do (a probe
	// connection would count as a failed test in iperf3).
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range []struct {
		pod  string
		port int
	}{{topology.PodServer, iperfServerPort}, {topology.PodServer, iperfUDPPort}, {topology.PodPeer, iperfPeerPort}} {
		for !listening(c.Pod(s.pod), s.port) {
			if time.Now().After(deadline) {
				c.Close()
				return nil, fmt.Errorf("iperf3 server in %s did not listen on %d", s.pod, s.port)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return c, nil
}

func (c *cluster) Close() error {
	for _, s := range c.servers {
		s.Process.Kill()
		s.Wait()
	}
	return c.Cluster.Close()
}

func (c *cluster) nodeNetns() []string {
	var ns []string
	for _, n := range c.Nodes {
		ns = append(ns, n.NetnsName)
	}
	return ns
}

// listening reports whether a TCP socket listens on port in the pod.
func listening(p *topology.Pod, port int) bool {
	var b []byte
	p.Do(func() (err error) {
		// thread-self: the namespace of this (locked) thread, not the process's.
		b, err = os.ReadFile("/proc/thread-self/net/tcp")
		return err
	})
	want := fmt.Sprintf(":%04X 00000000:0000 0A", port)
	return strings.Contains(string(b), want)
}

var errNotRoot = errors.New("ptbench needs root (it builds network namespaces and loads BPF programs)")
