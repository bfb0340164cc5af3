//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// isJournalStream reports whether f is the stream JOURNAL_STREAM
// ("<device>:<inode>") names, as systemd documents for detecting it.
func isJournalStream(f *os.File, journalStream string) bool {
	if journalStream == "" {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fmt.Sprintf("%d:%d", st.Dev, st.Ino) == journalStream
}
