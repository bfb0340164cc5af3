package knocker

import (
	"strings"
	"testing"
)

func TestNormalizeReturnHost(t *testing.T) {
	for in, want := range map[string]string{
		"media.example.com":    "media.example.com",
		"Media.Example.COM.":   "media.example.com",
		"*.example.com":        "*.example.com",
		"localhost":            "localhost",
		"_svc.example.com":     "_svc.example.com",
		"127.0.0.1":            "127.0.0.1",
		"::1":                  "[::1]",
		"[2001:DB8::0:1]":      "[2001:db8::1]",
		"xn--bcher-kva.test":   "xn--bcher-kva.test",
		"*.xn--bcher-kva.test": "*.xn--bcher-kva.test",
	} {
		if got, err := normalizeReturnHost(in); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                                "want a host name",
		"*":                               "is not allowed",
		"*.":                              "is not allowed",
		"a.*.example.com":                 "is not allowed",
		"*example.com":                    "is not allowed",
		"media.example.com:8443":          "without a port",
		"https://media.example.com":       "without a port",
		"bücher.test":                     "xn--",
		"a..example.com":                  "labels of 1 to 63",
		"127.1":                           "not an IP address",
		"*.0.0.1":                         "not an IP address",
		"fe80::1%eth0":                    "zone",
		"::ffff:192.0.2.1":                "write the IPv4 address 192.0.2.1",
		strings.Repeat("a", 64) + ".test": "labels of 1 to 63",
	} {
		if got, err := normalizeReturnHost(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %q, error %v; want an error containing %q", in, got, err, want)
		}
	}
	if _, err := parseReturnHosts([]string{"ok.example.com", "bad:1"}); err == nil || !strings.HasPrefix(err.Error(), `return_hosts[1]: "bad:1"`) {
		t.Errorf("parseReturnHosts error %v, want it to name return_hosts[1]", err)
	}
}
