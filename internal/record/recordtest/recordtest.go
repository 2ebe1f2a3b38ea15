// Package recordtest helps tests build recordings that a live trace would not
// write (damaged ones, for the readers).
package recordtest

import (
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/record"
)

// RewriteReports writes to dst a copy of the recording src whose node
// reports (the JSON as stored) are edit's result on those of src: a
// recording with damaged reports, for tests of the readers.
func RewriteReports(tb testing.TB, src, dst string, edit func(reports []byte) []byte) {
	tb.Helper()
	Rewrite(tb, src, dst, func(m *record.Meta) { m.Reports = edit(m.Reports) })
}

// Rewrite writes to dst a copy of the recording src whose meta edit
// changed (Kubernetes names added, ...).
func Rewrite(tb testing.TB, src, dst string, edit func(meta *record.Meta)) {
	tb.Helper()
	// The meta of the whole recording has every name it holds: the copy
	// holds them all in its header.
	recs, meta, err := record.ReadAll(src)
	if err != nil {
		tb.Fatalf("read %s: %v", src, err)
	}
	edit(&meta)
	w, err := record.Create(dst, meta)
	if err != nil {
		tb.Fatal(err)
	}
	var d decode.Decoder
	var ev decode.Event
	for _, rec := range recs {
		if err := d.Decode(rec, &ev); err != nil {
			tb.Fatalf("decode a record of %s: %v", src, err)
		}
		if err := w.Write(rec, &ev, "copied"); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(meta); err != nil {
		tb.Fatal(err)
	}
}
