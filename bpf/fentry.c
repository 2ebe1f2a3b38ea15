// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Function hops from fentry/fexit programs (BPF trampolines: 5.5+; functions
 * of modules need module BTF, 5.11+). The loader loads and attaches each
 * program on its own: one the kernel refuses costs its hop only. */
#define PT_BACKEND_FLAG PT_F_FENTRY
#include "funcs.h"
#include <bpf/bpf_tracing.h>

/* Netfilter hooks without netfilter links: nf_hook_slow runs the hook
 * functions of one hook; its entry is the hook's first view, its return
 * with NF_ACCEPT (1) the last one. A packet dropped or stolen inside has no
 * last view, as with the links. */
SEC("fentry/nf_hook_slow")
int BPF_PROG(fentry_nf_hook_slow, struct sk_buff *skb, struct nf_hook_state *state)
{
	if (nf_state_wanted(skb, state))
		nf_func_event(skb, state, PT_SLOT_FIRST);
	return 0;
}

SEC("fexit/nf_hook_slow")
int BPF_PROG(fexit_nf_hook_slow, struct sk_buff *skb, struct nf_hook_state *state,
	     const struct nf_hook_entries *entries, unsigned int i, int ret)
{
	if (ret == PT_NF_ACCEPT && nf_state_wanted(skb, state))
		nf_func_event(skb, state, PT_SLOT_LAST);
	return 0;
}

SEC("fentry/br_forward")
int BPF_PROG(fentry_br_forward, const struct net_bridge_port *to, struct sk_buff *skb)
{
	bridge_event(to, skb);
	return 0;
}

/* ip_vs_nat_xmit(skb, cp, pp, ipvsh): IPVS sends a packet of connection cp
 * to its real server with NAT, the method kube-proxy uses; it runs for every
 * packet of the connection in that direction, the first included. */
SEC("fentry/ip_vs_nat_xmit")
int BPF_PROG(fentry_ip_vs_xmit, struct sk_buff *skb, const void *cp)
{
	ipvs_event(skb, cp);
	return 0;
}

/* The tunnel devices' transmit functions (ndo_start_xmit, the same
 * arguments in 5.10, 6.1 and 6.12): one program per tunnel, which it
 * says. */
SEC("fentry/vxlan_xmit")
int BPF_PROG(fentry_vxlan_xmit, struct sk_buff *skb, struct net_device *dev)
{
	encap_event(skb, dev, PT_TUNNEL_VXLAN);
	return 0;
}

SEC("fentry/geneve_xmit")
int BPF_PROG(fentry_geneve_xmit, struct sk_buff *skb, struct net_device *dev)
{
	encap_event(skb, dev, PT_TUNNEL_GENEVE);
	return 0;
}

SEC("fentry/ipip_tunnel_xmit")
int BPF_PROG(fentry_ipip_tunnel_xmit, struct sk_buff *skb, struct net_device *dev)
{
	encap_event(skb, dev, PT_TUNNEL_IPIP);
	return 0;
}

/* The other IPVS transmit functions (ip_vs_dr_xmit, ip_vs_tunnel_xmit,
 * ...) share ip_vs_nat_xmit's arguments: the loader attaches
 * fentry_ip_vs_xmit to each by name. */

/* The tunnels' receive functions, called through pointers (a UDP
 * tunnel socket's encap_rcv; the IPv4 tunnel handler of tunnel4), so
 * never inlined nor cloned: the packet still has its outer headers. */
SEC("fentry/vxlan_rcv")
int BPF_PROG(fentry_vxlan_rcv, struct sock *sk, struct sk_buff *skb)
{
	decap_event(skb, PT_TUNNEL_VXLAN);
	return 0;
}

SEC("fentry/geneve_udp_encap_recv")
int BPF_PROG(fentry_geneve_rcv, struct sock *sk, struct sk_buff *skb)
{
	decap_event(skb, PT_TUNNEL_GENEVE);
	return 0;
}

SEC("fentry/ipip_rcv")
int BPF_PROG(fentry_ipip_rcv, struct sk_buff *skb)
{
	decap_event(skb, PT_TUNNEL_IPIP);
	return 0;
}

/* ipt_do_table(priv, skb, state) since "netfilter: iptables: allow use of
 * ipt_do_table as hookfn" (Linux 5.16); ipt_do_table(skb, state, table)
 * before. The loader picks the entry program by the function's BTF; the
 * return program reads no argument. */
SEC("fentry/ipt_do_table")
int BPF_PROG(fentry_ipt_do_table, void *priv, struct sk_buff *skb, const struct nf_hook_state *state)
{
	xt_table_enter(skb, state, priv);
	return 0;
}

SEC("fentry/ipt_do_table")
int BPF_PROG(fentry_ipt_do_table_pre516, struct sk_buff *skb, const struct nf_hook_state *state,
	     void *table)
{
	xt_table_enter(skb, state, table);
	return 0;
}

SEC("fexit/ipt_do_table")
int BPF_PROG(fexit_ipt_do_table, void *a0, void *a1, void *a2, unsigned int ret)
{
	table_exit(ret);
	return 0;
}

SEC("fentry/nft_do_chain")
int BPF_PROG(fentry_nft_do_chain, const void *pkt, void *priv)
{
	nft_chain_enter(nft_pkt_skb(pkt), nft_pkt_state(pkt), priv);
	return 0;
}

SEC("fexit/nft_do_chain")
int BPF_PROG(fexit_nft_do_chain, const void *pkt, void *priv, unsigned int ret)
{
	table_exit(ret);
	return 0;
}

/* IPVS's netfilter hook function: ip_vs_in_hook, or on older kernels
 * ip_vs_remote_request4 and ip_vs_local_request4 (attached by name, the
 * same arguments). */
SEC("fexit/ip_vs_in_hook")
int BPF_PROG(fexit_ip_vs_hook, void *priv, struct sk_buff *skb,
	     const struct nf_hook_state *state, unsigned int ret)
{
	ipvs_hook_event(skb, state, ret);
	return 0;
}
