// Package testports picks TCP ports for tests, so that two test runs on one
// machine never meet.
//
// Caddy binds every TCP listener with SO_REUSEPORT on Linux, so a second
// process binding the same fixed port does not fail: the kernel silently
// shares the port and spreads connections over both. With fixed ports, two
// test runs at once sent one run's knocks, and even its config loads
// (caddytest reuses any Caddy answering its admin port), to the other run's
// Caddy. So every port is picked here, under three rules:
//
//   - it is free on 127.0.0.1 and ::1 when picked (a port in use, with or
//     without SO_REUSEPORT, is never picked);
//   - it is reserved for this process's life by a lock file shared by all
//     test processes on the machine, so no other test run picks it before
//     this one binds it, however late that is;
//   - it lies outside the kernel's ephemeral range, so no outgoing
//     connection of any process takes it as its source port meanwhile (a
//     port picked with bind(":0") can be, and a load test makes thousands
//     of connections: "bind: address already in use" minutes later).
//
// Only tests import this package. It uses the standard library alone, so
// the CLI's tests may use it too.
package testports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreePort returns a TCP port reserved for this process, or fails the test.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := Port()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// Port is FreePort for callers without a test, such as TestMain.
func Port() (int, error) {
	ports, err := Ports(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

var picked struct {
	mu    sync.Mutex
	ports map[int]bool // reserved by this process
	locks []*os.File   // held until the process exits
}

// Ports returns n distinct TCP ports reserved for this process, each free
// on both 127.0.0.1 and ::1 when picked.
func Ports(n int) ([]int, error) {
	picked.mu.Lock()
	defer picked.mu.Unlock()
	if picked.ports == nil {
		picked.ports = map[int]bool{}
	}
	low, high := pickRange()
	dir := lockDir()
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, err
	}
	_ = os.Chmod(dir, 0o777|os.ModeSticky) // shared by every user's test runs
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000*n {
			return nil, fmt.Errorf("no %d TCP ports free on both 127.0.0.1 and ::1 in %d-%d", n, low, high)
		}
		port := low + rand.IntN(high-low+1)
		if picked.ports[port] {
			continue
		}
		lock, ok := reserve(filepath.Join(dir, strconv.Itoa(port)+".lock"))
		if !ok {
			continue // another test process holds it
		}
		if !bindable(port) {
			lock.Close()
			continue
		}
		picked.ports[port] = true
		picked.locks = append(picked.locks, lock)
		ports = append(ports, port)
	}
	return ports, nil
}

// bindable reports whether port is free on both 127.0.0.1 and ::1.
func bindable(port int) bool {
	l4, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	defer l4.Close()
	l6, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port))
	if err != nil {
		return false
	}
	l6.Close()
	return true
}

// pickRange is where ports are picked: below the ephemeral range that
// /proc/sys/net/ipv4/ip_local_port_range gives (Linux; 32768-60999 by
// default), or above it if too little lies below (a host tuned to
// 1024-65535 leaves nothing outside it: then the whole range, and a port
// a connection holds is simply skipped as in use).
func pickRange() (low, high int) {
	ephLow, ephHigh := 32768, 60999 // also where the other systems start theirs (IANA: 49152)
	if raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(raw)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && l <= h {
				ephLow, ephHigh = l, h
			}
		}
	}
	switch {
	case ephLow-1-1024 >= 1000:
		return max(1024, min(20000, ephLow-1000)), ephLow - 1
	case 65535-ephHigh >= 1000:
		return ephHigh + 1, 65535
	}
	return 1024, 65535
}

// lockDir is where port reservations live: /tmp on Unix whatever TMPDIR
// says, so that test runs with different TMPDIRs still see each other's.
func lockDir() string {
	if fi, err := os.Stat("/tmp"); err == nil && fi.IsDir() {
		return filepath.Join("/tmp", "knocker-test-ports")
	}
	return filepath.Join(os.TempDir(), "knocker-test-ports")
}

// AwaitOldListenersClosed waits until no address has two listening sockets
// on any of ports. Caddy binds each config's listeners with SO_REUSEPORT,
// and after a config load (or a refused one) returns, the previous config's
// servers may still be closing theirs; a connection the kernel queues on a
// socket that is then closed is reset. Waiting for that socket to be gone
// lets a test's next request meet only the running config. (Linux: read
// from /proc/net/tcp*; elsewhere it returns at once.)
func AwaitOldListenersClosed(tb testing.TB, ports ...int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		dup, ok := duplicateListener(ports)
		if !ok || dup == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("two sockets still listen on %s 30 s after the config load", dup)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// duplicateListener returns a local address (hex, as /proc shows it) on
// which more than one socket listens on one of ports; ok is false where
// /proc/net/tcp cannot be read.
func duplicateListener(ports []int) (dup string, ok bool) {
	want := map[string]bool{}
	for _, p := range ports {
		want[fmt.Sprintf("%04X", p)] = true
	}
	seen := map[string]int{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", false
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, port, found := strings.Cut(f[1], ":")
			if found && want[port] {
				if seen[f[1]]++; seen[f[1]] > 1 {
					return f[1], true
				}
			}
		}
	}
	return "", true
}
