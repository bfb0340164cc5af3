// Package testnats runs an in-process nats-server for tests. Only test
// files import it, so builds of the plugin never carry a NATS server.
package testnats

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options are a JetStream server's on loopback, with its store in a
// temporary directory of t: the base for Start.
func Options(t testing.TB) *server.Options {
	return &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
}

// Start runs a server with opts until the test ends (or its own Shutdown).
func Start(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// URL is s's client URL.
func URL(s *server.Server) string {
	return "nats://127.0.0.1:" + strconv.Itoa(Port(s))
}

// Port is s's client port.
func Port(s *server.Server) int { return s.Addr().(*net.TCPAddr).Port }
