package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/index/redistest"
)

func TestThresholds(t *testing.T) {
	got, err := thresholds(0.50, 1.00, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 51 || got[0] != 0.5 || got[20] != 0.7 || got[37] != 0.87 || got[50] != 1 {
		t.Errorf("thresholds(0.50, 1.00, 0.01) = %v", got)
	}
	got, _ = thresholds(0.1, 0.3, 0.1) // 0.1+2*0.1 is 0.30000000000000004 before rounding
	if want := []float64{0.1, 0.2, 0.3}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("thresholds(0.1, 0.3, 0.1) = %v, want %v", got, want)
	}
	got, _ = thresholds(0.9, 0.9, 0.05)
	if len(got) != 1 || got[0] != 0.9 {
		t.Errorf("thresholds(0.9, 0.9, 0.05) = %v, want [0.9]", got)
	}
	for _, bad := range [][3]float64{{0.5, 1.1, 0.01}, {-1.5, 1, 0.1}, {0.9, 0.8, 0.01}, {0.5, 1, 0}, {0.5, 1, -0.1}, {-1, 1, 1e-7}, {math.NaN(), 1, 0.1}} {
		if _, err := thresholds(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("thresholds%v: no error", bad)
		}
	}
}

func TestFormatThreshold(t *testing.T) {
	for in, want := range map[float64]string{0.7: "0.70", 1: "1.00", 0.87: "0.87", 0.705: "0.705", -0.5: "-0.50", 0: "0.00"} {
		if got := formatThreshold(in); got != want {
			t.Errorf("formatThreshold(%v) = %q, want %q", in, got, want)
		}
	}
}

// fiveQueries is a hand-computed fixture: 5 queries, 4 in scope (q4 is out
// of scope), 3 answerable (q5's label is not in the warm set).
var fiveQueries = []outcome{
	{Sim: 0.95, Correct: true, InScope: true, Answerable: true},    // q1
	{Sim: 0.90, Correct: false, InScope: true, Answerable: true},   // q2: nearest has another label
	{Sim: 0.85, Correct: true, InScope: true, Answerable: true},    // q3
	{Sim: 0.80, Correct: false, InScope: false, Answerable: false}, // q4: out of scope
	{Sim: 0.60, Correct: false, InScope: true, Answerable: false},  // q5: label absent from warm set
}

func p(x float64) *float64 { return &x }

// fiveQueriesRows are the expected rows of fiveQueries, computed by hand.
var fiveQueriesRows = []TuneRow{
	{Threshold: 0.60, Hits: 5, CorrectHits: 2, HitRate: 1, Precision: p(2.0 / 5), Recall: p(2.0 / 3), F1: p(4.0 / 8), FalseHitRate: 3.0 / 5, InScopeMissRate: p(0)},
	{Threshold: 0.80, Hits: 4, CorrectHits: 2, HitRate: 0.8, Precision: p(2.0 / 4), Recall: p(2.0 / 3), F1: p(4.0 / 7), FalseHitRate: 2.0 / 5, InScopeMissRate: p(1.0 / 4)},
	{Threshold: 0.85, Hits: 3, CorrectHits: 2, HitRate: 0.6, Precision: p(2.0 / 3), Recall: p(2.0 / 3), F1: p(4.0 / 6), FalseHitRate: 1.0 / 5, InScopeMissRate: p(1.0 / 4)},
	{Threshold: 0.90, Hits: 2, CorrectHits: 1, HitRate: 0.4, Precision: p(1.0 / 2), Recall: p(1.0 / 3), F1: p(2.0 / 5), FalseHitRate: 1.0 / 5, InScopeMissRate: p(2.0 / 4)},
	{Threshold: 0.95, Hits: 1, CorrectHits: 1, HitRate: 0.2, Precision: p(1), Recall: p(1.0 / 3), F1: p(2.0 / 4), FalseHitRate: 0, InScopeMissRate: p(3.0 / 4)},
	{Threshold: 1.00, Hits: 0, CorrectHits: 0, HitRate: 0, Precision: nil, Recall: p(0), F1: p(0), FalseHitRate: 0, InScopeMissRate: p(1)},
}

func TestSweep(t *testing.T) {
	got := sweep(fiveQueries, []float64{0.60, 0.80, 0.85, 0.90, 0.95, 1.00})
	if len(got) != len(fiveQueriesRows) {
		t.Fatalf("got %d rows, want %d", len(got), len(fiveQueriesRows))
	}
	for i := range got {
		assertRow(t, got[i], fiveQueriesRows[i])
	}
}

func TestSweepUndefinedRates(t *testing.T) {
	// Every query out of scope: recall and the in-scope miss rate are
	// undefined, F1 too since there are no hits either.
	outs := []outcome{{Sim: 0.5}, {Sim: 0.7}}
	got := sweep(outs, []float64{0.9})[0]
	assertRow(t, got, TuneRow{Threshold: 0.9})
}

func assertRow(t *testing.T, got, want TuneRow) {
	t.Helper()
	eq := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
	optEq := func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || eq(*a, *b)) }
	if got.Threshold != want.Threshold || got.Hits != want.Hits || got.CorrectHits != want.CorrectHits ||
		!eq(got.HitRate, want.HitRate) || !optEq(got.Precision, want.Precision) || !optEq(got.Recall, want.Recall) ||
		!optEq(got.F1, want.F1) || !eq(got.FalseHitRate, want.FalseHitRate) || !optEq(got.InScopeMissRate, want.InScopeMissRate) {
		t.Errorf("row at %v:\n got %s\nwant %s", want.Threshold, rowString(got), rowString(want))
	}
}

func rowString(r TuneRow) string {
	return fmt.Sprintf("hits=%d correct=%d hit_rate=%v precision=%s recall=%s f1=%s false_hit_rate=%v inscope_miss_rate=%s",
		r.Hits, r.CorrectHits, r.HitRate, optRate(r.Precision, "nil"), optRate(r.Recall, "nil"), optRate(r.F1, "nil"),
		r.FalseHitRate, optRate(r.InScopeMissRate, "nil"))
}

func TestRecommend(t *testing.T) {
	tests := []struct {
		name          string
		rows          []TuneRow
		target        float64
		wantFound     bool
		wantThreshold float64 // of Row; NaN when Row is nil
		wantMessage   string
	}{
		{"only the strictest threshold is precise enough", fiveQueriesRows, 0.99, true, 0.95, "recommended threshold 0.95"},
		{"highest hit rate among those reaching the target", fiveQueriesRows, 0.6, true, 0.85, "recommended threshold 0.85"},
		{"precision equal to the target qualifies", fiveQueriesRows, 0.4, true, 0.60, "recommended threshold 0.60"},
		{"none reaches the target: report the most precise", fiveQueriesRows[:4], 0.9, false, 0.85, "no threshold reaches precision 0.9; the highest is 0.6667 (2/3"},
		{"no hits at all", fiveQueriesRows[5:], 0.9, false, math.NaN(), "no threshold reaches precision 0.9: no threshold has any hit"},
		{"ties on hits go to the stricter threshold", []TuneRow{
			{Threshold: 0.80, Hits: 3, CorrectHits: 3, Precision: p(1)},
			{Threshold: 0.81, Hits: 3, CorrectHits: 3, Precision: p(1)},
			{Threshold: 0.82, Hits: 2, CorrectHits: 2, Precision: p(1)},
		}, 0.99, true, 0.81, "recommended threshold 0.81"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := recommend(tt.rows, tt.target)
			if got.Found != tt.wantFound {
				t.Errorf("Found = %v, want %v", got.Found, tt.wantFound)
			}
			switch {
			case math.IsNaN(tt.wantThreshold):
				if got.Row != nil || got.PrecisionCI95 != nil {
					t.Errorf("Row = %+v, CI %v; want none", got.Row, got.PrecisionCI95)
				}
			case got.Row == nil:
				t.Errorf("Row = nil, want threshold %v", tt.wantThreshold)
			case got.Row.Threshold != tt.wantThreshold:
				t.Errorf("Row.Threshold = %v, want %v", got.Row.Threshold, tt.wantThreshold)
			}
			if !strings.Contains(got.Message, tt.wantMessage) {
				t.Errorf("Message = %q, want it to contain %q", got.Message, tt.wantMessage)
			}
		})
	}
}

func TestRecommendFlagsWeakEvidence(t *testing.T) {
	// 1/1 correct reaches 0.99 but its Wilson interval is [0.21, 1].
	got := recommend(fiveQueriesRows, 0.99)
	lo, hi := got.PrecisionCI95[0], got.PrecisionCI95[1]
	if math.Abs(lo-0.2065) > 1e-4 || hi != 1 {
		t.Errorf("CI = [%v, %v], want [0.2065, 1]", lo, hi)
	}
	if !strings.Contains(got.Message, "not established with 95% confidence") {
		t.Errorf("Message = %q, want a warning about the lower bound", got.Message)
	}
}

func TestWilsonInterval(t *testing.T) {
	tests := []struct {
		k, n           int
		wantLo, wantHi float64
	}{
		{5, 10, 0.2366, 0.7634},
		{0, 10, 0, 0.2775},
		{10, 10, 0.7225, 1},
		{100, 100, 0.9630, 1},
		{99, 100, 0.9455, 0.9982},
		{0, 0, 0, 1},
	}
	for _, tt := range tests {
		lo, hi := wilsonInterval(tt.k, tt.n, z95)
		if math.Abs(lo-tt.wantLo) > 5e-5 || math.Abs(hi-tt.wantHi) > 5e-5 {
			t.Errorf("wilsonInterval(%d, %d) = [%.4f, %.4f], want [%.4f, %.4f]", tt.k, tt.n, lo, hi, tt.wantLo, tt.wantHi)
		}
	}
}

func TestJudge(t *testing.T) {
	warm := []Example{{Text: "a", Label: "A"}, {Text: "b", Label: "B"}, {Text: "x", Label: "OOS"}}
	queries := []Example{{Label: "A"}, {Label: "A"}, {Label: "OOS"}, {Label: "C"}, {Label: "OOS"}}
	nn := []neighbour{{0, 0.9}, {1, 0.8}, {2, 0.99}, {0, 0.7}, {0, 0.6}}
	got := judge(warm, queries, nn, "OOS")
	want := []outcome{
		{Sim: 0.9, Correct: true, InScope: true, Answerable: true},
		{Sim: 0.8, Correct: false, InScope: true, Answerable: true},
		{Sim: 0.99, Correct: false, InScope: false, Answerable: false}, // same label, but out of scope: wrong
		{Sim: 0.7, Correct: false, InScope: true, Answerable: false},
		{Sim: 0.6, Correct: false, InScope: false, Answerable: false},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("judge:\n got %v\nwant %v", got, want)
	}
	// Without an out-of-scope label the OOS query matching an OOS warm
	// example is an ordinary correct hit.
	if got := judge(warm, queries, nn, ""); !got[2].Correct || !got[2].InScope {
		t.Errorf("judge without oos label: %+v, want in scope and correct", got[2])
	}
}

func TestNearestNeighbours(t *testing.T) {
	warm := [][]float32{{1, 0}, {0, 1}, {0, 1}, {-1, 0}}
	queries := [][]float32{{1, 0}, {0, 1}, {-1, 0}, {0.6, 0.8}, {0, -1}}
	got := nearestNeighbours(context.Background(), queries, warm)
	want := []neighbour{{0, 1}, {1, 1}, {3, 1}, {1, 0.8}, {0, 0}} // ties: lowest warm index
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestClampSim(t *testing.T) {
	for in, want := range map[float64]float64{0.99999994: 1, 1.0000001: 1, 0.8700004: 0.87, -1.0000001: -1, 0.1234564: 0.123456} {
		if got := clampSim(in); got != want {
			t.Errorf("clampSim(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestEmbedAllNormalisesAndChecksDimensions(t *testing.T) {
	exs := []Example{{Text: "a", Line: 2}, {Text: "b", Line: 3}}
	got, err := embedAll(context.Background(), mapEmbedder{"a": {3, 4}, "b": {0, 0}}, exs)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[[0.6 0.8] [0 0]]" {
		t.Errorf("got %v, want [[0.6 0.8] [0 0]]", got)
	}
	_, err = embedAll(context.Background(), mapEmbedder{"a": {3, 4}, "b": {1, 2, 3}}, exs)
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("got %v, want a dimension error naming line 3", err)
	}
}

// mapEmbedder is a fake embedder that looks texts up in a map; unknown
// texts embed to (0, 0, 1).
type mapEmbedder map[string][]float32

func (m mapEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, s := range texts {
		v, ok := m[s]
		if !ok {
			v = []float32{0, 0, 1}
		}
		out[i] = append([]float32(nil), v...)
	}
	return out, nil
}

func (m mapEmbedder) Fingerprint() string { return "fake:map:3" }

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunTuneEndToEnd(t *testing.T) {
	dir := t.TempDir()
	warm := writeFile(t, dir, "warm.csv", "text,category\nw1,A\nw2,B\nw3,OOS\n")
	queries := writeFile(t, dir, "queries.csv", "text,category\nq1,A\nq2,A\nq3,B\nq4,OOS\n")
	// cos(q1,w1)=1, cos(q2,w2)=0.8, cos(q3,w2)=0.6, cos(q4,w3)=0.96.
	emb := mapEmbedder{
		"w1": {1, 0, 0}, "w2": {0, 1, 0}, "w3": {0, 0, 1},
		"q1": {1, 0, 0}, "q2": {0, 0.8, 0.6}, "q3": {0, 0.6, -0.8}, "q4": {0, 0.28, 0.96},
	}
	o := tuneOptions{Warm: warm, Queries: queries, Format: "intents", TextCol: "text", LabelCol: "category",
		OOSLabel: "OOS", Min: 0.5, Max: 1, Step: 0.1, TargetPrecision: 0.99}
	rep, err := runTune(context.Background(), o, emb)
	if err != nil {
		t.Fatal(err)
	}
	if rep.QueryCount != 4 || rep.InScope != 3 || rep.Answerable != 3 || len(rep.Rows) != 6 {
		t.Fatalf("report counts: %+v", rep)
	}
	// At 0.9: q1 (correct) and q4 (out of scope, sim 0.96) hit.
	assertRow(t, rep.Rows[4], TuneRow{Threshold: 0.9, Hits: 2, CorrectHits: 1, HitRate: 0.5, Precision: p(0.5),
		Recall: p(1.0 / 3), F1: p(2.0 / 5), FalseHitRate: 0.25, InScopeMissRate: p(2.0 / 3)})
	if r := rep.Recommendation; !r.Found || r.Row.Threshold != 1 {
		t.Errorf("recommendation %+v, want threshold 1.00", r)
	}

	var table bytes.Buffer
	if err := writeTuneTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"embedder fake:map:3", "threshold  hits  hit_rate  precision", "0.90     2    0.5000     0.5000", "recommended threshold 1.00"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table does not contain %q:\n%s", s, table.String())
		}
	}

	out := filepath.Join(dir, "out")
	if err := writeTuneFiles(out, rep); err != nil {
		t.Fatal(err)
	}
	csvData, _ := os.ReadFile(filepath.Join(out, "tune.csv"))
	wantCSV := "threshold,hits,hit_rate,precision,recall,f1,false_hit_rate,inscope_miss_rate\n" +
		"0.50,4,1.000000,0.500000,0.666667,0.571429,0.500000,0.000000\n"
	if !strings.HasPrefix(string(csvData), wantCSV) {
		t.Errorf("tune.csv starts\n%s\nwant\n%s", csvData, wantCSV)
	}
	var js map[string]any
	jsData, _ := os.ReadFile(filepath.Join(out, "tune.json"))
	if err := json.Unmarshal(jsData, &js); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"embedder", "warm", "queries", "target_precision", "rows", "recommendation"} {
		if _, ok := js[k]; !ok {
			t.Errorf("tune.json has no %q", k)
		}
	}
}

func TestMainUsageErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no command", nil, 2, "usage: semcache bench"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"tune without --warm", []string{"tune", "--queries", "q.csv"}, 2, "--warm is required"},
		{"tune with an unknown format", []string{"tune", "--warm", "w", "--queries", "q", "--format", "qa"}, 2, `--format "qa" is not supported`},
		{"tune clinc with --warm", []string{"tune", "--warm", "w", "--queries", "q", "--format", "clinc"}, 2, "--format clinc reads one --data FILE"},
		{"tune pairs without --data", []string{"tune", "--format", "pairs"}, 2, "--format pairs needs --data FILE"},
		{"tune pairs with --text-col", []string{"tune", "--format", "pairs", "--data", "d", "--text-col", "q"}, 2, "--text-col does not apply to --format pairs"},
		{"tune clinc with --oos-label", []string{"tune", "--format", "clinc", "--data", "d", "--oos-label", "x"}, 2, "--oos-label does not apply to --format clinc"},
		{"tune clinc with a bad split", []string{"tune", "--format", "clinc", "--data", "d", "--warm-split", "dev"}, 2, `clinc split "dev"`},
		{"tune clinc with equal splits", []string{"tune", "--format", "clinc", "--data", "d", "--query-split", "train"}, 2, "are both \"train\""},
		{"tune intents with --warm-split", []string{"tune", "--warm", "w", "--queries", "q", "--warm-split", "val"}, 2, "--warm-split does not apply to --format intents"},
		{"tune with --data and --warm", []string{"tune", "--data", "d", "--warm", "w"}, 2, "--data and --warm/--queries are alternatives"},
		{"tune with a bad split ratio", []string{"tune", "--data", "d", "--split-ratio", "1"}, 2, "--split-ratio must be in (0, 1)"},
		{"tune with --split-ratio but no --data", []string{"tune", "--warm", "w", "--queries", "q", "--split-ratio", "0.5"}, 2, "--split-ratio applies only to --data"},
		{"tune with a negative seed", []string{"tune", "--data", "d", "--seed", "-1"}, 2, "invalid value"},
		{"tune with an unknown backend", []string{"tune", "--warm", "w", "--queries", "q", "--backend", "faiss"}, 2, `--backend "faiss" is not supported`},
		{"tune redis without --redis-url", []string{"tune", "--warm", "w", "--queries", "q", "--backend", "redis"}, 2, "--backend redis needs --redis-url"},
		{"tune memory with --redis-url", []string{"tune", "--warm", "w", "--queries", "q", "--redis-url", "redis://x"}, 2, "--redis-url applies only to --backend redis"},
		{"tune with an unknown embedder", []string{"tune", "--warm", "w", "--queries", "q", "--embedder", "bert"}, 2, `--embedder "bert" is not supported`},
		{"tune openai without --embedder-dim", []string{"tune", "--warm", "w", "--queries", "q", "--embedder", "openai", "--embedder-url", "http://127.0.0.1:1/v1", "--embedder-model", "m"}, 2, "--embedder openai needs --embedder-dim"},
		{"tune openai without --embedder-url", []string{"tune", "--warm", "w", "--queries", "q", "--embedder", "openai", "--embedder-dim", "8"}, 2, "--embedder openai needs --embedder-url"},
		{"tune openai without --embedder-model", []string{"tune", "--warm", "w", "--queries", "q", "--embedder", "openai", "--embedder-dim", "8", "--embedder-url", "http://127.0.0.1:1/v1"}, 2, "--embedder openai needs --embedder-model"},
		{"tune openai with a bad url", []string{"tune", "--warm", "w", "--queries", "q", "--embedder", "openai", "--embedder-dim", "8", "--embedder-url", "localhost:1", "--embedder-model", "m"}, 2, "must be an absolute http(s) URL"},
		{"tune local with --embedder-url", []string{"tune", "--warm", "w", "--queries", "q", "--embedder-url", "http://127.0.0.1:1/v1"}, 2, "apply only to --embedder openai"},
		{"tune with a bad dimension", []string{"tune", "--warm", "w", "--queries", "q", "--embedder-dim", "0"}, 2, "--embedder-dim must be > 0"},
		{"tune with a missing pairs file", []string{"tune", "--format", "pairs", "--data", "testdata/nope.csv"}, 1, "no such file"},
		{"tune with a malformed pairs file", []string{"tune", "--format", "pairs", "--data", "testdata/bad_pairs_label.csv"}, 1, "bad_pairs_label.csv:3:"},
		{"tune with a malformed clinc file", []string{"tune", "--format", "clinc", "--data", "testdata/bad_clinc_entry.json"}, 1, "bad_clinc_entry.json:4:"},
		{"tune clinc whose oos split has another intent", []string{"tune", "--format", "clinc", "--data", "testdata/bad_clinc_oosintent.json"}, 1, `bad_clinc_oosintent.json:6: split "oos_test": intent "music"`},
		{"tune clinc without the val split", []string{"tune", "--format", "clinc", "--data", "testdata/bad_clinc_oosintent.json", "--warm-split", "val"}, 1, `no split "val"`},
		{"tune split too small for the ratio", []string{"tune", "--data", "testdata/bom.csv"}, 1, "both sides must be non-empty"},
		{"tune with a bad sweep", []string{"tune", "--warm", "w", "--queries", "q", "--min", "0.9", "--max", "0.8"}, 2, "is above --max"},
		{"tune with a bad target", []string{"tune", "--warm", "w", "--queries", "q", "--target-precision", "1.5"}, 2, "--target-precision must be in (0, 1]"},
		{"unknown flag", []string{"tune", "--nope"}, 2, "flag provided but not defined"},
		{"positional argument", []string{"tune", "--warm", "w", "--queries", "q", "extra"}, 2, "unexpected arguments"},
		{"help", []string{"tune", "-h"}, 0, "usage: semcache bench tune"},
		{"replay to a remote host", []string{"replay", "--target", "https://api.openai.com/v1", "--data", "d.csv"}, 2, "is not loopback"},
		{"replay with missing data", []string{"replay", "--target", "http://127.0.0.1:1/v1", "--data", "testdata/nope.csv"}, 1, "no such file"},
		{"replay to a dead target", []string{"replay", "--target", "http://127.0.0.1:1/v1", "--data", "testdata/replay.csv", "--wait", "0s"}, 1, "not answering /healthz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantErr, stderr.String())
			}
		})
	}
}

func TestPairExamples(t *testing.T) {
	pairs, err := LoadPairs(filepath.Join("testdata", "pairs.csv"))
	if err != nil {
		t.Fatal(err)
	}
	warm, queries := pairExamples(pairs)
	const reset = "How do I reset my password?"
	wantWarm := []Example{
		{Text: reset, Label: pairLabelPrefix + reset, Line: 2},
		{Text: "What is the capital of France, really?", Label: pairLabelPrefix + "What is the capital of France, really?", Line: 3},
		{Text: "Is Go a good language?", Label: pairLabelPrefix + "Is Go a good language?", Line: 5},
		{Text: "Where is my card?", Label: pairLabelPrefix + "Where is my card?", Line: 6},
	}
	if !reflect.DeepEqual(warm, wantWarm) {
		t.Errorf("warm:\n got %+v\nwant %+v (question1 deduplicated by text)", warm, wantWarm)
	}
	wantLabels := []string{pairLabelPrefix + reset, pairLabelPrefix + "What is the capital of France, really?",
		pairLabelPrefix + reset, notDuplicateLabel, pairLabelPrefix + "Where is my card?"}
	for i, q := range queries {
		if q.Text != pairs[i].Question2 || q.Label != wantLabels[i] || q.Line != pairs[i].Line {
			t.Errorf("query %d = %+v, want question2 %q labelled %q on line %d", i, q, pairs[i].Question2, wantLabels[i], pairs[i].Line)
		}
	}
}

// pairsEmbedder places the texts of testdata/pairs.csv so that each
// question2's nearest stored question1 and its similarity are known.
var pairsEmbedder = mapEmbedder{
	"How do I reset my password?":            {1, 0, 0, 0},
	"What is the capital of France, really?": {0, 1, 0, 0},
	"Is Go a good language?":                 {0, 0, 1, 0},
	"Where is my card?":                      {0, 0, 0, 1},
	"How can I reset my password?":           {0.96, 0.28, 0, 0}, // own question1 at 0.96: correct
	"What is France's capital?":              {0, 0.6, 0, 0.8},   // another question1 at 0.8: wrong
	"I forgot my password":                   {0.8, 0, 0.6, 0},   // the same text as its question1 (row 1's entry) at 0.8: correct
	"Is Rust a good language?":               {0, 0, 0.96, 0.28}, // own question1 at 0.96, but not a duplicate: wrong
	"Card not arrived":                       {0, 0, 0.6, 0.8},   // own question1 at 0.8: correct
}

func TestRunTunePairs(t *testing.T) {
	o := tuneOptions{Data: filepath.Join("testdata", "pairs.csv"), Format: formatPairs, TextCol: "text", LabelCol: "category",
		Min: 0.8, Max: 1, Step: 0.1, TargetPrecision: 0.5}
	rep, err := runTune(context.Background(), o, pairsEmbedder)
	if err != nil {
		t.Fatal(err)
	}
	if rep.WarmCount != 4 || rep.QueryCount != 5 || rep.InScope != 4 || rep.Answerable != 4 || rep.OOSLabel != "" || rep.Backend != backendExact {
		t.Fatalf("report: %+v", rep)
	}
	assertRow(t, rep.Rows[0], TuneRow{Threshold: 0.8, Hits: 5, CorrectHits: 3, HitRate: 1, Precision: p(3.0 / 5),
		Recall: p(3.0 / 4), F1: p(6.0 / 9), FalseHitRate: 2.0 / 5, InScopeMissRate: p(0)})
	assertRow(t, rep.Rows[1], TuneRow{Threshold: 0.9, Hits: 2, CorrectHits: 1, HitRate: 2.0 / 5, Precision: p(1.0 / 2),
		Recall: p(1.0 / 4), F1: p(2.0 / 6), FalseHitRate: 1.0 / 5, InScopeMissRate: p(3.0 / 4)})
	assertRow(t, rep.Rows[2], TuneRow{Threshold: 1, Hits: 0, CorrectHits: 0, HitRate: 0, Precision: nil,
		Recall: p(0), F1: p(0), FalseHitRate: 0, InScopeMissRate: p(1)})
	if r := rep.Recommendation; !r.Found || r.Row.Threshold != 0.8 {
		t.Errorf("recommendation %+v, want 0.80", r)
	}
	var table bytes.Buffer
	if err := writeTuneTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"backend exact", "(4 stored questions)", "(5 pairs, 4 duplicates: the recall denominator)"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table does not contain %q:\n%s", s, table.String())
		}
	}
}

// clincEmbedder places the texts of testdata/clinc.json.
var clincEmbedder = mapEmbedder{
	"what is my balance":          {1, 0, 0},
	"book a flight to paris":      {0, 1, 0},
	"what is the meaning of life": {0, 0, 1},       // oos_train
	"tell me my balance":          {0.96, 0.28, 0}, // balance at 0.96: correct
	"fly me to rome":              {0.6, 0.8, 0},   // book_flight at 0.8: correct
	"who won the game":            {0, 0.28, 0.96}, // out of scope, the stored oos query at 0.96: wrong
	"play jazz":                   {0.8, 0, 0.6},   // out of scope, balance at 0.8: wrong
	"how much money do i have":    {1, 0, 0},       // val
	"sing a song":                 {0, 0, 1},       // oos_val
}

func TestRunTuneCLINC(t *testing.T) {
	o := tuneOptions{Data: filepath.Join("testdata", "clinc.json"), Format: formatCLINC, WarmSplit: "train", QuerySplit: "test",
		TextCol: "text", LabelCol: "category", Min: 0.8, Max: 1, Step: 0.1, TargetPrecision: 0.99}
	rep, err := runTune(context.Background(), o, clincEmbedder)
	if err != nil {
		t.Fatal(err)
	}
	if rep.WarmCount != 3 || rep.QueryCount != 4 || rep.InScope != 2 || rep.Answerable != 2 || rep.OOSLabel != "oos" {
		t.Fatalf("report: %+v", rep)
	}
	if !strings.HasSuffix(rep.Warm, "clinc.json: train + oos_train") || !strings.HasSuffix(rep.Queries, "clinc.json: test + oos_test") {
		t.Errorf("sources %q, %q", rep.Warm, rep.Queries)
	}
	assertRow(t, rep.Rows[0], TuneRow{Threshold: 0.8, Hits: 4, CorrectHits: 2, HitRate: 1, Precision: p(0.5),
		Recall: p(1), F1: p(4.0 / 6), FalseHitRate: 0.5, InScopeMissRate: p(0)})
	assertRow(t, rep.Rows[1], TuneRow{Threshold: 0.9, Hits: 2, CorrectHits: 1, HitRate: 0.5, Precision: p(0.5),
		Recall: p(0.5), F1: p(2.0 / 4), FalseHitRate: 0.25, InScopeMissRate: p(0.5)})

	// Warm from val: "how much money do i have" answers the balance query
	// at 0.96 and "play jazz" at 0.8; "sing a song" is the oos_val entry.
	o.WarmSplit = "val"
	rep, err = runTune(context.Background(), o, clincEmbedder)
	if err != nil {
		t.Fatal(err)
	}
	if rep.WarmCount != 2 || rep.Answerable != 1 {
		t.Fatalf("val warm: %+v", rep)
	}
	assertRow(t, rep.Rows[1], TuneRow{Threshold: 0.9, Hits: 2, CorrectHits: 1, HitRate: 0.5, Precision: p(0.5),
		Recall: p(1), F1: p(2.0 / 3), FalseHitRate: 0.25, InScopeMissRate: p(0.5)})
}

func TestRunTuneSplitRatio(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("text,category\n")
	for i := range 20 {
		fmt.Fprintf(&b, "t%d,L%d\n", i, i%4)
	}
	data := writeFile(t, dir, "all.csv", b.String())
	emb := mapEmbedder{}
	for i := range 20 {
		v := make([]float32, 4)
		v[i%4] = 1
		v[(i+1)%4] = float32(i) / 40 // distinct, same label nearest
		emb[fmt.Sprintf("t%d", i)] = v
	}
	run := func(seed uint64) *TuneReport {
		t.Helper()
		o := tuneOptions{Data: data, Format: formatIntents, TextCol: "text", LabelCol: "category", SplitRatio: 0.75, Seed: seed,
			Min: 0.5, Max: 1, Step: 0.05, TargetPrecision: 0.99}
		rep, err := runTune(context.Background(), o, emb)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := run(7)
	if rep.WarmCount != 15 || rep.QueryCount != 5 || rep.SplitRatio != 0.75 || rep.Seed != 7 || rep.Data != data {
		t.Fatalf("report: %+v", rep)
	}
	if !strings.Contains(rep.Warm, "15 of 20 rows (split 0.75, seed 7)") || !strings.Contains(rep.Queries, "the other 5 rows") {
		t.Errorf("sources %q, %q", rep.Warm, rep.Queries)
	}
	again := run(7)
	if !reflect.DeepEqual(rep, again) {
		t.Errorf("seed 7 twice gave different reports:\n%+v\n%+v", rep, again)
	}
}

// randomUnitVectors returns n seeded random unit vectors of length dim.
func randomUnitVectors(n, dim int, seed uint64) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, 3))
	out := make([][]float32, n)
	for i := range out {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		out[i] = normalised(v)
	}
	return out
}

func TestMemoryBackendAgreesWithExact(t *testing.T) {
	warm := randomUnitVectors(500, 32, 1)
	var queries [][]float32
	for i, w := range warm[:200] { // near copies of warm vectors, plus unrelated ones
		q := slices.Clone(w)
		q[i%32] += 0.3
		queries = append(queries, normalised(q))
	}
	queries = append(queries, randomUnitVectors(50, 32, 2)...)
	queries = append(queries, make([]float32, 32)) // zero query
	warm = append(warm, make([]float32, 32))       // zero warm vector, never stored
	ctx := context.Background()
	exact, err := nearest(ctx, backendExact, tuneOptions{}, "fake", queries, warm)
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range []uint64{1, 2} {
		mem, err := nearest(ctx, backendMemory, tuneOptions{Seed: seed}, "fake", queries, warm)
		if err != nil {
			t.Fatal(err)
		}
		for i := range exact {
			if mem[i].Index != exact[i].Index || math.Abs(mem[i].Sim-exact[i].Sim) > 2e-6 {
				t.Errorf("seed %d, query %d: memory %+v, exact %+v", seed, i, mem[i], exact[i])
			}
		}
		again, _ := nearest(ctx, backendMemory, tuneOptions{Seed: seed}, "fake", queries, warm)
		if !reflect.DeepEqual(mem, again) {
			t.Errorf("seed %d: two memory runs differ", seed)
		}
	}
}

func TestRunTuneMemoryBackend(t *testing.T) {
	o := tuneOptions{Data: filepath.Join("testdata", "clinc.json"), Format: formatCLINC, WarmSplit: "train", QuerySplit: "test",
		TextCol: "text", LabelCol: "category", Min: 0.8, Max: 1, Step: 0.1, TargetPrecision: 0.99, Seed: 1}
	want, err := runTune(context.Background(), o, clincEmbedder)
	if err != nil {
		t.Fatal(err)
	}
	o.Backend = backendMemory
	got, err := runTune(context.Background(), o, clincEmbedder)
	if err != nil {
		t.Fatal(err)
	}
	if got.Backend != backendMemory {
		t.Errorf("Backend = %q", got.Backend)
	}
	if !reflect.DeepEqual(got.Rows, want.Rows) {
		t.Errorf("memory rows differ from exact:\n got %s\nwant %s", rowsString(got.Rows), rowsString(want.Rows))
	}
}

func rowsString(rows []TuneRow) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "\n  %v: %s", r.Threshold, rowString(r))
	}
	return b.String()
}

func TestRunTuneRedisBackend(t *testing.T) {
	srv := redistest.StartSearch(t)
	o := tuneOptions{Data: filepath.Join("testdata", "clinc.json"), Format: formatCLINC, WarmSplit: "train", QuerySplit: "test",
		TextCol: "text", LabelCol: "category", Min: 0.8, Max: 1, Step: 0.1, TargetPrecision: 0.99}
	want, err := runTune(context.Background(), o, clincEmbedder)
	if err != nil {
		t.Fatal(err)
	}
	// Data of someone else in the same database must survive the run.
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", srv.Port)})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.Set(ctx, "other:key", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	o.Backend, o.RedisURL = backendRedis, srv.URL()
	got, err := runTune(ctx, o, clincEmbedder)
	if err != nil {
		t.Fatal(err)
	}
	if got.Backend != backendRedis || !reflect.DeepEqual(got.Rows, want.Rows) {
		t.Errorf("redis (%s) rows differ from exact:\n got %s\nwant %s", got.Backend, rowsString(got.Rows), rowsString(want.Rows))
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(keys, []string{"other:key"}) {
		t.Errorf("keys after the run: %q, want only other:key", keys)
	}
	if names, err := rdb.FT_List(ctx).Result(); err != nil || len(names) != 0 {
		t.Errorf("indexes after the run: %q (%v), want none", names, err)
	}
}

func TestRunTuneRedisBackendWithoutSearchModule(t *testing.T) {
	srv := redistest.Start(t)
	o := tuneOptions{Data: filepath.Join("testdata", "clinc.json"), Format: formatCLINC, WarmSplit: "train", QuerySplit: "test",
		TextCol: "text", LabelCol: "category", Min: 0.8, Max: 1, Step: 0.1, TargetPrecision: 0.99,
		Backend: backendRedis, RedisURL: srv.URL()}
	_, err := runTune(context.Background(), o, clincEmbedder)
	if !errors.Is(err, index.ErrIndexNotReady) || !strings.Contains(err.Error(), "RediSearch module") {
		t.Errorf("got %v, want ErrIndexNotReady asking for the RediSearch module", err)
	}
}

func TestRunTuneGuards(t *testing.T) {
	dir := t.TempDir()
	warm := writeFile(t, dir, "warm.csv", "text,category\n"+
		"how do I cancel my card,A\nsend 100 dollars,B\nwhat is my balance,C\n")
	queries := writeFile(t, dir, "queries.csv", "text,category\n"+
		"how do I not cancel my card,D\n"+ // w1 at 0.96, wrong; negation
		"send 200 dollars,B\n"+ // w2 at 0.96, right; number
		"how can I cancel my card,A\n"+ // w1 at 0.8, right
		"tell me my balance,C\n"+ // w3 at 0.8, right
		"my balance is not zero,E\n") // w3 at 0.64, wrong; negation
	emb := mapEmbedder{
		"how do I cancel my card": {1, 0, 0}, "send 100 dollars": {0, 1, 0}, "what is my balance": {0, 0, 1},
		"how do I not cancel my card": {0.96, 0.28, 0}, "send 200 dollars": {0.28, 0.96, 0},
		"how can I cancel my card": {0.8, 0, 0.6}, "tell me my balance": {0, 0.6, 0.8},
		"my balance is not zero": {0.6, 0.48, 0.64},
	}
	o := tuneOptions{Warm: warm, Queries: queries, Format: "intents", TextCol: "text", LabelCol: "category",
		Min: 0.5, Max: 1, Step: 0.1, TargetPrecision: 0.99}

	plain, err := runTune(context.Background(), o, emb)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Guards != nil {
		t.Errorf("guards effect %+v without --guards", plain.Guards)
	}
	// Without guards 0.8 has 4 hits, 3 right (q2, q3, q4): precision 0.75;
	// D and E are not warm labels, so 3 queries are answerable.
	assertRow(t, plain.Rows[3], TuneRow{Threshold: 0.8, Hits: 4, CorrectHits: 3, HitRate: 0.8, Precision: p(0.75),
		Recall: p(1), F1: p(6.0 / 7), FalseHitRate: 0.2, InScopeMissRate: p(0.2)})
	if plain.Recommendation.Found {
		t.Errorf("recommendation without guards %+v, want none", plain.Recommendation)
	}

	o.Guards = true
	rep, err := runTune(context.Background(), o, emb)
	if err != nil {
		t.Fatal(err)
	}
	// With guards q1, q2 and q5 are misses everywhere: 0.8 keeps q3 and q4.
	assertRow(t, rep.Rows[3], TuneRow{Threshold: 0.8, Hits: 2, CorrectHits: 2, HitRate: 0.4, Precision: p(1),
		Recall: p(2.0 / 3), F1: p(4.0 / 5), FalseHitRate: 0, InScopeMissRate: p(0.6)})
	assertRow(t, rep.Rows[1], TuneRow{Threshold: 0.6, Hits: 2, CorrectHits: 2, HitRate: 0.4, Precision: p(1),
		Recall: p(2.0 / 3), F1: p(4.0 / 5), FalseHitRate: 0, InScopeMissRate: p(0.6)})
	if r := rep.Recommendation; !r.Found || r.Row.Threshold != 0.8 {
		t.Fatalf("recommendation %+v, want 0.80", r)
	}
	want := GuardsEffect{Config: "negation,literals,opposites,roles,substitution", Flagged: 3, Threshold: 0.8, HitsWithout: 4, HitsWith: 2,
		RemovedWrong: 1, RemovedRight: 1, Reasons: map[string]int{"negation": 1, "number": 1}}
	if g := rep.Guards; g == nil || !reflect.DeepEqual(*g, want) {
		t.Errorf("guards effect %+v, want %+v", g, want)
	}

	var table bytes.Buffer
	if err := writeTuneTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	wantLine := "guards on (negation,literals,opposites,roles,substitution): 3 queries flagged, counted as misses; at threshold 0.80 " +
		"they removed 2 hits (4 -> 2): 1 wrong hits removed, 1 right hits lost, negation 1, number 1\n"
	if !strings.Contains(table.String(), wantLine) {
		t.Errorf("table does not contain %q:\n%s", wantLine, table.String())
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"guards":{"config":"negation,literals,opposites,roles,substitution","flagged":3,"threshold":0.8,`+
		`"hits_without":4,"hits_with":2,"removed_wrong":1,"removed_right":1,"reasons":{"negation":1,"number":1}}`) {
		t.Errorf("tune.json guards: %s", js)
	}

	// --guard-kinds negation: the number pair (q2) is no longer flagged.
	o.GuardKinds = "negation"
	neg, err := runTune(context.Background(), o, emb)
	if err != nil {
		t.Fatal(err)
	}
	if g := neg.Guards; g == nil || g.Config != "negation" || g.Flagged != 2 || g.Reasons["number"] != 0 || g.Reasons["negation"] != 1 {
		t.Errorf("negation only: %+v", g)
	}
	o.GuardKinds = "negation,sarcasm"
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--guard-kinds") {
		t.Errorf("bad --guard-kinds: %v", err)
	}
}
