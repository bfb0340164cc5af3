package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeHelp(c.stdout, cmd, synopsis, about, names)
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
