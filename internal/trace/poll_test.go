package trace

import (
	"testing"
	"time"
)

// TestPollSleep: the reader sleeps pollEvery after a poll that read
// events, twice as long after each poll in a row that found the ring
// empty, and never longer than pollIdle, however long the quiet.
func TestPollSleep(t *testing.T) {
	want := []time.Duration{10, 20, 40, 80, 100, 100, 100, 100, 100, 100}
	for quiet, w := range want {
		if got := pollSleep(quiet); got != w*time.Millisecond {
			t.Errorf("after %d quiet polls: sleep %v, want %v", quiet, got, w*time.Millisecond)
		}
	}
	for _, quiet := range []int{63, 64, 1 << 40} {
		if got := pollSleep(quiet); got != pollIdle {
			t.Errorf("after %d quiet polls: sleep %v, want %v", quiet, got, pollIdle)
		}
	}
}
