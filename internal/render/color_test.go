package render

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

func TestParseColorMode(t *testing.T) {
	for _, want := range []ColorMode{ColorAuto, ColorAlways, ColorNever} {
		got, err := ParseColorMode(want.String())
		if err != nil || got != want {
			t.Errorf("ParseColorMode(%q) = %v, %v; want %v", want.String(), got, err, want)
		}
		var m ColorMode
		if err := m.Set(want.String()); err != nil || m != want {
			t.Errorf("Set(%q) = %v, %v; want %v", want.String(), m, err, want)
		}
	}
	for _, bad := range []string{"", "yes", "Always", "true"} {
		if _, err := ParseColorMode(bad); err == nil {
			t.Errorf("ParseColorMode(%q) succeeded, want an error", bad)
		}
		m := ColorNever
		if err := m.Set(bad); err == nil || m != ColorNever {
			t.Errorf("Set(%q) = %v, %v; want an error and no change", bad, m, err)
		}
	}
}

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// openPTY opens a pseudo-terminal master, which isatty reports as a
// terminal, or skips the test.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	f, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		testutil.Missing(t, testutil.PTY, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestUseColor(t *testing.T) {
	regular, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()
	var buf bytes.Buffer
	none := envOf(nil)
	noColor := envOf(map[string]string{"NO_COLOR": "1"})

	for _, tc := range []struct {
		name string
		mode ColorMode
		w    io.Writer
		env  func(string) string
		want bool
	}{
		{"never", ColorNever, &buf, none, false},
		{"always to a buffer", ColorAlways, &buf, none, true},
		{"always with NO_COLOR", ColorAlways, &buf, noColor, true},
		{"auto to a buffer", ColorAuto, &buf, none, false},
		{"auto to a file", ColorAuto, regular, none, false},
		{"auto to a nil file", ColorAuto, (*os.File)(nil), none, false},
	} {
		if got := UseColor(tc.mode, tc.w, tc.env); got != tc.want {
			t.Errorf("%s: UseColor = %v, want %v", tc.name, got, tc.want)
		}
	}

	t.Run("terminal", func(t *testing.T) {
		tty := openPTY(t)
		for _, tc := range []struct {
			env  map[string]string
			want bool
		}{
			{nil, true},
			{map[string]string{"NO_COLOR": ""}, true},
			{map[string]string{"NO_COLOR": "1"}, false},
			{map[string]string{"NO_COLOR": "0"}, false},
			{map[string]string{"TERM": "dumb"}, false},
			{map[string]string{"TERM": "xterm-256color"}, true},
		} {
			if got := UseColor(ColorAuto, tty, envOf(tc.env)); got != tc.want {
				t.Errorf("auto to a terminal with env %v: UseColor = %v, want %v", tc.env, got, tc.want)
			}
		}
		if UseColor(ColorNever, tty, none) {
			t.Error("never to a terminal: UseColor = true")
		}
	})
}
