// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Device and free hops from raw tracepoints: no tracefs needed, attached by
 * name. args[0] is the struct sk_buff * on all of them. */
#include "common.h"

static __always_inline int dev_event(struct sk_buff *skb, __u8 kind)
{
	struct pt_pkt p = {};

	if (!track(skb, &p))
		return 0;
	struct event *e = new_event(skb, &p, kind, BPF_CORE_READ(skb, dev));
	if (e)
		submit_event(e);
	return 0;
}

SEC("raw_tracepoint/netif_receive_skb")
int tp_netif_receive_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return dev_event((struct sk_buff *)ctx->args[0], PT_EV_RX);
}

SEC("raw_tracepoint/net_dev_queue")
int tp_net_dev_queue(struct bpf_raw_tracepoint_args *ctx)
{
	return dev_event((struct sk_buff *)ctx->args[0], PT_EV_TX);
}

static __always_inline int free_event(struct sk_buff *skb, __u8 kind, __u64 location,
				      __u32 reason, bool has_reason)
{
	struct pt_pkt p = {};
	__u64 key = (__u64)skb;

	if (!track(skb, &p))
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
	return free_event((struct sk_buff *)ctx->args[0], PT_EV_DROP, ctx->args[1],
			  (__u32)ctx->args[2], true);
}

/* kfree_skb(skb, location) before 5.17: no drop reason. */
SEC("raw_tracepoint/kfree_skb")
int tp_kfree_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return free_event((struct sk_buff *)ctx->args[0], PT_EV_DROP, ctx->args[1], 0, false);
}

SEC("raw_tracepoint/consume_skb")
int tp_consume_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return free_event((struct sk_buff *)ctx->args[0], PT_EV_CONSUME, 0, 0, false);
}
