// Package testports picks TCP ports for tests, so that two test runs on one
// machine never meet.
//
// Caddy binds every TCP listener with SO_REUSEPORT on Linux, so a second
// process binding the same fixed port does not fail: the kernel silently
// shares the port and spreads connections over both. With fixed ports, two
// test runs at once sent one run's knocks, and even its config loads
// (caddytest reuses any Caddy answering its admin port), to the other run's
// Caddy. A port picked here is free when picked, and a port in use (with or
// without SO_REUSEPORT) is never picked, so no running server is joined.
//
// Only tests import this package. It uses the standard library alone, so
// the CLI's tests may use it too.
package testports

import (
	"fmt"
	"net"
	"testing"
)

// FreePort returns a TCP port that is free on both 127.0.0.1 and ::1 (test
// configs bind both), or fails the test.
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

// Ports returns n distinct TCP ports, each free on both 127.0.0.1 and ::1.
func Ports(n int) ([]int, error) {
	var held []net.Listener // until all are picked, so none repeats
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100*n {
			return nil, fmt.Errorf("no %d TCP ports free on both 127.0.0.1 and ::1", n)
		}
		l4, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l4)
		port := l4.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port))
		if err != nil {
			continue // taken on ::1: try another
		}
		held = append(held, l6)
		ports = append(ports, port)
	}
	return ports, nil
}
