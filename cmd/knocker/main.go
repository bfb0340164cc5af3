// Command knocker is the command-line client of Knocker for Caddy: it knocks
// (POST /knock) so that this device's address is whitelisted, shows how the
// server sees the device (GET /knock/status), and keeps the device
// whitelisted as a service (knocker run, installed as a per-user service by
// knocker install), over IPv4 and IPv6 separately when asked to.
//
// It does not depend on Caddy or on the plugin's package: the wire protocol
// is the contract. Beyond the standard library it uses a YAML parser
// (knocker-cli's config file) and kardianos/service (launchd, Windows).
package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
)

// Exit codes. They are part of the interface: scripts rely on them, and
// usageMain documents them.
const (
	exitOK          = 0 // success
	exitError       = 1 // any other error
	exitUsage       = 2 // bad flags or configuration, or a request the server rejected as invalid (400, 413, 415)
	exitBadKey      = 3 // 401: invalid or missing API key
	exitForbidden   = 4 // 403: the key may not whitelist other addresses
	exitRateLimited = 5 // 429: too many knocks; the message says when to retry
	exitUnreachable = 6 // DNS failure, connection refused, no route, timeout
	exitTLS         = 7 // certificate or TLS handshake problem
	exitServer      = 8 // 5xx, or an answer that is not the knock API's
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version from the build info is used.
var version = ""

func cliVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func userAgent() string { return "knocker-cli/" + cliVersion() }

// cli holds the process's environment. Every outside dependency is a field,
// so tests run commands in-process with their own environment, network
// dialer, systemd and signals.
type cli struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// dial opens the TCP connection for a request; network is "tcp4",
	// "tcp6" or "tcp" according to --family. nil: a net.Dialer.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// rootCAs, when set, replaces the system CA pool (tests only: there is
	// deliberately no flag to weaken or replace certificate checks).
	rootCAs *x509.CertPool

	// For install and uninstall.
	executable func() (string, error)
	lookPath   func(string) (string, error)
	runCommand func(ctx context.Context, name string, args ...string) ([]byte, error)
	goos       string

	// signals stop `knocker run` cleanly (exit 0).
	signals []os.Signal
	// plainLog: `knocker run` logs to a log that timestamps lines itself
	// (the Windows event log).
	plainLog bool
	// random returns a number in [0, 1) for backoff jitter.
	random func() float64
	// stderrIsJournal reports whether standard error is the journal stream
	// systemd connected to a service (JOURNAL_STREAM names its device and
	// inode; a shell in a desktop session inherits the variable but not
	// the stream).
	stderrIsJournal func() bool
}

func newCLI() *cli {
	return &cli{
		getenv:     os.Getenv,
		stdin:      os.Stdin,
		stdout:     os.Stdout,
		stderr:     os.Stderr,
		executable: os.Executable,
		lookPath:   exec.LookPath,
		runCommand: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, name, args...).CombinedOutput()
		},
		goos:            runtime.GOOS,
		signals:         []os.Signal{syscall.SIGINT, syscall.SIGTERM},
		random:          rand.Float64,
		stderrIsJournal: func() bool { return isJournalStream(os.Stderr, os.Getenv("JOURNAL_STREAM")) },
	}
}

func main() {
	c := newCLI()
	if code, ok := c.runAsService(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(c.main(context.Background(), os.Args[1:]))
}

const usageMain = `knocker: keep this device whitelisted by a Knocker server (Caddy plugin).

Usage:
  knocker <command> [flags]

Commands:
  knock      knock once: whitelist this device's address (or --ip) for a while
  status     the service's state, and this device's address(es) as the server
             sees them, with the time left (--service: the service only)
  run        stay in the foreground: knock, re-knock before expiry and when the
             address changes, back off on errors; stops cleanly on SIGTERM/SIGINT
  install    install and start a per-user service that runs "knocker run"
             (systemd user unit, launchd agent, Windows service)
  uninstall  stop and remove that service
  start      start the installed service
  stop       stop the installed service
  version    print the version

"knocker <command> --help" lists a command's flags.

Configuration, highest precedence first: flags; environment variables
(KNOCKER_SERVER, KNOCKER_KEY, KNOCKER_KEY_FILE, KNOCKER_TTL, KNOCKER_IP,
KNOCKER_FAMILY, KNOCKER_TIMEOUT, KNOCKER_CHECK_INTERVAL, KNOCKER_RETRY_MIN,
KNOCKER_RETRY_MAX, KNOCKER_CONFIG); the JSON config file
$XDG_CONFIG_HOME/knocker/config.json (usually ~/.config/knocker/config.json;
--config or KNOCKER_CONFIG selects another), for example:

  {
    "server": "knock.example.com",
    "key_file": "~/.config/knocker/key",
    "ttl": "8h",
    "family": "both",
    "check_interval": "1m"
  }

Fields: server, key, key_file (relative to the config file; ~/ is the home
directory), ttl, ip, family, timeout, check_interval, ip_check_url,
retry_min, retry_max. Durations are Go durations (90s, 1h30m), days (7d) or
plain seconds; a plain number in check_interval is minutes, as in knocker-cli.
knocker-cli's KNOCKER_API_URL, KNOCKER_API_KEY and ~/.knocker.yaml (api_url,
api_key, ttl, check_interval, ip_check_url) are read after these. A config
file holding "key" should be readable by you only (chmod 600).

The API key is never printed or logged. Without a scheme, the server URL is
https://; the system's CA certificates are used. HTTP(S)_PROXY is ignored: a
knock whitelists the address it comes from, so it goes out directly.

Exit codes:
  0  success
  1  other error
  2  usage or configuration error, or a request the server rejected as
     invalid (400, 413, 415)
  3  invalid or missing API key (401)
  4  forbidden (403): the key may not whitelist other addresses (--ip)
  5  rate limited (429); the message says when to retry
  6  server unreachable: DNS, connection refused, no route, timeout
  7  TLS error: certificate verification or handshake
  8  server error (5xx) or an answer that is not the knock API's
  9  status --service: the service is installed but not running
 10  status --service, start, stop: the service is not installed
With --family both, each family is reported and the exit code is the higher
of the two.
`

// main runs one command and returns its exit code.
func (c *cli) main(ctx context.Context, args []string) int {
	args = c.serviceArgs0(hoistFlags(args), false)
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usageMain)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "knock":
		return c.cmdKnock(ctx, rest)
	case "status":
		return c.cmdStatus(ctx, rest)
	case "run":
		return c.cmdRun(ctx, rest)
	case "install":
		return c.cmdInstall(ctx, rest)
	case "uninstall":
		return c.cmdUninstall(ctx, rest)
	case "start":
		return c.cmdStart(ctx, rest)
	case "stop":
		return c.cmdStop(ctx, rest)
	case "version", "--version", "-version":
		fmt.Fprintln(c.stdout, "knocker", cliVersion())
		return exitOK
	case "help", "-h", "--help", "-help":
		if len(rest) > 0 && commandNames[rest[0]] {
			return c.main(ctx, []string{rest[0], "--help"})
		}
		fmt.Fprint(c.stdout, usageMain)
		return exitOK
	default:
		fmt.Fprintf(c.stderr, "knocker: unknown command %q (commands: knock, status, run, install, uninstall, start, stop, version; see knocker --help)\n", cmd)
		return exitUsage
	}
}

var commandNames = map[string]bool{"knock": true, "status": true, "run": true, "install": true, "uninstall": true, "start": true, "stop": true}

// syncWriter serialises writes from the family goroutines of `run`.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// notifyContext returns ctx cancelled by c.signals.
func (c *cli) notifyContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if len(c.signals) == 0 {
		return context.WithCancel(ctx)
	}
	return signal.NotifyContext(ctx, c.signals...)
}

// sanitize makes text from the server safe to print on a terminal: no
// control characters, bounded length.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
