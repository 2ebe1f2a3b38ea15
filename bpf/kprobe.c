// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Function hops from kprobes, for kernels where fentry cannot reach the
 * function (no BTF for its module) or is refused. Arguments come from
 * registers (x86-64 calling convention, bpf_tracing.h). */
#define PT_BACKEND_FLAG PT_F_KPROBE
#include "funcs.h"
#include <bpf/bpf_tracing.h>

#define PT_NF_STACK 8

/* nf_hook_slow's arguments, kept from entry to return: a kretprobe sees
 * only the return value. One stack per CPU, as hooks nest on a CPU (a
 * bridge hook running the IPv4 hooks through br_netfilter, softirqs) and
 * return in reverse order. Every call is pushed, wanted or not (skb 0),
 * so that returns pop the right frame. */
struct pt_nf_frame {
	__u64 skb;
	__u64 state;
};

struct pt_nf_stack {
	__u32 depth;
	__u32 pad;
	struct pt_nf_frame frames[PT_NF_STACK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_nf_stack);
} nf_stack SEC(".maps");

SEC("kprobe/nf_hook_slow")
int BPF_KPROBE(kprobe_nf_hook_slow, struct sk_buff *skb, struct nf_hook_state *state)
{
	__u32 zero = 0;
	struct pt_nf_stack *st = bpf_map_lookup_elem(&nf_stack, &zero);
	bool wanted = nf_state_wanted(skb, state);

	if (st) {
		__u32 d = st->depth;
		/* A missed kretprobe leaves a frame behind for good: once the
		 * stack is full of them, start over rather than lose every
		 * last view from then on. */
		if (d >= 2 * PT_NF_STACK)
			d = 0;
		if (d < PT_NF_STACK) {
			st->frames[d].skb = wanted ? (__u64)skb : 0;
			st->frames[d].state = (__u64)state;
		}
		st->depth = d + 1;
	}
	if (wanted)
		nf_func_event(skb, state, PT_SLOT_FIRST);
	return 0;
}

SEC("kretprobe/nf_hook_slow")
int BPF_KRETPROBE(kretprobe_nf_hook_slow, int ret)
{
	__u32 zero = 0;
	struct pt_nf_stack *st = bpf_map_lookup_elem(&nf_stack, &zero);

	if (!st || st->depth == 0)
		return 0;
	__u32 d = st->depth - 1;
	st->depth = d;
	if (d >= PT_NF_STACK)
		return 0;
	struct pt_nf_frame f = st->frames[d];
	if (f.skb && ret == PT_NF_ACCEPT)
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

SEC("kprobe/vxlan_xmit")
int BPF_KPROBE(kprobe_vxlan_xmit, struct sk_buff *skb, struct net_device *dev)
{
	vxlan_event(skb, dev);
	return 0;
}
