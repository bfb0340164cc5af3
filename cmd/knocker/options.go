package main

// option describes one setting: its flag, environment variable and config
// file field, and knocker-cli's names for it.
type option struct {
	name        string // flag name, without dashes
	arg         string // placeholder in the help; "" for a boolean flag
	env         string
	field       string
	help        string
	aliases     []string // further flag names (knocker-cli's)
	legacyEnv   string   // knocker-cli's variable, where it differs from env
	legacyField string   // knocker-cli's ~/.knocker.yaml field
}

var options = []option{
	{name: "server", arg: "URL", env: "KNOCKER_SERVER", field: "server", legacyEnv: "KNOCKER_API_URL", legacyField: "api_url",
		help: "the knock server: a host (https:// is assumed), or an https:// or http:// URL, optionally with a path prefix"},
	{name: "key", arg: "KEY", env: "KNOCKER_KEY", field: "key", legacyEnv: "KNOCKER_API_KEY", legacyField: "api_key",
		help: "the API key; prefer --key-file or KNOCKER_KEY: process arguments are visible to other users"},
	{name: "key-file", arg: "FILE", env: "KNOCKER_KEY_FILE", field: "key_file",
		help: `a file holding the API key ("-": standard input); surrounding whitespace is ignored`},
	{name: "ttl", arg: "DURATION", env: "KNOCKER_TTL", field: "ttl", legacyField: "ttl",
		help: "how long to be whitelisted: 90s, 8h, 7d or seconds (default, or 0: the key's max_ttl); sent as whole seconds"},
	{name: "ip", arg: "IP/CIDR", env: "KNOCKER_IP", field: "ip",
		help: "whitelist this address or range instead of your own (needs a key with allow_remote_whitelist)"},
	{name: "family", arg: "4|6|both", env: "KNOCKER_FAMILY", field: "family",
		help: "connect over IPv4 (4), IPv6 (6), or each separately (both: a dual-stack device is whitelisted on both); default: the system's choice"},
	{name: "timeout", arg: "DURATION", env: "KNOCKER_TIMEOUT", field: "timeout",
		help: "time limit for each request (default 10s)"},
	{name: "check-interval", arg: "DURATION", env: "KNOCKER_CHECK_INTERVAL", field: "check_interval", legacyField: "check_interval", aliases: []string{"check_interval"},
		help: "how often to look for a new address (/knock/status, or --ip-check-url), to knock at once when it changes; a number alone is minutes, as in knocker-cli (default 1m; 0: only re-knock before expiry)"},
	{name: "ip-check-url", arg: "URL", env: "KNOCKER_IP_CHECK_URL", field: "ip_check_url", legacyField: "ip_check_url", aliases: []string{"ip_check_url"},
		help: "look the address up at this URL (answering the bare IP, as knocker-cli's comparison mode) instead of /knock/status"},
	{name: "retry-min", arg: "DURATION", env: "KNOCKER_RETRY_MIN", field: "retry_min",
		help: "first delay after a failed knock; doubles on each failure, with jitter (default 2s)"},
	{name: "retry-max", arg: "DURATION", env: "KNOCKER_RETRY_MAX", field: "retry_max",
		help: "longest delay between retries (default 5m)"},
	{name: "config", arg: "FILE", env: "KNOCKER_CONFIG",
		help: "the config file (default: $XDG_CONFIG_HOME/knocker/config.json, then knocker-cli's ~/.knocker.yaml); a .yaml or .yml file is read as knocker-cli's; an explicitly named file must exist"},
	{name: "verbose", help: "say where each setting came from (never the key itself)"},
	{name: "json", help: "print the result as JSON on standard output"},
	{name: "print", help: "only print the service definition and the commands; change nothing"},
	{name: "service", help: "only the service's state; no request to the server; exit code 0 running, 9 stopped, 10 not installed, 1 unknown"},
	{name: "events", arg: "MODE", help: eventsHelp},
}

func optionByName(name string) option {
	for _, o := range options {
		if o.name == name {
			return o
		}
	}
	panic("unknown option " + name)
}
