package k8slab

import "net/netip"

// Names and addresses of the lab. They differ from internal/topology's, so
// that a lab left running does not collide with the demo cluster's tests.
const (
	Node1 = "ptlab-node1" // the client's node
	Node2 = "ptlab-node2" // the server's node

	Namespace = "default"
	PodClient = "client" // on Node1
	PodServer = "server" // on Node2, the endpoint of ServiceWeb
	// ServiceWeb is the Service of the server pod: ClusterIP WebClusterIP,
	// NodePort WebNodePort on every node.
	ServiceWeb = "web"
	// ServiceIdle is a Service without endpoints (its selector matches no
	// pod), as doctor reports them.
	ServiceIdle = "idle"

	// ServerPort is where the server pod's httpd listens; WebPort the
	// Service port in front of it.
	ServerPort  = 8080
	WebPort     = 80
	WebNodePort = 30080

	underlayBridge = "ptlab0"    // in the root namespace, the nodes' eth0 peers
	bridgeDev      = "cni0"      // the CNI bridge plugin's bridge on each node
	vxlanDev       = "flannel.1" // flanneld's VXLAN device
	apiPort        = 6443
	etcdClientPort = 23790
	etcdPeerPort   = 23800

	imageBusybox = "pathtrace.lab/busybox:1"
	imagePause   = "pathtrace.lab/pause:1"
)

var (
	// UnderlayNet joins the root namespace (APIServerIP) and the nodes.
	UnderlayNet = netip.MustParsePrefix("192.168.60.0/24")
	APIServerIP = netip.MustParseAddr("192.168.60.1")
	// ClusterCIDR is flannel's network; each node gets a /24 of it.
	ClusterCIDR = netip.MustParsePrefix("10.245.0.0/16")
	ServiceCIDR = netip.MustParsePrefix("10.97.0.0/16")
	// WebClusterIP and IdleClusterIP are the Services' ClusterIPs.
	WebClusterIP  = netip.MustParseAddr("10.97.0.80")
	IdleClusterIP = netip.MustParseAddr("10.97.0.81")

	nodeIPs     = map[string]netip.Addr{Node1: netip.MustParseAddr("192.168.60.11"), Node2: netip.MustParseAddr("192.168.60.12")}
	nodePodCIDR = map[string]netip.Prefix{Node1: netip.MustParsePrefix("10.245.1.0/24"), Node2: netip.MustParsePrefix("10.245.2.0/24")}
)
