// Package testutil holds helpers shared by tests: the gate for tests that
// need root and BPF, and kernel feature skips.
package testutil
