package record

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/bpf"
	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

// An IPv6 record survives a recording whole, and its device gets an
// interface of its own, LINKTYPE_IPV6, next to the IPv4 one.
func TestIPv6Record(t *testing.T) {
	var e bpf.TracepointEvent
	e.Kind, e.Netns, e.Ifindex, e.Dev = uint8(decode.KindTx), nsClient, 3, devName("eth0")
	e.Flags = uint8(decode.FlagNew | decode.FlagL3 | decode.FlagL4)
	e.Outer.Family, e.Outer.Proto, e.Outer.Sport, e.Outer.Dport = 6, decode.ProtoTCP, 40312, 80
	src, dst := netip.MustParseAddr("fd77:1::5").As16(), netip.MustParseAddr("fd96::10").As16()
	for i := range 4 {
		e.Outer.Saddr[i] = binary.NativeEndian.Uint32(src[4*i:])
		e.Outer.Daddr[i] = binary.NativeEndian.Uint32(dst[4*i:])
	}
	ip6 := make([]byte, 40+20)
	ip6[0], ip6[5], ip6[6] = 0x60, 20, decode.ProtoTCP
	copy(ip6[8:], src[:])
	copy(ip6[24:], dst[:])
	ip6[52] = 5 << 4
	e.CapLen = uint16(copy(e.Data[:], ip6))
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &e); err != nil {
		t.Fatal(err)
	}
	rec4 := testRecord(t, 0, false)

	var out bytes.Buffer
	m := testMeta()
	m.Filter.HeadersOnly = true
	w, err := NewWriter(&out, m)
	if err != nil {
		t.Fatal(err)
	}
	var d decode.Decoder
	for _, rec := range [][]byte{buf.Bytes(), rec4} {
		var ev decode.Event
		if err := d.Decode(rec, &ev); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec, &ev, "tx"); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(testFinal()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out.Bytes(), []byte(`device "eth0" IPv6`)) {
		t.Error("no IPv6 interface for eth0")
	}
	recs, _, err := readAll(out.Bytes())
	if err != nil || len(recs) != 2 {
		t.Fatalf("read back %d records: %v", len(recs), err)
	}
	var ev decode.Event
	if err := d.Decode(recs[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Outer.Src != netip.MustParseAddrPort("[fd77:1::5]:40312") || ev.Outer.Dst != netip.MustParseAddrPort("[fd96::10]:80") ||
		len(ev.Data) != 60 {
		t.Errorf("read back %+v with %d bytes, want the IPv6 tuple and 60 bytes of headers", ev.Outer, len(ev.Data))
	}

	// Wireshark decodes the IPv6 frame on its LINKTYPE_IPV6 interface and
	// the IPv4 one on its own.
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		testutil.Missing(t, testutil.Tshark, err)
	}
	path := filepath.Join(t.TempDir(), "rec.pcapng")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	got := runTshark(t, tshark, path, "ipv6.src", "ipv6.dst", "ipv6.nxt", "ip.src")
	want := "fd77:1::5|fd96::10|6|\n|||" + clientIP.String()
	if !strings.HasPrefix(got, want) {
		t.Errorf("tshark reads\n%s\nwant it to start with\n%s", got, want)
	}
}
