package testutil

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestPreambleRendersEveryOptionInOrder(t *testing.T) {
	got := Preamble{
		Admin:            "localhost:12019",
		HTTPPort:         8080,
		HTTPSPort:        8443,
		SkipInstallTrust: true,
		DefaultBind:      "127.0.0.1 [::1]",
		GracePeriod:      "1s",
		LogFile:          "/tmp/caddy.log",
		LogLevel:         "DEBUG",
		TrustedProxies:   "127.0.0.1/32",
		Knocker: &Knocker{
			WhitelistFile: "/tmp/whitelist.json",
			MaxEntries:    1000,
			Keys: []Key{
				{Name: "admin", Secret: "{env.ADMIN}", MaxTTL: "1h", AllowRemoteWhitelist: true},
				{Name: "phone", Secret: "phone-secret", MaxTTL: "4h"},
			},
			RateLimitsOff: true,
			Extra:         "firewalld {\n\t\t\tzone public\n\t\t}",
		},
	}.String()
	want := `{
	admin localhost:12019
	http_port 8080
	https_port 8443
	skip_install_trust
	default_bind 127.0.0.1 [::1]
	grace_period 1s
	log {
		output file /tmp/caddy.log
		level DEBUG
	}
	servers {
		trusted_proxies static 127.0.0.1/32
		trusted_proxies_strict
	}
	knocker {
		whitelist_file /tmp/whitelist.json
		max_entries 1000
		key admin {env.ADMIN} {
			max_ttl 1h
			allow_remote_whitelist
		}
		key phone phone-secret {
			max_ttl 4h
		}
		rate_limit {
			success 0
			failure 0
		}
		firewalld {
			zone public
		}
	}
}
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got, want := (Preamble{Admin: "off"}).String(), "{\n\tadmin off\n}\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestDoReadsTheWholeAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen", r.Header.Get("X-Forwarded-For"))
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte("short and stout"))
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.1")
	r := MustDo(t, srv.Client(), req)
	if r.Status != http.StatusTeapot || r.Body != "short and stout" || r.Header.Get("X-Seen") != "203.0.113.1" {
		t.Fatalf("got %+v", r)
	}
	if status, body := Get(t, srv.Client(), srv.URL); status != http.StatusTeapot || body != "short and stout" {
		t.Fatalf("Get: %d %q", status, body)
	}
	srv.Close()
	if _, err := Do(srv.Client(), req); err == nil {
		t.Fatal("Do on a closed server: no error")
	}
}
