package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/decode"
)

// Offsets in a record of the fields Repeat shifts.
var (
	skbOff = int(unsafe.Offsetof(bpf.TracepointEvent{}.Skb))
	tsOff  = int(unsafe.Offsetof(bpf.TracepointEvent{}.Ts))
)

// Repeat writes to file a recording of n records made by repeating the
// records of seed, each round with its skb addresses and times shifted
// (past the stitcher's idle time), so that it holds real packets and paths
// in quantity. It is for measuring replay.
func Repeat(seed, file string, n int) error {
	recs, meta, err := readFile(seed)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("%s holds no records", seed)
	}
	var d decode.Decoder
	var first, last, ev decode.Event
	if err := errors.Join(d.Decode(recs[0], &first), d.Decode(recs[len(recs)-1], &last)); err != nil {
		return err
	}
	span := last.TS - first.TS + 2_000_000_000
	w, err := Create(file, meta)
	if err != nil {
		return err
	}
	for inode, name := range meta.Netns {
		w.SetNetnsName(inode, name)
	}
	ne := binary.NativeEndian
	buf := make([]byte, decode.RecordSize)
	for i := range n {
		round := uint64(i / len(recs))
		copy(buf, recs[i%len(recs)])
		ne.PutUint64(buf[skbOff:], ne.Uint64(buf[skbOff:])+round<<20)
		ne.PutUint64(buf[tsOff:], ne.Uint64(buf[tsOff:])+round*span)
		if err := d.Decode(buf, &ev); err != nil {
			w.Close(meta)
			return err
		}
		if err := w.Write(buf, &ev, "repeated"); err != nil {
			w.Close(meta)
			return err
		}
	}
	return w.Close(meta)
}
