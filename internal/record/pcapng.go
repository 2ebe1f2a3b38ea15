package record

import (
	"encoding/binary"
	"unsafe"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/decode"
)

// The pcapng subset pathtrace writes and reads (draft-ietf-opsawg-pcapng).
// A section is written in the byte order of the machine that records it,
// which is also the byte order of the records it carries.
const (
	blockSHB uint32 = 0x0A0D0D0A // Section Header Block
	blockIDB uint32 = 0x00000001 // Interface Description Block
	blockNRB uint32 = 0x00000004 // Name Resolution Block
	blockISB uint32 = 0x00000005 // Interface Statistics Block
	blockEPB uint32 = 0x00000006 // Enhanced Packet Block

	byteOrderMagic uint32 = 0x1A2B3C4D

	optEnd     uint16 = 0
	optComment uint16 = 1
	optCustom  uint16 = 2989 // custom option, binary, may be copied

	shbHardware uint16 = 2
	shbOS       uint16 = 3
	shbUserAppl uint16 = 4

	ifName        uint16 = 2
	ifDescription uint16 = 3
	ifTsresol     uint16 = 9

	epbFlags uint16 = 2

	isbEndTime uint16 = 3

	linkTypeIPv4 uint16 = 228 // LINKTYPE_IPV4: the packet starts at its IPv4 header
	linkTypeIPv6 uint16 = 229 // LINKTYPE_IPV6: the packet starts at its IPv6 header

	// maxBlock bounds every block, written or read: the reader never
	// allocates more than this for one block.
	maxBlock = 1 << 20
	// maxCustomChunk is the most JSON one custom option carries.
	maxCustomChunk = 0xffff - 8
	// minBlock is a block with no body: type, length, trailing length.
	minBlock = 12
)

// PEN is the IANA Private Enterprise Number that marks pathtrace's custom
// options and custom blocks. 32473 is the number RFC 5612 reserves for
// documentation and examples; see docs/recording.md.
const PEN uint32 = 32473

// Kinds of pathtrace custom options, the word after the PEN. A JSON
// document longer than one option holds is split over consecutive options
// of its kind in the same block.
const (
	customRecord  uint32 = 1 // EPB: the record up to its data field
	customNames   uint32 = 2 // SHB, EPB, ISB: netns, node and drop-reason names (JSON)
	customTrailer uint32 = 3 // the last block, an ISB: lost counts, report (JSON)
	customReports uint32 = 4 // SHB: the node reports taken at start (JSON)
	customKube    uint32 = 5 // SHB: the Kubernetes names looked up at start (JSON)
)

// Layout of the ring-buffer record, from the bpf2go-generated type.
var (
	recordPrefix = int(unsafe.Offsetof(bpf.TracepointEvent{}.Data))   // bytes before data[]
	capLenOff    = int(unsafe.Offsetof(bpf.TracepointEvent{}.CapLen)) // offset of cap_len
	dataSize     = len(bpf.TracepointEvent{}.Data)                    // size of data[]
	recordSize   = decode.RecordSize
)

var ne = binary.NativeEndian

func pad4(n int) int { return (n + 3) &^ 3 }

// beginBlock appends a block header whose length is patched by endBlock.
func beginBlock(b []byte, typ uint32) ([]byte, int) {
	start := len(b)
	b = ne.AppendUint32(b, typ)
	b = ne.AppendUint32(b, 0)
	return b, start
}

// endBlock appends the trailing length and patches the leading one.
func endBlock(b []byte, start int) []byte {
	n := uint32(len(b) - start + 4)
	b = ne.AppendUint32(b, n)
	ne.PutUint32(b[start+4:], n)
	return b
}

func appendPad(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// appendOpt appends one option; val is a string or []byte so callers need
// not convert (and allocate).
func appendOpt[T string | []byte](b []byte, code uint16, val T) []byte {
	b = ne.AppendUint16(b, code)
	b = ne.AppendUint16(b, uint16(len(val)))
	b = append(b, val...)
	return appendPad(b)
}

// appendJSONOpts appends js as custom options of the given kind, split
// over as many as it needs.
func appendJSONOpts(b []byte, kind uint32, js []byte) []byte {
	for len(js) > 0 {
		n := min(len(js), maxCustomChunk)
		b = ne.AppendUint16(b, optCustom)
		b = ne.AppendUint16(b, uint16(8+n))
		b = ne.AppendUint32(b, PEN)
		b = ne.AppendUint32(b, kind)
		b = append(b, js[:n]...)
		b = appendPad(b)
		js = js[n:]
	}
	return b
}

func appendOptEnd(b []byte) []byte {
	return ne.AppendUint32(b, 0)
}

// options iterates over a block's options. It stops at opt_endofopt, at the
// end of b, or at the first malformed option, which it reports in err.
type options struct {
	b   []byte
	err string
}

func (o *options) next() (code uint16, val []byte, ok bool) {
	if len(o.b) == 0 {
		return 0, nil, false
	}
	if len(o.b) < 4 {
		o.err = "option header runs past the block"
		return 0, nil, false
	}
	code = ne.Uint16(o.b)
	n := int(ne.Uint16(o.b[2:]))
	if code == optEnd {
		o.b = nil
		return 0, nil, false
	}
	if 4+pad4(n) > len(o.b) {
		o.err = "option value runs past the block"
		return 0, nil, false
	}
	val = o.b[4 : 4+n]
	o.b = o.b[4+pad4(n):]
	return code, val, true
}
