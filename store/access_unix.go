//go:build unix

package store

import "golang.org/x/sys/unix"

// dirWritable reports whether this process may create and remove files in
// dir, as access(2) judges it (permissions, read-only mounts), writing
// nothing.
func dirWritable(dir string) error { return unix.Access(dir, unix.W_OK|unix.X_OK) }

// fileReadWritable reports whether this process may read and write path;
// the error wraps fs.ErrNotExist if there is no such file.
func fileReadWritable(path string) error { return unix.Access(path, unix.R_OK|unix.W_OK) }
