package knocker

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-knocker/knocker/store"
)

const (
	defaultMaxEntries      = 10000
	defaultCleanupInterval = 60 * time.Second
)

// provisionStorage validates and defaults where and how grants are kept.
// Errors name the field.
func (a *App) provisionStorage(repl *caddy.Replacer) error {
	if a.MaxEntries < 0 {
		return fmt.Errorf("max_entries: must be positive, got %d", a.MaxEntries)
	}
	if a.MaxEntries == 0 {
		a.MaxEntries = defaultMaxEntries
	}
	if a.CleanupInterval < 0 || a.CleanupInterval > 0 && time.Duration(a.CleanupInterval) < time.Second {
		return fmt.Errorf("cleanup_interval: must be at least 1s, got %s", time.Duration(a.CleanupInterval))
	}
	if a.CleanupInterval == 0 {
		a.CleanupInterval = caddy.Duration(defaultCleanupInterval)
	}
	a.path = filepath.Join(caddy.AppDataDir(), "knocker", "whitelist.json")
	if a.WhitelistFile != "" {
		p, err := repl.ReplaceOrErr(a.WhitelistFile, true, true)
		if err != nil {
			return fmt.Errorf("whitelist_file: %v", err)
		}
		if a.path, err = filepath.Abs(p); err != nil {
			return fmt.Errorf("whitelist_file: %v", err)
		}
	}
	return nil
}

// stores holds one open store per whitelist path, reference-counted by the
// configs that use it, so a reload hands the same grants to the new config.
var stores = caddy.NewUsagePool()

// limiters holds the knock limiter, kept across reloads for the same reason.
var limiters = caddy.NewUsagePool()

const limiterKey = "knock"

type pooledStore struct {
	*store.Store
	hub *eventHub
}

// sweeps holds, per whitelist path, the cleanup_interval of every config
// holding the store. The store sweeps at the shortest of them, and a config
// stops counting when it is cleaned up: a reload that fails (Caddy rolls
// back to the running config) leaves the running config's interval.
var sweeps struct {
	mu     sync.Mutex
	byPath map[string]map[*appState]time.Duration
}

// holdSweep records holder's interval for path and applies the shortest
// one held to s.
func holdSweep(path string, holder *appState, interval time.Duration, s *store.Store) {
	sweeps.mu.Lock()
	defer sweeps.mu.Unlock()
	if sweeps.byPath == nil {
		sweeps.byPath = map[string]map[*appState]time.Duration{}
	}
	if sweeps.byPath[path] == nil {
		sweeps.byPath[path] = map[*appState]time.Duration{}
	}
	sweeps.byPath[path][holder] = interval
	s.SetCleanupInterval(shortestSweep(path))
}

// releaseSweep forgets holder's interval for path and applies the shortest
// of those still held to s.
func releaseSweep(path string, holder *appState, s *store.Store) {
	sweeps.mu.Lock()
	defer sweeps.mu.Unlock()
	delete(sweeps.byPath[path], holder)
	if len(sweeps.byPath[path]) == 0 {
		delete(sweeps.byPath, path)
		return
	}
	s.SetCleanupInterval(shortestSweep(path))
}

func shortestSweep(path string) time.Duration {
	var shortest time.Duration
	for _, d := range sweeps.byPath[path] {
		if shortest == 0 || d < shortest {
			shortest = d
		}
	}
	return shortest
}

func (p pooledStore) Destruct() error {
	err := p.Close()
	p.hub.close()
	return err
}

// openStore returns the store, opening it if Start has not yet run: Caddy
// starts apps in random order, so the HTTP server may serve a request
// before this app's Start.
func (a *App) openStore() (*store.Store, error) {
	if s := a.run.st.Load(); s != nil {
		return s, nil
	}
	a.run.mu.Lock()
	defer a.run.mu.Unlock()
	if s := a.run.st.Load(); s != nil {
		return s, nil
	}
	if a.run.released {
		return nil, errors.New("knocker app was cleaned up")
	}
	// Keyed by the resolved path, so that two names for one file (a reload
	// that switches to a symlink) share the store instead of colliding on
	// its lock.
	key := store.ResolvePath(a.path)
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := store.Open(store.Options{
			Path:            a.path,
			MaxEntries:      a.MaxEntries,
			CleanupInterval: time.Duration(a.CleanupInterval),
			Now:             now,
			Logger:          newLongLivedLogger("knocker.store"),
			ObserveSync:     observeStoreSync,
		})
		if err != nil {
			return nil, err
		}
		return pooledStore{s, newEventHub(s)}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening whitelist: %w", err)
	}
	s := v.(pooledStore).Store
	a.run.hub = v.(pooledStore).hub
	holdSweep(key, a.run, time.Duration(a.CleanupInterval), s)
	a.run.poolKey, a.run.acquired = key, true
	a.run.st.Store(s)
	return s, nil
}
