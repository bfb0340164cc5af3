package knocker

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

// Limits and messages of the knock API. The messages are the original
// service's, so that existing clients show the same text.
const (
	maxKnockBody = 4096
	maxTTL       = 315_360_000 // ten years, in seconds

	msgNoClientIP      = "Could not determine client IP."
	msgBadKey          = "Invalid or missing API key."
	msgBodyTooLarge    = "Request body too large."
	msgNotJSON         = "Request body must be JSON."
	msgMalformed       = "Malformed JSON request body."
	msgNotObject       = "Request body must be a JSON object."
	msgBadTTL          = "Invalid TTL specified. Must be a positive integer."
	msgIPTooLong       = "IP address or CIDR notation too long."
	msgBadIP           = "Invalid IP address or CIDR notation in request body."
	msgInvalidData     = "Invalid request data."
	msgNoRemote        = "API key lacks remote whitelist permission."
	msgTooBroad        = "CIDR range too broad. Maximum 65536 addresses allowed."
	msgTTLTooLarge     = "TTL too large. Maximum allowed is 315360000 seconds (10 years)."
	msgRateLimited     = "Too many knock attempts."
	msgInternal        = "Internal server error: whitelist persistence or firewall configuration failed."
	msgFirewallBusy    = "Firewall mutation capacity is unavailable."
	msgWhitelistFull   = "Whitelist is full."
	msgUnavailable     = "Knock service is not ready."
	msgMethod          = "Method not allowed."
	msgNotFound        = "Not found."
	msgTooEarly        = "Too early: retry after the TLS handshake completes."
	msgUnknownFieldFmt = "Invalid request data: unknown field %q."
)

// apiError is a knock API failure: a status code and the client-facing text.
type apiError struct {
	status     int
	msg        string
	retryAfter int64 // seconds, for 429
}

func (e *apiError) Error() string { return e.msg }

func newAPIError(status int, msg string) *apiError { return &apiError{status: status, msg: msg} }

// knockRequest is a parsed knock body. Absent and null fields are zero.
type knockRequest struct {
	target      string // raw ip_address; "" when absent
	hasTarget   bool
	ttl         int64 // requested seconds; 0 when absent
	ttlTooLarge bool  // an integer beyond any TTL we could grant
}

var jsonInteger = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// parseKnockBody applies the original's body rules (behaviour spec §4.2)
// with Go's JSON leniencies removed: field names are case-sensitive, unknown
// fields, trailing data and invalid UTF-8 are errors, and ttl must be an
// integer literal. Errors are chosen with the original's precedence: a bad
// ttl, then an over-long ip_address, then a bad ip_address, then anything else.
func parseKnockBody(contentType string, body []byte) (knockRequest, *apiError) {
	var req knockRequest
	if len(body) == 0 {
		return req, nil
	}
	if mt, _, _ := strings.Cut(contentType, ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
		return req, newAPIError(http.StatusUnsupportedMediaType, msgNotJSON)
	}
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(body) || !json.Valid(body) {
		return req, newAPIError(http.StatusBadRequest, msgMalformed)
	}
	var fields []struct {
		name  string
		value json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, _ := dec.Token(); tok != json.Delim('{') {
		return req, newAPIError(http.StatusBadRequest, msgNotObject)
	}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		var value json.RawMessage
		if err != nil || !ok || dec.Decode(&value) != nil {
			return req, newAPIError(http.StatusBadRequest, msgMalformed)
		}
		fields = append(fields, struct {
			name  string
			value json.RawMessage
		}{name, value})
	}

	var ttlErr, ipTooLong, ipErr bool
	var ipDetail error
	unknown := ""
	for _, f := range fields { // duplicate names: the last one wins, as in the original
		v := string(f.value)
		switch f.name {
		case "ttl":
			ttlErr, req.ttlTooLarge, req.ttl = false, false, 0
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
				req.ttlTooLarge, req.ttl = true, maxTTL+1
			case err != nil || n <= 0:
				ttlErr = true
			default:
				req.ttl = n
				req.ttlTooLarge = n > maxTTL
			}
		case "ip_address":
			ipTooLong, ipErr, ipDetail, req.hasTarget, req.target = false, false, nil, false, ""
			if v == "null" {
				continue
			}
			var s string
			if json.Unmarshal(f.value, &s) != nil {
				ipErr = true
				continue
			}
			req.hasTarget, req.target = true, s
			if utf8.RuneCountInString(s) > maxIPLength {
				ipTooLong = true
			} else if _, err := parseGrantTarget(s); err != nil {
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
		return req, newAPIError(http.StatusBadRequest, msgBadTTL)
	case ipTooLong:
		return req, newAPIError(http.StatusBadRequest, msgIPTooLong)
	case ipErr && errors.As(ipDetail, new(unsupportedFormError)):
		return req, newAPIError(http.StatusBadRequest, strings.TrimSuffix(msgBadIP, ".")+": "+ipDetail.Error()+".")
	case ipErr:
		return req, newAPIError(http.StatusBadRequest, msgBadIP)
	case unknown != "":
		return req, newAPIError(http.StatusBadRequest, sprintfQuoted(msgUnknownFieldFmt, unknown))
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
