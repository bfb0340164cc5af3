package knocker

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
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
//     the module table (a table line whose second cell names it as
//     `module.id`), and that row must name every JSON field of its config
//     as `field` (walked by reflection through structs, pointers, slices,
//     arrays and maps; json tag names, "-" skipped; an inline module key
//     and a guest module namespace from a caddy:"namespace=...
//     inline_key=..." tag count too);
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

	var missing []string
	var ours []string
	for _, id := range caddy.Modules() {
		info, err := caddy.GetModule(id)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := info.New().(interface{ testOnlyModule() }); ok {
			continue // registered by a test, never in a build
		}
		typ := reflect.TypeOf(info.New())
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if pkg := typ.PkgPath(); pkg != modulePath && !strings.HasPrefix(pkg, modulePath+"/") {
			continue
		}
		ours = append(ours, id)
		row, ok := moduleRow(doc, id)
		if !ok {
			missing = append(missing, "module `"+id+"`: no row of the module table names it in its second cell")
			continue
		}
		for _, name := range jsonNames(typ) {
			if !row[name] {
				missing = append(missing, "JSON field `"+name+"` in the module table's row of "+id)
			}
		}
	}
	for _, id := range []string{"knocker", "http.handlers.knock", "http.handlers.knocker"} {
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

var inlineCodeRE = regexp.MustCompile("`([^`\n]+)`")

// inlineCode returns the contents of every `code span` of text.
func inlineCode(text string) map[string]bool {
	out := map[string]bool{}
	for _, m := range inlineCodeRE.FindAllStringSubmatch(text, -1) {
		out[m[1]] = true
	}
	return out
}

// moduleRow returns the code spans of the table line of doc whose second
// cell has the code span `id`.
func moduleRow(doc, id string) (map[string]bool, bool) {
	for _, line := range strings.Split(doc, "\n") {
		cells := strings.Split(line, "|")
		if strings.HasPrefix(line, "|") && len(cells) > 3 && inlineCode(cells[2])[id] {
			return inlineCode(line), true
		}
	}
	return nil, false
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

// jsonNames returns the JSON names of typ's config: its fields' and, below
// them, those of the structs they hold. Types of other modules (Caddy's)
// are not walked: their documentation is theirs.
func jsonNames(typ reflect.Type) []string {
	seen := map[reflect.Type]bool{}
	var names []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		if p := t.PkgPath(); p != "" && p != modulePath && !strings.HasPrefix(p, modulePath+"/") {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				// encoding/json promotes the fields of an embedded struct,
				// and ignores an embedded pointer to an unexported one.
				if f.Type.Kind() != reflect.Pointer || f.IsExported() {
					walk(f.Type)
				}
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			names = append(names, name)
			for _, opt := range strings.Fields(f.Tag.Get("caddy")) {
				if k, v, ok := strings.Cut(opt, "="); ok && (k == "inline_key" || k == "namespace") && v != "" {
					names = append(names, v)
				}
			}
			walk(f.Type)
		}
	}
	walk(typ)
	return names
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
