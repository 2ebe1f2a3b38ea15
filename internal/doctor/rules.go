package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// nftFamilyByName is the table family nft names name ("ip", "ip6", ...).
func nftFamilyByName(name string) (nftables.TableFamily, error) {
	for f, s := range nftFamilies {
		if s == name {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown nftables family %q", name)
}

// nftTable opens nf_tables netlink in the calling thread's namespace for
// a table of the family nft names family.
func nftTable(family, table string) (*nftables.Conn, *nftables.Table, error) {
	fam, err := nftFamilyByName(family)
	if err != nil {
		return nil, nil, err
	}
	c, err := nftables.New()
	if err != nil {
		return nil, nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	return c, &nftables.Table{Name: table, Family: fam}, nil
}

func (liveNet) NFTRules(family, table string, chains []string) ([]Rule, error) {
	c, t, err := nftTable(family, table)
	if err != nil {
		return nil, err
	}
	var out []Rule
	for _, ch := range chains {
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch, Table: t})
		if errors.Is(err, unix.ENOENT) {
			continue // gone since the tables were listed
		}
		if err != nil {
			return nil, fmt.Errorf("list nftables rules of %s %s %s: %w", family, table, ch, err)
		}
		for _, r := range rules {
			out = append(out, nftRule(ch, t.Family, r.Exprs, r.UserData))
		}
	}
	return out, nil
}

func (liveNet) NFTMap(family, table, name string) ([]MapElement, error) {
	c, t, err := nftTable(family, table)
	if err != nil {
		return nil, err
	}
	s, err := c.GetSetByName(t, name)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get nftables map %s %s %s: %w", family, table, name, err)
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("list elements of nftables map %s %s %s: %w", family, table, name, err)
	}
	out := make([]MapElement, 0, len(els))
	for _, el := range els {
		m, ok := serviceKey(el.Key)
		if !ok {
			continue
		}
		m.Comment = el.Comment
		if v := el.VerdictData; v != nil {
			m.Verdict = nftVerdict(v)
		} else if v, ok := dataVerdict(el.Val); ok {
			m.Verdict = nftVerdict(v)
		}
		out = append(out, m)
	}
	return out, nil
}

// serviceKey reads a map key of kube-proxy's service maps: "ipv4_addr .
// inet_proto . inet_service", its ipv6_addr form, or "inet_proto .
// inet_service". Each field of a concatenation fills whole 4-byte
// registers; the port is in network byte order. Go's nftables library
// does not keep a verdict map's key type, so the length tells the layout.
func serviceKey(key []byte) (MapElement, bool) {
	var m MapElement
	switch len(key) {
	case 8:
	case 12, 24:
		m.Addr, _ = netip.AddrFromSlice(key[:len(key)-8])
		key = key[len(key)-8:]
	default:
		return m, false
	}
	m.Proto = key[0]
	m.Port = binary.BigEndian.Uint16(key[4:6])
	return m, true
}

// dataVerdict reads the verdict of a verdict map's element from its data:
// the attributes of NFTA_DATA_VERDICT (NFTA_VERDICT_CODE, a big-endian
// int32, and NFTA_VERDICT_CHAIN). Go's nftables library leaves them raw
// when it lost the map's data type, which it does for every verdict map it
// reads.
func dataVerdict(val []byte) (*expr.Verdict, bool) {
	const attrHdr, typeMask = 4, 0x3fff // NLA_HDRLEN; without NLA_F_NESTED, NLA_F_NET_BYTEORDER
	v, ok := &expr.Verdict{}, false
	for len(val) >= attrHdr {
		l := int(binary.NativeEndian.Uint16(val))
		if l < attrHdr || l > len(val) {
			return nil, false
		}
		p := val[attrHdr:l]
		switch binary.NativeEndian.Uint16(val[2:]) & typeMask {
		case unix.NFTA_VERDICT_CODE:
			if len(p) != 4 {
				return nil, false
			}
			v.Kind, ok = expr.VerdictKind(int32(binary.BigEndian.Uint32(p))), true
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = cstring(p)
		}
		val = val[min(len(val), (l+attrHdr-1)&^(attrHdr-1)):]
	}
	return v, ok
}

// nftVerdict names an nf_tables verdict as nft prints it.
func nftVerdict(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return VerdictAccept
	case expr.VerdictDrop:
		return VerdictDrop
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictContinue:
		return "continue"
	case expr.VerdictBreak:
		return "break"
	case expr.VerdictQueue:
		return "queue"
	}
	return fmt.Sprintf("verdict(%d)", v.Kind)
}

// nftRule summarises an nf_tables rule of a table of family fam in chain:
// the matches iptables-nft writes for -d ADDR, -p PROTO, --dport PORT (as
// nf_tables expressions, or as x_tables matches on older versions), -m
// comment and -m addrtype, and the verdict or target. Anything else sets
// Other. -p is `meta l4proto` up to iptables 1.8.10 and, in IPv4 tables
// from 1.8.11 on (Debian trixie), the IPv4 header's protocol field.
func nftRule(chain string, fam nftables.TableFamily, exprs []expr.Any, udata []byte) Rule {
	r := Rule{Chain: chain}
	if c, ok := userdata.GetString(udata, userdata.TypeComment); ok {
		r.Comment = c
	}
	daddrOff, daddrLen := uint32(16), uint32(4)
	if fam == nftables.TableFamilyIPv6 {
		daddrOff, daddrLen = 24, 16
	}
	const (
		regNone = iota
		regProto
		regDaddr
		regDport
	)
	regs := map[uint32]int{}
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			if e.SourceRegister {
				r.Other = true
				continue
			}
			regs[e.Register] = regNone
			if e.Key == expr.MetaKeyL4PROTO {
				regs[e.Register] = regProto
			}
		case *expr.Payload:
			if e.OperationType != expr.PayloadLoad {
				r.Other = true
				continue
			}
			regs[e.DestRegister] = regNone
			switch {
			case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == daddrOff && e.Len == daddrLen:
				regs[e.DestRegister] = regDaddr
			case fam == nftables.TableFamilyIPv4 && e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 9 && e.Len == 1:
				regs[e.DestRegister] = regProto
			case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2:
				regs[e.DestRegister] = regDport
			}
		case *expr.Cmp:
			if e.Op != expr.CmpOpEq {
				r.Other = true
				continue
			}
			switch regs[e.Register] {
			case regProto:
				if len(e.Data) != 1 {
					r.Other = true
					continue
				}
				r.Proto = e.Data[0]
			case regDaddr:
				a, _ := netip.AddrFromSlice(e.Data)
				r.Dst = netip.PrefixFrom(a, a.BitLen())
			case regDport:
				if len(e.Data) != 2 {
					r.Other = true
					continue
				}
				r.DPort = binary.BigEndian.Uint16(e.Data)
			default:
				r.Other = true
			}
		case *expr.Match:
			r.match(e.Info)
		case *expr.Counter:
		case *expr.Target:
			r.Verdict = e.Name
			if e.Name == "REJECT" {
				r.Verdict = VerdictReject
			}
		case *expr.Reject:
			r.Verdict = VerdictReject
		case *expr.Verdict:
			r.Verdict = nftVerdict(e)
		default:
			r.Other = true
		}
	}
	return r
}

// match reads an x_tables match of iptables-nft.
func (r *Rule) match(info xt.InfoAny) {
	switch m := info.(type) {
	case *xt.Comment:
		r.Comment = string(*m)
	case *xt.AddrTypeV1:
		r.addrType(m.Source, m.Dest, m.Flags == 0)
	case *xt.AddrType:
		r.addrType(m.Source, m.Dest, !m.InvertSource && !m.InvertDest)
	case *xt.Tcp:
		r.ports(m.SrcPorts, m.DstPorts, m.InvFlags == 0 && m.Option == 0 && m.FlagsMask == 0)
	case *xt.Udp:
		r.ports(m.SrcPorts, m.DstPorts, m.InvFlags == 0)
	default:
		r.Other = true
	}
}

// addrType reads -m addrtype: only --dst-type LOCAL is kube-proxy's.
func (r *Rule) addrType(src, dst uint16, plain bool) {
	if src == 0 && dst == uint16(xt.AddrTypeLocal) && plain {
		r.DstLocal = true
		return
	}
	r.Other = true
}

// ports reads the port ranges of -m tcp and -m udp: any source port and
// one destination port (or any).
func (r *Rule) ports(src, dst [2]uint16, plain bool) {
	switch {
	case !plain || src != [2]uint16{0, 0xffff}:
		r.Other = true
	case dst[0] == dst[1]:
		r.DPort = dst[0]
	case dst != [2]uint16{0, 0xffff}:
		r.Other = true
	}
}
