package record

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// foreignPcapng is a pcapng file written by another tool.
func foreignPcapng(t *testing.T) []byte {
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 60)
	if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: 60, Length: 60}, pkt); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func patch(data []byte, old, new string) []byte {
	if len(old) != len(new) || !bytes.Contains(data, []byte(old)) {
		panic("bad patch " + old)
	}
	return bytes.Replace(bytes.Clone(data), []byte(old), []byte(new), 1)
}

func put32(data []byte, off int, v uint32) []byte {
	data = bytes.Clone(data)
	ne.PutUint32(data[off:], v)
	return data
}

func TestBadInput(t *testing.T) {
	good, _ := writeRecording(t, 12, false)
	offs := blocks(t, good)
	typ := func(i int) uint32 { return ne.Uint32(good[offs[i]:]) }
	first := func(want uint32) int {
		for i := range offs {
			if typ(i) == want {
				return offs[i]
			}
		}
		t.Fatalf("no block of type %#x", want)
		return 0
	}
	epb, idb := first(blockEPB), first(blockIDB)
	last := offs[len(offs)-1] // the trailer
	drop := 0                 // the first record without data
	for i := range offs {
		if typ(i) == blockEPB && ne.Uint32(good[offs[i]+20:]) == 0 {
			drop = offs[i]
			break
		}
	}
	opt := epb + bytes.Index(good[epb:], penKind(customRecord)) // the record option's value

	swapped := bytes.Clone(good)
	for i := 0; i < 12; i += 4 {
		b := swapped[i : i+4]
		b[0], b[1], b[2], b[3] = b[3], b[2], b[1], b[0]
	}

	type tc struct {
		name string
		data []byte
		want error
		msg  string // a substring of the error
	}
	cases := []tc{
		{"empty", nil, ErrNotPathtrace, "empty file"},
		{"text", []byte("hello, this is not a capture file\n"), ErrNotPathtrace, "not a pcapng file"},
		{"pcap", []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrNotPathtrace, "pcap file"},
		{"other tool", foreignPcapng(t), ErrNotPathtrace, "written by"},
		{"wrong magic", put32(good, 8, 0xdeadbeef), ErrNotPathtrace, "byte-order magic"},
		{"byte-swapped", swapped, ErrByteOrder, "other byte order"},
		{"no header comment", patch(good, "pathtrace-recording/", "pathtrace-recordinG/"), ErrNotPathtrace, "written by \"pathtrace"},
		{"newer version", patch(good, "pathtrace-recording/2 ", "pathtrace-recording/3 "), ErrVersion,
			"recording format version 3 is newer than this pathtrace supports (2); upgrade pathtrace"},
		{"version 0", patch(good, "pathtrace-recording/2 ", "pathtrace-recording/0 "), ErrCorrupt, "bad format version"},
		{"version text", patch(good, "pathtrace-recording/2 ", "pathtrace-recording/x "), ErrCorrupt, "bad format version"},
		{"header json", patch(good, `{"format_version"`, `["format_version"`), ErrCorrupt, "header"},
		{"header version mismatch", patch(good, `"format_version":2`, `"format_version":1`), ErrCorrupt, "format version 1 in a version 2 header"},
		{"bigger record prefix", patch(good, `"record_prefix":248`, `"record_prefix":999`), ErrVersion, "upgrade pathtrace"},
		{"SHB too short", put32(put32(good, 4, 12), 8, byteOrderMagic), ErrCorrupt, "too short"},
		{"SHB length huge", put32(good, 4, 0xfffffff0), ErrCorrupt, "exceeds"},
		{"block length huge", put32(good, epb+4, 0xfffffff0), ErrCorrupt, "exceeds the 1048576-byte limit"},
		{"block length odd", put32(good, epb+4, 101), ErrCorrupt, "multiple of 4"},
		{"block length zero", put32(good, epb+4, 0), ErrCorrupt, "multiple of 4"},
		{"block length longer", put32(good, epb+4, ne.Uint32(good[epb+4:])+4), ErrCorrupt, "trailing length"},
		{"block length shorter", put32(good, epb+4, ne.Uint32(good[epb+4:])-4), ErrCorrupt, "trailing length"},
		{"trailing length", put32(good, epb+int(ne.Uint32(good[epb+4:]))-4, 4), ErrCorrupt, "trailing length"},
		{"interface out of range", put32(good, epb+8, 99), ErrCorrupt, "interface 99"},
		{"caplen huge", put32(good, epb+20, 1000), ErrCorrupt, "more than a record holds"},
		{"caplen past block", put32(good, drop+20, 256), ErrCorrupt, "packet without its pathtrace record"}, // the data now covers the options
		{"caplen mismatch", func() []byte {
			b := bytes.Clone(good)
			ne.PutUint16(b[opt+8+capLenOff:], 36)
			return b
		}(), ErrCorrupt, "record captured length 36, packet holds 40"},
		{"no record option", patch(good, string(penKind(customRecord)), string(penKind(9))), ErrCorrupt, "without its pathtrace record"},
		{"names json", patch(good, `{"netns":{"4026531840"`, `{"netns":{"402653184x"`), ErrCorrupt, "names"},
		{"record size", patch(good, `"record_size":504`, `"record_size":  1`), ErrCorrupt, "header: record size 1 with a record prefix of 248 bytes"},
		{"bigger data", patch(good, `"record_size":504`, `"record_size":505`), ErrVersion, "records carry up to 257 bytes of packet, this pathtrace knows 256"},
		{"no start time", patch(good, `"start_wall":"2025-03-14T09:26:53.589793238Z"`, `"start_wall":"0001-01-01T00:00:00.000000000Z"`), ErrCorrupt, "header: no start time"},
		{"snaplen", patch(good, `"snaplen":128`, `"snaplen":999`), ErrCorrupt, "header: snaplen 999 is out of range 0..256"},
		{"pod IP", patch(good, `"10.244.1.5"`, `"fe80::12%a"`), ErrCorrupt, "filter pod IP fe80::12%a is not an IPv4 or IPv6 address"},
		{"hostname", patch(good, `"hostname":"node1"`, `"hostname":"\t123"`), ErrCorrupt, `hostname "\t123" is not printable`},
		{"netns name", patch(good, `"default/client"`, `"default/\u001b"`), ErrCorrupt, `names: netns 4026532281 is named "default/\x1b": not printable`},
		{"drop reason name", patch(good, `"NETFILTER_DROP"`, `"NETFILTER_DR\n"`), ErrCorrupt, `names: drop reason 5 is named "NETFILTER_DR\n"`},
		{"lost per CPU", patch(good, `"lost_per_cpu":[1,2]`, `"lost_per_cpu":[1,3]`), ErrCorrupt, "trailer: 3 events lost in all, 4 by CPU"},
		{"trailer json", patch(good, `{"end_wall"`, `["end_wall"`), ErrCorrupt, "trailer"},
		{"record count", patch(good, `"records":12`, `"records":13`), ErrCorrupt, "trailer counts 13 records"},
		{"block after trailer", append(bytes.Clone(good), good[idb:idb+int(ne.Uint32(good[idb+4:]))]...), ErrCorrupt, "after the trailer"},
		{"two sections", append(bytes.Clone(good[:last]), good...), ErrCorrupt, "second section"},
		{"IDB too short", func() []byte {
			// A 12-byte IDB replacing the first padding-free bytes is
			// hard to splice; build one and insert it.
			b := bytes.Clone(good[:idb])
			b = ne.AppendUint32(b, blockIDB)
			b = ne.AppendUint32(b, 12)
			b = ne.AppendUint32(b, 12)
			return append(b, good[idb:]...)
		}(), ErrCorrupt, "interface block"},
	}
	// Truncated at every byte: at block boundaries and inside blocks.
	for n := 1; n < len(good); n++ {
		want, msg := ErrTruncated, "truncated"
		if n < 4 {
			want, msg = ErrTruncated, "section header"
		}
		cases = append(cases, tc{"truncated/" + itoa(n), good[:n], want, msg})
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _, err := readAll(c.data)
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %q does not wrap %q", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not say %q", err, c.msg)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 2<<20 {
				t.Errorf("allocated %d bytes", n)
			}
		})
	}
}

// An error from Next is final: the next calls return it again.
func TestErrorSticky(t *testing.T) {
	good, _ := writeRecording(t, 5, false)
	offs := blocks(t, good)
	bad := good[:offs[len(offs)-1]+3]
	r, err := Open(bytes.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	var first error
	for range 20 {
		if _, err := r.Next(); err != nil {
			first = err
			break
		}
	}
	if !errors.Is(first, ErrTruncated) {
		t.Fatalf("error %v, want ErrTruncated", first)
	}
	if _, err := r.Next(); err != first {
		t.Fatalf("second Next: %v, want %v", err, first)
	}
}

// Blocks of other kinds and other vendors' options are skipped.
func TestSkipForeignBlocks(t *testing.T) {
	good, recs := writeRecording(t, 5, false)
	offs := blocks(t, good)
	// An Interface Statistics Block and another vendor's custom block,
	// inserted before the last record.
	at := offs[len(offs)-2]
	var extra []byte
	b, s := beginBlock(nil, 5) // ISB
	b = ne.AppendUint32(b, 0)
	b = ne.AppendUint64(b, 0)
	extra = endBlock(b, s)
	b, s = beginBlock(extra, 0xBAD)
	b = ne.AppendUint32(b, 12345)
	b = append(b, "whatever"...)
	extra = endBlock(b, s)
	data := append(append(bytes.Clone(good[:at]), extra...), good[at:]...)
	got, _, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("read %d records, want %d", len(got), len(recs))
	}
	var r io.Reader = bytes.NewReader(data)
	if _, err := Open(r); err != nil {
		t.Fatal(err)
	}
}

// penKind is the start of a pathtrace custom option's value.
func penKind(kind uint32) []byte {
	return ne.AppendUint32(ne.AppendUint32(nil, PEN), kind)
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
