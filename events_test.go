package knocker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
	"github.com/caddy-knocker/knocker/store"
)

func init() { caddy.RegisterModule(recordEvents{}) }

// recordEvents is a test-only event handler: it records every event it
// handles into recorded, with its config's tag.
type recordEvents struct {
	Tag string `json:"tag,omitempty"`
}

// testOnlyModule exempts it from the documentation drift test.
func (recordEvents) testOnlyModule() {}

func (recordEvents) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "events.handlers.knocker_test_record",
		New: func() caddy.Module { return new(recordEvents) },
	}
}

type recordedEvent struct {
	tag, name, origin string
	data              map[string]any
}

var recorded struct {
	mu     sync.Mutex
	events []recordedEvent
	added  chan struct{} // capacity 1: something was recorded
}

func init() { recorded.added = make(chan struct{}, 1) }

func (h recordEvents) Handle(_ context.Context, e caddy.Event) error {
	origin := ""
	if e.Origin() != nil {
		origin = string(e.Origin().CaddyModule().ID)
	}
	recorded.mu.Lock()
	recorded.events = append(recorded.events, recordedEvent{h.Tag, e.Name(), origin, e.Data})
	recorded.mu.Unlock()
	select {
	case recorded.added <- struct{}{}:
	default:
	}
	return nil
}

// resetRecorded forgets what was recorded.
func resetRecorded() {
	recorded.mu.Lock()
	recorded.events = nil
	recorded.mu.Unlock()
}

// awaitRecorded waits (up to a minute: the machine may be loaded) until
// done holds for the events recorded so far, and returns them.
func awaitRecorded(t *testing.T, what string, done func([]recordedEvent) bool) []recordedEvent {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		recorded.mu.Lock()
		ok, n := done(recorded.events), len(recorded.events)
		evs := recorded.events[:n:n]
		recorded.mu.Unlock()
		if ok {
			return evs // appends go to a new array: this one is never written again
		}
		select {
		case <-recorded.added:
		case <-deadline:
			t.Fatalf("waiting for %s; %d recorded: %v", what, n, evs[max(0, n-20):])
		}
	}
}

// hasEvent reports whether evs hold an event name for entry.
func hasEvent(name, entry string) func([]recordedEvent) bool {
	return func(evs []recordedEvent) bool {
		for _, e := range evs {
			if e.name == name && e.data["entry"] == entry {
				return true
			}
		}
		return false
	}
}

// eventsConfig is the test config (see config) as JSON, with an events
// app whose subscription to the knocker events records them with tag.
func eventsConfig(t *testing.T, dir, tag, knockerExtra string, sites ...string) string {
	t.Helper()
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config(t, dir, knockerExtra, defaultSite, sites...)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["apps"].(map[string]any)["events"] = map[string]any{
		"subscriptions": []any{map[string]any{
			"events":   []string{eventGrant, eventRevoke, eventExpire},
			"modules":  []string{"knocker"},
			"handlers": []any{map[string]any{"handler": "knocker_test_record", "tag": tag}},
		}},
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func loadEventsConfig(t *testing.T, dir, tag, knockerExtra string) {
	t.Helper()
	setKeyEnv(t)
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	testcaddy.Load(t, eventsConfig(t, dir, tag, knockerExtra), "json")
	if t.Failed() {
		t.FailNow()
	}
}

// openStoreOf returns the open store of the whitelist in dir.
func openStoreOf(t *testing.T, dir string) *store.Store {
	t.Helper()
	path := store.ResolvePath(filepath.Join(dir, "state", "whitelist.json"))
	var s *store.Store
	stores.Range(func(k, v any) bool {
		if k == path {
			s = v.(pooledStore).Store
		}
		return s == nil
	})
	if s == nil {
		t.Fatalf("no open store for %s", path)
	}
	return s
}

// An event handler subscribed to the knocker events sees every grant,
// extension, revocation, eviction and expiry, with the entry, the key's
// name and the expiries, and nothing secret.
func TestEvents(t *testing.T) {
	dir := t.TempDir()
	resetRecorded()
	loadEventsConfig(t, dir, "only", "max_entries 3\n\t\tcleanup_interval 1s")
	h := &harness{t: t, dir: dir}

	r := h.knock("203.0.113.140", phoneSecret, `{"ttl": 600}`)
	expectStatus(t, r, 200, "knock")
	first := int64(r.json(t)["expires_at"].(float64))
	r = h.knock("203.0.113.140", phoneSecret, `{"ttl": 900}`)
	expectStatus(t, r, 200, "re-knock")
	second := int64(r.json(t)["expires_at"].(float64))
	expectStatus(t, h.knock("203.0.113.141", adminSecret, `{"ip_address": "198.51.100.0/24", "ttl": 300}`), 200, "remote knock")
	if _, err := openStoreOf(t, dir).Revoke(netip.MustParsePrefix("198.51.100.0/24")); err != nil {
		t.Fatal(err)
	}
	// max_entries 3: the fourth entry evicts the soonest-expiring one.
	expectStatus(t, h.knock("203.0.113.142", adminSecret, `{"ip_address": "192.0.2.1", "ttl": 60}`), 200, "knock")
	expectStatus(t, h.knock("203.0.113.142", adminSecret, `{"ip_address": "192.0.2.2", "ttl": 120}`), 200, "knock")
	expectStatus(t, h.knock("203.0.113.142", adminSecret, `{"ip_address": "192.0.2.3", "ttl": 1200}`), 200, "knock")
	// A short grant (evicting 192.0.2.2), expired by the sweeper
	// (cleanup_interval 1s).
	r = h.knock("203.0.113.142", adminSecret, `{"ip_address": "192.0.2.9", "ttl": 1}`)
	expectStatus(t, r, 200, "short knock")
	short := int64(r.json(t)["expires_at"].(float64))

	evs := awaitRecorded(t, "the expiry", hasEvent(eventExpire, "192.0.2.9"))
	type ev struct {
		name string
		data map[string]any
	}
	var got []ev
	for _, e := range evs {
		if e.tag != "only" || e.origin != "knocker" {
			t.Errorf("event %s from config %q, origin %q; want config only, origin knocker", e.name, e.tag, e.origin)
		}
		got = append(got, ev{e.name, e.data})
	}
	if len(got) != 11 {
		t.Fatalf("%d events, want 11: %v", len(got), got)
	}
	evictedAt := got[6].data["expires_at"]
	want := []ev{
		{eventGrant, map[string]any{"entry": "203.0.113.140", "key": "phone", "expires_at": first}},
		{eventGrant, map[string]any{"entry": "203.0.113.140", "key": "phone", "expires_at": second, "previous_expires_at": first}},
		{eventGrant, map[string]any{"entry": "198.51.100.0/24", "key": "admin", "expires_at": got[2].data["expires_at"]}},
		{eventRevoke, map[string]any{"entry": "198.51.100.0/24", "key": "admin", "expires_at": got[2].data["expires_at"], "reason": "revoked"}},
		{eventGrant, map[string]any{"entry": "192.0.2.1", "key": "admin", "expires_at": got[4].data["expires_at"]}},
		{eventGrant, map[string]any{"entry": "192.0.2.2", "key": "admin", "expires_at": got[5].data["expires_at"]}},
		{eventRevoke, map[string]any{"entry": "192.0.2.1", "key": "admin", "expires_at": evictedAt, "reason": "evicted"}},
		{eventGrant, map[string]any{"entry": "192.0.2.3", "key": "admin", "expires_at": got[7].data["expires_at"]}},
		{eventRevoke, map[string]any{"entry": "192.0.2.2", "key": "admin", "expires_at": got[5].data["expires_at"], "reason": "evicted"}},
		{eventGrant, map[string]any{"entry": "192.0.2.9", "key": "admin", "expires_at": short}},
		{eventExpire, map[string]any{"entry": "192.0.2.9", "key": "admin", "expires_at": short}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}
	if evictedAt != got[4].data["expires_at"] {
		t.Errorf("evicted 192.0.2.1 with expires_at %v, granted with %v", evictedAt, got[4].data["expires_at"])
	}
	for _, e := range got {
		for _, secret := range []string{adminSecret, phoneSecret, guestSecret} {
			if strings.Contains(fmt.Sprint(e.data), secret) {
				t.Errorf("event %s carries a key's secret: %v", e.name, e.data)
			}
		}
	}
}

// Across reloads every change is emitted exactly once: while grants keep
// coming, a reload hands emitting from the old config to the new one (never
// both, never neither), and a reload Caddy refuses leaves it where it was.
func TestEventsExactlyOnceAcrossReload(t *testing.T) {
	dir := t.TempDir()
	resetRecorded()
	loadEventsConfig(t, dir, "A", "")
	s := openStoreOf(t, dir)

	var (
		issued atomic.Int64 // grants of 10.x.y.z begun: 1..issued
		stop   = make(chan struct{})
		failed = make(chan error, 4)
		wg     sync.WaitGroup
	)
	prefixOf := func(i int64) string { return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }
	for range 4 { // concurrent grants share commits: more of them per reload
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := issued.Add(1)
				_, err := s.GrantWith(netip.MustParsePrefix(prefixOf(i)+"/32"), now().Unix()+3600, store.GrantOptions{Owner: "admin", MaxEntries: 1 << 24})
				if err != nil {
					failed <- err
					return
				}
			}
		}()
	}
	stopGrants := func() {
		close(stop)
		wg.Wait()
		select {
		case err := <-failed:
			t.Fatal(err)
		default:
		}
	}
	// fromTag waits for more than n events of config tag.
	fromTag := func(tag string, n int) func([]recordedEvent) bool {
		return func(evs []recordedEvent) bool {
			for _, e := range evs {
				if e.tag == tag {
					if n--; n < 0 {
						return true
					}
				}
			}
			return false
		}
	}
	awaitRecorded(t, "events from config A", fromTag("A", 0))
	loadEventsConfig(t, dir, "B", "cleanup_interval 30s") // a changed config: a real reload
	evs := awaitRecorded(t, "events from config B", fromTag("B", 0))

	// A reload that fails to start (a site on a port in use) while the
	// grants go on: config B keeps emitting; the refused config never does.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := eventsConfig(t, dir, "C", "cleanup_interval 20s", fmt.Sprintf("http://%s {\n\trespond ok\n}", busy.Addr()))
	testcaddy.AssertLoadError(t, bad, "json", "address already in use")
	awaitRecorded(t, "events from config B after the refused reload", fromTag("B", len(evs)))
	stopGrants()

	// One more grant after the last: once its event is in, every earlier
	// one (a single queue, emitted in order) is too.
	last := issued.Load() + 1
	if _, err := s.GrantWith(netip.MustParsePrefix(prefixOf(last)+"/32"), now().Unix()+3600, store.GrantOptions{Owner: "admin", MaxEntries: 1 << 24}); err != nil {
		t.Fatal(err)
	}
	evs = awaitRecorded(t, "the last grant", hasEvent(eventGrant, prefixOf(last)))

	seen := map[string]int{}
	tags := map[string]int{}
	prevTag := ""
	for _, e := range evs {
		if e.name != eventGrant {
			t.Errorf("unexpected %s event %v", e.name, e.data)
			continue
		}
		seen[e.data["entry"].(string)]++
		tags[e.tag]++
		if e.tag < prevTag {
			t.Errorf("config %s emitted after config %s took over", e.tag, prevTag)
		}
		prevTag = e.tag
	}
	for i := int64(1); i <= last; i++ {
		if n := seen[prefixOf(i)]; n != 1 {
			t.Errorf("grant %s emitted %d times, want once", prefixOf(i), n)
		}
	}
	if len(seen) != int(last) || tags["C"] != 0 {
		t.Errorf("%d entries in the events for %d grants; by config: %v (C refused, must emit nothing)", len(seen), last, tags)
	}
	t.Logf("%d grants, emitted by config: %v", last, tags)
}
