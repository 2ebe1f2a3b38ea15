package record

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// Wireshark's command-line reader opens a recording without complaint:
// one frame per record, with its comment and decoded IPv4 addresses.
func TestTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		testutil.Missing(t, testutil.Tshark, err)
	}
	const n = 10
	data, _ := writeRecording(t, n, true)
	path := filepath.Join(t.TempDir(), "rec.pcapng")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// frame.comment is the packet comment field since Wireshark 3.6
	// (pkt_comment before).
	out := runTshark(t, tshark, path, "frame.number", "frame.comment", "ip.src", "ip.dst", "frame.interface_name")
	lines := strings.Split(out, "\n")
	if len(lines) != n {
		t.Fatalf("tshark shows %d frames, want %d:\n%s", len(lines), n, out)
	}
	for i, line := range lines {
		f := strings.Split(line, "|")
		if len(f) != 5 {
			t.Fatalf("line %q has %d fields", line, len(f))
		}
		if f[0] != itoa(i+1) || f[1] == "" || f[4] == "" {
			t.Errorf("frame %d: %q", i+1, line)
		}
		if strings.HasPrefix(f[1], "drop") {
			continue // no packet bytes captured
		}
		if f[2] != clientIP.String() || (f[3] != svcIP.String() && f[3] != serverIP.String()) {
			t.Errorf("frame %d: addresses %s → %s", i+1, f[2], f[3])
		}
	}
	t.Logf("tshark output:\n%s", out)
}

// runTshark reads the recording at path with tshark and returns its
// fields, one line per frame, separated by "|". Anything tshark says on
// stderr fails the test.
func runTshark(t *testing.T, tshark, path string, fields ...string) string {
	t.Helper()
	args := []string{"-n", "-r", path, "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command(tshark, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		// tshark warns about running as root; that is about us, not the file.
		if line != "" && !strings.HasPrefix(line, "Running as user \"root\"") {
			t.Errorf("tshark stderr: %s", line)
		}
	}
	return strings.TrimSpace(stdout.String())
}
