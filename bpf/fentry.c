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

SEC("fentry/vxlan_xmit")
int BPF_PROG(fentry_vxlan_xmit, struct sk_buff *skb, struct net_device *dev)
{
	vxlan_event(skb, dev);
	return 0;
}
