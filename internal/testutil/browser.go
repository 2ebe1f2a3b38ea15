package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Chromium is Debian's chromium, the headless browser tests open the HTML
// report in.
var Chromium = Tool("chromium")

// browserFlags run Chromium headless, alone and offline: a fresh profile,
// every request through a proxy that refuses it (loopback included), every
// name unresolvable, no background traffic. As root it needs --no-sandbox.
func browserFlags(profile string) []string {
	flags := []string{
		"--headless", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=" + profile,
		"--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
		"--disable-background-networking", "--disable-component-update", "--disable-default-apps",
		"--disable-dev-shm-usage",
	}
	if os.Geteuid() == 0 {
		flags = append(flags, "--no-sandbox")
	}
	return flags
}

// Browse opens url in headless Chromium (Require(tb, Chromium) first) and
// does what the extra flags say (--dump-dom, --screenshot=FILE, ...),
// returning its standard output.
func Browse(tb testing.TB, url string, extra ...string) []byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append(browserFlags(tb.TempDir()), extra...)
	cmd := exec.CommandContext(ctx, "chromium", append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("chromium %s: %v\n%s", url, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// DumpDOM returns the DOM of the page at url as serialized after its
// scripts ran.
func DumpDOM(tb testing.TB, url string) []byte {
	tb.Helper()
	return Browse(tb, url, "--dump-dom")
}

// Screenshot writes a PNG of the page at url, in a window w×h, to file.
func Screenshot(tb testing.TB, url, file string, w, h int) {
	tb.Helper()
	Browse(tb, url, "--screenshot="+file, "--window-size="+strconv.Itoa(w)+","+strconv.Itoa(h))
	if _, err := os.Stat(file); err != nil {
		tb.Fatal(fmt.Errorf("chromium wrote no screenshot: %w", err))
	}
}
