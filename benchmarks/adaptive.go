package benchmarks

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// This file is "semcache bench adaptive": it replays an intent-labelled data
// set through a real semantic.Cache (index.Memory store, in-process
// upstream) under PolicyAdaptive at each maximum error rate δ and under
// PolicyStatic at each threshold of a sweep, and reports the cumulative
// error rate and hit rate as the requests go by.
//
// The simulated upstream answers every request of an intent with one
// canonical answer for that intent, so a cached answer is right exactly
// when it was stored for a request of the same intent. The labels listed in
// --unique-labels are out-of-scope classes ("oos", "NO_NODES_DETECTED"):
// their requests are unrelated questions that an LLM would answer one by
// one, so each distinct query (after the cache's exact-key normalisation,
// so that "Hi" and "hi" share an answer as they share an exact-tier entry)
// gets an answer of its own, and serving it any other entry's answer is
// wrong. The labels only score; the cache never sees them: the adaptive
// policy learns from its judge (semantic.AnswerJudge, an exact match of the
// normalised answers), which compares the cached answer with the fresh
// upstream one.

// Defaults of "bench adaptive".
const (
	// burnIn is the number of requests after which max_error_after_500
	// starts to look at the cumulative error rate: before it the rate
	// rests on too few requests to hold a policy to δ.
	burnIn = 500
	// defaultUniqueLabels are the out-of-scope labels of CLINC150 and of
	// HINT3 whose requests get an answer of their own.
	defaultUniqueLabels = "oos,NO_NODES_DETECTED"
	// replayModel is the model of every replayed request.
	replayModel = "bench"
	// rateTolerance absorbs rounding when mean rates are compared.
	rateTolerance = 1e-12
)

// replayEpoch is the frozen clock of a replay: no entry ever expires and
// stored ages do not depend on how long a run takes.
var replayEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// adaptiveOptions are the parsed flags of "bench adaptive", recorded in
// adaptive.json as "config".
type adaptiveOptions struct {
	// Data is the --data file; Format is intents or clinc.
	Data   string `json:"data"`
	Format string `json:"format"`
	// TextCol and LabelCol are the CSV columns (intents only).
	TextCol  string `json:"text_col,omitempty"`
	LabelCol string `json:"label_col,omitempty"`
	// Split is the CLINC150 split replayed with its oos_ split (clinc
	// only).
	Split string `json:"split,omitempty"`
	// MaxErrorRates are the δ of the adaptive runs, each in (0, 1), in the
	// order given.
	MaxErrorRates []float64 `json:"max_error_rates"`
	// Shuffles is the number of request orders, >= 1.
	Shuffles int `json:"shuffles"`
	// Seed fixes the orders (PCG(seed, shuffle)) and the adaptive runs'
	// exploration draws.
	Seed uint64 `json:"seed"`
	// StaticMin, StaticMax and StaticStep define the static thresholds,
	// cosine similarities in (0, 1].
	StaticMin  float64 `json:"static_min"`
	StaticMax  float64 `json:"static_max"`
	StaticStep float64 `json:"static_step"`
	// Checkpoint is the number of requests between two measurements.
	Checkpoint int `json:"checkpoint"`
	// MinObservations and Floor are AdaptiveConfig's.
	MinObservations int     `json:"min_observations"`
	Floor           float64 `json:"floor"`
	// Rule and Audit are AdaptiveConfig's.
	Rule  string  `json:"rule"`
	Audit float64 `json:"audit"`
	// UniqueLabels are the labels whose requests get an answer per
	// distinct query.
	UniqueLabels []string `json:"unique_labels"`
	// Workers is the number of runs replayed at once; it does not change
	// the results.
	Workers int    `json:"workers"`
	Out     string `json:"out"`
	// Embedder and EmbedderModel are --embedder and --embedder-model.
	Embedder      string `json:"embedder"`
	EmbedderModel string `json:"embedder_model,omitempty"`
	// given holds the names of the flags set on the command line.
	given map[string]bool
}

const adaptiveUsage = `usage: semcache bench adaptive --data FILE [--format intents|clinc] --out DIR [flags]

Replays every example of the data set, in --shuffles seeded orders, through an
in-process semantic cache (memory store, simulated upstream, no HTTP): once under
the adaptive policy per --max-error-rate δ and once under a static threshold per
step of --static-min..--static-max. Each run starts from an empty cache.

The simulated upstream gives every request of an intent the same canonical answer;
requests labelled with one of --unique-labels (out-of-scope classes) get an answer
of their own per distinct query (after the exact tier's normalisation), as an LLM
would answer unrelated questions. A request answered by a cache hit whose answer is
not its own intent's answer is wrong; the labels only score, the cache never sees
them. The adaptive policy verifies its explorations with the exact-match answer
judge; every request waits for its verification, so a replay is deterministic.

formats:
  intents  CSV/TSV with a header, one text (--text-col) and one label (--label-col)
           per row; every row is a request
  clinc    CLINC150 JSON (data_full.json): the requests are --split + oos_<split>

Writes DIR/adaptive.csv (every run at every --checkpoint requests), DIR/adaptive.json
(config, per-run summary, per-δ comparison with the static thresholds) and
DIR/adaptive.png, and prints the comparison.

flags:
`

func runAdaptiveCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("semcache bench adaptive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o adaptiveOptions
	var deltas, unique string
	fs.StringVar(&o.Data, "data", "", "data `FILE`: an intents CSV/TSV or a CLINC150 JSON file (required)")
	fs.StringVar(&o.Format, "format", formatIntents, "data format: intents or clinc")
	fs.StringVar(&o.TextCol, "text-col", "text", "header name of the text column (intents)")
	fs.StringVar(&o.LabelCol, "label-col", "category", "header name of the label column (intents)")
	fs.StringVar(&o.Split, "split", "test", "clinc split replayed with its oos_ split: train, val or test (clinc)")
	fs.StringVar(&deltas, "max-error-rate", "0.01,0.02,0.05", "comma-separated maximum error rates δ of the adaptive runs, each in (0, 1)")
	fs.StringVar(&o.Out, "out", "", "`DIR` for adaptive.csv, adaptive.json and adaptive.png, created if missing (required)")
	fs.StringVar(&o.Embedder, "embedder", "local", "embedder: local (built-in lexical) or trained (a model file from semcache embedder train)")
	fs.StringVar(&o.EmbedderModel, "embedder-model", "", "model `FILE` of --embedder trained")
	fs.IntVar(&o.Shuffles, "shuffles", 5, "number of seeded request orders, >= 1; every policy run replays each of them")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the request orders and of the adaptive exploration draws; the same seed gives the same result")
	fs.Float64Var(&o.StaticMin, "static-min", 0.50, "lowest static threshold (cosine similarity), in (0, 1]")
	fs.Float64Var(&o.StaticMax, "static-max", 1.00, "highest static threshold (cosine similarity), in (0, 1]")
	fs.Float64Var(&o.StaticStep, "static-step", 0.01, "static threshold step, > 0")
	fs.IntVar(&o.Checkpoint, "checkpoint", 100, "measure the cumulative rates every this many requests (and after the last), >= 1")
	fs.IntVar(&o.MinObservations, "min-observations", 4, "adaptive, --adaptive-rule entry: verified observations an entry needs before it is served, >= 1")
	fs.StringVar(&o.Rule, "adaptive-rule", "budget", "adaptive: how the error budget is spent: budget (learn from all verdicts, serve the likeliest-right neighbours first) or entry (vCache: per-entry fits)")
	fs.Float64Var(&o.Audit, "audit-rate", 0.01, "adaptive, --adaptive-rule budget: probability of verifying a neighbour that would be served, in (0, 1)")
	fs.Float64Var(&o.Floor, "floor", 0.5, "adaptive: cosine-similarity floor below which a neighbour is neither served nor explored, in (0, 1]")
	fs.StringVar(&unique, "unique-labels", defaultUniqueLabels, "comma-separated out-of-scope labels whose requests get an answer per distinct query; empty for none")
	fs.IntVar(&o.Workers, "workers", runtime.GOMAXPROCS(0), "runs replayed in parallel, >= 1 (does not change the results)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), adaptiveUsage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o.given = make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { o.given[f.Name] = true })
	var err error
	if o.MaxErrorRates, err = parseRates(deltas); err != nil {
		return err
	}
	o.UniqueLabels = splitList(unique)
	if err := o.validate(); err != nil {
		return err
	}
	var eo embedderOptions
	switch o.Embedder {
	case "local":
		eo = embedderOptions{Name: "local", Dim: 384, Model: o.EmbedderModel}
	case "trained":
		eo = embedderOptions{Name: "trained", Dim: 384, Model: o.EmbedderModel}
	default:
		return usageErrorf("--embedder %q is not supported (want local or trained)", o.Embedder)
	}
	emb, err := newEmbedder(eo)
	if err != nil {
		return err
	}
	exs, source, err := loadAdaptiveData(o)
	if err != nil {
		return err
	}
	start := time.Now()
	rep, err := runAdaptive(ctx, o, exs, emb)
	if err != nil {
		return err
	}
	rep.Source = source
	if err := writeAdaptiveFiles(o.Out, rep); err != nil {
		return err
	}
	if err := writeAdaptiveTable(stdout, rep); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "\n%d runs in %s; wrote %s\n", len(rep.Summary), time.Since(start).Round(time.Millisecond),
		strings.Join([]string{filepath.Join(o.Out, "adaptive.csv"), filepath.Join(o.Out, "adaptive.json"), filepath.Join(o.Out, "adaptive.png")}, ", "))
	return err
}

// parseRates parses the comma-separated δ list of --max-error-rate.
func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range splitList(s) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v > 0 && v < 1) {
			return nil, usageErrorf("--max-error-rate: %q is not a rate in (0, 1)", f)
		}
		if slices.Contains(out, v) {
			return nil, usageErrorf("--max-error-rate: %v is given twice", v)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, usageErrorf("--max-error-rate: want at least one rate in (0, 1)")
	}
	return out, nil
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items.
func splitList(s string) []string {
	out := []string{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// validate checks the flags that do not need the data.
func (o adaptiveOptions) validate() error {
	notFor := func(flags ...string) error {
		for _, f := range flags {
			if o.given[f] {
				return usageErrorf("--%s does not apply to --format %s", f, o.Format)
			}
		}
		return nil
	}
	switch o.Format {
	case formatIntents:
		if err := notFor("split"); err != nil {
			return err
		}
		if o.TextCol == "" || o.LabelCol == "" {
			return usageErrorf("--text-col and --label-col must not be empty")
		}
	case formatCLINC:
		if err := notFor("text-col", "label-col"); err != nil {
			return err
		}
		if o.Split != "train" && o.Split != "val" && o.Split != "test" {
			return usageErrorf("--split %q: want train, val or test", o.Split)
		}
	default:
		return usageErrorf("--format %q is not supported (want intents or clinc)", o.Format)
	}
	switch {
	case o.Data == "":
		return usageErrorf("--data FILE is required")
	case o.Out == "":
		return usageErrorf("--out DIR is required")
	case o.Shuffles < 1:
		return usageErrorf("--shuffles must be >= 1, got %d", o.Shuffles)
	case o.Checkpoint < 1:
		return usageErrorf("--checkpoint must be >= 1, got %d", o.Checkpoint)
	case o.MinObservations < 1:
		return usageErrorf("--min-observations must be >= 1, got %d", o.MinObservations)
	case !(o.Floor > 0 && o.Floor <= 1):
		return usageErrorf("--floor must be a cosine similarity in (0, 1], got %v", o.Floor)
	case o.Rule != string(semantic.RuleBudget) && o.Rule != string(semantic.RuleEntry):
		return usageErrorf("--adaptive-rule must be budget or entry, got %q", o.Rule)
	case o.Rule == string(semantic.RuleBudget) && o.given["min-observations"]:
		return usageErrorf("--min-observations is a setting of --adaptive-rule entry")
	case o.Rule == string(semantic.RuleEntry) && o.given["audit-rate"]:
		return usageErrorf("--audit-rate is a setting of --adaptive-rule budget")
	case !(o.Audit > 0 && o.Audit < 1):
		return usageErrorf("--audit-rate must be a probability in (0, 1), got %v", o.Audit)
	case o.Workers < 1:
		return usageErrorf("--workers must be >= 1, got %d", o.Workers)
	case !(o.StaticMin > 0 && o.StaticMin <= 1):
		return usageErrorf("--static-min must be a cosine similarity in (0, 1], got %v", o.StaticMin)
	case !(o.StaticMax > 0 && o.StaticMax <= 1):
		return usageErrorf("--static-max must be a cosine similarity in (0, 1], got %v", o.StaticMax)
	case o.StaticMin > o.StaticMax:
		return usageErrorf("--static-min %v is above --static-max %v", o.StaticMin, o.StaticMax)
	case !(o.StaticStep > 0):
		return usageErrorf("--static-step must be > 0, got %v", o.StaticStep)
	case o.Embedder == "local" && o.EmbedderModel != "":
		return usageErrorf("--embedder-model applies only to --embedder trained")
	}
	if _, err := thresholds(o.StaticMin, o.StaticMax, o.StaticStep); err != nil {
		return usageErrorf("--static-step: %v", err)
	}
	return nil
}

// loadAdaptiveData reads the request stream that o names and says where it
// comes from.
func loadAdaptiveData(o adaptiveOptions) ([]Example, string, error) {
	if o.Format == formatCLINC {
		c, err := LoadCLINC(o.Data)
		if err != nil {
			return nil, "", err
		}
		exs, err := clincExamples(c, o.Split)
		if err != nil {
			return nil, "", err
		}
		return exs, fmt.Sprintf("%s: %s + oos_%[2]s", o.Data, o.Split), nil
	}
	exs, err := LoadLabelled(o.Data, o.TextCol, o.LabelCol)
	if err != nil {
		return nil, "", err
	}
	return exs, o.Data, nil
}

// Checkpoint is the cumulative state of one run after Requests requests.
type Checkpoint struct {
	Requests int `json:"requests"`
	// Wrong counts hits (exact or semantic) whose answer is not the
	// request's own; Hits counts all hits.
	Wrong int `json:"wrong"`
	Hits  int `json:"hits"`
	// Explorations and JudgeCalls are the cache's counters (adaptive
	// only; 0 under static).
	Explorations int64 `json:"explorations"`
	JudgeCalls   int64 `json:"judge_calls"`
	// ErrorRate is Wrong / Requests and HitRate is Hits / Requests.
	ErrorRate float64 `json:"error_rate"`
	HitRate   float64 `json:"hit_rate"`
}

// RunSummary is the final state of one run, one entry of adaptive.json's
// "summary".
type RunSummary struct {
	// Policy is "adaptive" or "static"; Delta is set for adaptive runs and
	// Threshold for static ones.
	Policy    string   `json:"policy"`
	Delta     *float64 `json:"delta,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
	// Shuffle is the request order, 0 .. --shuffles-1.
	Shuffle int `json:"shuffle"`
	Checkpoint
	// ExactHits counts the hits served by the exact tier.
	ExactHits int `json:"exact_hits"`
	// MaxErrorAfter500 is the highest cumulative error rate over the
	// checkpoints at or after 500 requests; null when the stream is
	// shorter.
	MaxErrorAfter500 *float64 `json:"max_error_after_500"`
	// Faults counts the cache's lookup, store and judge errors and
	// dropped verifications; it should be 0.
	Faults int64 `json:"faults"`
	// Checkpoints are the run's measurements, in adaptive.csv.
	Checkpoints []Checkpoint `json:"-"`
}

// DeltaComparison compares the adaptive runs of one δ, averaged over the
// shuffles, with the static thresholds: one entry of adaptive.json's
// "comparison". Fields computed from MaxErrorAfter500 are null when the
// stream is shorter than 500 requests.
type DeltaComparison struct {
	// Delta is δ; the means below are over its runs, one per shuffle.
	Delta         float64 `json:"delta"`
	MeanErrorRate float64 `json:"mean_error_rate"`
	// MeanMaxErrorAfter500 and WorstShuffleMaxErrorAfter500 are the mean
	// and the highest of the runs' MaxErrorAfter500.
	MeanMaxErrorAfter500         *float64 `json:"mean_max_error_after_500"`
	WorstShuffleMaxErrorAfter500 *float64 `json:"worst_shuffle_max_error_after_500"`
	MeanHitRate                  float64  `json:"mean_hit_rate"`
	MeanExplorations             float64  `json:"mean_explorations"`
	MeanJudgeCalls               float64  `json:"mean_judge_calls"`
	// WithinDelta is MeanMaxErrorAfter500 <= δ; Within1_5DeltaEveryShuffle
	// is every run's MaxErrorAfter500 <= 1.5 δ.
	WithinDelta                *bool `json:"within_delta"`
	Within1_5DeltaEveryShuffle *bool `json:"within_1_5_delta_every_shuffle"`
	// BestStaticThreshold is, among the static thresholds whose mean error
	// rate is at most MeanErrorRate, the one with the highest mean hit
	// rate (ties to the higher threshold), with that hit rate and error
	// rate; null when no threshold is that accurate.
	BestStaticThreshold *float64 `json:"best_static_threshold"`
	BestStaticHitRate   *float64 `json:"best_static_hit_rate"`
	BestStaticErrorRate *float64 `json:"best_static_error_rate"`
	// BeatsStatic is MeanHitRate >= BestStaticHitRate; true when no static
	// threshold is as accurate.
	BeatsStatic bool `json:"beats_static"`
}

// StaticMean is one static threshold averaged over the shuffles.
type StaticMean struct {
	Threshold     float64 `json:"threshold"`
	MeanErrorRate float64 `json:"mean_error_rate"`
	MeanHitRate   float64 `json:"mean_hit_rate"`
}

// AdaptiveReport is the result of "bench adaptive", written to
// adaptive.json.
type AdaptiveReport struct {
	Config adaptiveOptions `json:"config"`
	// Embedder is the embedder fingerprint; Source the data replayed.
	Embedder string `json:"embedder"`
	Source   string `json:"source"`
	// Requests is the length of the stream; DistinctTexts the number of
	// distinct texts in it; UniqueAnswerRequests the requests with one of
	// the --unique-labels.
	Requests             int `json:"requests"`
	DistinctTexts        int `json:"distinct_texts"`
	UniqueAnswerRequests int `json:"unique_answer_requests"`
	// Summary has one entry per run: the adaptive runs (δ in the order
	// given, then shuffle), then the static ones (threshold, then
	// shuffle).
	Summary []RunSummary `json:"summary"`
	// Comparison has one entry per δ; Static one per threshold.
	Comparison []DeltaComparison `json:"comparison"`
	Static     []StaticMean      `json:"static"`
}

// replayStream is the prepared request stream shared by every run: built
// once, read-only afterwards.
type replayStream struct {
	ids     []semantic.Identity // per example
	bodies  [][]byte            // the upstream's chat.completion per example
	answers []string            // the message content of bodies[i]
	emb     *vectorTable
}

// vectorTable is a semantic.Embedder that serves vectors computed up front,
// so that the many runs over the same texts embed each text once. A text it
// has no vector for goes to the wrapped embedder. It is safe for concurrent
// use.
type vectorTable struct {
	inner       embedder
	dim         int
	fingerprint string
	vecs        map[string][]float32 // read-only after construction
}

var _ semantic.Embedder = (*vectorTable)(nil)

// Embed returns copies of the precomputed vectors of texts.
func (t *vectorTable) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, s := range texts {
		v, ok := t.vecs[s]
		if !ok {
			vs, err := embedAll(ctx, t.inner, []Example{{Text: s}})
			if err != nil {
				return nil, err
			}
			if len(vs[0]) != t.dim {
				return nil, fmt.Errorf("vector of dimension %d, want %d", len(vs[0]), t.dim)
			}
			v = vs[0]
		}
		out[i] = slices.Clone(v)
	}
	return out, nil
}

// Dim is the length of the precomputed vectors.
func (t *vectorTable) Dim() int { return t.dim }

// Fingerprint is the wrapped embedder's.
func (t *vectorTable) Fingerprint() string { return t.fingerprint }

// answerBody returns the simulated upstream's chat.completion for prompt
// with the given answer: finish_reason "stop" and a usage object counting
// words as tokens.
func answerBody(prompt, answer string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"id":      "chatcmpl-bench",
		"object":  "chat.completion",
		"created": 0,
		"model":   replayModel,
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": answer},
			"finish_reason": "stop",
		}},
		"usage": map[string]int{
			"prompt_tokens":     len(strings.Fields(prompt)),
			"completion_tokens": len(strings.Fields(answer)),
			"total_tokens":      len(strings.Fields(prompt)) + len(strings.Fields(answer)),
		},
	})
}

// canonicalAnswer is the upstream's answer to every request of an intent.
func canonicalAnswer(label string) string { return "Canonical answer for intent " + label + "." }

// uniqueAnswer is the upstream's answer to an out-of-scope request: one per
// normalised query.
func uniqueAnswer(normalized string) string { return "Individual answer to: " + normalized }

// newReplayStream identifies every example as a chat request, prepares the
// upstream's answer to it and embeds every distinct text once.
func newReplayStream(ctx context.Context, exs []Example, emb embedder, unique []string) (*replayStream, error) {
	st := &replayStream{
		ids:     make([]semantic.Identity, len(exs)),
		bodies:  make([][]byte, len(exs)),
		answers: make([]string, len(exs)),
	}
	var distinct []Example
	seen := make(map[string]bool, len(exs))
	for i, e := range exs {
		req, err := json.Marshal(map[string]any{"model": replayModel, "messages": []map[string]string{{"role": "user", "content": e.Text}}})
		if err != nil {
			return nil, err
		}
		id, _, err := semantic.Identify(req, "", "", semantic.Normalization{})
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", e.Line, err)
		}
		st.ids[i] = id
		st.answers[i] = canonicalAnswer(e.Label)
		if slices.Contains(unique, e.Label) {
			st.answers[i] = uniqueAnswer(id.Normalized)
		}
		if st.bodies[i], err = answerBody(e.Text, st.answers[i]); err != nil {
			return nil, err
		}
		if !seen[e.Text] {
			seen[e.Text] = true
			distinct = append(distinct, e)
		}
	}
	vs, err := embedAll(ctx, emb, distinct)
	if err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	st.emb = &vectorTable{inner: emb, dim: len(vs[0]), fingerprint: emb.Fingerprint(), vecs: make(map[string][]float32, len(distinct))}
	for i, e := range distinct {
		st.emb.vecs[e.Text] = vs[i]
	}
	return st, nil
}

// runSpec is one run: a policy and its parameter on one request order.
type runSpec struct {
	Policy semantic.Policy
	// Delta is δ (adaptive); Threshold the cosine threshold (static).
	Delta, Threshold float64
	Shuffle          int
}

// runAdaptive replays exs under every run that o asks for, on o.Workers
// goroutines, and compares the policies.
func runAdaptive(ctx context.Context, o adaptiveOptions, exs []Example, emb embedder) (*AdaptiveReport, error) {
	if len(exs) == 0 {
		return nil, errors.New("no requests to replay")
	}
	ths, err := thresholds(o.StaticMin, o.StaticMax, o.StaticStep)
	if err != nil {
		return nil, usageErrorf("--static-step: %v", err)
	}
	st, err := newReplayStream(ctx, exs, emb, o.UniqueLabels)
	if err != nil {
		return nil, err
	}
	orders := make([][]int, o.Shuffles)
	for s := range orders {
		orders[s] = permutation(len(exs), o.Seed, uint64(s))
	}
	var specs []runSpec
	for _, d := range o.MaxErrorRates {
		for s := range o.Shuffles {
			specs = append(specs, runSpec{Policy: semantic.PolicyAdaptive, Delta: d, Shuffle: s})
		}
	}
	for _, t := range ths {
		for s := range o.Shuffles {
			specs = append(specs, runSpec{Policy: semantic.PolicyStatic, Threshold: t, Shuffle: s})
		}
	}
	summaries := make([]RunSummary, len(specs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, o.Workers))
	for i, sp := range specs {
		g.Go(func() error {
			r, err := st.replay(gctx, o, sp, orders[sp.Shuffle])
			if err != nil {
				return fmt.Errorf("%s run (%s, shuffle %d): %w", sp.Policy, specParam(sp), sp.Shuffle, err)
			}
			summaries[i] = r
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	rep := &AdaptiveReport{
		Config:   o,
		Embedder: emb.Fingerprint(),
		Source:   o.Data,
		Requests: len(exs),
		Summary:  summaries,
	}
	rep.DistinctTexts = len(st.emb.vecs)
	for _, e := range exs {
		if slices.Contains(o.UniqueLabels, e.Label) {
			rep.UniqueAnswerRequests++
		}
	}
	rep.Static = staticMeans(summaries)
	rep.Comparison = compareRuns(summaries, o.MaxErrorRates, rep.Static)
	return rep, nil
}

// specParam names a run's parameter for messages.
func specParam(sp runSpec) string {
	if sp.Policy == semantic.PolicyAdaptive {
		return fmt.Sprintf("δ %v", sp.Delta)
	}
	return "threshold " + formatThreshold(sp.Threshold)
}

// permutation returns a permutation of 0..n-1 by a Fisher-Yates shuffle on
// PCG(seed, stream)'s specified output, as SplitExamples does, so that the
// same seed gives the same order on every platform and Go version.
func permutation(n int, seed, stream uint64) []int {
	pcg := mrand.NewPCG(seed, stream)
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(pcg.Uint64() % uint64(i+1))
		perm[i], perm[j] = perm[j], perm[i]
	}
	return perm
}

// runSeed derives the exploration seed of the adaptive runs of one shuffle
// from --seed (SplitMix64's finaliser); never 0, which would mean a random
// seed.
func runSeed(seed uint64, shuffle int) uint64 {
	z := seed + uint64(shuffle+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return max(z, 1)
}

// replay runs the requests of st in the given order through a fresh cache
// configured by sp, waiting after each request until its verification (if
// any) is settled, and scores the answers.
func (st *replayStream) replay(ctx context.Context, o adaptiveOptions, sp runSpec, order []int) (RunSummary, error) {
	frozen := func() time.Time { return replayEpoch }
	store, err := index.NewMemory(index.MemoryConfig{Dim: st.emb.Dim(), MaxEntries: max(1, len(order)), SweepInterval: -1, Now: frozen})
	if err != nil {
		return RunSummary{}, err
	}
	defer store.Close()
	cfg := semantic.Config{
		Threshold: sp.Threshold,
		Logger:    slog.New(slog.DiscardHandler),
		Now:       frozen,
		Policy:    sp.Policy,
	}
	if sp.Policy == semantic.PolicyAdaptive {
		// Threshold is not used under adaptive (the floor replaces it) but
		// must be valid.
		cfg.Threshold = o.Floor
		cfg.Adaptive = semantic.AdaptiveConfig{
			MaxErrorRate:    sp.Delta,
			MinObservations: o.MinObservations,
			Floor:           o.Floor,
			Seed:            runSeed(o.Seed, sp.Shuffle),
			Judge:           &semantic.AnswerJudge{},
			JudgeWorkers:    1,
			Rule:            semantic.Allocation(o.Rule),
			Audit:           o.Audit,
		}
	}
	cache, err := semantic.New(cfg, st.emb, store)
	if err != nil {
		return RunSummary{}, err
	}
	defer cache.Close()

	sum := RunSummary{Policy: string(sp.Policy), Shuffle: sp.Shuffle}
	if sp.Policy == semantic.PolicyAdaptive {
		sum.Delta = &sp.Delta
	} else {
		sum.Threshold = &sp.Threshold
	}
	var c Checkpoint
	stats := cache.Stats()
	for n, ei := range order {
		if err := ctx.Err(); err != nil {
			return RunSummary{}, err
		}
		body := st.bodies[ei]
		r, err := cache.Do(ctx, st.ids[ei], func(context.Context) (semantic.Upstream, error) {
			return semantic.Upstream{Status: 200, ContentType: "application/json", Body: body}, nil
		})
		if err != nil {
			return RunSummary{}, err
		}
		cache.Drain()
		if r.Outcome == semantic.Hit {
			c.Hits++
			if r.Tier == semantic.TierExact {
				sum.ExactHits++
			}
			if text, err := semantic.AnswerText(r.Body); err != nil || text != st.answers[ei] {
				c.Wrong++
			}
		}
		if done := n + 1; done%o.Checkpoint == 0 || done == len(order) {
			c.Requests = done
			c.Explorations, c.JudgeCalls = stats.Explorations.Load(), stats.JudgeCalls.Load()
			c.ErrorRate = float64(c.Wrong) / float64(done)
			c.HitRate = float64(c.Hits) / float64(done)
			sum.Checkpoints = append(sum.Checkpoints, c)
			if done >= burnIn && (sum.MaxErrorAfter500 == nil || c.ErrorRate > *sum.MaxErrorAfter500) {
				e := c.ErrorRate
				sum.MaxErrorAfter500 = &e
			}
		}
	}
	sum.Checkpoint = c
	sum.Faults = stats.LookupErrors.Load() + stats.StoreErrors.Load() + stats.JudgeErrors.Load() + stats.JudgeDropped.Load()
	return sum, nil
}

// staticMeans averages the static runs of each threshold over the
// shuffles, in increasing threshold order.
func staticMeans(runs []RunSummary) []StaticMean {
	type acc struct {
		err, hit float64
		n        int
	}
	by := map[float64]*acc{}
	var ths []float64
	for _, r := range runs {
		if r.Threshold == nil {
			continue
		}
		a := by[*r.Threshold]
		if a == nil {
			a = &acc{}
			by[*r.Threshold] = a
			ths = append(ths, *r.Threshold)
		}
		a.err += r.ErrorRate
		a.hit += r.HitRate
		a.n++
	}
	slices.Sort(ths)
	out := make([]StaticMean, len(ths))
	for i, t := range ths {
		a := by[t]
		out[i] = StaticMean{Threshold: t, MeanErrorRate: a.err / float64(a.n), MeanHitRate: a.hit / float64(a.n)}
	}
	return out
}

// compareRuns builds the comparison of each δ's adaptive runs with the
// static thresholds (see DeltaComparison):
//
//   - the means are over the δ's runs (one per shuffle);
//   - within_delta: mean_max_error_after_500 <= δ; within_1_5_delta_every_shuffle:
//     every shuffle's max_error_after_500 <= 1.5 δ (null when undefined);
//   - best_static_*: among the thresholds whose mean error rate is at most
//     the adaptive mean error rate, the one with the highest mean hit rate
//     (ties to the higher, stricter threshold); null when none is;
//   - beats_static: mean_hit_rate >= best_static_hit_rate, and true when no
//     static threshold gets its error rate down to the adaptive one.
//
// Rates are compared with a tolerance of 1e-12.
func compareRuns(runs []RunSummary, deltas []float64, static []StaticMean) []DeltaComparison {
	out := make([]DeltaComparison, 0, len(deltas))
	for _, d := range deltas {
		c := DeltaComparison{Delta: d}
		var n int
		var maxes []float64
		undefined := false
		for _, r := range runs {
			if r.Delta == nil || *r.Delta != d {
				continue
			}
			n++
			c.MeanErrorRate += r.ErrorRate
			c.MeanHitRate += r.HitRate
			c.MeanExplorations += float64(r.Explorations)
			c.MeanJudgeCalls += float64(r.JudgeCalls)
			if r.MaxErrorAfter500 == nil {
				undefined = true
			} else {
				maxes = append(maxes, *r.MaxErrorAfter500)
			}
		}
		if n == 0 {
			continue
		}
		nf := float64(n)
		c.MeanErrorRate /= nf
		c.MeanHitRate /= nf
		c.MeanExplorations /= nf
		c.MeanJudgeCalls /= nf
		if !undefined {
			var total float64
			for _, m := range maxes {
				total += m
			}
			mean, worst := total/nf, slices.Max(maxes)
			within := mean <= d+rateTolerance
			every := worst <= 1.5*d+rateTolerance
			c.MeanMaxErrorAfter500, c.WorstShuffleMaxErrorAfter500 = &mean, &worst
			c.WithinDelta, c.Within1_5DeltaEveryShuffle = &within, &every
		}
		var best *StaticMean
		for i := range static {
			s := &static[i]
			if s.MeanErrorRate > c.MeanErrorRate+rateTolerance {
				continue
			}
			if best == nil || s.MeanHitRate > best.MeanHitRate ||
				(s.MeanHitRate == best.MeanHitRate && s.Threshold > best.Threshold) {
				best = s
			}
		}
		c.BeatsStatic = true
		if best != nil {
			t, h, e := best.Threshold, best.MeanHitRate, best.MeanErrorRate
			c.BestStaticThreshold, c.BestStaticHitRate, c.BestStaticErrorRate = &t, &h, &e
			c.BeatsStatic = c.MeanHitRate+rateTolerance >= h
		}
		out = append(out, c)
	}
	return out
}

// writeAdaptiveTable prints the comparison.
func writeAdaptiveTable(w io.Writer, rep *AdaptiveReport) error {
	fmt.Fprintf(w, "embedder %s\ndata %s: %d requests (%d distinct texts, %d with an answer of their own), %d shuffles\n",
		rep.Embedder, rep.Source, rep.Requests, rep.DistinctTexts, rep.UniqueAnswerRequests, rep.Config.Shuffles)
	faults := int64(0)
	for _, r := range rep.Summary {
		faults += r.Faults
	}
	if faults > 0 {
		fmt.Fprintf(w, "warning: the caches reported %d lookup/store/judge faults (see \"faults\" in adaptive.json)\n", faults)
	}
	fmt.Fprintln(w, "error = wrong cached answers / requests; max@500 = highest cumulative error from request 500 on (\"-\": fewer requests)")
	fmt.Fprintln(w, "best static = the static threshold with the highest hit rate whose mean error is <= adaptive's")
	fmt.Fprintln(w, "explorations = mean count per run; beats static = adaptive hit rate >= best static's (a tie passes)")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "δ\terror\tmax@500\tworst max@500\thit_rate\texplorations\t<=δ\t<=1.5δ all\tbest static\tstatic hit_rate\tbeats static\t\n")
	opt := func(x *float64) string {
		if x == nil {
			return "-"
		}
		return strconv.FormatFloat(*x, 'f', 4, 64)
	}
	optBool := func(b *bool) string {
		if b == nil {
			return "-"
		}
		return strconv.FormatBool(*b)
	}
	for _, c := range rep.Comparison {
		best := "none"
		if c.BestStaticThreshold != nil {
			best = formatThreshold(*c.BestStaticThreshold)
		}
		fmt.Fprintf(tw, "%v\t%.4f\t%s\t%s\t%.4f\t%.1f\t%s\t%s\t%s\t%s\t%t\t\n", c.Delta, c.MeanErrorRate,
			opt(c.MeanMaxErrorAfter500), opt(c.WorstShuffleMaxErrorAfter500), c.MeanHitRate, c.MeanExplorations,
			optBool(c.WithinDelta), optBool(c.Within1_5DeltaEveryShuffle), best, opt(c.BestStaticHitRate), c.BeatsStatic)
	}
	return tw.Flush()
}

// writeAdaptiveFiles writes dir/adaptive.csv, dir/adaptive.json and
// dir/adaptive.png, creating dir.
func writeAdaptiveFiles(dir string, rep *AdaptiveReport) error {
	return writeReportFiles(dir, "adaptive", rep,
		func(w io.Writer) error { return writeAdaptiveCSV(w, rep.Summary) },
		func(w io.Writer) error { return writeAdaptivePlot(w, rep) })
}

// writeAdaptiveCSV writes one row per run per checkpoint; delta is empty
// for static runs and threshold for adaptive ones.
func writeAdaptiveCSV(w io.Writer, runs []RunSummary) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"policy", "delta", "threshold", "shuffle", "requests", "wrong", "hits", "explorations", "judge_calls", "error_rate", "hit_rate"})
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 6, 64) }
	for _, r := range runs {
		var delta, th string
		if r.Delta != nil {
			delta = strconv.FormatFloat(*r.Delta, 'f', -1, 64)
		}
		if r.Threshold != nil {
			th = formatThreshold(*r.Threshold)
		}
		for _, c := range r.Checkpoints {
			cw.Write([]string{r.Policy, delta, th, strconv.Itoa(r.Shuffle), strconv.Itoa(c.Requests), strconv.Itoa(c.Wrong),
				strconv.Itoa(c.Hits), strconv.FormatInt(c.Explorations, 10), strconv.FormatInt(c.JudgeCalls, 10), f(c.ErrorRate), f(c.HitRate)})
		}
	}
	cw.Flush()
	return cw.Error()
}

// meanCurve returns, for the runs that keep selects, the cumulative error
// rate at each checkpoint averaged over the runs. All runs of one data set
// have the same checkpoints.
func meanCurve(runs []RunSummary, keep func(RunSummary) bool) (requests []int, errRate []float64) {
	n := 0
	for _, r := range runs {
		if !keep(r) {
			continue
		}
		if requests == nil {
			requests = make([]int, len(r.Checkpoints))
			errRate = make([]float64, len(r.Checkpoints))
			for i, c := range r.Checkpoints {
				requests[i] = c.Requests
			}
		}
		for i, c := range r.Checkpoints {
			if i < len(errRate) {
				errRate[i] += c.ErrorRate
			}
		}
		n++
	}
	for i := range errRate {
		errRate[i] /= float64(n)
	}
	return requests, errRate
}
