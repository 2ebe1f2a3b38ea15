package bpf

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"maps"
	"slices"
	"testing"
)

// archFiles are the generated files of each program, per architecture
// (gen.go: -target amd64,arm64). Only one of each pair is compiled into a
// build.
var archFiles = map[string][2]string{
	"Tracepoint": {"tracepoint_x86_bpfel.go", "tracepoint_arm64_bpfel.go"},
	"Netfilter":  {"netfilter_x86_bpfel.go", "netfilter_arm64_bpfel.go"},
	"Fentry":     {"fentry_x86_bpfel.go", "fentry_arm64_bpfel.go"},
	"Kprobe":     {"kprobe_x86_bpfel.go", "kprobe_arm64_bpfel.go"},
}

// TestEventLayoutSameOnAllArches checks that the amd64 and arm64 objects
// generate the same Go types: decode, record and the loader use one type
// (bpf.TracepointEvent ...) for events and map keys, and a recording made on
// one architecture is replayed on the other.
func TestEventLayoutSameOnAllArches(t *testing.T) {
	for name, files := range archFiles {
		x86, arm64 := goTypes(t, files[0]), goTypes(t, files[1])
		if len(x86) == 0 {
			t.Fatalf("%s: no types in %s", name, files[0])
		}
		if !slices.Equal(slices.Sorted(maps.Keys(x86)), slices.Sorted(maps.Keys(arm64))) {
			t.Errorf("%s: types differ: x86 %v, arm64 %v", name, slices.Sorted(maps.Keys(x86)), slices.Sorted(maps.Keys(arm64)))
			continue
		}
		for typ, decl := range x86 {
			if decl != arm64[typ] {
				t.Errorf("%s: %s differs between architectures:\nx86:\n%s\narm64:\n%s", name, typ, decl, arm64[typ])
			}
		}
	}
}

// goTypes returns the type declarations of a generated file, printed, by name.
func goTypes(t *testing.T, file string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse generated file: %v", err)
	}
	types := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.TYPE {
			continue
		}
		for _, s := range g.Specs {
			ts := s.(*ast.TypeSpec)
			var b bytes.Buffer
			if err := printer.Fprint(&b, fset, ts.Type); err != nil {
				t.Fatalf("print %s: %v", ts.Name.Name, err)
			}
			types[ts.Name.Name] = b.String()
		}
	}
	return types
}
