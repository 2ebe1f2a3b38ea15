package stitch

import (
	"testing"

	"github.com/pathtrace/pathtrace/internal/decode"
	"github.com/pathtrace/pathtrace/internal/hop"
)

// portUnreachable is what a node captures of the ICMP port unreachable
// (10.244.1.1 → 10.244.1.5) answering a SYN 10.244.1.5:40312 →
// 10.96.0.11:80: IPv4 header, ICMP header, and the quoted IPv4 header and
// first 8 bytes of TCP.
var portUnreachable = []byte{
	0x45, 0xc0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 244, 1, 1, 10, 244, 1, 5,
	3, 3, 0, 0, 0, 0, 0, 0,
	0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 63, 6, 0, 0, 10, 244, 1, 5, 10, 96, 0, 11,
	0x9d, 0x78, 0, 80, 0, 0, 0, 1,
}

func TestICMPErrorAnswers(t *testing.T) {
	icmp := decode.Tuple{Proto: decode.ProtoICMP, Src: ap("10.244.1.1:3"), Dst: ap("10.244.1.5:3"), HasPorts: true}
	s := newSeq(0xa000, 1_000_000, icmp)
	s.hook(hop.Output, nsNode1, "", "cni0", nil).dev(decode.KindTx, nsNode1, "cni0").dev(decode.KindRx, nsClient, "eth0")
	s.events[1].Data = portUnreachable // the first event captured nothing
	s.events[3].Data = []byte{0x45}    // a later one does not count
	echo := newSeq(0xb000, 2_000_000, decode.Tuple{Proto: decode.ProtoICMP, Src: ap("10.244.1.5:8"), Dst: ap("10.244.2.7:0"), HasPorts: true})
	echo.dev(decode.KindTx, nsClient, "eth0")
	echo.events[0].Data = portUnreachable // bytes that do not belong to an echo request are not read
	paths, _ := collect(t, Config{}, append(s.events, echo.events...))
	if len(paths) != 2 {
		t.Fatalf("%d paths", len(paths))
	}
	want := decode.Tuple{Proto: decode.ProtoTCP, Src: ap("10.244.1.5:40312"), Dst: ap("10.96.0.11:80"), IPID: 0x1234, HasPorts: true}
	if a := paths[0].Answers; a == nil || *a != want {
		t.Errorf("answers %+v, want %+v", a, want)
	}
	if paths[1].Answers != nil {
		t.Errorf("an echo request answers %+v", paths[1].Answers)
	}
	c := paths[0].Clone()
	c.Answers.Dst = ap("1.2.3.4:5")
	if paths[0].Answers.Dst != want.Dst {
		t.Error("Clone shares Answers")
	}
}
