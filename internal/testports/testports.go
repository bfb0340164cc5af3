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
//   - it lies below the kernel's ephemeral range, so no outgoing
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
	dir := filepath.Join(os.TempDir(), "knocker-test-ports")
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
// /proc/sys/net/ipv4/ip_local_port_range gives (Linux), else below the
// IANA dynamic range that the other systems use.
func pickRange() (low, high int) {
	ephemeral := 32768
	if raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(raw)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				ephemeral = v
			}
		}
	}
	low, high = 20000, ephemeral-1
	if high-low < 1000 { // an unusual ephemeral range: take what lies below it
		low = max(1024, high-8000)
	}
	return low, high
}
