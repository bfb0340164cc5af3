package store

import (
	"errors"
	"strconv"
)

// CorruptionError says which file is corrupt, where, and why. It wraps
// ErrCorrupt, so errors.Is(err, ErrCorrupt) holds, and the cause.
type CorruptionError struct {
	File string // the whitelist, its journal or its metadata file
	Kind string // "" for the whitelist, "journal", "metadata"
	Line int    // 1-based; 0 when the file is not read by lines
	Err  error  // the cause
}

func (e *CorruptionError) Error() string {
	where := e.File
	if e.Kind != "" {
		where = e.Kind + " " + where
	}
	if e.Line > 0 {
		where += " line " + strconv.Itoa(e.Line)
	}
	return ErrCorrupt.Error() + ": " + where + ": " + e.Err.Error()
}

// Unwrap gives ErrCorrupt and the cause.
func (e *CorruptionError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

func corruptJournal(path string, line int, msg string) error {
	return &CorruptionError{File: path, Kind: "journal", Line: line, Err: errors.New(msg)}
}
