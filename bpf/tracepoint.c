// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Device and free hops from tracepoints, two ways: BTF tracepoints (tp_btf,
 * 5.5+), whose skb is a pointer the verifier knows the type of, so its
 * fields are plain loads; and raw tracepoints, whose args[0] is the skb as a
 * scalar, read with bpf_probe_read_kernel. The loader takes the BTF ones
 * where they load and attach, the raw ones otherwise (consume_skb has only
 * a raw one: see drop_event_btf); both are attached by name, no tracefs
 * needed. */
#include "common.h"
#include <bpf/bpf_tracing.h>

static __always_inline int dev_event(__u64 key, __u8 kind)
{
	struct sk_buff *skb = (struct sk_buff *)key;
	struct pt_pkt p = {};

	if (!track_key(skb, key, &p, kind == PT_EV_RX))
		return 0;
	struct event *e = new_event(skb, &p, kind, BPF_CORE_READ(skb, dev));
	if (e)
		submit_event(e);
	return 0;
}

/* The device fields new_event reads with helpers from a scalar device,
 * here with plain loads: dev and net (dev's namespace) are typed pointers.
 * Four bpf_probe_read_kernel calls fewer per event: a device hop of a
 * traced cross-node UDP flow cost 365-390 ns a run with them, 268-326
 * without (bpf_stats, 6.18; docs/BENCHMARKS.md, 2026-12-05 (morning)). */
static __always_inline void event_dev_typed(struct event *e, struct net_device *dev,
					    struct net *net)
{
	e->ifindex = dev->ifindex;
	e->netns = net->ns.inum;
	__builtin_memcpy(e->dev, dev->name, sizeof(e->dev));
}

/* dev_event for a typed skb. The device (never NULL at these two
 * tracepoints) and its namespace are loaded before the parse, as in
 * nf_event: once for the verifier, not on each of the parse's paths. */
static __always_inline int dev_event_btf(struct sk_buff *skb, __u8 kind, bool direct)
{
	if (direct && lean_reject(skb))
		return 0;
	struct net_device *dev = skb->dev;
	struct net *net = dev->nd_net.net;
	struct pt_pkt p = {};

	if (!track_typed(skb, ptr_value(skb), &p, direct, kind == PT_EV_RX))
		return 0;
	struct event *e = new_event(skb, &p, kind, NULL);
	if (e) {
		event_dev_typed(e, dev, net);
		submit_event(e);
	}
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

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(btf_netif_receive_skb, struct sk_buff *skb)
{
	return dev_event_btf(skb, PT_EV_RX, false);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(btf_net_dev_queue, struct sk_buff *skb)
{
	return dev_event_btf(skb, PT_EV_TX, false);
}

/* The same, reading the packet's first bytes with plain loads where the
 * kernel's verifier allows it (track_typed, direct); the loader tries these
 * first. Drops keep one BTF form: they are rare. */
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(btfd_netif_receive_skb, struct sk_buff *skb)
{
	return dev_event_btf(skb, PT_EV_RX, true);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(btfd_net_dev_queue, struct sk_buff *skb)
{
	return dev_event_btf(skb, PT_EV_TX, true);
}

/* Whether the tracked_hint slot of key says no skb there is tracked. */
static __always_inline bool hint_says_untracked(__u64 key)
{
	__u32 *n = tracked_slot(key);

	return !n || *n == 0;
}

/* The event of a tracked free, and the end of its tracking. typed: dev is
 * a typed pointer, read with plain loads (event_dev_typed), else a scalar
 * read with helpers. */
static __always_inline void free_emit(struct sk_buff *skb, __u64 key, struct pt_pkt *p, __u8 kind,
				      struct net_device *dev, bool typed, __u64 location,
				      __u32 reason, bool has_reason)
{
	if (kind == PT_EV_DROP)
		table_freeing(skb, p);
	struct event *e = new_event(skb, p, kind, typed ? NULL : dev);
	if (e) {
		/* The namespace is loaded only here, under the check: a
		 * NULL in its place where dev is NULL would be a number on
		 * the verifier's path where it cannot tell dev is NULL. */
		if (typed && dev)
			event_dev_typed(e, dev, dev->nd_net.net);
		e->location = location;
		e->drop_reason = reason;
		if (has_reason)
			e->flags |= PT_F_REASON;
		submit_event(e);
	}
	untrack(key);
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

	if (kind == PT_EV_CONSUME && hint_says_untracked(key))
		return 0;
	if (!track_key(skb, key, &p, false))
		return 0;
	free_emit(skb, key, &p, kind, BPF_CORE_READ(skb, dev), false, location, reason, has_reason);
	return 0;
}

/* free_event for drops of a typed skb. Consumes have no BTF form: their
 * hint check wants the skb's address as a number, which a raw tracepoint
 * has and a BTF one gets only through ptr_value, and for other pods'
 * packets it is all they do. make bench's cost phase measured 61-63 ns a
 * run for the raw program against 69 ns for a BTF one (2026-12-04, 6.18). */
static __always_inline int drop_event_btf(struct sk_buff *skb, __u64 location, __u32 reason,
					  bool has_reason)
{
	__u64 key = ptr_value(skb);
	struct net_device *dev = skb->dev; /* a freed skb may have none */
	struct pt_pkt p = {};

	if (!track_typed(skb, key, &p, false, false))
		return 0;
	free_emit(skb, key, &p, PT_EV_DROP, dev, true, location, reason, has_reason);
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

/* Drops from BTF tracepoints. location is a void *: a number here. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(btf_kfree_skb_reason, struct sk_buff *skb, void *location,
	     enum skb_drop_reason reason)
{
	return drop_event_btf(skb, (__u64)location, (__u32)reason, true);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(btf_kfree_skb, struct sk_buff *skb, void *location)
{
	return drop_event_btf(skb, (__u64)location, 0, false);
}
