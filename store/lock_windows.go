package store

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/windows"
)

// lockFile takes an exclusive, non-blocking LockFileEx lock on the first
// byte of path (creating the file and keeping it afterwards). The lock
// belongs to the handle, so a second Open in the same process is refused
// just like another process, and Windows drops it when the process dies.
func lockFile(path, whitelist string) (io.Closer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: opening lock file: %w", err)
	}
	var whole windows.Overlapped
	err = windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &whole)
	if err != nil {
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, lockedError(whitelist, path)
		}
		return nil, fmt.Errorf("store: locking %s: %w", path, err)
	}
	return f, nil
}
