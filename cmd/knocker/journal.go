package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"unicode/utf8"
)

// journalSocket is journald's native socket; tests point it elsewhere.
var journalSocket = "/run/systemd/journal/socket"

// maxJournalValue bounds each value, so that an entry always fits in one
// datagram (journald's other way, a memfd for large entries, is not
// needed for events of a few hundred bytes).
const maxJournalValue = 4096

// journalSink writes events to journald with its native protocol: one
// datagram per entry, sent to the socket's path (not over a connection).
// The first failed write ends the events for this run, as knocker-cli's
// sink did.
type journalSink struct {
	conn   *net.UnixConn
	addr   *net.UnixAddr
	stderr io.Writer // for the one warning when writing fails

	mu   sync.Mutex
	done bool // writing failed: no more attempts
}

// openJournal returns a sink for the journal if its socket answers; nil
// otherwise (not Linux, no systemd).
func openJournal(goos string, stderr io.Writer) *journalSink {
	if goos != "linux" || journalSocket == "" {
		return nil
	}
	addr := &net.UnixAddr{Name: journalSocket, Net: "unixgram"}
	// Dialing checks that journald listens, as knocker-cli's check does.
	probe, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return nil
	}
	probe.Close()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"})
	if err != nil {
		return nil
	}
	return &journalSink{conn: conn, addr: addr, stderr: stderr}
}

func (j *journalSink) emit(e event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		return
	}
	if _, _, err := j.conn.WriteMsgUnix(encodeJournal(e.entry()), nil, j.addr); err != nil {
		j.done = true
		// journald went away (stopped, not there any more): as
		// knocker-cli does, stop quietly; anything else is worth one warning.
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOTCONN) {
			fmt.Fprintf(j.stderr, "knocker: warning: cannot write events to the journal, stopping them: %v\n", err)
		}
	}
}

// encodeJournal encodes an entry in journald's native protocol: KEY=value
// lines, and for a value with a newline the binary-safe form KEY, newline,
// the length as 64-bit little-endian, the value, newline. Keys are sorted,
// so that the encoding is stable.
func encodeJournal(fields map[string]string) []byte {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for _, k := range keys {
		v := fields[k]
		if len(v) > maxJournalValue {
			cut := maxJournalValue - 3
			for cut > 0 && !utf8.RuneStart(v[cut]) { // never split a character
				cut--
			}
			v = v[:cut] + "..."
		}
		if !strings.Contains(v, "\n") {
			b = append(b, k...)
			b = append(b, '=')
			b = append(b, v...)
			b = append(b, '\n')
			continue
		}
		b = append(b, k...)
		b = append(b, '\n')
		b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
		b = append(b, v...)
		b = append(b, '\n')
	}
	return b
}
