package main

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// parseDuration accepts Go durations, days ("7d") and plain seconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok, err := wholeUnits(s, time.Second); ok {
		return d, err
	}
	if days, found := strings.CutSuffix(s, "d"); found {
		if d, ok, err := wholeUnits(days, 24*time.Hour); ok {
			return d, err
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration (examples: 90s, 1h30m, 7d, or seconds)")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

// wholeUnits reads s as a whole number of units. ok is false when s is not
// an integer, for the caller to try other forms.
func wholeUnits(s string, unit time.Duration) (d time.Duration, ok bool, err error) {
	n, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil {
		return 0, false, nil
	}
	if n < 0 || n > math.MaxInt64/int64(unit) {
		return 0, true, errors.New("out of range")
	}
	return time.Duration(n) * unit, true, nil
}

// parseServer turns the server setting into the base URL of the knock API.
// Without a scheme it is https. A trailing /knock or /knock/status (a
// pasted endpoint) is removed.
func parseServer(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("scheme %q is not supported (use https:// or http://)", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("no host")
	}
	if u.User != nil {
		return nil, errors.New("user information in the URL is not supported")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, errors.New("a query or fragment is not supported")
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, "/knock/status")
	p = strings.TrimSuffix(p, "/knock")
	u.Path, u.RawPath = p, ""
	return u, nil
}

// parseCheckURL validates an address lookup URL (http or https).
func parseCheckURL(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	switch {
	case err != nil:
		return "", errors.New("not a valid URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return "", errors.New("must be an https:// or http:// URL")
	case u.Hostname() == "":
		return "", errors.New("no host")
	case u.User != nil:
		return "", errors.New("user information in the URL is not supported")
	}
	return u.String(), nil
}
