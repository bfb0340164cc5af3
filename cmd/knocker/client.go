package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const maxResponseBody = 64 << 10

// cmdError is a failure with its exit code. Its message never contains the
// API key: none is ever built from it.
type cmdError struct {
	code       int
	msg        string
	httpStatus int           // the server's status, if it answered
	retryAfter time.Duration // from a 429's Retry-After
	noStatus   bool          // the server has no /knock/status
}

func (e *cmdError) Error() string { return e.msg }

func usageErr(format string, args ...any) *cmdError {
	return &cmdError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// client talks to the knock API over one address family.
type client struct {
	http      *http.Client
	family    family
	knockURL  string
	statusURL string
	host      string
}

func (c *cli) newClient(s *settings, f family) *client {
	network := f.network()
	dial := c.dial
	if dial == nil {
		d := &net.Dialer{Timeout: s.timeout}
		dial = d.DialContext
	}
	tr := &http.Transport{
		// No proxy: a knock whitelists the address it comes from.
		Proxy: nil,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial(ctx, network, addr)
		},
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.rootCAs},
		TLSHandshakeTimeout:   s.timeout,
		ResponseHeaderTimeout: s.timeout,
		// A fresh connection each time: the address a kept-alive
		// connection was opened from may no longer be the device's
		// current one (IPv6 temporary addresses, a changed uplink).
		DisableKeepAlives:      true,
		ForceAttemptHTTP2:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &client{
		http: &http.Client{
			Transport: tr,
			Timeout:   s.timeout,
			// Never follow redirects: X-Api-Key would go to wherever the
			// redirect points, and a POST would turn into a GET.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		family:    f,
		knockURL:  s.server.JoinPath("knock").String(),
		statusURL: s.server.JoinPath("knock", "status").String(),
		host:      s.server.Host,
	}
}

// knockResult is the server's answer to a successful knock.
type knockResult struct {
	Entry     string `json:"whitelisted_entry"`
	ExpiresAt int64  `json:"expires_at"`
	ExpiresIn int64  `json:"expires_in_seconds"`
}

// statusResult is the answer of GET /knock/status.
type statusResult struct {
	IP          string  `json:"ip"`
	Whitelisted bool    `json:"whitelisted"`
	Entry       *string `json:"entry"`
	ExpiresAt   *int64  `json:"expires_at"`
	ExpiresIn   *int64  `json:"expires_in_seconds"`
}

// knock sends POST /knock. ttl 0 and ip "" are left out of the body; with
// neither, the body is empty, as the Python Knocker's clients send it.
func (cl *client) knock(ctx context.Context, key string, ttl time.Duration, ip string) (*knockResult, *cmdError) {
	var body io.Reader
	if ttl > 0 || ip != "" {
		req := map[string]any{}
		if ttl > 0 {
			req["ttl"] = int64(ttl / time.Second)
		}
		if ip != "" {
			req["ip_address"] = ip
		}
		b, _ := json.Marshal(req)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cl.knockURL, body)
	if err != nil {
		return nil, &cmdError{code: exitUsage, msg: "cannot build the request: " + err.Error()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Api-Key", key)
	var res knockResult
	if cerr := cl.do(req, &res); cerr != nil {
		return nil, cerr
	}
	if res.Entry == "" || res.ExpiresIn <= 0 {
		return nil, &cmdError{code: exitServer, httpStatus: http.StatusOK, msg: fmt.Sprintf("%s answered 200 but not with a knock result: is it the knock API?", cl.knockURL)}
	}
	return &res, nil
}

// status sends GET /knock/status.
func (cl *client) status(ctx context.Context) (*statusResult, *cmdError) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cl.statusURL, nil)
	if err != nil {
		return nil, &cmdError{code: exitUsage, msg: "cannot build the request: " + err.Error()}
	}
	var res statusResult
	if cerr := cl.do(req, &res); cerr != nil {
		if cerr.httpStatus == http.StatusNotFound || cerr.httpStatus == http.StatusMethodNotAllowed {
			cerr.noStatus = true
			cerr.msg += " (a server without GET /knock/status: an older Knocker?)"
		}
		return nil, cerr
	}
	if res.IP == "" {
		return nil, &cmdError{code: exitServer, httpStatus: http.StatusOK, msg: fmt.Sprintf("%s answered 200 but not with a status: is it the knock API?", cl.statusURL)}
	}
	return &res, nil
}

// do sends req and decodes a 200 answer into out; anything else becomes a
// cmdError with the matching exit code.
func (cl *client) do(req *http.Request, out any) *cmdError {
	req.Header.Set("User-Agent", userAgent())
	req.Header.Set("Accept", "application/json")
	resp, err := cl.http.Do(req)
	if err != nil {
		return cl.transportError(req, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return cl.transportError(req, err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			return &cmdError{code: exitServer, httpStatus: resp.StatusCode, msg: fmt.Sprintf("%s answered 200 but not with JSON: is it the knock API?", req.URL)}
		}
		return nil
	}
	return answerError(req, resp, data)
}

// answerError explains a non-200 answer.
func answerError(req *http.Request, resp *http.Response, body []byte) *cmdError {
	var apiErr struct {
		Error string `json:"error"`
	}
	message := ""
	if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
		message = sanitize(apiErr.Error)
	}
	status := resp.StatusCode
	e := &cmdError{httpStatus: status}
	say := func(code int, fallback string) {
		e.code = code
		if message == "" {
			message = fallback
		}
		e.msg = fmt.Sprintf("server answered %d: %s", status, message)
	}
	switch {
	case status == http.StatusUnauthorized:
		say(exitBadKey, "no knock API error in the answer: a wrong key, or the URL is a gated site rather than the knock API.")
	case status == http.StatusForbidden:
		say(exitForbidden, "forbidden, with no knock API error in the answer (is the URL the knock API?).")
		if req.Method == http.MethodPost {
			e.msg += " (whitelisting another address with --ip needs a key with allow_remote_whitelist)"
		}
	case status == http.StatusTooManyRequests:
		say(exitRateLimited, "Too many knock attempts.")
		e.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
		if e.retryAfter > 0 {
			e.msg += fmt.Sprintf(" Retry after %s.", formatDuration(e.retryAfter))
		}
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge || status == http.StatusUnsupportedMediaType:
		say(exitUsage, "the request was refused.")
	case status >= 300 && status < 400:
		say(exitServer, "a redirect")
		if loc := resp.Header.Get("Location"); loc != "" {
			e.msg += fmt.Sprintf(" to %s; use that server URL instead (redirects are not followed, so that the key goes nowhere else)", sanitize(loc))
		}
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed:
		say(exitServer, fmt.Sprintf("%s is not the knock API (check the server URL and that the site has the knock directive).", req.URL))
	case status >= 500:
		say(exitServer, http.StatusText(status)+".")
	default:
		say(exitServer, "an unexpected answer ("+http.StatusText(status)+").")
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && n < 1<<31 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d.Round(time.Second)
		}
	}
	return 0
}

// transportError classifies an error that left no HTTP answer.
func (cl *client) transportError(req *http.Request, err error) *cmdError {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	where := req.URL.String()
	msg := err.Error()
	var (
		certErr    *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		recordErr  tls.RecordHeaderError
		alertErr   tls.AlertError
		dnsErr     *net.DNSError
		addrErr    *net.AddrError
		netErr     net.Error
	)
	switch {
	case errors.Is(err, context.Canceled):
		return &cmdError{code: exitError, msg: "interrupted"}
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidErr):
		return &cmdError{code: exitTLS, msg: fmt.Sprintf("TLS error with %s: the server's certificate was not accepted: %v", cl.host, err)}
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return &cmdError{code: exitTLS, msg: fmt.Sprintf("TLS error with %s: the server speaks plain HTTP on this port (use http:// only if you really mean to send the key unencrypted)", cl.host)}
	case errors.As(err, &recordErr), errors.As(err, &alertErr), strings.HasPrefix(msg, "tls: "):
		return &cmdError{code: exitTLS, msg: fmt.Sprintf("TLS handshake with %s failed: %v", cl.host, err)}
	case errors.As(err, &dnsErr):
		return &cmdError{code: exitUnreachable, msg: fmt.Sprintf("cannot reach %s: cannot resolve %s: %v", where, dnsErr.Name, dnsErrText(dnsErr))}
	case errors.As(err, &addrErr) && strings.Contains(addrErr.Err, "no suitable address"):
		return &cmdError{code: exitUnreachable, msg: fmt.Sprintf("cannot reach %s over %s: %s has no %s address", where, cl.familyName(), req.URL.Hostname(), cl.familyName())}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return &cmdError{code: exitUnreachable, msg: fmt.Sprintf("cannot reach %s: no answer in time (timeout)", where)}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &cmdError{code: exitUnreachable, msg: fmt.Sprintf("cannot reach %s: connection refused", where)}
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
		return &cmdError{code: exitUnreachable, msg: fmt.Sprintf("cannot reach %s over %s: %v", where, cl.familyName(), err)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &cmdError{code: exitUnreachable, msg: fmt.Sprintf("cannot reach %s: no answer in time (timeout)", where)}
	}
	return &cmdError{code: exitUnreachable, msg: fmt.Sprintf("cannot reach %s: %v", where, err)}
}

func dnsErrText(e *net.DNSError) string {
	if e.IsNotFound {
		return "no such host"
	}
	return e.Err
}

// familyName names the client's family in error messages.
func (cl *client) familyName() string {
	if l := cl.family.label(); l != "" {
		return l
	}
	return "IP"
}

// formatDuration prints whole seconds compactly: 45s, 3m20s, 1h, 2d3h.
func formatDuration(d time.Duration) string {
	sec := int64((d + time.Second/2) / time.Second)
	if d > 0 && sec == 0 {
		return d.Round(time.Millisecond).String()
	}
	if sec <= 0 {
		return "0s"
	}
	var b strings.Builder
	units := []struct {
		n    int64
		name string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}}
	parts := 0
	for _, u := range units {
		if sec >= u.n {
			fmt.Fprintf(&b, "%d%s", sec/u.n, u.name)
			sec %= u.n
			parts++
			if parts == 2 && u.n >= 3600 { // "2d3h", "1h5m": seconds do not matter here
				break
			}
		}
	}
	return b.String()
}

// lookupIP asks an address lookup service (knocker-cli's ip_check_url,
// answering the bare address as text) which address this device has,
// over the client's family and without a proxy, as the knock goes.
func (cl *client) lookupIP(ctx context.Context, rawURL string) (string, *cmdError) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", &cmdError{code: exitUsage, msg: "cannot build the request: " + err.Error()}
	}
	req.Header.Set("User-Agent", userAgent())
	// Redirects are followed here, as knocker-cli did (http.Get): unlike a
	// knock, the lookup carries no key.
	hc := *cl.http
	hc.CheckRedirect = nil
	resp, err := hc.Do(req)
	if err != nil {
		return "", cl.transportError(req, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return "", cl.transportError(req, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", &cmdError{code: exitServer, httpStatus: resp.StatusCode, msg: fmt.Sprintf("%s answered %d", req.URL.Redacted(), resp.StatusCode)}
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(string(data)))
	if err != nil {
		return "", &cmdError{code: exitServer, httpStatus: resp.StatusCode, msg: fmt.Sprintf("%s did not answer with an IP address", req.URL.Redacted())}
	}
	return ip.Unmap().String(), nil
}
