// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Function hops from kprobes, for kernels where fentry cannot reach the
 * function (no BTF for its module) or is refused. Arguments come from
 * registers (x86-64 calling convention, bpf_tracing.h). */
#define PT_BACKEND_FLAG PT_F_KPROBE
#define PT_SKB_SCALAR 1 /* common.h, track: no ptr_value */
#include "funcs.h"
#include <bpf/bpf_tracing.h>

#define PT_STACK 8

/* A hook function's arguments, kept from entry to return: a kretprobe
 * sees only the return value. One stack per CPU and function, as calls nest
 * on a CPU (a bridge hook running the IPv4 hooks through br_netfilter,
 * softirqs, a REJECT sending its reply through the output hooks) and return
 * in reverse order. Every call is pushed, wanted or not (skb 0), so that
 * returns pop the right frame. The rule tables keep their own frames
 * (common.h, table_stack). */
struct pt_frame {
	__u64 skb;
	__u64 state;
};

struct pt_stack {
	__u32 depth;
	__u32 pad;
	struct pt_frame frames[PT_STACK];
};

#define PT_STACK_MAP(name)                                                                         \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                           \
		__uint(max_entries, 1);                                                            \
		__type(key, __u32);                                                                \
		__type(value, struct pt_stack);                                                    \
	} name SEC(".maps")

PT_STACK_MAP(nf_stack);
PT_STACK_MAP(ipvs_stack);

static __always_inline void stack_push(void *map, bool wanted, void *skb, const void *state)
{
	__u32 zero = 0;
	struct pt_stack *st = bpf_map_lookup_elem(map, &zero);

	if (!st)
		return;
	__u32 d = st->depth;
	/* A missed kretprobe leaves a frame behind for good: once the stack
	 * is full of them, start over rather than lose every return from
	 * then on. */
	if (d >= 2 * PT_STACK)
		d = 0;
	if (d < PT_STACK) {
		st->frames[d].skb = wanted ? (__u64)skb : 0;
		st->frames[d].state = (__u64)state;
	}
	st->depth = d + 1;
}

/* Pops the newest frame into f; false when there is none or it was not
 * wanted. */
static __always_inline bool stack_pop(void *map, struct pt_frame *f)
{
	__u32 zero = 0;
	struct pt_stack *st = bpf_map_lookup_elem(map, &zero);

	if (!st || st->depth == 0)
		return false;
	__u32 d = st->depth - 1;
	st->depth = d;
	if (d >= PT_STACK)
		return false;
	*f = st->frames[d];
	return f->skb != 0;
}

SEC("kprobe/nf_hook_slow")
int BPF_KPROBE(kprobe_nf_hook_slow, struct sk_buff *skb, struct nf_hook_state *state)
{
	bool wanted = nf_state_wanted(skb, state);

	stack_push(&nf_stack, wanted, skb, state);
	if (wanted)
		nf_func_event(skb, state, PT_SLOT_FIRST);
	return 0;
}

SEC("kretprobe/nf_hook_slow")
int BPF_KRETPROBE(kretprobe_nf_hook_slow, int ret)
{
	struct pt_frame f;

	if (stack_pop(&nf_stack, &f) && ret == PT_NF_ACCEPT)
		nf_func_event((struct sk_buff *)f.skb, (const struct nf_hook_state *)f.state,
			      PT_SLOT_LAST);
	return 0;
}

SEC("kprobe/br_forward")
int BPF_KPROBE(kprobe_br_forward, const struct net_bridge_port *to, struct sk_buff *skb)
{
	bridge_event(to, skb);
	return 0;
}

SEC("kprobe/ip_vs_nat_xmit")
int BPF_KPROBE(kprobe_ip_vs_xmit, struct sk_buff *skb, const void *cp)
{
	ipvs_event(skb, cp);
	return 0;
}

/* The tunnels' transmit and receive functions (bpf/fentry.c). */
SEC("kprobe/vxlan_xmit")
int BPF_KPROBE(kprobe_vxlan_xmit, struct sk_buff *skb, struct net_device *dev)
{
	encap_event(skb, dev, PT_TUNNEL_VXLAN);
	return 0;
}

SEC("kprobe/geneve_xmit")
int BPF_KPROBE(kprobe_geneve_xmit, struct sk_buff *skb, struct net_device *dev)
{
	encap_event(skb, dev, PT_TUNNEL_GENEVE);
	return 0;
}

SEC("kprobe/ipip_tunnel_xmit")
int BPF_KPROBE(kprobe_ipip_tunnel_xmit, struct sk_buff *skb, struct net_device *dev)
{
	encap_event(skb, dev, PT_TUNNEL_IPIP);
	return 0;
}

SEC("kprobe/vxlan_rcv")
int BPF_KPROBE(kprobe_vxlan_rcv, struct sock *sk, struct sk_buff *skb)
{
	decap_event(skb, PT_TUNNEL_VXLAN);
	return 0;
}

SEC("kprobe/geneve_udp_encap_recv")
int BPF_KPROBE(kprobe_geneve_rcv, struct sock *sk, struct sk_buff *skb)
{
	decap_event(skb, PT_TUNNEL_GENEVE);
	return 0;
}

SEC("kprobe/ipip_rcv")
int BPF_KPROBE(kprobe_ipip_rcv, struct sk_buff *skb)
{
	decap_event(skb, PT_TUNNEL_IPIP);
	return 0;
}

/* ipt_do_table: (priv, skb, state) since Linux 5.16, (skb, state, table)
 * before; the loader picks the entry program (bpf/fentry.c). The frames
 * are the tables' own (common.h, table_stack). */
SEC("kprobe/ipt_do_table")
int BPF_KPROBE(kprobe_ipt_do_table, void *priv, struct sk_buff *skb, const struct nf_hook_state *state)
{
	xt_table_enter(skb, state, priv);
	return 0;
}

SEC("kprobe/ipt_do_table")
int BPF_KPROBE(kprobe_ipt_do_table_pre516, struct sk_buff *skb, const struct nf_hook_state *state,
	       void *table)
{
	xt_table_enter(skb, state, table);
	return 0;
}

SEC("kprobe/nft_do_chain")
int BPF_KPROBE(kprobe_nft_do_chain, const void *pkt, void *priv)
{
	nft_chain_enter(nft_pkt_skb(pkt), nft_pkt_state(pkt), priv);
	return 0;
}

/* The return of either table function. */
SEC("kretprobe/nft_do_chain")
int BPF_KRETPROBE(kretprobe_table, unsigned int ret)
{
	table_exit(ret);
	return 0;
}

/* IPVS's hook function (ip_vs_in_hook, ip_vs_remote_request4, ...: the
 * loader attaches to whichever the kernel has). */
SEC("kprobe/ip_vs_in_hook")
int BPF_KPROBE(kprobe_ip_vs_hook, void *priv, struct sk_buff *skb, const struct nf_hook_state *state)
{
	stack_push(&ipvs_stack, table_wanted(skb, state), skb, state);
	return 0;
}

SEC("kretprobe/ip_vs_in_hook")
int BPF_KRETPROBE(kretprobe_ip_vs_hook, unsigned int ret)
{
	struct pt_frame f;

	if (stack_pop(&ipvs_stack, &f))
		ipvs_hook_event((struct sk_buff *)f.skb, (const struct nf_hook_state *)f.state, ret);
	return 0;
}
