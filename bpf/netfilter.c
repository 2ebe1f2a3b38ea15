// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Netfilter hops from BPF netfilter links (6.4+): one program at the first
 * and one at the last priority of each IPv4 and IPv6 hook (the loader
 * attaches the same programs to both families), so the two views of a hook
 * show what NAT did there. Both always accept: tracing never changes a
 * packet's fate. */
#include "common.h"

#define PT_NF_ACCEPT 1

/* Copies a device name: two 8-byte loads, no helper call. */
static __always_inline void dev_name(char dst[PT_IFNAMSIZ], struct net_device *dev)
{
	__builtin_memcpy(dst, dev->name, PT_IFNAMSIZ);
}

/* ctx->skb and ctx->state are pointers the verifier knows the type of:
 * their fields are read with plain loads, not bpf_probe_read_kernel. */
static __always_inline void nf_event(struct bpf_nf_ctx *ctx, __u8 slot)
{
	struct sk_buff *skb = ctx->skb;
	const struct nf_hook_state *state = ctx->state;
	struct pt_pkt p = {};

	if (!skb)
		return;
	struct pt_skb s = {
		.head = skb->head,
		.protocol = skb->protocol,
		.nh = skb->network_header,
		.tail = skb->tail,
	};
	if (!track_skb(ptr_value(skb), &s, &p))
		return;
	p.len = skb->len;
	p.mark = skb->mark;
	__u64 nfct = 0;
	if (bpf_core_field_exists(skb->_nfct))
		nfct = skb->_nfct;
	if (slot == PT_SLOT_LAST)
		conns_add(nfct);
	struct event *e = new_event(skb, &p, PT_EV_NF, NULL);
	if (!e)
		return;
	struct net_device *in = state->in;
	struct net_device *out = state->out;

	e->hook = state->hook;
	e->slot = slot;
	e->ext.val[0] = ct_info(nfct);
	e->netns = state->net->ns.inum;
	if (in) {
		e->in_ifindex = in->ifindex;
		dev_name(e->in_dev, in);
	}
	if (out) {
		e->out_ifindex = out->ifindex;
		dev_name(e->out_dev, out);
	}
	/* The hook's device: where the packet is at this point. */
	if (in || out) {
		struct net_device *dev = in ? in : out;
		if (e->hook >= 3 && out) /* LOCAL_OUT, POST_ROUTING */
			dev = out;
		e->ifindex = dev->ifindex;
		dev_name(e->dev, dev);
	}
	submit_event(e);
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
