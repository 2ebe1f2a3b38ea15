/* The event contract: one struct per event, read by internal/decode through
 * the Go type bpf2go generates from it (-type event). Every field is
 * explicitly placed; the file compiles with -Wpadded. */
#pragma once

#define PT_IFNAMSIZ 16
#define PT_MAX_SNAPLEN 256
#define PT_MAX_POD_IPS 16
#define PT_MAX_VXLAN_PORTS 4

/* What produced an event. Values are part of the recording format: never
 * renumber, only add. */
enum pathtrace_kind {
	PT_EV_RX = 1,      /* net:netif_receive_skb: received on dev */
	PT_EV_TX = 2,      /* net:net_dev_queue: queued for transmit on dev */
	PT_EV_NF = 3,      /* netfilter hook (first or last priority slot);
			    * ext.val[0] = the packet's conntrack state,
			    * enum ip_conntrack_info (skb->_nfct & 7) + 1, 0
			    * when it has none (added later: recordings made
			    * before have 0) */
	PT_EV_DROP = 4,    /* skb:kfree_skb: freed as a drop, with a reason */
	PT_EV_CONSUME = 5, /* skb:consume_skb: freed after normal use */
	/* Function hops (fentry or kprobe, see PT_F_FENTRY / PT_F_KPROBE).
	 * PT_EV_NF also comes from nf_hook_slow when the kernel has no
	 * netfilter links: entry is the hook's FIRST view, a return with
	 * NF_ACCEPT its LAST view. */
	PT_EV_BRIDGE = 6, /* br_forward: dev = the bridge, in_dev/in_ifindex =
			   * the ingress port (skb->dev), out_dev/out_ifindex =
			   * the egress port; ext unused */
	PT_EV_IPVS = 7,   /* IPVS transmit (ip_vs_nat_xmit): dev = skb->dev;
			   * ext.addr[0]:ext.port[0] = the virtual service,
			   * ext.addr[1]:ext.port[1] = the real server chosen,
			   * ext.val[0] = cp->flags & IP_VS_CONN_F_FWD_MASK,
			   * ext.val[1] = the IP protocol, ext.val[2] = 1 when
			   * ext.name holds the scheduler's name */
	PT_EV_ENCAP = 8,  /* a tunnel device's transmit function (vxlan_xmit,
			   * geneve_xmit, ipip_tunnel_xmit): about to be
			   * encapsulated on dev (inner tuple); ext.val[1] =
			   * the tunnel (enum pathtrace_tunnel; 0, VXLAN, in
			   * recordings made before Geneve and IPIP had
			   * function hops); ext.val[0] = the device's VNI and
			   * ext.port[1] its UDP destination port when
			   * ext.val[2] = 1 (VXLAN and Geneve, readable where
			   * the module has BTF and the device one VNI).
			   * Named PT_EV_VXLAN before. */
	PT_EV_TABLE = 9,  /* a rule table ran (ipt_do_table, nft_do_chain) and
			   * returned a verdict: hook and netns as for PT_EV_NF
			   * (hook 0xff: not readable), no devices (the hook's
			   * are the netfilter event's); dev = the base
			   * chain's name (nf_tables; empty for x_tables, whose
			   * chain is the hook's), ext.name = the table's name,
			   * ext.val[0] = the verdict as returned, ext.val[1] =
			   * the table's family (NFPROTO_*, 0: not readable),
			   * ext.val[2] = 1 x_tables (iptables-legacy), 2
			   * nf_tables; a stolen packet is not shown, a drop
			   * the table freed itself comes just before its
			   * PT_EV_DROP */
	PT_EV_IPVS_VERDICT = 10, /* IPVS's netfilter hook (ip_vs_in_hook, or
				  * ip_vs_remote_request4/ip_vs_local_request4)
				  * dropped the packet: hook, netns, in/out as
				  * for PT_EV_NF, ext.val[0] = the verdict */
	PT_EV_DECAP = 11, /* a tunnel's receive function (vxlan_rcv,
			   * geneve_udp_encap_recv, ipip_rcv): a tunnel's
			   * packet from dev (the underlay device) is about to
			   * be decapsulated; the tuples are the outer and
			   * inner headers; ext.val[1] = the tunnel, as for
			   * PT_EV_ENCAP. Named PT_EV_VXLAN_RCV before. */
};

enum pathtrace_slot {
	PT_SLOT_NONE = 0,
	PT_SLOT_FIRST = 1, /* netfilter program at the first priority */
	PT_SLOT_LAST = 2,  /* netfilter program at the last priority */
};

enum pathtrace_flags {
	PT_F_NEW = 1 << 0,   /* first event of a newly tracked packet on this skb */
	PT_F_L3 = 1 << 1,    /* outer tuple holds a parsed IPv4 or IPv6 header */
	PT_F_INNER = 1 << 2, /* inner tuple (and vni where the tunnel has one)
			      * hold a tunnel's payload; event.tunnel says
			      * which tunnel */
	PT_F_L4 = 1 << 3,    /* ports and tcp_flags of the outer tuple are valid */
	PT_F_INNER_L4 = 1 << 4,
	PT_F_REASON = 1 << 5, /* drop_reason comes from the kernel */
	/* The backend that made the event. Neither bit: a raw tracepoint or
	 * a netfilter link (PT_EV_NF). */
	PT_F_FENTRY = 1 << 6, /* fentry/fexit program */
	PT_F_KPROBE = 1 << 7, /* kprobe/kretprobe program */
};

/* The tunnel of an encapsulated packet (event.tunnel, valid with PT_F_INNER).
 * Recordings made before the field carry 0: they knew VXLAN only. */
enum pathtrace_tunnel {
	PT_TUNNEL_VXLAN = 0,  /* UDP to a VXLAN port, VXLAN, Ethernet */
	PT_TUNNEL_GENEVE = 1, /* UDP to 6081, Geneve with its options, then
			       * Ethernet (protocol 0x6558) or IPv4 */
	PT_TUNNEL_IPIP = 2,   /* IPv4 in IPv4 (protocol 4); no vni */
};

/* pt_tuple.family: the IP version of a parsed header. */
enum pathtrace_family {
	PT_FAMILY_IPV4 = 4,
	PT_FAMILY_IPV6 = 6,
};

/* An IP header and its ports. Addresses are network byte order words: IPv4
 * in saddr[0] and daddr[0] (the other words zero), IPv6 in all four. Since
 * recording format 2 (format 1 had 4-byte addresses and no family). */
struct pt_tuple {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport; /* host byte order; ICMP, ICMPv6: type */
	__u16 dport; /* host byte order; ICMP, ICMPv6: code */
	__u16 ip_id; /* host byte order; IPv6: 0 */
	__u8 proto;  /* IPv6: the header after the extension headers skipped */
	__u8 tcp_flags;
	__u8 family; /* PT_FAMILY_IPV4 or PT_FAMILY_IPV6 when parsed */
	__u8 pad[3];
};

/* Extra data of function hops (bridge, IPVS, tunnels; see enum pathtrace_kind
 * for what each field means per kind) and of netfilter events (val[0]);
 * zero for the tracepoint events. */
struct pt_ext {
	__u32 addr[2]; /* network byte order */
	__u16 port[2]; /* host byte order */
	__u32 val[3];
	char name[16];
};

struct event {
	__u64 skb;      /* struct sk_buff address: the packet's identity */
	__u64 ts;       /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 location; /* kfree_skb/consume_skb: the caller's address */
	__u32 netns;    /* inode of the network namespace of dev (or the hook) */
	__u32 ifindex;  /* dev's ifindex in that namespace */
	__u32 len;      /* skb->len */
	__u32 drop_reason; /* enum skb_drop_reason, numbered by the running kernel */
	__u32 in_ifindex;  /* netfilter: state->in; bridge: ingress port */
	__u32 out_ifindex; /* netfilter: state->out; bridge: egress port */
	__u32 vni;
	__u16 cpu;
	__u16 cap_len; /* valid bytes in data[]: up to the snaplen; with none,
			* an ICMP packet's headers up to the end of its ICMP
			* header (the inner one's when encapsulated) */
	__u8 kind;     /* enum pathtrace_kind */
	__u8 hook;     /* netfilter: enum nf_inet_hooks */
	__u8 slot;     /* enum pathtrace_slot */
	__u8 flags;    /* enum pathtrace_flags */
	__u32 mark;    /* skb->mark */
	char dev[PT_IFNAMSIZ];
	char in_dev[PT_IFNAMSIZ];
	char out_dev[PT_IFNAMSIZ];
	struct pt_tuple outer;
	struct pt_tuple inner;
	struct pt_ext ext;
	/* Added later: recordings made before have none (read as 0). */
	__u8 tunnel;      /* enum pathtrace_tunnel, valid with PT_F_INNER */
	__u8 reserved[7]; /* zero */
	__u8 data[PT_MAX_SNAPLEN]; /* packet bytes from the network header */
};
