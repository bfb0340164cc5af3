package store

import "fmt"

// The inter-process lock on a whitelist: lockFile, one per kind of system
// (lock_flock.go, lock_windows.go).

// lockedError is Open's error when another holder has the lock.
func lockedError(whitelist, lockPath string) error {
	return fmt.Errorf("%w: another process (e.g. a second Caddy) is using the whitelist file %s (lock %s is held)", ErrLocked, whitelist, lockPath)
}
