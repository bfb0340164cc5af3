package knocker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
)

// Accept headers as browsers send them on a page navigation, and on a
// subresource.
const (
	chromeNavigation  = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
	firefoxNavigation = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	chromeImage       = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
)

func TestPrefersHTML(t *testing.T) {
	for _, tc := range []struct {
		accept []string
		want   bool
	}{
		{[]string{chromeNavigation}, true},
		{[]string{firefoxNavigation}, true},
		{[]string{"application/xhtml+xml"}, true},
		{[]string{"TEXT/HTML"}, true},
		{[]string{"application/json;q=0.5, text/html"}, true},
		{[]string{"text/html; Q=0.8, */*;q=0.8"}, true},      // a tie counts
		{[]string{"text/html;level=1;q=1.0, */*;q=1"}, true}, // other parameters
		{[]string{"application/json;q=0.1", "text/html"}, true},
		{[]string{"text/html,,"}, true}, // empty list elements
		{nil, false},
		{[]string{""}, false},
		{[]string{"*/*"}, false}, // fetch(), curl
		{[]string{"text/*"}, false},
		{[]string{chromeImage}, false},
		{[]string{"application/json"}, false},
		{[]string{"text/html;q=0.5, application/json"}, false},
		{[]string{"text/html;q=0.8,*/*;q=0.9"}, false},
		{[]string{"text/html;q=0"}, false},
		{[]string{"text/html;q=0.000, */*;q=0"}, false},
		{[]string{"text/html;q=1.5"}, false},
		{[]string{"text/html;q=1.001"}, false},
		{[]string{"text/html;q=0.0001"}, false},
		{[]string{"text/html;q=abc"}, false},
		{[]string{"text/html;q="}, false},
		{[]string{"text/html, garbage"}, false}, // a header that does not parse
	} {
		if got := prefersHTML(tc.accept); got != tc.want {
			t.Errorf("prefersHTML(%q) = %v, want %v", tc.accept, got, tc.want)
		}
	}
}

func TestParseDenyRedirect(t *testing.T) {
	for raw, want := range map[string]string{
		"https://knock.example.com/":                  "https://knock.example.com/?return=X",
		"https://knock.example.com":                   "https://knock.example.com/?return=X",
		"HTTPS://knock.example.com/?":                 "https://knock.example.com/?return=X",
		"http://127.0.0.1:8080/app?from=media&x=a%2F": "http://127.0.0.1:8080/app?from=media&x=a%2F&return=X",
		"https://knock.example.com/#top":              "https://knock.example.com/?return=X#top",
	} {
		d, err := parseDenyRedirect(raw)
		if err != nil {
			t.Errorf("%q: %v", raw, err)
			continue
		}
		if got := d.prefix + "X" + d.suffix; got != want {
			t.Errorf("%q: redirects to %q, want %q", raw, got, want)
		}
	}
	for raw, want := range map[string]string{
		"/knock":                              "absolute http or https URL",
		"knock.example.com":                   "absolute http or https URL",
		"ftp://knock.example.com/":            "absolute http or https URL",
		"javascript:alert(1)":                 "absolute http or https URL",
		"https:///path":                       "absolute http or https URL",
		"https://u:p@knock.example.com":       "credentials",
		"https://knock.example.com/?return=x": `"return" parameter`,
		"https://knock.example.com/?a=%zz":    "malformed query",
		"https://knock.example.com/%zz":       "is not a URL",
	} {
		if _, err := parseDenyRedirect(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to contain %q", raw, err, want)
		}
	}
}

// The return URL is the one the client asked for: its scheme, Host, and
// the request target as sent, before any rewrite.
func TestRequestedURL(t *testing.T) {
	trusted := func(r *http.Request, yes bool) *http.Request {
		return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: yes}))
	}
	r := httptest.NewRequest(http.MethodGet, "http://media.example.com:8096/web/index.html?a=1&b=%2F", nil)
	r.RequestURI = "/web/index.html?a=1&b=%2F"
	plain := trusted(r, false)
	plain.Header.Set("X-Forwarded-Proto", "https") // from a client: ignored
	viaProxy := trusted(r.Clone(r.Context()), true)
	viaProxy.Header.Set("X-Forwarded-Proto", "HTTPS, http")
	proxyHTTP := trusted(r.Clone(r.Context()), true)
	proxyHTTP.Header.Set("X-Forwarded-Proto", "http")
	overTLS := trusted(r.Clone(r.Context()), false)
	overTLS.TLS = &tls.ConnectionState{HandshakeComplete: true}
	rewritten := trusted(r.Clone(r.Context()), false)
	rewritten.RequestURI = "/rewritten"
	rewritten = rewritten.WithContext(context.WithValue(rewritten.Context(), caddyhttp.OriginalRequestCtxKey, http.Request{RequestURI: "/web/index.html?a=1&b=%2F"}))
	absoluteForm := trusted(r.Clone(r.Context()), false)
	absoluteForm.RequestURI = "http://media.example.com:8096/web/index.html?a=1&b=%2F"

	const path = "media.example.com:8096/web/index.html?a=1&b=%2F"
	for name, tc := range map[string]struct {
		r    *http.Request
		want string
	}{
		"plain HTTP, a client's X-Forwarded-Proto": {plain, "http://" + path},
		"X-Forwarded-Proto from a trusted proxy":   {viaProxy, "https://" + path},
		"a trusted proxy's plain HTTP":             {proxyHTTP, "http://" + path},
		"TLS":                                      {overTLS, "https://" + path},
		"rewritten by an earlier handler":          {rewritten, "http://" + path},
		"absolute-form request target":             {absoluteForm, "http://" + path},
	} {
		if got, ok := requestedURL(tc.r); !ok || got != tc.want {
			t.Errorf("%s: %q (%v), want %q", name, got, ok, tc.want)
		}
	}
	noHost := trusted(r.Clone(r.Context()), false)
	noHost.Host = ""
	if got, ok := requestedURL(noHost); ok {
		t.Errorf("no Host: %q, want no URL (no redirect)", got)
	}
}

// TestGateDenyRedirectWithoutCaddy checks the gate's decisions with a
// deny redirect: only a denied browser navigation is redirected.
func TestGateDenyRedirectWithoutCaddy(t *testing.T) {
	g := newBenchGate(t)
	var err error
	if g.redirect, err = parseDenyRedirect("https://knock.example.com/?from=gate"); err != nil {
		t.Fatal(err)
	}
	serve := func(method, client, accept string) (*httptest.ResponseRecorder, error, bool) {
		t.Helper()
		r := gateRequest(client)
		r.Method = method
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		passed := false
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil })
		w := httptest.NewRecorder()
		return w, g.ServeHTTP(w, r, next), passed
	}
	deniedWith := func(err error, status int) bool {
		var he caddyhttp.HandlerError
		return errors.As(err, &he) && he.StatusCode == status
	}

	if w, err, passed := serve(http.MethodGet, "203.0.113.7", chromeNavigation); err != nil || !passed || w.Header().Get("Location") != "" {
		t.Fatalf("whitelisted browser: passed %v, %v, Location %q", passed, err, w.Header().Get("Location"))
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		w, err, passed := serve(method, "203.0.113.8", firefoxNavigation)
		want := "https://knock.example.com/?from=gate&return=" + url.QueryEscape("http://example.com/app/page")
		if err != nil || passed || w.Code != http.StatusSeeOther || w.Header().Get("Location") != want {
			t.Fatalf("%s by a denied browser: %v, passed %v, %d %q; want 303 to %q", method, err, passed, w.Code, w.Header().Get("Location"), want)
		}
		if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Vary") != "Accept" || w.Body.Len() != 0 {
			t.Fatalf("%s redirect: headers %v, body %q", method, w.Header(), w.Body)
		}
	}
	w, err, _ := serve(http.MethodGet, "203.0.113.8", "application/json")
	if !deniedWith(err, http.StatusUnauthorized) || w.Header().Get("Vary") != "Accept" {
		t.Fatalf("denied API GET: %v, Vary %q; want the 401 error, varying by Accept", err, w.Header().Get("Vary"))
	}
	w, err, _ = serve(http.MethodPost, "203.0.113.8", chromeNavigation)
	if !deniedWith(err, http.StatusUnauthorized) || w.Header().Get("Location") != "" {
		t.Fatalf("denied POST: %v, Location %q; want the 401 error", err, w.Header().Get("Location"))
	}
	// Knocking cannot help a client without a usable address.
	if _, err, _ := serve(http.MethodGet, "not-an-ip", chromeNavigation); !deniedWith(err, http.StatusUnauthorized) {
		t.Fatalf("no client IP: %v, want the 401 error", err)
	}
}

// discardWriter is a ResponseWriter whose header is cleared between uses.
type discardWriter http.Header

func (w discardWriter) Header() http.Header         { return http.Header(w) }
func (w discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w discardWriter) WriteHeader(int)             {}

// BenchmarkGateDenyRedirect is the gate's cost for a denied browser
// navigation that it redirects.
func BenchmarkGateDenyRedirect(b *testing.B) {
	g := newBenchGate(b)
	var err error
	if g.redirect, err = parseDenyRedirect("https://knock.example.com/"); err != nil {
		b.Fatal(err)
	}
	r := gateRequest("203.0.113.8")
	r.Header.Set("Accept", chromeNavigation)
	w := discardWriter{}
	b.ReportAllocs()
	for b.Loop() {
		clear(w)
		_ = g.ServeHTTP(w, r, okHandler)
	}
}

// portalSite is a gated site whose denials browsers are redirected from,
// with handle_errors for the others, and the knock API with return_hosts.
const portalSite = `
	knock {
		return_hosts knock.test *.example.com
	}
	knocker {
		deny redirect "https://knock.example.com/app?from=gate#top"
	}
	respond "` + privateBody + `"
	handle_errors 401 {
		respond "Knock first ({err.status_code})"
	}`

// TestGateDenyRedirect runs the redirect decisions in Caddy: the return
// URL is the requested URL exactly, only denied page navigations are
// redirected, everything else reaches handle_errors as before.
func TestGateDenyRedirect(t *testing.T) {
	h := startCaddy(t, "", portalSite)
	const client = "203.0.113.90"
	const target = "/private/page?x=1&y=a%2Fb&z=%C3%A9+q"
	nav := map[string]string{"Accept": chromeNavigation}
	redirectFor := func(back string) string {
		return "https://knock.example.com/app?from=gate&return=" + url.QueryEscape(back) + "#top"
	}

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		r := h.do(request{method: method, path: target, client: client, headers: nav})
		if r.status != http.StatusSeeOther || r.header.Get("Location") != redirectFor("http://knock.test"+target) {
			t.Fatalf("%s by a browser: %d %q, want 303 to %q", method, r.status, r.header.Get("Location"), redirectFor("http://knock.test"+target))
		}
		if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Vary") != "Accept" || r.body != "" {
			t.Fatalf("%s redirect: headers %v, body %q", method, r.header, r.body)
		}
	}
	loc, err := url.Parse(h.do(request{path: target, client: client, headers: nav}).header.Get("Location"))
	if err != nil || loc.Query().Get("return") != "http://knock.test"+target || loc.Query().Get("from") != "gate" {
		t.Fatalf("the redirect's query does not decode to the requested URL: %v %v", loc, err)
	}

	// A TLS-terminating proxy's X-Forwarded-Proto counts; a client's does not.
	https := map[string]string{"Accept": firefoxNavigation, "X-Forwarded-Proto": "https"}
	if got := h.do(request{path: "/p", client: client, headers: https}).header.Get("Location"); got != redirectFor("https://knock.test/p") {
		t.Fatalf("behind a trusted TLS proxy: Location %q", got)
	}
	if got := h.do(request{path: "/p", peer: untrustedIP4, headers: https}).header.Get("Location"); got != redirectFor("http://knock.test/p") {
		t.Fatalf("a client's own X-Forwarded-Proto: Location %q", got)
	}

	for name, req := range map[string]request{
		"API GET":              {path: target, client: client, headers: map[string]string{"Accept": "application/json"}},
		"fetch() GET (*/*)":    {path: target, client: client, headers: map[string]string{"Accept": "*/*"}},
		"no Accept":            {path: target, client: client},
		"HTML ranked lower":    {path: target, client: client, headers: map[string]string{"Accept": "text/html;q=0.5, application/json"}},
		"image":                {path: target, client: client, headers: map[string]string{"Accept": chromeImage}},
		"POST from a browser":  {method: http.MethodPost, path: target, client: client, headers: nav},
		"no usable client IP":  {path: target, client: "garbage", headers: nav},
		"PUT with HTML Accept": {method: http.MethodPut, path: target, client: client, headers: nav},
	} {
		r := h.do(req)
		if r.status != http.StatusUnauthorized || r.body != "Knock first (401)" || r.header.Get("Location") != "" {
			t.Errorf("%s: %d %q, Location %q; want the handle_errors page", name, r.status, r.body, r.header.Get("Location"))
		}
	}
	// A request that carried a knocker key is answered as before: by the
	// gate itself, never redirected.
	r := h.do(request{path: target, client: client, key: adminSecret, headers: nav})
	if r.status != http.StatusUnauthorized || r.body != "Unauthorized\n" || r.header.Get("Location") != "" {
		t.Fatalf("with a knocker key: %d %q %q", r.status, r.body, r.header.Get("Location"))
	}

	expectStatus(t, h.knock(client, phoneSecret, ""), http.StatusOK, "knock")
	r = h.do(request{path: target, client: client, headers: nav})
	if r.status != http.StatusOK || r.body != privateBody || r.header.Get("Location") != "" {
		t.Fatalf("after the knock: %d %q, want the page", r.status, r.body)
	}
}

func TestKnockPortalEndpoint(t *testing.T) {
	h := startCaddy(t, "", portalSite)
	r := h.do(request{path: "/knock/portal"})
	if r.status != http.StatusOK || r.body != `{"return_hosts":["knock.test","*.example.com"]}` {
		t.Fatalf("/knock/portal: %d %q", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("/knock/portal headers: %v", r.header)
	}
	expectStatus(t, h.do(request{method: http.MethodPost, path: "/knock/portal"}), http.StatusMethodNotAllowed, "POST /knock/portal")

	h = startCaddy(t, "", defaultSite)
	if r := h.do(request{path: "/knock/portal"}); r.body != `{"return_hosts":[]}` {
		t.Fatalf("/knock/portal without return_hosts: %q", r.body)
	}
}

// Bad deny_redirect and return_hosts values are config errors naming the
// field, in the Caddyfile (with its line) and in JSON.
func TestPortalConfigErrors(t *testing.T) {
	setKeyEnv(t)
	dir := t.TempDir()
	for site, want := range map[string]string{
		"knocker {\n\t\tdeny redirect /knock\n\t}":              "deny redirect: want an absolute http or https URL",
		"knocker {\n\t\tdeny redirect\n\t}":                     "deny: want deny status <code> or deny redirect <url>",
		"knocker {\n\t\tdeny page https://k.example/\n\t}":      "got deny page",
		"knocker {\n\t\tdeny status 302\n\t}":                   "deny status: want a 4xx or 5xx status code",
		"knock {\n\t\treturn_hosts media.example.com:8096\n\t}": `return_hosts: "media.example.com:8096": give the host without a port`,
		"knock {\n\t\treturn_hosts\n\t}":                        "wrong argument count",
	} {
		testcaddy.AssertLoadError(t, config(t, dir, "", site), "caddyfile", want)
	}

	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config(t, dir, "", portalSite)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{
		`"deny_redirect":"https://knock.example.com/app?from=gate#top"`: `"deny_redirect":"ftp://knock.example.com/"`,
		`"return_hosts":["knock.test","*.example.com"]`:                 `"return_hosts":["knock.test","*"]`,
	} {
		if !bytes.Contains(adapted, []byte(from)) {
			t.Fatalf("the adapted config has no %s:\n%s", from, adapted)
		}
		want := "deny_redirect: want an absolute http or https URL"
		if strings.HasPrefix(from, `"return_hosts"`) {
			want = `return_hosts[1]: "*"`
		}
		testcaddy.AssertLoadError(t, string(bytes.Replace(adapted, []byte(from), []byte(to), 1)), "json", want)
	}
}
