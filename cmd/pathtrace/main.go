// Command pathtrace shows, for every packet of a pod, its path through the
// node's kernel hop by hop.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pathtrace/pathtrace/internal/trace"
)

// outputGrace is how long, once stopped by a signal, pathtrace waits for a
// stdout or stderr that does not read before it drops what it could not
// write (a reader that keeps reading gets everything; see trace.Output).
const outputGrace = 250 * time.Millisecond

// stderr is where logs, the summary and errors go: os.Stderr, through an
// Output that a stderr nobody reads cannot hold once a signal came.
var stderr io.Writer = os.Stderr

func main() {
	// SIGPIPE too: `pathtrace ... | head` must stop cleanly (detach, remove
	// the demo cluster) instead of dying on the first write to a closed
	// pipe. SIGHUP (the terminal went away) stops as SIGINT does, with the
	// recording finished.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	errOut := trace.NewOutput(os.Stderr, outputGrace)
	context.AfterFunc(ctx, errOut.Stop)
	stderr = errOut
	root := newRootCmd()
	if filepath.Base(os.Args[0]) == pluginName {
		root = newKubectlCmd(true) // kubectl pathtrace
	}
	err := root.ExecuteContext(ctx)
	code := 0
	if err != nil {
		code = report(err)
	}
	stop()
	errOut.Close()
	os.Exit(code)
}

// usageError marks a bad flag or argument: exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// report prints err as one sentence (a verifier log in full, since that is
// the only way to act on it) and returns the exit code: 2 for bad input
// (flags, paths, namespaces, recordings), 1 for a system that cannot trace.
func report(err error) int {
	if errors.Is(err, syscall.EPIPE) {
		return 0 // the reader went away (| head): nothing to say to it
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		fmt.Fprintf(stderr, "pathtrace: the kernel refused a program: %+v\n", ve)
		return 1
	}
	fmt.Fprintf(stderr, "pathtrace: %v\n", err)
	var ue usageError
	var ie *trace.InputError
	if errors.As(err, &ue) || errors.As(err, &ie) {
		return 2
	}
	return 1
}
