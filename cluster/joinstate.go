package cluster

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// A store that has caught up with a bucket once is a member: from then on
// a catch-up removes its entries the bucket lacks. Before that its entries
// are published instead, so that enabling cluster mode on a node never
// drops its grants. The file beside the whitelist says which bucket it
// joined; removing the cluster from the config removes the file (see
// Leave), so that grants made alone are published again on re-joining.

const stateSuffix = ".cluster"

type joinState struct {
	Bucket string `json:"bucket"`
}

func (r *Replicator) joinedBefore(bucket string) bool {
	b, err := os.ReadFile(r.statePath)
	if err != nil {
		return false
	}
	var s joinState
	return json.Unmarshal(b, &s) == nil && s.Bucket == bucket
}

// saveJoin records the bucket durably (write, fsync, rename).
func (r *Replicator) saveJoin(bucket string) error {
	if r.joinedBefore(bucket) {
		return nil
	}
	b, _ := json.Marshal(joinState{Bucket: bucket})
	return writeFileSync(r.statePath, append(b, '\n'))
}

// writeFileSync replaces path with b durably: a temporary file, fsync,
// rename, fsync of the directory.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Leave forgets that the whitelist at whitelistPath joined a cluster: a
// config without a cluster calls it when it starts.
func Leave(whitelistPath string) (bool, error) {
	os.Remove(whitelistPath + pendingSuffix) // records for a cluster it no longer follows
	err := os.Remove(whitelistPath + stateSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
