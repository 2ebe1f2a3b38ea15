// Package podstream carries a binary stream, a recording, through a pod's
// log: the only stream from a pod that every API server hands out as a
// plain HTTP answer. A pod's log is text, cut into lines by the container
// runtime (which also drops a carriage return before a newline), so the
// bytes go base64-encoded, a tagged line per chunk; lines without the tag
// (the program's log on stderr, which shares the pod's log) are passed on.
package podstream

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
)

// Tag starts every line that carries data.
const Tag = "pathtrace-rec "

// chunk is the most bytes one line carries: 10924 base64 characters with
// the tag, below containerd's default cut of a log line at 16 KiB.
const chunk = 8192

// Writer encodes what is written to it into tagged lines on the
// underlying writer, one Write call per line.
type Writer struct {
	w    io.Writer
	line []byte
}

// NewWriter returns a Writer onto w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, line: make([]byte, 0, len(Tag)+base64.StdEncoding.EncodedLen(chunk)+1)}
}

// Write writes b as one or more lines.
func (w *Writer) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		c := b[:min(len(b), chunk)]
		w.line = append(w.line[:0], Tag...)
		w.line = base64.StdEncoding.AppendEncode(w.line, c)
		w.line = append(w.line, '\n')
		if _, err := w.w.Write(w.line); err != nil {
			return n, err
		}
		n += len(c)
		b = b[len(c):]
	}
	return n, nil
}

// maxLine is the longest line Decode reads: a data line is at most 11 KB,
// a log line of the program a few hundred bytes.
const maxLine = 1 << 20

// Decode reads lines from r until it ends: it writes the data of tagged
// lines to data, in order, and hands every other line to other (without
// its newline; nil drops them). It returns the number of data bytes
// written, and the first error of r, of data, or of a tagged line that is
// not valid base64 (data up to it was written). An end of r within a line
// is not an error: that line is treated as any other.
func Decode(r io.Reader, data io.Writer, other func(line string)) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var total int64
	var buf []byte
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br)
		if len(line) > 0 {
			if rest, ok := bytes.CutPrefix(line, []byte(Tag)); ok {
				buf = buf[:0]
				var derr error
				if buf, derr = base64.StdEncoding.AppendDecode(buf, rest); derr != nil {
					return total, fmt.Errorf("line %d of the stream: the data is damaged: %w", lineNo, derr)
				}
				n, werr := data.Write(buf)
				total += int64(n)
				if werr != nil {
					return total, werr
				}
			} else if other != nil {
				other(string(line))
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// readLine reads one line without its newline; a line longer than maxLine
// is an error.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("a line of the stream is longer than %d bytes", maxLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == nil {
			line = line[:len(line)-1]
		}
		return line, err
	}
}
