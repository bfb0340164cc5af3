//go:build !unix

package main

import "os"

// isJournalStream: there is no journal here.
func isJournalStream(*os.File, string) bool { return false }
