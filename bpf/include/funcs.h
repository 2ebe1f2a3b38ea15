/* Function hops, shared by fentry.c and kprobe.c: the same event from the
 * same kernel objects, whichever way the arguments were fetched. The entry
 * file defines PT_BACKEND_FLAG (PT_F_FENTRY or PT_F_KPROBE) before including
 * this header. */
#pragma once

#include "common.h"
#include "ipvs.h"

#ifndef PT_BACKEND_FLAG
#error "define PT_BACKEND_FLAG before including funcs.h"
#endif

#define PT_MAX_NODES 16
#define PT_NFPROTO_IPV4 2
#define PT_NFPROTO_IPV6 10
#define PT_NF_ACCEPT 1
#define PT_NETDEV_ALIGN 32

/* Network namespaces (inodes) whose IPv4 and IPv6 netfilter hooks are shown, as the
 * netfilter links are attached only in the node namespaces. nf_hook_slow
 * runs in every namespace: the others are skipped after two loads. */
volatile const __u32 nf_netns[PT_MAX_NODES];
volatile const __u32 n_nf_netns;

static __always_inline bool nf_netns_matches(__u32 inum)
{
	for (int i = 0; i < PT_MAX_NODES; i++) {
		if (i >= n_nf_netns)
			break;
		if (nf_netns[i] == inum)
			return true;
	}
	return false;
}

/* nf_hook_state.hook was an unsigned int until "netfilter: reduce size of
 * nf_hook_state on 32bit platforms" (Linux 5.14) made it a u8. */
struct nf_hook_state___pre514 {
	unsigned int hook;
} __attribute__((preserve_access_index));

static __always_inline __u8 nf_state_hook(const struct nf_hook_state *state)
{
	if (bpf_core_field_size(state->hook) == 1)
		return BPF_CORE_READ(state, hook);
	return BPF_CORE_READ((const struct nf_hook_state___pre514 *)state, hook);
}

#define PT_SKB_EXT_ALIGN_SHIFT 3
#define PT_NF_INET_PRE_ROUTING 0

/* br_netfilter runs the IPv4 and IPv6 PREROUTING hooks of a bridged packet
 * from the bridge. When that packet then goes up the stack (ip_rcv or
 * ipv6_rcv on the bridge device), br_netfilter's ip_sabotage_in, registered
 * for both families at their first priority (NF_IP_PRI_FIRST, before any
 * netfilter link can be), steals it so PREROUTING does not run twice. The
 * links never see that second call; nf_hook_slow does: skip it, by
 * ip_sabotage_in's own test (the packet's br_netfilter state, the skb
 * extension SKB_EXT_BRIDGE_NF, says it left PREROUTING, and, since
 * "netfilter: bridge: ... sabotage_in_done" (Linux 5.19), was not let
 * through already). */
static __always_inline bool nf_sabotaged(struct sk_buff *skb, __u8 hook)
{
	if (hook != PT_NF_INET_PRE_ROUTING ||
	    !bpf_core_enum_value_exists(enum skb_ext_id, SKB_EXT_BRIDGE_NF) ||
	    !bpf_core_field_exists(struct nf_bridge_info, in_prerouting) ||
	    !bpf_core_field_exists(skb->active_extensions))
		return false;
	int id = bpf_core_enum_value(enum skb_ext_id, SKB_EXT_BRIDGE_NF);
	__u8 active = BPF_CORE_READ(skb, active_extensions);
	if (id < 0 || id > 7 || !(active & (1 << id)))
		return false;
	struct skb_ext *ext = BPF_CORE_READ(skb, extensions);
	__u8 off = 0;
	if (!ext || bpf_probe_read_kernel(&off, 1, (void *)ext + bpf_core_field_offset(struct skb_ext, offset) + id))
		return false;
	struct nf_bridge_info *nb = (void *)ext + ((__u32)off << PT_SKB_EXT_ALIGN_SHIFT);
	if (BPF_CORE_READ_BITFIELD_PROBED(nb, in_prerouting))
		return false;
	if (bpf_core_field_exists(struct nf_bridge_info, sabotage_in_done) &&
	    BPF_CORE_READ_BITFIELD_PROBED(nb, sabotage_in_done))
		return false;
	return true;
}

/* Whether nf_hook_slow's hook is one we show: IPv4 or IPv6 (the families
 * the netfilter links attach to), in a node namespace, and not the second
 * PREROUTING br_netfilter sabotages. */
static __always_inline bool nf_state_wanted(struct sk_buff *skb, const struct nf_hook_state *state)
{
	if (!state || !skb)
		return false;
	__u8 pf = BPF_CORE_READ(state, pf);
	if (pf != PT_NFPROTO_IPV4 && pf != PT_NFPROTO_IPV6)
		return false;
	if (!nf_netns_matches(BPF_CORE_READ(state, net, ns.inum)))
		return false;
	return !nf_sabotaged(skb, nf_state_hook(state));
}

static __always_inline void read_dev(struct net_device *dev, char name[PT_IFNAMSIZ], __u32 *ifindex)
{
	*ifindex = BPF_CORE_READ(dev, ifindex);
	bpf_core_read(name, PT_IFNAMSIZ, &dev->name);
}

/* One view of a netfilter hook from nf_hook_slow: the same event a
 * netfilter link at the first (entry) or last (accepting return) priority
 * sends, so the stitcher's NAT detection works unchanged. */
static __always_inline void nf_func_event(struct sk_buff *skb, const struct nf_hook_state *state,
					  __u8 slot)
{
	struct pt_pkt p = {};

	if (!skb || !track(skb, &p, slot == PT_SLOT_FIRST))
		return;
	__u64 nfct = 0;
	if (bpf_core_field_exists(skb->_nfct))
		nfct = BPF_CORE_READ(skb, _nfct);
	if (slot == PT_SLOT_LAST && ct_is_traced(&p))
		conns_add(nfct);
	struct event *e = new_event(skb, &p, PT_EV_NF, NULL);
	if (!e)
		return;
	struct net_device *in = BPF_CORE_READ(state, in);
	struct net_device *out = BPF_CORE_READ(state, out);

	e->flags |= PT_BACKEND_FLAG;
	e->hook = nf_state_hook(state);
	e->slot = slot;
	e->ext.val[0] = ct_info(nfct);
	e->netns = BPF_CORE_READ(state, net, ns.inum);
	if (in)
		read_dev(in, e->in_dev, &e->in_ifindex);
	if (out)
		read_dev(out, e->out_dev, &e->out_ifindex);
	if (in || out) {
		struct net_device *dev = in ? in : out;
		if (e->hook >= 3 && out) /* LOCAL_OUT, POST_ROUTING */
			dev = out;
		read_dev(dev, e->dev, &e->ifindex);
	}
	submit_event(e);
}

/* The stable head of struct net_bridge_port (br at 0, dev at 8 since
 * 2.6): read this way only where the bridge module has no BTF (5.10). A test
 * compares it with the BTF of kernels that have it. */
struct pt_net_bridge_port_head {
	void *br;
	struct net_device *dev;
};

/* The bridge a port device is enslaved to: its master is the first entry
 * of its upper-device list (__netdev_upper_dev_link adds a master at the
 * head). Only vmlinux types: works without the bridge module's BTF. */
static __always_inline struct net_device *port_master(struct net_device *port)
{
	struct list_head *first = BPF_CORE_READ(port, adj_list.upper.next);
	struct netdev_adjacent *adj;

	if (!first)
		return NULL;
	adj = (void *)first - bpf_core_field_offset(struct netdev_adjacent, list);
	if (!BPF_CORE_READ(adj, master))
		return NULL;
	return BPF_CORE_READ(adj, dev);
}

/* br_forward(to, skb, local_rcv, local_orig): the bridge decided to send
 * skb out of port to. skb->dev is still the ingress port. */
static __always_inline void bridge_event(const struct net_bridge_port *to, struct sk_buff *skb)
{
	struct pt_pkt p = {};

	if (!skb || !to || !track(skb, &p, false))
		return;
	struct net_device *out;
	if (bpf_core_type_exists(struct net_bridge_port)) {
		out = BPF_CORE_READ(to, dev);
	} else {
		struct pt_net_bridge_port_head head = {};
		bpf_probe_read_kernel(&head, sizeof(head), to);
		out = head.dev;
	}
	struct net_device *br = out ? port_master(out) : NULL;
	struct event *e = new_event(skb, &p, PT_EV_BRIDGE, br);
	if (!e)
		return;
	e->flags |= PT_BACKEND_FLAG;
	struct net_device *in = BPF_CORE_READ(skb, dev);
	if (in) {
		read_dev(in, e->in_dev, &e->in_ifindex);
		if (!br)
			e->netns = dev_netns(in);
	}
	if (out)
		read_dev(out, e->out_dev, &e->out_ifindex);
	submit_event(e);
}

/* An IPVS transmit function (ip_vs_nat_xmit ...) sending skb to the real
 * server of connection cp. The packet is still addressed to the virtual
 * service here. */
static __always_inline void ipvs_event(struct sk_buff *skb, const void *cp)
{
	struct pt_pkt p = {};

	if (!skb || !cp || !track(skb, &p, false))
		return;
	struct event *e = new_event(skb, &p, PT_EV_IPVS, BPF_CORE_READ(skb, dev));
	if (!e)
		return;
	e->flags |= PT_BACKEND_FLAG;
	ipvs_read_conn(cp, &e->ext);
	submit_event(e);
}

/* The private area of a device (netdev_priv): after struct net_device,
 * aligned to NETDEV_ALIGN. */
static __always_inline void *dev_priv(struct net_device *dev)
{
	__u32 off = (bpf_core_type_size(struct net_device) + PT_NETDEV_ALIGN - 1) & ~(PT_NETDEV_ALIGN - 1);

	return (void *)dev + off;
}

/* struct geneve_dev and struct geneve_config are private to the geneve
 * module (drivers/net/geneve.c), not in vmlinux.h: the fields read,
 * relocated against the module's BTF where it has one (5.11+; checked in
 * the BTF of Debian's 6.1 and 6.12 modules). Older kernels kept the
 * configuration in geneve_dev itself ("geneve: move all configuration
 * under struct geneve_config"); they have no module BTF, and
 * bpf_core_field_exists leaves them out. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
struct geneve_config {
	struct ip_tunnel_info info;
	bool collect_md;
} __attribute__((preserve_access_index));

struct geneve_dev {
	struct geneve_config cfg;
} __attribute__((preserve_access_index));
#pragma clang diagnostic pop

/* The VNI and UDP destination port of a VXLAN or Geneve device (dev), into
 * ext as PT_EV_ENCAP carries them, where its module has BTF. A Geneve
 * device in external mode (collect_md: OVS's genev_sys_6081 as
 * OVN-Kubernetes and Antrea make it) takes the VNI from each packet's
 * metadata: none is read. */
static __always_inline void tunnel_dev_config(struct net_device *dev, __u8 tunnel, struct pt_ext *ext)
{
	if (tunnel == PT_TUNNEL_VXLAN && bpf_core_type_exists(struct vxlan_dev) &&
	    bpf_core_field_exists(struct vxlan_dev, cfg.vni)) {
		struct vxlan_dev *vx = dev_priv(dev);
		ext->val[0] = bpf_ntohl(BPF_CORE_READ(vx, cfg.vni)); /* cpu_to_be32(IFLA_VXLAN_ID) */
		ext->port[1] = bpf_ntohs(BPF_CORE_READ(vx, cfg.dst_port));
		ext->val[2] = 1;
	}
	if (tunnel == PT_TUNNEL_GENEVE && bpf_core_type_exists(struct geneve_dev) &&
	    bpf_core_field_exists(struct geneve_dev, cfg.info.key.tun_id)) {
		struct geneve_dev *g = dev_priv(dev);
		if (BPF_CORE_READ(g, cfg.collect_md))
			return;
		/* The VNI is the low 24 bits of the big-endian tunnel id
		 * (vni_to_tunnel_id). */
		ext->val[0] = bpf_be64_to_cpu(BPF_CORE_READ(g, cfg.info.key.tun_id)) & 0xffffff;
		ext->port[1] = bpf_ntohs(BPF_CORE_READ(g, cfg.info.key.tp_dst));
		ext->val[2] = 1;
	}
}

/* A tunnel device's transmit function, ndo_start_xmit(skb, dev) of the
 * tunnel (enum pathtrace_tunnel): the inner packet is about to get the
 * tunnel's headers on dev. */
static __always_inline void encap_event(struct sk_buff *skb, struct net_device *dev, __u8 tunnel)
{
	struct pt_pkt p = {};

	if (!skb || !dev || !track(skb, &p, false))
		return;
	struct event *e = new_event(skb, &p, PT_EV_ENCAP, dev);
	if (!e)
		return;
	e->flags |= PT_BACKEND_FLAG;
	e->ext.val[1] = tunnel;
	tunnel_dev_config(dev, tunnel, &e->ext);
	submit_event(e);
}

/* A tunnel's receive function (vxlan_rcv, geneve_udp_encap_recv: (sk,
 * skb); ipip_rcv: (skb)): skb, still with its outer headers, arrived on
 * skb->dev (the underlay device) and is about to be decapsulated. */
static __always_inline void decap_event(struct sk_buff *skb, __u8 tunnel)
{
	struct pt_pkt p = {};

	if (!skb || !track(skb, &p, false))
		return;
	struct event *e = new_event(skb, &p, PT_EV_DECAP, BPF_CORE_READ(skb, dev));
	if (!e)
		return;
	e->flags |= PT_BACKEND_FLAG;
	e->ext.val[1] = tunnel;
	submit_event(e);
}

#include "tables.h"

/* Keep the fixed-offset heads in BTF: TestKernelStructHeads compares them
 * with the kernel's. */
const struct pt_net_bridge_port_head *unused_bridge_port_head __attribute__((unused));
const struct pt_ip_vs_conn_head *unused_ip_vs_conn_head __attribute__((unused));
const struct pt_xt_table_head *unused_xt_table_head __attribute__((unused));
const struct pt_nft_chain_head *unused_nft_chain_head __attribute__((unused));
const struct pt_nf_conn_head *unused_nf_conn_head __attribute__((unused));
