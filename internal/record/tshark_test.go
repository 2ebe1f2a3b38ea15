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
	cmd := exec.Command(tshark, "-n", "-r", path, "-T", "fields", "-E", "separator=|",
		"-e", "frame.number", "-e", "frame.comment", "-e", "ip.src", "-e", "ip.dst", "-e", "frame.interface_name")
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
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != n {
		t.Fatalf("tshark shows %d frames, want %d:\n%s", len(lines), n, stdout.String())
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
	t.Logf("tshark output:\n%s", stdout.String())
}
