package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// Helpers for the reliability tests (crash_test.go, reload_test.go): they
// talk to a Caddy whose servers trust 127.0.0.1 as a proxy, so every request
// names its client address in X-Forwarded-For. None of them calls t.Fatal, so
// they are safe in load goroutines.

// loadClient is a keep-alive client dialling 127.0.0.1, sized for many
// concurrent workers so that load does not churn ephemeral ports.
func loadClient() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}}
}

// knockAnswer is the 200 answer of POST /knock.
type knockAnswer struct {
	WhitelistedEntry string `json:"whitelisted_entry"`
	ExpiresAt        int64  `json:"expires_at"`
	ExpiresInSeconds int64  `json:"expires_in_seconds"`
}

// knockAs knocks for the client address ip (via X-Forwarded-For) with key and
// ttl (seconds; 0 = none). err is a transport error or an unreadable body: the
// knock was then not acknowledged. The answer is decoded only on 200.
func knockAs(c *http.Client, knockSite, key, ip string, ttl int) (int, knockAnswer, error) {
	var body io.Reader
	if ttl > 0 {
		body = strings.NewReader(fmt.Sprintf(`{"ttl": %d}`, ttl))
	}
	req, err := http.NewRequest(http.MethodPost, knockSite+"/knock", body)
	if err != nil {
		return 0, knockAnswer{}, err
	}
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("X-Forwarded-For", ip)
	if ttl > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, knockAnswer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, knockAnswer{}, err
	}
	var ans knockAnswer
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &ans); err != nil {
			return resp.StatusCode, ans, fmt.Errorf("200 answer is not the knock JSON: %v: %q", err, raw)
		}
	}
	return resp.StatusCode, ans, nil
}

// getAs GETs url as client address ip and returns the status and body.
func getAs(c *http.Client, url, ip string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Forwarded-For", ip)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// knockStatus is the answer of GET /knock/status.
type knockStatus struct {
	IP          string  `json:"ip"`
	Whitelisted bool    `json:"whitelisted"`
	Entry       *string `json:"entry"`
	ExpiresAt   *int64  `json:"expires_at"`
}

func statusAs(c *http.Client, knockSite, ip string) (knockStatus, error) {
	var st knockStatus
	code, body, err := getAs(c, knockSite+"/knock/status", ip)
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("/knock/status: %d %q", code, body)
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return st, fmt.Errorf("/knock/status: %v: %q", err, body)
	}
	return st, nil
}

// waitUp polls url (expecting 200) until Caddy answers, failing the test if
// the process exits first or nothing answers within 30 s. The output is
// logged by startCaddy's cleanup when the test fails.
func (p *caddyProcess) waitUp(t *testing.T, url string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("caddy exited before serving: %v\n%s", err, p.output)
		default:
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("caddy not serving %s within 30s", url)
}

// waitExit waits (at most 30 s) for the process to exit and returns its
// error, leaving it in p.done for startCaddy's cleanup.
func (p *caddyProcess) waitExit(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("caddy did not exit within 30s")
		return nil
	}
}

// writeConfig writes a Caddyfile into dir and returns its path.
func writeConfig(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := dir + "/" + name
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// readWhitelist parses the whitelist snapshot strictly: a JSON object whose
// every value is an integer.
func readWhitelist(t *testing.T, path string) map[string]int64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]json.Number
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("%s is not a JSON object of entry -> expiry: %v\n%.500s", path, err, raw)
	}
	if dec.More() {
		t.Fatalf("%s has trailing data after the JSON object", path)
	}
	out := make(map[string]int64, len(obj))
	for k, v := range obj {
		n, err := v.Int64()
		if err != nil {
			t.Fatalf("%s: expiry of %q is not an integer: %s", path, k, v)
		}
		out[k] = n
	}
	return out
}
