package main

import "strings"

// settingOrigin is where a setting came from.
type settingOrigin struct{ name, origin string }

func (s *settings) noteOrigin(name, origin string) {
	s.origins = append(s.origins, settingOrigin{name, origin})
}

// describeOrigins is the --verbose line: each setting and where it came
// from, never a value.
func (s *settings) describeOrigins() string {
	parts := make([]string, len(s.origins))
	for i, o := range s.origins {
		parts[i] = o.name + " from " + o.origin
	}
	if len(parts) == 0 {
		return "settings: all defaults"
	}
	return "settings: " + strings.Join(parts, "; ")
}
