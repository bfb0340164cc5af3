package knocker

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The knock portal: with deny_redirect, the gate answers a browser it does
// not let in with a redirect to the knock web app, which knocks and sends
// the browser back (see returnhosts.go for the app's side). Only page
// navigations are redirected; an API client, an image or a script still
// gets the deny status, which handle_errors can render.

// portalRedirectStatus is the redirect's status: 303 says "fetch this
// other page with GET", which is what the browser must do.
const portalRedirectStatus = http.StatusSeeOther

// returnParam is the query parameter that carries the URL to go back to.
const returnParam = "return"

// denyRedirect is a provisioned deny_redirect URL, split around the place
// where the return URL goes, so that a redirect costs one concatenation.
type denyRedirect struct {
	prefix string // the URL up to and including "return="
	suffix string // its fragment, "#..." or ""
}

// parseDenyRedirect checks a deny_redirect URL: absolute http or https,
// with a host, no credentials, and no return parameter of its own. The
// caller names the field in the error.
func parseDenyRedirect(raw string) (*denyRedirect, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("want an absolute http or https URL such as https://knock.example.com/, got %q", raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q carries credentials; a redirect would show them to every client", raw)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%q has a malformed query: %v", raw, err)
	}
	if q.Has(returnParam) {
		return nil, fmt.Errorf("%q already has a %q parameter, which the gate sets", raw, returnParam)
	}
	d := &denyRedirect{}
	if u.Fragment != "" {
		d.suffix = "#" + u.EscapedFragment()
	}
	u.Fragment, u.RawFragment = "", ""
	if u.Path == "" {
		u.Path = "/"
	}
	sep := "?"
	switch {
	case u.RawQuery != "":
		sep = "&"
	case u.ForceQuery:
		sep = ""
	}
	d.prefix = u.String() + sep + returnParam + "="
	return d, nil
}

// serve redirects r to the web app if it is a browser's page navigation,
// and reports whether it did. Either way the answer depends on Accept,
// which Vary says.
func (d *denyRedirect) serve(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Accept")
	if !prefersHTML(r.Header.Values("Accept")) {
		return false
	}
	back, ok := requestedURL(r)
	if !ok {
		return false
	}
	h.Set("Location", d.prefix+url.QueryEscape(back)+d.suffix)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(portalRedirectStatus)
	return true
}

// requestedURL is the absolute URL r asked for, as the client sent it:
// scheme, Host, and the request target before any rewrite. The scheme is
// https for TLS and, from a trusted proxy only, when X-Forwarded-Proto
// says so (a TLS-terminating proxy in front); a client's own
// X-Forwarded-Proto is ignored, as Caddy's reverse_proxy ignores it.
func requestedURL(r *http.Request) (string, bool) {
	if r.Host == "" {
		return "", false
	}
	scheme := "http"
	if r.TLS != nil || isTrustedProxy(r) && forwardedHTTPS(r) {
		scheme = "https"
	}
	target := r.RequestURI
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		target = orig.RequestURI
	}
	if !strings.HasPrefix(target, "/") { // absolute-form, or not from a server
		target = r.URL.RequestURI()
	}
	return scheme + "://" + r.Host + target, true
}

// forwardedHTTPS reports whether the first proxy's X-Forwarded-Proto is https.
func forwardedHTTPS(r *http.Request) bool {
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}

// prefersHTML reports whether the Accept header values rank an HTML type
// (text/html, application/xhtml+xml) with q > 0 at least as high as every
// other media range: what browsers send when they navigate to a page. */*
// alone (fetch, curl) is no navigation, nor is a header that does not parse.
func prefersHTML(values []string) bool {
	var html, other int // q-values in thousandths
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mediaRange, params, _ := strings.Cut(part, ";")
			mediaRange = strings.TrimSpace(mediaRange)
			if mediaRange == "" && strings.TrimSpace(params) == "" {
				continue // empty list element, which RFC 9110 allows
			}
			if !strings.Contains(mediaRange, "/") {
				return false
			}
			q, ok := acceptQ(params)
			if !ok {
				return false
			}
			if strings.EqualFold(mediaRange, "text/html") || strings.EqualFold(mediaRange, "application/xhtml+xml") {
				html = max(html, q)
			} else {
				other = max(other, q)
			}
		}
	}
	return html > 0 && html >= other
}

// acceptQ returns the q-value (in thousandths) of a media range's
// parameters, 1000 without one.
func acceptQ(params string) (int, bool) {
	for p := range strings.SplitSeq(params, ";") {
		name, value, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(name), "q") {
			return parseQValue(strings.TrimSpace(value))
		}
	}
	return 1000, true
}

// parseQValue parses RFC 9110's qvalue: 0, 1, or 0./1. with up to three
// decimals (1's only zeros).
func parseQValue(s string) (int, bool) {
	if s == "" || len(s) > 5 || s[0] != '0' && s[0] != '1' {
		return 0, false
	}
	n := int(s[0]-'0') * 1000
	if len(s) == 1 {
		return n, true
	}
	if s[1] != '.' {
		return 0, false
	}
	scale := 100
	for _, c := range s[2:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n += int(c-'0') * scale
		scale /= 10
	}
	return n, n <= 1000
}

// unmarshalDeny reads the gate's deny subdirective, on which d is
// positioned: deny status <code> (deny_status) or deny redirect <url>.
func (g *Gate) unmarshalDeny(d *caddyfile.Dispenser) error {
	var form, arg string
	if !d.AllArgs(&form, &arg) {
		return d.Errf("deny: want deny status <code> or deny redirect <url>")
	}
	if form == "status" {
		code, err := denyStatusCode(d, "deny status", arg)
		g.DenyStatus = code
		return err
	}
	if form != "redirect" {
		return d.Errf("deny: want deny status <code> or deny redirect <url>, got deny %s", form)
	}
	if _, err := parseDenyRedirect(arg); err != nil {
		return d.Errf("deny redirect: %v", err) // now, so that a typo fails with its line
	}
	g.DenyRedirect = arg
	return nil
}

// denyStatusCode parses the deny status code s of the subdirective name.
func denyStatusCode(d *caddyfile.Dispenser, name, s string) (int, error) {
	code, err := strconv.Atoi(s)
	if err != nil || code < 400 || code > 599 {
		return 0, d.Errf("%s: want a 4xx or 5xx status code, got %q", name, s)
	}
	return code, nil
}
