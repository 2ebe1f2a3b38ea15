package record

import (
	"unsafe"

	"github.com/pathtrace/pathtrace/internal/bpf"
)

// Format 1 had IPv4-only tuples: struct pt_tuple was {u32 saddr, daddr;
// u16 sport, dport, ip_id; u8 proto, tcp_flags}, 16 bytes, where format 2
// has four address words each and a family (bpf/include/event.h). The
// fields before the outer tuple, and the ext struct after the inner one,
// are the same in both. The layout of format 1, frozen here:
const (
	v1OuterOff  = 112                                    // offset of outer; inner follows, then ext
	v1TupleSize = 16                                     // a format 1 tuple
	v1TupleTail = 8                                      // sport, dport, ip_id, proto, tcp_flags: after the addresses
	v1ExtSize   = 40                                     // struct pt_ext
	v1Prefix    = v1OuterOff + 2*v1TupleSize + v1ExtSize // bytes before data[]
)

// Offsets of the current layout, from the generated type.
var (
	outerOff   = int(unsafe.Offsetof(bpf.TracepointEvent{}.Outer))
	innerOff   = int(unsafe.Offsetof(bpf.TracepointEvent{}.Inner))
	extOff     = int(unsafe.Offsetof(bpf.TracepointEvent{}.Ext))
	tupleDaddr = int(unsafe.Offsetof(bpf.TracepointEvent{}.Outer.Daddr))
	tupleTail  = int(unsafe.Offsetof(bpf.TracepointEvent{}.Outer.Sport)) // sport on, as in format 1
)

// fromV1 rewrites prefix, the part before data[] of a format 1 record, into
// rec (recordPrefix bytes, zeroed) in the current layout. A tuple keeps its
// IPv4 addresses in the first address word; its family stays 0, which
// decodes as IPv4.
func fromV1(rec, prefix []byte) {
	var old [v1Prefix]byte
	copy(old[:], prefix)
	copy(rec[:v1OuterOff], old[:v1OuterOff])
	for i, off := range []int{outerOff, innerOff} {
		t := old[v1OuterOff+i*v1TupleSize:]
		copy(rec[off:off+4], t[0:4])                                // saddr
		copy(rec[off+tupleDaddr:off+tupleDaddr+4], t[4:8])          // daddr
		copy(rec[off+tupleTail:off+tupleTail+v1TupleTail], t[8:16]) // ports, id, proto, flags
	}
	copy(rec[extOff:extOff+v1ExtSize], old[v1OuterOff+2*v1TupleSize:])
}
