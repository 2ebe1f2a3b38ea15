package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	recs, meta, err := ReadAll(seed)
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
	buf := make([]byte, decode.RecordSize)
	for i := range n {
		round := uint64(i / len(recs))
		copy(buf, recs[i%len(recs)])
		Shift(buf, round<<20, round*span)
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

// Shift adds skb to the skb address of a record (decode.RecordSize bytes)
// and ts to its time: the same packets again, as other packets later.
func Shift(rec []byte, skb, ts uint64) {
	ne := binary.NativeEndian
	ne.PutUint64(rec[skbOff:], ne.Uint64(rec[skbOff:])+skb)
	ne.PutUint64(rec[tsOff:], ne.Uint64(rec[tsOff:])+ts)
}

// ReadAll reads every record of the recording in file into memory, with
// the recording's metadata as known at its end (every name it holds, the
// trailer).
func ReadAll(file string) ([][]byte, Meta, error) {
	r, err := OpenFile(file)
	if err != nil {
		return nil, Meta{}, err
	}
	defer r.Close()
	var recs [][]byte
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return recs, r.Meta(), nil
		}
		if err != nil {
			return nil, Meta{}, err
		}
		recs = append(recs, append([]byte(nil), rec...))
	}
}
