package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/semcache/semcache/benchmarks"
)

// TestBenchOverhead runs a small `semcache bench overhead`: the upstream,
// the bare proxy, `semcache serve` and the load generators are child
// processes of this test binary. It checks what each row was served, not
// how fast (speed is measured by the command, not asserted here).
func TestBenchOverhead(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"bench", "overhead", "--rounds", "1", "--requests", "20", "--conc-requests", "60",
		"--conns", "4", "--warmup", "5", "--out", dir}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "overhead.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []benchmarks.OverheadRow
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"direct to the upstream":         "-",
		"bare reverse proxy":             "-",
		"semcache exact hit":             "HIT exact",
		"semcache semantic hit":          "HIT semantic",
		"semcache miss (unique prompts)": "MISS",
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for _, r := range rows {
		outcome, ok := want[r.Name]
		if !ok {
			t.Errorf("unexpected row %q", r.Name)
			continue
		}
		for _, res := range append(r.Sequential, r.Concurrent...) {
			if res.Errors != 0 || res.Outcomes[outcome] != res.Requests {
				t.Errorf("%s: %d errors, outcomes %v; want all %d %q", r.Name, res.Errors, res.Outcomes, res.Requests, outcome)
			}
		}
		if r.SeqP50us <= 0 || r.RPS <= 0 {
			t.Errorf("%s: p50 %v µs, %v req/s", r.Name, r.SeqP50us, r.RPS)
		}
	}
	if !bytes.Contains(stdout.Bytes(), []byte("| semcache exact hit |")) {
		t.Errorf("table lacks the exact-hit row:\n%s", stdout.String())
	}
}

func TestBenchOverheadFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"bench", "overhead", "--conns", "0"}, &stdout, &stderr); code != 2 {
		t.Errorf("--conns 0: exit %d, want 2 (%s)", code, stderr.String())
	}
	if code := run(context.Background(), []string{"bench", "overhead", "--role", "nope"}, &stdout, &stderr); code != 2 {
		t.Errorf("--role nope: exit %d, want 2", code)
	}
}
