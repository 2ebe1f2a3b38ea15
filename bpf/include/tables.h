/* Rule-table verdicts: ipt_do_table (iptables-legacy, x_tables) and
 * nft_do_chain (nf_tables, which iptables-nft also uses), and the verdict of
 * IPVS's own netfilter hook. Shared by fentry.c and kprobe.c through
 * funcs.h.
 *
 * A table call pushes a frame at entry (the table's and chain's names are
 * read while the call holds them) and pops it at return, where the verdict
 * is shown. A table that frees a dropped packet itself (nf_tables since
 * 6.1-era kernels) has its verdict shown by the kfree_skb program instead,
 * before the drop (common.h, table_freeing). */
#pragma once

#include "common.h"

#define PT_NF_STOLEN 2
#define PT_NF_VERDICT_MASK 0xff

/* enum pathtrace_table_engine: who ran the table (event.h, PT_EV_TABLE). */
#define PT_ENGINE_XTABLES 1
#define PT_ENGINE_NFTABLES 2

/* The stable heads read where the module has no BTF (Debian 5.10):
 * xt_table's name is at 56 and nft_chain's table and name pointers at 64
 * and 88 in the 5.10, 6.1 and 6.12 sources; TestKernelStructHeads compares
 * them with the BTF of kernels that have it. */
struct pt_xt_table_head {
	__u64 pad[7];
	char name[32];
};

struct pt_nft_chain_head {
	__u64 pad[8];
	void *table;
	__u64 handle;
	__u32 use;
	__u8 flags;
	__u8 pad2[3];
	char *name;
};

/* Reads the name a kernel string pointer points to. */
static __always_inline void read_name_ptr(char dst[16], const char *src)
{
	if (src)
		bpf_probe_read_kernel_str(dst, 16, src);
}

/* Whether a table call is one to show: a node namespace, where known. */
static __always_inline bool table_wanted(struct sk_buff *skb, const struct nf_hook_state *state)
{
	if (!skb)
		return false;
	if (state)
		return nf_netns_matches(BPF_CORE_READ(state, net, ns.inum));
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	return !dev || nf_netns_matches(dev_netns(dev));
}

/* Pushes the frame of a table call: filled for a traced packet, empty
 * (skb 0) otherwise, so that returns pop the right frame. Returns the
 * frame to fill, or NULL. */
static __always_inline struct pt_table_frame *table_push(struct sk_buff *skb,
							  const struct nf_hook_state *state,
							  __u8 engine)
{
	__u32 zero = 0;
	struct pt_table_stack *st = bpf_map_lookup_elem(&table_stack, &zero);

	if (!st)
		return NULL;
	__u32 d = st->depth;
	/* A missed return leaves a frame behind for good: once the stack is
	 * full of them, start over rather than lose every verdict. */
	if (d >= 2 * PT_TABLE_STACK)
		d = 0;
	st->depth = d + 1;
	if (d >= PT_TABLE_STACK)
		return NULL;
	struct pt_table_frame *f = &st->frames[d & (PT_TABLE_STACK - 1)];
	/* An empty frame is one with skb 0: nothing else of it is read.
	 * The namespace first, then the packet, and the frame filled only
	 * for a traced packet. */
	f->skb = 0;
	if (!table_wanted(skb, state))
		return NULL;
	struct pt_pkt p = {};
	if (!track(skb, &p, false))
		return NULL;
	__builtin_memset(f, 0, sizeof(*f));
	f->skb = (__u64)skb;
	f->engine = engine;
	f->backend = PT_BACKEND_FLAG;
	f->hook = 0xff;
	if (state) {
		f->hook = nf_state_hook(state);
		f->netns = BPF_CORE_READ(state, net, ns.inum);
	} else {
		struct net_device *dev = BPF_CORE_READ(skb, dev);
		if (dev)
			f->netns = dev_netns(dev);
	}
	return f;
}

/* ipt_do_table's entry: the table is a struct xt_table. */
static __always_inline void xt_table_enter(struct sk_buff *skb, const struct nf_hook_state *state,
					   const void *table)
{
	struct pt_table_frame *f = table_push(skb, state, PT_ENGINE_XTABLES);

	if (!f || !table)
		return;
	if (bpf_core_type_exists(struct xt_table)) {
		const struct xt_table *t = table;
		f->family = BPF_CORE_READ(t, af);
		bpf_core_read_str(f->table, sizeof(f->table), &t->name);
	} else {
		const struct pt_xt_table_head *t = table;
		bpf_probe_read_kernel_str(f->table, sizeof(f->table), &t->name);
	}
}

/* nft_do_chain's entry: the base chain's table and name. */
static __always_inline void nft_chain_enter(struct sk_buff *skb, const struct nf_hook_state *state,
					    const void *chain)
{
	struct pt_table_frame *f = table_push(skb, state, PT_ENGINE_NFTABLES);

	if (!f || !chain)
		return;
	if (bpf_core_type_exists(struct nft_chain) && bpf_core_type_exists(struct nft_table)) {
		const struct nft_chain *c = chain;
		const struct nft_table *t = BPF_CORE_READ(c, table);
		read_name_ptr(f->chain, BPF_CORE_READ(c, name));
		if (t) {
			read_name_ptr(f->table, BPF_CORE_READ(t, name));
			f->family = BPF_CORE_READ_BITFIELD_PROBED(t, family);
		}
	} else {
		struct pt_nft_chain_head h = {};
		if (!bpf_probe_read_kernel(&h, sizeof(h), chain))
			read_name_ptr(f->chain, h.name);
	}
}

/* A table call returned verdict: pops its frame and shows the verdict,
 * unless the packet is gone (stolen; a drop the table freed itself, which
 * the kfree_skb program showed). */
static __always_inline void table_exit(unsigned int verdict)
{
	__u32 zero = 0;
	struct pt_table_stack *st = bpf_map_lookup_elem(&table_stack, &zero);

	if (!st || st->depth == 0)
		return;
	__u32 d = st->depth - 1;
	st->depth = d;
	if (d >= PT_TABLE_STACK)
		return;
	/* The frame stays in the map: no copy on the stack, which the exit
	 * programs do not have room for next to parse_skb's calls (5.10 and
	 * 6.1 count each call's frame rounded up to 32 bytes). No other table
	 * call runs on this CPU until this program returns. */
	struct pt_table_frame *f = &st->frames[d & (PT_TABLE_STACK - 1)];
	if (!f->skb || f->reported || (verdict & PT_NF_VERDICT_MASK) == PT_NF_STOLEN)
		return;
	struct pt_pkt p = {};
	struct sk_buff *skb = (struct sk_buff *)f->skb;
	if (!track(skb, &p, false))
		return;
	table_frame_event(skb, &p, f, verdict);
}

/* The hook state and packet of an nft_do_chain call. Before 5.15 the state
 * sat inside pkt->xt; without BTF only the skb (always first) is read. */
struct nft_pktinfo___pre515 {
	struct sk_buff *skb;
	struct xt_action_param xt;
} __attribute__((preserve_access_index));

static __always_inline struct sk_buff *nft_pkt_skb(const void *pkt)
{
	struct sk_buff *skb = NULL;
	bpf_probe_read_kernel(&skb, sizeof(skb), pkt);
	return skb;
}

static __always_inline const struct nf_hook_state *nft_pkt_state(const void *pkt)
{
	if (!bpf_core_type_exists(struct nft_chain))
		return NULL; /* no BTF for nf_tables: layout unknown */
	if (bpf_core_field_exists(struct nft_pktinfo, state))
		return BPF_CORE_READ((const struct nft_pktinfo *)pkt, state);
	return BPF_CORE_READ((const struct nft_pktinfo___pre515 *)pkt, xt.state);
}

/* Fills the hook, namespace and devices of an event from the hook state. */
static __always_inline void hook_state(struct event *e, const struct nf_hook_state *state)
{
	struct net_device *in = BPF_CORE_READ(state, in);
	struct net_device *out = BPF_CORE_READ(state, out);
	e->hook = nf_state_hook(state);
	e->netns = BPF_CORE_READ(state, net, ns.inum);
	if (in)
		read_dev(in, e->in_dev, &e->in_ifindex);
	if (out)
		read_dev(out, e->out_dev, &e->out_ifindex);
}

/* IPVS's hook function returned verdict. Only a drop is an event of its
 * own: a packet IPVS takes (NF_STOLEN) shows in its transmit hop, one it
 * lets through (NF_ACCEPT) was not for a virtual service. */
static __always_inline void ipvs_hook_event(struct sk_buff *skb, const struct nf_hook_state *state,
					    unsigned int verdict)
{
	struct pt_pkt p = {};

	if ((verdict & PT_NF_VERDICT_MASK) != PT_NF_DROP || !state || !table_wanted(skb, state) ||
	    !track(skb, &p, false))
		return;
	struct event *e = new_event(skb, &p, PT_EV_IPVS_VERDICT, NULL);
	if (!e)
		return;
	e->flags |= PT_BACKEND_FLAG;
	hook_state(e, state);
	e->ext.val[0] = verdict;
	submit_event(e);
}
