package knocker

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium, or skips (fails when the test
// command made the browser mandatory).
func chromiumPath(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("KNOCKER_REQUIRE_BROWSER") != "" {
		t.Fatal("chromium is not installed, but KNOCKER_REQUIRE_BROWSER is set")
	}
	t.Skip("chromium is not installed (apt-get install chromium); scripts/test.sh installs it when run as root")
	return ""
}

// browser starts a headless chromium with a fresh profile, and further
// options.
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	// Not t.TempDir: chromium's helper processes may still write to the
	// profile for a moment after the browser was told to quit.
	profile, err := os.MkdirTemp("", "knocker-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1024, 900),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc() // waits for the browser process to exit
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", profile)
	})
	return ctx
}

func awaitPromise(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil { // quality 100: PNG
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestWebAppInChromium drives the embedded web app in a real browser: the
// page comes from Caddy, the browser knocks from ::1 (not a trusted proxy,
// so it is its own client), and the protected site then answers it.
func TestWebAppInChromium(t *testing.T) {
	ctx := browser(t)
	startCaddyWithSites(t, t.TempDir(), "", "knock", fmt.Sprintf(`http://:%d {
	knocker
	respond %q
}`, secondSitePort, privateBody))
	app := fmt.Sprintf("http://[::1]:%d/", httpPort)
	text := func(sel string) string {
		var s string
		if err := chromedp.Run(ctx, chromedp.Text(sel, &s, chromedp.ByID)); err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	waitText := func(sel, want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(text(sel), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s shows %q, want it to contain %q", sel, text(sel), want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	storedKey := func() string {
		var v any
		if err := chromedp.Run(ctx, chromedp.Evaluate(`localStorage.getItem("knocker.key")`, &v)); err != nil {
			t.Fatal(err)
		}
		s, _ := v.(string)
		return s
	}

	if err := chromedp.Run(ctx, chromedp.Navigate(app), chromedp.WaitVisible("#key", chromedp.ByID)); err != nil {
		t.Fatal(err)
	}
	waitText("my-ip", "::1")
	waitText("my-state", "Not whitelisted.")

	// A wrong key: a clear message, nothing stored.
	if err := chromedp.Run(ctx,
		chromedp.SendKeys("#key", "not-the-key", chromedp.ByID),
		chromedp.Click("#knock", chromedp.ByID),
		chromedp.WaitVisible("#error", chromedp.ByID),
	); err != nil {
		t.Fatal(err)
	}
	waitText("error-text", "did not accept this key")

	// The right key, not remembered.
	if err := chromedp.Run(ctx,
		chromedp.SetValue("#key", adminSecret, chromedp.ByID),
		chromedp.SetValue("#ttl", "14400", chromedp.ByID), // above admin's 1h max_ttl
		chromedp.Click("#knock", chromedp.ByID),
		chromedp.WaitVisible("#result", chromedp.ByID),
	); err != nil {
		t.Fatal(err)
	}
	waitText("result-title", "Access open")
	waitText("result-entry", "::1")
	waitText("result-note", "capped")
	if cd := text("countdown"); !regexp.MustCompile(`^(59|60):\d\d$`).MatchString(cd) {
		t.Fatalf("countdown %q, want about an hour", cd)
	}
	waitText("my-state", "Whitelisted (::1)")
	if k := storedKey(); k != "" {
		t.Fatal("the key was stored although the user did not opt in")
	}
	var href string
	if err := chromedp.Run(ctx, chromedp.Location(&href)); err != nil || strings.Contains(href, adminSecret) {
		t.Fatalf("location %q (err %v): the key must never be in the URL", href, err)
	}
	screenshot(t, ctx, "webapp-knocked.png")

	// The protected site now answers this browser.
	var body string
	if err := chromedp.Run(ctx, chromedp.Navigate(fmt.Sprintf("http://[::1]:%d/", secondSitePort)), chromedp.Text("body", &body, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, privateBody) {
		t.Fatalf("protected site after the knock: %q", body)
	}

	// The remote field: refused for a key without the permission, granted
	// for the admin key (canonical entry shown).
	if err := chromedp.Run(ctx,
		chromedp.Navigate(app), chromedp.WaitVisible("#key", chromedp.ByID),
		chromedp.Click("#remote summary", chromedp.ByQuery),
		chromedp.SetValue("#ip", "198.51.100.77/24", chromedp.ByID),
		chromedp.SetValue("#key", guestSecret, chromedp.ByID),
		chromedp.Click("#knock", chromedp.ByID),
		chromedp.WaitVisible("#error", chromedp.ByID),
	); err != nil {
		t.Fatal(err)
	}
	waitText("error-text", "may only whitelist your own address")
	if err := chromedp.Run(ctx,
		chromedp.SetValue("#key", adminSecret, chromedp.ByID),
		chromedp.Click("#knock", chromedp.ByID),
	); err != nil {
		t.Fatal(err)
	}
	waitText("result-entry", "198.51.100.0/24")

	// Opt in: the key is kept on the device, and reloading knocks again.
	if err := chromedp.Run(ctx,
		chromedp.Navigate(app), chromedp.WaitVisible("#key", chromedp.ByID),
		chromedp.SetValue("#key", phoneSecret, chromedp.ByID),
		chromedp.Click("#remember", chromedp.ByID),
		chromedp.Click("#knock", chromedp.ByID),
		chromedp.WaitVisible("#result", chromedp.ByID),
	); err != nil {
		t.Fatal(err)
	}
	if storedKey() != phoneSecret {
		t.Fatal("the opted-in key was not stored")
	}
	if err := chromedp.Run(ctx, chromedp.Reload(), chromedp.WaitVisible("#result", chromedp.ByID)); err != nil {
		t.Fatalf("no knock on reload with a saved key: %v", err)
	}
	waitText("result-entry", "::1")

	// Installable: manifest and an active service worker; the shell opens offline.
	var swActive bool
	if err := chromedp.Run(ctx, chromedp.Evaluate(`navigator.serviceWorker.ready.then(r => r.active !== null)`, &swActive, awaitPromise)); err != nil || !swActive {
		t.Fatalf("service worker not active: %v", err)
	}
	var manifestOK bool
	if err := chromedp.Run(ctx, chromedp.Evaluate(`fetch("/manifest.webmanifest").then(r => r.json()).then(m => m.display === "standalone" && m.icons.some(i => i.sizes === "512x512"))`, &manifestOK, awaitPromise)); err != nil || !manifestOK {
		t.Fatalf("manifest: %v", err)
	}
	if err := chromedp.Run(ctx,
		network.Enable(),
		network.EmulateNetworkConditions(true, 0, -1, -1),
		chromedp.Reload(),
		chromedp.WaitVisible("#key", chromedp.ByID),
	); err != nil {
		t.Fatalf("app shell offline: %v", err)
	}
	waitText("error-text", "Cannot reach the knock server")
	if err := chromedp.Run(ctx, network.EmulateNetworkConditions(false, 0, -1, -1)); err != nil {
		t.Fatal(err)
	}

	// A phone-sized screen: no sideways scrolling.
	var fits bool
	if err := chromedp.Run(ctx,
		chromedp.EmulateViewport(390, 844),
		chromedp.Reload(), chromedp.WaitVisible("#result", chromedp.ByID),
		chromedp.Evaluate(`document.documentElement.scrollWidth <= window.innerWidth`, &fits),
	); err != nil || !fits {
		t.Fatalf("page wider than a phone screen (err %v)", err)
	}
	screenshot(t, ctx, "webapp-phone.png")
}

// TestWebAppServing checks the served files and the web off switch.
func TestWebAppServing(t *testing.T) {
	h := startCaddy(t, "", "knock")
	r := h.do(request{path: "/"})
	if r.status != 200 || !strings.Contains(r.body, "<title>Knocker</title>") {
		t.Fatalf("GET /: %d", r.status)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
	for path, ctype := range map[string]string{
		"/app.js": "text/javascript", "/app.css": "text/css", "/sw.js": "text/javascript",
		"/manifest.webmanifest": "application/manifest+json", "/icon-192.png": "image/png", "/icon.svg": "image/svg+xml",
	} {
		r := h.do(request{path: path})
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), ctype) {
			t.Errorf("%s: %d %q", path, r.status, r.header.Get("Content-Type"))
		}
		again := h.do(request{path: path, headers: map[string]string{"If-None-Match": r.header.Get("ETag")}})
		if again.status != http.StatusNotModified {
			t.Errorf("%s with its ETag: %d, want 304", path, again.status)
		}
	}
	// Nothing external: every URL the page loads is same-origin.
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(h.do(request{path: "/"}).body, -1) {
		if !strings.HasPrefix(m[1], "/") || strings.HasPrefix(m[1], "//") {
			t.Errorf("the page loads %q from elsewhere", m[1])
		}
	}

	h = startCaddy(t, "", "knock {\n\t\tweb off\n\t}\n\trespond \"app\"")
	if r := h.do(request{path: "/"}); r.body != "app" {
		t.Fatalf("web off: / answered %q, want the next handler", r.body)
	}
}
