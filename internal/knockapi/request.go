package knockapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits and messages of the knock API. The messages are the Python Knocker's
// service's, so that existing clients show the same text.
const (
	MaxBody = 4096
	MaxTTL  = 315_360_000 // ten years, in seconds

	MsgNoClientIP      = "Could not determine client IP."
	MsgBadKey          = "Invalid or missing API key."
	MsgBodyTooLarge    = "Request body too large."
	MsgNotJSON         = "Request body must be JSON."
	MsgMalformed       = "Malformed JSON request body."
	MsgNotObject       = "Request body must be a JSON object."
	MsgBadTTL          = "Invalid TTL specified. Must be a positive integer."
	MsgIPTooLong       = "IP address or CIDR notation too long."
	MsgBadIP           = "Invalid IP address or CIDR notation in request body."
	MsgInvalidData     = "Invalid request data."
	MsgNoRemote        = "API key lacks remote whitelist permission."
	MsgTooBroad        = "CIDR range too broad. Maximum 65536 addresses allowed."
	MsgTTLTooLarge     = "TTL too large. Maximum allowed is 315360000 seconds (10 years)."
	MsgRateLimited     = "Too many knock attempts."
	MsgInternal        = "Internal server error: whitelist persistence or firewall configuration failed."
	MsgFirewallBusy    = "Firewall mutation capacity is unavailable."
	MsgWhitelistFull   = "Whitelist is full."
	MsgClusterDown     = "Cluster engine unavailable: the knock was not confirmed; try again."
	MsgUnavailable     = "Knock service is not ready."
	MsgMethod          = "Method not allowed."
	MsgNotFound        = "Not found."
	MsgTooEarly        = "Too early: retry after the TLS handshake completes."
	MsgUnknownFieldFmt = "Invalid request data: unknown field %q."
)

// Error is a knock API failure: a status code and the client-facing text.
type Error struct {
	Status     int
	Message    string
	RetryAfter int64 // seconds, for 429
}

func (e *Error) Error() string { return e.Message }

// NewError returns the error answered with status and msg.
func NewError(status int, msg string) *Error { return &Error{Status: status, Message: msg} }

// Request is a parsed knock body. Absent and null fields are zero.
type Request struct {
	Target      string // raw ip_address; "" when absent
	HasTarget   bool
	TTL         int64 // requested seconds; 0 when absent
	TTLTooLarge bool  // an integer beyond any TTL we could grant
}

var jsonInteger = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// ParseBody applies the Python Knocker's body rules
// with Go's JSON leniencies removed: field names are case-sensitive, unknown
// fields, trailing data and invalid UTF-8 are errors, and ttl must be an
// integer literal. Errors are chosen with the Python Knocker's precedence: a bad
// ttl, then an over-long ip_address, then a bad ip_address, then anything else.
func ParseBody(contentType string, body []byte) (Request, *Error) {
	var req Request
	if len(body) == 0 {
		return req, nil
	}
	if mt, _, _ := strings.Cut(contentType, ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
		return req, NewError(http.StatusUnsupportedMediaType, MsgNotJSON)
	}
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(body) || !json.Valid(body) {
		return req, NewError(http.StatusBadRequest, MsgMalformed)
	}
	var fields []struct {
		name  string
		value json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, _ := dec.Token(); tok != json.Delim('{') {
		return req, NewError(http.StatusBadRequest, MsgNotObject)
	}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		var value json.RawMessage
		if err != nil || !ok || dec.Decode(&value) != nil {
			return req, NewError(http.StatusBadRequest, MsgMalformed)
		}
		fields = append(fields, struct {
			name  string
			value json.RawMessage
		}{name, value})
	}

	var ttlErr, ipTooLong, ipErr bool
	var ipDetail error
	unknown := ""
	for _, f := range fields { // duplicate names: the last one wins, as in the Python Knocker
		v := string(f.value)
		switch f.name {
		case "ttl":
			ttlErr, req.TTLTooLarge, req.TTL = false, false, 0
			if v == "null" {
				continue
			}
			if !jsonInteger.MatchString(v) {
				ttlErr = true
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			switch {
			case err != nil && v[0] != '-':
				req.TTLTooLarge, req.TTL = true, MaxTTL+1
			case err != nil || n <= 0:
				ttlErr = true
			default:
				req.TTL = n
				req.TTLTooLarge = n > MaxTTL
			}
		case "ip_address":
			ipTooLong, ipErr, ipDetail, req.HasTarget, req.Target = false, false, nil, false, ""
			if v == "null" {
				continue
			}
			var s string
			if json.Unmarshal(f.value, &s) != nil {
				ipErr = true
				continue
			}
			req.HasTarget, req.Target = true, s
			if utf8.RuneCountInString(s) > maxIPLength {
				ipTooLong = true
			} else if _, err := ParseTarget(s); err != nil {
				ipErr, ipDetail = true, err
			}
		default:
			if unknown == "" {
				unknown = f.name
			}
		}
	}
	switch {
	case ttlErr:
		return req, NewError(http.StatusBadRequest, MsgBadTTL)
	case ipTooLong:
		return req, NewError(http.StatusBadRequest, MsgIPTooLong)
	case ipErr && errors.As(ipDetail, new(unsupportedFormError)):
		return req, NewError(http.StatusBadRequest, strings.TrimSuffix(MsgBadIP, ".")+": "+ipDetail.Error()+".")
	case ipErr:
		return req, NewError(http.StatusBadRequest, MsgBadIP)
	case unknown != "":
		return req, NewError(http.StatusBadRequest, sprintfQuoted(MsgUnknownFieldFmt, unknown))
	}
	return req, nil
}

// sprintfQuoted formats a message with a JSON-quoted, length-capped value so
// that a hostile field name cannot forge the message.
func sprintfQuoted(format, value string) string {
	if len(value) > 64 {
		value = value[:64] + "…"
	}
	return strings.Replace(format, "%q", strconv.Quote(value), 1)
}
