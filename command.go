package knocker

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-knocker/knocker/internal/keyring"
	"github.com/caddy-knocker/knocker/store"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "knocker",
		Usage: "grants|grant|revoke|keygen",
		Short: "Lists, adds and revokes knocker grants on a running Caddy",
		Long: `
Talks to the knocker admin API (admin.api.knocker) of a running Caddy:

  caddy knocker grants [--key NAME] [--contains IP] [--json]
  caddy knocker grant <ip-or-cidr> --ttl 10m
  caddy knocker revoke <ip-or-cidr>
  caddy knocker revoke --key NAME
  caddy knocker keygen [--name NAME]

The admin address is --address if given, else the admin address of the
config in --config (with --adapter), else Caddy's default, as for
caddy reload.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(grantsCommand(), grantCommand(), revokeCommand(), keygenCommand())
		},
	})
}

// adminFlags adds the flags that find the admin endpoint.
func adminFlags(c *cobra.Command) {
	c.Flags().StringP("config", "c", "", "Configuration file whose admin address to use")
	c.Flags().StringP("adapter", "a", "", "Name of the config adapter for --config")
	c.Flags().String("address", "", "Address of the admin endpoint, if not that of the config")
}

// adminCall sends method path (with a JSON body, or nil) to the admin
// endpoint the flags name and returns the answer's body.
func adminCall(fl caddycmd.Flags, method, path string, body any) ([]byte, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return nil, fmt.Errorf("finding the admin endpoint: %v", err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, path, nil, rd)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// decodeAnswer decodes an admin API answer into out.
func decodeAnswer(body []byte, out any) error {
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("reading the answer: %v", err)
	}
	return nil
}

// withArgs is caddycmd.WrapCommandFuncForCobra for a command that also
// takes positional arguments.
func withArgs(f func(fl caddycmd.Flags, args []string) (int, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) { return f(fl, args) })(cmd, args)
	}
}

func grantsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "grants [--key NAME] [--contains IP] [--json]",
		Short: "Lists the active grants",
		Args:  cobra.NoArgs,
	}
	adminFlags(c)
	c.Flags().String("key", "", "Only the grants this key made")
	c.Flags().String("contains", "", "Only the grants that admit this IP")
	c.Flags().Bool("json", false, "Print the admin API's JSON")
	c.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		q := url.Values{}
		if k := fl.String("key"); k != "" {
			q.Set("key", k)
		}
		if ip := fl.String("contains"); ip != "" {
			q.Set("contains", ip)
		}
		path := grantsPath
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		body, err := adminCall(fl, http.MethodGet, path, nil)
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		if fl.Bool("json") {
			_, err = c.OutOrStdout().Write(body)
			return caddy.ExitCodeSuccess, err
		}
		var grants []grantJSON
		if err := decodeAnswer(body, &grants); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		return caddy.ExitCodeSuccess, printGrants(c.OutOrStdout(), grants, time.Now())
	})
	return c
}

// printGrants writes grants as a table, soonest expiry first.
func printGrants(w io.Writer, grants []grantJSON, now time.Time) error {
	sort.Slice(grants, func(i, j int) bool { return grants[i].ExpiresAt < grants[j].ExpiresAt })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTRY\tKEY\tSCOPES\tEXPIRES IN\tCREATED\tCLIENT IP")
	orDash := func(s *string) string {
		if s == nil {
			return "-"
		}
		return *s
	}
	for _, g := range grants {
		created := "-"
		if g.CreatedAt != nil {
			created = time.Unix(*g.CreatedAt, 0).In(now.Location()).Format("2006-01-02 15:04:05")
		}
		scopes := "all"
		if len(g.Scopes) > 0 {
			scopes = strings.Join(g.Scopes, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Entry, orDash(g.Key), scopes,
			(time.Duration(g.ExpiresInSeconds) * time.Second).String(), created, orDash(g.ClientIP))
	}
	return tw.Flush()
}

func grantCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "grant <ip-or-cidr> --ttl <duration> [--scopes <scope,...>]",
		Short: "Whitelists an IP or CIDR, as an operator",
		Args:  cobra.ExactArgs(1),
	}
	adminFlags(c)
	c.Flags().String("ttl", "", "How long the grant lasts, e.g. 10m or 1h (required)")
	c.Flags().String("scopes", "", "Comma-separated scopes the grant is limited to (default: full access)")
	c.RunE = withArgs(func(fl caddycmd.Flags, args []string) (int, error) {
		ttl, err := caddy.ParseDuration(fl.String("ttl"))
		if err != nil || ttl < time.Second {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--ttl: want a duration of at least 1s, such as 10m, got %q", fl.String("ttl"))
		}
		req := map[string]any{"entry": args[0], "ttl": int64(ttl / time.Second)}
		// Given, even empty, the list goes to the API, which refuses an
		// empty one: --scopes "$UNSET" must not make a full-access grant.
		if fl.Changed("scopes") {
			req["scopes"] = strings.Split(fl.String("scopes"), ",")
		}
		body, err := adminCall(fl, http.MethodPost, grantsPath, req)
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		var g grantJSON
		if err := decodeAnswer(body, &g); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		fmt.Fprintf(c.OutOrStdout(), "%s whitelisted for %s (until %s)\n", g.Entry, time.Duration(g.ExpiresInSeconds)*time.Second,
			time.Unix(g.ExpiresAt, 0).Format(time.RFC3339))
		return caddy.ExitCodeSuccess, nil
	})
	return c
}

func revokeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "revoke <ip-or-cidr> | --key NAME",
		Short: "Revokes one grant, or every grant of a key",
		Args:  cobra.MaximumNArgs(1),
	}
	adminFlags(c)
	c.Flags().String("key", "", "Revoke every grant this key made")
	c.RunE = withArgs(func(fl caddycmd.Flags, args []string) (int, error) {
		key := fl.String("key")
		var path string
		switch {
		case len(args) == 1 && key == "":
			path = grantsPath + "/" + url.PathEscape(args[0])
		case len(args) == 0 && key != "":
			path = grantsPath + "?" + url.Values{"key": {key}}.Encode()
		default:
			return caddy.ExitCodeFailedStartup, errors.New("want an entry or --key NAME: one of them, not both")
		}
		body, err := adminCall(fl, http.MethodDelete, path, nil)
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		var res struct {
			Revoked int `json:"revoked"`
		}
		if err := decodeAnswer(body, &res); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		plural := "s"
		if res.Revoked == 1 {
			plural = ""
		}
		fmt.Fprintf(c.OutOrStdout(), "revoked %d grant%s\n", res.Revoked, plural)
		return caddy.ExitCodeSuccess, nil
	})
	return c
}

func keygenCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "keygen [--name NAME]",
		Short: "Prints a new random key secret and the key block to paste",
		Args:  cobra.NoArgs,
	}
	c.Flags().String("name", "phone", "The key's name")
	c.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		secret, err := newSecret()
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		name := fl.String("name")
		if name == "" || name == keyring.Reserved || store.CheckOwnerName(name) != nil || strings.ContainsAny(name, "\n\r") {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--name: %q cannot name a key (valid UTF-8 on one line, at most 256 bytes, not %q)", name, keyring.Reserved)
		}
		env := "KNOCKER_" + strings.ToUpper(strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return '_'
		}, name)) + "_KEY"
		token := name
		if strings.ContainsAny(name, " \t\"{}#") {
			token = `"` + strings.ReplaceAll(name, `"`, `\"`) + `"` // the Caddyfile escapes only quotes
		}
		fmt.Fprintf(c.OutOrStdout(), "%s=%s\n\n# in the knocker global option; the secret stays in the environment:\nkey %s {env.%s} {\n\tmax_ttl 4h\n}\n", env, secret, token, env)
		return caddy.ExitCodeSuccess, nil
	})
	return c
}

// newSecret is 32 random bytes, hex: 256 bits, safe in a header and a
// shell.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
