package kernel

import (
	"maps"
	"strings"
	"testing"
)

func TestScanKallsyms(t *testing.T) {
	type line struct {
		addr         uint64
		typ          byte
		name, module string
	}
	var got []line
	err := scanKallsyms(strings.NewReader(kallsyms+"garbage\nzzzz T bad_address\nffffffff81000000 T\n"), func(s ksym) bool {
		got = append(got, line{s.addr, s.typ, string(s.name), string(s.module)})
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []line{
		{0xffffffff81000000, 'T', "_stext", ""},
		{0xffffffff81c3a400, 'T', "nf_hook_slow", ""},
		{0xffffffff81c3a5a0, 't', "nf_hook_slow_list", ""},
		{0xffffffff82000000, 'D', "some_data", ""},
		{0xffffffffc03f4c80, 't', "ip_vs_in_hook", "ip_vs"},
		{0, 'A', "fixed_percpu_data", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestKallsymsModules(t *testing.T) {
	for _, tt := range []struct {
		name  string
		text  string
		names []string
		want  map[string]string
	}{
		{"vmlinux and module", kallsyms, []string{"nf_hook_slow", "ip_vs_in_hook", "no_such_function"},
			map[string]string{"nf_hook_slow": "", "ip_vs_in_hook": "ip_vs"}},
		{"data is not text", kallsyms, []string{"some_data"}, map[string]string{}},
		// Without root every address reads zero; the names still count.
		{"hidden addresses", "0000000000000000 T nf_hook_slow\n0000000000000000 t ip_vs_in_hook\t[ip_vs]\n",
			[]string{"nf_hook_slow", "ip_vs_in_hook"}, map[string]string{"nf_hook_slow": "", "ip_vs_in_hook": "ip_vs"}},
		{"32-bit addresses", "c1000000 T nf_hook_slow\n", []string{"nf_hook_slow"}, map[string]string{"nf_hook_slow": ""}},
		{"nothing asked", kallsyms, nil, map[string]string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kallsymsModules(strings.NewReader(tt.text), tt.names)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
