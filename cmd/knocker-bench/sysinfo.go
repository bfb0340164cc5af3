//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// machine describes where the benchmark ran, read from /proc.
type machine struct {
	CPUModel   string
	Cores      int
	Hypervisor bool
	MemTotal   int64
	Kernel     string
	OS         string
	GoVersion  string
	Caddy      string
	Wrk        string
	TmpFS      string // file system type of the temp dir (where whitelists and journals live)
	LoadStart  string
	LoadEnd    string
}

func readMachine(ctx context.Context, o *options, workDir string) machine {
	m := machine{Cores: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if k == "model name" && m.CPUModel == "" {
				m.CPUModel = v
			}
			if k == "flags" && strings.Contains(" "+v+" ", " hypervisor ") {
				m.Hypervisor = true
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
				n, _ := strconv.ParseInt(v, 10, 64)
				m.MemTotal = n * 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if out, err := run(ctx, time.Minute, o.repo, nil, "go", "env", "GOVERSION"); err == nil {
		m.GoVersion = strings.TrimSpace(out)
	} else {
		m.GoVersion = "unknown (" + err.Error() + ")"
	}
	if out, err := run(ctx, 30*time.Second, "", nil, o.caddyBin, "version"); err == nil {
		m.Caddy = strings.TrimSpace(out)
	} else {
		m.Caddy = "unknown (" + err.Error() + ")"
	}
	out, _ := run(ctx, 30*time.Second, "", nil, "wrk", "-v") // exits 1 after printing its version
	m.Wrk = strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	m.TmpFS = fsType(workDir)
	m.LoadStart = loadAvg()
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	names := map[int64]string{
		0xEF53:     "ext2/3/4",
		0x01021994: "tmpfs (fsync is free: durable-knock figures are not representative)",
		0x58465342: "xfs",
		0x9123683E: "btrfs",
		0x794c7630: "overlayfs",
		0x6969:     "nfs",
		0x2FC12FC1: "zfs",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("0x%x", st.Type)
}
