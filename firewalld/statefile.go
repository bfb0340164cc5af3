package firewalld

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ruleState is the state file: the permanent rules Knocker installed, per
// zone. Pruning removes only rules listed here, so a user's rule is never
// touched even if it happens to look like Knocker's. It is written before
// rules are added (as the union of old and new) and again after pruning, so
// a crash in between can leave it listing too much, never too little.
type ruleState struct {
	Version int                 `json:"version"`
	Zones   map[string][]string `json:"zones"`
}

const stateVersion = 1

// defaultStatePath puts the state file beside the whitelist:
// /x/whitelist.json -> /x/whitelist.firewalld.json.
func defaultStatePath(whitelist string) string {
	dir, base := filepath.Split(whitelist)
	return filepath.Join(dir, strings.TrimSuffix(base, ".json")+".firewalld.json")
}

// loadState reads the state file. found is false if it does not exist;
// then the caller falls back to recognising Knocker's rules by their exact
// priority and shape.
func loadState(path string) (st ruleState, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ruleState{}, false, nil
	}
	if err != nil {
		return ruleState{}, false, fmt.Errorf("reading state file: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return ruleState{}, false, fmt.Errorf("state file %s is corrupt: %v", path, err)
	}
	if st.Version != stateVersion {
		return ruleState{}, false, fmt.Errorf("state file %s has version %d, want %d", path, st.Version, stateVersion)
	}
	return st, true, nil
}

// saveState replaces the state file atomically and durably.
func saveState(path string, st ruleState) error {
	st.Version = stateVersion
	for z, rules := range st.Zones {
		if len(rules) == 0 {
			delete(st.Zones, z)
			continue
		}
		slices.Sort(rules)
		st.Zones[z] = slices.Compact(rules)
	}
	b, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing state file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing state file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing state file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// equalState reports whether two states list the same rules.
func equalState(a, b map[string][]string) bool {
	norm := func(m map[string][]string) map[string]string {
		out := map[string]string{}
		for z, rules := range m {
			if len(rules) == 0 {
				continue
			}
			r := slices.Clone(rules)
			slices.Sort(r)
			out[z] = strings.Join(slices.Compact(r), "\n")
		}
		return out
	}
	return maps.Equal(norm(a), norm(b))
}
