package store

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodeSnapshot streams a whitelist object from r and calls onEntry for each
// key with its canonical prefix and expiry, in file order. Zone-scoped keys
// are passed to onSkip instead. Any other problem is returned as an error
// saying what is wrong (and with which key); the caller adds the path.
//
// It is a small strict JSON scanner for exactly this shape, an object of
// string keys and integer values. encoding/json's Decoder.Token needs about
// a second for a million entries; this needs a fraction of that. The tests
// keep a json.Decoder implementation as a reference and fuzz both against
// each other, so both accept and reject exactly the same inputs.
func decodeSnapshot(r io.Reader, onEntry func(key string, p netip.Prefix, exp int64), onSkip func(key string, err error)) error {
	sc := &scanner{r: r, buf: make([]byte, 64<<10)}
	c, ok := sc.skipSpace()
	if !ok {
		if sc.off() == 0 && sc.err == nil {
			return errors.New("file is empty, expected a JSON object")
		}
		return sc.fail("")
	}
	if c != '{' {
		if isValueStart(c) {
			return fmt.Errorf("top level is %s, expected a JSON object", describe(c))
		}
		return sc.fail("")
	}
	sc.pos++
	for first := true; ; first = false {
		c, ok := sc.skipSpace()
		if !ok {
			return sc.fail("")
		}
		if c == '}' && first {
			sc.pos++
			break
		}
		if !first {
			if c == '}' {
				sc.pos++
				break
			}
			if c != ',' {
				return sc.fail("")
			}
			sc.pos++
			if c, ok = sc.skipSpace(); !ok {
				return sc.fail("")
			}
		}
		if c != '"' {
			return sc.fail("")
		}
		sc.pos++
		keyBytes, err := sc.readString()
		if err != nil {
			return err
		}
		key := string(keyBytes)
		if c, ok = sc.skipSpace(); !ok || c != ':' {
			return sc.fail("")
		}
		sc.pos++
		if c, ok = sc.skipSpace(); !ok {
			return sc.fail("")
		}
		if c != '-' && !isDigit(c) {
			if isValueStart(c) {
				return fmt.Errorf("key %q: value is %s, expected an integer unix time", key, describe(c))
			}
			return sc.fail("")
		}
		num, isInt, err := sc.readNumber()
		if err != nil {
			return err
		}
		if !isInt {
			return fmt.Errorf("key %q: value %s is not an integer unix time", key, num)
		}
		exp, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			return fmt.Errorf("key %q: value %s is out of range", key, num)
		}
		p, err := ParseEntryKey(key)
		if errors.Is(err, errUnsupportedKey) {
			onSkip(key, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("key %q: %v", key, err)
		}
		onEntry(key, p, exp)
	}
	if c, ok := sc.skipSpace(); ok {
		if isValueStart(c) {
			return fmt.Errorf("unexpected %s after the JSON object", describe(c))
		}
		return sc.fail("")
	}
	if sc.err != nil {
		return fmt.Errorf("reading: %w", sc.err)
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isValueStart reports whether c can start a JSON value. A value of the
// wrong type is reported by its type (from this first byte); its content
// does not matter since the file is rejected either way.
func isValueStart(c byte) bool {
	switch c {
	case '{', '[', '"', '-', 't', 'f', 'n':
		return true
	}
	return isDigit(c)
}

func describe(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// scanner is a forward-only byte reader over r with the current position.
type scanner struct {
	r        io.Reader
	buf      []byte
	pos, end int
	base     int64 // offset of buf[0] in the input
	err      error // read error other than io.EOF
	eof      bool
	scratch  []byte
}

func (s *scanner) off() int64 { return s.base + int64(s.pos) }

// fill makes at least one unread byte available, reporting false at the end
// of the input or on a read error.
func (s *scanner) fill() bool {
	if s.pos < s.end {
		return true
	}
	for !s.eof && s.err == nil {
		s.base += int64(s.end)
		s.pos, s.end = 0, 0
		n, err := s.r.Read(s.buf)
		s.end = n
		if err == io.EOF {
			s.eof = true
		} else if err != nil {
			s.err = err
		}
		if n > 0 {
			return true
		}
	}
	return false
}

// skipSpace skips JSON whitespace and returns the next byte without
// consuming it.
func (s *scanner) skipSpace() (byte, bool) {
	for s.fill() {
		for s.pos < s.end {
			switch c := s.buf[s.pos]; c {
			case ' ', '\t', '\n', '\r':
				s.pos++
			default:
				return c, true
			}
		}
	}
	return 0, false
}

// fail reports a syntax error at the current position.
func (s *scanner) fail(what string) error {
	if s.err != nil {
		return fmt.Errorf("reading: %w", s.err)
	}
	if !s.fill() {
		return errors.New("invalid JSON: file ends early (truncated?)")
	}
	if what == "" {
		what = fmt.Sprintf("unexpected character %q", s.buf[s.pos])
	}
	return fmt.Errorf("invalid JSON at byte %d: %s", s.off(), what)
}

// readString reads the rest of a string whose opening quote was consumed
// and returns its unescaped bytes, valid until the next call.
func (s *scanner) readString() ([]byte, error) {
	out := s.scratch[:0]
	defer func() { s.scratch = out[:0] }()
	for {
		if !s.fill() {
			return nil, s.fail("")
		}
		// Copy the run of plain characters in one go.
		run := s.pos
		for run < s.end && s.buf[run] >= 0x20 && s.buf[run] != '"' && s.buf[run] != '\\' {
			run++
		}
		out = append(out, s.buf[s.pos:run]...)
		s.pos = run
		if !s.fill() {
			return nil, s.fail("")
		}
		c := s.buf[s.pos]
		switch {
		case c == '"':
			s.pos++
			return out, nil
		case c < 0x20:
			return nil, s.fail("control character in string")
		case c == '\\':
			s.pos++
			if !s.fill() {
				return nil, s.fail("")
			}
			e := s.buf[s.pos]
			s.pos++
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				var v rune
				for range 4 {
					if !s.fill() {
						return nil, s.fail("")
					}
					h := s.buf[s.pos]
					d, ok := hexValue(h)
					if !ok {
						return nil, s.fail("invalid \\u escape")
					}
					v = v<<4 | d
					s.pos++
				}
				// Non-ASCII never forms a valid key, so surrogate pairs need
				// no special care: they just must not turn into ASCII.
				if v >= 0xD800 && v < 0xE000 {
					v = utf8.RuneError
				}
				out = utf8.AppendRune(out, v)
			default:
				s.pos--
				return nil, s.fail("invalid escape in string")
			}
		default:
			out = append(out, c)
			s.pos++
		}
	}
}

func hexValue(c byte) (rune, bool) {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0'), true
	case 'a' <= c && c <= 'f':
		return rune(c-'a') + 10, true
	case 'A' <= c && c <= 'F':
		return rune(c-'A') + 10, true
	}
	return 0, false
}

// readNumber reads a JSON number and reports whether it is an integer
// (no fraction or exponent). The bytes are valid until the next call.
func (s *scanner) readNumber() (num []byte, isInt bool, err error) {
	out := s.scratch[:0]
	defer func() { s.scratch = out[:0] }()
	// accept consumes the next byte if it is one of set.
	accept := func(set string) bool {
		if !s.fill() || strings.IndexByte(set, s.buf[s.pos]) < 0 {
			return false
		}
		out = append(out, s.buf[s.pos])
		s.pos++
		return true
	}
	digits := func() bool { // one or more
		n := 0
		for s.fill() && isDigit(s.buf[s.pos]) {
			out = append(out, s.buf[s.pos])
			s.pos++
			n++
		}
		return n > 0
	}
	accept("-")
	if !accept("0") && !digits() { // no leading zeros
		return nil, false, s.fail("")
	}
	isInt = true
	if accept(".") {
		isInt = false
		if !digits() {
			return nil, false, s.fail("")
		}
	}
	if accept("eE") {
		isInt = false
		accept("+-")
		if !digits() {
			return nil, false, s.fail("")
		}
	}
	// A number must be followed by a delimiter, not glued to more text.
	if s.fill() && strings.IndexByte(" \t\n\r,}]", s.buf[s.pos]) < 0 {
		return nil, false, s.fail("")
	}
	return out, isInt, nil
}
