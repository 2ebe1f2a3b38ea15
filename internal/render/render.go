package render

import (
	"errors"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pathtrace/pathtrace/internal/stitch"
)

// Renderer writes stitched paths to an io.Writer.
//
// Render writes one complete path and flushes it, so a live trace shows each
// packet as soon as it is stitched. Close flushes what is left; it does not
// close the underlying writer. A Renderer is not safe for concurrent use.
// The path belongs to the caller: a live trace reuses its memory for later
// packets once Render returns, so a Renderer must not keep it (copy it with
// Path.Clone to keep it).
type Renderer interface {
	Render(p *stitch.Path) error
	Close() error
}

var (
	errClosed  = errors.New("render: renderer is closed")
	errNilPath = errors.New("render: nil path")
)

// sink is the output shared by the renderers: a path is appended into buf
// (reused between paths) and written in one Write, so each path reaches w
// whole and at once. After a write error every later one returns it.
type sink struct {
	w      io.Writer
	buf    []byte
	err    error
	closed bool
}

func newSink(w io.Writer) sink {
	return sink{w: w, buf: make([]byte, 0, 16<<10)}
}

func (s *sink) emit() error {
	if s.err != nil {
		return s.err
	}
	n, err := s.w.Write(s.buf)
	if err == nil && n < len(s.buf) {
		err = io.ErrShortWrite
	}
	s.err = err
	return err
}

func (s *sink) close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.err
}

// timeMemo formats the start times of paths, in UTC, with the date and time
// of day formatted once per second: paths start a few microseconds apart.
type timeMemo struct {
	sec    int64
	valid  bool
	prefix []byte // "2006-01-02T15:04:05" of sec
}

// lastMemoSec is 9999-12-31T23:59:59Z: past it, and before 1970, times are
// formatted in full.
const lastMemoSec = 253402300799

// appendTime appends t in UTC as t.UTC().AppendFormat(b, layout) does for
// layout time.RFC3339Nano, or headerTime when fixed (nanoseconds always in
// nine digits).
func (m *timeMemo) appendTime(b []byte, t time.Time, fixed bool) []byte {
	t = t.UTC()
	sec := t.Unix()
	if sec < 0 || sec > lastMemoSec {
		if fixed {
			return t.AppendFormat(b, headerTime)
		}
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	if !m.valid || sec != m.sec {
		m.prefix = t.AppendFormat(m.prefix[:0], "2006-01-02T15:04:05")
		m.sec, m.valid = sec, true
	}
	b = append(b, m.prefix...)
	if ns := t.Nanosecond(); fixed || ns != 0 {
		var d [10]byte
		d[0] = '.'
		for i := 9; i > 0; i-- {
			d[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := len(d)
		for !fixed && d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return append(b, 'Z')
}

// IP protocol numbers with names of their own.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// appendProto appends the lower-case protocol name, or the number in decimal.
func appendProto(b []byte, proto uint8) []byte {
	switch proto {
	case protoTCP:
		return append(b, "tcp"...)
	case protoUDP:
		return append(b, "udp"...)
	case protoICMP:
		return append(b, "icmp"...)
	case protoICMPv6:
		return append(b, "icmpv6"...)
	case protoSCTP:
		return append(b, "sctp"...)
	}
	return strconv.AppendUint(b, uint64(proto), 10)
}

// hasPorts says whether the protocol's tuple carries ports worth showing.
func hasPorts(proto uint8) bool {
	return proto == protoTCP || proto == protoUDP || proto == protoSCTP
}

// appendEndpoint appends addr:port, or just the address when the protocol
// has no ports. An invalid endpoint appends nothing.
func appendEndpoint(b []byte, ap netip.AddrPort, proto uint8) []byte {
	if !ap.Addr().IsValid() {
		return b
	}
	if hasPorts(proto) {
		return ap.AppendTo(b)
	}
	return ap.Addr().AppendTo(b)
}

// appendAddrPort appends addr:port whatever the protocol (NAT endpoints).
func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	if !ap.Addr().IsValid() {
		return b
	}
	return ap.AppendTo(b)
}

var tcpFlagNames = [8]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

// appendTCPFlags appends the set flags as "SYN,ACK", lowest bit first.
func appendTCPFlags(b []byte, flags uint8) []byte {
	first := true
	for i, name := range tcpFlagNames {
		if flags&(1<<i) == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, name...)
	}
	return b
}

// appendUint appends v in decimal, as strconv.AppendUint(b, v, 10) does,
// the digits written in place, two at a time from the end: half the
// divisions of a digit loop, for the nanosecond times and lengths every
// JSON hop has.
func appendUint(b []byte, v uint64) []byte {
	if v < 10 {
		return append(b, byte('0'+v))
	}
	n := 2 // v >= 10
	for n < len(pow10) && v >= pow10[n] {
		n++
	}
	l := len(b)
	b = slices.Grow(b, n)[:l+n]
	i := l + n
	for v >= 100 {
		q := v / 100
		d := (v - q*100) * 2
		i -= 2
		b[i], b[i+1] = digitPairs[d], digitPairs[d+1]
		v = q
	}
	if v >= 10 {
		b[l], b[l+1] = digitPairs[v*2], digitPairs[v*2+1]
	} else {
		b[l] = byte('0' + v)
	}
	return b
}

// pow10[i] is 10 to the power i, up to the largest a uint64 holds.
var pow10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// digitPairs holds "00" to "99", two bytes each.
const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// appendInt appends v in decimal, as strconv.AppendInt(b, v, 10) does.
func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return appendUint(append(b, '-'), uint64(-v)) // also right for math.MinInt64
	}
	return appendUint(b, uint64(v))
}

// appendHex appends v as 0x-prefixed lower-case hex.
func appendHex(b []byte, v uint64) []byte {
	return strconv.AppendUint(append(b, "0x"...), v, 16)
}

// hopProto is the protocol of a hop's tuple, falling back to the packet's.
func hopProto(p *stitch.Path, h *stitch.Hop) uint8 {
	if h.Proto != 0 {
		return h.Proto
	}
	return p.Proto
}

// jsonSafe says which bytes a JSON string holds as they are: ASCII but
// control characters, '"' and '\\'.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// control characters and U+2028/U+2029 are escaped, so the result is valid
// JSON (and JavaScript) for any input.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if jsonSafe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Discard returns a renderer that renders nothing (pathtrace -q -w).
func Discard() Renderer { return discard{} }

type discard struct{}

func (discard) Render(*stitch.Path) error { return nil }
func (discard) Close() error              { return nil }
