// Package testutil holds what the tests of several packages share that
// needs no running Caddy of its own: the global options block of their test
// Caddyfiles (Preamble) and plain HTTP requests that read the whole answer
// (Do, MustDo, Get). The in-process Caddy is internal/testcaddy's; ports
// are internal/testports'.
//
// Tests import it, and cmd/knocker-bench, which starts Caddy as the tests
// do. It uses the standard library alone (so the CLI's tests and the
// benchmark may use it) and never imports the knocker package, whose tests
// import it.
package testutil

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Preamble is the global options block of a test Caddyfile. The zero value
// of a field leaves its option out. String renders the block, one option a
// line in the order of the fields, indented with tabs as Caddy's own
// examples are (tests may edit the text, e.g. remove
// "\t\ttrusted_proxies_strict\n").
type Preamble struct {
	Admin            string // admin: an address or "off"; "" leaves Caddy's default (or CADDY_ADMIN)
	HTTPPort         int    // http_port
	HTTPSPort        int    // https_port
	SkipInstallTrust bool   // skip_install_trust
	DefaultBind      string // default_bind: one or more addresses, "127.0.0.1 [::1]"
	GracePeriod      string // grace_period, "1s"
	LogFile          string // log { output file LogFile }
	LogLevel         string // with LogFile: its level, "DEBUG"
	// TrustedProxies are the ranges of servers { trusted_proxies static
	// ...; trusted_proxies_strict }: "127.0.0.1/32".
	TrustedProxies string
	Knocker        *Knocker // the knocker global option; nil leaves it out
}

// Knocker is the knocker global option of a Preamble.
type Knocker struct {
	WhitelistFile string // whitelist_file
	MaxEntries    int    // max_entries
	Keys          []Key
	RateLimitsOff bool // rate_limit { success 0 failure 0 }
	// Extra is put last, verbatim: its first line unindented, the others
	// indented as they are to stand (a subdirective by two tabs).
	Extra string
}

// Key is a key subdirective of the knocker global option.
type Key struct {
	Name   string
	Secret string // as the Caddyfile has it: literal, {env.NAME} or {file.PATH}
	MaxTTL string // max_ttl, "1h"
	// AllowRemoteWhitelist is allow_remote_whitelist: the key may knock for
	// another address ("ip_address").
	AllowRemoteWhitelist bool
}

// String renders the block, ending in a newline.
func (p Preamble) String() string {
	var b strings.Builder
	line := func(depth int, format string, args ...any) {
		b.WriteString(strings.Repeat("\t", depth))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	line(0, "{")
	if p.Admin != "" {
		line(1, "admin %s", p.Admin)
	}
	if p.HTTPPort != 0 {
		line(1, "http_port %d", p.HTTPPort)
	}
	if p.HTTPSPort != 0 {
		line(1, "https_port %d", p.HTTPSPort)
	}
	if p.SkipInstallTrust {
		line(1, "skip_install_trust")
	}
	if p.DefaultBind != "" {
		line(1, "default_bind %s", p.DefaultBind)
	}
	if p.GracePeriod != "" {
		line(1, "grace_period %s", p.GracePeriod)
	}
	if p.LogFile != "" {
		line(1, "log {")
		line(2, "output file %s", p.LogFile)
		if p.LogLevel != "" {
			line(2, "level %s", p.LogLevel)
		}
		line(1, "}")
	}
	if p.TrustedProxies != "" {
		line(1, "servers {")
		line(2, "trusted_proxies static %s", p.TrustedProxies)
		line(2, "trusted_proxies_strict")
		line(1, "}")
	}
	if k := p.Knocker; k != nil {
		line(1, "knocker {")
		if k.WhitelistFile != "" {
			line(2, "whitelist_file %s", k.WhitelistFile)
		}
		if k.MaxEntries != 0 {
			line(2, "max_entries %d", k.MaxEntries)
		}
		for _, key := range k.Keys {
			line(2, "key %s %s {", key.Name, key.Secret)
			if key.MaxTTL != "" {
				line(3, "max_ttl %s", key.MaxTTL)
			}
			if key.AllowRemoteWhitelist {
				line(3, "allow_remote_whitelist")
			}
			line(2, "}")
		}
		if k.RateLimitsOff {
			line(2, "rate_limit {")
			line(3, "success 0")
			line(3, "failure 0")
			line(2, "}")
		}
		if k.Extra != "" {
			line(2, "%s", k.Extra)
		}
		line(1, "}")
	}
	line(0, "}")
	return b.String()
}

// Response is an HTTP answer with its body read in full.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// Do sends req with c and reads the answer's whole body. err is a
// transport error, or one reading the body (then with the status, header
// and what was read). It fails no test, so load goroutines may use it.
func Do(c *http.Client, req *http.Request) (Response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}, err
}

// MustDo is Do, failing the test if the request or reading its answer
// fails.
func MustDo(t testing.TB, c *http.Client, req *http.Request) Response {
	t.Helper()
	r, err := Do(c, req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return r
}

// Get GETs url with c and returns the status and body, failing the test if
// that fails.
func Get(t testing.TB, c *http.Client, url string) (status int, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := MustDo(t, c, req)
	return r.Status, r.Body
}
