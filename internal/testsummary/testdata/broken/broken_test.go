// Package broken does not compile, on purpose; testsummary's tests run it.
package broken

import "testing"

func TestBroken(t *testing.T) { undefinedFunction() }
