// Command pathtrace shows, for every packet of a pod, its path through the
// node's kernel hop by hop.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cilium/ebpf"
)

func main() {
	// SIGPIPE too: `pathtrace ... | head` must stop cleanly (detach, remove
	// the demo cluster) instead of dying on the first write to a closed pipe.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		os.Exit(report(err))
	}
}

// usageError marks a bad flag or argument: exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// report prints err as one sentence (a verifier log in full, since that is
// the only way to act on it) and returns the exit code.
func report(err error) int {
	if errors.Is(err, syscall.EPIPE) {
		return 0 // the reader went away (| head): nothing to say to it
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		fmt.Fprintf(os.Stderr, "pathtrace: the kernel refused a program: %+v\n", ve)
		return 1
	}
	fmt.Fprintf(os.Stderr, "pathtrace: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
