package firewalld

import (
	"errors"
	"strings"

	"github.com/caddy-knocker/knocker/firewall"
)

// Error is an error reported by firewalld: a D-Bus error named
// org.fedoraproject.FirewallD1.Exception whose message is "CODE: detail".
// errors.Is matches it against the sentinels below by code alone.
type Error struct {
	Code   string // e.g. "ALREADY_ENABLED", "INVALID_ZONE"
	Detail string // firewalld's text after the code, e.g. the zone or rule
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Code
	}
	return e.Code + ": " + e.Detail
}

// Is reports whether target is a firewalld error with the same code and no
// detail, so that errors.Is(err, ErrAlreadyEnabled) works for any detail.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Detail == "" && t.Code == e.Code
}

// Sentinels for the firewalld error codes Knocker handles.
var (
	ErrAlreadyEnabled = &Error{Code: "ALREADY_ENABLED"} // adding what exists
	ErrNotEnabled     = &Error{Code: "NOT_ENABLED"}     // removing what is absent
	ErrInvalidZone    = &Error{Code: "INVALID_ZONE"}    // no such zone
	ErrInvalidRule    = &Error{Code: "INVALID_RULE"}    // rich rule refused
	ErrNotRunning     = &Error{Code: "NOT_RUNNING"}     // firewalld absent, starting or failed
	ErrNotAuthorized  = &Error{Code: "NOT_AUTHORIZED"}  // polkit said no (run as root or add a polkit rule)
)

// Errors of the backend itself (not of firewalld).
var (
	// ErrBusy (firewall.ErrBusy) is returned by PrepareGrant when the
	// mutation queue is full. The knock handler answers 503 for it.
	ErrBusy = firewall.ErrBusy
	// ErrStopped is returned by PrepareGrant before Start has finished and
	// after Stop: without the reconciler nothing is opened (fail closed).
	ErrStopped = errors.New("firewalld: reconciler is not running")
)

// parseExceptionText splits firewalld's "CODE: detail" message. A message
// without a recognisable code becomes UNKNOWN_ERROR with the whole text.
func parseExceptionText(msg string) *Error {
	code, detail, _ := strings.Cut(msg, ":")
	code = strings.TrimSpace(code)
	if !isErrorCode(code) {
		return &Error{Code: "UNKNOWN_ERROR", Detail: strings.TrimSpace(msg)}
	}
	return &Error{Code: code, Detail: strings.TrimSpace(detail)}
}

// isErrorCode reports whether s looks like a firewalld code (A-Z, 0-9, _).
func isErrorCode(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// explained is an error with its own message that still matches a
// sentinel with errors.Is.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }
