// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Netfilter hops from BPF netfilter links (6.4+): one program at the first
 * and one at the last priority of each IPv4 hook, so the two views of a hook
 * show what NAT did there. Both always accept: tracing never changes a
 * packet's fate. */
#include "common.h"

#define PT_NF_ACCEPT 1

static __always_inline void nf_event(struct bpf_nf_ctx *ctx, __u8 slot)
{
	struct sk_buff *skb = ctx->skb;
	const struct nf_hook_state *state = ctx->state;
	struct pt_pkt p = {};

	if (!skb || !track(skb, &p))
		return;
	struct event *e = new_event(skb, &p, PT_EV_NF, NULL);
	if (!e)
		return;
	struct net_device *in = BPF_CORE_READ(state, in);
	struct net_device *out = BPF_CORE_READ(state, out);

	e->hook = BPF_CORE_READ(state, hook);
	e->slot = slot;
	e->netns = BPF_CORE_READ(state, net, ns.inum);
	if (in) {
		e->in_ifindex = BPF_CORE_READ(in, ifindex);
		bpf_core_read(e->in_dev, sizeof(e->in_dev), &in->name);
	}
	if (out) {
		e->out_ifindex = BPF_CORE_READ(out, ifindex);
		bpf_core_read(e->out_dev, sizeof(e->out_dev), &out->name);
	}
	/* The hook's device: where the packet is at this point. */
	if (in || out) {
		struct net_device *dev = in ? in : out;
		if (e->hook >= 3 && out) /* LOCAL_OUT, POST_ROUTING */
			dev = out;
		e->ifindex = BPF_CORE_READ(dev, ifindex);
		bpf_core_read(e->dev, sizeof(e->dev), &dev->name);
	}
	bpf_ringbuf_submit(e, 0);
}

SEC("netfilter")
int nf_first(struct bpf_nf_ctx *ctx)
{
	nf_event(ctx, PT_SLOT_FIRST);
	return PT_NF_ACCEPT;
}

SEC("netfilter")
int nf_last(struct bpf_nf_ctx *ctx)
{
	nf_event(ctx, PT_SLOT_LAST);
	return PT_NF_ACCEPT;
}
