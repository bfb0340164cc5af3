package main

import (
	"errors"
	"strings"
)

// family is the address family a client connects over.
type family int

const (
	familyAuto family = iota // the system's choice
	family4
	family6
	familyBoth
)

func parseFamily(s string) (family, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return familyAuto, nil
	case "4", "ipv4", "v4":
		return family4, nil
	case "6", "ipv6", "v6":
		return family6, nil
	case "both", "46", "dual":
		return familyBoth, nil
	}
	return 0, errors.New("must be 4, 6, both or auto")
}

func (f family) String() string {
	return [...]string{"auto", "4", "6", "both"}[f]
}

// network is the dial network for one family.
func (f family) network() string {
	switch f {
	case family4:
		return "tcp4"
	case family6:
		return "tcp6"
	}
	return "tcp"
}

// label names a family in output; "" for the system's choice.
func (f family) label() string {
	switch f {
	case family4:
		return "IPv4"
	case family6:
		return "IPv6"
	}
	return ""
}

// jsonName names a family in JSON output.
func (f family) jsonName() string {
	switch f {
	case family4:
		return "ipv4"
	case family6:
		return "ipv6"
	}
	return "auto"
}

// members are the families to knock over.
func (f family) members() []family {
	if f == familyBoth {
		return []family{family4, family6}
	}
	return []family{f}
}
