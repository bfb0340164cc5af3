package knocker

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// TestPortalInChromium drives the knock portal in a real browser: a
// protected site (media.test) redirects the browser to the knock app
// (knock.test), which knocks and sends it back; with a remembered key at
// once; never to a host off return_hosts, nor to a javascript: URL. The
// browser resolves both names to 127.0.0.1, which is no trusted proxy
// here, so it is its own client.
func TestPortalInChromium(t *testing.T) {
	ctx := browser(t, chromedp.Flag("host-resolver-rules", "MAP *.test 127.0.0.1"))
	dir := t.TempDir()
	setKeyEnv(t)
	t.Setenv("KNOCKER_TEST_FRIEND", friendSecret)
	t.Setenv("XDG_DATA_HOME", dir+"/data")
	t.Setenv("XDG_CONFIG_HOME", dir+"/config")
	knockApp := fmt.Sprintf("http://knock.test:%d/", httpPort)
	media := fmt.Sprintf("http://media.test:%d", secondSitePort)
	global := testutil.Preamble{
		Admin: testcaddy.AdminAddress(t), HTTPPort: httpPort, HTTPSPort: httpsPort,
		SkipInstallTrust: true, DefaultBind: "127.0.0.1", GracePeriod: "1s",
		LogFile: dir + "/caddy.log", LogLevel: "DEBUG",
		Knocker: &testutil.Knocker{WhitelistFile: dir + "/state/whitelist.json", Keys: testKeys,
			Extra: "key friend {env.KNOCKER_TEST_FRIEND} {\n\t\t\tmax_ttl 1h\n\t\t\tscopes media\n\t\t}"},
	}
	startWith(t, global.String()+fmt.Sprintf(`
http://knock.test:%[1]d {
	knock {
		return_hosts media.test games.test
	}
}
http://games.test:%[5]d {
	knocker {
		scope games
		deny redirect %[4]s
	}
	respond %[6]q
}
%[2]s, http://evil.test:%[3]d {
	knocker {
		deny redirect %[4]s
	}
	respond %[6]q
}
`, httpPort, media, secondSitePort, knockApp, secondSitePort, privateBody))

	// run runs actions; during a navigation, a failed read is retried by
	// the caller's poll.
	run := func(actions ...chromedp.Action) error { return chromedp.Run(ctx, actions...) }
	must := func(actions ...chromedp.Action) {
		t.Helper()
		if err := run(actions...); err != nil {
			t.Fatal(err)
		}
	}
	location := func() string {
		var href string
		_ = run(chromedp.Location(&href))
		return href
	}
	// waitFor polls cond: pages load and knock at their own pace on a busy
	// machine.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (at %s)", what, location())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	bodyShows := func(want string) func() bool {
		return func() bool {
			var body string
			return run(chromedp.Text("body", &body, chromedp.ByQuery)) == nil && strings.Contains(body, want)
		}
	}
	portalState := func(want string) func() bool {
		return func() bool {
			var state string
			return run(chromedp.Evaluate(`document.getElementById("portal").dataset.state || ""`, &state)) == nil && state == want
		}
	}
	knockAppWith := func(back string) string { return knockApp + "?return=" + url.QueryEscape(back) }
	// deniedByGate checks, outside the browser, that the gate now redirects
	// the browser's address.
	deniedByGate := func() {
		t.Helper()
		c := &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", secondSitePort))
			}},
		}
		req, _ := http.NewRequest(http.MethodGet, media+"/", nil)
		req.Header.Set("Accept", chromeNavigation)
		if r := testutil.MustDo(t, c, req); r.Status != http.StatusSeeOther {
			t.Fatalf("the gate answers the browser's address %d, want the redirect", r.Status)
		}
	}

	// Knocked out: the protected page sends the browser to the knock app,
	// which says where it will go back to.
	wanted := media + "/library/show?id=42&q=a%20b"
	deniedByGate()
	must(chromedp.Navigate(wanted), chromedp.WaitVisible("#portal", chromedp.ByID))
	if got := location(); got != knockAppWith(wanted) {
		t.Fatalf("redirected to %q, want %q", got, knockAppWith(wanted))
	}
	var href string
	must(chromedp.AttributeValue("#portal-link", "href", &href, nil, chromedp.ByID))
	if href != wanted {
		t.Fatalf("the app will go back to %q, want %q", href, wanted)
	}
	screenshot(t, ctx, "portal-return.png")

	// Knock with the key, remembered: back on the page, which shows the content.
	must(
		chromedp.SendKeys("#key", phoneSecret, chromedp.ByID),
		chromedp.Click("#remember", chromedp.ByID),
		chromedp.Click("#knock", chromedp.ByID),
	)
	waitFor("the way back to the page", func() bool { return location() == wanted })
	waitFor("the page's content", bodyShows(privateBody))
	screenshot(t, ctx, "portal-back.png")

	// The grant expires; with the remembered key the way back is immediate.
	advanceClock(t, 2*time.Hour)
	deniedByGate()
	other := media + "/other"
	// Not chromedp.Navigate, which waits for the knock app's load event:
	// the app may already have knocked and left by then.
	must(chromedp.ActionFunc(func(ctx context.Context) error {
		_, _, errText, _, err := page.Navigate(other).Do(ctx)
		if err == nil && errText != "" {
			err = fmt.Errorf("navigating to %s: %s", other, errText)
		}
		return err
	}))
	waitFor("the immediate way back", func() bool { return location() == other })
	waitFor("the page's content after the immediate return", bodyShows(privateBody))

	// A host off return_hosts is knocked for, shown as a link, not followed.
	advanceClock(t, 2*time.Hour)
	offList := fmt.Sprintf("http://evil.test:%d/", secondSitePort)
	must(chromedp.Navigate(offList), chromedp.WaitVisible("#portal", chromedp.ByID))
	waitFor("the knock with the remembered key", portalState("stayed"))
	if got := location(); got != knockAppWith(offList) {
		t.Fatalf("an off-list return was followed: at %q", got)
	}
	must(chromedp.AttributeValue("#portal-link", "href", &href, nil, chromedp.ByID))
	if href != offList {
		t.Fatalf("off-list link %q, want %q", href, offList)
	}
	waitFor("the knock's result", bodyShows("Access open"))
	screenshot(t, ctx, "portal-off-list.png")

	// A javascript: return is shown as text, never a link, never run.
	evil := "javascript:document.title='pwned'"
	must(chromedp.Navigate(knockAppWith(evil)), chromedp.WaitVisible("#portal-raw", chromedp.ByID))
	waitFor("the knock with the remembered key", portalState("stayed"))
	var title string
	var links int
	must(
		chromedp.Title(&title),
		chromedp.Evaluate(`document.querySelectorAll('a[href^="javascript"]').length`, &links),
	)
	if got := location(); got != knockAppWith(evil) || title != "Knocker" || links != 0 {
		t.Fatalf("javascript: return: at %q, title %q, %d javascript links", got, title, links)
	}
	waitFor("the raw return shown", bodyShows(evil))
	screenshot(t, ctx, "portal-javascript.png")

	// A key whose scopes do not open the page: the knock succeeds, the page
	// sends the browser back, and the app stops there instead of looping.
	must(chromedp.Evaluate(`localStorage.clear()`, nil))
	advanceClock(t, 2*time.Hour) // the phone's grants expire
	games := fmt.Sprintf("http://games.test:%d/", secondSitePort)
	must(chromedp.Navigate(games), chromedp.WaitVisible("#portal", chromedp.ByID))
	must(
		chromedp.SendKeys("#key", friendSecret, chromedp.ByID),
		chromedp.Click("#remember", chromedp.ByID), // so that the app knocks again on its own when sent back
		chromedp.Click("#knock", chromedp.ByID),
	)
	waitFor("the app to stop the loop", portalState("looped"))
	if got := location(); got != knockAppWith(games) {
		t.Fatalf("after the loop guard: at %q, want the knock app", got)
	}
	screenshot(t, ctx, "portal-looped.png")
}
