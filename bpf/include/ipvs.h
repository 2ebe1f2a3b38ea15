/* IPVS connection entries. The ip_vs types live in the ip_vs module, not in
 * vmlinux.h (our vmlinux has no IPVS), so the few fields read are declared
 * here for CO-RE: relocated against the ip_vs module's BTF where the kernel
 * has module BTF (CONFIG_DEBUG_INFO_BTF_MODULES, 5.11+). Without it (Debian
 * 5.10) only the stable head of struct ip_vs_conn is read, at fixed offsets,
 * and the scheduler's name is not readable. */
#pragma once

#include "common.h"

#define PT_IP_VS_CONN_F_FWD_MASK 0x0007

/* CO-RE views: only the fields read; the kernel's layout comes from BTF
 * (their padding is not ours: -Wpadded is for the event contract). */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
struct ip_vs_scheduler {
	char *name;
} __attribute__((preserve_access_index));

struct ip_vs_service {
	struct ip_vs_scheduler *scheduler;
} __attribute__((preserve_access_index));

struct ip_vs_dest {
	struct ip_vs_service *svc;
} __attribute__((preserve_access_index));

struct ip_vs_conn {
	__be16 dport;
	__be16 vport;
	__u16 af;
	union nf_inet_addr vaddr;
	union nf_inet_addr daddr;
	__u32 flags;
	__u16 protocol;
	struct ip_vs_dest *dest;
} __attribute__((preserve_access_index));
#pragma clang diagnostic pop

/* The head of struct ip_vs_conn: an hlist_node, the ports, af, the three
 * addresses, flags, protocol and daf, the same in the 5.10 (Debian's
 * headers) and 6.1/6.12 sources. Read this way only where the module has no
 * BTF; TestIPVSConnLayout checks it against the BTF of kernels that have
 * it. */
struct pt_ip_vs_conn_head {
	__u64 c_list[2];
	__be16 cport;
	__be16 dport;
	__be16 vport;
	__u16 af;
	union nf_inet_addr caddr;
	union nf_inet_addr vaddr;
	union nf_inet_addr daddr;
	__u32 flags;
	__u16 protocol;
	__u16 daf;
};

/* Fills ext from connection cp (enum pathtrace_kind, PT_EV_IPVS). */
static __always_inline void ipvs_read_conn(const void *cp, struct pt_ext *ext)
{
	if (bpf_core_type_exists(struct ip_vs_conn)) {
		const struct ip_vs_conn *c = cp;
		ext->addr[0] = BPF_CORE_READ(c, vaddr.ip);
		ext->port[0] = bpf_ntohs(BPF_CORE_READ(c, vport));
		ext->addr[1] = BPF_CORE_READ(c, daddr.ip);
		ext->port[1] = bpf_ntohs(BPF_CORE_READ(c, dport));
		ext->val[0] = BPF_CORE_READ(c, flags) & PT_IP_VS_CONN_F_FWD_MASK;
		ext->val[1] = BPF_CORE_READ(c, protocol);
		char *name = BPF_CORE_READ(c, dest, svc, scheduler, name);
		if (name && bpf_probe_read_kernel_str(ext->name, sizeof(ext->name), name) > 0)
			ext->val[2] = 1;
		return;
	}
	struct pt_ip_vs_conn_head h = {};
	if (bpf_probe_read_kernel(&h, sizeof(h), cp))
		return;
	ext->addr[0] = h.vaddr.ip;
	ext->port[0] = bpf_ntohs(h.vport);
	ext->addr[1] = h.daddr.ip;
	ext->port[1] = bpf_ntohs(h.dport);
	ext->val[0] = h.flags & PT_IP_VS_CONN_F_FWD_MASK;
	ext->val[1] = h.protocol;
}
