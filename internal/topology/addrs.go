package topology

import (
	"crypto/sha256"
	"encoding/base32"
	"net"
	"net/netip"
)

// Names of the nodes and pods of the demo cluster.
const (
	Node1 = "node1"
	Node2 = "node2"

	PodClient = "client" // on node1, talks to the service
	PodPeer   = "peer"   // on node1, next to the client
	PodServer = "server" // on node2, the service's only endpoint
)

// Interface names, as flannel and the CNI bridge plugin name them.
const (
	UnderlayDev = "eth0"      // node interface on the underlay, also the pod's interface
	BridgeDev   = "cni0"      // per-node bridge the pod veths are attached to
	VXLANDev    = "flannel.1" // flannel's VXLAN device
)

// Overlay parameters (flannel's VXLAN backend defaults).
const (
	VXLANID   = 1
	VXLANPort = 8472
	PodMTU    = 1450
)

// ServicePortName is the Kubernetes service port behind ClusterIP, as kube-proxy names it in
// rule comments and chain hashes.
const ServicePortName = "default/demo-server:http"

// Well-known addresses of the demo cluster.
var (
	ClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	UnderlayNet = netip.MustParsePrefix("192.168.50.0/24")

	Node1UnderlayIP = netip.MustParseAddr("192.168.50.11")
	Node2UnderlayIP = netip.MustParseAddr("192.168.50.12")
	Node1PodCIDR    = netip.MustParsePrefix("10.244.1.0/24")
	Node2PodCIDR    = netip.MustParsePrefix("10.244.2.0/24")

	ClientIP = netip.MustParseAddr("10.244.1.5")
	PeerIP   = netip.MustParseAddr("10.244.1.6")
	ServerIP = netip.MustParseAddr("10.244.2.7")

	// ClusterIP is the service address kube-proxy DNATs to ServerAddr.
	ClusterIP = netip.MustParseAddrPort("10.96.0.10:80")
	// ServerAddr is the service's endpoint: the server pod's echo port.
	ServerAddr = netip.AddrPortFrom(ServerIP, ServerPort)
	// PeerAddr is where tests run an echo server on the peer pod for same-node traffic.
	PeerAddr = netip.AddrPortFrom(PeerIP, ServerPort)
)

// ServerPort is the port the service's endpoint listens on.
const ServerPort = 8080

// kube-proxy chain names for ServicePortName, hashed the way kube-proxy hashes them.
var (
	ServiceChain  = kubeChainName("KUBE-SVC-", ServicePortName+"tcp")
	EndpointChain = kubeChainName("KUBE-SEP-", ServicePortName+"tcp"+ServerAddr.String())
)

// kubeChainName is kube-proxy's portProtoHash / servicePortEndpointChainName: the first 16
// characters of the base32 SHA-256 of the key.
func kubeChainName(prefix, key string) string {
	h := sha256.Sum256([]byte(key))
	return prefix + base32.StdEncoding.EncodeToString(h[:])[:16]
}

// Fixed, locally administered MACs (02:70:74 = "pt") so every build looks the same.
func mac(kind, a, b byte) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x70, 0x74, kind, a, b}
}

const (
	macUnderlay = 0x00
	macVXLAN    = 0x01
	macBridge   = 0x02
	macPod      = 0x03
	macHostVeth = 0x04
)

type nodeSpec struct {
	name       string
	index      byte
	underlayIP netip.Addr
	podCIDR    netip.Prefix
	podCIDR6   netip.Prefix // with Options.DualStack
}

type podSpec struct {
	name string
	node string
	ip   netip.Addr
}

var (
	nodeSpecs = []nodeSpec{
		{name: Node1, index: 1, underlayIP: Node1UnderlayIP, podCIDR: Node1PodCIDR, podCIDR6: Node1PodCIDR6},
		{name: Node2, index: 2, underlayIP: Node2UnderlayIP, podCIDR: Node2PodCIDR, podCIDR6: Node2PodCIDR6},
	}
	podSpecs = []podSpec{
		{name: PodClient, node: Node1, ip: ClientIP},
		{name: PodPeer, node: Node1, ip: PeerIP},
		{name: PodServer, node: Node2, ip: ServerIP},
	}
)
