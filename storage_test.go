package knocker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// mountTmpfs mounts a small tmpfs at dir (root only) and unmounts it when
// the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs for a full disk; scripts/test.sh runs as root in CI")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// The store may still hold files open until the next config closes it.
		stopKnocker(t)
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// stopKnocker loads a config without knocker, which closes the store.
func stopKnocker(t *testing.T) {
	global := testutil.Preamble{Admin: testcaddy.AdminAddress(t), HTTPPort: httpPort, DefaultBind: "127.0.0.1"}
	testcaddy.Load(t, global.String()+fmt.Sprintf(`http://:%d {
	respond "no knocker"
}`, httpPort), "caddyfile")
}

// fill writes to dir until the file system is full, and returns the undo.
func fill(t *testing.T, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	f.Close()
	return func() { os.Remove(path) }
}

// TestStorageFull: with the whitelist's file system full, a knock gets a
// JSON 500 and is neither admitted nor persisted, the gate keeps serving
// earlier grants from memory, and knocks work again once space returns.
func TestStorageFull(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	mountTmpfs(t, state, "256k")
	h := startCaddyIn(t, dir, "", defaultSite)
	const before, during, after = "203.0.113.150", "203.0.113.151", "203.0.113.152"
	expectStatus(t, h.knock(before, adminSecret, ""), 200, "knock before the disk fills")

	free := fill(t, state)
	// The journal's last page may still take some records: knock until the
	// file system refuses one. Every answer is checked against the disk below.
	var acked, refused []string
	for i := 0; len(refused) < 3 && i < 2000; i++ {
		ip := fmt.Sprintf("10.99.%d.%d", i/250, i%250+1)
		r := h.knock(ip, adminSecret, "")
		switch r.status {
		case 200:
			acked = append(acked, ip)
		case 500:
			expectError(t, r, 500, "Internal server error: whitelist persistence or firewall configuration failed.")
			refused = append(refused, ip)
		default:
			t.Fatalf("knock with a full disk: %d %s", r.status, r.body)
		}
	}
	if len(refused) == 0 {
		t.Fatal("no knock was refused with the disk full")
	}
	for _, ip := range refused {
		if h.gate(ip) != 401 {
			t.Fatalf("%s was answered 500 but is admitted", ip)
		}
	}
	if h.gate(before) != 200 || len(acked) > 0 && h.gate(acked[len(acked)-1]) != 200 {
		t.Fatal("the gate stopped serving acknowledged grants while the disk is full")
	}
	if r := h.do(request{path: "/health"}); r.status != 200 {
		t.Fatalf("/health with a full disk: %d", r.status)
	}
	// Readiness tells the truth: knocks would fail.
	if r := h.do(request{path: "/ready"}); r.status != 503 || !strings.Contains(r.body, "Whitelist storage not accessible") {
		t.Fatalf("/ready with a full disk: %d %s, want 503", r.status, r.body)
	}

	free()
	expectStatus(t, h.knock(after, adminSecret, ""), 200, "knock once space returned")
	// The first write that succeeds again makes /ready look again at once.
	if r := h.do(request{path: "/ready"}); r.status != 200 {
		t.Fatalf("/ready once space returned: %d %s", r.status, r.body)
	}
	if h.gate(after) != 200 || h.gate(before) != 200 {
		t.Fatal("grants not admitted after space returned")
	}

	// What is on disk after a clean close: exactly what was acknowledged.
	stopKnocker(t)
	var snapshot map[string]int64
	if err := json.Unmarshal([]byte(h.readFile("state/whitelist.json")), &snapshot); err != nil {
		t.Fatalf("snapshot after the fault: %v", err)
	}
	for _, ip := range append([]string{before, after}, acked...) {
		if snapshot[ip] == 0 {
			t.Fatalf("acknowledged grant %s is missing from the snapshot", ip)
		}
	}
	for _, ip := range refused {
		if snapshot[ip] != 0 {
			t.Fatalf("refused grant %s was persisted", ip)
		}
	}
	t.Logf("figure: disk full: %d knocks acknowledged into the journal's last page, then %d refused with a JSON 500 and not admitted; earlier grants kept serving; knocks recovered once space returned; the snapshot holds all %d acknowledged and none of the refused",
		len(acked), len(refused), len(acked)+2)
}

// TestCorruptWhitelistStopsStart: a corrupt or truncated whitelist file is
// refused with an error naming it, and left as it was.
func TestCorruptWhitelistStopsStart(t *testing.T) {
	setKeyEnv(t)
	for name, content := range map[string]string{
		"truncated": "{\n  \"203.0.113.7\": 17953",
		"not json":  "this is not json",
		"bad entry": `{"not-an-address": 1795319276}`,
		"bad value": `{"203.0.113.7": "tomorrow"}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state", "whitelist.json")
			os.MkdirAll(filepath.Dir(path), 0o700)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			testcaddy.AssertLoadError(t, config(t, dir, "", defaultSite), "caddyfile", path)
			if got, _ := os.ReadFile(path); string(got) != content {
				t.Fatalf("the corrupt file was changed to %q", got)
			}
			if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) > 2 { // the file and its lock
				names := []string{}
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Fatalf("start-up wrote beside the corrupt file: %s", strings.Join(names, ", "))
			}
		})
	}
}
