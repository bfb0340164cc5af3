package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// parsedFlags holds a command's flags as given.
type parsedFlags struct {
	strs  map[string]*string
	bools map[string]*bool
	set   map[string]bool
}

func (p *parsedFlags) has(name string) bool { _, ok := p.strs[name]; return ok }

func (p *parsedFlags) bool(name string) bool {
	if b, ok := p.bools[name]; ok {
		return *b
	}
	return false
}

const exitCodesHelp = `Exit codes: 0 success; 1 other error; 2 usage or configuration error, or a
request the server rejected as invalid (400, 413, 415); 3 invalid API key
(401); 4 forbidden (403); 5 rate limited (429); 6 server unreachable (DNS,
connection, timeout); 7 TLS error (certificate, handshake); 8 server error
(5xx) or not a knock API answer. With --family both: the higher of the two.
Service (status --service, start, stop): 9 stopped; 10 not installed.
`

// parseFlags parses args for cmd. done reports that the command must
// return code at once (help was printed, or the flags were wrong).
func (c *cli) parseFlags(cmd, synopsis, about string, names []string, args []string) (p *parsedFlags, code int, done bool) {
	fs := flag.NewFlagSet("knocker "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	p = &parsedFlags{strs: map[string]*string{}, bools: map[string]*bool{}, set: map[string]bool{}}
	canonical := map[string]string{}
	for _, n := range names {
		o := optionByName(n)
		if o.arg == "" {
			p.bools[n] = fs.Bool(n, false, "")
		} else {
			p.strs[n] = fs.String(n, "", "")
			for _, a := range o.aliases {
				fs.StringVar(p.strs[n], a, "", "")
				canonical[a] = n
			}
		}
	}
	help := func(w io.Writer) {
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(c.stdout)
			return nil, exitOK, true
		}
		fmt.Fprintf(c.stderr, "knocker %s: %v\nRun \"knocker %s --help\" for usage.\n", cmd, err, cmd)
		return nil, exitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "knocker %s: unexpected argument %q\nRun \"knocker %s --help\" for usage.\n", cmd, fs.Arg(0), cmd)
		return nil, exitUsage, true
	}
	fs.Visit(func(f *flag.Flag) {
		if n, ok := canonical[f.Name]; ok {
			if p.set[n] {
				fmt.Fprintf(c.stderr, "knocker %s: --%s given twice (also as --%s)\n", cmd, n, f.Name)
				code, done = exitUsage, true
			}
			p.set[n] = true
			return
		}
		p.set[f.Name] = true
	})
	if done {
		return nil, code, true
	}
	return p, exitOK, false
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
