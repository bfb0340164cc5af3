package main

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// knocker-cli, the Python Knocker's CLI (github.com/FarisZR/knocker-cli), reads
// KNOCKER_API_URL, KNOCKER_API_KEY, KNOCKER_TTL, KNOCKER_CHECK_INTERVAL and
// KNOCKER_IP_CHECK_URL, and ~/.knocker.yaml with the fields api_url,
// api_key, ttl (seconds), check_interval (minutes) and ip_check_url. This
// program reads them too, after its own settings (see lookup), so that it
// replaces knocker-cli without a change of configuration.

// legacyConfigPath is knocker-cli's default config file, or "" when there
// is no home directory.
func (c *cli) legacyConfigPath() string {
	home := c.getenv("HOME")
	if c.goos == "windows" {
		home = c.getenv("USERPROFILE")
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".knocker.yaml")
}

func isYAMLPath(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}

// legacyFields are knocker-cli's config fields this program understands.
var legacyFields = func() map[string]bool {
	m := map[string]bool{}
	for _, o := range options {
		if o.legacyField != "" {
			m[o.legacyField] = true
		}
	}
	return m
}()

// loadLegacyConfig reads a config file in knocker-cli's YAML format. A
// missing file is no file unless it was named explicitly. Fields
// knocker-cli did not have are reported as warnings, not errors, as it
// ignored them too.
func (c *cli) loadLegacyConfig(path string, explicit bool) (*fileConfig, *cmdError) {
	data, mode, found, cerr := readConfigFile(path, explicit)
	if cerr != nil || !found {
		return nil, cerr
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, usageErr("config file %s is not valid YAML: %s", path, yamlErrText(err))
	}
	cfg := &fileConfig{path: path, values: map[string]string{}, mode: mode, legacy: true}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if !legacyFields[k] {
			cfg.warnings = append(cfg.warnings, fmt.Sprintf("config file %s: ignoring unknown field %q", path, k))
			continue
		}
		switch v := raw[k].(type) {
		case nil:
		case string:
			cfg.values[k] = v
		case int:
			cfg.values[k] = strconv.Itoa(v)
		case uint64:
			cfg.values[k] = strconv.FormatUint(v, 10)
		case float64:
			cfg.values[k] = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			return nil, usageErr("config file %s: field %q must be a string or a number", path, k)
		}
	}
	return cfg, nil
}

// yamlErrText says where the document is wrong, not what the parser quotes
// from it: its messages can quote the document (an alias name, a value), and
// the file holds the API key.
func yamlErrText(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return "the document must be a mapping of field names to values"
	}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		return "a syntax error at line " + m[1]
	}
	return "a syntax error"
}

var yamlLine = regexp.MustCompile(`\bline (\d+)\b`)

// parseCheckInterval is parseDuration, except that a number alone is
// minutes, as knocker-cli's check_interval is.
func parseCheckInterval(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok, err := wholeUnits(s, time.Minute); ok {
		return d, err
	}
	return parseDuration(s)
}
