package firewalld

import "testing"

// Sandbox helpers for the external test package (knock_http_test.go),
// which imports the root knocker package and so cannot be package firewalld.
var (
	NeedSandbox   = func(t testing.TB) { needSandbox(t) }
	UseZones      = useZones
	RichRules     = richRules
	StartListener = startListener
	ExpectReach   = expectReach
	Fwcmd         = fwcmd
)
