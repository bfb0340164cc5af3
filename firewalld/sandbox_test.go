package firewalld

// Test helpers that run a real firewalld: scripts/firewalld-sandbox.sh
// starts one in its own network namespace on a private D-Bus bus, with a
// client namespace joined by a veth pair (server 203.0.113.1, clients
// 203.0.113.5 and .6). Nothing touches the host's firewall or system bus.
//
// Each test binary starts its own sandbox (unique FWSB_DIR and FWSB_NETNS),
// so packages testing in parallel do not meet, and stops it at exit. If
// FWSB_DIR or FWSB_NETNS is set (as after eval "$(firewalld-sandbox.sh
// start)"), that sandbox is used instead, started if needed and left
// running, which is handy when iterating. The bus address always comes
// from the script, never from the environment, so a real system bus is
// never touched.
//
// Without root or firewalld the sandbox tests skip, or fail when
// KNOCKER_REQUIRE_FIREWALLD=1 (CI).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	serverAddr = "203.0.113.1"
	clientA    = "203.0.113.5" // primary client address
	clientB    = "203.0.113.6"

	roleEnv  = "KNOCKER_FWSB_ROLE" // set when the test binary is a helper process
	portsEnv = "KNOCKER_FWSB_PORTS"
	dialEnv  = "KNOCKER_FWSB_DIAL"
	fromEnv  = "KNOCKER_FWSB_FROM"
)

type sandboxEnv struct {
	script   string // scripts/firewalld-sandbox.sh
	env      []string
	netns    string // firewall namespace
	clientNS string
	owned    bool // started by this binary: stop at exit
}

var (
	sandbox     *sandboxEnv
	sandboxSkip string // why sandbox tests cannot run
)

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "listen":
		os.Exit(runListener())
	case "dial":
		os.Exit(runDialer())
	}
	sandbox, sandboxSkip = startSandbox()
	code := m.Run()
	if sandbox != nil && sandbox.owned {
		if out, err := sandbox.run("stop"); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the firewalld sandbox: %v\n%s", err, out)
		}
	}
	os.Exit(code)
}

// startSandbox starts (or joins) the sandbox; it returns a reason to skip
// if it cannot.
func startSandbox() (*sandboxEnv, string) {
	if os.Geteuid() != 0 {
		return nil, "firewalld sandbox tests need root (network namespaces, firewalld)"
	}
	for _, cmd := range []string{"firewalld", "firewall-cmd", "nft", "dbus-daemon", "ip"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return nil, fmt.Sprintf("%s is not installed (scripts/install-firewalld.sh installs firewalld 2.x; apt-get install firewalld nftables gives 1.3.3)", cmd)
		}
	}
	script, err := filepath.Abs(filepath.Join("..", "scripts", "firewalld-sandbox.sh"))
	if err != nil {
		return nil, err.Error()
	}
	sb := &sandboxEnv{script: script}
	if os.Getenv("FWSB_DIR") != "" || os.Getenv("FWSB_NETNS") != "" {
		sb.env = []string{"FWSB_CLIENT=1"}
	} else {
		id := strconv.Itoa(os.Getpid())
		sb.env = []string{"FWSB_CLIENT=1", "FWSB_DIR=/tmp/knocker-fwsb-" + id, "FWSB_NETNS=kfw" + id}
		sb.owned = true
	}
	out, err := sb.run("start")
	if err != nil {
		if sb.owned {
			sb.run("stop")
		}
		return nil, fmt.Sprintf("starting the firewalld sandbox failed: %v\n%s", err, out)
	}
	vars := map[string]string{}
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "export "), "=")
		if ok {
			vars[k] = strings.Trim(v, "'")
		}
	}
	sb.netns, sb.clientNS = vars["FWSB_NETNS"], vars["FWSB_CLIENT_NETNS"]
	addr := vars["DBUS_SYSTEM_BUS_ADDRESS"]
	if addr == "" || sb.netns == "" || sb.clientNS == "" {
		return nil, "the sandbox script printed no bus address or namespaces:\n" + out
	}
	// The Backend connects with dbus.ConnectSystemBus, which reads this.
	os.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	return sb, ""
}

// run runs the sandbox script; stdout and stderr are returned together
// on error, stdout alone on success.
func (sb *sandboxEnv) run(args ...string) (string, error) {
	cmd := exec.Command(sb.script, args...)
	cmd.Env = append(os.Environ(), sb.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// needSandbox skips (or, under KNOCKER_REQUIRE_FIREWALLD=1, fails) the
// test when no sandbox runs.
func needSandbox(t testing.TB) *sandboxEnv {
	t.Helper()
	if sandbox == nil {
		if os.Getenv("KNOCKER_REQUIRE_FIREWALLD") == "1" {
			t.Fatalf("KNOCKER_REQUIRE_FIREWALLD=1 but: %s", sandboxSkip)
		}
		t.Skip(sandboxSkip)
	}
	return sandbox
}

// fwcmd runs firewall-cmd against the sandbox and returns its trimmed
// output.
func fwcmd(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("firewall-cmd", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("firewall-cmd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// testClient returns a D-Bus client for assertions and set-up (much
// faster than firewall-cmd, which takes ~0.4 s a call on a small VM); it
// redials after a sandbox restart.
func testClient(t testing.TB) *client {
	t.Helper()
	needSandbox(t)
	testBus.Lock()
	defer testBus.Unlock()
	if testBus.c == nil || !testBus.c.alive() {
		conn, err := dialSystemBus()
		if err != nil {
			t.Fatal(err)
		}
		testBus.c = &client{conn: conn}
	}
	return testBus.c
}

var testBus struct {
	sync.Mutex
	c *client
}

// richRules lists a zone's rich rules, sorted; permanent or runtime.
func richRules(t testing.TB, zone string, permanent bool) []string {
	t.Helper()
	c, ctx := testClient(t), context.Background()
	var rules []string
	var err error
	if permanent {
		var path dbus.ObjectPath
		if path, err = c.permanentZone(ctx, zone); err == nil {
			rules, err = c.permanentRules(ctx, path)
		}
	} else {
		rules, err = c.runtimeRules(ctx, zone)
	}
	if err != nil {
		t.Fatalf("listing rules of %s: %v", zone, err)
	}
	slices.Sort(rules)
	return rules
}

// resetZone removes every rich rule from zone, permanent and runtime, so
// that each test starts clean (Stop leaves rules by design), and what the
// Backends running on the sandbox's bus remember placing there.
func resetZone(t testing.TB, zone string) {
	t.Helper()
	sharedByBus.Range(func(_, v any) bool {
		sh := v.(*shared)
		sh.mu.Lock()
		sh.forgetZone(zone)
		sh.mu.Unlock()
		return true
	})
	c, ctx := testClient(t), context.Background()
	path, err := c.permanentZone(ctx, zone)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range richRules(t, zone, true) {
		if err := c.removePermanentRule(ctx, path, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range richRules(t, zone, false) {
		if err := c.removeRuntimeRule(ctx, zone, r); err != nil {
			t.Fatal(err)
		}
	}
}

// runningApps is the number of firewalld Backends running on the sandbox's bus.
func runningApps() int {
	bus, _ := systemBusAddress()
	n, _ := sharedByBus.References(bus)
	return n
}

// waitFor polls cond until it holds or timeout passes; then it fails with
// cond's last explanation.
func waitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, why)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Packet helpers: the test binary re-executed inside a namespace.

// startListener runs TCP listeners on ports inside the firewall namespace;
// each accepted connection gets "ok\n". They stop with the test.
func startListener(t testing.TB, ports ...int) {
	t.Helper()
	sb := needSandbox(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	list := make([]string, len(ports))
	for i, p := range ports {
		list[i] = strconv.Itoa(p)
	}
	cmd := exec.Command("ip", "netns", "exec", sb.netns, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=listen", portsEnv+"="+strings.Join(list, ","))
	stdin, err := cmd.StdinPipe() // the listener exits when this closes
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill() // our own child, by PID
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("listener did not start: %q %v", line, err)
	}
}

func runListener() int {
	for _, p := range strings.Split(os.Getenv(portsEnv), ",") {
		ln, err := net.Listen("tcp", net.JoinHostPort("", p))
		if err != nil {
			fmt.Fprintln(os.Stderr, "listener:", err)
			return 1
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("ok\n"))
				c.Close()
			}
		}()
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // until the test closes stdin
	return 0
}

// canConnect reports whether a TCP connection from the client namespace,
// source address from, to serverAddr:port gets through.
func canConnect(t testing.TB, from string, port int) bool {
	t.Helper()
	sb := needSandbox(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", sb.clientNS, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=dial",
		dialEnv+"="+net.JoinHostPort(serverAddr, strconv.Itoa(port)), fromEnv+"="+from)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return true
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return false
	}
	t.Fatalf("dial helper: %v\n%s", err, out)
	return false
}

// runDialer exits 0 if it connects and reads "ok", 1 if not.
func runDialer() int {
	d := net.Dialer{
		Timeout:   700 * time.Millisecond, // a drop shows as a timeout
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(os.Getenv(fromEnv))},
	}
	c, err := d.Dial("tcp", os.Getenv(dialEnv))
	if err != nil {
		return 1
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ok\n" {
		return 1
	}
	return 0
}

// expectReach polls until a connection from `from` to port succeeds (want)
// or fails (!want).
func expectReach(t testing.TB, from string, port int, want bool) {
	t.Helper()
	waitFor(t, 15*time.Second, func() (bool, string) {
		got := canConnect(t, from, port)
		return got == want, fmt.Sprintf("connection from %s to port %d: got through = %v, want %v", from, port, got, want)
	})
}
