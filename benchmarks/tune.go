package benchmarks

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/semcache/semcache/index"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
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

// tuneOptions are the parsed flags of "bench tune".
type tuneOptions struct {
	Warm, Queries     string
	Format            string
	TextCol, LabelCol string
	OOSLabel          string
	Min, Max, Step    float64
	TargetPrecision   float64
	Out               string
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
	// Message is the recommendation as one human-readable sentence.
	Message string `json:"message"`
}

// TuneReport is the result of "bench tune", written to tune.json.
type TuneReport struct {
	// Embedder is the embedder fingerprint ("kind:model:dim").
	Embedder string `json:"embedder"`
	// Warm and Queries are the paths of the warm and query files.
	Warm    string `json:"warm"`
	Queries string `json:"queries"`
	// Format is the data format ("intents").
	Format string `json:"format"`
	// OOSLabel is the out-of-scope label, empty when there is none.
	OOSLabel string `json:"oos_label,omitempty"`
	// TargetPrecision is the --target-precision flag, in (0, 1].
	TargetPrecision float64 `json:"target_precision"`
	// WarmCount and QueryCount are the numbers of examples in each file.
	WarmCount  int `json:"warm_count"`
	QueryCount int `json:"query_count"`
	// InScope is the number of queries whose label is not OOSLabel.
	InScope int `json:"in_scope"`
	// Answerable is the number of in-scope queries whose label appears in
	// the warm set: the denominator of recall.
	Answerable int `json:"answerable"`
	// Rows has one entry per threshold, in increasing threshold order.
	Rows []TuneRow `json:"rows"`
	// Recommendation applies the threshold rule to Rows.
	Recommendation Recommendation `json:"recommendation"`
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
}

func runTuneCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("semcache bench tune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o tuneOptions
	var embName string
	var dim int
	fs.StringVar(&o.Warm, "warm", "", "labelled `FILE` (CSV, or TSV if it ends in .tsv) whose texts are stored in the cache")
	fs.StringVar(&o.Queries, "queries", "", "labelled `FILE` of queries looked up against the warm set")
	fs.StringVar(&o.Format, "format", "intents", "data format; only \"intents\" (one text and one label per row) for now")
	fs.StringVar(&o.TextCol, "text-col", "text", "header name of the text column")
	fs.StringVar(&o.LabelCol, "label-col", "category", "header name of the label column")
	fs.StringVar(&embName, "embedder", "local", "embedder; only \"local\" for now")
	fs.IntVar(&dim, "embedder-dim", 384, "vector dimension of the embedder")
	fs.Float64Var(&o.Min, "min", 0.50, "lowest cosine-similarity threshold of the sweep, in [-1, 1]")
	fs.Float64Var(&o.Max, "max", 1.00, "highest cosine-similarity threshold of the sweep, in [-1, 1]")
	fs.Float64Var(&o.Step, "step", 0.01, "threshold step, > 0")
	fs.Float64Var(&o.TargetPrecision, "target-precision", 0.99, "precision the recommended threshold must reach, in (0, 1]")
	fs.StringVar(&o.Out, "out", "", "optional `DIR` for tune.csv and tune.json (created if missing)")
	fs.StringVar(&o.OOSLabel, "oos-label", "", "optional label of out-of-scope queries (e.g. NO_NODES_DETECTED); any hit for them is wrong")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: semcache bench tune --warm FILE --queries FILE [flags]\n\n"+
			"Stores every warm text, looks up each query's single nearest warm text by cosine\n"+
			"similarity and sweeps the hit threshold. A hit is correct when both texts share a label.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	if dim <= 0 {
		return usageErrorf("--embedder-dim must be > 0, got %d", dim)
	}
	emb, err := newEmbedder(embName, dim)
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
	switch {
	case o.Warm == "":
		return usageErrorf("--warm is required")
	case o.Queries == "":
		return usageErrorf("--queries is required")
	case o.Format != "intents":
		return usageErrorf("--format %q is not yet supported (only \"intents\")", o.Format)
	case o.TextCol == "" || o.LabelCol == "":
		return usageErrorf("--text-col and --label-col must not be empty")
	case o.TargetPrecision <= 0 || o.TargetPrecision > 1 || math.IsNaN(o.TargetPrecision):
		return usageErrorf("--target-precision must be in (0, 1], got %v", o.TargetPrecision)
	}
	if _, err := thresholds(o.Min, o.Max, o.Step); err != nil {
		return usageErrorf("%v", err)
	}
	return nil
}

// runTune loads the data, embeds it with emb and computes the sweep.
func runTune(ctx context.Context, o tuneOptions, emb embedder) (*TuneReport, error) {
	ths, err := thresholds(o.Min, o.Max, o.Step)
	if err != nil {
		return nil, err
	}
	warm, err := LoadLabelled(o.Warm, o.TextCol, o.LabelCol)
	if err != nil {
		return nil, err
	}
	queries, err := LoadLabelled(o.Queries, o.TextCol, o.LabelCol)
	if err != nil {
		return nil, err
	}
	wv, err := embedAll(ctx, emb, warm)
	if err != nil {
		return nil, fmt.Errorf("embed warm set: %w", err)
	}
	qv, err := embedAll(ctx, emb, queries)
	if err != nil {
		return nil, fmt.Errorf("embed queries: %w", err)
	}
	if len(wv[0]) != len(qv[0]) {
		return nil, fmt.Errorf("warm vectors have dimension %d, query vectors %d", len(wv[0]), len(qv[0]))
	}
	nn := nearestNeighbours(ctx, qv, wv)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	outs := judge(warm, queries, nn, o.OOSLabel)
	rows := sweep(outs, ths)
	rep := &TuneReport{
		Embedder:        emb.Fingerprint(),
		Warm:            o.Warm,
		Queries:         o.Queries,
		Format:          o.Format,
		OOSLabel:        o.OOSLabel,
		TargetPrecision: o.TargetPrecision,
		WarmCount:       len(warm),
		QueryCount:      len(queries),
		Rows:            rows,
		Recommendation:  recommend(rows, o.TargetPrecision),
	}
	for _, q := range outs {
		if q.InScope {
			rep.InScope++
		}
		if q.Answerable {
			rep.Answerable++
		}
	}
	return rep, nil
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
			if q.Sim < t {
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
	fmt.Fprintf(w, "embedder %s\nwarm %s (%d examples)\nqueries %s (%d queries, %d in scope, %d with their label in the warm set)\n",
		rep.Embedder, rep.Warm, rep.WarmCount, rep.Queries, rep.QueryCount, rep.InScope, rep.Answerable)
	if rep.OOSLabel != "" {
		fmt.Fprintf(w, "out-of-scope label %s\n", rep.OOSLabel)
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

// writeTuneFiles writes dir/tune.csv and dir/tune.json, creating dir.
func writeTuneFiles(dir string, rep *TuneReport) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	if err := writeTuneCSV(&b, rep.Rows); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tune.csv"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "tune.json"), append(js, '\n'), 0o644)
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
