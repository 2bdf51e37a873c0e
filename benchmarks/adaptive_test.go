package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/semantic"
)

// adaptiveFixture is 40 requests of 4 intents and an out-of-scope class
// (NO_NODES_DETECTED), with near-duplicates and 6 exact duplicates after
// the exact tier's normalisation (one of them differs only in case, one is
// out of scope).
const (
	adaptiveFixture           = "testdata/adaptive_intents.csv"
	adaptiveFixtureRequests   = 40
	adaptiveFixtureDuplicates = 6
	adaptiveFixtureOOS        = 6
)

func TestAdaptiveUsageErrors(t *testing.T) {
	data := []string{"adaptive", "--data", adaptiveFixture, "--out", "unused"}
	with := func(extra ...string) []string { return append(append([]string{}, data...), extra...) }
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no --data", []string{"adaptive", "--out", "d"}, "--data FILE is required"},
		{"no --out", []string{"adaptive", "--data", "d"}, "--out DIR is required"},
		{"unknown format", with("--format", "pairs"), `--format "pairs" is not supported`},
		{"rate of 0", with("--max-error-rate", "0.01,0"), `--max-error-rate: "0" is not a rate in (0, 1)`},
		{"rate not a number", with("--max-error-rate", "1%"), `--max-error-rate: "1%"`},
		{"rate given twice", with("--max-error-rate", "0.01,0.01"), "--max-error-rate: 0.01 is given twice"},
		{"no rate", with("--max-error-rate", ","), "--max-error-rate: want at least one rate"},
		{"no shuffle", with("--shuffles", "0"), "--shuffles must be >= 1"},
		{"checkpoint 0", with("--checkpoint", "0"), "--checkpoint must be >= 1"},
		{"min observations 0", with("--adaptive-rule", "entry", "--min-observations", "0"), "--min-observations must be >= 1"},
		{"floor 0", with("--floor", "0"), "--floor must be a cosine similarity in (0, 1]"},
		{"unknown rule", with("--adaptive-rule", "global"), `--adaptive-rule must be budget or entry, got "global"`},
		{"audit rate 0", with("--audit-rate", "0"), "--audit-rate must be a probability in (0, 1)"},
		{"min observations under budget", with("--min-observations", "2"), "--min-observations is a setting of --adaptive-rule entry"},
		{"audit rate under entry", with("--adaptive-rule", "entry", "--audit-rate", "0.1"), "--audit-rate is a setting of --adaptive-rule budget"},
		{"floor above 1", with("--floor", "1.5"), "--floor must be"},
		{"no worker", with("--workers", "0"), "--workers must be >= 1"},
		{"static min 0", with("--static-min", "0"), "--static-min must be a cosine similarity in (0, 1]"},
		{"static max above 1", with("--static-max", "1.1"), "--static-max must be a cosine similarity in (0, 1]"},
		{"static min above max", with("--static-min", "0.9", "--static-max", "0.8"), "--static-min 0.9 is above --static-max 0.8"},
		{"static step 0", with("--static-step", "0"), "--static-step must be > 0"},
		{"split with intents", with("--split", "val"), "--split does not apply to --format intents"},
		{"text column with clinc", with("--format", "clinc", "--text-col", "q"), "--text-col does not apply to --format clinc"},
		{"bad clinc split", with("--format", "clinc", "--split", "dev"), `--split "dev": want train, val or test`},
		{"openai embedder", with("--embedder", "openai"), `--embedder "openai" is not supported (want local or trained)`},
		{"model with local", with("--embedder-model", "m.bin"), "--embedder-model applies only to --embedder trained"},
		{"trained without model", with("--embedder", "trained"), "--embedder trained needs --embedder-model"},
		{"negative seed", with("--seed", "-1"), "invalid value"},
		{"positional argument", with("extra"), "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(context.Background(), tt.args, &stdout, &stderr); code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantErr, stderr.String())
			}
		})
	}
}

func TestAdaptiveHelpListsEveryFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"adaptive", "-h"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit code %d, want 0", code)
	}
	for _, f := range []string{"usage: semcache bench adaptive", "-data", "-format", "-text-col", "-label-col", "-split",
		"-max-error-rate", "-out", "-embedder", "-embedder-model", "-shuffles", "-seed", "-static-min", "-static-max",
		"-static-step", "-checkpoint", "-min-observations", "-floor", "-unique-labels", "-workers"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("help does not mention %q:\n%s", f, stderr.String())
		}
	}
	var usage bytes.Buffer
	Main(context.Background(), []string{"help"}, &usage, &usage)
	if !strings.Contains(usage.String(), "adaptive") {
		t.Errorf("bench usage does not list adaptive:\n%s", usage.String())
	}
}

func TestAdaptiveEndToEnd(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"adaptive", "--data", adaptiveFixture, "--out", out, "--shuffles", "2", "--checkpoint", "10",
		"--static-step", "0.05", "--workers", "2"}
	if code := Main(context.Background(), args, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	for _, s := range []string{"embedder local:", "40 requests", "beats static", "0.01", "0.05"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("stdout does not contain %q:\n%s", s, stdout.String())
		}
	}

	csvData, err := os.ReadFile(filepath.Join(out, "adaptive.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(csvData)), "\n")
	if want := "policy,delta,threshold,shuffle,requests,wrong,hits,explorations,judge_calls,error_rate,hit_rate"; lines[0] != want {
		t.Errorf("adaptive.csv header %q, want %q", lines[0], want)
	}
	// (3 δ + 11 thresholds) × 2 shuffles × 4 checkpoints (10, 20, 30, 40).
	if got, want := len(lines)-1, (3+11)*2*4; got != want {
		t.Errorf("adaptive.csv has %d rows, want %d", got, want)
	}
	if png, err := os.Stat(filepath.Join(out, "adaptive.png")); err != nil || png.Size() == 0 {
		t.Errorf("adaptive.png: %v", err)
	}

	var rep struct {
		Config     map[string]any   `json:"config"`
		Requests   int              `json:"requests"`
		Summary    []map[string]any `json:"summary"`
		Comparison []map[string]any `json:"comparison"`
	}
	jsData, err := os.ReadFile(filepath.Join(out, "adaptive.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(jsData, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Requests != adaptiveFixtureRequests || len(rep.Summary) != (3+11)*2 || len(rep.Comparison) != 3 {
		t.Fatalf("requests %d, %d summaries, %d comparisons", rep.Requests, len(rep.Summary), len(rep.Comparison))
	}
	for _, k := range []string{"data", "format", "max_error_rates", "shuffles", "seed", "static_min", "static_max",
		"static_step", "checkpoint", "min_observations", "floor", "unique_labels", "embedder"} {
		if _, ok := rep.Config[k]; !ok {
			t.Errorf("config has no %q", k)
		}
	}
	for _, s := range rep.Summary {
		keys := []string{"policy", "shuffle", "requests", "error_rate", "hit_rate", "explorations", "max_error_after_500", "judge_calls"}
		switch s["policy"] {
		case "adaptive":
			keys = append(keys, "delta")
		case "static":
			keys = append(keys, "threshold")
		default:
			t.Errorf("summary policy %v", s["policy"])
		}
		for _, k := range keys {
			if _, ok := s[k]; !ok {
				t.Errorf("summary %v has no %q", s, k)
			}
		}
		if s["max_error_after_500"] != nil {
			t.Errorf("max_error_after_500 = %v on a 40-request stream, want null", s["max_error_after_500"])
		}
	}
	for _, c := range rep.Comparison {
		for _, k := range []string{"delta", "mean_error_rate", "mean_max_error_after_500", "worst_shuffle_max_error_after_500",
			"mean_hit_rate", "within_delta", "within_1_5_delta_every_shuffle", "best_static_threshold", "best_static_hit_rate", "beats_static"} {
			if _, ok := c[k]; !ok {
				t.Errorf("comparison %v has no %q", c, k)
			}
		}
	}
}

func TestAdaptiveCLINCReplaysTheSplitAndItsOOS(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"adaptive", "--format", "clinc", "--data", "testdata/clinc.json", "--out", out, "--shuffles", "1", "--static-min", "0.9", "--static-step", "0.1"}
	if code := Main(context.Background(), args, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	var rep AdaptiveReport
	jsData, _ := os.ReadFile(filepath.Join(out, "adaptive.json"))
	if err := json.Unmarshal(jsData, &rep); err != nil {
		t.Fatal(err)
	}
	// test (2) + oos_test (2), the oos ones answered individually.
	if rep.Requests != 4 || rep.UniqueAnswerRequests != 2 || rep.Source != "testdata/clinc.json: test + oos_test" {
		t.Errorf("requests %d, unique %d, source %q", rep.Requests, rep.UniqueAnswerRequests, rep.Source)
	}
}

// fixtureOptions are the options of a run on adaptiveFixture.
func fixtureOptions() adaptiveOptions {
	return adaptiveOptions{
		Data: adaptiveFixture, Format: formatIntents, TextCol: "text", LabelCol: "category",
		MaxErrorRates: []float64{0.02, 0.05}, Shuffles: 2, Seed: 7,
		StaticMin: 0.6, StaticMax: 1, StaticStep: 0.1, Checkpoint: 5,
		MinObservations: 2, Floor: 0.5, UniqueLabels: []string{"NO_NODES_DETECTED"}, Workers: 1,
		Rule: "budget", Audit: 0.01,
	}
}

func loadFixture(t *testing.T) []Example {
	t.Helper()
	exs, err := LoadLabelled(adaptiveFixture, "text", "category")
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != adaptiveFixtureRequests {
		t.Fatalf("fixture has %d rows, want %d", len(exs), adaptiveFixtureRequests)
	}
	return exs
}

func TestAdaptiveIsDeterministic(t *testing.T) {
	exs := loadFixture(t)
	emb, err := embedding.NewLocal(embedding.LocalConfig{Dim: 384})
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range []string{"budget", "entry"} {
		t.Run(rule, func(t *testing.T) { testAdaptiveIsDeterministic(t, exs, emb, rule) })
	}
}

func testAdaptiveIsDeterministic(t *testing.T, exs []Example, emb semantic.Embedder, rule string) {
	o := fixtureOptions()
	o.Rule = rule
	a, err := runAdaptive(context.Background(), o, exs, emb)
	if err != nil {
		t.Fatal(err)
	}
	o.Workers = 3 // parallelism must not change anything
	b, err := runAdaptive(context.Background(), o, exs, emb)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Summary, b.Summary) {
		t.Errorf("two runs with seed %d differ:\n%+v\n%+v", o.Seed, a.Summary, b.Summary)
	}
	if !reflect.DeepEqual(a.Comparison, b.Comparison) {
		t.Errorf("comparisons differ:\n%+v\n%+v", a.Comparison, b.Comparison)
	}
	var explored int64
	for _, r := range a.Summary {
		if r.Faults != 0 {
			t.Errorf("%s run has %d faults", r.Policy, r.Faults)
		}
		if r.Policy == "adaptive" {
			explored += r.Explorations
			if r.JudgeCalls != r.Explorations {
				t.Errorf("adaptive run: %d judge calls for %d explorations (every exploration is verified before the next request)", r.JudgeCalls, r.Explorations)
			}
		}
	}
	if explored == 0 {
		t.Error("the adaptive runs explored nothing: the fixture does not exercise the policy")
	}
}

// textEmbedder embeds each text, lower-cased, as a pseudo-random unit
// vector of dimension 16 seeded by its FNV hash: distinct texts are far
// from similarity 1, texts differing only in case are identical.
type textEmbedder struct{}

func (textEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, s := range texts {
		h := fnv.New64a()
		h.Write([]byte(strings.ToLower(s)))
		r := mrand.New(mrand.NewPCG(h.Sum64(), 1))
		v := make([]float32, 16)
		var n float64
		for j := range v {
			x := r.NormFloat64()
			v[j], n = float32(x), n+x*x
		}
		for j := range v {
			v[j] /= float32(math.Sqrt(n))
		}
		out[i] = v
	}
	return out, nil
}

func (textEmbedder) Fingerprint() string { return "fake:text:16" }

func TestStaticThresholdOneHitsExactlyTheDuplicates(t *testing.T) {
	o := fixtureOptions()
	o.StaticMin, o.StaticMax, o.Shuffles = 1, 1, 3
	rep, err := runAdaptive(context.Background(), o, loadFixture(t), textEmbedder{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.UniqueAnswerRequests != adaptiveFixtureOOS {
		t.Errorf("%d requests with an answer of their own, want %d", rep.UniqueAnswerRequests, adaptiveFixtureOOS)
	}
	n := 0
	for _, r := range rep.Summary {
		if r.Policy != "static" {
			continue
		}
		n++
		// Every duplicate, including the out-of-scope one and the one in
		// another case, is an exact hit with its own (right) answer.
		if r.Hits != adaptiveFixtureDuplicates || r.ExactHits != adaptiveFixtureDuplicates || r.Wrong != 0 || r.Requests != adaptiveFixtureRequests {
			t.Errorf("shuffle %d: %d hits (%d exact), %d wrong of %d, want %d exact hits, 0 wrong of %d",
				r.Shuffle, r.Hits, r.ExactHits, r.Wrong, r.Requests, adaptiveFixtureDuplicates, adaptiveFixtureRequests)
		}
	}
	if n != 3 {
		t.Errorf("%d static runs, want 3", n)
	}
}

func TestReplayScoresByHand(t *testing.T) {
	// Static threshold 0.01. A1 is stored first. B1 (cos 0.6 to A1) gets
	// A1's answer: wrong. A2 (cos 0.8 to A1; B1 was a hit and stored
	// nothing) gets it too: right. B2 (cos 0 to A1, the only stored entry)
	// is below the threshold: a miss.
	exs := []Example{{Text: "a1", Label: "A"}, {Text: "b1", Label: "B"}, {Text: "a2", Label: "A"}, {Text: "b2", Label: "B"}}
	emb := mapEmbedder{"a1": {1, 0, 0}, "b1": {0.6, 0.8, 0}, "a2": {0.8, 0.6, 0}, "b2": {0, 1, 0}}
	st, err := newReplayStream(context.Background(), exs, emb, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := fixtureOptions()
	o.Checkpoint = 1
	got, err := st.replay(context.Background(), o, runSpec{Policy: semantic.PolicyStatic, Threshold: 0.01}, []int{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	want := []Checkpoint{
		{Requests: 1, Wrong: 0, Hits: 0, ErrorRate: 0, HitRate: 0},
		{Requests: 2, Wrong: 1, Hits: 1, ErrorRate: 0.5, HitRate: 0.5},
		{Requests: 3, Wrong: 1, Hits: 2, ErrorRate: 1.0 / 3, HitRate: 2.0 / 3},
		{Requests: 4, Wrong: 1, Hits: 2, ErrorRate: 0.25, HitRate: 0.5},
	}
	if !reflect.DeepEqual(got.Checkpoints, want) {
		t.Errorf("checkpoints\n%+v\nwant\n%+v", got.Checkpoints, want)
	}
	if got.Checkpoint != want[3] || got.ExactHits != 0 || got.MaxErrorAfter500 != nil {
		t.Errorf("summary %+v", got)
	}

	// The reverse order: B2, A2, B1, A1. A2 (cos 0.6 to B2) gets B2's
	// answer: wrong; B1 (cos 0.8 to B2) right; A1 (cos 0 to B2) a miss.
	got, err = st.replay(context.Background(), o, runSpec{Policy: semantic.PolicyStatic, Threshold: 0.01}, []int{3, 2, 1, 0})
	if err != nil {
		t.Fatal(err)
	}
	if c := got.Checkpoint; c.Hits != 2 || c.Wrong != 1 {
		t.Errorf("reverse order: %d hits, %d wrong, want 2 and 1", c.Hits, c.Wrong)
	}
}

func TestPermutationIsSeeded(t *testing.T) {
	a, b, c := permutation(50, 1, 0), permutation(50, 1, 0), permutation(50, 1, 1)
	if !reflect.DeepEqual(a, b) {
		t.Error("the same seed gave two orders")
	}
	if reflect.DeepEqual(a, c) {
		t.Error("shuffles 0 and 1 gave the same order")
	}
	seen := make(map[int]bool)
	for _, i := range a {
		seen[i] = true
	}
	if len(seen) != 50 {
		t.Errorf("not a permutation: %v", a)
	}
	if runSeed(1, 0) == runSeed(1, 1) || runSeed(1, 0) == 0 {
		t.Error("runSeed: shuffles share a seed, or a seed is 0")
	}
}

func f64(x float64) *float64 { return &x }
func bp(b bool) *bool        { return &b }

func TestCompareRuns(t *testing.T) {
	adaptive := func(d float64, shuffle int, errRate, hitRate float64, max500 *float64) RunSummary {
		return RunSummary{Policy: "adaptive", Delta: f64(d), Shuffle: shuffle, MaxErrorAfter500: max500,
			Checkpoint: Checkpoint{ErrorRate: errRate, HitRate: hitRate, Explorations: 10, JudgeCalls: 10}}
	}
	static := func(th float64, shuffle int, errRate, hitRate float64) RunSummary {
		return RunSummary{Policy: "static", Threshold: f64(th), Shuffle: shuffle, Checkpoint: Checkpoint{ErrorRate: errRate, HitRate: hitRate}}
	}
	runs := []RunSummary{
		adaptive(0.02, 0, 0.01, 0.30, f64(0.02)),
		adaptive(0.02, 1, 0.02, 0.40, f64(0.03)),
		adaptive(0.001, 0, 0, 0.10, f64(0)),
		adaptive(0.001, 1, 0, 0.10, f64(0.001)),
		static(0.8, 0, 0.05, 0.60), static(0.8, 1, 0.05, 0.60),
		// Mean error (0.01+0.02)/2: exactly adaptive δ 0.02's, so it
		// qualifies; mean hit rate 0.31.
		static(0.9, 0, 0.01, 0.30), static(0.9, 1, 0.02, 0.32),
		// Error 0 at hit rate 0.2, and a tie at 0.95 that goes to the
		// stricter threshold.
		static(0.95, 0, 0, 0.20), static(0.95, 1, 0, 0.20),
		static(0.93, 0, 0, 0.20), static(0.93, 1, 0, 0.20),
	}
	sm := staticMeans(runs)
	if len(sm) != 4 || sm[0].Threshold != 0.8 || sm[3].Threshold != 0.95 {
		t.Fatalf("static means %+v", sm)
	}
	got := compareRuns(runs, []float64{0.02, 0.001}, sm)
	want := []DeltaComparison{
		{
			Delta: 0.02, MeanErrorRate: (0.01 + 0.02) / 2, MeanHitRate: (0.30 + 0.40) / 2, MeanExplorations: 10, MeanJudgeCalls: 10,
			MeanMaxErrorAfter500: f64((0.02 + 0.03) / 2), WorstShuffleMaxErrorAfter500: f64(0.03),
			WithinDelta: bp(false), Within1_5DeltaEveryShuffle: bp(true),
			BestStaticThreshold: f64(0.9), BestStaticHitRate: f64((0.30 + 0.32) / 2), BestStaticErrorRate: f64((0.01 + 0.02) / 2),
			BeatsStatic: true,
		},
		{
			Delta: 0.001, MeanErrorRate: 0, MeanHitRate: 0.10, MeanExplorations: 10, MeanJudgeCalls: 10,
			MeanMaxErrorAfter500: f64(0.0005), WorstShuffleMaxErrorAfter500: f64(0.001),
			WithinDelta: bp(true), Within1_5DeltaEveryShuffle: bp(true),
			BestStaticThreshold: f64(0.95), BestStaticHitRate: f64(0.20), BestStaticErrorRate: f64(0),
			BeatsStatic: false,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("compareRuns\n%s\nwant\n%s", jsonString(t, got), jsonString(t, want))
	}

	// No static threshold is as accurate as the adaptive runs, whose
	// streams are too short for max_error_after_500.
	runs = []RunSummary{
		adaptive(0.01, 0, 0.002, 0.1, nil),
		static(0.9, 0, 0.003, 0.5),
	}
	got = compareRuns(runs, []float64{0.01}, staticMeans(runs))
	c := got[0]
	if c.BestStaticThreshold != nil || c.BestStaticHitRate != nil || !c.BeatsStatic {
		t.Errorf("without a qualifying static threshold: %s, want nulls and beats_static", jsonString(t, c))
	}
	if c.MeanMaxErrorAfter500 != nil || c.WorstShuffleMaxErrorAfter500 != nil || c.WithinDelta != nil || c.Within1_5DeltaEveryShuffle != nil {
		t.Errorf("on a short stream: %s, want null max_error_after_500 figures", jsonString(t, c))
	}
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
