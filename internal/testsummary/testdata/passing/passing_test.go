// Package passing passes, with one skipped test; testsummary's tests run it.
package passing

import "testing"

func TestPasses(t *testing.T) {}

func TestNeedsModule(t *testing.T) { t.Skip("skipped: needs the module; set MODULE") }
