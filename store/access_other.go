//go:build !unix

package store

import (
	"errors"
	"fmt"
	"os"
)

// Without access(2) (Windows), the checks read the file mode: a read-only
// attribute shows as a mode without write permission. ACLs are not
// consulted; the write probe (probeWrite) finds what they refuse.

// dirWritable reports whether dir is a directory. Its mode says nothing:
// Windows sets the read-only attribute on folders (Go then reports 0555)
// without stopping files being created in them; the write probe decides.
func dirWritable(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	return nil
}

// fileReadWritable reports whether path is a file that is not read-only;
// the error wraps fs.ErrNotExist if there is no such file.
func fileReadWritable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return writableMode(fi)
}

func writableMode(fi os.FileInfo) error {
	if fi.Mode().Perm()&0o200 == 0 {
		return fmt.Errorf("%s is read-only", fi.Name())
	}
	return nil
}
