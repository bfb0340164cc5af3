package store

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// The snapshot is the Python Knocker's whitelist.json: one JSON object
// mapping canonical keys to integer unix expiries, 2-space indented, keys
// sorted, no trailing newline.

// writeSnapshot atomically replaces path with a snapshot of recs (see
// writeFileAtomic) and returns the new file's size.
func writeSnapshot(path string, recs []keyExp) (int64, error) {
	n, err := writeFileAtomic(path, func(w *bufio.Writer) int64 { return encodeSnapshot(w, recs) })
	if err != nil {
		return 0, fmt.Errorf("store: writing snapshot: %w", err)
	}
	return n, nil
}

// encodeSnapshot writes recs in the Python Knocker's format, as Python's
// json.dump(..., indent=2, sort_keys=True) would, and returns the byte
// count. Write errors are left for the caller's Flush to report.
func encodeSnapshot(w *bufio.Writer, recs []keyExp) int64 {
	type line struct {
		key string
		exp int64
	}
	lines := make([]line, len(recs))
	for i, r := range recs {
		lines[i] = line{FormatPrefix(r.key.prefix()), r.exp}
	}
	slices.SortFunc(lines, func(a, b line) int { return strings.Compare(a.key, b.key) })

	var n int64
	put := func(s string) { k, _ := w.WriteString(s); n += int64(k) }
	if len(lines) == 0 {
		put("{}")
		return n
	}
	var num []byte
	put("{\n")
	for i, l := range lines {
		put(`  "`)
		put(l.key) // canonical keys never need JSON escaping
		put(`": `)
		num = strconv.AppendInt(num[:0], l.exp, 10)
		k, _ := w.Write(num)
		n += int64(k)
		if i < len(lines)-1 {
			put(",\n")
		}
	}
	put("\n}")
	return n
}

// tempSuffix marks snapshot temp files; leftovers from a crash are removed
// by Open.
const tempSuffix = ".tmp-"

// syncDir makes renames, creations and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
