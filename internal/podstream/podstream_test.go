package podstream

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestRoundTrip sends random binary data (every byte value, carriage
// returns before newlines, the runtime's trouble) through the Writer in
// writes of random sizes, with log lines in between, and gets back the
// data and the log lines.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 200_000)
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	copy(data[100:], "\r\n\r\n\n\r")
	var stream bytes.Buffer
	w := NewWriter(&stream)
	var logs []string
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(20_000))
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
		l := "time=... level=WARN msg=\"line " + strings.Repeat("x", rng.IntN(50)) + "\""
		logs = append(logs, l)
		stream.WriteString(l + "\n")
	}
	for line := range strings.SplitSeq(stream.String(), "\n") {
		if len(line) > 16<<10 {
			t.Fatalf("a line of %d bytes: the runtime cuts lines at 16 KiB", len(line))
		}
	}
	var got bytes.Buffer
	var gotLogs []string
	n, err := Decode(&stream, &got, func(l string) { gotLogs = append(gotLogs, l) })
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("decoded %d bytes, want the %d written, unchanged", n, len(data))
	}
	if strings.Join(gotLogs, "\n") != strings.Join(logs, "\n") {
		t.Errorf("log lines:\n%q\nwant\n%q", gotLogs, logs)
	}
}

// TestDamaged: a data line that is not base64 stops the decoding with an
// error naming the line, after the data before it; a stream cut within a
// line is the end of it.
func TestDamaged(t *testing.T) {
	var got bytes.Buffer
	in := Tag + "aGVsbG8=\n" + Tag + "!!!\n" + Tag + "d29ybGQ=\n"
	n, err := Decode(strings.NewReader(in), &got, nil)
	if err == nil || !strings.Contains(err.Error(), "line 2") || got.String() != "hello" || n != 5 {
		t.Errorf("Decode = %d, %v, data %q; want 5, an error for line 2, \"hello\"", n, err, got.String())
	}
	got.Reset()
	n, err = Decode(strings.NewReader(Tag+"aGVsbG8=\n"+Tag+"d29y"), &got, nil)
	if err != nil || got.String() != "hellowor" || n != 8 {
		t.Errorf("cut stream: Decode = %d, %v, data %q; want 8, nil, \"hellowor\"", n, err, got.String())
	}
}
