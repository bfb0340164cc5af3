package firewalld

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/godbus/dbus/v5"

	"github.com/caddy-knocker/knocker/firewall"
)

func TestProvisionValidation(t *testing.T) {
	for _, tc := range []struct {
		name, config, wantErr string
	}{
		{"minimal", `{"ports":["22/tcp"]}`, ""},
		{"full", `{"zones":["public","dmz"],"action":"reject","ports":["22/tcp","27015/udp"],"monitor":["203.0.113.0/24","2001:db8::/32"],"state_file":"/tmp/x.json","queue_size":8}`, ""},
		{"no ports", `{}`, "ports: at least one"},
		{"port zero", `{"ports":["0/tcp"]}`, "ports: \"0/tcp\": port must be a number from 1 to 65535"},
		{"port too big", `{"ports":["65536/tcp"]}`, "ports: \"65536/tcp\": port must be"},
		{"port leading zero", `{"ports":["022/tcp"]}`, "port must be"},
		{"port range", `{"ports":["22-23/tcp"]}`, "port must be"},
		{"no protocol", `{"ports":["22"]}`, "want <port>/<tcp|udp>"},
		{"sctp", `{"ports":["22/sctp"]}`, "protocol must be tcp or udp"},
		{"upper-case protocol", `{"ports":["22/TCP"]}`, "protocol must be tcp or udp"},
		{"duplicate port", `{"ports":["22/tcp","22/tcp"]}`, "ports: 22/tcp listed twice"},
		{"same port other protocol", `{"ports":["53/tcp","53/udp"]}`, ""},
		{"bad action", `{"ports":["22/tcp"],"action":"accept"}`, "action: \"accept\" is not drop or reject"},
		{"monitor without mask", `{"ports":["22/tcp"],"monitor":["203.0.113.7"]}`, "monitor: \"203.0.113.7\" is not a CIDR with an explicit mask"},
		{"monitor host bits", `{"ports":["22/tcp"],"monitor":["203.0.113.7/24"]}`, "monitor: \"203.0.113.7/24\" has host bits set; use 203.0.113.0/24"},
		{"monitor mapped", `{"ports":["22/tcp"],"monitor":["::ffff:203.0.113.0/120"]}`, "IPv4-mapped"},
		{"monitor zoned", `{"ports":["22/tcp"],"monitor":["fe80::%eth0/64"]}`, "monitor:"},
		{"monitor duplicate", `{"ports":["22/tcp"],"monitor":["10.0.0.0/8","10.0.0.0/8"]}`, "monitor: 10.0.0.0/8 listed twice"},
		{"monitor hostname", `{"ports":["22/tcp"],"monitor":["example.com/24"]}`, "monitor:"},
		{"empty zone", `{"ports":["22/tcp"],"zones":[""]}`, "zones: empty zone name"},
		{"zone with quote", `{"ports":["22/tcp"],"zones":["pub\"lic"]}`, "zones: \"pub\\\"lic\" is not a valid zone name"},
		{"duplicate zone", `{"ports":["22/tcp"],"zones":["public","public"]}`, "zones: \"public\" listed twice"},
		{"negative queue", `{"ports":["22/tcp"],"queue_size":-1}`, "queue_size: must be from 1 to 65536"},
		{"huge queue", `{"ports":["22/tcp"],"queue_size":1000000}`, "queue_size:"},
		{"unknown field", `{"ports":["22/tcp"],"port":["23/tcp"]}`, "unknown field \"port\""},
		{"scoped ports only", `{"scoped_ports":{"games":["25565/udp","25565/tcp"],"admin":["22/tcp"]}}`, ""},
		{"scoped and unscoped", `{"ports":["2222/tcp"],"scoped_ports":{"games":["25565/udp"]}}`, ""},
		{"empty scoped ports", `{"scoped_ports":{}}`, "ports: at least one"},
		{"scope without ports", `{"ports":["22/tcp"],"scoped_ports":{"games":[]}}`, "scoped_ports: games: no ports listed"},
		{"bad scope name", `{"ports":["22/tcp"],"scoped_ports":{"Games":["25565/udp"]}}`, "scoped_ports: \"Games\" is not a scope name"},
		{"empty scope name", `{"ports":["22/tcp"],"scoped_ports":{"":["25565/udp"]}}`, "scoped_ports: \"\" is not a scope name"},
		{"bad scoped port", `{"scoped_ports":{"games":["25565"]}}`, "scoped_ports: games: \"25565\": want <port>/<tcp|udp>"},
		{"scoped port twice", `{"scoped_ports":{"games":["25565/udp","25565/udp"]}}`, "scoped_ports: games: 25565/udp listed twice"},
		{"port unscoped and scoped", `{"ports":["22/tcp"],"scoped_ports":{"admin":["22/tcp"]}}`, "scoped_ports: admin: 22/tcp is also listed in ports"},
		{"port in two scopes", `{"scoped_ports":{"games":["8080/tcp"],"media":["8080/tcp"]}}`, "scoped_ports: media: 8080/tcp is also listed in scoped_ports: games"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provision(t, tc.config)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestProvisionDefaultsAndNormalisation(t *testing.T) {
	a, err := provision(t, `{"ports":["22/tcp"],"monitor":["0.0.0.0/0","10.0.0.0/8","2001:db8::/32"],"state_file":"rel/state.json"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("2001:db8::/32")}
	if !reflect.DeepEqual(a.cfg.monitor, want) {
		t.Errorf("monitor = %v, want %v (a /0 covers its family)", a.cfg.monitor, want)
	}
	if a.cfg.action != "drop" || a.cfg.queueSize != 32 || len(a.cfg.zones) != 0 {
		t.Errorf("defaults: action %q, queue %d, zones %v", a.cfg.action, a.cfg.queueSize, a.cfg.zones)
	}
	if !strings.HasPrefix(a.cfg.stateFile, "/") {
		t.Errorf("state_file %q not made absolute", a.cfg.stateFile)
	}
	b, err := provision(t, `{"ports":["22/tcp"]}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(b.cfg.monitor); got != "[0.0.0.0/0 ::/0]" {
		t.Errorf("default monitor = %s", got)
	}
	if got := defaultStatePath("/var/lib/caddy/knocker/whitelist.json"); got != "/var/lib/caddy/knocker/whitelist.firewalld.json" {
		t.Errorf("defaultStatePath = %s", got)
	}
}

// TestPortsFor: the ports a grant opens by its scopes. Full access opens
// every port; a scoped grant the unscoped ports and those of its scopes.
func TestPortsFor(t *testing.T) {
	b, err := provision(t, `{"ports":["2222/tcp"],"scoped_ports":{"games":["25565/udp","25565/tcp"],"media":["8096/tcp"],"admin":["22/tcp"]}}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		scopes []string
		want   string
	}{
		{nil, "[2222/tcp 22/tcp 25565/udp 25565/tcp 8096/tcp]"}, // unscoped first, then by scope name
		{[]string{"games"}, "[2222/tcp 25565/udp 25565/tcp]"},
		{[]string{"games", "media"}, "[2222/tcp 25565/udp 25565/tcp 8096/tcp]"},
		{[]string{"other"}, "[2222/tcp]"},
	} {
		if got := fmt.Sprint(b.cfg.portsFor(tc.scopes)); got != tc.want {
			t.Errorf("portsFor(%v) = %s, want %s", tc.scopes, got, tc.want)
		}
	}
	// Without scoped ports every grant opens every port.
	u, err := provision(t, `{"ports":["22/tcp","2222/tcp"]}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(u.cfg.portsFor([]string{"games"})); got != "[22/tcp 2222/tcp]" {
		t.Errorf("portsFor(games) without scoped ports = %s", got)
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        Backend
		wantErr     string
	}{
		{
			name: "full",
			input: `firewalld {
				zone public dmz
				action reject
				port 22/tcp
				port 27015/udp 2222/tcp
				monitor 203.0.113.0/24 2001:db8::/32
				state_file /var/lib/knocker/fw.json
				queue_size 64
			}`,
			want: Backend{
				Zones: []string{"public", "dmz"}, Action: "reject",
				Ports:     []string{"22/tcp", "27015/udp", "2222/tcp"},
				Monitor:   []string{"203.0.113.0/24", "2001:db8::/32"},
				StateFile: "/var/lib/knocker/fw.json", QueueSize: 64,
			},
		},
		{name: "minimal", input: "firewalld {\n port 22/tcp\n}", want: Backend{Ports: []string{"22/tcp"}}},
		{
			name: "scoped",
			input: `firewalld {
				port 2222/tcp
				port 25565/udp 25565/tcp scope games
				port 22/tcp scope admin
				port 27015/udp scope games
			}`,
			want: Backend{
				Ports: []string{"2222/tcp"},
				ScopedPorts: map[string][]string{
					"games": {"25565/udp", "25565/tcp", "27015/udp"},
					"admin": {"22/tcp"},
				},
			},
		},
		{name: "scoped only", input: "firewalld {\n port 22/tcp scope admin\n}", want: Backend{ScopedPorts: map[string][]string{"admin": {"22/tcp"}}}},
		{name: "scope without ports", input: "firewalld {\n port 2222/tcp\n port scope games\n}", wantErr: "port: want <port>/<tcp|udp>... [scope <name>]"},
		{name: "scope without name", input: "firewalld {\n port 22/tcp scope\n}", wantErr: "port: want scope <name> once, after the ports"},
		{name: "scope before ports", input: "firewalld {\n port scope games 22/tcp\n}", wantErr: "port: want scope <name> once, after the ports"},
		{name: "two scopes", input: "firewalld {\n port 22/tcp scope a scope b\n}", wantErr: "port: want scope <name> once, after the ports"},
		{name: "bad scope", input: "firewalld {\n port 22/tcp scope Admin\n}", wantErr: "port: scope: \"Admin\" is not a scope name"},
		{name: "scoped port twice", input: "firewalld {\n port 22/tcp\n port 22/tcp scope admin\n}", wantErr: "scoped_ports: admin: 22/tcp is also listed in ports"},
		{name: "no block", input: "firewalld", wantErr: "ports: at least one"},
		{name: "empty block", input: "firewalld {\n}", wantErr: "ports: at least one"},
		{name: "argument", input: "firewalld public {\n port 22/tcp\n}", wantErr: "takes no arguments"},
		{name: "unknown", input: "firewalld {\n port 22/tcp\n ports 23/tcp\n}", wantErr: `unknown subdirective "ports"`},
		{name: "bad port", input: "firewalld {\n port 70000/tcp\n}", wantErr: "port: \"70000/tcp\": port must be"},
		{name: "port without value", input: "firewalld {\n port\n}", wantErr: "port: want <port>/<tcp|udp>"},
		{name: "duplicate port", input: "firewalld {\n port 22/tcp\n port 22/tcp\n}", wantErr: "ports: 22/tcp listed twice"},
		{name: "bad action", input: "firewalld {\n port 22/tcp\n action allow\n}", wantErr: "action: want drop or reject"},
		{name: "two actions", input: "firewalld {\n port 22/tcp\n action drop reject\n}", wantErr: "action: want drop or reject"},
		{name: "action twice", input: "firewalld {\n port 22/tcp\n action drop\n action drop\n}", wantErr: "action: given twice"},
		{name: "monitor bare address", input: "firewalld {\n port 22/tcp\n monitor 203.0.113.7\n}", wantErr: "monitor: \"203.0.113.7\" is not a CIDR"},
		{name: "monitor host bits", input: "firewalld {\n port 22/tcp\n monitor 203.0.113.7/24\n}", wantErr: "has host bits set"},
		{name: "zone without name", input: "firewalld {\n port 22/tcp\n zone\n}", wantErr: "zone: want one or more"},
		{name: "bad zone", input: "firewalld {\n port 22/tcp\n zone a/b\n}", wantErr: "not a valid zone name"},
		{name: "queue size", input: "firewalld {\n port 22/tcp\n queue_size 0\n}", wantErr: "queue_size: want a number"},
		{name: "state file args", input: "firewalld {\n port 22/tcp\n state_file a b\n}", wantErr: "state_file: want one path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(tc.input)
			d.Next() // on "firewalld", as the knocker option hands it over
			var got Backend
			err := got.UnmarshalCaddyfile(d)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "Testfile:") {
					t.Errorf("error %q does not name the line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestUnmarshalCaddyfileNested checks the block inside the knocker option,
// followed by more of that option.
func TestUnmarshalCaddyfileNested(t *testing.T) {
	d := caddyfile.NewTestDispenser("knocker {\n firewalld {\n  port 22/tcp\n }\n max_entries 5\n}")
	d.Next() // knocker
	var a Backend
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "firewalld":
			if err := a.UnmarshalCaddyfile(d); err != nil {
				t.Fatal(err)
			}
		case "max_entries":
			d.RemainingArgs()
		default:
			t.Fatalf("unexpected token %q: the firewalld block was not consumed", d.Val())
		}
	}
	if !reflect.DeepEqual(a.Ports, []string{"22/tcp"}) {
		t.Fatalf("ports = %v", a.Ports)
	}
}

func TestRuleText(t *testing.T) {
	ssh, dns := tcp(22), Port{Number: 53, Protocol: "udp"}
	for _, tc := range []struct {
		rule richRule
		want string
	}{
		{blockRules([]Port{ssh}, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, "drop")[0],
			`rule priority="-27001" family="ipv4" port port="22" protocol="tcp" drop`},
		{blockRules([]Port{dns}, []netip.Prefix{netip.MustParsePrefix("::/0")}, "reject")[0],
			`rule priority="-27001" family="ipv6" port port="53" protocol="udp" reject`},
		{blockRules([]Port{ssh}, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, "drop")[0],
			`rule priority="-27001" family="ipv4" source address="203.0.113.0/24" port port="22" protocol="tcp" drop`},
		{blockRules([]Port{ssh}, []netip.Prefix{netip.MustParsePrefix("2001:db8::7/128")}, "drop")[0],
			`rule priority="-27001" family="ipv6" source address="2001:db8::7" port port="22" protocol="tcp" drop`},
		{acceptRules(netip.MustParsePrefix("203.0.113.5/32"), []Port{ssh})[0],
			`rule priority="-27002" family="ipv4" source address="203.0.113.5" port port="22" protocol="tcp" accept`},
		{acceptRules(netip.MustParsePrefix("2001:db8:0:0::/64"), []Port{dns})[0],
			`rule priority="-27002" family="ipv6" source address="2001:db8::/64" port port="53" protocol="udp" accept`},
	} {
		if got := tc.rule.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
		if r, ok := parseKnockerRule(tc.want); !ok || r != tc.rule {
			t.Errorf("parseKnockerRule(%s) = %+v, %v", tc.want, r, ok)
		}
	}
	if n := len(blockRules([]Port{ssh, dns}, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, "drop")); n != 4 {
		t.Errorf("2 ports x 2 families: %d rules", n)
	}
	for _, foreign := range []string{
		`rule family="ipv4" port port="22" protocol="tcp" drop`,                                                        // no priority
		`rule priority="-27001" family="ipv4" source address="203.0.113.5" port port="22" protocol="tcp" accept`,       // accept at the drop priority
		`rule priority="-27002" family="ipv4" port port="22" protocol="tcp" accept`,                                    // accept without source
		`rule priority="-27002" family="ipv4" source address="203.0.113.5/32" port port="22" protocol="tcp" accept`,    // not canonical
		`rule priority="-27002" family="ipv6" source address="2001:DB8::5" port port="22" protocol="tcp" accept`,       // not canonical
		`rule priority="-27002" family="ipv6" source address="203.0.113.5" port port="22" protocol="tcp" accept`,       // wrong family
		`rule priority="-27001" family="ipv4" source address="203.0.113.7/24" port port="22" protocol="tcp" drop`,      // host bits
		`rule priority="-27001" family="ipv4" port port="22" protocol="tcp" log prefix="x" drop`,                       // extra element
		`rule priority="-27001" family="ipv4" source NOT address="10.0.0.0/8" port port="22" protocol="tcp" drop`,      // inverted
		`rule priority="-27001" family="ipv4" port port="22" protocol="tcp" reject type="icmp-host-prohibited"`,        // typed reject
		`rule priority="-27001" family="ipv4" port port="0" protocol="tcp" drop`,                                       // bad port
		`rule priority="-27001" family="ipv4" source address="::ffff:10.0.0.0/104" port port="22" protocol="tcp" drop`, // mapped
	} {
		if r, ok := parseKnockerRule(foreign); ok {
			t.Errorf("parseKnockerRule(%s) = %+v: a foreign rule taken for Knocker's", foreign, r)
		}
	}
}

func TestParseError(t *testing.T) {
	wrap := func(e dbus.Error) error { return fmt.Errorf("call: %w", e) }
	for _, tc := range []struct {
		in       error
		sentinel error
		text     string
	}{
		{dbus.Error{Name: exceptionName, Body: []any{"ALREADY_ENABLED: rule 'x' already in 'public'"}}, ErrAlreadyEnabled, "ALREADY_ENABLED: rule 'x' already in 'public'"},
		{wrap(dbus.Error{Name: exceptionName, Body: []any{"NOT_ENABLED: x"}}), ErrNotEnabled, "NOT_ENABLED: x"},
		{&dbus.Error{Name: exceptionName, Body: []any{"INVALID_ZONE: nope"}}, ErrInvalidZone, "INVALID_ZONE: nope"},
		{dbus.Error{Name: exceptionName, Body: []any{"INVALID_RULE"}}, ErrInvalidRule, "INVALID_RULE"},
		{dbus.Error{Name: notAuthorizedName, Body: []any{"Not Authorized(addRichRule): org.fedoraproject.FirewallD1.config"}}, ErrNotAuthorized, "NOT_AUTHORIZED: Not Authorized"},
		{dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown", Body: []any{"The name is not activatable"}}, ErrNotRunning, "has no owner"},
	} {
		err := parseError(tc.in)
		if !errors.Is(err, tc.sentinel) {
			t.Errorf("parseError(%v) = %v, not %v", tc.in, err, tc.sentinel)
		}
		if !strings.Contains(err.Error(), tc.text) {
			t.Errorf("parseError(%v) = %q, want %q in it", tc.in, err, tc.text)
		}
		var fe *Error
		if !errors.As(err, &fe) {
			t.Errorf("parseError(%v) is not an *Error", tc.in)
		}
	}
	if errors.Is(parseError(dbus.Error{Name: exceptionName, Body: []any{"NOT_ENABLED: x"}}), ErrAlreadyEnabled) {
		t.Error("NOT_ENABLED matched ALREADY_ENABLED")
	}
	weird := parseError(dbus.Error{Name: exceptionName, Body: []any{"something broke: badly"}})
	if fe, ok := weird.(*Error); !ok || fe.Code != "UNKNOWN_ERROR" {
		t.Errorf("free text: %#v", weird)
	}
	other := errors.New("EOF")
	if parseError(other) != other {
		t.Error("a non-D-Bus error was changed")
	}
}

func TestRuleTimeout(t *testing.T) {
	for _, tc := range []struct {
		expires, now int64
		want         int32
	}{
		{100, 40, 60}, {100, 100, 0}, {100, 200, 0}, {math.MaxInt64, 0, math.MaxInt32},
	} {
		if got := ruleTimeout(tc.expires, tc.now); got != tc.want {
			t.Errorf("ruleTimeout(%d, %d) = %d, want %d", tc.expires, tc.now, got, tc.want)
		}
	}
	if !supportsPriorities("1.3.3") || !supportsPriorities("2.3.1") || !supportsPriorities("0.9.0") || supportsPriorities("0.8.2") {
		t.Error("supportsPriorities")
	}
}

func TestPrepareGrantFailsClosed(t *testing.T) {
	var never Backend
	if _, err := never.PrepareGrant(t.Context(), firewall.Grant{Prefix: netip.MustParsePrefix("203.0.113.5/32"), Expires: math.MaxInt32}); !errors.Is(err, ErrStopped) {
		t.Errorf("before Provision: %v", err)
	}
	if err := never.Stop(); err != nil {
		t.Errorf("Stop before Provision: %v", err)
	}
	if err := never.Cleanup(); err != nil {
		t.Errorf("Cleanup before Provision: %v", err)
	}
	a, err := provision(t, `{"ports":["22/tcp"]}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PrepareGrant(t.Context(), firewall.Grant{Prefix: netip.MustParsePrefix("203.0.113.5/32"), Expires: math.MaxInt32}); !errors.Is(err, ErrStopped) {
		t.Errorf("before Start: %v", err)
	}
	if err := a.Ready(); !errors.Is(err, ErrStopped) {
		t.Errorf("Ready before Start: %v", err)
	}
	if err := a.Cleanup(); err != nil {
		t.Errorf("Cleanup without Start: %v", err)
	}
}

// Where there is no system bus, Start says why instead of dialling a socket
// that cannot exist.
func TestSystemBusAddress(t *testing.T) {
	for _, tc := range []struct{ goos, env, want, wantErr string }{
		{"linux", "", "unix:path=/var/run/dbus/system_bus_socket", ""},
		{"linux", "unix:path=/tmp/bus", "unix:path=/tmp/bus", ""},
		{"windows", "tcp:host=127.0.0.1,port=12434", "tcp:host=127.0.0.1,port=12434", ""},
		{"windows", "", "", "firewalld runs on Linux; there is no D-Bus system bus on windows"},
		{"darwin", "", "", "no D-Bus system bus on darwin"},
	} {
		got, err := systemBusAddressOn(tc.goos, tc.env)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s, env %q: %q, %v; want an error containing %q", tc.goos, tc.env, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s, env %q: %q, %v; want %q", tc.goos, tc.env, got, err, tc.want)
		}
	}
}
