/* Shared by every attach family: the runtime settings, the maps, IPv4, IPv6
 * and tunnel (VXLAN, Geneve, IPIP) parsing, the pod-IP filter, skb tracking
 * and event emission. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "event.h"

#define ETH_P_IP_BE 0x0008   /* htons(ETH_P_IP) */
#define ETH_P_IPV6_BE 0xDD86 /* htons(ETH_P_IPV6) */
#define PT_IPPROTO_ICMP 1
#define PT_IPPROTO_IPIP 4
#define PT_IPPROTO_TCP 6
#define PT_IPPROTO_UDP 17
#define PT_IPPROTO_ICMPV6 58
#define PT_NET_HEADER_UNSET 0xffff
#define ETH_P_TEB_BE 0x5865 /* htons(ETH_P_TEB): Ethernet inside a tunnel */
#define PT_GENEVE_PORT 6081 /* IANA: OVN-Kubernetes, Antrea */
#define PT_UDP_HDR 8
#define PT_ETH_HDR 14

char __license[] SEC("license") = "Dual MIT/GPL";

/* Runtime settings, written by the loader before load. */
/* The pod-IP filter: IPv4 addresses in pod_ips, IPv6 addresses in
 * pod_ip6s (four words each). With none of either, every packet matches. */
volatile const __u32 pod_ips[PT_MAX_POD_IPS];   /* network byte order */
volatile const __u32 n_pod_ips;
volatile const __u32 pod_ip6s[PT_MAX_POD_IPS * 4]; /* network byte order */
volatile const __u32 n_pod_ip6s;
/* 1: ICMPv6 neighbour discovery and multicast listener messages (types
 * 130-137, 143) match like other packets; 0: they match only as a tracked
 * skb's packet, never by address, connection or the empty filter. */
volatile const __u32 trace_nd;
volatile const __u16 vxlan_ports[PT_MAX_VXLAN_PORTS]; /* host byte order */
volatile const __u32 n_vxlan_ports;
volatile const __u32 snaplen;                   /* bytes of packet to copy */
/* 1: copy the snaplen's bytes only where a packet's headers are new or
 * changed (its first event on an skb, NAT, encapsulation and
 * decapsulation); other events carry an ICMP packet's or a fragment's
 * headers only (hdr_cap). 0: at every event. */
volatile const __u32 snap_changed;
/* 1: the loader replaced pt_filter with a filter expression's translation
 * (internal/filter); a packet must match it as well as a pod IP. */
volatile const __u32 filter_on;

struct tracked_skb {
	/* Signature of the innermost IP packet. IPv4: IP id, total length
	 * and, for TCP, sequence and acknowledgment numbers. IPv6 (no IP id):
	 * the low 16 bits of the flow label, the payload length and, for TCP,
	 * sequence and acknowledgment numbers, for an ICMPv6 echo its
	 * sequence number, for a fragment its identification. NAT, TTL or hop
	 * limit changes, VXLAN encapsulation and a reallocated head
	 * (ip_forward's skb_cow on a TCP clone) keep it; a different packet
	 * on a reused skb changes it, but for IPv6 UDP packets of one flow of
	 * the same length. */
	__u64 sig;
	/* Hash of the headers the last event showed (see hdr_hash): a
	 * different one means NAT, encapsulation or decapsulation. */
	__u64 hdr;
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

/* How many tracked skbs hash to each slot (see tracked_slot): a packet of
 * another pod whose slot is zero cannot be tracked, and skips the lookup in
 * tracked, the most expensive step of its filtering. Counted up before an
 * insert into tracked and down after a delete; an LRU eviction leaves its
 * count up, which costs lookups, never a missed event. */
#define PT_HINT_SLOTS (1 << 16)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PT_HINT_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} tracked_hint SEC(".maps");

/* The connections of traced packets, as conntrack tuples: a packet whose
 * tuple (or VXLAN inner tuple) is one of them is followed as if it matched
 * the filter, so that every packet of a traced connection, both directions
 * and each NAT form, is followed from its first hop on the node (see
 * conns_add). Four keys a connection and a translation: conntrack's
 * original tuple, its reply tuple and the reverse of each. Keys are never
 * deleted: LRU bounds the map, and evictions are counted in user space
 * (inserted, conn_stats, less live). 65536 keys hold 16384 connections
 * translated twice (NodePort: DNAT + masquerade), twice as many with one
 * NAT or none, in about 7 MiB of kernel memory (112 bytes a key: the
 * map's memlock in fdinfo, 6.18). */
struct pt_conn_key {
	__u32 saddr[4]; /* network byte order; IPv4 in [0], the rest zero */
	__u32 daddr[4];
	__u16 sport; /* network byte order; ICMP echo: the echo id */
	__u16 dport; /* ICMP echo: the echo id too, so request and reply share keys */
	__u8 proto;
	__u8 pad[3];
};

_Static_assert(__builtin_offsetof(struct pt_conn_key, daddr) == 16 &&
		       __builtin_offsetof(struct pt_conn_key, sport) == 32 &&
		       __builtin_offsetof(struct pt_conn_key, proto) == 36,
	       "pt_conn_key: quote_known reads an IPv6 quote's addresses and ports into it as they lie");

#define PT_CONNS (1 << 16)
#define PT_CONN_ORIG 1  /* value: conntrack's original tuple */
#define PT_CONN_OTHER 2 /* value: the others */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PT_CONNS);
	__type(key, struct pt_conn_key);
	__type(value, __u32);
} conns SEC(".maps");

/* Whether a key of conns hashes to each slot (see conn_slot): a packet of
 * another pod whose slot is zero costs one array load, not a lookup in
 * conns. Set on insert, never cleared (an evicted key leaves its slot
 * set: a lookup, never a missed packet). */
#define PT_CONN_HINT_SLOTS (1 << 16)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PT_CONN_HINT_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} conns_hint SEC(".maps");

/* Per CPU: keys inserted into conns, and connections (original tuples)
 * among them. */
#define PT_CONN_STAT_KEYS 0
#define PT_CONN_STAT_CONNS 1
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} conn_stats SEC(".maps");

/* What a filter expression runs on (filter_match): the first bytes of the
 * IPv4 packet (internal/filter.BufSize), classic BPF's scratch memory and
 * the packet's length (len). A map value, not the stack: 5.10's verifier
 * allows no variable-offset reads of the stack, and the deepest programs
 * have no stack to spare. internal/filter's layout constants match it. */
#define PT_FILTER_BYTES 128
struct pt_filter_buf {
	__u8 data[PT_FILTER_BYTES];
	__u32 mem[16];
	__u32 len;
	__u32 pad;
};
/* Two per CPU, one for each level pt_filter_match can be running at on a
 * CPU: a program in process context (a netfilter hook's program for a
 * packet of a node's own socket, a free's) interrupted there by a softirq
 * that runs one again. With one buffer the interrupted filter went on with
 * the other packet's bytes. Our programs do not run in hard interrupts:
 * there is no third level. */
#define PT_FILTER_LEVELS 2
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PT_FILTER_LEVELS);
	__type(key, __u32);
	__type(value, struct pt_filter_buf);
} pt_filter_pkt SEC(".maps");

/* How many pt_filter_match calls are running on this CPU: the level of
 * the next one's buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} pt_filter_depth SEC(".maps");

/* A place to turn a pointer into a number (see ptr_value). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pt_scratch SEC(".maps");

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
	__u32 len;  /* skb->len, read once the event is kept */
	__u32 mark; /* skb->mark, likewise */
	__u32 vni;
	struct pt_tuple outer;
	struct pt_tuple inner;
	/* ICMP echo ids (network byte order) of the outer and inner headers,
	 * valid with PT_ECHO_OUTER / PT_ECHO_INNER in echo. */
	__u16 outer_id;
	__u16 inner_id;
	/* Bytes from the network header to the end of the headers decode
	 * must read even without a snaplen: an ICMP packet's ICMP header (the
	 * echo id), an IP fragment's IPv4 header or IPv6 fragment header
	 * (what tells a fragment); the inner packet's when encapsulated.
	 * What an event captures when snaplen is 0, and at the hops where
	 * snap_changed copies no snaplen's bytes. */
	__u16 hdr_cap;
	__u8 echo;
	__u8 flags;
	__u8 nd; /* PT_ECHO_OUTER / PT_ECHO_INNER: that header is neighbour
		  * discovery or MLD (see trace_nd) */
	__u8 snap;   /* headers new or changed: copy the snaplen's bytes */
	__u8 tunnel; /* enum pathtrace_tunnel, with PT_F_INNER */
	/* With a filter expression: the headers whose addresses matched
	 * (PT_CAND_OUTER, PT_CAND_INNER), that the expression decides on,
	 * and where the inner one starts, from the network header. */
	__u8 cand;
	__u8 inner_at;
	__u8 pad[7];
};

#define PT_CAND_OUTER 1
#define PT_CAND_INNER 2

#define PT_ECHO_OUTER 1
#define PT_ECHO_INNER 2
#define PT_ICMP_ECHOREPLY 0
#define PT_ICMP_ECHO 8
#define PT_ICMP_HDR 8
#define PT_ICMPV6_ECHO 128
#define PT_ICMPV6_ECHOREPLY 129

/* The sk_buff fields every event starts from. */
struct pt_skb {
	unsigned char *head;
	/* The network header as memory the program reads with plain loads
	 * (track_typed's direct form); NULL: it is read with bpf_probe_read_kernel. */
	const __u64 *net;
	__u16 protocol; /* __be16 */
	__u16 nh;
	__u32 tail;
	__u32 len;
	__u32 mark;
};

/* An IPv4 header without options and the first 20 bytes after it: all of
 * TCP's that the signature and the tuple need (ports, seq, ack, flags),
 * UDP's ports, ICMP's type and code. One read for the common case. */
struct pt_ip_l4 {
	struct iphdr ip;
	__u8 l4[20];
};

/* The fixed IPv6 header (RFC 8200), without the kernel's bitfields. */
struct pt_ip6hdr {
	__u8 ver_tc;    /* version (high nibble), traffic class's high nibble */
	__u8 flow[3];   /* traffic class's low nibble, flow label (20 bits) */
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u32 saddr[4];
	__u32 daddr[4];
};

/* An IPv6 header and the first 20 bytes after it (an extension header's
 * first bytes, or the transport header's, as for IPv4). */
struct pt_ip6_l4 {
	struct pt_ip6hdr ip;
	__u8 l4[20];
};

/* An IP header as read: which one is in it comes from the ethertype. */
union pt_l3_buf {
	struct pt_ip_l4 v4;
	struct pt_ip6_l4 v6;
};

/* What follows the outer UDP header's source port, destination port and
 * length of a VXLAN or Geneve packet: read from the UDP checksum on, so
 * that the inner IP header lands 4-byte aligned. For Geneve, vx_flags is
 * the version and options length, vx_reserved[1..2] the protocol type, and
 * the Ethernet header and inner IP header are where they are only without
 * options. */
struct pt_vxlan_pkt {
	__u16 udp_check;
	__u8 vx_flags;
	__u8 vx_reserved[3];
	__u8 vni[3];
	__u8 reserved;
	__u8 eth_dst[6];
	__u8 eth_src[6];
	__u16 eth_proto;
	union pt_l3_buf ip;
};

#define PT_VXLAN_INNER_IP 30 /* from the UDP header: UDP 8, VXLAN 8, Ethernet 14 */
/* The direct form reads the tunnel headers with plain loads when they
 * start this close to the network header (an IPv4 header with options,
 * IPv6 with extension headers: any); past it, with the helper. */
#define PT_DIRECT_TUNNEL_OFF 128

/* Copies size bytes (a constant, a multiple of 4) of packet memory the
 * program reads with plain loads (track_typed's direct form) to dst (8-byte
 * aligned): 8-byte loads, and a 4-byte one for a remainder. A load that
 * faults gives zeros, which l3_valid refuses. */
static __always_inline void read_direct(void *dst, const void *src, __u32 size)
{
	__u64 *d = dst;
	const __u64 *q = src;

	for (int i = 0; i < size / 8; i++)
		d[i] = q[i];
	if (size % 8)
		((__u32 *)dst)[size / 4 - 1] = ((const __u32 *)src)[size / 4 - 1];
}
_Static_assert(sizeof(union pt_l3_buf) % 4 == 0, "pt_l3_buf: read_direct copies multiples of 4 bytes");
_Static_assert(sizeof(struct pt_vxlan_pkt) % 4 == 0, "pt_vxlan_pkt: read_direct copies multiples of 4 bytes");

/* Reads the IP header of ethertype proto (network byte order) at head+off
 * and the bytes after it into b: one read. Returns false when there is no
 * header of that version there. */
static __always_inline bool read_l3(unsigned char *head, __u32 off, __u16 proto, union pt_l3_buf *b)
{
	if (proto == ETH_P_IP_BE)
		return !bpf_probe_read_kernel(&b->v4, sizeof(b->v4), head + off);
	if (proto == ETH_P_IPV6_BE)
		return !bpf_probe_read_kernel(&b->v6, sizeof(b->v6), head + off);
	return false;
}

/* Whether b, read for ethertype proto, holds a header of that version. */
static __always_inline bool l3_valid(__u16 proto, const union pt_l3_buf *b)
{
	if (proto == ETH_P_IP_BE)
		return b->v4.ip.version == 4 && b->v4.ip.ihl >= 5;
	if (proto == ETH_P_IPV6_BE)
		return (b->v6.ip.ver_tc >> 4) == 6;
	return false;
}

/* The ports, TCP flags and ICMP fields of the transport header l4 (its
 * first 20 bytes) of protocol proto into t, and its part of the
 * signature; an ICMP or ICMPv6 echo's id into the side's echo id.
 * Returns whether the protocol is one whose ports the tuple holds. */
static __always_inline bool l4_tuple(struct pt_pkt *p, const __u8 *l4, struct pt_tuple *t,
				     bool inner)
{
	__u8 echo_flag = inner ? PT_ECHO_INNER : PT_ECHO_OUTER;
	__u16 *echo_id = inner ? &p->inner_id : &p->outer_id;

	switch (t->proto) {
	case PT_IPPROTO_TCP: {
		__u32 seq = *(__u32 *)&l4[4];
		__u32 ack = *(__u32 *)&l4[8];
		t->sport = bpf_ntohs(*(__u16 *)&l4[0]);
		t->dport = bpf_ntohs(*(__u16 *)&l4[2]);
		t->tcp_flags = l4[13];
		p->sig |= seq ^ ((ack << 7) | (ack >> 25));
		return true;
	}
	case PT_IPPROTO_UDP:
		t->sport = bpf_ntohs(*(__u16 *)&l4[0]);
		t->dport = bpf_ntohs(*(__u16 *)&l4[2]);
		return true;
	case PT_IPPROTO_ICMP:
		if (t->family != PT_FAMILY_IPV4)
			return false;
		t->sport = l4[0];
		t->dport = l4[1];
		if (l4[0] == PT_ICMP_ECHO || l4[0] == PT_ICMP_ECHOREPLY) {
			*echo_id = *(__u16 *)&l4[4];
			p->echo |= echo_flag;
		}
		return true;
	case PT_IPPROTO_ICMPV6:
		if (t->family != PT_FAMILY_IPV6)
			return false;
		t->sport = l4[0];
		t->dport = l4[1];
		if (l4[0] == PT_ICMPV6_ECHO || l4[0] == PT_ICMPV6_ECHOREPLY) {
			*echo_id = *(__u16 *)&l4[4];
			p->echo |= echo_flag;
			p->sig |= bpf_ntohs(*(__u16 *)&l4[6]); /* the echo's sequence */
		} else if ((l4[0] >= 130 && l4[0] <= 137) || l4[0] == 143) {
			p->nd |= echo_flag;
		}
		return true;
	}
	return false;
}

/* Fills the side's tuple (outer or inner) from the IPv4 header in b, read
 * at head+off, and sets the signature; *l4_off gets the transport header's
 * offset. Options (rare) cost a second read for the transport bytes.
 * Returns whether the ports are valid. */
static __always_inline bool ipv4_tuple(struct pt_pkt *p, __u32 off, struct pt_ip_l4 *b, bool inner,
				       __u32 *l4_off)
{
	struct pt_tuple *t = inner ? &p->inner : &p->outer;

	*l4_off = off + b->ip.ihl * 4;
	t->family = PT_FAMILY_IPV4;
	t->saddr[0] = b->ip.saddr;
	t->daddr[0] = b->ip.daddr;
	t->proto = b->ip.protocol;
	t->ip_id = bpf_ntohs(b->ip.id);
	p->flags |= inner ? PT_F_INNER : PT_F_L3;
	p->sig = ((__u64)bpf_ntohs(b->ip.id) << 48) | ((__u64)bpf_ntohs(b->ip.tot_len) << 32);
	if (b->ip.frag_off & bpf_htons(0x3fff)) /* more fragments, or an offset */
		p->hdr_cap = *l4_off - p->nh;
	if (b->ip.frag_off & bpf_htons(0x1fff))
		return false;
	if (b->ip.ihl > 5 && bpf_probe_read_kernel(b->l4, sizeof(b->l4), p->head + *l4_off))
		return false; /* no transport bytes: as for a later fragment */
	if (!l4_tuple(p, b->l4, t, inner))
		return false;
	p->flags |= inner ? PT_F_INNER_L4 : PT_F_L4;
	return true;
}

#define PT_IPV6_EXT_MAX 4 /* extension headers skipped before giving up */
#define PT_NEXTHDR_HOP 0
#define PT_NEXTHDR_ROUTING 43
#define PT_NEXTHDR_FRAGMENT 44
#define PT_NEXTHDR_AUTH 51
#define PT_NEXTHDR_DEST 60

/* ipv4_tuple for the IPv6 header in b: skips up to PT_IPV6_EXT_MAX
 * hop-by-hop, routing, destination options and authentication headers
 * (one read each); a fragment header ends the walk (the tuple's protocol
 * is the fragment's, ip_id the low bits of its identification), with the
 * transport header after it for the first fragment (one read more) and
 * none for a later one. */
static __always_inline bool ipv6_tuple(struct pt_pkt *p, __u32 off, struct pt_ip6_l4 *b, bool inner,
				       __u32 *l4_off)
{
	struct pt_tuple *t = inner ? &p->inner : &p->outer;
	__u8 nh = b->ip.nexthdr;
	__u32 l4 = off + sizeof(b->ip);
	bool ports = true;

	t->family = PT_FAMILY_IPV6;
	for (int i = 0; i < 4; i++) {
		t->saddr[i] = b->ip.saddr[i];
		t->daddr[i] = b->ip.daddr[i];
	}
	p->flags |= inner ? PT_F_INNER : PT_F_L3;
	p->sig = ((__u64)(((__u32)b->ip.flow[1] << 8) | b->ip.flow[2]) << 48) |
		 ((__u64)bpf_ntohs(b->ip.payload_len) << 32);
#pragma clang loop unroll(disable)
	for (int i = 0; i < PT_IPV6_EXT_MAX; i++) {
		__u32 len;
		if (nh == PT_NEXTHDR_HOP || nh == PT_NEXTHDR_ROUTING || nh == PT_NEXTHDR_DEST) {
			len = ((__u32)b->l4[1] + 1) * 8;
		} else if (nh == PT_NEXTHDR_AUTH) {
			len = ((__u32)b->l4[1] + 2) * 4;
		} else if (nh == PT_NEXTHDR_FRAGMENT) {
			__u32 id = bpf_ntohl(*(__u32 *)&b->l4[4]);
			t->ip_id = id;
			p->sig |= id;
			p->hdr_cap = l4 + 8 - p->nh; /* through the fragment header */
			nh = b->l4[0];
			/* The first fragment (offset 0) carries the transport
			 * header after it, as an IPv4 first fragment does. */
			ports = !(*(__u16 *)&b->l4[2] & bpf_htons(0xfff8));
			l4 += 8;
			if (ports && bpf_probe_read_kernel(b->l4, sizeof(b->l4), p->head + l4))
				ports = false;
			break;
		} else {
			break;
		}
		nh = b->l4[0];
		l4 += len;
		if (bpf_probe_read_kernel(b->l4, sizeof(b->l4), p->head + l4)) {
			ports = false;
			break;
		}
	}
	t->proto = nh;
	*l4_off = l4;
	if (!ports || nh == PT_NEXTHDR_HOP || nh == PT_NEXTHDR_ROUTING || nh == PT_NEXTHDR_DEST ||
	    nh == PT_NEXTHDR_AUTH || nh == PT_NEXTHDR_FRAGMENT)
		return false;
	if (!l4_tuple(p, b->l4, t, inner))
		return false;
	p->flags |= inner ? PT_F_INNER_L4 : PT_F_L4;
	return true;
}

/* Fills the side's tuple from the IP header of ethertype proto in b (read
 * by read_l3 or with a tunnel's headers at head+off; checked by l3_valid).
 * Returns whether the ports are valid; *l4_off gets the offset of the
 * transport header, and for ICMP the bytes an event captures without a
 * snaplen reach its end. */
static __always_inline bool l3_tuple(struct pt_pkt *p, __u32 off, __u16 proto, union pt_l3_buf *b,
				     bool inner, __u32 *l4_off)
{
	bool l4;

	if (proto == ETH_P_IP_BE)
		l4 = ipv4_tuple(p, off, &b->v4, inner, l4_off);
	else
		l4 = ipv6_tuple(p, off, &b->v6, inner, l4_off);
	struct pt_tuple *t = inner ? &p->inner : &p->outer;
	if (l4 && (t->proto == PT_IPPROTO_ICMP || t->proto == PT_IPPROTO_ICMPV6))
		p->hdr_cap = *l4_off - p->nh + PT_ICMP_HDR;
	return l4;
}

/* The filter expression's stub, a function of its own so that clang
 * makes a call of it: the loader puts the expression's translation in
 * place of the call (in pt_filter_match) and removes the function
 * (internal/filter, Inline), always: left as a call, its frame would come
 * on top of pt_filter_match's, past the 512 bytes a call chain may take. b holds the packet, cap
 * of its PT_FILTER_BYTES bytes are the packet's. Returns classic BPF's
 * verdict: 0, no match. The asm keeps clang from knowing what it returns. */
static __noinline __u32 pt_filter(struct pt_filter_buf *b, __u32 cap)
{
	__u32 r = 1;

	asm volatile("" : "+r"(r) : "r"(b), "r"(cap));
	return r;
}
/* The address ptr holds, as a number: netfilter programs get skb as a
 * typed pointer, on which the verifier allows no arithmetic, but it lets
 * the value through memory. A few instructions, no helper call.
 *
 * The slot is the CPU's, and a program that interrupts this one between
 * the store and the load (a softirq's, over a netfilter hook of a node's
 * own socket or a free in process context) leaves its own address there:
 * the value read back is compared with the pointer (the verifier lets a
 * privileged program compare the two) and, where it is another, the round
 * trip is made once more; interrupted again, the address is 0, which
 * track_skb keeps nothing of (a helper reading the pointer from the stack
 * would cost the deepest program stack it does not have). The compare is
 * of a copy clang knows nothing of, or it could return the pointer itself
 * where it knows the two equal. */
static __always_inline __u64 ptr_value(const void *ptr)
{
	__u32 zero = 0;
	volatile __u64 *v = bpf_map_lookup_elem(&pt_scratch, &zero);

	if (!v)
		return 0;
	*v = (__u64)ptr;
	__u64 r = *v, seen = r;
	asm volatile("" : "+r"(seen));
	if (seen == (__u64)ptr)
		return r;
	*v = (__u64)ptr;
	r = *v;
	seen = r;
	asm volatile("" : "+r"(seen));
	return seen == (__u64)ptr ? r : 0;
}

/* pt_filter_match's work, in the buffer of level. */
static __always_inline __u32 filter_level(__u64 head, __u32 off, __u32 tail, __u32 level)
{
	struct pt_filter_buf *b = bpf_map_lookup_elem(&pt_filter_pkt, &level);

	if (!b)
		return 0;
	__u32 cap = tail > off ? tail - off : 0;
	if (cap >= PT_FILTER_BYTES) {
		cap = PT_FILTER_BYTES;
		if (bpf_probe_read_kernel(b->data, PT_FILTER_BYTES, (void *)(head + off)))
			cap = 0;
	} else {
		/* A size the verifier bounds (see new_event). */
		asm volatile("" : "+r"(cap));
		cap &= PT_FILTER_BYTES - 1;
		if (bpf_probe_read_kernel(b->data, cap, (void *)(head + off)))
			cap = 0;
	}
	__u32 len = cap;
	if (cap >= 6 && (b->data[0] >> 4) == 6) /* IPv6: the payload and its header */
		len = (((__u32)b->data[4] << 8) | b->data[5]) + 40;
	else if (cap >= 4)
		len = ((__u32)b->data[2] << 8) | b->data[3];
	if (cap > len)
		cap = len;
	b->len = len;
	return pt_filter(b, cap) != 0;
}

/* Whether the IPv4 or IPv6 packet at head+off (tail: where the skb's linear
 * data ends) matches the filter expression: non-zero when it does. A load
 * beyond the linear data, the packet's length (IPv4 total length, IPv6
 * payload length and header) or PT_FILTER_BYTES does not match. One read
 * of packet memory.
 *
 * A global function: the verifier checks it once, on its own, with
 * arguments it knows nothing of, and each call as a call that returns a
 * number. Inlined, the expression's branches were walked again on every
 * path of the caller that reaches them: with a heavy expression, IPv4 and
 * IPv6, tunnels and two call sites, the nf_hook_slow exit program of 6.1
 * went past the verifier's million instructions. Its frame costs the
 * caller 32 bytes of the 512 a call chain may take (the deepest program
 * uses 480, rounded). The head is passed as a number: 5.10 takes only
 * numbers and the context as a global function's arguments. */
__noinline __u32 pt_filter_match(__u64 head, __u32 off, __u32 tail)
{
	__u32 zero = 0;
	volatile __u32 *depth = bpf_map_lookup_elem(&pt_filter_depth, &zero);

	if (!depth)
		return 0;
	/* The level is taken before the buffer is touched: a call that
	 * interrupts this one before the store sees the same level, and is
	 * done with the buffer (and has put the level back) before this one
	 * goes on. */
	__u32 level = *depth;
	if (level >= PT_FILTER_LEVELS)
		return 0;
	*depth = level + 1;
	__u32 r = filter_level(head, off, tail, level);
	*depth = level;
	return r;
}
/* Whether a header of p whose addresses matched (p->cand) matches the
 * filter expression: the outer one, else the inner one. */
static __always_inline bool filter_cands(const struct pt_pkt *p)
{
	/* A number for the global function, whatever pointer the head is
	 * to the verifier (netfilter programs read it through a typed skb). */
	__u64 head = ptr_value(p->head);

	if ((p->cand & PT_CAND_OUTER) && pt_filter_match(head, p->nh, p->tail))
		return true;
	return (p->cand & PT_CAND_INNER) && pt_filter_match(head, p->nh + p->inner_at, p->tail);
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

static __always_inline bool addr6_matches(const __u32 a[4])
{
	for (int i = 0; i < PT_MAX_POD_IPS; i++) {
		if (i >= n_pod_ip6s)
			break;
		if (pod_ip6s[4 * i] == a[0] && pod_ip6s[4 * i + 1] == a[1] &&
		    pod_ip6s[4 * i + 2] == a[2] && pod_ip6s[4 * i + 3] == a[3])
			return true;
	}
	return false;
}

/* side_matches for an IPv6 header: a call of its own, so that the IPv6
 * compares are not copied into each caller, and made only when there are
 * IPv6 pod IPs to compare with. */
static __noinline bool side_matches6(const struct pt_tuple *t)
{
	return addr6_matches(t->saddr) || addr6_matches(t->daddr);
}

/* Whether the side's header (outer or inner) matches the pod-IP filter:
 * an address of a traced pod, or any packet without a filter. Neighbour
 * discovery and MLD match only with trace_nd. Inline, with no call for an
 * IPv4 header: every packet of every pod comes here, once a side, and a
 * call and its return cost ~20 ns a run on CPUs whose returns go through a
 * mitigation thunk (bpf_stats, AMD EPYC with Safe RET, 2026-12-04; see
 * docs/BENCHMARKS.md), 40% of what an empty program costs. */
static __always_inline bool side_matches(const struct pt_pkt *p, bool inner)
{
	const struct pt_tuple *t = inner ? &p->inner : &p->outer;

	if (!trace_nd && (p->nd & (inner ? PT_ECHO_INNER : PT_ECHO_OUTER)))
		return false;
	if (n_pod_ips == 0 && n_pod_ip6s == 0)
		return true;
	if (t->family == PT_FAMILY_IPV6)
		return n_pod_ip6s != 0 && side_matches6(t);
	return addr_matches(t->saddr[0]) || addr_matches(t->daddr[0]);
}

/* The conns_hint slot of a key whose address words XOR to addrs (ports in
 * network byte order). */
static __always_inline __u32 *conn_hint_at(__u32 addrs, __u16 sport, __u16 dport, __u8 proto)
{
	__u32 h = addrs ^ (((__u32)sport << 16) | dport) ^ proto;
	__u32 slot = (h * 0x9e3779b1U) >> 16;
	return bpf_map_lookup_elem(&conns_hint, &slot);
}

/* The conns_hint slot of a conns key's fields (ports in network byte order). */
static __always_inline __u32 *conn_hint_slot(const __u32 saddr[4], const __u32 daddr[4], __u16 sport,
					     __u16 dport, __u8 proto)
{
	return conn_hint_at(saddr[0] ^ saddr[1] ^ saddr[2] ^ saddr[3] ^ daddr[0] ^ daddr[1] ^
				    daddr[2] ^ daddr[3],
			    sport, dport, proto);
}

/* The conns_hint slot of a key. */
static __always_inline __u32 *conn_slot(const struct pt_conn_key *k)
{
	return conn_hint_slot(k->saddr, k->daddr, k->sport, k->dport, k->proto);
}

/* parse_skb's scratch memory, one buffer at a time: the headers as read,
 * then the key of a lookup in conns (the stack holds no room for both). */
union pt_parse_buf {
	union pt_l3_buf ip;
	struct pt_vxlan_pkt vx;
	struct pt_conn_key key;
};

/* The ports of the side's conns key (network byte order): an ICMP or
 * ICMPv6 echo's id as both. False for other ICMP and ICMPv6, which have no
 * connection; neighbour discovery never matches. */
static __always_inline bool conn_ports(const struct pt_pkt *p, bool inner, __u16 *sport, __u16 *dport)
{
	const struct pt_tuple *t = inner ? &p->inner : &p->outer;

	if (t->proto == PT_IPPROTO_ICMP || t->proto == PT_IPPROTO_ICMPV6) {
		if (!(p->echo & (inner ? PT_ECHO_INNER : PT_ECHO_OUTER)))
			return false;
		*sport = inner ? p->inner_id : p->outer_id;
		*dport = *sport;
		return true;
	}
	*sport = bpf_htons(t->sport);
	*dport = bpf_htons(t->dport);
	return true;
}

/* conn_known's lookup in conns, once the hint said it may find something
 * (k: scratch). A call: it builds a 40-byte key, and most packets never
 * come here. */
static __noinline bool conn_lookup(const struct pt_pkt *p, bool inner, struct pt_conn_key *k)
{
	const struct pt_tuple *t = inner ? &p->inner : &p->outer;

	__builtin_memcpy(k->saddr, t->saddr, sizeof(k->saddr));
	__builtin_memcpy(k->daddr, t->daddr, sizeof(k->daddr));
	k->proto = t->proto;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
	if (!conn_ports(p, inner, &k->sport, &k->dport))
		return false;
	return bpf_map_lookup_elem(&conns, k) != NULL;
}

/* Whether the side's tuple is a connection in conns (k: scratch). The hint
 * slot is checked inline, from the tuple: a packet of another pod costs one
 * array load and no call (see side_matches) when its slot is empty. */
static __always_inline bool conn_known(const struct pt_pkt *p, bool inner, struct pt_conn_key *k)
{
	const struct pt_tuple *t = inner ? &p->inner : &p->outer;
	__u16 sport, dport;

	if (!conn_ports(p, inner, &sport, &dport))
		return false;
	__u32 *n = conn_hint_slot(t->saddr, t->daddr, sport, dport, t->proto);
	if (!n || *n == 0)
		return false;
	return conn_lookup(p, inner, k);
}

/* What an ICMP error quotes of the packet it answers: an IPv4 header
 * without options and the ports of its TCP or UDP header. */
struct pt_icmp_quote {
	__u8 vhl, tos;
	__u16 len, id, frag;
	__u8 ttl, proto;
	__u16 check;
	__u32 saddr, daddr; /* network byte order */
	__u16 sport, dport; /* network byte order */
};

/* Whether the ICMP error at l4_off (IPv4: destination unreachable, source
 * quench, time exceeded, parameter problem; IPv6: destination unreachable,
 * packet too big, time exceeded, parameter problem) quotes a packet of a
 * connection in conns, as that packet was on the wire: the error of a
 * packet masqueraded (or DNAT'd) on its way, which reaches the node
 * addressed to the node and quoting the node's tuple until conntrack
 * translates it back at PREROUTING. Followed from here, its path starts
 * where it entered the node (and, across nodes, where it was made), not at
 * the translation. conns holds that tuple: the reverse of conntrack's
 * reply tuple. A quote with IPv4 options or IPv6 extension headers, of a
 * later fragment or of another protocol is not looked at. One read of
 * packet memory (two for IPv6) and the hint check; a lookup only where the
 * hint's slot is set. A call, as conn_lookup: rare packets. */
static __noinline bool quote_known(const struct pt_pkt *p, __u32 l4_off, struct pt_conn_key *k)
{
	const void *quote = p->head + l4_off + PT_ICMP_HDR;

	if (p->outer.family == PT_FAMILY_IPV6) {
		/* The addresses and ports, 36 bytes from the quote's
		 * source address on, lie as a conns key's first fields. */
		__u64 w; /* version, class, flow, length, next header, hop limit */
		if (bpf_probe_read_kernel(&w, sizeof(w), quote))
			return false;
		__u8 proto = w >> 48;
		if (((__u8)w >> 4) != 6 || (proto != PT_IPPROTO_TCP && proto != PT_IPPROTO_UDP))
			return false;
		__builtin_memset(k, 0, sizeof(*k));
		if (bpf_probe_read_kernel(k, __builtin_offsetof(struct pt_conn_key, proto), quote + 8))
			return false;
		k->proto = proto;
		__u32 *n = conn_slot(k);
		if (!n || *n == 0)
			return false;
		return bpf_map_lookup_elem(&conns, k) != NULL;
	}
	struct pt_icmp_quote q;

	if (bpf_probe_read_kernel(&q, sizeof(q), quote))
		return false;
	if (q.vhl != 0x45 || (q.frag & bpf_htons(0x1fff)) ||
	    (q.proto != PT_IPPROTO_TCP && q.proto != PT_IPPROTO_UDP))
		return false;
	__u32 *n = conn_hint_at(q.saddr ^ q.daddr, q.sport, q.dport, q.proto);
	if (!n || *n == 0)
		return false;
	__builtin_memset(k, 0, sizeof(*k));
	k->saddr[0] = q.saddr;
	k->daddr[0] = q.daddr;
	k->sport = q.sport;
	k->dport = q.dport;
	k->proto = q.proto;
	return bpf_map_lookup_elem(&conns, k) != NULL;
}

/* Whether the outer header is an ICMP error that quotes a packet
 * (quote_known's types; the type is the tuple's source port). */
static __always_inline bool icmp_error(const struct pt_pkt *p)
{
	__u16 type = p->outer.sport;

	if (p->outer.family == PT_FAMILY_IPV4)
		return p->outer.proto == PT_IPPROTO_ICMP && (type == 3 || type == 4 || type == 11 || type == 12);
	return p->outer.proto == PT_IPPROTO_ICMPV6 && type >= 1 && type <= 4;
}

/* The tunnel step after the outer header (in b, as parse_skb read it, whose
 * transport header is at l4_off): for a tunnel's packet (IPIP: IPv4
 * protocol 4; VXLAN: UDP to a VXLAN port; Geneve: UDP to 6081, any options,
 * Ethernet or IP inside) the tunnel, its VNI and the inner IPv4 or IPv6
 * tuple; sets *match as parse_skb does. One read of packet memory for VXLAN
 * and Geneve without options, two or three with options, one for IPIP.
 * net: the network header as plain-load memory (track_typed's direct
 * form), NULL otherwise; with it, the VXLAN and Geneve headers up to the
 * inner IP header's next 20 bytes are plain loads too. */
static __always_inline void parse_tunnel(struct pt_pkt *p, __u32 l4_off, bool l4, bool *match,
					 union pt_parse_buf *b, const __u64 *net)
{
	union pt_l3_buf *ip = &b->ip;
	__u32 ip_off;
	__u16 proto;
	__u8 kind;

	if (p->outer.family == PT_FAMILY_IPV4 && p->outer.proto == PT_IPPROTO_IPIP) {
		if (b->ip.v4.ip.frag_off & bpf_htons(0x1fff))
			return; /* a later fragment: no inner header */
		kind = PT_TUNNEL_IPIP;
		ip_off = l4_off;
		proto = ETH_P_IP_BE;
		if (!read_l3(p->head, ip_off, proto, ip))
			return;
	} else {
		if (!l4 || p->outer.proto != PT_IPPROTO_UDP)
			return;
		bool vxlan = is_vxlan_port(p->outer.dport);
		if (!vxlan && p->outer.dport != PT_GENEVE_PORT)
			return;
		struct pt_vxlan_pkt *vx = &b->vx;
		__u32 off = l4_off + 6 - p->nh;
		if (net && off < PT_DIRECT_TUNNEL_OFF) {
			read_direct(vx, (const __u8 *)net + off, sizeof(*vx));
		} else if (bpf_probe_read_kernel(vx, sizeof(*vx), p->head + l4_off + 6)) {
			return;
		}
		p->vni = ((__u32)vx->vni[0] << 16) | ((__u32)vx->vni[1] << 8) | vx->vni[2];
		ip = &vx->ip;
		ip_off = l4_off + PT_VXLAN_INNER_IP;
		proto = vx->eth_proto;
		if (vxlan) {
			if (!(vx->vx_flags & 0x08))
				return;
			kind = PT_TUNNEL_VXLAN;
		} else {
			if (vx->vx_flags >> 6) /* Geneve version 0 only */
				return;
			__u32 opts = (vx->vx_flags & 0x3f) * 4;
			__u16 gproto = ((__u16)vx->vx_reserved[2] << 8) | vx->vx_reserved[1]; /* __be16 */
			kind = PT_TUNNEL_GENEVE;
			ip_off = l4_off + PT_UDP_HDR + 8 + opts;
			if (gproto == ETH_P_TEB_BE) {
				if (opts && bpf_probe_read_kernel(&proto, sizeof(proto), p->head + ip_off + 12))
					return;
				ip_off += PT_ETH_HDR;
			} else {
				proto = gproto;
			}
			if (opts || gproto != ETH_P_TEB_BE) {
				if (!read_l3(p->head, ip_off, proto, &b->ip))
					return;
				ip = &b->ip;
			}
		}
	}
	if (!l3_valid(proto, ip))
		return;
	__u32 in_l4;
	bool inner_l4 = l3_tuple(p, ip_off, proto, ip, true, &in_l4);
	p->tunnel = kind;
	if (!*match && side_matches(p, true)) {
		if (filter_on) {
			if (ip_off - p->nh <= 0xff) { /* else past any filter's bytes */
				p->cand |= PT_CAND_INNER;
				p->inner_at = ip_off - p->nh;
			}
		} else {
			*match = true;
		}
	}
	if (!*match && inner_l4)
		*match = conn_known(p, true, &b->key);
}

/* Parses the packet at the skb's network header: the outer IPv4 or IPv6
 * tuple and, for a tunnel's packet (parse_tunnel), the tunnel, its VNI and
 * the inner tuple; sets *match when an address of either is a traced pod's,
 * or either tuple is a connection in conns, or (quotes) an ICMP error
 * quotes a packet of one (quote_known). One read of packet memory, one
 * more per IPv6 extension header, and parse_tunnel's.
 *
 * quotes, a constant of each program: only the hops where a packet enters
 * a node's view look at quotes (the first slot of a netfilter hook, a
 * device's receive), where an ICMP error is first seen; once tracked there,
 * the skb is followed by its address. In every program, the call cost the
 * verifier up to 19k more instructions a program (nf_first_direct: 42k ->
 * 61k) and pathtrace ~45 ms more start-up (6.18); in these, nf_first_direct
 * 48k, and ~17 ms. */
static __always_inline bool parse_skb(struct pt_skb *s, struct pt_pkt *p, bool *match, bool quotes)
{
	union pt_parse_buf b __attribute__((aligned(8))); /* 8-byte stores of the direct read */
	__u32 l4_off;

	if (s->nh == PT_NET_HEADER_UNSET || !s->head)
		return false;
	p->head = s->head;
	p->nh = s->nh;
	p->tail = s->tail;
	if (s->net) {
		/* The bytes read_l3 reads for either version (an IPv4
		 * header and 20 more, or IPv6's 40 and 20). */
		read_direct(&b.ip, s->net, sizeof(union pt_l3_buf));
	} else if (!read_l3(p->head, p->nh, s->protocol, &b.ip)) {
		return false;
	}
	if (!l3_valid(s->protocol, &b.ip))
		return false;
	bool l4 = l3_tuple(p, p->nh, s->protocol, &b.ip, false, &l4_off);
	/* With a filter expression, an address match makes the header a
	 * candidate, that track_skb runs the expression on when the skb is
	 * not tracked yet. */
	if (side_matches(p, false)) {
		if (filter_on)
			p->cand |= PT_CAND_OUTER;
		else
			*match = true;
	}
	parse_tunnel(p, l4_off, l4, match, &b, s->net);
	if (p->flags & PT_F_INNER)
		return true;
	if (!*match && l4)
		*match = conn_known(p, false, &b.key);
	if (quotes && !*match && l4 && icmp_error(p))
		*match = quote_known(p, l4_off, &b.key);
	return true;
}

/* Reads the sk_buff fields every event needs. They lie within 96 bytes of
 * each other, from len to head, so one bpf_probe_read_kernel of that window
 * does where the running kernel's layout allows it (the offsets are CO-RE
 * constants: the verifier keeps one branch); one read each otherwise. For
 * programs whose skb the verifier cannot dereference: raw tracepoints,
 * kprobes. */
#define PT_SKB_WINDOW 96
static __always_inline void skb_fields(struct sk_buff *skb, struct pt_skb *s)
{
	__u32 l_off = bpf_core_field_offset(skb->len);
	__u32 m_off = bpf_core_field_offset(skb->mark);
	__u32 p_off = bpf_core_field_offset(skb->protocol);
	__u32 n_off = bpf_core_field_offset(skb->network_header);
	__u32 t_off = bpf_core_field_offset(skb->tail);
	__u32 h_off = bpf_core_field_offset(skb->head);
	__u32 start = l_off & ~7U;

	if (m_off > start && p_off > start && n_off > start && t_off > start && h_off > start &&
	    m_off + 4 - start <= PT_SKB_WINDOW && p_off + 2 - start <= PT_SKB_WINDOW &&
	    n_off + 2 - start <= PT_SKB_WINDOW && t_off + 4 - start <= PT_SKB_WINDOW &&
	    h_off + 8 - start <= PT_SKB_WINDOW && !(l_off & 3) && !(m_off & 3) &&
	    !(p_off & 1) && !(n_off & 1) && !(t_off & 3) && !(h_off & 7) &&
	    bpf_core_field_size(skb->tail) == 4 && bpf_core_field_size(skb->mark) == 4) {
		__u64 buf[PT_SKB_WINDOW / 8];
		if (bpf_probe_read_kernel(buf, sizeof(buf), (void *)skb + start))
			return; /* s stays zero: not parsed */
		__u32 li = (l_off - start) >> 2, mi = (m_off - start) >> 2;
		__u32 pi = (p_off - start) >> 1, ni = (n_off - start) >> 1;
		__u32 ti = (t_off - start) >> 2, hi = (h_off - start) >> 3;
		/* Hide what clang knows of the indexes, or it turns the
		 * additions into ORs, which the verifier refuses on pointers.
		 * The verifier still knows them: constants after relocation. */
		asm volatile("" : "+r"(li), "+r"(mi), "+r"(pi), "+r"(ni), "+r"(ti), "+r"(hi));
		__u16 *b16 = (__u16 *)buf;
		__u32 *b32 = (__u32 *)buf;
		s->len = b32[li];
		s->mark = b32[mi];
		s->protocol = b16[pi];
		s->nh = b16[ni];
		s->tail = b32[ti];
		s->head = (unsigned char *)buf[hi];
		return;
	}
	s->protocol = BPF_CORE_READ(skb, protocol);
	s->nh = BPF_CORE_READ(skb, network_header);
	s->tail = BPF_CORE_READ(skb, tail);
	s->head = BPF_CORE_READ(skb, head);
	s->len = BPF_CORE_READ(skb, len);
	s->mark = BPF_CORE_READ(skb, mark);
}

/* A hash of what an event shows of the packet's headers: both tuples, the
 * VNI, the echo ids and which headers there are. NAT, encapsulation and
 * decapsulation change it; a hop that changes nothing keeps it. */
static __always_inline __u64 hdr_hash(const struct pt_pkt *p)
{
	const __u64 k = 0x9e3779b97f4a7c15ULL;
	__u64 h = 0;

	for (int i = 0; i < 4; i++) {
		h = (h ^ (((__u64)p->outer.saddr[i] << 32) | p->outer.daddr[i])) * k;
		h = (h ^ (((__u64)p->inner.saddr[i] << 32) | p->inner.daddr[i])) * k;
	}
	h = (h ^ (((__u64)p->outer.sport << 48) | ((__u64)p->outer.dport << 32) |
		  ((__u64)p->outer.proto << 24) | ((__u64)p->tunnel << 16) |
		  (p->flags & (PT_F_L3 | PT_F_INNER | PT_F_L4 | PT_F_INNER_L4)))) * k;
	h = (h ^ (((__u64)p->inner.sport << 48) | ((__u64)p->inner.dport << 32) |
		  ((__u64)p->outer_id << 16) | p->inner_id)) * k;
	return h ^ p->vni;
}

/* The tracked_hint slot of an skb address (skbs are 256-byte slab
 * objects: the low 8 bits say nothing). */
static __always_inline __u32 *tracked_slot(__u64 key)
{
	__u32 slot = ((key >> 8) ^ (key >> 24)) & (PT_HINT_SLOTS - 1);
	return bpf_map_lookup_elem(&tracked_hint, &slot);
}

/* Starts tracking skb with the packet's signature. */
static __always_inline void track_insert(__u64 key, __u64 sig, __u64 hdr)
{
	__u32 *n = tracked_slot(key);
	struct tracked_skb v = { .sig = sig, .hdr = hdr };

	if (n)
		__sync_fetch_and_add(n, 1);
	bpf_map_update_elem(&tracked, &key, &v, BPF_ANY);
}

/* Stops tracking skb. */
static __always_inline void untrack(__u64 key)
{
	if (bpf_map_delete_elem(&tracked, &key) == 0) {
		__u32 *n = tracked_slot(key);
		if (n)
			__sync_fetch_and_add(n, -1);
	}
}

/* Decides whether an event on skb is kept: it is when the packet matches the
 * filter, or when the skb matched earlier and still carries the same packet.
 * A tracked skb that carries no IP packet any more (ARP: it was freed
 * without a tracepoint and reused) carries another packet: it is
 * untracked and nothing is shown. Sets PT_F_NEW when tracking (re)starts. A
 * packet of another pod costs the header reads of s (done by the caller),
 * one read of packet memory (two for VXLAN; plain loads, no helper call, in
 * track_typed's direct form), the compares and two array
 * loads (conns_hint, tracked_hint); a lookup in conns or tracked only when
 * its slot is shared with a connection or a tracked skb. Nothing else is
 * read until the event is known to be kept. With a filter expression, a
 * packet whose addresses match and whose skb is not tracked costs one more
 * read (PT_FILTER_BYTES) and the expression, per candidate header. In the
 * direct forms, most packets of other pods never come here: lean_reject
 * turns them away first, with the same decision. */
static __always_inline bool track_skb(__u64 key, struct pt_skb *s, struct pt_pkt *p, bool quotes)
{
	if (!key)
		return false; /* ptr_value could not tell the address */
	bool match = false;
	bool parsed = parse_skb(s, p, &match, quotes);
	struct tracked_skb *t = NULL;
	__u32 *n = NULL;

	/* Cheapest check first: most packets of other pods stop here. */
	if (!match)
		n = tracked_slot(key);
	if (match || !n || *n != 0)
		t = bpf_map_lookup_elem(&tracked, &key);
	else if (!p->cand)
		return false;
	if (t && !parsed) {
		untrack(key);
		return false;
	}
	if (t && t->sig == p->sig) {
		__u64 h = hdr_hash(p);
		if (t->hdr != h) {
			t->hdr = h;
			p->snap = 1;
		}
		return true;
	}
	/* The filter expression only for a packet not followed yet: one
	 * keeps its path once it matched (a DNAT'd packet whose port
	 * changed goes on). */
	if (!match && p->cand)
		match = filter_cands(p);
	if (!match) {
		/* A tracked skb now carries another packet's data: it was
		 * freed without a tracepoint and reused. */
		if (t)
			untrack(key);
		return false;
	}
	if (t) {
		t->sig = p->sig;
		t->hdr = hdr_hash(p);
	} else {
		track_insert(key, p->sig, hdr_hash(p));
	}
	p->flags |= PT_F_NEW;
	p->snap = 1;
	return true;
}

/* track_skb for an skb the program can only read with helpers, whose
 * address is key. */
static __always_inline bool track_key(struct sk_buff *skb, __u64 key, struct pt_pkt *p, bool quotes)
{
	struct pt_skb s = {};

	skb_fields(skb, &s);
	if (!track_skb(key, &s, p, quotes))
		return false;
	p->len = s.len;
	p->mark = s.mark;
	return true;
}

/* track_skb for an skb the verifier knows the type of (netfilter programs,
 * BTF tracepoints), whose address is key: its fields are plain loads, no
 * helper call. skb->head goes through ptr_value: see nf_event.
 *
 * direct (a constant in each program): the packet's first bytes are plain
 * loads too, not a helper call: ~20 ns less a run (docs/BENCHMARKS.md,
 * 2026-12-04 (evening)). Only where the verifier types a load of
 * skb->head as memory the program may read (read-only, untrusted: the
 * JIT's fault-tolerant loads; 6.18 does); where it is a number (6.12 and
 * older) a program with this read does not verify, and the loader takes
 * the form without it. The pointer is taken once, before the parse, and
 * read at the first header and at a VXLAN or Geneve header (parse_tunnel);
 * everything else gets the head as a number. */
static __always_inline bool track_typed(struct sk_buff *skb, __u64 key, struct pt_pkt *p, bool direct,
					bool quotes)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	struct pt_skb s = {
		.head = (unsigned char *)ptr_value(head),
		.net = direct ? (const __u64 *)(head + nh) : NULL,
		.protocol = skb->protocol,
		.nh = nh,
		.tail = skb->tail,
	};
	if (!track_skb(key, &s, p, quotes))
		return false;
	p->len = skb->len;
	p->mark = skb->mark;
	return true;
}

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lean_reject takes fields out of 8-byte loads as a little-endian CPU lays them"
#endif
/* lean_reject's IPv6 header at ip: a TCP or UDP one with no extension
 * header and not to a tunnel's port, whose addresses are no traced pod's.
 * Sets what the connection hint needs: its address words XORed, the ports
 * as in memory and the protocol. */
static __always_inline bool lean_ipv6(const __u8 *ip, __u32 *addrs, __u32 *ports, __u8 *proto)
{
	__u64 w = *(const __u64 *)ip; /* version, class, flow, length, next header */
	if (((__u8)w >> 4) != 6)
		return false;
	*proto = w >> 48;
	if (*proto != PT_IPPROTO_TCP && *proto != PT_IPPROTO_UDP)
		return false;
	__u64 s0 = *(const __u64 *)&ip[8], s1 = *(const __u64 *)&ip[16];
	__u64 d0 = *(const __u64 *)&ip[24], d1 = *(const __u64 *)&ip[32];
	if (n_pod_ip6s != 0) {
		__u32 s[4] = { s0, s0 >> 32, s1, s1 >> 32 };
		__u32 d[4] = { d0, d0 >> 32, d1, d1 >> 32 };
		if (addr6_matches(s) || addr6_matches(d))
			return false;
	}
	*ports = *(const __u32 *)&ip[40];
	__u16 dport = bpf_ntohs(*ports >> 16);
	if (*proto == PT_IPPROTO_UDP && (is_vxlan_port(dport) || dport == PT_GENEVE_PORT))
		return false;
	__u64 x = s0 ^ s1 ^ d0 ^ d1;
	*addrs = (__u32)x ^ (__u32)(x >> 32);
	return true;
}

/* lean_reject's look at an IPv4 header at ip: a TCP or UDP one without
 * options and not a fragment, whose addresses are no traced pod's. Sets
 * what the connection hint needs, as lean_ipv6 does. */
static __always_inline bool lean_ip4(const __u8 *ip, __u32 *addrs, __u32 *ports, __u8 *proto)
{
	__u64 w = *(const __u64 *)ip; /* version and IHL, ..., fragment offset */
	if ((__u8)w != 0x45 || ((w >> 48) & bpf_htons(0x1fff)))
		return false;
	__u64 a = *(const __u64 *)&ip[8]; /* TTL, protocol, checksum, source */
	*proto = a >> 8;
	if (*proto != PT_IPPROTO_TCP && *proto != PT_IPPROTO_UDP)
		return false;
	__u32 saddr = a >> 32;
	__u64 d = *(const __u64 *)&ip[16]; /* destination, ports */
	__u32 daddr = d;
	if (addr_matches(saddr) || addr_matches(daddr))
		return false;
	*ports = d >> 32; /* source port, then destination, as in memory */
	*addrs = saddr ^ daddr;
	return true;
}

/* lean_reject's IPv4 packet at ip (lean_ip4); UDP to a VXLAN port must
 * carry such a packet (its inner header is the one the hint is of), and
 * UDP to Geneve's goes to track_typed. */
static __always_inline bool lean_ipv4(const __u8 *ip, __u32 *addrs, __u32 *ports, __u8 *proto)
{
	if (!lean_ip4(ip, addrs, ports, proto))
		return false;
	__u16 dport = bpf_ntohs(*ports >> 16);
	if (*proto == PT_IPPROTO_UDP && is_vxlan_port(dport)) {
		/* VXLAN (8 bytes after UDP's), Ethernet (14), inner IPv4. */
		if (!(ip[28] & 0x08) || *(const __u16 *)&ip[48] != ETH_P_IP_BE)
			return false;
		return lean_ip4(ip + 50, addrs, ports, proto);
	}
	return !(*proto == PT_IPPROTO_UDP && dport == PT_GENEVE_PORT);
}

/* Whether the skb's packet is certainly not kept, decided with plain loads
 * and compares before anything is written; for the direct forms, whose
 * head is memory the program may read. It takes the common packet: IPv4
 * without options and not a fragment, TCP or UDP, and for UDP to a VXLAN
 * port a VXLAN header with its flag and such a packet inside (lean_ipv4);
 * IPv6 TCP or UDP with no extension header, not to a tunnel's port
 * (lean_ipv6). track_skb keeps such a packet only when an address of
 * either header is a traced pod's, when the connection hint of the tuple
 * it would look up (a VXLAN packet's inner one, else the outer one) is
 * set, or when the skb's tracked hint is. Any other packet (extension
 * headers, options, fragments, ICMP, Geneve, IPIP, VXLAN over IPv6 or with
 * IPv6 inside), a match or a set hint says false, and track_typed decides
 * as it always did: this only skips work whose answer is "not kept".
 * Every packet of every other pod comes here, at every hop. It reads the
 * bytes track_typed would read (both decide on the same bytes), two hint
 * slots and ptr_value's; track_typed zeroes and fills a pt_pkt, copies up
 * to 144 bytes of headers and hashes both tuples. Another pod's
 * cross-node UDP cost 64-71 ns a run with it against 87-98 without
 * (bpf_stats, 6.18; docs/BENCHMARKS.md, 2026-12-05). TestDirectFormAgrees
 * runs this form and the helper-reading one, which has no lean_reject, on
 * the same packets and map states. */
static __always_inline bool lean_reject(struct sk_buff *skb)
{
	if (n_pod_ips == 0 && n_pod_ip6s == 0)
		return false; /* no filter: every packet is kept */
	__u16 protocol = skb->protocol;
	__u16 nh = skb->network_header;
	if (nh == PT_NET_HEADER_UNSET)
		return false;
	/* The bytes track_typed's direct form reads too (its first copy
	 * and parse_tunnel's), so both decide on the same bytes. Few loads,
	 * each 8 bytes where it can: a load of this memory is a checked
	 * one, a compare and a branch more. */
	const __u8 *ip = skb->head + nh;
	__u32 addrs, ports;
	__u8 proto;
	if (protocol == ETH_P_IP_BE) {
		if (!lean_ipv4(ip, &addrs, &ports, &proto))
			return false;
	} else if (protocol == ETH_P_IPV6_BE) {
		if (!lean_ipv6(ip, &addrs, &ports, &proto))
			return false;
	} else {
		return false;
	}
	/* conn_hint_slot's slot: the ports as two 16-bit words, each as in
	 * memory, the source's the high one. */
	__u32 *n = conn_hint_at(addrs, (__u16)ports, ports >> 16, proto);
	if (!n || *n != 0)
		return false;
	n = tracked_slot(ptr_value(skb));
	return n && *n == 0;
}

/* track_key for a typed skb pointer (fentry, BTF arguments): its address
 * goes through ptr_value. Programs whose skb is a scalar already (raw
 * tracepoints, kprobes) call track_key with it and skip the map lookup. */
static __always_inline bool track(struct sk_buff *skb, struct pt_pkt *p, bool quotes)
{
#ifdef PT_SKB_SCALAR /* kprobe.c: arguments come from registers, scalars */
	return track_key(skb, (__u64)skb, p, quotes);
#else
	return track_key(skb, ptr_value(skb), p, quotes);
#endif
}

/* conntrack's view of a packet, skb->_nfct: the connection's struct
 * nf_conn address, with the packet's enum ip_conntrack_info in the low
 * bits (NFCT_INFOMASK). */
#define PT_NFCT_INFOMASK 7UL
#define PT_AF_INET 2
#define PT_AF_INET6 10

/* struct nf_conntrack_tuple (and nf_conntrack_man, nf_conntrack_tuple_hash):
 * unchanged since long before 5.10. TestKernelStructHeads checks them
 * against BTF. */
struct pt_ct_man {
	__u32 u3[4]; /* union nf_inet_addr: IPv4 in u3[0], IPv6 in all, network byte order */
	__u16 u;     /* union nf_conntrack_man_proto: port, ICMP id (network byte order) */
	__u16 l3num;
};

struct pt_ct_dst {
	__u32 u3[4];
	__u16 u; /* port (network byte order); ICMP: type, code */
	__u8 protonum;
	__u8 dir;
};

struct pt_ct_tuple {
	struct pt_ct_man src;
	struct pt_ct_dst dst;
};

struct pt_ct_tuple_hash {
	__u64 hnnode[2];
	struct pt_ct_tuple tuple;
};

/* The head of struct nf_conn up to its tuples: ct_general (a refcount),
 * lock (a spinlock without lock debugging), timeout and zone
 * (CONFIG_NF_CONNTRACK_ZONES, as Debian builds it), the same in the 5.10,
 * 6.1 and 6.12 sources. Read this way only where nf_conn has no BTF (the
 * nf_conntrack module of 5.10); TestKernelStructHeads checks it against
 * the BTF of kernels that have it. */
struct pt_nf_conn_head {
	__u32 pad_head[4];
	struct pt_ct_tuple_hash tuplehash[2];
};

/* The packet's conntrack state as a PT_EV_NF event carries it (ext.val[0]):
 * enum ip_conntrack_info + 1; 0 when the packet has none (yet). */
static __always_inline __u32 ct_info(__u64 nfct)
{
	return nfct ? (__u32)(nfct & PT_NFCT_INFOMASK) + 1 : 0;
}

/* Reads the original (dir 0) or reply (dir 1) tuple of connection ct. */
static __always_inline bool ct_tuple(__u64 ct, __u32 dir, struct pt_ct_tuple *t)
{
	__u64 base, step;

	if (bpf_core_type_exists(struct nf_conn)) {
		base = ct + bpf_core_field_offset(struct nf_conn, tuplehash) +
		       bpf_core_field_offset(struct nf_conntrack_tuple_hash, tuple);
		step = bpf_core_type_size(struct nf_conntrack_tuple_hash);
	} else {
		base = ct + __builtin_offsetof(struct pt_nf_conn_head, tuplehash) +
		       __builtin_offsetof(struct pt_ct_tuple_hash, tuple);
		step = sizeof(struct pt_ct_tuple_hash);
	}
	return !bpf_probe_read_kernel(t, sizeof(*t), (void *)(base + dir * step));
}

/* The conns key of a conntrack tuple: TCP, UDP and ICMP or ICMPv6 echo,
 * over IPv4 or IPv6. */
static __always_inline bool ct_key(const struct pt_ct_tuple *t, struct pt_conn_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (t->src.l3num == PT_AF_INET) {
		k->saddr[0] = t->src.u3[0];
		k->daddr[0] = t->dst.u3[0];
	} else if (t->src.l3num == PT_AF_INET6) {
		__builtin_memcpy(k->saddr, t->src.u3, sizeof(k->saddr));
		__builtin_memcpy(k->daddr, t->dst.u3, sizeof(k->daddr));
	} else {
		return false;
	}
	k->proto = t->dst.protonum;
	switch (k->proto) {
	case PT_IPPROTO_TCP:
	case PT_IPPROTO_UDP:
		k->sport = t->src.u;
		k->dport = t->dst.u;
		return true;
	case PT_IPPROTO_ICMP:
	case PT_IPPROTO_ICMPV6: {
		__u8 type = bpf_ntohs(t->dst.u) >> 8;
		if (k->proto == PT_IPPROTO_ICMP ? type != PT_ICMP_ECHO && type != PT_ICMP_ECHOREPLY
						: type != PT_ICMPV6_ECHO && type != PT_ICMPV6_ECHOREPLY)
			return false;
		k->sport = t->src.u;
		k->dport = t->src.u;
		return true;
	}
	}
	return false;
}

/* Turns k into the key of the other direction, in place. */
static __always_inline void reverse_key(struct pt_conn_key *k)
{
	for (int i = 0; i < 4; i++) {
		__u32 a = k->saddr[i];
		k->saddr[i] = k->daddr[i];
		k->daddr[i] = a;
	}
	__u16 port = k->sport;
	k->sport = k->dport;
	k->dport = port;
}

/* Inserts k unless present; returns 1 when it was inserted. */
static __always_inline __u64 conn_insert(const struct pt_conn_key *k, __u32 role)
{
	if (bpf_map_update_elem(&conns, k, &role, BPF_NOEXIST))
		return 0;
	__u32 *n = conn_slot(k);
	if (n)
		*n = 1;
	return 1;
}

static __always_inline void conn_count(__u32 stat, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&conn_stats, &stat);
	if (c && n)
		*c += n;
}

/* Whether the conntrack entry a kept packet carries at a hook is a traced
 * connection's: the packet's own flow, not, for a tunnel's packet, the
 * outer flow between the nodes (the VXLAN, Geneve or IPIP flow of the
 * underlay, which conntrack tracks like any other), unless its outer
 * addresses are the traced ones. The inner flow is added at the hooks it
 * passes unencapsulated. */
static __always_inline bool ct_is_traced(const struct pt_pkt *p)
{
	return !(p->flags & PT_F_INNER) || side_matches(p, false);
}

/* Adds the connection of a traced packet leaving a netfilter hook (its
 * last priority slot: conntrack and NAT have run) to conns: the original
 * tuple, the reply tuple (which holds every translation set up so far) and
 * the reverse of each. From then on every packet of the connection, in
 * either direction and before or after any NAT, matches from its first
 * hop. nfct is skb->_nfct. Costs a lookup once the reply tuple is in. */
static __always_inline void conns_add(__u64 nfct)
{
	__u64 ct = nfct & ~PT_NFCT_INFOMASK;
	struct pt_ct_tuple t;
	struct pt_conn_key orig, reply;

	if (!ct || (n_pod_ips == 0 && n_pod_ip6s == 0 && !filter_on)) /* without a filter every packet matches */
		return;
	if (!ct_tuple(ct, 1, &t) || !ct_key(&t, &reply))
		return;
	if (bpf_map_lookup_elem(&conns, &reply))
		return;
	if (!ct_tuple(ct, 0, &t) || !ct_key(&t, &orig))
		return;
	__u64 conn = conn_insert(&orig, PT_CONN_ORIG);
	__u64 keys = conn;
	reverse_key(&orig);
	keys += conn_insert(&orig, PT_CONN_OTHER);
	keys += conn_insert(&reply, PT_CONN_OTHER);
	reverse_key(&reply);
	keys += conn_insert(&reply, PT_CONN_OTHER);
	conn_count(PT_CONN_STAT_KEYS, keys);
	conn_count(PT_CONN_STAT_CONNS, conn);
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
 * fields and submits. Returns NULL (counted as lost) when the ring is full.
 * An event carries data[] only when it captures packet bytes: most hops
 * copy none (snap_changed), and an event without them takes half the ring
 * space, so the ring holds twice as many before the reader must catch up.
 * The reader learns the size from the ring record. */
static __always_inline struct event *new_event(struct sk_buff *skb, struct pt_pkt *p,
						__u8 kind, struct net_device *dev)
{
	struct event *e;

	/* Without a snaplen, an ICMP packet's or a fragment's headers
	 * (hdr_cap): decode reads the echo id, and tells a fragment, from
	 * them. */
	__u64 cap = 0;
	__u32 want = snaplen ? snaplen : p->hdr_cap;
	if (snap_changed && !p->snap)
		want = p->hdr_cap;
	if (want && (p->flags & PT_F_L3) && p->tail > p->nh) {
		cap = p->tail - p->nh;
		if (cap > want)
			cap = want;
	}
	if (cap) {
		e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e)
			goto lost;
		_Static_assert((PT_MAX_SNAPLEN & (PT_MAX_SNAPLEN - 1)) == 0, "PT_MAX_SNAPLEN: a power of two");
		/* A size the verifier can bound on every kernel: the constant
		 * PT_MAX_SNAPLEN, or a mask below it (6.1 and 6.12 refused the
		 * compare-bounded form: "R2 unbounded memory access"). */
		if (cap >= PT_MAX_SNAPLEN) {
			cap = PT_MAX_SNAPLEN;
			if (bpf_probe_read_kernel(e->data, PT_MAX_SNAPLEN, p->head + p->nh))
				cap = 0;
		} else {
			/* Keep clang from dropping the mask it can prove useless. */
			asm volatile("" : "+r"(cap));
			if (bpf_probe_read_kernel(e->data, cap & (PT_MAX_SNAPLEN - 1), p->head + p->nh))
				cap = 0;
		}
	} else {
		e = bpf_ringbuf_reserve(&events, offsetof(struct event, data), 0);
		if (!e)
			goto lost;
	}
	__builtin_memset(e, 0, offsetof(struct event, data));
	e->cap_len = cap;
	e->skb = (__u64)skb;
	e->ts = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->kind = kind;
	e->flags = p->flags;
	e->len = p->len;
	e->mark = p->mark;
	e->outer = p->outer;
	e->inner = p->inner;
	e->vni = p->vni;
	e->tunnel = p->tunnel;
	if (dev) {
		e->ifindex = BPF_CORE_READ(dev, ifindex);
		e->netns = dev_netns(dev);
		bpf_core_read(e->dev, sizeof(e->dev), &dev->name);
	}
	return e;
lost:
	count_lost();
	return NULL;
}

/* Submits an event, waking the reader only when a batch is waiting: from a
 * quarter of the ring on, at each further eighth. A wakeup per event (the
 * default) costs every traced packet an interrupt and the reader a context
 * switch; the reader polls on its own every few milliseconds
 * (internal/trace), so a trickle of events arrives without wakeups. */
static __always_inline void submit_event(struct event *e)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 step = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 8;
	__u64 flags = BPF_RB_NO_WAKEUP;
	__u64 size = e->cap_len ? sizeof(*e) : offsetof(struct event, data);

	if (avail >= 2 * step && (avail - size) / step != avail / step)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

/* The rule tables running on this CPU (ipt_do_table, nft_do_chain), one
 * frame per call, innermost last: pushed at entry by the table programs
 * (bpf/include/tables.h), popped at their return. Shared by every
 * collection (the loader creates it once), so that the kfree_skb program can
 * tell a table that frees the packet itself: nf_tables does since
 * "netfilter: nf_tables: ... NF_DROP_REASON" (6.1 and 6.12 here), before it
 * returns, so its return sees the packet already gone. */
#define PT_TABLE_STACK 8 /* a power of two */

struct pt_table_frame {
	__u64 skb; /* 0: a call of no traced packet */
	char table[16];
	char chain[16];
	__u32 netns;
	__u32 family;
	__u8 engine; /* PT_ENGINE_XTABLES, PT_ENGINE_NFTABLES */
	__u8 hook;   /* 0xff: not readable */
	__u8 reported; /* the kfree_skb program already showed its verdict */
	__u8 backend;  /* PT_F_FENTRY or PT_F_KPROBE: what pushed the frame */
	__u8 pad[4];
};

struct pt_table_stack {
	__u32 depth;
	__u32 pad;
	struct pt_table_frame frames[PT_TABLE_STACK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_table_stack);
} table_stack SEC(".maps");

#define PT_NF_DROP 0

/* Sends the verdict of the table in frame f as a PT_EV_TABLE event. */
static __always_inline void table_frame_event(struct sk_buff *skb, struct pt_pkt *p,
					      const struct pt_table_frame *f, __u32 verdict)
{
	struct event *e = new_event(skb, p, PT_EV_TABLE, NULL);
	if (!e)
		return;
	e->flags |= f->backend;
	e->netns = f->netns;
	e->hook = f->hook;
	__builtin_memcpy(e->dev, f->chain, sizeof(e->dev));
	__builtin_memcpy(e->ext.name, f->table, sizeof(e->ext.name));
	e->ext.val[0] = verdict;
	e->ext.val[1] = f->family;
	e->ext.val[2] = f->engine;
	submit_event(e);
}

/* Called by the kfree_skb program for a traced packet about to be shown
 * dropped: when the innermost running table is freeing it, its verdict (a
 * drop) is shown first. */
static __always_inline void table_freeing(struct sk_buff *skb, struct pt_pkt *p)
{
	__u32 zero = 0;
	struct pt_table_stack *st = bpf_map_lookup_elem(&table_stack, &zero);

	if (!st || st->depth == 0 || st->depth > PT_TABLE_STACK)
		return;
	/* The mask keeps the index bounded for the verifier (the range
	 * check above does not survive clang's rewrite). */
	__u32 d = (st->depth - 1) & (PT_TABLE_STACK - 1);
	struct pt_table_frame *f = &st->frames[d];
	if (f->skb != (__u64)skb || f->reported)
		return;
	f->reported = 1;
	table_frame_event(skb, p, f, PT_NF_DROP);
}

/* Keep the contract's types in BTF for bpf2go -type. */
const struct event *unused_event __attribute__((unused));
const enum pathtrace_kind *unused_kind __attribute__((unused));
const enum pathtrace_slot *unused_slot __attribute__((unused));
const enum pathtrace_flags *unused_flags __attribute__((unused));
const enum pathtrace_family *unused_family __attribute__((unused));
const enum pathtrace_tunnel *unused_tunnel __attribute__((unused));
