package kernel

import (
	"bytes"
	"compress/gzip"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"golang.org/x/sys/unix"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func gzipped(t *testing.T, s string) *fstest.MapFile {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return &fstest.MapFile{Data: b.Bytes()}
}

func TestLoadConfig(t *testing.T) {
	const text = "# comment\nCONFIG_KPROBES=y\nCONFIG_BRIDGE=m\n# CONFIG_IP_VS is not set\nCONFIG_LOCALVERSION=\"-amd64\"\nCONFIG_HZ=250\n"
	for _, tt := range []struct {
		name, source string
		fsys         fstest.MapFS
	}{
		{"proc", "/proc/config.gz", fstest.MapFS{"proc/config.gz": gzipped(t, text), "boot/config-6.1.0": file("CONFIG_KPROBES=n\n")}},
		{"boot", "/boot/config-6.1.0", fstest.MapFS{"boot/config-6.1.0": file(text)}},
		{"damaged proc, boot", "/boot/config-6.1.0", fstest.MapFS{"proc/config.gz": file(text), "boot/config-6.1.0": file(text)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := LoadConfig(tt.fsys, "6.1.0")
			if c.Source != tt.source || !c.Known() {
				t.Fatalf("source %q known %v, want %q", c.Source, c.Known(), tt.source)
			}
			for name, want := range map[string]string{"CONFIG_KPROBES": "y", "CONFIG_BRIDGE": "m", "CONFIG_IP_VS": "",
				"CONFIG_LOCALVERSION": "-amd64", "CONFIG_HZ": "250", "CONFIG_NOT_IN_FILE": ""} {
				if got, known := c.Get(name); got != want || !known {
					t.Errorf("%s = %q (known %v), want %q", name, got, known, want)
				}
			}
		})
	}
	for name, fsys := range map[string]fstest.MapFS{
		"none":          {},
		"other release": {"boot/config-6.1.0": file(text)},
	} {
		c := LoadConfig(fsys, "6.12.0")
		if v, known := c.Get("CONFIG_KPROBES"); c.Known() || known || v != "" || c.Source != "" {
			t.Errorf("%s: %+v", name, c)
		}
	}
	if c := LoadConfig(fstest.MapFS{"boot/config-": file(text)}, ""); c.Known() {
		t.Errorf("no release read /boot/config-: %+v", c)
	}
}

func TestLockdown(t *testing.T) {
	for text, want := range map[string]string{
		"[none] integrity confidentiality\n": "none",
		"none [integrity] confidentiality\n": "integrity",
		"none integrity [confidentiality]\n": "confidentiality",
		"integrity\n":                        "integrity",
	} {
		got, err := ReadLockdown(fstest.MapFS{"sys/kernel/security/lockdown": file(text)})
		if err != nil || got != want {
			t.Errorf("%q: %q, %v, want %q", text, got, err, want)
		}
	}
	if got, err := ReadLockdown(fstest.MapFS{}); err == nil {
		t.Errorf("no lockdown file: %q, no error", got)
	}
}

func TestMounts(t *testing.T) {
	m := ReadMounts(fstest.MapFS{"proc/mounts": file("sysfs /sys sysfs rw 0 0\ntracefs /mnt/t tracefs rw 0 0\ntracefs /sys/kernel/tracing tracefs rw 0 0\nbad\n")})
	if got := m.First("tracefs", "/sys/kernel/tracing"); got != "/sys/kernel/tracing" {
		t.Errorf("preferred: %q", got)
	}
	if got := m.First("tracefs", "/elsewhere"); got != "/mnt/t" {
		t.Errorf("first: %q", got)
	}
	if got := m.First("securityfs", "/sys/kernel/security"); got != "" {
		t.Errorf("absent: %q", got)
	}
	if ReadMounts(fstest.MapFS{}) != nil {
		t.Error("no proc/mounts: not nil")
	}
}

func TestDetectKprobes(t *testing.T) {
	const tracefs = "tracefs /sys/kernel/tracing tracefs rw 0 0\n"
	boot := func(s string) Config { return LoadConfig(fstest.MapFS{"boot/config-R": file(s)}, "R") }
	for _, tt := range []struct {
		name   string
		fsys   fstest.MapFS
		cfg    Config
		state  KprobeState
		source string
		unset  string
	}{
		{"tracefs kprobe_events", fstest.MapFS{"proc/mounts": file(tracefs), "sys/kernel/tracing/kprobe_events": file("")},
			Config{}, KprobesAvailable, "/sys/kernel/tracing/kprobe_events", ""},
		{"tracefs elsewhere", fstest.MapFS{"proc/mounts": file("tracefs /t tracefs rw 0 0\n"), "t/kprobe_events": file("")},
			Config{}, KprobesAvailable, "/t/kprobe_events", ""},
		{"debugfs tracing, no mounts", fstest.MapFS{"sys/kernel/debug/tracing/kprobe_events": file("")},
			Config{}, KprobesAvailable, "/sys/kernel/debug/tracing/kprobe_events", ""},
		{"kprobe PMU", fstest.MapFS{"sys/bus/event_source/devices/kprobe/type": file("6\n")},
			boot("# CONFIG_KPROBES is not set\n"), KprobesAvailable, "/sys/bus/event_source/devices/kprobe/type", ""},
		{"tracefs without kprobe_events", fstest.MapFS{"proc/mounts": file(tracefs)},
			Config{}, KprobesMissing, "no /sys/kernel/tracing/kprobe_events", ""},
		{"tracefs without kprobe_events, config says why", fstest.MapFS{"proc/mounts": file(tracefs)},
			boot("# CONFIG_KPROBES is not set\n"), KprobesMissing, "no /sys/kernel/tracing/kprobe_events", "CONFIG_KPROBES"},
		{"not built", fstest.MapFS{}, boot("# CONFIG_KPROBES is not set\n"), KprobesNotBuilt, "/boot/config-R: CONFIG_KPROBES unset", "CONFIG_KPROBES"},
		{"no kprobe events", fstest.MapFS{}, boot("CONFIG_KPROBES=y\n# CONFIG_KPROBE_EVENTS is not set\n"),
			KprobesNotBuilt, "/boot/config-R: CONFIG_KPROBE_EVENTS unset", "CONFIG_KPROBE_EVENTS"},
		{"built, tracefs not mounted", fstest.MapFS{}, boot("CONFIG_KPROBES=y\nCONFIG_KPROBE_EVENTS=y\n"),
			KprobesBuilt, "/boot/config-R: CONFIG_KPROBES=y", ""},
		{"nothing to tell", fstest.MapFS{}, Config{}, KprobesUnknown, "tracefs not mounted and no kernel config", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := DetectKprobes(tt.fsys, tt.cfg)
			if k.State != tt.state || k.Source != tt.source || k.Unset != tt.unset {
				t.Errorf("%+v, want state %d source %q unset %q", k, tt.state, tt.source, tt.unset)
			}
			if k.Available() != (k.Why == "") {
				t.Errorf("available %v with why %q", k.Available(), k.Why)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	for release, want := range map[string]Version{
		"6.1.0-28-amd64": {6, 1}, "6.12-rc1": {6, 12}, "5.4": {5, 4}, "5.15.0": {5, 15}, "4.19.0+": {4, 19},
	} {
		if got, err := ParseVersion(release); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v, want %v", release, got, err, want)
		}
	}
	for _, bad := range []string{"", "unknown", "6", "6.x", "v6.1"} {
		if got, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) = %v, no error", bad, got)
		}
	}
	v := Version{5, 15}
	if !v.Below(5, 16) || !v.Below(6, 0) || v.Below(5, 15) || v.Below(4, 19) || v.String() != "5.15" {
		t.Errorf("%v: Below or String wrong", v)
	}
	if _, err := ParseVersion(Release()); err != nil {
		t.Errorf("running kernel: %v", err)
	}
}

func TestNetnsSpec(t *testing.T) {
	for spec, want := range map[string]struct{ path, exec string }{
		"":                        {"", ""},
		"node1":                   {"/run/netns/node1", "ip netns exec node1 "},
		"/run/netns/cni-1234":     {"/run/netns/cni-1234", "ip netns exec cni-1234 "},
		"/var/run/netns/cni-1234": {"/var/run/netns/cni-1234", "ip netns exec cni-1234 "},
		"/proc/42/ns/net":         {"/proc/42/ns/net", "nsenter --net=/proc/42/ns/net "},
		"./ns":                    {"./ns", "nsenter --net=./ns "},
	} {
		if got := NetnsPath(spec); got != want.path {
			t.Errorf("NetnsPath(%q) = %q, want %q", spec, got, want.path)
		}
		if got := NetnsExec(spec); got != want.exec {
			t.Errorf("NetnsExec(%q) = %q, want %q", spec, got, want.exec)
		}
	}
	if _, err := OpenNetns("pathtrace-no-such-netns"); err == nil {
		t.Error("opened a namespace that does not exist")
	}
}

// TestOpenNetnsChecksType: only a network namespace opens; other files and
// other namespaces are refused with one sentence saying what they are.
func TestOpenNetnsChecksType(t *testing.T) {
	h, err := OpenNetns("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("own network namespace: %v", err)
	}
	h.Close()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/etc/passwd":        "/etc/passwd is not a network namespace",
		"/proc/self/ns/mnt":  "/proc/self/ns/mnt is not a network namespace but a mount namespace",
		"/proc/self/ns/uts":  "but a UTS namespace",
		fifo:                 fifo + " is not a network namespace", // and does not wait for a writer
		"/proc/self/ns/user": "but a user namespace",
	} {
		_, err := OpenNetns(path)
		if !errors.Is(err, ErrNotNetns) || !strings.Contains(err.Error(), want) {
			t.Errorf("OpenNetns(%s) = %v, want ErrNotNetns saying %q", path, err, want)
		}
	}
}

// TestPrintableName: a namespace's file name reaches terminals and
// recordings with its control characters and invalid bytes replaced.
func TestPrintableName(t *testing.T) {
	for name, want := range map[string]string{
		"cni-1234":        "cni-1234",
		"pod\x1b[31mred":  "pod?[31mred",
		"two\nlines":      "two?lines",
		"bad\xffutf8":     "bad?utf8",
		"naïve namespace": "naïve namespace",
	} {
		if got := printableName(name); got != want {
			t.Errorf("printableName(%q) = %q, want %q", name, got, want)
		}
	}
}
