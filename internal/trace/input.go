package trace

import (
	"errors"
	"fmt"

	"github.com/pathtrace/pathtrace/internal/kernel"
	"github.com/pathtrace/pathtrace/internal/outfile"
	"github.com/pathtrace/pathtrace/internal/record"
)

// InputError is an error in what the user gave: a path that cannot be
// written, a namespace that is not one, a recording that is not one. The
// command exits with code 2 for it, 1 for other errors (a system that
// cannot trace).
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// badInput marks err as an InputError.
func badInput(err error) error {
	var ie *InputError
	if err == nil || errors.As(err, &ie) {
		return err
	}
	return &InputError{err}
}

// inputs are the files a live trace writes, created before anything is
// attached so that a path that cannot be written is said first; and the
// node namespaces, checked then too.
type inputs struct {
	rec   *record.Files // the recording, until it starts
	ready *outfile.File // the ready file, until it is written
}

// openInputs checks the node namespaces and creates the recording's first
// file and the ready file, each under a temporary name until it is
// written. Every error is an InputError.
func openInputs(opts *Options) (_ *inputs, err error) {
	in := &inputs{}
	defer func() {
		if err != nil {
			in.discard()
		}
	}()
	for _, spec := range opts.Loader.Netns {
		h, err := kernel.OpenNetns(spec)
		if err != nil {
			return nil, badInput(fmt.Errorf("--netns: %w", err))
		}
		h.Close()
	}
	if opts.RecordTo != nil {
		in.rec = record.Stream(opts.RecordTo)
	} else if opts.Record != "" {
		if in.rec, err = record.Prepare(opts.Record, opts.Rotate); err != nil {
			return nil, badInput(fmt.Errorf("-w: %w", err))
		}
	}
	if opts.ReadyFile != "" {
		if in.ready, err = outfile.Create(opts.ReadyFile, 0o644); err != nil {
			return nil, badInput(fmt.Errorf("--ready-file: %w", err))
		}
	}
	return in, nil
}

// discard removes what was not written: the name keeps what it had.
func (in *inputs) discard() {
	if in.rec != nil {
		in.rec.Discard()
		in.rec = nil
	}
	if in.ready != nil {
		in.ready.Close()
		in.ready = nil
	}
}

// writeReady writes the ready file.
func (in *inputs) writeReady() error {
	f := in.ready
	if f == nil {
		return nil
	}
	in.ready = nil
	if _, err := f.WriteString("ready\n"); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Publish(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
