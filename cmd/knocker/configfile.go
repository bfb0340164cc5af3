package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const maxConfigFileSize = 1 << 20

// configFields are the config file's fields, in the options table's order.
var configFields = func() []string {
	var fields []string
	for _, o := range options {
		if o.field != "" {
			fields = append(fields, o.field)
		}
	}
	return fields
}()

// fileConfig is the config file, as strings per field.
type fileConfig struct {
	path   string // "" when there is none
	values map[string]string
	mode   fs.FileMode
	// legacy: knocker-cli's YAML file, with its field names.
	legacy bool
	// fallback is consulted for settings this file lacks: knocker-cli's
	// ~/.knocker.yaml, when it exists and this file is not that format.
	fallback *fileConfig
	warnings []string
}

// configHome is the user's configuration directory: $XDG_CONFIG_HOME or
// ~/.config on Unix, read through c.getenv so that tests can move it;
// os.UserConfigDir elsewhere.
func (c *cli) configHome() (string, error) {
	switch c.goos {
	case "windows", "darwin", "ios", "plan9":
		return os.UserConfigDir()
	}
	if d := c.getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return d, nil
	}
	if h := c.getenv("HOME"); h != "" {
		return filepath.Join(h, ".config"), nil
	}
	return "", errors.New("neither $XDG_CONFIG_HOME nor $HOME is set")
}

// defaultConfigPath is the config file read when none is named.
func (c *cli) defaultConfigPath() (string, error) {
	dir, err := c.configHome()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "knocker", "config.json"), nil
}

// defaultConfigName names the default config file in messages.
func (c *cli) defaultConfigName() string {
	if path, err := c.defaultConfigPath(); err == nil {
		return path
	}
	return "none"
}

func (c *cli) expandHome(path string) string {
	if path == "~" || strings.HasPrefix(path, "~/") {
		if h := c.getenv("HOME"); h != "" {
			return filepath.Join(h, path[1:])
		}
	}
	return path
}

// loadConfig reads the config file named by --config or KNOCKER_CONFIG, or
// the default one if it exists, and behind it knocker-cli's
// ~/.knocker.yaml if that exists.
func (c *cli) loadConfig(p *parsedFlags) (*fileConfig, *cmdError) {
	cfg, err := c.loadOwnConfig(p)
	if err != nil || cfg.legacy {
		return cfg, err
	}
	if path := c.legacyConfigPath(); path != "" {
		if cfg.fallback, err = c.loadLegacyConfig(path, false); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// loadOwnConfig reads the config file named by --config or KNOCKER_CONFIG,
// or the default one if it exists.
func (c *cli) loadOwnConfig(p *parsedFlags) (*fileConfig, *cmdError) {
	path, explicit := "", true
	switch {
	case p.set["config"]:
		path = *p.strs["config"]
	case c.getenv("KNOCKER_CONFIG") != "":
		path = c.getenv("KNOCKER_CONFIG")
	default:
		explicit = false
		var err error
		if path, err = c.defaultConfigPath(); err != nil {
			return &fileConfig{}, nil // no home directory: no default file
		}
	}
	if path == "" {
		return nil, usageErr("--config: empty file name")
	}
	path = c.expandHome(path)
	if isYAMLPath(path) {
		return c.loadLegacyConfig(path, true)
	}
	data, mode, found, cerr := readConfigFile(path, explicit)
	if cerr != nil || !found {
		return &fileConfig{}, cerr
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, usageErr("config file %s is not valid JSON (at byte %d)", path, se.Offset)
		}
		return nil, usageErr("config file %s must hold a JSON object", path)
	}
	cfg := &fileConfig{path: path, values: map[string]string{}, mode: mode}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if !slices.Contains(configFields, k) {
			return nil, usageErr("config file %s: unknown field %q (known: %s)", path, k, strings.Join(configFields, ", "))
		}
		v := bytes.TrimSpace(raw[k])
		switch {
		case bytes.Equal(v, []byte("null")):
			continue
		case len(v) > 0 && v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, usageErr("config file %s: field %q is not a valid string", path, k)
			}
			cfg.values[k] = s
		case len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')):
			cfg.values[k] = string(v)
		default:
			return nil, usageErr("config file %s: field %q must be a string or a number", path, k)
		}
	}
	return cfg, nil
}

// readConfigFile reads the config file at path (at most 1 MiB). found is
// false for a missing file that was not named explicitly.
func readConfigFile(path string, explicit bool) (data []byte, mode fs.FileMode, found bool, cerr *cmdError) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, usageErr("cannot read the config file: %v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, false, usageErr("cannot read the config file: %v", err)
	}
	data, err = io.ReadAll(io.LimitReader(f, maxConfigFileSize+1))
	if err != nil {
		return nil, 0, false, usageErr("cannot read the config file %s: %v", path, err)
	}
	if len(data) > maxConfigFileSize {
		return nil, 0, false, usageErr("config file %s is larger than 1 MiB", path)
	}
	return data, st.Mode().Perm(), true, nil
}
