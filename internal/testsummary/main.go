// Command testsummary runs go test -json and prints what plain go test
// prints, followed by one line per reason tests were skipped.
//
//	go run ./internal/testsummary [-go go] -- [go test flags] [packages]
//
// Plain go test says "ok" for a package whose tests were all skipped; make
// test uses this command so that a run missing, say, the RediSearch module
// ends with "skipped: 95 tests: needs the RediSearch module; set ...".
// It prints each package's result line, the output of every failed test
// and of build failures, drops the output of passed and skipped tests, and
// exits with go test's exit code. It uses only the standard library.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses the command line, runs go test -json with the arguments after
// "--", summarizes its output to stdout and returns go test's exit code (2
// on a usage error, 1 when go test could not be started).
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("testsummary", flag.ContinueOnError)
	fs.SetOutput(stderr)
	goCmd := fs.String("go", "go", "the go command")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cmd := exec.Command(*goCmd, append([]string{"test", "-json"}, fs.Args()...)...)
	cmd.Stderr = stderr // go's own messages (flags, downloads) pass through
	events, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(stderr, "testsummary: %v\n", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "testsummary: %v\n", err)
		return 1
	}
	failed, sumErr := summarize(events, stdout)
	err = cmd.Wait()
	if sumErr != nil {
		fmt.Fprintf(stderr, "testsummary: reading go test -json: %v\n", sumErr)
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintf(stderr, "testsummary: %v\n", err)
		return 1
	case failed || sumErr != nil:
		return 1 // go test exits non-zero on a failure; never hide one
	}
	return 0
}

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// testKey names one test of one package.
type testKey struct{ pkg, test string }

// summarize reads go test -json events from r and writes to w the lines
// plain go test would print: each package's result line ("ok", "FAIL",
// "?"), the output of failed tests and build failures, then one line per
// skip reason, most skipped first. It reports whether anything failed, and
// the error of reading r or of an undecodable line.
func summarize(r io.Reader, w io.Writer) (failed bool, err error) {
	pending := map[testKey][]string{} // output of tests still running
	skips := map[string]int{}         // skip reason -> tests
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return true, fmt.Errorf("%w: %q", err, sc.Text())
		}
		k := testKey{e.Package, e.Test}
		switch {
		case e.Action == "build-output":
			fmt.Fprint(w, e.Output)
		case e.Action == "build-fail":
			failed = true
		case e.Test == "" && e.Action == "output":
			if strings.HasPrefix(e.Output, "FAIL") {
				flush(w, pending, e.Package)
			}
			if e.Output != "PASS\n" && !strings.HasPrefix(e.Output, "=== ") {
				fmt.Fprint(w, e.Output)
			}
		case e.Test == "" && e.Action == "fail":
			failed = true
			flush(w, pending, e.Package)
		case e.Test == "":
		case e.Action == "output":
			pending[k] = append(pending[k], e.Output)
		case e.Action == "fail":
			failed = true
			block := failBlock(pending[k], strings.Count(e.Test, "/"))
			delete(pending, k)
			// A subtest's block goes inside its parent's, after the
			// parent's "--- FAIL" line, as plain go test shows it.
			if i := strings.LastIndex(e.Test, "/"); i > 0 {
				if parent := (testKey{e.Package, e.Test[:i]}); pending[parent] != nil {
					pending[parent] = append(pending[parent], block...)
					break
				}
			}
			printOutput(w, block)
		case e.Action == "skip":
			skips[skipReason(pending[k])]++
			delete(pending, k)
		case e.Action == "pass":
			delete(pending, k)
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	type group struct {
		reason string
		n      int
	}
	var groups []group
	for reason, n := range skips {
		groups = append(groups, group{reason, n})
	}
	slices.SortFunc(groups, func(a, b group) int {
		return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.reason, b.reason))
	})
	for _, g := range groups {
		tests := "tests"
		if g.n == 1 {
			tests = "test"
		}
		fmt.Fprintf(w, "skipped: %d %s: %s\n", g.n, tests, g.reason)
	}
	return failed, nil
}

// failBlock returns a failed test's output as plain go test shows it: its
// "--- FAIL" line first (go test -json has it last, after the messages it
// heads), and indented by 4 spaces per subtest level (go test -json does
// not indent subtests).
func failBlock(lines []string, depth int) []string {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(strings.TrimLeft(lines[i], " "), "--- FAIL") {
			lines = slices.Concat(lines[i:i+1], lines[:i], lines[i+1:])
			break
		}
	}
	indent := strings.Repeat("    ", depth)
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = indent + l
	}
	return out
}

// printOutput writes a test's output without the "=== RUN" (PAUSE, CONT,
// NAME) lines that plain go test does not show.
func printOutput(w io.Writer, lines []string) {
	for _, l := range lines {
		if !strings.HasPrefix(strings.TrimLeft(l, " "), "=== ") {
			fmt.Fprint(w, l)
		}
	}
}

// flush prints and forgets the output of the tests of pkg still pending, in
// name order. A test binary that crashed leaves tests without an end event;
// their output says why, before the package's FAIL line.
func flush(w io.Writer, pending map[testKey][]string, pkg string) {
	var ks []testKey
	for k := range pending {
		if k.pkg == pkg {
			ks = append(ks, k)
		}
	}
	slices.SortFunc(ks, func(a, b testKey) int { return strings.Compare(a.test, b.test) })
	for _, k := range ks {
		printOutput(w, pending[k])
		delete(pending, k)
	}
}

// logPrefix is the "file.go:12: " t.Skip puts before its message.
var logPrefix = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)

// skipReason returns the message a skipped test gave, from its output: the
// last line before "--- SKIP" without its file:line prefix and a leading
// "skipped: ", or "no reason given".
func skipReason(lines []string) string {
	reason := ""
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		reason = strings.TrimPrefix(logPrefix.ReplaceAllString(strings.TrimRight(l, "\n"), ""), "skipped: ")
	}
	if reason == "" {
		return "no reason given"
	}
	return strings.TrimSpace(reason)
}
