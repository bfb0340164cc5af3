//go:build unix

package store

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive, non-blocking flock on path (creating the file
// and keeping it afterwards). flock belongs to the open file description, so
// a second Open in the same process is refused just like another process.
// The kernel drops the lock when the process dies, so a crash never leaves a
// stale lock behind.
func lockFile(path, whitelist string) (io.Closer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: opening lock file: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, lockedError(whitelist, path)
		}
		return nil, fmt.Errorf("store: locking %s: %w", path, err)
	}
	return f, nil
}
