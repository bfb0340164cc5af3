package store

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// decodeSnapshotJSON is the reference for decodeSnapshot, written with
// encoding/json's streaming Decoder (UseNumber and Token). It is simple and
// obviously faithful to JSON, but takes about a second for a million
// entries, so the store uses the dedicated scanner and the fuzz test checks
// that both accept and reject the same inputs and yield the same entries.
func decodeSnapshotJSON(r io.Reader, onEntry func(key string, p netip.Prefix, exp int64), onSkip func(key string, err error)) error {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return errors.New("file is empty, expected a JSON object")
	}
	if err != nil {
		return jsonError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("top level is %s, expected a JSON object", describeToken(tok))
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err)
		}
		key, _ := tok.(string) // object keys are always strings
		if tok, err = dec.Token(); err != nil {
			return jsonError(err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return fmt.Errorf("key %q: value is %s, expected an integer unix time", key, describeToken(tok))
		}
		exp, err := parseJSONInt(num)
		if err != nil {
			return fmt.Errorf("key %q: %v", key, err)
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
	if _, err := dec.Token(); err != nil { // the closing '}'
		return jsonError(err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return jsonError(err)
		}
		return fmt.Errorf("unexpected %s after the JSON object", describeToken(tok))
	}
	return nil
}

func parseJSONInt(n json.Number) (int64, error) {
	s := string(n)
	if strings.ContainsAny(s, ".eE") {
		return 0, fmt.Errorf("value %s is not an integer unix time", s)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value %s is out of range", s)
	}
	return v, nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("invalid JSON at byte %d: %v", syn.Offset, err)
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return errors.New("invalid JSON: file ends early (truncated?)")
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' || v == '}' {
			return "an object"
		}
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	case json.Number:
		return "a number"
	}
	return fmt.Sprintf("%T", tok)
}
