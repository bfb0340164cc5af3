package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// archiveFile is one file of an archive: its name inside the archive's
// top directory and where to read it.
type archiveFile struct {
	name, src string
	exec      bool
}

func (f archiveFile) mode() int64 {
	if f.exec {
		return 0o755
	}
	return 0o644
}

// writeTarGz writes files under dir/ into a gzipped tar at path.
func writeTarGz(path, dir string, files []archiveFile, mtime time.Time) error {
	return writeAtomic(path, func(w io.Writer) error {
		gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return err
		}
		tw := tar.NewWriter(gz)
		for _, f := range sortedFiles(files) {
			data, err := os.ReadFile(f.src)
			if err != nil {
				return err
			}
			hdr := &tar.Header{Name: dir + "/" + f.name, Mode: f.mode(), Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return gz.Close()
	})
}

// writeZip writes files under dir/ into a zip at path.
func writeZip(path, dir string, files []archiveFile, mtime time.Time) error {
	return writeAtomic(path, func(w io.Writer) error {
		zw := zip.NewWriter(w)
		for _, f := range sortedFiles(files) {
			data, err := os.ReadFile(f.src)
			if err != nil {
				return err
			}
			hdr := &zip.FileHeader{Name: dir + "/" + f.name, Method: zip.Deflate, Modified: mtime}
			hdr.SetMode(os.FileMode(f.mode()))
			fw, err := zw.CreateHeader(hdr)
			if err != nil {
				return err
			}
			if _, err := fw.Write(data); err != nil {
				return err
			}
		}
		return zw.Close()
	})
}

func sortedFiles(files []archiveFile) []archiveFile {
	s := slices.Clone(files)
	slices.SortFunc(s, func(a, b archiveFile) int { return strings.Compare(a.name, b.name) })
	return s
}

// writeChecksums writes dir/SHA256SUMS for the named files in dir, in the
// format sha256sum -c reads.
func writeChecksums(dir string, names []string) error {
	names = slices.Sorted(slices.Values(names))
	var b strings.Builder
	for _, n := range names {
		sum, err := fileSHA256(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, n)
	}
	return writeAtomic(filepath.Join(dir, "SHA256SUMS"), func(w io.Writer) error {
		_, err := io.WriteString(w, b.String())
		return err
	})
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeAtomic writes path through a temporary file renamed into place, so
// a failed run never leaves a truncated archive under the final name.
func writeAtomic(path string, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
