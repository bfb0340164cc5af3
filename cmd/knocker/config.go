package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	defaultTimeout       = 10 * time.Second
	defaultCheckInterval = time.Minute
	legacyCheckInterval  = 5 * time.Minute // with --ip-check-url, as knocker-cli
	defaultRetryMin      = 2 * time.Second
	defaultRetryMax      = 5 * time.Minute
	maxKeyFileSize       = 64 << 10
	maxConfigFileSize    = 1 << 20
)

// Where a setting came from, highest precedence first. The original
// knocker-cli's variables and file (see legacy.go) come after ours.
const (
	layerFlag = iota
	layerEnv
	layerLegacyEnv
	layerFile
	layerLegacyFile
	layerDefault
)

// option describes one setting: its flag, environment variable and config
// file field, and the original knocker-cli's names for it.
type option struct {
	name        string // flag name, without dashes
	arg         string // placeholder in the help; "" for a boolean flag
	env         string
	field       string
	help        string
	aliases     []string // further flag names (the original's)
	legacyEnv   string   // the original's variable, where it differs from env
	legacyField string   // the original's ~/.knocker.yaml field
}

var options = []option{
	{name: "server", arg: "URL", env: "KNOCKER_SERVER", field: "server", legacyEnv: "KNOCKER_API_URL", legacyField: "api_url",
		help: "the knock server: a host (https:// is assumed), or an https:// or http:// URL, optionally with a path prefix"},
	{name: "key", arg: "KEY", env: "KNOCKER_KEY", field: "key", legacyEnv: "KNOCKER_API_KEY", legacyField: "api_key",
		help: "the API key; prefer --key-file or KNOCKER_KEY: process arguments are visible to other users"},
	{name: "key-file", arg: "FILE", env: "KNOCKER_KEY_FILE", field: "key_file",
		help: `a file holding the API key ("-": standard input); surrounding whitespace is ignored`},
	{name: "ttl", arg: "DURATION", env: "KNOCKER_TTL", field: "ttl", legacyField: "ttl",
		help: "how long to be whitelisted: 90s, 8h, 7d or seconds (default, or 0: the key's max_ttl); sent as whole seconds"},
	{name: "ip", arg: "IP/CIDR", env: "KNOCKER_IP", field: "ip",
		help: "whitelist this address or range instead of your own (needs a key with allow_remote_whitelist)"},
	{name: "family", arg: "4|6|both", env: "KNOCKER_FAMILY", field: "family",
		help: "connect over IPv4 (4), IPv6 (6), or each separately (both: a dual-stack device is whitelisted on both); default: the system's choice"},
	{name: "timeout", arg: "DURATION", env: "KNOCKER_TIMEOUT", field: "timeout",
		help: "time limit for each request (default 10s)"},
	{name: "check-interval", arg: "DURATION", env: "KNOCKER_CHECK_INTERVAL", field: "check_interval", legacyField: "check_interval", aliases: []string{"check_interval"},
		help: "how often to look for a new address (/knock/status, or --ip-check-url), to knock at once when it changes; a number alone is minutes, as in knocker-cli (default 1m; 0: only re-knock before expiry)"},
	{name: "ip-check-url", arg: "URL", env: "KNOCKER_IP_CHECK_URL", field: "ip_check_url", legacyField: "ip_check_url", aliases: []string{"ip_check_url"},
		help: "look the address up at this URL (answering the bare IP, as knocker-cli's comparison mode) instead of /knock/status"},
	{name: "retry-min", arg: "DURATION", env: "KNOCKER_RETRY_MIN", field: "retry_min",
		help: "first delay after a failed knock; doubles on each failure, with jitter (default 2s)"},
	{name: "retry-max", arg: "DURATION", env: "KNOCKER_RETRY_MAX", field: "retry_max",
		help: "longest delay between retries (default 5m)"},
	{name: "config", arg: "FILE", env: "KNOCKER_CONFIG",
		help: "the config file (default: $XDG_CONFIG_HOME/knocker/config.json, then knocker-cli's ~/.knocker.yaml); a .yaml or .yml file is read as knocker-cli's; an explicitly named file must exist"},
	{name: "verbose", help: "say where each setting came from (never the key itself)"},
	{name: "json", help: "print the result as JSON on standard output"},
	{name: "print", help: "only print the service definition and the commands; change nothing"},
	{name: "service", help: "only the service's state; no request to the server; exit code 0 running, 9 stopped, 10 not installed, 1 unknown"},
	{name: "events", arg: "MODE", help: eventsHelp},
}

func optionByName(name string) option {
	for _, o := range options {
		if o.name == name {
			return o
		}
	}
	panic("unknown option " + name)
}

func knownField(field string) bool {
	for _, o := range options {
		if o.field == field && field != "" {
			return true
		}
	}
	return false
}

// parsedFlags holds a command's flags as given.
type parsedFlags struct {
	strs  map[string]*string
	bools map[string]*bool
	set   map[string]bool
}

func (p *parsedFlags) has(name string) bool { _, ok := p.strs[name]; return ok }

func (p *parsedFlags) bool(name string) bool {
	if b, ok := p.bools[name]; ok {
		return *b
	}
	return false
}

const exitCodesHelp = `Exit codes: 0 success; 1 other error; 2 usage or configuration error, or a
request the server rejected as invalid (400, 413, 415); 3 invalid API key
(401); 4 forbidden (403); 5 rate limited (429); 6 server unreachable (DNS,
connection, timeout); 7 TLS error (certificate, handshake); 8 server error
(5xx) or not a knock API answer. With --family both: the higher of the two.
Service (status --service, start, stop): 9 stopped; 10 not installed.
`

// parseFlags parses args for cmd. done reports that the command must
// return code at once (help was printed, or the flags were wrong).
func (c *cli) parseFlags(cmd, synopsis, about string, names []string, args []string) (p *parsedFlags, code int, done bool) {
	fs := flag.NewFlagSet("knocker "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	p = &parsedFlags{strs: map[string]*string{}, bools: map[string]*bool{}, set: map[string]bool{}}
	canonical := map[string]string{}
	for _, n := range names {
		o := optionByName(n)
		if o.arg == "" {
			p.bools[n] = fs.Bool(n, false, "")
		} else {
			p.strs[n] = fs.String(n, "", "")
			for _, a := range o.aliases {
				fs.StringVar(p.strs[n], a, "", "")
				canonical[a] = n
			}
		}
	}
	help := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: knocker %s %s\n\n%s\n", cmd, synopsis, about)
		if len(names) > 0 {
			fmt.Fprintf(w, "\nFlags (environment variable, config file field):\n")
			for _, n := range names {
				o := optionByName(n)
				head := "  --" + n
				if o.arg != "" {
					head += " " + o.arg
				}
				for _, a := range o.aliases {
					head += ", --" + a
				}
				var where []string
				if o.env != "" {
					where = append(where, o.env)
				}
				if o.field != "" {
					where = append(where, strconv.Quote(o.field))
				}
				if len(where) > 0 {
					head = fmt.Sprintf("%-30s (%s)", head, strings.Join(where, ", "))
				}
				fmt.Fprintf(w, "%s\n%s", head, wrap(o.help, "      ", 78))
			}
		}
		fmt.Fprintf(w, "  -h, --help\n      this help\n\n%s", exitCodesHelp)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(c.stdout)
			return nil, exitOK, true
		}
		fmt.Fprintf(c.stderr, "knocker %s: %v\nRun \"knocker %s --help\" for usage.\n", cmd, err, cmd)
		return nil, exitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "knocker %s: unexpected argument %q\nRun \"knocker %s --help\" for usage.\n", cmd, fs.Arg(0), cmd)
		return nil, exitUsage, true
	}
	fs.Visit(func(f *flag.Flag) {
		if n, ok := canonical[f.Name]; ok {
			if p.set[n] {
				fmt.Fprintf(c.stderr, "knocker %s: --%s given twice (also as --%s)\n", cmd, n, f.Name)
				code, done = exitUsage, true
			}
			p.set[n] = true
			return
		}
		p.set[f.Name] = true
	})
	if done {
		return nil, code, true
	}
	return p, exitOK, false
}

// fileConfig is the config file, as strings per field.
type fileConfig struct {
	path   string // "" when there is none
	values map[string]string
	mode   fs.FileMode
	// legacy: the original knocker-cli's YAML file, with its field names.
	legacy bool
	// fallback is consulted for settings this file lacks: the original's
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

// loadConfig reads the config file named by --config or KNOCKER_CONFIG, or
// the default one if it exists, and behind it the original knocker-cli's
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
		dir, err := c.configHome()
		if err != nil {
			return &fileConfig{}, nil
		}
		path = filepath.Join(dir, "knocker", "config.json")
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
	fields := make([]string, 0, len(raw))
	for k := range raw {
		fields = append(fields, k)
	}
	sort.Strings(fields)
	for _, k := range fields {
		if !knownField(k) {
			return nil, usageErr("config file %s: unknown field %q (known: server, key, key_file, ttl, ip, family, timeout, check_interval, ip_check_url, retry_min, retry_max)", path, k)
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

// lookup finds a setting's value by precedence: flag, environment (ours,
// then the original knocker-cli's name), config file (ours, then the
// original's). origin names where it came from, for messages.
func (c *cli) lookup(p *parsedFlags, cfg *fileConfig, name string) (value, origin string, layer int) {
	o := optionByName(name)
	if p.set[name] {
		return *p.strs[name], "--" + name, layerFlag
	}
	if o.env != "" {
		if v := c.getenv(o.env); v != "" {
			return v, o.env, layerEnv
		}
	}
	if o.legacyEnv != "" {
		if v := c.getenv(o.legacyEnv); v != "" {
			return v, o.legacyEnv + " (knocker-cli)", layerLegacyEnv
		}
	}
	for f, layer := cfg, layerFile; f != nil; f, layer = f.fallback, layerLegacyFile {
		field := o.field
		if f.legacy {
			field = o.legacyField
		}
		if v, ok := f.values[field]; ok && field != "" {
			return v, fmt.Sprintf("%q in %s", field, f.path), layer
		}
	}
	return "", "", layerDefault
}

func (c *cli) expandHome(path string) string {
	if path == "~" || strings.HasPrefix(path, "~/") {
		if h := c.getenv("HOME"); h != "" {
			return filepath.Join(h, path[1:])
		}
	}
	return path
}

// family is the address family a client connects over.
type family int

const (
	familyAuto family = iota // the system's choice
	family4
	family6
	familyBoth
)

func parseFamily(s string) (family, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return familyAuto, nil
	case "4", "ipv4", "v4":
		return family4, nil
	case "6", "ipv6", "v6":
		return family6, nil
	case "both", "46", "dual":
		return familyBoth, nil
	}
	return 0, errors.New("must be 4, 6, both or auto")
}

func (f family) String() string {
	return [...]string{"auto", "4", "6", "both"}[f]
}

// network is the dial network for one family.
func (f family) network() string {
	switch f {
	case family4:
		return "tcp4"
	case family6:
		return "tcp6"
	}
	return "tcp"
}

// label names a family in output; "" for the system's choice.
func (f family) label() string {
	switch f {
	case family4:
		return "IPv4"
	case family6:
		return "IPv6"
	}
	return ""
}

// jsonName names a family in JSON output.
func (f family) jsonName() string {
	switch f {
	case family4:
		return "ipv4"
	case family6:
		return "ipv6"
	}
	return "auto"
}

// members are the families to knock over.
func (f family) members() []family {
	if f == familyBoth {
		return []family{family4, family6}
	}
	return []family{f}
}

// parseDuration accepts Go durations, days ("7d") and plain seconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	const maxSeconds = math.MaxInt64 / int64(time.Second)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > maxSeconds {
			return 0, errors.New("out of range")
		}
		return time.Duration(n) * time.Second, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseInt(days, 10, 64); err == nil {
			if n < 0 || n > maxSeconds/86400 {
				return 0, errors.New("out of range")
			}
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration (examples: 90s, 1h30m, 7d, or seconds)")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

// parseServer turns the server setting into the base URL of the knock API.
// Without a scheme it is https. A trailing /knock or /knock/status (a
// pasted endpoint) is removed.
func parseServer(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("scheme %q is not supported (use https:// or http://)", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("no host")
	}
	if u.User != nil {
		return nil, errors.New("user information in the URL is not supported")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, errors.New("a query or fragment is not supported")
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, "/knock/status")
	p = strings.TrimSuffix(p, "/knock")
	u.Path, u.RawPath = p, ""
	return u, nil
}

// settings is the resolved configuration of one command.
type settings struct {
	cfg           *fileConfig
	server        *url.URL
	family        family
	ttl           time.Duration // 0: the server's maximum for the key
	ip            string        // "" : the caller's own address
	timeout       time.Duration
	checkInterval time.Duration
	ipCheckURL    string // "": ask /knock/status
	retryMin      time.Duration
	retryMax      time.Duration

	// origins says where each setting given came from (--verbose, status).
	origins []settingOrigin

	key       string // never printed
	keyOrigin string // where the key came from, for messages
	keyLayer  int
	keyFile   string // absolute path, when the key was read from a file
	keyInFile bool   // the key is inline in a config file ("key" or "api_key")
	keyConfig string // that config file

	warnings []string
}

// resolve applies precedence and validates every setting the command
// registered a flag for.
func (c *cli) resolve(p *parsedFlags, needKey bool) (*settings, *cmdError) {
	cfg, cerr := c.loadConfig(p)
	if cerr != nil {
		return nil, cerr
	}
	s := &settings{cfg: cfg, timeout: defaultTimeout, checkInterval: defaultCheckInterval, retryMin: defaultRetryMin, retryMax: defaultRetryMax}
	for f := cfg; f != nil; f = f.fallback {
		s.warnings = append(s.warnings, f.warnings...)
	}

	v, origin, layer := c.lookup(p, cfg, "server")
	if layer == layerDefault {
		return nil, usageErr("no server: use --server, KNOCKER_SERVER or \"server\" in the config file (%s); knocker-cli's KNOCKER_API_URL and \"api_url\" in ~/.knocker.yaml work too", c.defaultConfigPath())
	}
	u, err := parseServer(v)
	if err != nil {
		return nil, usageErr("invalid server %q (from %s): %v", redactUserinfo(v), origin, err)
	}
	s.server = u
	s.noteOrigin("server", origin)

	if p.has("family") {
		if v, origin, layer := c.lookup(p, cfg, "family"); layer != layerDefault {
			f, err := parseFamily(v)
			if err != nil {
				return nil, usageErr("invalid family %q (from %s): %v", v, origin, err)
			}
			s.family = f
			s.noteOrigin("family", origin)
		}
	}
	durations := []struct {
		name     string
		dst      *time.Duration
		min      time.Duration
		zeroOK   bool
		wholeSec bool
	}{
		{"ttl", &s.ttl, time.Second, true, true}, // 0: the key's max_ttl, as knocker-cli's "0 for server default"
		{"timeout", &s.timeout, 10 * time.Millisecond, false, false},
		{"check-interval", &s.checkInterval, 10 * time.Millisecond, true, false},
		{"retry-min", &s.retryMin, time.Millisecond, false, false},
		{"retry-max", &s.retryMax, time.Millisecond, false, false},
	}
	for _, d := range durations {
		if !p.has(d.name) {
			continue
		}
		v, origin, layer := c.lookup(p, cfg, d.name)
		if layer == layerDefault {
			continue
		}
		val, err := parseDuration(v)
		if d.name == "check-interval" {
			val, err = parseCheckInterval(v)
		}
		if n, nerr := strconv.ParseInt(strings.TrimSpace(v), 10, 64); d.name == "ttl" && nerr == nil && n < 0 {
			// knocker-cli sent no ttl for any value <= 0: the key's max_ttl.
			s.warnings = append(s.warnings, fmt.Sprintf("ttl %s (from %s) means the key's max_ttl, as in knocker-cli; leave it unset or use 0", v, origin))
			val, err = 0, nil
		}
		switch {
		case err != nil:
		case val == 0 && d.zeroOK:
		case val < d.min:
			err = fmt.Errorf("must be at least %s", d.min)
		case d.wholeSec && val%time.Second != 0:
			err = errors.New("must be a whole number of seconds")
		}
		if err != nil {
			return nil, usageErr("invalid %s %q (from %s): %v", d.name, v, origin, err)
		}
		*d.dst = val
		s.noteOrigin(d.name, origin)
	}
	if p.has("ip-check-url") {
		if v, origin, layer := c.lookup(p, cfg, "ip-check-url"); layer != layerDefault {
			u, err := parseCheckURL(v)
			if err != nil {
				return nil, usageErr("invalid ip-check-url %q (from %s): %v", redactUserinfo(v), origin, err)
			}
			s.ipCheckURL = u
			s.noteOrigin("ip-check-url", origin)
			// knocker-cli polled its lookup service every 5 minutes unless
			// told otherwise, and took 0 for that default too.
			if _, _, layer := c.lookup(p, cfg, "check-interval"); layer == layerDefault || s.checkInterval == 0 {
				s.checkInterval = legacyCheckInterval
			}
		}
	}
	if s.retryMax < s.retryMin {
		return nil, usageErr("retry-max (%s) is shorter than retry-min (%s)", s.retryMax, s.retryMin)
	}
	if p.has("ip") {
		if v, origin, layer := c.lookup(p, cfg, "ip"); layer != layerDefault {
			v = strings.TrimSpace(v)
			if _, err := netip.ParseAddr(v); err != nil {
				if _, err := netip.ParsePrefix(v); err != nil {
					return nil, usageErr("invalid ip %q (from %s): not an IP address or CIDR range", v, origin)
				}
			}
			if s.family == familyBoth {
				return nil, usageErr("--ip whitelists a fixed address, so --family both does not apply: use --family 4, 6 or auto")
			}
			s.ip = v
			s.noteOrigin("ip", origin)
		}
	}
	if needKey {
		if err := c.resolveKey(p, cfg, s); err != nil {
			return nil, err
		}
		if s.server.Scheme == "http" && !isLoopbackHost(s.server.Hostname()) {
			s.warnings = append(s.warnings, fmt.Sprintf("%s is plain http: the API key crosses the network unencrypted", s.server.Redacted()))
		}
	}
	return s, nil
}

func (c *cli) defaultConfigPath() string {
	dir, err := c.configHome()
	if err != nil {
		return "none"
	}
	return filepath.Join(dir, "knocker", "config.json")
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// resolveKey finds the key: the highest layer that sets key or key_file
// wins; one layer setting both is an error. Messages never include the key.
func (c *cli) resolveKey(p *parsedFlags, cfg *fileConfig, s *settings) *cmdError {
	kv, kOrigin, kLayer := c.lookup(p, cfg, "key")
	fv, fOrigin, fLayer := c.lookup(p, cfg, "key-file")
	switch {
	case kLayer == layerDefault && fLayer == layerDefault:
		return usageErr("no API key: use --key-file, KNOCKER_KEY_FILE, KNOCKER_KEY, or \"key_file\" or \"key\" in the config file (%s); knocker-cli's KNOCKER_API_KEY and \"api_key\" in ~/.knocker.yaml work too", c.defaultConfigPath())
	case kLayer == fLayer:
		return usageErr("both %s and %s are set: use one", kOrigin, fOrigin)
	case kLayer < fLayer:
		s.key, s.keyOrigin, s.keyLayer = strings.TrimSpace(kv), kOrigin, kLayer
		if f := cfg; kLayer == layerFile || kLayer == layerLegacyFile {
			if kLayer == layerLegacyFile {
				f = cfg.fallback
			}
			s.keyInFile, s.keyConfig = true, f.path
			if f.mode&0o077 != 0 {
				s.warnings = append(s.warnings, fmt.Sprintf("the config file %s holds the API key and is readable by other users (mode %04o): chmod 600 %s", f.path, f.mode, f.path))
			}
		}
	default:
		s.keyLayer = fLayer
		var data []byte
		if fv == "-" && fLayer != layerFile {
			var err error
			data, err = io.ReadAll(io.LimitReader(c.stdin, maxKeyFileSize+1))
			if err != nil {
				return usageErr("cannot read the API key from standard input: %v", err)
			}
			s.keyOrigin = fOrigin + " (standard input)"
		} else {
			path := c.expandHome(fv)
			if fLayer == layerFile && !filepath.IsAbs(path) {
				path = filepath.Join(filepath.Dir(cfg.path), path)
			}
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			s.keyFile, s.keyOrigin = path, fmt.Sprintf("the key file %s (from %s)", path, fOrigin)
			f, err := os.Open(path)
			if err != nil {
				return usageErr("cannot read the key file (from %s): %v", fOrigin, err)
			}
			defer f.Close()
			if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
				s.warnings = append(s.warnings, fmt.Sprintf("the key file %s is readable by other users (mode %04o): chmod 600 %s", path, st.Mode().Perm(), path))
			}
			data, err = io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
			if err != nil {
				return usageErr("cannot read the key file %s: %v", path, err)
			}
		}
		if len(data) > maxKeyFileSize {
			return usageErr("%s is larger than 64 KiB: not a key file", s.keyOrigin)
		}
		s.key = string(bytes.TrimSpace(data))
	}
	if s.key == "" {
		return usageErr("the API key from %s is empty", s.keyOrigin)
	}
	s.noteOrigin("key", s.keyOrigin)
	for i := 0; i < len(s.key); i++ {
		if b := s.key[i]; b < 0x20 || b == 0x7f {
			return usageErr("the API key from %s contains a control character (a line break?)", s.keyOrigin)
		}
	}
	return nil
}

// wrap fills text into lines of at most width columns, each starting with
// indent.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(text) {
		if line != indent && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\n")
	return b.String()
}
