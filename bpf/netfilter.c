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
 * their fields are read with plain loads, not bpf_probe_read_kernel.
 *
 * Two things keep the verifier's work (most of pathtrace's start-up) small;
 * both are about what the verifier does, not what the program does:
 * - The hook's devices and netns are loaded here, once, before the parse
 *   branches. A pointer to a struct loaded from a trusted pointer costs the
 *   verifier two searches of vmlinux's BTF by name (whether the field is a
 *   "__safe_trusted" one), every time it walks the load: loaded after the
 *   parse, that was half of nf_first's verification time on 6.18.
 * - skb->head goes through ptr_value. On newer kernels (6.18 here; 6.12
 *   loads it as a number) a load of it is a pointer to read-only untrusted
 *   memory (rdonly_untrusted_mem), not a number. An offset added to a
 *   pointer is made precise, back through every header offset of the
 *   parse, and states that differ in an offset no longer prune.
 * On 6.18, before both: nf_first and nf_last took 65k and 88k instructions
 * walked, 0.29 and 0.24 s of verification; after: 40k and 62k, 0.05 and
 * 0.08 s. The cost when the programs run: three loads and a per-CPU array
 * lookup more for every packet that comes to the parse; in the direct
 * forms, lean_reject turns most of another pod's packets away before. */
static __always_inline void nf_event(struct bpf_nf_ctx *ctx, __u8 slot, bool direct)
{
	struct sk_buff *skb = ctx->skb;
	const struct nf_hook_state *state = ctx->state;

	if (!skb || (direct && lean_reject(skb)))
		return;
	struct pt_pkt p = {};
	struct net_device *in = state->in;
	struct net_device *out = state->out;
	struct net *net = state->net;
	if (!track_typed(skb, ptr_value(skb), &p, direct, slot == PT_SLOT_FIRST))
		return;
	__u64 nfct = 0;
	if (bpf_core_field_exists(skb->_nfct))
		nfct = skb->_nfct;
	if (slot == PT_SLOT_LAST && ct_is_traced(&p))
		conns_add(nfct);
	struct event *e = new_event(skb, &p, PT_EV_NF, NULL);
	if (!e)
		return;
	e->hook = state->hook;
	e->slot = slot;
	e->ext.val[0] = ct_info(nfct);
	e->netns = net->ns.inum;
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
	nf_event(ctx, PT_SLOT_FIRST, false);
	return PT_NF_ACCEPT;
}

SEC("netfilter")
int nf_last(struct bpf_nf_ctx *ctx)
{
	nf_event(ctx, PT_SLOT_LAST, false);
	return PT_NF_ACCEPT;
}

/* The same, reading the packet's first bytes with plain loads where the
 * kernel's verifier allows it (track_typed, direct); the loader tries these
 * first. */
SEC("netfilter")
int nf_first_direct(struct bpf_nf_ctx *ctx)
{
	nf_event(ctx, PT_SLOT_FIRST, true);
	return PT_NF_ACCEPT;
}

SEC("netfilter")
int nf_last_direct(struct bpf_nf_ctx *ctx)
{
	nf_event(ctx, PT_SLOT_LAST, true);
	return PT_NF_ACCEPT;
}
