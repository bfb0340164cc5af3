//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package testports

import (
	"os"
	"syscall"
)

// reserve takes an exclusive flock on path, which the kernel drops when the
// process exits, however it exits.
func reserve(path string) (*os.File, bool) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, false
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// reserveIsExclusive: a second reserve of a held path fails.
const reserveIsExclusive = true
