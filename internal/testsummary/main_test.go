package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// goCmd returns the go command running these tests.
func goCmd(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH: %v", err)
	}
	return p
}

// TestRun runs go test on the packages under testdata through testsummary:
// it keeps go test's exit code, prints what plain go test prints for
// failures and build errors, drops the output of passed and skipped tests,
// and ends with one line per skip reason.
func TestRun(t *testing.T) {
	cases := []struct {
		name    string
		pkg     string
		code    int
		want    []string // in this order
		notWant []string
	}{
		{"failures", "./testdata/sample", 1,
			[]string{
				"--- FAIL: TestFails (",
				"    sample_test.go:9: the failure message\n",
				"--- FAIL: TestParent (",
				"\n    --- FAIL: TestParent/fails (",
				"\n        sample_test.go:21: the subtest's failure\n",
				"FAIL\tgithub.com/semcache/semcache/internal/testsummary/testdata/sample\t",
				"skipped: 3 tests: needs the module; set MODULE\nskipped: 1 test: needs a server\n",
			},
			[]string{"=== RUN", "--- PASS", "--- SKIP", "a log line of a passing test", "not shown"}},
		{"passing with a skip", "./testdata/passing", 0,
			[]string{"ok  \tgithub.com/semcache/semcache/internal/testsummary/testdata/passing\t", "skipped: 1 test: needs the module; set MODULE\n"},
			[]string{"=== RUN", "--- SKIP", "PASS\n"}},
		{"build failure", "./testdata/broken", 1,
			[]string{"broken_test.go:6:", "undefined: undefinedFunction", "FAIL\tgithub.com/semcache/semcache/internal/testsummary/testdata/broken [build failed]"},
			[]string{"skipped:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{"-go", goCmd(t), "--", "-count=1", tc.pkg}, &stdout, &stderr)
			out := stdout.String()
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("output lacks %q (in this place):\n%s", w, out)
					continue
				}
				rest = rest[i+len(w):]
			}
			if strings.HasSuffix(tc.want[len(tc.want)-1], "\n") && rest != "" {
				t.Errorf("output goes on after %q with %q", tc.want[len(tc.want)-1], rest)
			}
			for _, nw := range tc.notWant {
				if strings.Contains(out, nw) {
					t.Errorf("output has %q:\n%s", nw, out)
				}
			}
		})
	}
}

// TestSummarizeCrash: a test binary that dies mid-test leaves the test
// without an end event; its output, which says why, is printed when the
// package fails.
func TestSummarizeCrash(t *testing.T) {
	in := `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"panic: boom\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.01s\n"}
{"Action":"fail","Package":"p"}
`
	var out bytes.Buffer
	failed, err := summarize(strings.NewReader(in), &out)
	if err != nil || !failed || out.String() != "panic: boom\nFAIL\tp\t0.01s\n" {
		t.Errorf("failed %v, err %v, output %q; want the failure and the panic", failed, err, out.String())
	}
	if failed, err := summarize(strings.NewReader("not json\n"), &out); err == nil || !failed {
		t.Errorf("undecodable input: failed %v, err %v; want a failure", failed, err)
	}
}
