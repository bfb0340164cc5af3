package knocker

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-knocker/knocker/internal/docscheck"
)

// configReference is the page that must name everything a user can
// configure.
const configReference = "docs/configuration.md"

// modulePath is this repository's Go module: a registered Caddy module whose
// type lives under it is ours, and its config must be documented.
const modulePath = "github.com/caddy-knocker/knocker"

// caddyfileSources are the files that parse Caddyfile tokens. Every string
// literal of a case clause in them is a directive or subdirective name.
// A new parsing file must be added here.
var caddyfileSources = []string{"caddyfile.go", "firewalld/caddyfile.go"}

// TestDocsCoverConfig fails when docs/configuration.md drifts from the code:
//
//   - every Caddy module registered by this repository must have a row in
//     the module table that names every JSON field of its config (see
//     docscheck.Modules); the caddy-l4 matcher, which this test binary does
//     not link, is checked by layer4's own test;
//   - every Caddyfile directive and subdirective must begin a line in a
//     ```caddyfile block, i.e. appear in a syntax block.
func TestDocsCoverConfig(t *testing.T) {
	raw, err := os.ReadFile(configReference)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	syntax := caddyfileLineStarts(doc)

	if p := reflect.TypeFor[App]().PkgPath(); p != modulePath {
		t.Fatalf("the root package is %s, not %s: update modulePath", p, modulePath)
	}

	missing, ours, err := docscheck.Modules(doc, modulePath, func(m caddy.Module) bool {
		_, testOnly := m.(interface{ testOnlyModule() }) // registered by a test, never in a build
		return testOnly
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"knocker", "http.handlers.knock", "http.handlers.knocker", "http.matchers.knocked"} {
		if !slices.Contains(ours, id) {
			t.Fatalf("module %s is not registered, or not found as this repository's (found: %v): the walk is broken", id, ours)
		}
	}

	for _, file := range caddyfileSources {
		names, cases, err := caddyfileNames(file)
		if err != nil {
			t.Fatal(err)
		}
		if cases == 0 {
			t.Fatalf("%s: no string case clauses found: is this still where the Caddyfile is parsed? update caddyfileSources", file)
		}
		for _, name := range names {
			if !syntax[name] {
				missing = append(missing, "Caddyfile subdirective "+name+" (from "+file+") at the start of a line in a ```caddyfile block")
			}
		}
	}

	if len(missing) > 0 {
		slices.Sort(missing)
		missing = slices.Compact(missing)
		t.Errorf("%s does not document %d names the code accepts:\n\t%s", configReference, len(missing), strings.Join(missing, "\n\t"))
	}
}

// caddyfileLineStarts returns the first word of every line inside a
// ```caddyfile fenced block of doc.
func caddyfileLineStarts(doc string) map[string]bool {
	out := map[string]bool{}
	in := false
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "```"):
			in = !in && trimmed == "```caddyfile"
		case in:
			if f := strings.Fields(trimmed); len(f) > 0 {
				out[f[0]] = true
			}
		}
	}
	return out
}

// caddyfileNames parses file and returns the string literals of its case
// clauses (cases counts them) and the names it registers with
// httpcaddyfile.
func caddyfileNames(file string) (names []string, cases int, err error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, 0, err
	}
	lit := func(e ast.Expr) bool {
		if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
			if s, err := strconv.Unquote(b.Value); err == nil {
				names = append(names, s)
				return true
			}
		}
		return false
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CaseClause:
			for _, e := range n.List {
				if lit(e) {
					cases++
				}
			}
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && len(n.Args) > 0 {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "httpcaddyfile" {
					switch sel.Sel.Name {
					case "RegisterGlobalOption", "RegisterHandlerDirective", "RegisterDirective":
						lit(n.Args[0])
					}
				}
			}
		}
		return true
	})
	return names, cases, nil
}
