package render

import (
	"fmt"
	"io"
	"os"

	"github.com/mattn/go-isatty"
)

// ColorMode is the --color setting: auto, always or never.
// The zero value is ColorAuto. *ColorMode implements pflag.Value.
type ColorMode int

const (
	ColorAuto ColorMode = iota
	ColorAlways
	ColorNever
)

// ParseColorMode parses "auto", "always" or "never".
func ParseColorMode(s string) (ColorMode, error) {
	switch s {
	case "auto":
		return ColorAuto, nil
	case "always":
		return ColorAlways, nil
	case "never":
		return ColorNever, nil
	}
	return ColorAuto, fmt.Errorf("parse color mode %q: want auto, always or never", s)
}

func (m ColorMode) String() string {
	switch m {
	case ColorAlways:
		return "always"
	case ColorNever:
		return "never"
	}
	return "auto"
}

// Set parses s into m, for use as a command-line flag value.
func (m *ColorMode) Set(s string) error {
	v, err := ParseColorMode(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Type names the flag value type in help output.
func (m *ColorMode) Type() string { return "auto|always|never" }

// UseColor decides, once, whether output to w is colored. never is false and
// always is true. auto is true only when w is an *os.File on a terminal,
// NO_COLOR is unset or empty and TERM is not "dumb". env looks up environment
// variables; nil means os.Getenv.
func UseColor(mode ColorMode, w io.Writer, env func(string) string) bool {
	switch mode {
	case ColorAlways:
		return true
	case ColorNever:
		return false
	}
	if env == nil {
		env = os.Getenv
	}
	if env("NO_COLOR") != "" || env("TERM") == "dumb" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return false
	}
	fd := f.Fd()
	return isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd)
}
