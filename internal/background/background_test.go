package background

import (
	"errors"
	"testing"
	"time"
)

// The function runs at once, in the background, and once; its result is
// there for every call of the waiting function.
func TestGo(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	runs := 0
	wait := Go(func() int {
		runs++
		close(started)
		<-release
		return 42
	})
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("f did not start before anyone waited")
	}
	close(release)
	if a, b := wait(), wait(); a != 42 || b != 42 || runs != 1 {
		t.Fatalf("got %d and %d after %d runs, want 42 twice after one", a, b, runs)
	}
	boom := errors.New("boom")
	waitErr := GoErr(func() (string, error) { return "x", boom })
	if v, err := waitErr(); v != "x" || !errors.Is(err, boom) {
		t.Fatalf("GoErr: %q, %v", v, err)
	}
}
