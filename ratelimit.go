package knocker

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-knocker/knocker/internal/limiter"
)

// RateLimit configures the knock limiter: per client IP, separate sliding
// windows count successful and failed knocks. A client whose failure window
// is full gets 429 before its key is even compared.
type RateLimit struct {
	// Window is the sliding window length. Default 60s.
	Window caddy.Duration `json:"window,omitempty"`
	// Success is the number of successful knocks allowed per window.
	// Default 20; 0 means unlimited.
	Success *int `json:"success,omitempty"`
	// Failure is the number of failed knocks allowed per window.
	// Default 30; 0 means unlimited.
	Failure *int `json:"failure,omitempty"`
}

// limits validates rl (nil: the defaults). Errors name the field.
func (rl *RateLimit) limits() (limiter.Limits, error) {
	lim := limiter.Default
	if rl == nil {
		return lim, nil
	}
	if rl.Window < 0 || rl.Window > 0 && time.Duration(rl.Window) < time.Second {
		return lim, fmt.Errorf("rate_limit: window: must be at least 1s, got %s", time.Duration(rl.Window))
	}
	if rl.Window > 0 {
		lim.Window = int64(time.Duration(rl.Window) / time.Second)
	}
	for _, f := range []struct {
		name    string
		outcome limiter.Outcome
		value   *int
	}{{"success", limiter.Success, rl.Success}, {"failure", limiter.Failure, rl.Failure}} {
		if f.value == nil {
			continue
		}
		if *f.value < 0 {
			return lim, fmt.Errorf("rate_limit: %s: must be 0 (unlimited) or more, got %d", f.name, *f.value)
		}
		lim.PerKind[f.outcome] = *f.value
	}
	return lim, nil
}
