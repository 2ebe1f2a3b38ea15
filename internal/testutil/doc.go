// Package testutil holds helpers shared by tests: the gate for tests that
// need root, the facts a test may need of the machine (kernel features,
// modules, tools) with where their absence is expected, and what each
// kernel we test on should show.
//
// Tests never skip by themselves: they call RequireRoot, Require,
// RequireSupported or Missing, which skip with a sentence saying what is
// missing and why that is expected here, and fail where it is not: as root
// on a kernel the facts know, and always under PATHTRACE_TEST_STRICT=1,
// which `make test` and vm/gotest.sh set (tools must be installed then).
// TestSkipsGoThroughTestutil keeps it so.
package testutil
