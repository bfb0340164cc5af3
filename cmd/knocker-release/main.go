// Command knocker-release cross-builds the knocker CLI for the release
// targets, with the version stamped, and writes one archive per target
// (.tar.gz; .zip for Windows) and SHA256SUMS, which `sha256sum -c` checks.
// Archives are reproducible: entries are sorted, owned by root, and dated
// SOURCE_DATE_EPOCH or the commit time.
//
//	go run ./cmd/knocker-release [-out dist] [-version v1.2.3] [-targets linux/amd64,...]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// target is one GOOS/GOARCH (and GOARM for 32-bit ARM).
type target struct{ goos, goarch, goarm string }

func (t target) String() string {
	s := t.goos + "/" + t.goarch
	if t.goarm != "" {
		s += "v" + t.goarm
	}
	return s
}

// defaultTargets are the release targets: Linux servers and boards (armv7:
// Raspberry Pi OS 32-bit), both Mac architectures, and Windows.
var defaultTargets = []target{
	{"linux", "amd64", ""}, {"linux", "arm64", ""}, {"linux", "arm", "7"},
	{"darwin", "amd64", ""}, {"darwin", "arm64", ""}, {"windows", "amd64", ""},
}

func main() {
	out := flag.String("out", "dist", "directory for the archives and SHA256SUMS (created; existing archives of the same name are replaced)")
	version := flag.String("version", "", "version to stamp (default: git describe --tags --always --dirty, else dev)")
	targets := flag.String("targets", "", "comma-separated targets, e.g. linux/amd64,linux/armv7 (default: all release targets)")
	flag.Parse()
	if err := run(*out, *version, *targets); err != nil {
		fmt.Fprintln(os.Stderr, "knocker-release:", err)
		os.Exit(1)
	}
}

func run(out, version, targetList string) error {
	ts, err := parseTargets(targetList)
	if err != nil {
		return err
	}
	if version == "" {
		version = gitOutput("describe", "--tags", "--always", "--dirty")
		if version == "" {
			version = "dev"
		}
	}
	if strings.ContainsAny(version, " /\\'\"") {
		return fmt.Errorf("version %q: no spaces, slashes or quotes", version)
	}
	mtime := releaseTime()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	build, err := os.MkdirTemp("", "knocker-release-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(build)
	docs := []archiveFile{{name: "LICENSE", src: "LICENSE"}, {name: "README.md", src: filepath.Join("cmd", "knocker", "README.md")}}
	var archives []string
	for _, t := range ts {
		bin := filepath.Join(build, t.goos+"-"+t.goarch+t.goarm, "knocker")
		if t.goos == "windows" {
			bin += ".exe"
		}
		if err := buildCLI(t, version, bin); err != nil {
			return err
		}
		files := append([]archiveFile{{name: filepath.Base(bin), src: bin, exec: true}}, docs...)
		name := fmt.Sprintf("knocker_%s_%s_%s", version, t.goos, t.goarch)
		if t.goarm != "" {
			name += "v" + t.goarm
		}
		if t.goos == "windows" {
			name += ".zip"
			err = writeZip(filepath.Join(out, name), name[:len(name)-4], files, mtime)
		} else {
			name += ".tar.gz"
			err = writeTarGz(filepath.Join(out, name), name[:len(name)-7], files, mtime)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		archives = append(archives, name)
		fmt.Printf("%-14s %s\n", t, filepath.Join(out, name))
	}
	if err := writeChecksums(out, archives); err != nil {
		return err
	}
	fmt.Printf("checksums      %s\n", filepath.Join(out, "SHA256SUMS"))
	return nil
}

func parseTargets(list string) ([]target, error) {
	if list == "" {
		return defaultTargets, nil
	}
	var ts []target
	for _, s := range strings.Split(list, ",") {
		goos, arch, ok := strings.Cut(strings.TrimSpace(s), "/")
		if !ok || goos == "" || arch == "" {
			return nil, fmt.Errorf("target %q: want GOOS/GOARCH, e.g. linux/arm64 or linux/armv7", s)
		}
		t := target{goos: goos, goarch: arch}
		if v, ok := strings.CutPrefix(arch, "armv"); ok {
			t.goarch, t.goarm = "arm", v
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// buildCLI builds ./cmd/knocker for t: static, without local paths, with
// the version stamped.
func buildCLI(t target, version, bin string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "./cmd/knocker")
	cmd.Env = append(os.Environ(), "GOOS="+t.goos, "GOARCH="+t.goarch, "GOARM="+t.goarm, "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building for %s: %w", t, err)
	}
	return nil
}

// releaseTime dates the archive entries: SOURCE_DATE_EPOCH, else the
// commit's time, else the Unix epoch.
func releaseTime() time.Time {
	for _, s := range []string{os.Getenv("SOURCE_DATE_EPOCH"), gitOutput("log", "-1", "--format=%ct")} {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Unix(0, 0).UTC()
}

func gitOutput(args ...string) string {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
