package testutil

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// skipCall matches a call of testing's Skip, Skipf or SkipNow (or a method
// value of one), not Skipped or a function whose name starts with Skip.
var skipCall = regexp.MustCompile(`\.Skip(f|Now)?\b`)

// skipsIn returns the lines of src, numbered from 1, that skip a test by
// themselves; comments do not count.
func skipsIn(src string) []int {
	var lines []int
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		code, _, _ := strings.Cut(sc.Text(), "//")
		if skipCall.MatchString(code) {
			lines = append(lines, n)
		}
	}
	return lines
}

func TestSkipCallMatcher(t *testing.T) {
	src := `t.Skip("x")
tb.Skipf("%s", x)
b.SkipNow()
skip := t.Skipf
testutil.SkipIfNotSupported(t, err)
if t.Skipped() {
p.stats.Skipped++
// t.Skip("in a comment")
func TestSkipForeignBlocks(t *testing.T) {
`
	got := skipsIn(src)
	if want := []int{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("skip lines %v, want %v", got, want)
	}
}

// TestSkipsGoThroughTestutil fails, naming file:line, for every Go file
// outside internal/testutil that skips a test by itself: a skip must say
// what the machine lacks and be checked against where that is expected
// (Require, RequireSupported, Missing, RequireRoot), so that CI fails on an
// unexpected one.
func TestSkipsGoThroughTestutil(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	self := filepath.Join(root, "internal", "testutil")
	var bad []string
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path == self || path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(root, path)
		for _, n := range skipsIn(string(src)) {
			bad = append(bad, rel+":"+strconv.Itoa(n))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no Go files under %s", root)
	}
	if len(bad) > 0 {
		t.Errorf("tests skip by themselves; use testutil.Require, RequireSupported or Missing "+
			"with a Fact saying where its absence is expected:\n\t%s", strings.Join(bad, "\n\t"))
	}
}
