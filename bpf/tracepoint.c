// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Device and free hops from raw tracepoints: no tracefs needed, attached by
 * name. args[0] is the struct sk_buff * on all of them, a scalar: it is the
 * tracked map's key as it is. */
#include "common.h"

static __always_inline int dev_event(__u64 key, __u8 kind)
{
	struct sk_buff *skb = (struct sk_buff *)key;
	struct pt_pkt p = {};

	if (!track_key(skb, key, &p))
		return 0;
	struct event *e = new_event(skb, &p, kind, BPF_CORE_READ(skb, dev));
	if (e)
		submit_event(e);
	return 0;
}

SEC("raw_tracepoint/netif_receive_skb")
int tp_netif_receive_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return dev_event(ctx->args[0], PT_EV_RX);
}

SEC("raw_tracepoint/net_dev_queue")
int tp_net_dev_queue(struct bpf_raw_tracepoint_args *ctx)
{
	return dev_event(ctx->args[0], PT_EV_TX);
}

/* A consumed skb is shown only when it is tracked: a packet is seen at a
 * hop before it is freed after normal use (its device or netfilter hop
 * tracks it), so the hint is checked first, before anything is read: most
 * frees of the machine (every skb of every other pod) stop after one array
 * load. A drop is different: a packet can die before its first hop (in a
 * pod's namespace, which has no netfilter programs: its own OUTPUT rules,
 * a neighbour that never answers), and a copy queued to a raw socket is
 * purged at close with no hop before. So an untracked drop is still parsed
 * and matched by address, as at any hop; drops are rare next to consumes. */
static __always_inline int free_event(__u64 key, __u8 kind, __u64 location,
				      __u32 reason, bool has_reason)
{
	struct sk_buff *skb = (struct sk_buff *)key;
	struct pt_pkt p = {};

	if (kind == PT_EV_CONSUME) {
		__u32 *n = tracked_slot(key);
		if (!n || *n == 0)
			return 0;
	}
	if (!track_key(skb, key, &p))
		return 0;
	if (kind == PT_EV_DROP)
		table_freeing(skb, &p);
	struct event *e = new_event(skb, &p, kind, BPF_CORE_READ(skb, dev));
	if (e) {
		e->location = location;
		e->drop_reason = reason;
		if (has_reason)
			e->flags |= PT_F_REASON;
		submit_event(e);
	}
	untrack(key);
	return 0;
}

/* kfree_skb(skb, location, reason[, rx_sk]) since 5.17. */
SEC("raw_tracepoint/kfree_skb")
int tp_kfree_skb_reason(struct bpf_raw_tracepoint_args *ctx)
{
	return free_event(ctx->args[0], PT_EV_DROP, ctx->args[1],
			  (__u32)ctx->args[2], true);
}

/* kfree_skb(skb, location) before 5.17: no drop reason. */
SEC("raw_tracepoint/kfree_skb")
int tp_kfree_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return free_event(ctx->args[0], PT_EV_DROP, ctx->args[1], 0, false);
}

SEC("raw_tracepoint/consume_skb")
int tp_consume_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return free_event(ctx->args[0], PT_EV_CONSUME, 0, 0, false);
}
