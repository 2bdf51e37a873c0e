package benchmarks

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// embedder is what tune needs from an embedding model: the vectors of a
// batch of texts, in input order, and an identity for the report.
type embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	Fingerprint() string
}

// embedBatch is the number of texts sent to the embedder per call.
const embedBatch = 512

// maxThresholds bounds the sweep so a tiny --step cannot exhaust memory.
const maxThresholds = 100_000

// Data formats of "bench tune" (--format).
const (
	// formatIntents is one text and one label per row of a CSV or TSV
	// file; a hit is correct when the two texts share a label.
	formatIntents = "intents"
	// formatPairs is a question-pair CSV (question1, question2,
	// is_duplicate); a hit is correct when a question2 finds its own
	// question1 and the pair is a duplicate.
	formatPairs = "pairs"
	// formatCLINC is the CLINC150 JSON layout; queries of the oos_*
	// splits are out of scope.
	formatCLINC = "clinc"
)

// Nearest-neighbour backends of "bench tune" (--backend).
const (
	// backendExact is brute force over every warm vector: the exact
	// nearest neighbour, ties going to the first warm example.
	backendExact = "exact"
	// backendMemory stores the warm vectors in one scope of an
	// index.Memory and asks its HNSW graph for the nearest one.
	backendMemory = "memory"
	// backendRedis does the same through index.Redis (RediSearch HNSW).
	backendRedis = "redis"
)

// clincOOSLabel is the intent of every entry of CLINC150's oos_* splits.
const clincOOSLabel = "oos"

// notDuplicateLabel is the label of a pairs query whose pair is not a
// duplicate: no stored question answers it, so any hit for it is wrong.
// Stored question1s are labelled pairLabelPrefix + their text, which can
// never equal it.
const (
	notDuplicateLabel = "not_duplicate"
	pairLabelPrefix   = "question1:"
)

// tuneOptions are the parsed flags of "bench tune". The zero values of
// Backend and Seed are valid and mean "exact" and 0.
type tuneOptions struct {
	// Warm and Queries are the intents files of --warm and --queries.
	Warm, Queries string
	// Data is the single file of --data: an intents file divided by
	// SplitRatio, a question-pair CSV or a CLINC150 JSON file.
	Data string
	// Format is intents, pairs or clinc.
	Format            string
	TextCol, LabelCol string
	OOSLabel          string
	// SplitRatio is the share of the --data rows in the warm set, in
	// (0, 1); only for intents.
	SplitRatio float64
	// Seed fixes the --split-ratio shuffle and the memory backend's HNSW
	// graph.
	Seed uint64
	// WarmSplit and QuerySplit are the CLINC150 splits (train, val or
	// test) of the warm set and of the queries; the matching oos_* split
	// is added to each.
	WarmSplit, QuerySplit string
	// Backend is exact, memory or redis; RedisURL is the server of redis.
	Backend, RedisURL string
	Min, Max, Step    float64
	TargetPrecision   float64
	Out               string
	// Guards turns on the meaning-flip guards (--guards): a query whose
	// text and nearest warm text benchGuards flags is a miss at every
	// threshold.
	Guards bool
	// GuardKinds selects the guards of --guards (--guard-kinds): a comma
	// list of negation and numbers; "" means both.
	GuardKinds string
	// given holds the names of the flags set on the command line; nil when
	// the options were not parsed from flags.
	given map[string]bool
}

// TuneRow holds the metrics of one threshold of a tune sweep. Similarities
// are cosine similarities in [-1, 1]; a query is a hit when the similarity
// of its nearest warm example is >= Threshold. Rates are fractions in
// [0, 1]. A nil rate is undefined because its denominator is zero; it is
// written as null in JSON, as an empty cell in CSV and as "-" in the table.
type TuneRow struct {
	// Threshold is the minimum cosine similarity for a hit, in [-1, 1].
	Threshold float64 `json:"threshold"`
	// Hits is the number of queries whose nearest warm example is at or
	// above Threshold.
	Hits int `json:"hits"`
	// CorrectHits is the number of hits whose nearest warm example has the
	// query's label, the query being in scope.
	CorrectHits int `json:"correct_hits"`
	// HitRate is Hits / queries.
	HitRate float64 `json:"hit_rate"`
	// Precision is CorrectHits / Hits; nil when Hits is 0.
	Precision *float64 `json:"precision"`
	// Recall is CorrectHits / answerable queries (in-scope queries whose
	// label appears in the warm set); nil when no query is answerable.
	Recall *float64 `json:"recall"`
	// F1 is the harmonic mean of Precision and Recall, computed as
	// 2·CorrectHits / (Hits + answerable) so that it is 0, not undefined,
	// when there are no hits; nil only when Hits + answerable is 0.
	F1 *float64 `json:"f1"`
	// FalseHitRate is (Hits - CorrectHits) / queries: the share of all
	// queries served someone else's answer.
	FalseHitRate float64 `json:"false_hit_rate"`
	// InScopeMissRate is in-scope queries that are not hits / in-scope
	// queries; nil when every query is out of scope.
	InScopeMissRate *float64 `json:"inscope_miss_rate"`
}

// Recommendation is the outcome of the threshold rule of "bench tune": the
// threshold with the highest hit rate whose precision is at least the
// target (ties go to the higher, stricter threshold).
type Recommendation struct {
	// TargetPrecision is the precision the threshold must reach, in (0, 1].
	TargetPrecision float64 `json:"target_precision"`
	// Found reports whether some threshold with at least one hit reaches
	// TargetPrecision.
	Found bool `json:"found"`
	// Row is the recommended threshold when Found; otherwise the threshold
	// with the highest precision (nil when no threshold has any hit).
	Row *TuneRow `json:"row"`
	// PrecisionCI95 is the Wilson score 95% interval [low, high] on Row's
	// precision p̂ = k/n (k correct hits out of n hits; Wilson 1927, JASA
	// 22:209–212): (p̂ + z²/2n ± z·sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)
	// with z = 1.96. Absent when Row is nil.
	PrecisionCI95 []float64 `json:"precision_ci95,omitempty"`
	// HitRateBootstrap95 and PrecisionBootstrap95 are percentile 95%
	// intervals [2.5th, 97.5th] of Row's hit rate and precision over
	// bootstrapResamples resamples of the query set with replacement
	// (Efron 1979), seeded by --seed: the spread that comes from which
	// queries happened to be in the test set. Absent when Row is nil.
	HitRateBootstrap95   []float64 `json:"hit_rate_bootstrap95,omitempty"`
	PrecisionBootstrap95 []float64 `json:"precision_bootstrap95,omitempty"`
	// Message is the recommendation as one human-readable sentence.
	Message string `json:"message"`
}

// TuneReport is the result of "bench tune", written to tune.json.
type TuneReport struct {
	// Embedder is the embedder fingerprint ("kind:model:dim").
	Embedder string `json:"embedder"`
	// Backend is the nearest-neighbour search: "exact" (brute force),
	// "memory" (index.Memory HNSW, k=1) or "redis" (RediSearch HNSW, k=1).
	Backend string `json:"backend"`
	// Warm and Queries say where the warm set and the queries come from:
	// the paths of --warm and --queries, or the --data file and the part
	// of it used (e.g. "data_full.json: train + oos_train").
	Warm    string `json:"warm"`
	Queries string `json:"queries"`
	// Data is the --data file; empty with --warm and --queries.
	Data string `json:"data,omitempty"`
	// Format is the data format: "intents", "pairs" or "clinc".
	Format string `json:"format"`
	// SplitRatio is the share of the --data rows in the warm set, in
	// (0, 1), for an intents --data run; 0 (absent) otherwise.
	SplitRatio float64 `json:"split_ratio,omitempty"`
	// Seed is --seed, which fixes the --split-ratio shuffle and the memory
	// backend's HNSW graph.
	Seed uint64 `json:"seed"`
	// OOSLabel is the out-of-scope label, empty when there is none ("oos"
	// for clinc; pairs queries are out of scope when not duplicates).
	OOSLabel string `json:"oos_label,omitempty"`
	// TargetPrecision is the --target-precision flag, in (0, 1].
	TargetPrecision float64 `json:"target_precision"`
	// WarmCount and QueryCount are the numbers of examples in the warm set
	// and of queries (for pairs: distinct question1s, and pairs).
	WarmCount  int `json:"warm_count"`
	QueryCount int `json:"query_count"`
	// InScope is the number of queries whose label is not OOSLabel (for
	// pairs: the duplicate pairs).
	InScope int `json:"in_scope"`
	// Answerable is the number of in-scope queries whose label appears in
	// the warm set: the denominator of recall.
	Answerable int `json:"answerable"`
	// Rows has one entry per threshold, in increasing threshold order.
	Rows []TuneRow `json:"rows"`
	// Recommendation applies the threshold rule to Rows.
	Recommendation Recommendation `json:"recommendation"`
	// Guards is the effect of --guards; absent without it.
	Guards *GuardsEffect `json:"guards,omitempty"`
}

// GuardsEffect is what the meaning-flip guards (semantic.Guards with the
// default negations and the number guard) did in a --guards run. Rows and
// the recommendation already count flagged queries as misses; the figures
// here compare the same nearest-neighbour outcomes with and without the
// guards at the recommended threshold.
type GuardsEffect struct {
	// Config names the guards used.
	Config string `json:"config"`
	// Flagged is the number of queries whose (query, nearest warm text)
	// pair the guards flag, at any similarity.
	Flagged int `json:"flagged"`
	// Threshold is the recommendation's threshold (with guards); the
	// fields below are 0 when there is none.
	Threshold float64 `json:"threshold"`
	// HitsWithout and HitsWith are the hits at Threshold without and with
	// the guards; RemovedWrong and RemovedRight split the difference into
	// wrong hits removed (good) and right hits lost (the cost).
	HitsWithout  int `json:"hits_without"`
	HitsWith     int `json:"hits_with"`
	RemovedWrong int `json:"removed_wrong"`
	RemovedRight int `json:"removed_right"`
	// Reasons counts the removed hits at Threshold by guard reason
	// ("negation", "number").
	Reasons map[string]int `json:"reasons,omitempty"`
}

// outcome is what the 1-nearest-neighbour protocol records for one query.
type outcome struct {
	// Sim is the cosine similarity to the nearest warm example, in [-1, 1].
	Sim float64
	// Correct: the query is in scope and its nearest warm example has the
	// same label.
	Correct bool
	// InScope: the query's label is not the out-of-scope label.
	InScope bool
	// Answerable: in scope, and its label appears in the warm set.
	Answerable bool
	// Guarded: the meaning-flip guards refuse the nearest warm example
	// (--guards), so the query is a miss at every threshold; GuardReason
	// says why.
	Guarded     bool
	GuardReason string
	// Unguarded is Sim before applyGuards lowered it to the similarity of
	// the parts that differ under a shared template.
	Unguarded float64
}

const tuneUsage = `usage: semcache bench tune --warm FILE --queries FILE [flags]
       semcache bench tune --data FILE [--split-ratio R] [--seed S] [flags]
       semcache bench tune --format pairs --data FILE [flags]
       semcache bench tune --format clinc --data FILE [--warm-split train] [--query-split test] [flags]

Stores every warm text, looks up each query's single nearest warm text by cosine
similarity and sweeps the hit threshold. A hit is correct when both texts share a
label (intents, clinc), or when a question2 finds its own question1 and the pair is a
duplicate (pairs). Out-of-scope queries (--oos-label; clinc's oos_* splits; pairs that
are not duplicates) are wrong whenever they hit.

formats:
  intents  CSV/TSV with a header, one text (--text-col) and one label (--label-col) per
           row; --warm and --queries, or one --data file split by --split-ratio and --seed
  pairs    CSV with the columns question1, question2, is_duplicate (0 or 1): every
           distinct question1 is stored, every question2 is a query
  clinc    CLINC150 JSON (data_full.json): warm = --warm-split + oos_<warm-split>,
           queries = --query-split + oos_<query-split>

With --guards, a query whose text and nearest warm text the meaning-flip guards flag
(negation on one side only, or different numbers; see docs/guards.md) is a miss at every
threshold, and the report says how many hits that removed at the recommended threshold.

The openai embedder reads its API key from $SEMCACHE_EMBEDDER_API_KEY (none sent if unset).
With --out DIR it writes DIR/tune.csv, DIR/tune.json and DIR/tune.png.

flags:
`

func runTuneCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("semcache bench tune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o tuneOptions
	var eo embedderOptions
	fs.StringVar(&o.Warm, "warm", "", "labelled `FILE` (CSV, or TSV if it ends in .tsv) whose texts are stored in the cache (intents)")
	fs.StringVar(&o.Queries, "queries", "", "labelled `FILE` of queries looked up against the warm set (intents)")
	fs.StringVar(&o.Data, "data", "", "single data `FILE`: intents split by --split-ratio, a pairs CSV or a clinc JSON file")
	fs.StringVar(&o.Format, "format", formatIntents, "data format: intents, pairs or clinc")
	fs.StringVar(&o.TextCol, "text-col", "text", "header name of the text column (intents)")
	fs.StringVar(&o.LabelCol, "label-col", "category", "header name of the label column (intents)")
	fs.Float64Var(&o.SplitRatio, "split-ratio", 0.8, "share of the --data rows stored as the warm set, in (0, 1); the rest are queries (intents)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the --split-ratio shuffle and of the memory backend's HNSW graph; the same seed gives the same result")
	fs.StringVar(&o.WarmSplit, "warm-split", "train", "clinc split stored as the warm set, with its oos_ split: train, val or test")
	fs.StringVar(&o.QuerySplit, "query-split", "test", "clinc split used as queries, with its oos_ split: train, val or test")
	fs.StringVar(&eo.Name, "embedder", "local", "embedder: local (built-in lexical), trained (a model file from semcache embedder train) or openai (an OpenAI-compatible /embeddings API)")
	fs.IntVar(&eo.Dim, "embedder-dim", 384, "vector dimension of the embedder; required for openai (e.g. 1536 for text-embedding-3-small)")
	fs.StringVar(&eo.URL, "embedder-url", "", "API root `URL` of the openai embedder, e.g. https://api.openai.com/v1")
	fs.StringVar(&eo.Model, "embedder-model", "", "openai: the model name, e.g. text-embedding-3-small; trained: the model file")
	fs.StringVar(&o.Backend, "backend", backendExact, "nearest-neighbour search: exact (brute force), memory (in-process HNSW index) or redis (RediSearch HNSW at --redis-url)")
	fs.StringVar(&o.RedisURL, "redis-url", "", "redis://host:port/db `URL` for --backend redis (needs the RediSearch module); the run writes under a fresh key prefix and deletes it at the end")
	fs.Float64Var(&o.Min, "min", 0.50, "lowest cosine-similarity threshold of the sweep, in [-1, 1]")
	fs.Float64Var(&o.Max, "max", 1.00, "highest cosine-similarity threshold of the sweep, in [-1, 1]")
	fs.Float64Var(&o.Step, "step", 0.01, "threshold step, > 0")
	fs.Float64Var(&o.TargetPrecision, "target-precision", 0.99, "precision the recommended threshold must reach, in (0, 1]")
	fs.StringVar(&o.Out, "out", "", "optional `DIR` for tune.csv, tune.json and tune.png (created if missing)")
	fs.BoolVar(&o.Guards, "guards", false, "refuse nearest neighbours that the meaning-flip guards flag (negation, numbers): they count as misses at every threshold")
	fs.StringVar(&o.GuardKinds, "guard-kinds", semantic.DefaultGuardKinds, "with --guards: which guards, a comma list of "+semantic.GuardKindNames+" (default: serve's)")
	fs.StringVar(&o.OOSLabel, "oos-label", "", "optional label of out-of-scope queries (e.g. NO_NODES_DETECTED); any hit for them is wrong (intents)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), tuneUsage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o.given = make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { o.given[f.Name] = true })
	if err := o.validate(); err != nil {
		return err
	}
	if eo.Name == "openai" && !o.given["embedder-dim"] {
		return usageErrorf("--embedder openai needs --embedder-dim, the model's vector length (e.g. 1536 for text-embedding-3-small)")
	}
	eo.APIKey = os.Getenv(embedderAPIKeyEnv)
	emb, err := newEmbedder(eo)
	if err != nil {
		return err
	}
	rep, err := runTune(ctx, o, emb)
	if err != nil {
		return err
	}
	if err := writeTuneTable(stdout, rep); err != nil {
		return err
	}
	if o.Out != "" {
		if err := writeTuneFiles(o.Out, rep); err != nil {
			return err
		}
	}
	return nil
}

// validate checks the flags that do not need the data.
func (o tuneOptions) validate() error {
	// notFor rejects flags given on the command line that the format
	// ignores, so that a mistyped run fails instead of measuring
	// something else.
	notFor := func(flags ...string) error {
		for _, f := range flags {
			if o.given[f] {
				return usageErrorf("--%s does not apply to --format %s", f, o.Format)
			}
		}
		return nil
	}
	if _, err := benchGuardsConfig(o.GuardKinds); err != nil {
		return usageErrorf("%v", err)
	}
	if o.given["guard-kinds"] && !o.Guards {
		return usageErrorf("--guard-kinds needs --guards")
	}
	var err error
	switch o.Format {
	case formatIntents:
		switch {
		case o.Data != "" && (o.Warm != "" || o.Queries != ""):
			return usageErrorf("--data and --warm/--queries are alternatives: give one or the other")
		case o.Data != "" && !(o.SplitRatio > 0 && o.SplitRatio < 1):
			return usageErrorf("--split-ratio must be in (0, 1), got %v", o.SplitRatio)
		case o.Data == "" && o.Warm == "":
			return usageErrorf("--warm is required (or --data with --split-ratio)")
		case o.Data == "" && o.Queries == "":
			return usageErrorf("--queries is required")
		case o.Data == "" && o.given["split-ratio"]:
			return usageErrorf("--split-ratio applies only to --data")
		}
		err = notFor("warm-split", "query-split")
	case formatPairs, formatCLINC:
		switch {
		case o.Warm != "" || o.Queries != "":
			return usageErrorf("--format %s reads one --data FILE, not --warm/--queries", o.Format)
		case o.Data == "":
			return usageErrorf("--format %s needs --data FILE", o.Format)
		}
		if o.Format == formatPairs {
			err = notFor("text-col", "label-col", "oos-label", "split-ratio", "warm-split", "query-split")
			break
		}
		if err = notFor("text-col", "label-col", "oos-label", "split-ratio"); err != nil {
			break
		}
		for _, s := range []string{o.WarmSplit, o.QuerySplit} {
			if s != "train" && s != "val" && s != "test" {
				return usageErrorf("clinc split %q: want train, val or test", s)
			}
		}
		if o.WarmSplit == o.QuerySplit {
			return usageErrorf("--warm-split and --query-split are both %q: the queries would be the warm set", o.WarmSplit)
		}
	default:
		return usageErrorf("--format %q is not supported (want intents, pairs or clinc)", o.Format)
	}
	if err != nil {
		return err
	}
	switch {
	case o.TextCol == "" || o.LabelCol == "":
		return usageErrorf("--text-col and --label-col must not be empty")
	case o.TargetPrecision <= 0 || o.TargetPrecision > 1 || math.IsNaN(o.TargetPrecision):
		return usageErrorf("--target-precision must be in (0, 1], got %v", o.TargetPrecision)
	}
	switch o.Backend {
	case backendExact, backendMemory:
		if o.RedisURL != "" {
			return usageErrorf("--redis-url applies only to --backend redis")
		}
	case backendRedis:
		if o.RedisURL == "" {
			return usageErrorf("--backend redis needs --redis-url (a Redis with the RediSearch module)")
		}
	default:
		return usageErrorf("--backend %q is not supported (want exact, memory or redis)", o.Backend)
	}
	if _, err := thresholds(o.Min, o.Max, o.Step); err != nil {
		return usageErrorf("%v", err)
	}
	return nil
}

// tuneData is the warm set and the queries of one run.
type tuneData struct {
	Warm, Queries []Example
	// WarmSource and QuerySource say where they come from, for the report.
	WarmSource, QuerySource string
	// OOSLabel marks out-of-scope queries; "" when there are none.
	OOSLabel string
}

// loadTuneData reads the warm set and the queries that o names.
func loadTuneData(o tuneOptions) (*tuneData, error) {
	switch o.Format {
	case formatPairs:
		pairs, err := LoadPairs(o.Data)
		if err != nil {
			return nil, err
		}
		warm, queries := pairExamples(pairs)
		return &tuneData{Warm: warm, Queries: queries, OOSLabel: notDuplicateLabel,
			WarmSource: o.Data + ": question1 (distinct texts)", QuerySource: o.Data + ": question2"}, nil
	case formatCLINC:
		c, err := LoadCLINC(o.Data)
		if err != nil {
			return nil, err
		}
		warm, err := clincExamples(c, o.WarmSplit)
		if err != nil {
			return nil, err
		}
		queries, err := clincExamples(c, o.QuerySplit)
		if err != nil {
			return nil, err
		}
		return &tuneData{Warm: warm, Queries: queries, OOSLabel: clincOOSLabel,
			WarmSource:  fmt.Sprintf("%s: %s + oos_%[2]s", o.Data, o.WarmSplit),
			QuerySource: fmt.Sprintf("%s: %s + oos_%[2]s", o.Data, o.QuerySplit)}, nil
	}
	if o.Data != "" {
		all, err := LoadLabelled(o.Data, o.TextCol, o.LabelCol)
		if err != nil {
			return nil, err
		}
		warm, queries, err := SplitExamples(all, o.SplitRatio, o.Seed)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.Data, err)
		}
		return &tuneData{Warm: warm, Queries: queries, OOSLabel: o.OOSLabel,
			WarmSource:  fmt.Sprintf("%s: %d of %d rows (split %v, seed %d)", o.Data, len(warm), len(all), o.SplitRatio, o.Seed),
			QuerySource: fmt.Sprintf("%s: the other %d rows", o.Data, len(queries))}, nil
	}
	warm, err := LoadLabelled(o.Warm, o.TextCol, o.LabelCol)
	if err != nil {
		return nil, err
	}
	queries, err := LoadLabelled(o.Queries, o.TextCol, o.LabelCol)
	if err != nil {
		return nil, err
	}
	return &tuneData{Warm: warm, Queries: queries, OOSLabel: o.OOSLabel, WarmSource: o.Warm, QuerySource: o.Queries}, nil
}

// pairExamples applies the pairs protocol: every distinct question1 text is
// stored once (at the line of its first pair), labelled pairLabelPrefix +
// its text, and every question2 is a query labelled like its question1 when
// the pair is a duplicate, and notDuplicateLabel otherwise. A hit is then
// correct exactly when the nearest stored text is the pair's own question1
// and the pair is a duplicate; and, whatever the pair's label, when the
// question2 is word for word a stored question1 (the same question asked
// again: serving that entry's answer is right, and QQP has 319 such texts
// that would otherwise count as wrong hits at similarity 1).
func pairExamples(pairs []Pair) (warm, queries []Example) {
	stored := make(map[string]bool, len(pairs))
	for _, p := range pairs {
		if !stored[p.Question1] {
			stored[p.Question1] = true
			warm = append(warm, Example{Text: p.Question1, Label: pairLabelPrefix + p.Question1, Line: p.Line})
		}
	}
	queries = make([]Example, 0, len(pairs))
	for _, p := range pairs {
		var label string
		switch {
		case stored[p.Question2]:
			label = pairLabelPrefix + p.Question2
		case p.Duplicate:
			label = pairLabelPrefix + p.Question1
		default:
			label = notDuplicateLabel
		}
		queries = append(queries, Example{Text: p.Question2, Label: label, Line: p.Line})
	}
	return warm, queries
}

// clincExamples returns the CLINC150 split and its oos_ counterpart. Every
// entry of the oos_ split must carry the intent clincOOSLabel, which marks
// it out of scope.
func clincExamples(c *CLINC, split string) ([]Example, error) {
	exs, err := c.Examples(split, "oos_"+split)
	if err != nil {
		return nil, err
	}
	for _, e := range c.Splits["oos_"+split] {
		if e.Label != clincOOSLabel {
			return nil, fmt.Errorf("%s:%d: split %q: intent %q, want %q", c.Path, e.Line, "oos_"+split, e.Label, clincOOSLabel)
		}
	}
	return exs, nil
}

// runTune loads the data, embeds it with emb and computes the sweep.
func runTune(ctx context.Context, o tuneOptions, emb embedder) (*TuneReport, error) {
	ths, err := thresholds(o.Min, o.Max, o.Step)
	if err != nil {
		return nil, err
	}
	data, err := loadTuneData(o)
	if err != nil {
		return nil, err
	}
	rep, _, err := tuneOn(ctx, o, ths, data, emb)
	return rep, err
}

// tuneOn is runTune on loaded data and a threshold sweep; it also returns
// each query's outcome, for further bootstrap intervals.
func tuneOn(ctx context.Context, o tuneOptions, ths []float64, data *tuneData, emb embedder) (*TuneReport, []outcome, error) {
	wv, err := embedAll(ctx, emb, data.Warm)
	if err != nil {
		return nil, nil, fmt.Errorf("embed warm set: %w", err)
	}
	qv, err := embedAll(ctx, emb, data.Queries)
	if err != nil {
		return nil, nil, fmt.Errorf("embed queries: %w", err)
	}
	if len(wv[0]) != len(qv[0]) {
		return nil, nil, fmt.Errorf("warm vectors have dimension %d, query vectors %d", len(wv[0]), len(qv[0]))
	}
	backend := cmp.Or(o.Backend, backendExact)
	nn, err := nearest(ctx, backend, o, emb.Fingerprint(), qv, wv)
	if err != nil {
		return nil, nil, err
	}
	outs := judge(data.Warm, data.Queries, nn, data.OOSLabel)
	var flagged int
	if o.Guards {
		if flagged, err = applyGuards(ctx, emb, outs, data.Warm, data.Queries, nn, o.GuardKinds); err != nil {
			return nil, nil, err
		}
	}
	rows := sweep(outs, ths)
	rep := &TuneReport{
		Embedder:        emb.Fingerprint(),
		Backend:         backend,
		Warm:            data.WarmSource,
		Queries:         data.QuerySource,
		Data:            o.Data,
		Format:          o.Format,
		Seed:            o.Seed,
		OOSLabel:        data.OOSLabel,
		TargetPrecision: o.TargetPrecision,
		WarmCount:       len(data.Warm),
		QueryCount:      len(data.Queries),
		Rows:            rows,
		Recommendation:  recommend(rows, o.TargetPrecision),
	}
	if r := rep.Recommendation.Row; r != nil {
		hr, pr := bootstrapAt(outs, r.Threshold, bootstrapResamples, uint64(o.Seed))
		rep.Recommendation.HitRateBootstrap95 = hr[:]
		rep.Recommendation.PrecisionBootstrap95 = pr[:]
		rep.Recommendation.Message += fmt.Sprintf("; bootstrap 95%% interval over the queries (%d resamples): hit rate %.4f-%.4f, precision %.4f-%.4f",
			bootstrapResamples, hr[0], hr[1], pr[0], pr[1])
	}
	if o.Guards {
		rep.Guards = guardsEffect(outs, rep.Recommendation.Row, o.GuardKinds)
		rep.Guards.Flagged = flagged
	}
	if o.Format == formatIntents && o.Data != "" {
		rep.SplitRatio = o.SplitRatio
	}
	if o.Format == formatPairs {
		rep.OOSLabel = "" // an internal label, not one of the file
	}
	for _, q := range outs {
		if q.InScope {
			rep.InScope++
		}
		if q.Answerable {
			rep.Answerable++
		}
	}
	return rep, outs, nil
}

// nearest finds every query vector's nearest warm vector with the named
// backend. Vectors have unit length (or are zero, with similarity 0 to
// everything).
func nearest(ctx context.Context, backend string, o tuneOptions, fingerprint string, queries, warm [][]float32) ([]neighbour, error) {
	switch backend {
	case backendExact:
		nn := nearestNeighbours(ctx, queries, warm)
		return nn, ctx.Err()
	case backendMemory:
		m, err := index.NewMemory(index.MemoryConfig{
			Dim: len(warm[0]), MaxEntries: len(warm), SweepInterval: -1,
			HNSW: index.HNSWConfig{Seed: int64(o.Seed)},
		})
		if err != nil {
			return nil, err
		}
		defer m.Close()
		nn, err := storeNearest(ctx, m, queries, warm, runtime.NumCPU())
		if err != nil {
			return nil, fmt.Errorf("backend memory: %w", err)
		}
		return nn, nil
	case backendRedis:
		return redisNearest(ctx, o.RedisURL, fingerprint, queries, warm)
	default:
		return nil, usageErrorf("--backend %q is not supported (want exact, memory or redis)", backend)
	}
}

// vectorStore is what the memory and redis backends use of an index store.
type vectorStore interface {
	Set(ctx context.Context, key, scope string, value []byte, vec []float32, ttl time.Duration) error
	Search(ctx context.Context, scope string, vec []float32, k int) ([]index.Neighbor, error)
}

var (
	_ vectorStore = (*index.Memory)(nil)
	_ vectorStore = (*index.Redis)(nil)
)

// benchScope is the one scope every warm vector of a run is stored in.
const benchScope = "semcache-bench"

// benchTTL is the lifetime of the stored warm vectors: longer than any
// run, and short enough that the keys of a run killed before it could
// flush them leave Redis on their own.
const benchTTL = time.Hour

// redisWorkers is the number of concurrent KNN queries sent to Redis.
const redisWorkers = 16

// redisNearest stores the warm vectors in Redis under a fresh prefix
// ("semcache-bench:<16 hex digits>:"), queries them and deletes everything
// under the prefix (index.Redis.Flush) before returning, even on error or
// cancellation.
func redisNearest(ctx context.Context, url, fingerprint string, queries, warm [][]float32) (_ []neighbour, err error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	prefix := "semcache-bench:" + hex.EncodeToString(b[:]) + ":"
	r, err := index.NewRedis(ctx, index.RedisConfig{URL: url, Prefix: prefix, Dim: len(warm[0]), Fingerprint: fingerprint})
	if err != nil {
		return nil, fmt.Errorf("backend redis: %w", err)
	}
	defer r.Close()
	if err := r.Ping(ctx); err != nil {
		return nil, fmt.Errorf("backend redis: ping: %w", err)
	}
	defer func() {
		// Clean up even when ctx is cancelled, but not forever.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, ferr := r.Flush(fctx); ferr != nil {
			err = errors.Join(err, fmt.Errorf("backend redis: delete the run's keys under %s: %w", prefix, ferr))
		}
	}()
	if !r.Ready() {
		return nil, fmt.Errorf("backend redis: %w: could not create %s (does the server load the RediSearch module?)", index.ErrIndexNotReady, r.IndexName())
	}
	nn, err := storeNearest(ctx, r, queries, warm, redisWorkers)
	if err != nil {
		return nil, fmt.Errorf("backend redis: %w", err)
	}
	return nn, nil
}

// storeNearest stores every warm vector in s (one scope, key = the warm
// index, in warm order so that an HNSW graph is built the same way every
// time), then asks s for each query's single nearest neighbour (k=1) on
// workers goroutines. Zero vectors are not stored (a store refuses them)
// and a zero query gets warm example 0 at similarity 0, as the exact
// backend gives them; the results then differ only when every stored
// vector has a negative similarity, where exact would pick a zero one.
// Similarities are rounded with clampSim as in the exact backend.
func storeNearest(ctx context.Context, s vectorStore, queries, warm [][]float32, workers int) ([]neighbour, error) {
	stored := 0
	for i, v := range warm {
		if isZero(v) {
			continue
		}
		if err := s.Set(ctx, strconv.Itoa(i), benchScope, nil, v, benchTTL); err != nil {
			return nil, fmt.Errorf("store warm vector %d: %w", i, err)
		}
		stored++
	}
	out := make([]neighbour, len(queries))
	workers = max(1, min(workers, len(queries)))
	g, gctx := errgroup.WithContext(ctx)
	for w := range workers {
		g.Go(func() error {
			for qi := w; qi < len(queries); qi += workers {
				if err := gctx.Err(); err != nil {
					return err
				}
				q := queries[qi]
				if stored == 0 || isZero(q) {
					out[qi] = neighbour{Index: 0, Sim: 0}
					continue
				}
				res, err := s.Search(gctx, benchScope, q, 1)
				if err != nil {
					return fmt.Errorf("search query %d: %w", qi, err)
				}
				if len(res) == 0 {
					return fmt.Errorf("search query %d: no neighbour among %d stored vectors", qi, stored)
				}
				wi, err := strconv.Atoi(res[0].ID)
				if err != nil || wi < 0 || wi >= len(warm) {
					return fmt.Errorf("search query %d: neighbour id %q is not a warm index", qi, res[0].ID)
				}
				out[qi] = neighbour{Index: wi, Sim: clampSim(float64(res[0].Similarity))}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// isZero reports whether every component of v is 0.
func isZero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}

// embedAll embeds the texts of exs in batches of embedBatch and returns
// unit-length copies of the vectors, which must all have the same length.
// A zero vector stays zero (its similarity to everything is 0).
func embedAll(ctx context.Context, emb embedder, exs []Example) ([][]float32, error) {
	texts := make([]string, len(exs))
	for i, e := range exs {
		texts[i] = e.Text
	}
	out := make([][]float32, 0, len(texts))
	for start := 0; start < len(texts); start += embedBatch {
		batch := texts[start:min(start+embedBatch, len(texts))]
		vs, err := emb.Embed(ctx, batch)
		if err != nil {
			return nil, err
		}
		if len(vs) != len(batch) {
			return nil, fmt.Errorf("embedder returned %d vectors for %d texts", len(vs), len(batch))
		}
		for i, v := range vs {
			want := len(v)
			if len(out) > 0 {
				want = len(out[0])
			}
			if len(v) == 0 || len(v) != want {
				return nil, fmt.Errorf("line %d: vector of dimension %d, want %d", exs[start+i].Line, len(v), want)
			}
			out = append(out, normalised(v))
		}
	}
	return out, nil
}

// normalised returns a copy of v scaled to unit L2 norm, or a zero copy
// (similarity 0 to everything) when v cannot be normalised.
func normalised(v []float32) []float32 {
	n, err := index.Normalize(v)
	if err != nil {
		return make([]float32, len(v))
	}
	return n
}

// neighbour is the nearest warm example of a query.
type neighbour struct {
	Index int     // index into the warm set
	Sim   float64 // cosine similarity, in [-1, 1]
}

// nearestNeighbours returns, for every query vector, the warm vector with
// the highest dot product (the cosine similarity, the vectors having unit
// length), by brute force on runtime.NumCPU() goroutines. Ties go to the
// lowest warm index, so the result does not depend on scheduling. It stops
// early, with a partial result, when ctx is cancelled; the caller checks.
func nearestNeighbours(ctx context.Context, queries, warm [][]float32) []neighbour {
	out := make([]neighbour, len(queries))
	workers := max(1, min(runtime.NumCPU(), len(queries)))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for qi := w; qi < len(queries); qi += workers {
				if ctx.Err() != nil {
					return
				}
				q := queries[qi]
				best, bestSim := -1, float32(math.Inf(-1))
				for wi, v := range warm {
					if s := dot(q, v); s > bestSim || best < 0 {
						best, bestSim = wi, s
					}
				}
				out[qi] = neighbour{Index: best, Sim: clampSim(float64(bestSim))}
			}
		})
	}
	wg.Wait()
	return out
}

// dot is the dot product of two vectors of equal length, summed in a fixed
// order (eight interleaved partial sums) so it is deterministic.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	for len(a) >= 8 && len(b) >= 8 {
		s0 += a[0] * b[0]
		s1 += a[1] * b[1]
		s2 += a[2] * b[2]
		s3 += a[3] * b[3]
		s4 += a[4] * b[4]
		s5 += a[5] * b[5]
		s6 += a[6] * b[6]
		s7 += a[7] * b[7]
		a, b = a[8:], b[8:]
	}
	for i := range a {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// simDecimals is the precision to which similarities are rounded.
const simDecimals = 1e6

// clampSim turns a float32 dot product of unit vectors into a cosine
// similarity: rounded to 6 decimals, the accuracy of a 384-term float32
// sum, so that identical texts score exactly 1 and are hits at threshold
// 1.00 whatever the summation order; then clamped to [-1, 1].
func clampSim(s float64) float64 { return max(-1, min(1, math.Round(s*simDecimals)/simDecimals)) }

// judge turns nearest neighbours into outcomes. A query is out of scope
// when oosLabel is non-empty and equals its label; it is correct when it is
// in scope and its nearest warm example has its label. Warm examples with
// the out-of-scope label stay in the warm set (they are stored in a cache
// like any other query) but can never make a hit correct.
func judge(warm, queries []Example, nn []neighbour, oosLabel string) []outcome {
	warmLabels := make(map[string]bool, len(warm))
	for _, w := range warm {
		warmLabels[w.Label] = true
	}
	out := make([]outcome, len(queries))
	for i, q := range queries {
		inScope := oosLabel == "" || q.Label != oosLabel
		out[i] = outcome{
			Sim:        nn[i].Sim,
			InScope:    inScope,
			Answerable: inScope && warmLabels[q.Label],
			Correct:    inScope && warm[nn[i].Index].Label == q.Label,
		}
	}
	return out
}

// benchGuardsConfig returns the guards of --guards for --guard-kinds (see
// semantic.ParseGuardKinds; "" means semantic.DefaultGuardKinds).
func benchGuardsConfig(kinds string) (semantic.GuardsConfig, error) {
	cfg, _, err := semantic.ParseGuardKinds(cmp.Or(kinds, semantic.DefaultGuardKinds))
	if err != nil {
		return cfg, fmt.Errorf("--guard-kinds %q: want a comma list of %s", kinds, semantic.GuardKindNames)
	}
	return cfg, nil
}

// applyGuards decides every query against its nearest warm text as the
// cache does (semantic.Comparator with the guards of --guard-kinds, both
// texts normalised as exact keys are): a refused query is marked Guarded,
// and when the texts share a template the query's Sim becomes the lower
// of its own and that of the parts that differ, since the cache needs
// both at or above the threshold. It returns how many it marked.
func applyGuards(ctx context.Context, emb embedder, outs []outcome, warm, queries []Example, nn []neighbour, kinds string) (int, error) {
	cfg, err := benchGuardsConfig(kinds)
	if err != nil {
		return 0, err
	}
	g, err := semantic.NewGuards(cfg)
	if err != nil {
		return 0, err
	}
	c, err := semantic.NewComparator(g, emb)
	if err != nil {
		return 0, err
	}
	var norm semantic.Normalization
	n := 0
	for i := range outs {
		outs[i].Unguarded = outs[i].Sim
		v, err := c.Compare(ctx, norm.Normalize(queries[i].Text), norm.Normalize(warm[nn[i].Index].Text), outs[i].Sim, -1)
		if err != nil {
			return 0, err
		}
		outs[i].Sim = min(outs[i].Sim, v.Similarity)
		if v.Refused != "" {
			outs[i].Guarded, outs[i].GuardReason = true, v.Refused
			n++
		}
	}
	return n, nil
}

// guardsEffect compares the hits at the recommended row's threshold with
// and without the guards' marks on outs. It leaves Flagged to the caller.
func guardsEffect(outs []outcome, row *TuneRow, kinds string) *GuardsEffect {
	e := &GuardsEffect{Config: cmp.Or(kinds, semantic.DefaultGuardKinds)}
	if row == nil {
		return e
	}
	e.Threshold = row.Threshold
	unguarded := make([]outcome, len(outs))
	for i, q := range outs {
		q.Guarded, q.Sim = false, q.Unguarded
		unguarded[i] = q
	}
	ths := []float64{row.Threshold}
	without, with := sweep(unguarded, ths)[0], sweep(outs, ths)[0]
	e.HitsWithout, e.HitsWith = without.Hits, with.Hits
	e.RemovedRight = without.CorrectHits - with.CorrectHits
	e.RemovedWrong = (without.Hits - without.CorrectHits) - (with.Hits - with.CorrectHits)
	for _, q := range outs {
		if q.Guarded && q.Sim >= row.Threshold {
			if e.Reasons == nil {
				e.Reasons = make(map[string]int)
			}
			e.Reasons[q.GuardReason]++
		}
	}
	return e
}

// thresholds returns the sweep min, min+step, ..., up to max inclusive.
// Each value is computed as min + i·step (not by repeated addition) and
// rounded to 1e-9, so that 0.50 + 20·0.01 is exactly the float64 nearest
// 0.70 and max itself is included despite rounding.
func thresholds(lo, hi, step float64) ([]float64, error) {
	switch {
	case math.IsNaN(lo) || math.IsNaN(hi) || math.IsNaN(step):
		return nil, errors.New("--min, --max and --step must be numbers")
	case lo < -1 || hi > 1:
		return nil, fmt.Errorf("thresholds are cosine similarities: need -1 <= --min <= --max <= 1, got %v..%v", lo, hi)
	case lo > hi:
		return nil, fmt.Errorf("--min %v is above --max %v", lo, hi)
	case step <= 0:
		return nil, fmt.Errorf("--step must be > 0, got %v", step)
	}
	n := math.Floor((hi-lo)/step+1e-9) + 1
	if n > maxThresholds {
		return nil, fmt.Errorf("the sweep has %.0f thresholds, more than %d: increase --step", n, maxThresholds)
	}
	out := make([]float64, int(n))
	for i := range out {
		out[i] = math.Round((lo+float64(i)*step)*1e9) / 1e9
	}
	return out, nil
}

// sweep computes one TuneRow per threshold from the query outcomes.
func sweep(outs []outcome, ths []float64) []TuneRow {
	var inScope, answerable int
	for _, q := range outs {
		if q.InScope {
			inScope++
		}
		if q.Answerable {
			answerable++
		}
	}
	rows := make([]TuneRow, len(ths))
	for i, t := range ths {
		var hits, correct, inScopeHits int
		for _, q := range outs {
			if q.Sim < t || q.Guarded {
				continue
			}
			hits++
			if q.Correct {
				correct++
			}
			if q.InScope {
				inScopeHits++
			}
		}
		rows[i] = metricsRow(t, len(outs), inScope, answerable, hits, correct, inScopeHits)
	}
	return rows
}

// metricsRow computes the rates of a TuneRow from its counts: n queries,
// of which inScope are in scope and answerable have a correct candidate;
// hits at or above threshold t, of which correct are correct and
// inScopeHits are in-scope queries.
func metricsRow(t float64, n, inScope, answerable, hits, correct, inScopeHits int) TuneRow {
	return TuneRow{
		Threshold:       t,
		Hits:            hits,
		CorrectHits:     correct,
		HitRate:         float64(hits) / float64(n),
		Precision:       ratio(correct, hits),
		Recall:          ratio(correct, answerable),
		F1:              ratio(2*correct, hits+answerable),
		FalseHitRate:    float64(hits-correct) / float64(n),
		InScopeMissRate: ratio(inScope-inScopeHits, inScope),
	}
}

// ratio returns num/den, or nil when den is 0.
func ratio(num, den int) *float64 {
	if den == 0 {
		return nil
	}
	r := float64(num) / float64(den)
	return &r
}

// recommend picks, among rows with at least one hit and a precision of at
// least target, the one with the highest hit rate, preferring the higher
// threshold on ties (the same measured behaviour with a stricter setting).
// When no row qualifies it reports the row with the highest precision
// (again preferring the higher threshold) so the message can say how far
// off the target is. Rows need not be sorted.
func recommend(rows []TuneRow, target float64) Recommendation {
	rec := Recommendation{TargetPrecision: target}
	var best, bestPrec *TuneRow
	for i := range rows {
		r := &rows[i]
		if r.Precision == nil {
			continue
		}
		if *r.Precision >= target {
			if best == nil || r.Hits > best.Hits || (r.Hits == best.Hits && r.Threshold > best.Threshold) {
				best = r
			}
		}
		if bestPrec == nil || *r.Precision > *bestPrec.Precision ||
			(*r.Precision == *bestPrec.Precision && r.Threshold > bestPrec.Threshold) {
			bestPrec = r
		}
	}
	switch {
	case best != nil:
		rec.Found = true
		rec.Row = copyRow(best)
	case bestPrec != nil:
		rec.Row = copyRow(bestPrec)
	}
	var lo, hi float64
	if rec.Row != nil {
		lo, hi = wilsonInterval(rec.Row.CorrectHits, rec.Row.Hits, z95)
		rec.PrecisionCI95 = []float64{lo, hi}
	}
	switch {
	case rec.Found:
		r := rec.Row
		rec.Message = fmt.Sprintf("recommended threshold %s (the highest hit rate with precision >= %v): "+
			"hit rate %.4f (%d hits), precision %.4f (%d/%d, 95%% Wilson interval %.4f-%.4f)",
			formatThreshold(r.Threshold), target, r.HitRate, r.Hits, *r.Precision, r.CorrectHits, r.Hits, lo, hi)
		if lo < target {
			rec.Message += fmt.Sprintf("; the interval's lower bound is below %v, so the target is not established with 95%% confidence", target)
		}
	case rec.Row != nil:
		r := rec.Row
		rec.Message = fmt.Sprintf("no threshold reaches precision %v; the highest is %.4f (%d/%d, 95%% Wilson interval %.4f-%.4f) at threshold %s, hit rate %.4f",
			target, *r.Precision, r.CorrectHits, r.Hits, lo, hi, formatThreshold(r.Threshold), r.HitRate)
	default:
		rec.Message = fmt.Sprintf("no threshold reaches precision %v: no threshold has any hit", target)
	}
	return rec
}

func copyRow(r *TuneRow) *TuneRow { c := *r; return &c }

// bootstrapResamples is the number of bootstrap resamples of the query set.
const bootstrapResamples = 1000

// bootstrapAt resamples the queries with replacement n times (a PCG
// generator seeded by seed) and returns the 2.5th and 97.5th percentiles of
// the hit rate and of the precision at threshold t (Efron 1979, the
// percentile bootstrap). A resample without hits has no precision and is
// left out of the precision percentiles.
func bootstrapAt(outs []outcome, t float64, n int, seed uint64) (hitRate, precision [2]float64) {
	if len(outs) == 0 || n <= 0 {
		return hitRate, precision
	}
	rng := mrand.New(mrand.NewPCG(seed, 0x9e3779b97f4a7c15))
	hrs := make([]float64, 0, n)
	prs := make([]float64, 0, n)
	for range n {
		hits, correct := 0, 0
		for range outs {
			q := outs[rng.IntN(len(outs))]
			if q.Sim >= t && !q.Guarded { // as in sweep
				hits++
				if q.Correct {
					correct++
				}
			}
		}
		hrs = append(hrs, float64(hits)/float64(len(outs)))
		if hits > 0 {
			prs = append(prs, float64(correct)/float64(hits))
		}
	}
	return percentiles95(hrs), percentiles95(prs)
}

// percentiles95 returns the 2.5th and 97.5th percentiles (nearest rank) of
// xs, which it sorts; [0, 0] when xs is empty.
func percentiles95(xs []float64) [2]float64 {
	if len(xs) == 0 {
		return [2]float64{}
	}
	slices.Sort(xs)
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(xs)))) - 1
		return xs[min(max(i, 0), len(xs)-1)]
	}
	return [2]float64{at(0.025), at(0.975)}
}

// z95 is the standard normal quantile for a two-sided 95% interval.
const z95 = 1.959963984540054

// wilsonInterval returns the Wilson score interval for a binomial
// proportion with k successes out of n trials (Wilson, E. B. (1927).
// "Probable inference, the law of succession, and statistical inference".
// Journal of the American Statistical Association 22 (158): 209–212):
//
//	p̂ = k/n
//	centre = (p̂ + z²/(2n)) / (1 + z²/n)
//	half   = z / (1 + z²/n) · sqrt(p̂(1-p̂)/n + z²/(4n²))
//	[low, high] = [centre - half, centre + half]
//
// with z = 1.96 for 95%. Unlike the normal approximation it stays inside
// [0, 1] and is not degenerate at p̂ = 1 (k = n = 100 gives [0.963, 1]).
// For n = 0 it returns the uninformative [0, 1].
func wilsonInterval(k, n int, z float64) (low, high float64) {
	if n <= 0 {
		return 0, 1
	}
	p := float64(k) / float64(n)
	nf := float64(n)
	z2 := z * z
	denom := 1 + z2/nf
	centre := (p + z2/(2*nf)) / denom
	half := z / denom * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return max(0, centre-half), min(1, centre+half)
}

// formatThreshold prints a threshold with at least two decimals and as
// many more as it needs (0.7 -> "0.70", 0.705 -> "0.705").
func formatThreshold(t float64) string {
	s := strconv.FormatFloat(t, 'f', -1, 64)
	dot := strings.IndexByte(s, '.')
	switch {
	case dot < 0:
		return s + ".00"
	case len(s)-dot-1 < 2:
		return s + strings.Repeat("0", 2-(len(s)-dot-1))
	}
	return s
}

// optRate formats an optional rate with 4 decimals, or undef when nil.
func optRate(r *float64, undef string) string {
	if r == nil {
		return undef
	}
	return strconv.FormatFloat(*r, 'f', 4, 64)
}

// writeTuneTable writes the human-readable sweep and recommendation.
func writeTuneTable(w io.Writer, rep *TuneReport) error {
	fmt.Fprintf(w, "embedder %s\nbackend %s\n", rep.Embedder, backendDescription(rep.Backend))
	if rep.Format == formatPairs {
		fmt.Fprintf(w, "warm %s (%d stored questions)\nqueries %s (%d pairs, %d duplicates: the recall denominator)\n",
			rep.Warm, rep.WarmCount, rep.Queries, rep.QueryCount, rep.Answerable)
	} else {
		fmt.Fprintf(w, "warm %s (%d examples)\nqueries %s (%d queries, %d in scope, %d with their label in the warm set)\n",
			rep.Warm, rep.WarmCount, rep.Queries, rep.QueryCount, rep.InScope, rep.Answerable)
	}
	if rep.OOSLabel != "" {
		fmt.Fprintf(w, "out-of-scope label %s\n", rep.OOSLabel)
	}
	if g := rep.Guards; g != nil {
		fmt.Fprintf(w, "guards on (%s): %d queries flagged, counted as misses", g.Config, g.Flagged)
		if rep.Recommendation.Row != nil {
			fmt.Fprintf(w, "; at threshold %s they removed %d hits (%d -> %d): %d wrong hits removed, %d right hits lost",
				formatThreshold(g.Threshold), g.HitsWithout-g.HitsWith, g.HitsWithout, g.HitsWith, g.RemovedWrong, g.RemovedRight)
			for _, k := range slices.Sorted(maps.Keys(g.Reasons)) {
				fmt.Fprintf(w, ", %s %d", k, g.Reasons[k])
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "threshold = minimum cosine similarity; precision \"-\" = no hits")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "threshold\thits\thit_rate\tprecision\trecall\tf1\tfalse_hit_rate\t\n")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%.4f\t%s\t%s\t%s\t%.4f\t\n", formatThreshold(r.Threshold), r.Hits, r.HitRate,
			optRate(r.Precision, "-"), optRate(r.Recall, "-"), optRate(r.F1, "-"), r.FalseHitRate)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s\n", rep.Recommendation.Message)
	return err
}

// backendDescription names a backend for the table header.
func backendDescription(b string) string {
	switch b {
	case backendExact:
		return "exact (brute-force nearest neighbour)"
	case backendMemory:
		return "memory (index.Memory HNSW, k=1)"
	case backendRedis:
		return "redis (RediSearch HNSW, k=1)"
	}
	return b
}

// writeTuneFiles writes dir/tune.csv, dir/tune.json and dir/tune.png,
// creating dir.
func writeTuneFiles(dir string, rep *TuneReport) error {
	return writeReportFiles(dir, "tune", rep,
		func(w io.Writer) error { return writeTuneCSV(w, rep.Rows) },
		func(w io.Writer) error { return writeTunePlot(w, rep) })
}

// writeTuneCSV writes the rows as CSV; undefined rates are empty cells.
func writeTuneCSV(w io.Writer, rows []TuneRow) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"threshold", "hits", "hit_rate", "precision", "recall", "f1", "false_hit_rate", "inscope_miss_rate"})
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 6, 64) }
	opt := func(x *float64) string {
		if x == nil {
			return ""
		}
		return f(*x)
	}
	for _, r := range rows {
		cw.Write([]string{formatThreshold(r.Threshold), strconv.Itoa(r.Hits), f(r.HitRate),
			opt(r.Precision), opt(r.Recall), opt(r.F1), f(r.FalseHitRate), opt(r.InScopeMissRate)})
	}
	cw.Flush()
	return cw.Error()
}
