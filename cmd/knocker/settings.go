package main

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
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
)

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
		return nil, usageErr("no server: use --server, KNOCKER_SERVER or \"server\" in the config file (%s); knocker-cli's KNOCKER_API_URL and \"api_url\" in ~/.knocker.yaml work too", c.defaultConfigName())
	}
	u, err := parseServer(v)
	if err != nil {
		return nil, invalidSetting("server", redactUserinfo(v), origin, err)
	}
	s.server = u
	s.noteOrigin("server", origin)

	if v, origin, ok := c.given(p, cfg, "family"); ok {
		f, err := parseFamily(v)
		if err != nil {
			return nil, invalidSetting("family", v, origin, err)
		}
		s.family = f
		s.noteOrigin("family", origin)
	}
	durations := []struct {
		name     string
		dst      *time.Duration
		parse    func(string) (time.Duration, error)
		min      time.Duration
		zeroOK   bool
		wholeSec bool
	}{
		// ttl 0: the key's max_ttl, as knocker-cli's "0 for server default".
		{name: "ttl", dst: &s.ttl, parse: parseDuration, min: time.Second, zeroOK: true, wholeSec: true},
		{name: "timeout", dst: &s.timeout, parse: parseDuration, min: 10 * time.Millisecond},
		{name: "check-interval", dst: &s.checkInterval, parse: parseCheckInterval, min: 10 * time.Millisecond, zeroOK: true},
		{name: "retry-min", dst: &s.retryMin, parse: parseDuration, min: time.Millisecond},
		{name: "retry-max", dst: &s.retryMax, parse: parseDuration, min: time.Millisecond},
	}
	for _, d := range durations {
		v, origin, ok := c.given(p, cfg, d.name)
		if !ok {
			continue
		}
		val, err := d.parse(v)
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
			return nil, invalidSetting(d.name, v, origin, err)
		}
		*d.dst = val
		s.noteOrigin(d.name, origin)
	}
	if v, origin, ok := c.given(p, cfg, "ip-check-url"); ok {
		u, err := parseCheckURL(v)
		if err != nil {
			return nil, invalidSetting("ip-check-url", redactUserinfo(v), origin, err)
		}
		s.ipCheckURL = u
		s.noteOrigin("ip-check-url", origin)
		// knocker-cli polled its lookup service every 5 minutes unless
		// told otherwise, and took 0 for that default too.
		if _, _, layer := c.lookup(p, cfg, "check-interval"); layer == layerDefault || s.checkInterval == 0 {
			s.checkInterval = legacyCheckInterval
		}
	}
	if s.retryMax < s.retryMin {
		return nil, usageErr("retry-max (%s) is shorter than retry-min (%s)", s.retryMax, s.retryMin)
	}
	if v, origin, ok := c.given(p, cfg, "ip"); ok {
		v = strings.TrimSpace(v)
		if _, err := netip.ParseAddr(v); err != nil {
			if _, err := netip.ParsePrefix(v); err != nil {
				return nil, invalidSetting("ip", v, origin, errors.New("not an IP address or CIDR range"))
			}
		}
		if s.family == familyBoth {
			return nil, usageErr("--ip whitelists a fixed address, so --family both does not apply: use --family 4, 6 or auto")
		}
		s.ip = v
		s.noteOrigin("ip", origin)
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

// invalidSetting says which setting is wrong, where it came from and why;
// shown is its value, with any password hidden.
func invalidSetting(name, shown, origin string, err error) *cmdError {
	return usageErr("invalid %s %q (from %s): %v", name, shown, origin, err)
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}
