package trace

import (
	"bytes"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"
)

// TestOutputWrites: everything written reaches the writer, in order.
func TestOutputWrites(t *testing.T) {
	var buf bytes.Buffer
	o := NewOutput(&buf, time.Second)
	var want bytes.Buffer
	for i := range 1000 {
		line := []byte{byte('a' + i%26), '\n'}
		want.Write(line)
		if _, err := o.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if dropped, err := o.Close(); dropped != 0 || err != nil || !bytes.Equal(buf.Bytes(), want.Bytes()) {
		t.Errorf("dropped %d, %v, wrote %d bytes of %d", dropped, err, buf.Len(), want.Len())
	}
	if _, err := o.Write([]byte("late")); !errors.Is(err, ErrOutputClosed) {
		t.Errorf("write after Close: %v", err)
	}
}

// TestOutputBlocked: a reader that never reads holds writes until Stop;
// then nothing waits, and what was not written is counted.
func TestOutputBlocked(t *testing.T) {
	pr, pw := io.Pipe() // nobody reads pr
	defer pr.Close()
	o := NewOutput(pw, 10*time.Millisecond)
	chunk := bytes.Repeat([]byte("x"), 100)
	const n = outputQueue + 10
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			o.Write(chunk)
		}
	}()
	select {
	case <-done:
		t.Fatal("writes past the queue did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	o.Stop()
	<-done // the writes return now
	dropped, err := o.Close()
	if err != nil || dropped != n*100 {
		t.Errorf("dropped %d bytes (%v), want all %d", dropped, err, n*100)
	}
}

// slowWriter takes a while for each write, as a terminal or a pipe into a
// busy reader does, but writes everything.
type slowWriter struct {
	bytes.Buffer
	delay time.Duration
}

func (w *slowWriter) Write(b []byte) (int, error) {
	time.Sleep(w.delay)
	return w.Buffer.Write(b)
}

// TestOutputStoppedSlow: after Stop, a reader slower than the writes but
// still reading gets everything, the queue overrun many times, though each
// write takes a good part of the grace period.
func TestOutputStoppedSlow(t *testing.T) {
	w := &slowWriter{delay: 2 * time.Millisecond}
	o := NewOutput(w, 20*time.Millisecond)
	o.Stop() // as a signal does, before the flush of every open path
	var want bytes.Buffer
	for i := range 3 * outputQueue {
		line := []byte{byte('a' + i%26), '\n'}
		want.Write(line)
		if _, err := o.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if dropped, err := o.Close(); dropped != 0 || err != nil || !bytes.Equal(w.Bytes(), want.Bytes()) {
		t.Errorf("dropped %d, %v, wrote %d bytes of %d", dropped, err, w.Len(), want.Len())
	}
}

type epipeWriter struct{}

func (epipeWriter) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestOutputError: the writer's error comes back from a later Write, so a
// renderer stops when its reader went away.
func TestOutputError(t *testing.T) {
	o := NewOutput(epipeWriter{}, time.Second)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = o.Write([]byte("line\n"))
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Write: %v, want EPIPE", err)
	}
	if _, err := o.Close(); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Close: %v, want EPIPE", err)
	}
}
