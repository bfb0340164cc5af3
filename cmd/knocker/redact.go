package main

import (
	"bytes"
	"io"
	"net/url"
	"strings"
)

// redactUserinfo hides a password in a URL that a message quotes.
func redactUserinfo(s string) string {
	if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.User != nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(s, "@"); at >= 0 && strings.Contains(s[:at], ":") {
		return "xxxxx" + s[at:]
	}
	return s
}

// redactWriter replaces the key in everything written through it: a last
// line of defence, since no message is built from the key in the first
// place.
type redactWriter struct {
	w   io.Writer
	key []byte
}

func redacting(w io.Writer, key string) io.Writer {
	if len(key) < 6 { // too short to redact without mangling ordinary text
		return w
	}
	return &redactWriter{w: w, key: []byte(key)}
}

func (r *redactWriter) Write(p []byte) (int, error) {
	if !bytes.Contains(p, r.key) {
		return r.w.Write(p)
	}
	if _, err := r.w.Write(bytes.ReplaceAll(p, r.key, []byte("[redacted]"))); err != nil {
		return 0, err
	}
	return len(p), nil
}
