package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddy-knocker/knocker/internal/testports"
)

// decodeJournal decodes one datagram of journald's native protocol.
func decodeJournal(b []byte) (map[string]string, error) {
	m := map[string]string{}
	for len(b) > 0 {
		i := bytes.IndexAny(b, "=\n")
		if i <= 0 {
			return nil, fmt.Errorf("no field name in %q", b)
		}
		key := string(b[:i])
		if b[i] == '=' {
			end := bytes.IndexByte(b[i+1:], '\n')
			if end < 0 {
				return nil, fmt.Errorf("%s: no newline", key)
			}
			m[key] = string(b[i+1 : i+1+end])
			b = b[i+1+end+1:]
			continue
		}
		b = b[i+1:]
		if len(b) < 8 {
			return nil, fmt.Errorf("%s: no length", key)
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if uint64(len(b)) < n+1 || b[n] != '\n' {
			return nil, fmt.Errorf("%s: %d bytes announced, %d left", key, n, len(b))
		}
		m[key] = string(b[:n])
		b = b[n+1:]
	}
	return m, nil
}

// journalReceiver is a unixgram socket that receives what the CLI sends
// to the journal. It is not journald: it lets these tests run without
// root; TestRunEventsRealJournald checks the same against the real one.
type journalReceiver struct {
	mu      sync.Mutex
	entries []map[string]string
	err     error
}

func listenJournal(t *testing.T) *journalReceiver {
	t.Helper()
	dir, err := os.MkdirTemp("", "kj") // short: a socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "socket")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	r := &journalReceiver{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			e, err := decodeJournal(buf[:n])
			r.mu.Lock()
			r.entries = append(r.entries, e)
			r.err = errors.Join(r.err, err)
			r.mu.Unlock()
		}
	}()
	old := journalSocket
	journalSocket = path
	t.Cleanup(func() {
		journalSocket = old
		conn.Close()
		<-done
		os.RemoveAll(dir)
	})
	return r
}

// got returns the entries so far, each checked against the contract.
func (r *journalReceiver) got(t *testing.T) []map[string]string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, e := range r.entries {
		checkContract(t, e)
	}
	return append([]map[string]string(nil), r.entries...)
}

func (r *journalReceiver) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.entries {
		if e["KNOCKER_EVENT"] == name {
			n++
		}
	}
	return n
}

func TestJournalEncoding(t *testing.T) {
	e := map[string]string{"MESSAGE": "two\nlines", "PRIORITY": "6", "KNOCKER_X": strings.Repeat("x", maxJournalValue+10)}
	b := encodeJournal(e)
	if !bytes.HasPrefix(b, []byte("KNOCKER_X=xxx")) {
		t.Fatalf("keys are not sorted, or a plain value is not KEY=value: %q", b[:20])
	}
	binarySafe := append([]byte("MESSAGE\n"), 9, 0, 0, 0, 0, 0, 0, 0)
	if !bytes.Contains(b, append(binarySafe, "two\nlines\n"...)) {
		t.Fatalf("a value with a newline is not in the length form: %q", b)
	}
	got, err := decodeJournal(b)
	if err != nil {
		t.Fatal(err)
	}
	if got["MESSAGE"] != "two\nlines" || got["PRIORITY"] != "6" || len(got["KNOCKER_X"]) != maxJournalValue || !strings.HasSuffix(got["KNOCKER_X"], "...") {
		t.Fatalf("decoded %q", got)
	}
	// A long value is cut between characters, never inside one.
	got, err = decodeJournal(encodeJournal(map[string]string{"MESSAGE": strings.Repeat("ü", maxJournalValue)}))
	if err != nil || !utf8.ValidString(got["MESSAGE"]) || len(got["MESSAGE"]) > maxJournalValue {
		t.Fatalf("a cut multi-byte value: valid UTF-8 %v, %d bytes, %v", utf8.ValidString(got["MESSAGE"]), len(got["MESSAGE"]), err)
	}
}

// Where the journal's socket answers (as under systemd), run writes its
// events there by default, and nothing on standard output.
func TestRunEventsToJournalSocket(t *testing.T) {
	j := listenJournal(t)
	srv := sharedCaddy(t)
	p := startProxy(t, srv.proxied, "198.51.100.43", "2001:db8::43")
	var stdout, stderr lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &stdout, &stderr)
	stop := runInBackground(t, c, "run", "--server", p.url(), "--family", "4", "--ttl", "1h", "--check-interval", "0")
	waitFor(t, "the next knock to be scheduled", func() bool { return j.count("NextKnockUpdated") == 1 })
	st := serverStatus(t, p.via4())
	if code := stop(); code != exitOK {
		t.Fatalf("exit code %d\n%s", code, stderr.String())
	}
	// The datagrams are all sent; the receiver may still be reading them.
	waitFor(t, "the stopped state", func() bool { return j.count("ServiceState") == 3 })
	if stdout.String() != "" {
		t.Fatalf("standard output with the journal:\n%s", stdout.String())
	}
	checkRunSession(t, j.got(t), "198.51.100.43", st)
}

// knocker knock reports to the journal as knocker-cli's knock command:
// source "cli", and on failure an Error with context "cli".
func TestKnockEventsToJournal(t *testing.T) {
	j := listenJournal(t)
	srv := sharedCaddy(t)
	r := runCLI(t, map[string]string{"KNOCKER_KEY": adminKey}, "knock", "--server", fmt.Sprintf("http://127.0.0.1:%d", srv.direct), "--ip", "203.0.113.44", "--ttl", "10m")
	wantCode(t, r, exitOK)
	closed := fmt.Sprintf("http://127.0.0.1:%d", testports.FreePort(t))
	r = runCLI(t, map[string]string{"KNOCKER_KEY": userKey}, "knock", "--server", closed)
	wantCode(t, r, exitUnreachable)
	waitFor(t, "four entries", func() bool { return len(j.got(t)) == 4 })
	evs := j.got(t)
	if got, want := sequence(evs), []string{"KnockTriggered:success", "WhitelistApplied", "KnockTriggered:failure", "Error:knock_failed"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %q, want %q", got, want)
	}
	wantFields(t, evs[0], map[string]string{"KNOCKER_TRIGGER_SOURCE": "cli", "KNOCKER_WHITELIST_IP": "203.0.113.44", "MESSAGE": "Manual knock succeeded"})
	wantFields(t, evs[1], map[string]string{"KNOCKER_SOURCE": "cli", "KNOCKER_WHITELIST_IP": "203.0.113.44", "KNOCKER_TTL_SEC": "600"})
	wantFields(t, evs[2], map[string]string{"KNOCKER_TRIGGER_SOURCE": "cli", "KNOCKER_WHITELIST_IP": ""})
	wantFields(t, evs[3], map[string]string{"KNOCKER_CONTEXT": "cli"})
	wantContains(t, "failure", evs[2]["MESSAGE"], "Manual knock failed: cannot reach "+closed, "connection refused")
	if evs[3]["MESSAGE"] != evs[2]["MESSAGE"] {
		t.Fatalf("the Error's message %q differs from the KnockTriggered's %q", evs[3]["MESSAGE"], evs[2]["MESSAGE"])
	}
}

// The real systemd-journald, started in a private mount namespace (a tmpfs
// on /run, its journal files in a temporary directory), reached through
// /proc/PID/root: run finds its socket, and journalctl reads the session
// back with every field as the contract says. Needs root and Debian's
// systemd package (systemd-journald, journalctl) and unshare; it skips
// without them, unless KNOCKER_REQUIRE_JOURNALD=1.
func TestRunEventsRealJournald(t *testing.T) {
	journald, journalctl, unshare := "/lib/systemd/systemd-journald", "", ""
	need := func(why string) {
		if os.Getenv("KNOCKER_REQUIRE_JOURNALD") == "1" {
			t.Fatalf("%s, but KNOCKER_REQUIRE_JOURNALD=1", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		need("not root: a private mount namespace for journald needs root")
	}
	if _, err := os.Stat(journald); err != nil {
		need("no " + journald + " (Debian's systemd package)")
	}
	var err error
	if journalctl, err = exec.LookPath("journalctl"); err != nil {
		need("no journalctl (Debian's systemd package)")
	}
	if unshare, err = exec.LookPath("unshare"); err != nil {
		need("no unshare (util-linux)")
	}
	dir := t.TempDir()
	script := `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
mount --bind "$1" /run/log/journal
# Never the machine's persistent journal.
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
exec "$2"`
	var jout lockedBuffer
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", dir, journald)
	cmd.Stdout, cmd.Stderr = &jout, &jout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("journald:\n%s", jout.String())
		}
	})
	// unshare and sh exec: the PID is journald's, and /proc/PID/root is
	// its view of the file system.
	socket := fmt.Sprintf("/proc/%d/root/run/systemd/journal/socket", cmd.Process.Pid)
	waitFor(t, "journald's socket", func() bool {
		c, err := net.Dial("unixgram", socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	old := journalSocket
	journalSocket = socket
	t.Cleanup(func() { journalSocket = old })

	srv := sharedCaddy(t)
	p := startProxy(t, srv.proxied, "198.51.100.45", "2001:db8::45")
	var stdout, stderr lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &stdout, &stderr)
	stop := runInBackground(t, c, "run", "--server", p.url(), "--family", "4", "--ttl", "1h", "--check-interval", "0")

	read := func() []map[string]string {
		out, err := exec.CommandContext(context.Background(), journalctl, "--directory", dir, "-o", "json", "SYSLOG_IDENTIFIER=knocker").Output()
		if err != nil {
			t.Fatalf("journalctl: %v", err)
		}
		var evs []map[string]string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line == "" {
				continue
			}
			var raw map[string]any
			if err := json.Unmarshal([]byte(line), &raw); err != nil {
				t.Fatalf("journalctl output: %v\n%s", err, line)
			}
			e := map[string]string{}
			for k, v := range raw {
				// The contract's fields, not journald's own (_PID, __CURSOR...).
				if strings.HasPrefix(k, "KNOCKER_") || k == "MESSAGE" || k == "PRIORITY" || k == "SYSLOG_IDENTIFIER" {
					s, ok := v.(string)
					if !ok {
						t.Fatalf("%s is stored as %T, not a string: %s", k, v, line)
					}
					e[k] = s
				}
			}
			checkContract(t, e)
			evs = append(evs, e)
		}
		return evs
	}
	waitFor(t, "the next knock in the journal", func() bool { return hasEvent(read(), "NextKnockUpdated") })
	st := serverStatus(t, p.via4())
	if code := stop(); code != exitOK {
		t.Fatalf("exit code %d\n%s", code, stderr.String())
	}
	deadline := time.Now().Add(testTimeout)
	evs := read()
	for !hasEvent(evs, "stopped") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		evs = read()
	}
	checkRunSession(t, evs, "198.51.100.45", st)
}
