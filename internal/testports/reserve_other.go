//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package testports

import "os"

// reserve holds path open; without flock here the reservation is this process's
// own (the tests that need ports run on Linux in CI).
func reserve(path string) (*os.File, bool) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	return f, err == nil
}

// reserveIsExclusive: a second reserve of a held path also succeeds here.
const reserveIsExclusive = false
