package store

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Journal records are text lines so that an operator can read them:
//
//	<crc32c of the rest of the line, 8 lowercase hex> + <canonical key> <expiry> [<owner>] [scopes=<set>] [<name>=<value>...]\n
//	<crc32c of the rest of the line, 8 lowercase hex> - <canonical key> [scopes=<set>]\n
//
// with op '+' (set the expiry and owner of the key's entry of that scope
// set) or '-' (delete that entry), the owner a Go-quoted string, absent for
// the unknown owner (so a journal of a version without owners reads the
// same), the scope set as its sorted names joined by commas, absent for
// full access (so a journal without scopes reads the same), and then the
// grant's details (see appendInfo), absent when unknown. Both are
// absolute, never relative to the previous state; replaying a record twice
// has the same effect as once, which the crash recovery relies on.

const (
	opSet    = '+'
	opDelete = '-'
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type journalRecord struct {
	op     byte
	prefix netip.Prefix
	exp    int64
	scopes []string // canonical; nil: full access
	owner  string
	info   grantInfo
}

// appendRecord appends one encoded record to dst.
func appendRecord(dst []byte, op byte, p netip.Prefix, exp int64, scopes []string, owner string, info grantInfo) []byte {
	start := len(dst)
	dst = append(dst, "00000000 "...)
	body := len(dst)
	dst = append(dst, op, ' ')
	dst = appendPrefix(dst, p)
	if op == opSet {
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, exp, 10)
		if owner != "" {
			dst = append(dst, ' ')
			dst = strconv.AppendQuoteToASCII(dst, owner)
		}
	}
	dst = appendScopes(dst, scopes)
	if op == opSet {
		dst = appendInfo(dst, info)
	}
	const hexdigits = "0123456789abcdef"
	crc := crc32.Checksum(dst[body:], castagnoli)
	for i := 7; i >= 0; i-- {
		dst[start+i] = hexdigits[crc&0xf]
		crc >>= 4
	}
	return append(dst, '\n')
}

// errBadFrame means the line is not a record at all (torn or garbage), as
// opposed to a record with a valid checksum and nonsensical content.
var errBadFrame = errors.New("bad checksum or framing")

// parseRecord decodes one line without its newline.
func parseRecord(line []byte) (journalRecord, error) {
	if len(line) < 12 || line[8] != ' ' {
		return journalRecord{}, errBadFrame
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil || bytes.ContainsAny(line[:8], "ABCDEF") {
		return journalRecord{}, errBadFrame
	}
	body := line[9:]
	if crc32.Checksum(body, castagnoli) != uint32(want) {
		return journalRecord{}, errBadFrame
	}
	// From here on the checksum matched: anything wrong is real corruption
	// (or a bug), never a torn write.
	if body[1] != ' ' || (body[0] != opSet && body[0] != opDelete) {
		return journalRecord{}, fmt.Errorf("unknown operation %q", body[:2])
	}
	rec := journalRecord{op: body[0]}
	key := string(body[2:])
	if k, fields, more := strings.Cut(key, " "); rec.op == opDelete && more {
		key = k
		if rec.scopes, fields, err = cutScopes(fields); err != nil {
			return journalRecord{}, err
		}
		if rec.scopes == nil || fields != "" {
			return journalRecord{}, fmt.Errorf("bad delete record: want - <key> [scopes=<set>]")
		}
	}
	if rec.op == opSet {
		k, rest, ok := bytes.Cut(body[2:], []byte{' '})
		if !ok {
			return journalRecord{}, fmt.Errorf("set record without expiry")
		}
		key = string(k)
		exp, tail, _ := bytes.Cut(rest, []byte{' '})
		if rec.exp, err = strconv.ParseInt(string(exp), 10, 64); err != nil {
			return journalRecord{}, fmt.Errorf("bad expiry %q", exp)
		}
		fields := string(tail)
		if strings.HasPrefix(fields, `"`) {
			q, err := strconv.QuotedPrefix(fields)
			if err == nil {
				rec.owner, _ = strconv.Unquote(q)
			}
			if err != nil || rec.owner == "" || CheckOwnerName(rec.owner) != nil || len(q) < len(fields) && fields[len(q)] != ' ' {
				return journalRecord{}, fmt.Errorf("bad owner in %q", fields)
			}
			fields = strings.TrimPrefix(fields[len(q):], " ")
		}
		if rec.scopes, fields, err = cutScopes(fields); err != nil {
			return journalRecord{}, err
		}
		if rec.info, err = parseInfo(fields); err != nil {
			return journalRecord{}, err
		}
	}
	if rec.prefix, err = ParseEntryKey(key); err != nil {
		return journalRecord{}, fmt.Errorf("bad key: %v", err)
	}
	return rec, nil
}

// journalScan is the result of reading one journal file.
type journalScan struct {
	records  int
	validLen int64 // bytes up to and including the last good record
	torn     bool  // bytes after validLen form a torn tail (to be cut off)
	tornLine int
}

// replayJournal reads the journal at path and calls apply for each record in
// order. A missing file is an empty journal. A torn tail (incomplete last
// line, bad checksum, or garbage with no good record after it) is reported in
// the scan; a bad line followed by a good record is corruption and returned
// as an error naming the file and line. The file is never modified here.
func replayJournal(path string, apply func(journalRecord)) (journalScan, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return journalScan{}, nil
	}
	if err != nil {
		return journalScan{}, fmt.Errorf("store: reading journal: %w", err)
	}
	var scan journalScan
	off, line := 0, 0
	for off < len(data) {
		line++
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			break // incomplete last line
		}
		rec, err := parseRecord(data[off : off+nl])
		if err != nil {
			if !errors.Is(err, errBadFrame) {
				return scan, corruptJournal(path, line, err.Error())
			}
			break
		}
		apply(rec)
		scan.records++
		off += nl + 1
	}
	scan.validLen = int64(off)
	if off == len(data) {
		return scan, nil
	}
	// Something follows the last good record. It is a torn tail only if no
	// good record comes after it.
	badLine := line
	rest := data[off:]
	for l := badLine; len(rest) > 0; l++ {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			break
		}
		if l > badLine {
			if _, err := parseRecord(rest[:nl]); err == nil || !errors.Is(err, errBadFrame) {
				return scan, corruptJournal(path, badLine, fmt.Sprintf("damaged record followed by a valid one at line %d", l))
			}
		}
		rest = rest[nl+1:]
	}
	scan.torn, scan.tornLine = true, badLine
	return scan, nil
}

// openJournalFile opens path for appending, creating it if needed.
func openJournalFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}
