// Package docscheck finds the Caddy modules of this repository that the
// module table of docs/configuration.md does not document, for the drift
// tests of the packages that register modules (the root package, layer4).
//
// Only tests import this package.
package docscheck

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// Modules checks every Caddy module registered in this process whose type
// lives under modulePath, unless skip (which may be nil) says otherwise:
// doc's module table must have a row whose second cell names it as
// `module.id`, and that row must name every JSON field of its config as
// `field` (walked by reflection through structs, pointers, slices, arrays
// and maps; json tag names, "-" skipped; an inline module key and a guest
// module namespace from a caddy:"namespace=... inline_key=..." tag count
// too). It returns what is missing, and the IDs of the modules it checked.
func Modules(doc, modulePath string, skip func(caddy.Module) bool) (missing, checked []string, err error) {
	for _, id := range caddy.Modules() {
		info, err := caddy.GetModule(id)
		if err != nil {
			return nil, nil, err
		}
		if skip != nil && skip(info.New()) {
			continue
		}
		typ := reflect.TypeOf(info.New())
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if !under(typ.PkgPath(), modulePath) {
			continue
		}
		checked = append(checked, id)
		row, ok := moduleRow(doc, id)
		if !ok {
			missing = append(missing, fmt.Sprintf("module `%s`: no row of the module table names it in its second cell", id))
			continue
		}
		for _, name := range jsonNames(typ, modulePath) {
			if !row[name] {
				missing = append(missing, fmt.Sprintf("JSON field `%s` in the module table's row of %s", name, id))
			}
		}
	}
	return missing, checked, nil
}

// under reports whether the package pkg is modulePath or below it.
func under(pkg, modulePath string) bool {
	return pkg == modulePath || strings.HasPrefix(pkg, modulePath+"/")
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

// jsonNames returns the JSON names of typ's config: its fields' and, below
// them, those of the structs they hold. Types of other modules (Caddy's)
// are not walked: their documentation is theirs.
func jsonNames(typ reflect.Type, modulePath string) []string {
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
		if p := t.PkgPath(); p != "" && !under(p, modulePath) {
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
