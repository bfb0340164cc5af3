package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const maxKeyFileSize = 64 << 10

// resolveKey finds the key: the highest layer that sets key or key_file
// wins; one layer setting both is an error. Messages never include the key.
func (c *cli) resolveKey(p *parsedFlags, cfg *fileConfig, s *settings) *cmdError {
	kv, kOrigin, kLayer := c.lookup(p, cfg, "key")
	fv, fOrigin, fLayer := c.lookup(p, cfg, "key-file")
	switch {
	case kLayer == layerDefault && fLayer == layerDefault:
		return usageErr("no API key: use --key-file, KNOCKER_KEY_FILE, KNOCKER_KEY, or \"key_file\" or \"key\" in the config file (%s); knocker-cli's KNOCKER_API_KEY and \"api_key\" in ~/.knocker.yaml work too", c.defaultConfigName())
	case kLayer == fLayer:
		return usageErr("both %s and %s are set: use one", kOrigin, fOrigin)
	case kLayer < fLayer:
		s.key, s.keyOrigin, s.keyLayer = strings.TrimSpace(kv), kOrigin, kLayer
		if f := cfg; kLayer == layerFile || kLayer == layerLegacyFile {
			if kLayer == layerLegacyFile {
				f = cfg.fallback
			}
			s.keyInFile, s.keyConfig = true, f.path
			if f.mode&0o077 != 0 {
				s.warnings = append(s.warnings, fmt.Sprintf("the config file %s holds the API key and is readable by other users (mode %04o): chmod 600 %s", f.path, f.mode, f.path))
			}
		}
	default:
		s.keyLayer = fLayer
		var data []byte
		if fv == "-" && fLayer != layerFile {
			var err error
			data, err = io.ReadAll(io.LimitReader(c.stdin, maxKeyFileSize+1))
			if err != nil {
				return usageErr("cannot read the API key from standard input: %v", err)
			}
			s.keyOrigin = fOrigin + " (standard input)"
		} else {
			path := c.expandHome(fv)
			if fLayer == layerFile && !filepath.IsAbs(path) {
				path = filepath.Join(filepath.Dir(cfg.path), path)
			}
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			s.keyFile, s.keyOrigin = path, fmt.Sprintf("the key file %s (from %s)", path, fOrigin)
			f, err := os.Open(path)
			if err != nil {
				return usageErr("cannot read the key file (from %s): %v", fOrigin, err)
			}
			defer f.Close()
			if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
				s.warnings = append(s.warnings, fmt.Sprintf("the key file %s is readable by other users (mode %04o): chmod 600 %s", path, st.Mode().Perm(), path))
			}
			data, err = io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
			if err != nil {
				return usageErr("cannot read the key file %s: %v", path, err)
			}
		}
		if len(data) > maxKeyFileSize {
			return usageErr("%s is larger than 64 KiB: not a key file", s.keyOrigin)
		}
		s.key = string(bytes.TrimSpace(data))
	}
	if s.key == "" {
		return usageErr("the API key from %s is empty", s.keyOrigin)
	}
	s.noteOrigin("key", s.keyOrigin)
	for i := 0; i < len(s.key); i++ {
		if b := s.key[i]; b < 0x20 || b == 0x7f {
			return usageErr("the API key from %s contains a control character (a line break?)", s.keyOrigin)
		}
	}
	return nil
}
