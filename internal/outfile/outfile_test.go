package outfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/testutil"
)

// stickyDir makes a directory like /tmp: world-writable, sticky.
func stickyDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmp")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPlantedSymlink: a symbolic link another user planted in a sticky
// world-writable directory, pointing at a root-owned file, is replaced by
// the new file; the target is not written.
func TestPlantedSymlink(t *testing.T) {
	testutil.RequireRoot(t) // to plant the link as another user
	dir := stickyDir(t)
	target := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(target, []byte("root's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "x.pcapng")
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(name, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(name, []byte("ours\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, target); got != "root's\n" {
		t.Errorf("the link's target now holds %q", got)
	}
	fi, err := os.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || readFile(t, name) != "ours\n" {
		t.Errorf("%s: %v %v, want a regular file of mode 0600 with the data", name, fi.Mode(), err)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("target mode %v %v, want 0644 unchanged", fi.Mode(), err)
	}
}

// TestReplaces: an existing regular file is replaced, as tcpdump does, and
// another name of it (a hard link) keeps the old content; until Publish
// the name keeps what it had; an unpublished file leaves nothing behind.
func TestReplaces(t *testing.T) {
	dir := t.TempDir()
	name, other := filepath.Join(dir, "rec"), filepath.Join(dir, "other")
	if err := os.WriteFile(name, []byte("old recording, longer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(name, other); err != nil {
		t.Fatal(err)
	}
	f, err := Create(name, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("new\n"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, name); got != "old recording, longer\n" {
		t.Errorf("before Publish the name holds %q", got)
	}
	if err := f.Publish(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if readFile(t, name) != "new\n" || readFile(t, other) != "old recording, longer\n" {
		t.Errorf("name %q, hard link %q", readFile(t, name), readFile(t, other))
	}

	f, err = Create(filepath.Join(dir, "never"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("an unpublished file left %v", entries)
	}
}

// TestInPlace: a character device and a FIFO with a reader are written in
// place; a FIFO without one, a directory and a missing directory are one
// sentence each.
func TestInPlace(t *testing.T) {
	if err := WriteFile(os.DevNull, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(os.DevNull); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("%s is no longer a device: %v %v", os.DevNull, fi.Mode(), err)
	}
	if err := WriteFile("/dev/full", []byte("x"), 0o600); err == nil || !strings.Contains(err.Error(), "write /dev/full: no space left on device") {
		t.Errorf("/dev/full: %v", err)
	}

	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		fifo:                            "create " + fifo + ": it is a FIFO that no process reads",
		dir:                             "create " + dir + ": it is a directory",
		filepath.Join(dir, "no", "rec"): "create " + filepath.Join(dir, "no", "rec") + ": no such file or directory",
	} {
		if _, err := Create(name, 0o600); err == nil || err.Error() != want {
			t.Errorf("Create(%s) = %v, want %q", name, err, want)
		}
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := WriteFile(fifo, []byte("through the fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _ := r.Read(buf); string(buf[:n]) != "through the fifo" {
		t.Errorf("read %q from the FIFO", buf[:n])
	}
}
