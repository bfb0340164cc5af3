//go:build unix

package main

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A real SIGTERM stops run with exit code 0 (the handler is installed
// before the first knock, so the signal cannot kill the test binary).
func TestRunStopsOnSIGTERM(t *testing.T) {
	fake := &fakeKnock{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var out lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &out, &out)
	c.signals = []os.Signal{syscall.SIGTERM}
	done := make(chan int, 1)
	go func() {
		done <- c.main(context.Background(), []string{"run", "--server", srv.URL, "--check-interval", "100ms"})
	}()
	// The fake server never lists the address: run knocks again at once.
	waitFor(t, "a knock for a lost grant", func() bool {
		return strings.Contains(out.String(), "the server does not list 127.0.0.1 as whitelisted; knocking now")
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
	case <-time.After(testTimeout):
		t.Fatal("run did not stop on SIGTERM")
	}
	log := out.String()
	assertNoKey(t, log)
	wantContains(t, "log", log, "stopped: terminated")
}
