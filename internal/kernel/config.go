package kernel

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"strings"
)

// Config is the kernel's build configuration, when the system exposes it.
type Config struct {
	// Source is the file it was read from ("/proc/config.gz" or
	// "/boot/config-<release>"), "" when none could be read.
	Source string
	vals   map[string]string
}

// Get returns an option's value ("y", "m", a number or a string without its
// quotes; "" when not set) and whether the configuration is known.
func (c Config) Get(name string) (value string, known bool) {
	if c.vals == nil {
		return "", false
	}
	return c.vals[name], true
}

// Known reports whether a configuration was read.
func (c Config) Known() bool { return c.vals != nil }

// LoadConfig reads the build configuration of the kernel with the given
// release from fsys, whose paths are relative to "/": /proc/config.gz, else
// /boot/config-<release>. It returns a Config that is not Known when neither
// can be read.
func LoadConfig(fsys fs.FS, release string) Config {
	if b, err := fs.ReadFile(fsys, "proc/config.gz"); err == nil {
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			if raw, err := io.ReadAll(zr); err == nil {
				return Config{Source: "/proc/config.gz", vals: parseConfig(raw)}
			}
		}
	}
	if release != "" {
		name := "boot/config-" + release
		if b, err := fs.ReadFile(fsys, name); err == nil {
			return Config{Source: "/" + name, vals: parseConfig(b)}
		}
	}
	return Config{}
}

// parseConfig returns the CONFIG_ options set in a kernel config file's text
// with their values, quotes removed. "# CONFIG_X is not set" sets nothing.
func parseConfig(b []byte) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			m[k] = strings.Trim(v, `"`)
		}
	}
	return m
}
