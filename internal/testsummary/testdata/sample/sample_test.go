// Package sample is the test suite testsummary's tests run: it passes,
// fails and skips on purpose. It is under testdata, so ./... leaves it out.
package sample

import "testing"

func TestPasses(t *testing.T) { t.Log("a log line of a passing test") }

func TestFails(t *testing.T) { t.Error("the failure message") }

func TestNeedsModule(t *testing.T) { t.Skip("skipped: needs the module; set MODULE") }

func TestGroup(t *testing.T) {
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) { t.Skip("skipped: needs the module; set MODULE") })
	}
	t.Run("c", func(t *testing.T) { t.Skip("needs a server") })
}

func TestParent(t *testing.T) {
	t.Run("fails", func(t *testing.T) { t.Error("the subtest's failure") })
	t.Run("passes", func(t *testing.T) { t.Log("not shown") })
}
