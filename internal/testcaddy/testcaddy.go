// Package testcaddy runs caddytest's in-process Caddy on this process's own
// admin port (see internal/testports for why no port may be fixed).
//
// Only tests import this package.
package testcaddy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-knocker/knocker/internal/testports"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// Tests never write the machine's autosave file (the user's
// ~/.config/caddy/autosave.json): caddytest starts Caddy with a config of
// its own that would be persisted there, and two test runs would share it.
func init() { caddy.ConfigAutosavePath = os.DevNull }

var admin struct {
	once sync.Once
	port int
	err  error
}

// AdminPort is the admin port of this process's in-process Caddy (the one
// caddytest starts), chosen on first use and kept for the process's life.
func AdminPort(tb testing.TB) int {
	tb.Helper()
	admin.once.Do(func() { admin.port, admin.err = testports.Port() })
	if admin.err != nil {
		tb.Fatal(admin.err)
	}
	return admin.port
}

// AdminAddress is localhost:AdminPort, the admin address every config
// loaded through Tester must name.
func AdminAddress(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("localhost:%d", AdminPort(tb))
}

// Tester returns a caddytest tester for this process's in-process Caddy.
// Every config loaded through it must name the same admin address,
// localhost:AdminPort, or Caddy moves its admin endpoint away from the
// tester.
func Tester(tb testing.TB) *caddytest.Tester {
	tb.Helper()
	return caddytest.NewTester(tb).WithDefaultOverrides(caddytest.Config{AdminPort: AdminPort(tb)})
}

var watched struct {
	mu    sync.Mutex
	ports []int
}

// Watch adds ports that this process's configs listen on to those Load and
// AssertLoadError wait for (see testports.AwaitOldListenersClosed); the
// admin port is always watched.
func Watch(ports ...int) {
	watched.mu.Lock()
	defer watched.mu.Unlock()
	watched.ports = append(watched.ports, ports...)
}

func settle(tb testing.TB) {
	tb.Helper()
	watched.mu.Lock()
	ports := append([]int{AdminPort(tb)}, watched.ports...)
	watched.mu.Unlock()
	testports.AwaitOldListenersClosed(tb, ports...)
}

// Load loads rawConfig (of the given adapter type) into this process's
// Caddy, failing the test if Caddy refuses it, and returns once the
// previous config's listeners are closed.
func Load(tb testing.TB, rawConfig, configType string) {
	tb.Helper()
	Tester(tb).InitServer(rawConfig, configType)
	settle(tb)
}

// AssertLoadError loads rawConfig (of the given adapter type) into this
// process's Caddy and fails the test unless Caddy refuses it with an error
// containing want. It is caddytest.AssertLoadError on this process's admin
// port; the running config stays as it was.
func AssertLoadError(tb testing.TB, rawConfig, configType, want string) {
	tb.Helper()
	port := AdminPort(tb)
	if !adminAnswers(port) { // start the in-process Caddy first
		Tester(tb).InitServer(testutil.Preamble{Admin: AdminAddress(tb)}.String(), "caddyfile")
	}
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://localhost:%d/load", port), strings.NewReader(rawConfig))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/"+configType)
	if configType == "json" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := testutil.Do(&http.Client{Timeout: time.Minute}, req)
	if err != nil {
		tb.Fatalf("loading the config: %v", err)
	}
	settle(tb) // a refused config may have bound sockets before it failed
	if resp.Status == http.StatusOK {
		tb.Fatalf("Caddy loaded a config it should refuse with %q", want)
	}
	msg := resp.Body
	var answer struct{ Error string }
	if json.Unmarshal([]byte(resp.Body), &answer) == nil && answer.Error != "" {
		msg = answer.Error // the admin API's JSON error, unescaped
	}
	if !strings.Contains(msg, want) {
		tb.Errorf("expected error %q but got %d %s", want, resp.Status, msg)
	}
}

func adminAnswers(port int) bool {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://localhost:%d/config/", port))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}
