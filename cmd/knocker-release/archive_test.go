package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testFiles(t *testing.T) []archiveFile {
	dir := t.TempDir()
	bin, doc := filepath.Join(dir, "knocker"), filepath.Join(dir, "README.md")
	if err := os.WriteFile(bin, []byte("binary"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(doc, []byte("# readme"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []archiveFile{{name: "knocker", src: bin, exec: true}, {name: "README.md", src: doc}}
}

var mtime = time.Unix(1790000000, 0).UTC()

// The archives hold the files under one directory, sorted, with fixed
// modes, owner and time, and SHA256SUMS lists each archive's digest.
func TestArchives(t *testing.T) {
	files, out := testFiles(t), t.TempDir()
	if err := writeTarGz(filepath.Join(out, "a.tar.gz"), "a", files, mtime); err != nil {
		t.Fatal(err)
	}
	if err := writeZip(filepath.Join(out, "a.zip"), "a", files, mtime); err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(filepath.Join(out, "a.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got = append(got, h.Name+" "+os.FileMode(h.Mode).String()+" "+h.Uname+" "+h.ModTime.UTC().Format(time.RFC3339)+" "+string(data))
	}
	want := "a/README.md -rw-r--r-- root 2026-09-21T14:13:20Z # readme|a/knocker -rwxr-xr-x root 2026-09-21T14:13:20Z binary"
	if strings.Join(got, "|") != want {
		t.Fatalf("tar entries:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}

	zr, err := zip.OpenReader(filepath.Join(out, "a.zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got = got[:0]
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		got = append(got, zf.Name+" "+zf.Mode().String()+" "+string(data))
	}
	if w := "a/README.md -rw-r--r-- # readme|a/knocker -rwxr-xr-x binary"; strings.Join(got, "|") != w {
		t.Fatalf("zip entries: %s, want %s", strings.Join(got, "|"), w)
	}

	if err := writeChecksums(out, []string{"a.zip", "a.tar.gz"}); err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	tgz, _ := fileSHA256(filepath.Join(out, "a.tar.gz"))
	zsum, _ := fileSHA256(filepath.Join(out, "a.zip"))
	if string(sums) != tgz+"  a.tar.gz\n"+zsum+"  a.zip\n" {
		t.Fatalf("SHA256SUMS:\n%s", sums)
	}

	// The same input gives the same bytes.
	if err := writeTarGz(filepath.Join(out, "b.tar.gz"), "a", files, mtime); err != nil {
		t.Fatal(err)
	}
	if again, _ := fileSHA256(filepath.Join(out, "b.tar.gz")); again != tgz {
		t.Fatal("the tar.gz is not reproducible")
	}
}

func TestParseTargets(t *testing.T) {
	ts, err := parseTargets("linux/armv7, windows/amd64")
	if err != nil || len(ts) != 2 || ts[0] != (target{"linux", "arm", "7"}) || ts[1] != (target{"windows", "amd64", ""}) {
		t.Fatalf("%v %v", ts, err)
	}
	if _, err := parseTargets("linux"); err == nil {
		t.Fatal("a target without GOARCH was accepted")
	}
	if ts, _ := parseTargets(""); len(ts) != len(defaultTargets) {
		t.Fatal("the default targets")
	}
}
