// Package store holds Knocker's whitelist: which client addresses and networks
// may pass the gate, and until when. It knows nothing about Caddy.
//
// # Index (the hot path)
//
// Every protected request calls [Store.Allowed]. The index keeps one hash
// table per (address family, prefix length), keyed by the masked network
// address, split into 64 shards of open-addressing slot arrays. Readers take
// no locks and write no shared memory: a per-shard sequence counter lets
// them detect the rare concurrent move of entries and retry, so parallel
// readers never contend with each other or block on the single writer.
// For each family a published list names the prefix lengths in use, smallest
// table first; Allowed probes each listed length once and stops at the first
// active entry. Its cost is therefore bounded by the number of distinct
// prefix lengths in use (at most 33 for IPv4 and 129 for IPv6, typically
// 2–4), independent of how many entries are stored, and it does not
// allocate. Expired entries are ignored by comparing with the caller's
// clock, so they never authorize even before the sweeper removes them.
//
// # Access scopes
//
// A grant may be limited to access scopes (GrantOptions.Scopes); one
// without is a full-access grant. An entry is identified by its prefix and
// its scope set, so one address may hold a full grant and grants of
// several sets at once, each with its own expiry and owner. Each scope set
// has its own index, built as above; Allowed reads only the full-access
// one, so scoped entries cost it nothing. [Store.AllowedIn] reads it and
// then the index of each set containing the scope, found through a
// published copy-on-write table, also without locks or allocation.
//
// # Durability: snapshot + journal
//
// The whitelist file at Options.Path is a JSON snapshot of the full-access
// entries in the format of the original Python service ({"key":
// unix-expiry, ...}). Owners, grant details and the entries limited to
// scopes are in a metadata file beside it (see meta.go), so that a reader of
// the original format never mistakes a scoped entry for a full one. Changes
// are appended to Path+".journal" as one CRC-protected text line per change
// and fsynced before they become visible in memory and before the caller is
// answered. A durable grant therefore costs one small append and (shared)
// fsync, independent of the whitelist size.
//
// # Group commit
//
// A single committer goroutine owns all writes. It takes every request that is
// waiting, plans the whole batch against memory plus an overlay of the batch's
// own earlier changes (including MaxEntries evictions from an expiry min-heap),
// writes all journal records with one write, fsyncs once, and only then
// applies the changes to the index, emits events in commit order and wakes the
// callers. If the write or fsync fails, the batch fails as a whole, memory is
// untouched and the journal is truncated back to its previous length; if even
// that fails, the journal is considered broken and the next batch first writes
// a full snapshot and a fresh journal, so a failed record can never resurface.
//
// # Compaction and crash recovery
//
// When the journal outgrows max(1 MiB, the last snapshot and metadata
// file's size), the committer renames it to Path+".journal.old", starts a
// fresh journal, captures the entries, and a background goroutine writes a
// new metadata file and then a new snapshot, each atomically (temp file,
// fsync, rename, directory fsync), and then deletes ".journal.old". Close
// does a final compaction, leaving only the snapshot and the metadata file.
//
// Open loads the snapshot and the metadata file and replays ".journal.old"
// then ".journal". Records are absolute ("set expiry", "delete"), so
// replaying a journal over a snapshot that already contains its effects is
// harmless; this is what makes every crash point during compaction safe. A
// torn last record is a normal crash artifact and is cut off; a bad record
// followed by good ones is corruption and makes Open fail without touching
// any file. An exclusive flock on Path+".lock" keeps a second process (or a
// second Open in this process) away from the same files.
package store
