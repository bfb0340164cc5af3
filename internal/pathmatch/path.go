// Package pathmatch decides whether a request path falls under an
// exclusion prefix, the way the Python Knocker compares them, and reduces
// forwarded host names to the form per-host exclusions are keyed by.
package pathmatch

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// normalizePath canonicalises a request path the way the Python Knocker
// does, so that exclusion prefixes and request paths
// are compared in one form: take the path of a URL, cut the query and
// fragment, percent-decode once, resolve dot segments without rising above
// the root, collapse empty segments, drop the trailing slash. Matching on the
// result is case-sensitive.
func normalizePath(s string) string {
	s = pathOf(s)
	s = percentDecodeOnce(s)
	var segs []string
	for seg := range strings.SplitSeq(s, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, seg)
		}
	}
	return "/" + strings.Join(segs, "/")
}

// pathOf extracts the path from an absolute URL, as Python's urlsplit does,
// or cuts the fragment and then the query from a plain path.
func pathOf(s string) string {
	if strings.Contains(s, "://") {
		if rest, ok := cutScheme(s); ok {
			s = rest
			if after, isNetloc := strings.CutPrefix(s, "//"); isNetloc {
				i := strings.IndexAny(after, "/?#")
				if i < 0 {
					return ""
				}
				s = after[i:]
			}
		}
	}
	s, _, _ = strings.Cut(s, "#")
	s, _, _ = strings.Cut(s, "?")
	return s
}

// cutScheme removes a leading RFC 3986 scheme and its colon.
func cutScheme(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return s[i+1:], true
		default:
			return s, false
		}
	}
	return s, false
}

// percentDecodeOnce decodes %XX sequences and leaves malformed ones as they
// are, like Python's urllib.parse.unquote.
func percentDecodeOnce(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isAmbiguousPath reports a raw request path that different servers may read
// differently: dot segments (also encoded, and also with path parameters,
// "..;x", which Tomcat, Jetty and Spring read as ".."), segments of dots and
// look-alike dots or with trailing spaces, invalid UTF-8 (overlong forms of
// "."), an encoded slash or backslash, a backslash, an encoded percent sign
// (double encoding) or NUL.
// Such a path never matches an exclusion, because the backend may resolve it
// to a protected resource while we resolved it to an excluded one. Clients
// with real business on an excluded path do not send paths like these.
func isAmbiguousPath(raw string) bool {
	raw = pathOf(raw)
	lower := strings.ToLower(raw)
	for _, bad := range []string{"%2f", "%5c", "%25", "%00", "\\", "\x00"} {
		if strings.Contains(lower, bad) {
			return true
		}
	}
	decoded := percentDecodeOnce(raw)
	if !utf8.ValidString(decoded) {
		return true // overlong forms such as %c0%ae, which some decoders read as "."
	}
	for seg := range strings.SplitSeq(decoded, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		if dotLike(seg) {
			return true
		}
	}
	return false
}

// dotLike reports a segment that is, or that some server may read as, a
// dot segment: dots and look-alike dots (fullwidth, leaders, small full
// stop) with any spaces (Windows drops trailing dots and spaces: "..%20",
// "...").
func dotLike(seg string) bool {
	dots := 0
	for _, r := range seg {
		switch r {
		case '.', '\uff0e', '\u2024', '\ufe52':
			dots++
		case '\u2025':
			dots += 2
		case '\u2026':
			dots += 3
		case ' ', '\t':
		default:
			return false
		}
	}
	return dots > 0
}

// Prefixes is a list of normalised exclusion prefixes.
type Prefixes []string

// ParsePrefixes normalises exclusion prefixes. A prefix that normalises
// to "/" would exclude every path, disabling the gate; it is refused.
func ParsePrefixes(field string, in []string) (Prefixes, error) {
	out := make(Prefixes, 0, len(in))
	for _, p := range in {
		n := normalizePath(p)
		if n == "/" {
			return nil, fmt.Errorf("%s: %q would exclude every path; remove the knocker gate from that route instead", field, p)
		}
		out = append(out, n)
	}
	return out, nil
}

// Match reports whether the raw request path (escaped path, or a forwarded
// URI) falls under one of the prefixes, at a segment boundary.
func (ps Prefixes) Match(raw string) bool {
	if len(ps) == 0 || isAmbiguousPath(raw) {
		return false
	}
	path := normalizePath(raw)
	for _, p := range ps {
		if path == p || strings.HasPrefix(path, p) && path[len(p)] == '/' {
			return true
		}
	}
	return false
}
