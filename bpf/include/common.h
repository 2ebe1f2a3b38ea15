/* Shared by every attach family: the runtime settings, the maps, IPv4/VXLAN
 * parsing, the pod-IP filter, skb tracking and event emission. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "event.h"

#define ETH_P_IP_BE 0x0008 /* htons(ETH_P_IP) */
#define PT_IPPROTO_ICMP 1
#define PT_IPPROTO_TCP 6
#define PT_IPPROTO_UDP 17
#define PT_NET_HEADER_UNSET 0xffff

char __license[] SEC("license") = "Dual MIT/GPL";

/* Runtime settings, written by the loader before load. */
volatile const __u32 pod_ips[PT_MAX_POD_IPS];   /* network byte order */
volatile const __u32 n_pod_ips;                 /* 0: every IPv4 packet */
volatile const __u16 vxlan_ports[PT_MAX_VXLAN_PORTS]; /* host byte order */
volatile const __u32 n_vxlan_ports;
volatile const __u32 snaplen;                   /* bytes of packet to copy */

struct tracked_skb {
	/* Signature of the innermost IPv4 packet: IP id, total length and, for
	 * TCP, sequence and acknowledgment numbers. NAT, TTL changes, VXLAN
	 * encapsulation and a reallocated head (ip_forward's skb_cow on a TCP
	 * clone) keep it; a different packet on a reused skb changes it. */
	__u64 sig;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Packets that matched the filter, by skb address, until freed. LRU keeps it
 * bounded when frees are not seen (TCP frees many skbs without a tracepoint). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tracked_skb);
} tracked SEC(".maps");

/* Events that found the ring buffer full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

struct pt_pkt {
	unsigned char *head;
	__u64 sig;
	__u32 nh;   /* network header offset from head */
	__u32 tail; /* end of linear data, offset from head */
	__u32 vni;
	struct pt_tuple outer;
	struct pt_tuple inner;
	__u8 flags;
	__u8 pad[3];
};

struct pt_l4 {
	__u16 sport;
	__u16 dport;
};

/* Reads an IPv4 header at head+off into t; returns the offset of the L4
 * header, or 0 when there is none to read (not IPv4, a later fragment). */
static __always_inline __u32 parse_ipv4(unsigned char *head, __u32 off,
					 struct pt_tuple *t, __u8 *flags,
					 __u8 l3_flag, __u8 l4_flag, __u64 *sig)
{
	struct iphdr iph;

	if (bpf_probe_read_kernel(&iph, sizeof(iph), head + off))
		return 0;
	if (iph.version != 4 || iph.ihl < 5)
		return 0;
	t->saddr = iph.saddr;
	t->daddr = iph.daddr;
	t->proto = iph.protocol;
	t->ip_id = bpf_ntohs(iph.id);
	*flags |= l3_flag;
	*sig = ((__u64)bpf_ntohs(iph.id) << 48) | ((__u64)bpf_ntohs(iph.tot_len) << 32);
	if (iph.frag_off & bpf_htons(0x1fff))
		return 0;

	__u32 l4 = off + iph.ihl * 4;
	switch (iph.protocol) {
	case PT_IPPROTO_TCP: {
		struct tcphdr th;
		if (bpf_probe_read_kernel(&th, sizeof(th), head + l4))
			return 0;
		t->sport = bpf_ntohs(th.source);
		t->dport = bpf_ntohs(th.dest);
		t->tcp_flags = ((__u8 *)&th)[13];
		*sig |= th.seq ^ ((th.ack_seq << 7) | (th.ack_seq >> 25));
		break;
	}
	case PT_IPPROTO_UDP: {
		struct pt_l4 ports;
		if (bpf_probe_read_kernel(&ports, sizeof(ports), head + l4))
			return 0;
		t->sport = bpf_ntohs(ports.sport);
		t->dport = bpf_ntohs(ports.dport);
		break;
	}
	case PT_IPPROTO_ICMP: {
		__u8 tc[2];
		if (bpf_probe_read_kernel(tc, sizeof(tc), head + l4))
			return 0;
		t->sport = tc[0];
		t->dport = tc[1];
		break;
	}
	default:
		return 0;
	}
	*flags |= l4_flag;
	return l4;
}

static __always_inline bool is_vxlan_port(__u16 port)
{
	for (int i = 0; i < PT_MAX_VXLAN_PORTS; i++) {
		if (i >= n_vxlan_ports)
			break;
		if (vxlan_ports[i] == port)
			return true;
	}
	return false;
}

struct pt_vxlan_eth {
	__u8 vx_flags;
	__u8 vx_reserved[3];
	__u8 vni[3];
	__u8 vx_reserved2;
	__u8 eth_dst[6];
	__u8 eth_src[6];
	__u16 eth_proto;
};

/* Parses the packet at the skb's network header: the outer IPv4 tuple and,
 * for UDP to a VXLAN port, the VNI and the inner IPv4 tuple. */
static __always_inline bool parse_skb(struct sk_buff *skb, struct pt_pkt *p)
{
	if (BPF_CORE_READ(skb, protocol) != ETH_P_IP_BE)
		return false;
	p->head = BPF_CORE_READ(skb, head);
	p->nh = BPF_CORE_READ(skb, network_header);
	p->tail = BPF_CORE_READ(skb, tail);
	if (p->nh == PT_NET_HEADER_UNSET || !p->head)
		return false;

	__u32 l4 = parse_ipv4(p->head, p->nh, &p->outer, &p->flags, PT_F_L3, PT_F_L4, &p->sig);
	if (!(p->flags & PT_F_L3))
		return false;
	if (!l4 || p->outer.proto != PT_IPPROTO_UDP || !is_vxlan_port(p->outer.dport))
		return true;

	struct pt_vxlan_eth vx;
	if (bpf_probe_read_kernel(&vx, sizeof(vx), p->head + l4 + 8))
		return true;
	if (!(vx.vx_flags & 0x08) || vx.eth_proto != ETH_P_IP_BE)
		return true;
	p->vni = ((__u32)vx.vni[0] << 16) | ((__u32)vx.vni[1] << 8) | vx.vni[2];
	parse_ipv4(p->head, l4 + 8 + sizeof(vx), &p->inner, &p->flags, PT_F_INNER, PT_F_INNER_L4, &p->sig);
	return true;
}

static __always_inline bool addr_matches(__u32 a)
{
	for (int i = 0; i < PT_MAX_POD_IPS; i++) {
		if (i >= n_pod_ips)
			break;
		if (pod_ips[i] == a)
			return true;
	}
	return false;
}

static __always_inline bool filter_matches(struct pt_pkt *p)
{
	if (n_pod_ips == 0)
		return true;
	if (addr_matches(p->outer.saddr) || addr_matches(p->outer.daddr))
		return true;
	if (p->flags & PT_F_INNER)
		return addr_matches(p->inner.saddr) || addr_matches(p->inner.daddr);
	return false;
}

/* Decides whether an event on skb is kept: it is when the packet matches the
 * filter, or when the skb matched earlier and still carries the same packet.
 * Sets PT_F_NEW when tracking (re)starts. Non-matching packets cost the
 * header reads, the compares and one map lookup. */
static __always_inline bool track(struct sk_buff *skb, struct pt_pkt *p)
{
	__u64 key = (__u64)skb;
	bool parsed = parse_skb(skb, p);
	bool match = parsed && filter_matches(p);
	struct tracked_skb *t = bpf_map_lookup_elem(&tracked, &key);

	if (t) {
		if (!parsed || t->sig == p->sig)
			return true;
		/* The skb now carries another packet's data: it was freed
		 * without a tracepoint and reused. */
		if (!match) {
			bpf_map_delete_elem(&tracked, &key);
			return false;
		}
		t->sig = p->sig;
		p->flags |= PT_F_NEW;
		return true;
	}
	if (!match)
		return false;
	struct tracked_skb v = { .sig = p->sig };
	bpf_map_update_elem(&tracked, &key, &v, BPF_ANY);
	p->flags |= PT_F_NEW;
	return true;
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		*n += 1;
}

static __always_inline __u32 dev_netns(struct net_device *dev)
{
	return BPF_CORE_READ(dev, nd_net.net, ns.inum);
}

/* Reserves and fills the common part of an event; the caller adds its own
 * fields and submits. Returns NULL (counted as lost) when the ring is full. */
static __always_inline struct event *new_event(struct sk_buff *skb, struct pt_pkt *p,
						__u8 kind, struct net_device *dev)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return NULL;
	}
	__builtin_memset(e, 0, offsetof(struct event, data));
	e->skb = (__u64)skb;
	e->ts = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->kind = kind;
	e->flags = p->flags;
	e->len = BPF_CORE_READ(skb, len);
	e->mark = BPF_CORE_READ(skb, mark);
	e->outer = p->outer;
	e->inner = p->inner;
	e->vni = p->vni;
	if (dev) {
		e->ifindex = BPF_CORE_READ(dev, ifindex);
		e->netns = dev_netns(dev);
		bpf_core_read(e->dev, sizeof(e->dev), &dev->name);
	}

	__u64 cap = 0;
	if (snaplen && (p->flags & PT_F_L3) && p->tail > p->nh) {
		cap = p->tail - p->nh;
		if (cap > snaplen)
			cap = snaplen;
		/* Re-bound right at the call: the verifier needs 0 < cap <= size. */
		asm volatile("" : "+r"(cap));
		if (cap > 0 && cap <= PT_MAX_SNAPLEN) {
			if (bpf_probe_read_kernel(e->data, cap, p->head + p->nh))
				cap = 0;
		} else {
			cap = 0;
		}
	}
	e->cap_len = cap;
	return e;
}

/* Keep the contract's types in BTF for bpf2go -type. */
const struct event *unused_event __attribute__((unused));
const enum pathtrace_kind *unused_kind __attribute__((unused));
const enum pathtrace_slot *unused_slot __attribute__((unused));
const enum pathtrace_flags *unused_flags __attribute__((unused));
