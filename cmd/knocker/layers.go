package main

import "fmt"

// Where a setting came from, highest precedence first. knocker-cli's
// variables and file (see legacy.go) come after ours.
const (
	layerFlag = iota
	layerEnv
	layerLegacyEnv
	layerFile
	layerLegacyFile
	layerDefault
)

// lookup finds a setting's value by precedence: flag, environment (ours,
// then knocker-cli's name), config file (ours, then
// knocker-cli's). origin names where it came from, for messages.
func (c *cli) lookup(p *parsedFlags, cfg *fileConfig, name string) (value, origin string, layer int) {
	o := optionByName(name)
	if p.set[name] {
		return *p.strs[name], "--" + name, layerFlag
	}
	if o.env != "" {
		if v := c.getenv(o.env); v != "" {
			return v, o.env, layerEnv
		}
	}
	if o.legacyEnv != "" {
		if v := c.getenv(o.legacyEnv); v != "" {
			return v, o.legacyEnv + " (knocker-cli)", layerLegacyEnv
		}
	}
	for f, layer := cfg, layerFile; f != nil; f, layer = f.fallback, layerLegacyFile {
		field := o.field
		if f.legacy {
			field = o.legacyField
		}
		if v, ok := f.values[field]; ok && field != "" {
			return v, fmt.Sprintf("%q in %s", field, f.path), layer
		}
	}
	return "", "", layerDefault
}

// given is lookup for a setting the command takes a flag for; ok is false
// when it takes none or no layer sets the setting.
func (c *cli) given(p *parsedFlags, cfg *fileConfig, name string) (value, origin string, ok bool) {
	if !p.has(name) {
		return "", "", false
	}
	value, origin, layer := c.lookup(p, cfg, name)
	return value, origin, layer != layerDefault
}
