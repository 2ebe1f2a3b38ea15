package record

import (
	"time"

	"github.com/pathtrace/pathtrace/internal/decode"
)

// ShiftClock writes to file a copy of the recording seed as if its
// machine's wall clock had read d later: the start's wall-clock time, and
// so every record's, is moved by d; the records are unchanged. It is for
// tests of the clock offsets a merged replay estimates.
func ShiftClock(file, seed string, d time.Duration) error {
	recs, meta, err := ReadAll(seed)
	if err != nil {
		return err
	}
	meta.StartWall = meta.StartWall.Add(d)
	if !meta.EndWall.IsZero() {
		meta.EndWall = meta.EndWall.Add(d)
	}
	return writeRecords(file, meta, recs, "shifted")
}

// writeRecords writes a recording of recs with meta, each record with the
// comment.
func writeRecords(file string, meta Meta, recs [][]byte, comment string) error {
	w, err := Create(file, meta)
	if err != nil {
		return err
	}
	var dec decode.Decoder
	var ev decode.Event
	for _, rec := range recs {
		if err := dec.Decode(rec, &ev); err != nil {
			w.Close(meta)
			return err
		}
		if err := w.Write(rec, &ev, comment); err != nil {
			w.Close(meta)
			return err
		}
	}
	return w.Close(meta)
}
