package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

const exitCodesHelp = `Exit codes: 0 success; 1 other error; 2 usage or configuration error, or a
request the server rejected as invalid (400, 413, 415); 3 invalid API key
(401); 4 forbidden (403); 5 rate limited (429); 6 server unreachable (DNS,
connection, timeout); 7 TLS error (certificate, handshake); 8 server error
(5xx) or not a knock API answer. With --family both: the higher of the two.
Service (status --service, start, stop): 9 stopped; 10 not installed.
`

// writeHelp is a command's --help: its flags with where else each can be
// set, and the exit codes.
func writeHelp(w io.Writer, cmd, synopsis, about string, names []string) {
	fmt.Fprintf(w, "Usage: knocker %s %s\n\n%s\n", cmd, synopsis, about)
	if len(names) > 0 {
		fmt.Fprintf(w, "\nFlags (environment variable, config file field):\n")
		for _, n := range names {
			o := optionByName(n)
			head := "  --" + n
			if o.arg != "" {
				head += " " + o.arg
			}
			for _, a := range o.aliases {
				head += ", --" + a
			}
			var where []string
			if o.env != "" {
				where = append(where, o.env)
			}
			if o.field != "" {
				where = append(where, strconv.Quote(o.field))
			}
			if len(where) > 0 {
				head = fmt.Sprintf("%-30s (%s)", head, strings.Join(where, ", "))
			}
			fmt.Fprintf(w, "%s\n%s", head, wrap(o.help, "      ", 78))
		}
	}
	fmt.Fprintf(w, "  -h, --help\n      this help\n\n%s", exitCodesHelp)
}

// wrap fills text into lines of at most width columns, each starting with
// indent.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(text) {
		if line != indent && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\n")
	return b.String()
}
