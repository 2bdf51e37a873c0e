package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/api/sim"
	"github.com/semcache/semcache/embedding"
)

// The proxy's response headers and the simulated upstream's answer prefix,
// from the packages that define them.
const (
	headerStatus     = api.HeaderStatus     // HIT, MISS or BYPASS
	headerTier       = api.HeaderTier       // exact or semantic, on hits
	headerSimilarity = api.HeaderSimilarity // cosine similarity in [-1, 1], on semantic hits
	// simulatedPrefix starts the content of every simulated answer,
	// followed by the query it answered; it lets replay recover the source
	// query of a cache hit.
	simulatedPrefix = sim.AnswerPrefix
)

// Progress reporting: off a terminal, a line every progressEvery completed
// requests; on one, a single line redrawn in place at most every
// progressRedraw, from progressDelay into the run on (shorter runs print
// nothing).
const (
	progressEvery  = 500
	progressRedraw = 200 * time.Millisecond
	progressDelay  = 2 * time.Second
)

// maxErrorSamples bounds the error messages kept in a ReplayReport.
const maxErrorSamples = 10

// Query log formats of --format.
const (
	queryLogLabelled = "labelled" // CSV (TSV if .tsv) with a header, text and label columns
	queryLogLines    = "lines"    // one query per line, no header, no labels
)

// replayOptions are the parsed flags of "bench replay".
type replayOptions struct {
	// Target is the proxy's base URL; empty runs an in-process proxy
	// configured by Proxy.
	Target            string
	Proxy             proxyOptions
	Data              string
	Format            string
	TextCol, LabelCol string
	Model             string
	APIKey            string
	Concurrency       int
	Limit             int
	Timeout           time.Duration
	Wait              time.Duration
	Out               string
}

// Latency summarises the response times of one outcome, in milliseconds,
// measured from sending the request to reading the whole response body.
// Percentiles use the nearest-rank method (the smallest sample with at
// least p% of the samples at or below it); they are 0 when Count is 0.
type Latency struct {
	// Count is the number of samples.
	Count int `json:"count"`
	// P50, P95 and P99 are the 50th, 95th and 99th percentiles, in
	// milliseconds.
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
}

// HitStats counts the cache hits of one tier, or of both. A query log
// without labels (--format lines) has no precision: Correct is 0 and
// Precision nil, and Unattributed still counts the hits whose source is not
// in the file.
type HitStats struct {
	// Hits is the number of answers with X-Semcache-Status: HIT.
	Hits int `json:"hits"`
	// Correct is the number of attributed hits whose source query has the
	// label of the query that hit.
	Correct int `json:"correct"`
	// Unattributed is the number of hits whose source query could not be
	// recovered: the answer does not start with "Simulated answer to: " or
	// the text after it is not in the data file (for example an entry left
	// by an earlier run on other data).
	Unattributed int `json:"unattributed"`
	// Precision is Correct / (Hits - Unattributed), the same-intent share
	// of the hits that could be judged; nil when there are none.
	Precision *float64 `json:"precision"`
}

// ReplayReport is the result of "bench replay", written to replay.json.
type ReplayReport struct {
	// Target is the proxy's base URL, or "in-process" for a proxy the run
	// started itself, described by Proxy (nil with a target); Data the
	// replayed file and Format its format (labelled or lines); Model the
	// model field sent; Concurrency the number of requests in flight.
	Target      string         `json:"target"`
	Proxy       *ProxySettings `json:"proxy,omitempty"`
	Data        string         `json:"data"`
	Format      string         `json:"format"`
	Model       string         `json:"model"`
	Concurrency int            `json:"concurrency"`
	// EntriesAtStart is the target cache's entry count before the replay
	// (from GET /api/v1/cache/stats); a cold replay has 0.
	EntriesAtStart int `json:"entries_at_start"`
	// Queries is the number of queries sent.
	Queries int `json:"queries"`
	// Answered is the number of 200 answers with a valid cache status;
	// Queries = Answered + Errors.
	Answered int `json:"answered"`
	// Hits, Misses and Bypassed split Answered by X-Semcache-Status.
	Hits     int `json:"hits"`
	Misses   int `json:"misses"`
	Bypassed int `json:"bypassed"`
	// HitRate is Hits / Answered; nil when nothing was answered.
	HitRate *float64 `json:"hit_rate"`
	// All, Exact and Semantic are the hit statistics overall and by tier.
	All      HitStats `json:"all_hits"`
	Exact    HitStats `json:"exact"`
	Semantic HitStats `json:"semantic"`
	// SemanticSimilarityMin is the lowest X-Semcache-Similarity (cosine,
	// in [-1, 1]) seen on a semantic hit; nil when none carried one.
	SemanticSimilarityMin *float64 `json:"semantic_similarity_min"`
	// UpstreamCallsSaved equals Hits: each hit is an upstream call avoided.
	UpstreamCallsSaved int `json:"upstream_calls_saved"`
	// PromptTokensSaved and CompletionTokensSaved sum the usage fields of
	// the hit responses.
	PromptTokensSaved     int `json:"prompt_tokens_saved"`
	CompletionTokensSaved int `json:"completion_tokens_saved"`
	// ExactHitLatency, SemanticHitLatency, MissLatency and BypassLatency
	// are the response times of each outcome, in milliseconds.
	ExactHitLatency    Latency `json:"exact_hit_latency"`
	SemanticHitLatency Latency `json:"semantic_hit_latency"`
	MissLatency        Latency `json:"miss_latency"`
	BypassLatency      Latency `json:"bypass_latency"`
	// Errors counts queries without a valid answer: transport failures,
	// non-200 statuses and malformed answers. ErrorsByKind splits them
	// ("transport", "http 500", "bad response"); ErrorSamples holds the
	// first few messages, each naming the data file line.
	ErrorTally
}

// ErrorTally counts the requests of a replay or load run that got no valid
// answer: Errors in all, ErrorsByKind by kind ("transport", "http 500",
// "bad response"), ErrorSamples the first maxErrorSamples messages.
type ErrorTally struct {
	Errors       int            `json:"errors"`
	ErrorsByKind map[string]int `json:"errors_by_kind,omitempty"`
	ErrorSamples []string       `json:"error_samples,omitempty"`
}

// add counts one error of kind with its message.
func (e *ErrorTally) add(kind, msg string) {
	e.Errors++
	if e.ErrorsByKind == nil {
		e.ErrorsByKind = make(map[string]int)
	}
	e.ErrorsByKind[kind]++
	if len(e.ErrorSamples) < maxErrorSamples {
		e.ErrorSamples = append(e.ErrorSamples, msg)
	}
}

// replayKind is the outcome of one replayed query.
type replayKind int

const (
	kindError replayKind = iota
	kindExact
	kindSemantic
	kindMiss
	kindBypass
)

// replayResult is what replay records for one query.
type replayResult struct {
	kind      replayKind
	errKind   string // for kindError: "transport", "http 500", "bad response"
	errMsg    string
	latencyMS float64
	sim       float64 // X-Semcache-Similarity, when hasSim
	hasSim    bool
	// For hits: the query the answer was stored for, when the answer names
	// it (hasSource); whether that query is in the data file
	// (attributed), and whether its label matches (correct).
	source              string
	hasSource           bool
	attributed, correct bool
	promptTokens        int
	completionTokens    int
}

func runReplayCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("semcache bench replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o replayOptions
	fs.StringVar(&o.Target, "target", "", "base `URL` of a running proxy on loopback, e.g. http://127.0.0.1:8080/v1; omitted: start a proxy in this process for the run")
	addProxyFlags(fs, &o.Proxy)
	fs.StringVar(&o.Data, "data", "", "query log `FILE`, replayed in order")
	fs.StringVar(&o.Format, "format", queryLogLabelled, "format of --data: labelled (CSV with a header, or TSV if it ends in .tsv) or lines (one query per line, no labels: no precision)")
	fs.StringVar(&o.TextCol, "text-col", "text", "header name of the text column (labelled)")
	fs.StringVar(&o.LabelCol, "label-col", "category", "header name of the label column (labelled)")
	fs.StringVar(&o.Model, "model", "sim-1", "model field of each request")
	fs.IntVar(&o.Concurrency, "concurrency", 1, "requests in flight; 1 is deterministic, above 1 the order in which queries warm the cache is racy")
	fs.IntVar(&o.Limit, "limit", 0, "replay only the first `N` queries (0 = all)")
	fs.StringVar(&o.APIKey, "api-key", "sk-replay", "bearer token sent to the proxy (empty = no Authorization header)")
	fs.DurationVar(&o.Timeout, "timeout", 60*time.Second, "timeout of each request")
	fs.DurationVar(&o.Wait, "wait", 10*time.Second, "how long to wait for the target's /healthz to answer before starting")
	fs.StringVar(&o.Out, "out", "", "optional `DIR` for replay.json (created if missing)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: semcache bench replay [--target URL] --data FILE [flags]\n\n"+
			"Sends each query of FILE to URL/chat/completions and judges the cache's answers: a hit\n"+
			"is correct when the query it was stored for has the same label. The proxy must use the\n"+
			"simulated upstream, whose answers are \"Simulated answer to: <query>\". Without --target,\n"+
			"replay starts such a proxy in the process (flags marked in-process proxy), replays\n"+
			"against it and stops it.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := setFlags(fs)
	if err := o.validate(set); err != nil {
		return err
	}
	noteDefaultThreshold(stderr, o.Target, o.Proxy, set)
	rep, err := replay(ctx, o, stderr)
	if err != nil {
		return err
	}
	return report(stdout, o.Out, "replay.json", rep, writeReplaySummary)
}

// report prints rep's summary to stdout and, when out is set, writes rep
// as out/name: the last step of bench replay and bench load.
func report[R any](stdout io.Writer, out, name string, rep R, summary func(io.Writer, R) error) error {
	if err := summary(stdout, rep); err != nil {
		return err
	}
	if out != "" {
		return writeReportJSON(out, name, rep)
	}
	return nil
}

// writeReportJSON writes v, indented, to dir/name, creating dir if missing.
func writeReportJSON(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), append(js, '\n'), 0o644)
}

// validate checks the flags that do not need the data; set holds the names
// of the flags given on the command line.
func (o replayOptions) validate(set map[string]bool) error {
	switch {
	case o.Data == "":
		return usageErrorf("--data is required")
	case o.Format != queryLogLabelled && o.Format != queryLogLines:
		return usageErrorf("--format %q: want labelled or lines", o.Format)
	case o.Format == queryLogLabelled && (o.TextCol == "" || o.LabelCol == ""):
		return usageErrorf("--text-col and --label-col must not be empty")
	case o.Concurrency < 1:
		return usageErrorf("--concurrency must be >= 1, got %d", o.Concurrency)
	case o.Limit < 0:
		return usageErrorf("--limit must be >= 0, got %d", o.Limit)
	case o.Timeout <= 0:
		return usageErrorf("--timeout must be > 0, got %v", o.Timeout)
	}
	if err := checkProxyFlags(o.Proxy, o.Target, set); err != nil {
		return err
	}
	if o.Target == "" {
		return nil
	}
	if _, err := loopbackURL(o.Target); err != nil {
		return usageErrorf("%v", err)
	}
	return nil
}

// noteDefaultThreshold warns on w when the in-process proxy uses the local
// embedder's default threshold at another dimension than it was measured
// at.
func noteDefaultThreshold(w io.Writer, target string, p proxyOptions, set map[string]bool) {
	if target == "" && !set["threshold"] && p.EmbedderDim != embedding.DefaultLocalDim {
		fmt.Fprintf(w, "note: the default --threshold %g was measured at %d dimensions, not %d; measure yours with `semcache bench tune`\n",
			p.Threshold, embedding.DefaultLocalDim, p.EmbedderDim)
	}
}

// replay replays o.Data against o.Target or, when it is empty, against a
// proxy started in the process for the replay. Progress and the in-process
// proxy's warnings go to stderr.
func replay(ctx context.Context, o replayOptions, stderr io.Writer) (*ReplayReport, error) {
	errw := &syncWriter{w: stderr}
	var rep *ReplayReport
	settings, err := onTarget(ctx, o.Target, o.Proxy, errw, func(baseURL string) error {
		ro := o
		ro.Target = baseURL
		var err error
		rep, err = runReplay(ctx, ro, newReplayClient(ro), errw)
		return err
	})
	if err != nil {
		return nil, err
	}
	if settings != nil {
		rep.Target, rep.Proxy = inProcessTarget, settings
	}
	return rep, nil
}

// loopbackURL parses a base URL and refuses anything but http or https to
// a loopback host: "localhost", 127.0.0.0/8 or ::1. Replay sends thousands
// of requests, so it must never be pointed at a remote (paid) service.
func loopbackURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--target %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--target %q: want an http:// or https:// URL", raw)
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return u, nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return u, nil
	}
	return nil, fmt.Errorf("--target %q: host %q is not loopback; the harness only talks to a proxy on localhost, 127.0.0.0/8 or ::1", raw, host)
}

// newReplayClient returns a client that never uses an environment proxy
// and never follows redirects (a 3xx is an error), so requests cannot leave
// the loopback host checked by loopbackURL.
func newReplayClient(o replayOptions) *http.Client {
	return newLoopbackClient(o.Timeout, o.Concurrency)
}

// newLoopbackClient returns a client for loopbackURL targets with the given
// per-request timeout, keeping up to conns idle connections: it never uses
// an environment proxy and never follows redirects.
func newLoopbackClient(timeout time.Duration, conns int) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// runReplay sends the queries of o.Data, in file order, to the proxy with
// o.Concurrency workers and summarises the answers, printing a progress
// line to progress every progressEvery queries. With one worker the replay
// is sequential and deterministic; with more, requests overlap and which
// query stores the entry that a later one hits depends on timing.
func runReplay(ctx context.Context, o replayOptions, client *http.Client, progress io.Writer) (*ReplayReport, error) {
	rq, err := newRequester(client, o.Target, o.Model, o.APIKey)
	if err != nil {
		return nil, err
	}
	data, err := loadQueries(o.Data, o.Format, o.TextCol, o.LabelCol)
	if err != nil {
		return nil, err
	}
	labels := make(map[string]string, len(data))
	for _, e := range data {
		if _, seen := labels[e.Text]; !seen {
			labels[e.Text] = e.Label
		}
	}
	entries, err := preflight(ctx, client, o.Target, o.Wait)
	if err != nil {
		return nil, err
	}
	if entries > 0 {
		fmt.Fprintf(progress, "warning: the target cache already holds %d entries, so this is not a cold replay; start a fresh proxy for reproducible figures\n", entries)
	}
	queries := data
	if o.Limit > 0 && o.Limit < len(queries) {
		queries = queries[:o.Limit]
	}

	results := make([]replayResult, len(queries))
	jobs := make(chan int)
	done := make(chan int)
	var workers sync.WaitGroup
	for range o.Concurrency {
		workers.Go(func() {
			for i := range jobs {
				q := queries[i]
				results[i] = attribute(rq.send(ctx, q.Text, "line "+strconv.Itoa(q.Line)), q, labels)
				done <- i
			}
		})
	}
	go func() { // feeder: ends when every index is sent or ctx is done
		defer close(jobs)
		for i := range queries {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { // closes done once every worker has returned
		workers.Wait()
		close(done)
	}()
	meter := newProgressMeter(progress, "replay", "queries", len(queries), 0)
	var completed, hits, errs int
	for i := range done {
		completed++
		switch results[i].kind {
		case kindExact, kindSemantic:
			hits++
		case kindError:
			errs++
		}
		meter.update(completed, hits, errs)
	}
	meter.finish(completed, hits, errs)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("replay stopped after %d of %d queries: %w", completed, len(queries), err)
	}
	rep := summariseReplay(results, o.Format != queryLogLines)
	rep.EntriesAtStart = entries
	rep.Target, rep.Data, rep.Format, rep.Model, rep.Concurrency = o.Target, o.Data, o.Format, o.Model, o.Concurrency
	return rep, nil
}

// loadQueries reads a query log in format (queryLogLabelled or queryLogLines).
// Lines-format examples have no label.
func loadQueries(path, format, textCol, labelCol string) ([]Example, error) {
	if format == queryLogLines {
		return loadLines(path)
	}
	return LoadLabelled(path, textCol, labelCol)
}

// loadLines reads a query log with one query per line: no header, no
// labels. A trailing "\r" (CRLF files) and a leading UTF-8 byte-order mark
// are removed; otherwise each text is kept exactly as written. Blank
// (all-space) lines are skipped: they separate, they are not queries. A
// file without any query, or with a line longer than 1 MiB, is an error.
func loadLines(path string) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var out []Example
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSuffix(sc.Text(), "\r")
		if line == 1 {
			text = strings.TrimPrefix(text, "\ufeff")
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		out = append(out, Example{Text: text, Line: line})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", path, len(out)+1, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no queries", path)
	}
	return out, nil
}

// chatRequest is the body replay sends.
type chatRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chatResponse is the part of an OpenAI chat completion replay reads.
type chatResponse struct {
	Choices []struct {
		Message chatMessage `json:"message"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// requester sends chat completions to a proxy on loopback. It is safe for
// concurrent use.
type requester struct {
	client        *http.Client
	endpoint      string // the loopback base URL + /chat/completions
	model, apiKey string // apiKey "" sends no Authorization header
}

// newRequester checks that target is a loopback base URL and returns a
// requester for its chat completions.
func newRequester(client *http.Client, target, model, apiKey string) (*requester, error) {
	base, err := loopbackURL(target)
	if err != nil {
		return nil, err
	}
	return &requester{client: client, endpoint: strings.TrimRight(base.String(), "/") + "/chat/completions", model: model, apiKey: apiKey}, nil
}

// send sends one prompt and classifies the answer; ref names the prompt
// in error messages ("line 12", "request 7").
func (rq *requester) send(ctx context.Context, text, ref string) replayResult {
	fail := func(kind, format string, a ...any) replayResult {
		return replayResult{kind: kindError, errKind: kind, errMsg: fmt.Sprintf("%s: %s: ", ref, kind) + fmt.Sprintf(format, a...)}
	}
	body, err := json.Marshal(chatRequest{Model: rq.model, Messages: []chatMessage{{Role: "user", Content: text}}})
	if err != nil {
		return fail("transport", "%v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rq.endpoint, bytes.NewReader(body))
	if err != nil {
		return fail("transport", "%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if rq.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+rq.apiKey)
	}
	start := time.Now()
	resp, err := rq.client.Do(req)
	if err != nil {
		return fail("transport", "%v", err)
	}
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	resp.Body.Close()
	latency := float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		return fail("transport", "read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail("http "+strconv.Itoa(resp.StatusCode), "%s", truncate(strings.TrimSpace(string(respBody)), 200))
	}
	r := replayResult{latencyMS: latency}
	switch status := resp.Header.Get(headerStatus); status {
	case "MISS":
		r.kind = kindMiss
		return r
	case "BYPASS":
		r.kind = kindBypass
		return r
	case "HIT":
		switch tier := resp.Header.Get(headerTier); tier {
		case "exact":
			r.kind = kindExact
		case "semantic":
			r.kind = kindSemantic
		default:
			return fail("bad response", "HIT with %s %q, want exact or semantic", headerTier, tier)
		}
	default:
		return fail("bad response", "%s %q, want HIT, MISS or BYPASS", headerStatus, status)
	}
	if s := resp.Header.Get(headerSimilarity); s != "" {
		if v, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(v) {
			r.sim, r.hasSim = v, true
		}
	}
	var cr chatResponse
	if err := json.Unmarshal(respBody, &cr); err != nil {
		return fail("bad response", "hit body: %v", err)
	}
	if len(cr.Choices) == 0 {
		return fail("bad response", "hit body has no choices")
	}
	r.promptTokens, r.completionTokens = cr.Usage.PromptTokens, cr.Usage.CompletionTokens
	r.source, r.hasSource = strings.CutPrefix(cr.Choices[0].Message.Content, simulatedPrefix)
	return r
}

// attribute judges a hit of query q: it is attributed when its source
// query is in labels, which maps each text of the data file to its first
// label ("" when the file has none), and correct when the labels are
// equal and not empty.
func attribute(r replayResult, q Example, labels map[string]string) replayResult {
	if !r.hasSource {
		return r
	}
	if label, ok := labels[r.source]; ok {
		r.attributed, r.correct = true, label != "" && label == q.Label
	}
	return r
}

// truncate shortens s to at most n bytes, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// summariseReplay computes the report counts from per-query results, in
// query order (so error samples are the first ones in the file). Without
// labels there is no precision.
func summariseReplay(results []replayResult, labelled bool) *ReplayReport {
	rep := &ReplayReport{Queries: len(results)}
	var exactMS, semMS, missMS, bypassMS []float64
	for _, r := range results {
		switch r.kind {
		case kindError:
			rep.add(r.errKind, r.errMsg)
			continue
		case kindMiss:
			rep.Misses++
			missMS = append(missMS, r.latencyMS)
		case kindBypass:
			rep.Bypassed++
			bypassMS = append(bypassMS, r.latencyMS)
		case kindExact:
			countHit(&rep.Exact, r)
			exactMS = append(exactMS, r.latencyMS)
		case kindSemantic:
			countHit(&rep.Semantic, r)
			semMS = append(semMS, r.latencyMS)
			if r.hasSim && (rep.SemanticSimilarityMin == nil || r.sim < *rep.SemanticSimilarityMin) {
				s := r.sim
				rep.SemanticSimilarityMin = &s
			}
		}
		rep.Answered++
		if r.kind == kindExact || r.kind == kindSemantic {
			countHit(&rep.All, r)
			rep.PromptTokensSaved += r.promptTokens
			rep.CompletionTokensSaved += r.completionTokens
		}
	}
	for _, h := range []*HitStats{&rep.All, &rep.Exact, &rep.Semantic} {
		if labelled {
			h.Precision = ratio(h.Correct, h.Hits-h.Unattributed)
		}
	}
	rep.Hits = rep.All.Hits
	rep.HitRate = ratio(rep.Hits, rep.Answered)
	rep.UpstreamCallsSaved = rep.Hits
	rep.ExactHitLatency = latencyOf(exactMS)
	rep.SemanticHitLatency = latencyOf(semMS)
	rep.MissLatency = latencyOf(missMS)
	rep.BypassLatency = latencyOf(bypassMS)
	return rep
}

func countHit(h *HitStats, r replayResult) {
	h.Hits++
	switch {
	case !r.attributed:
		h.Unattributed++
	case r.correct:
		h.Correct++
	}
}

// latencyOf summarises samples in milliseconds; it sorts them in place.
func latencyOf(ms []float64) Latency {
	slices.Sort(ms)
	return Latency{Count: len(ms), P50: percentile(ms, 50), P95: percentile(ms, 95), P99: percentile(ms, 99)}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted: the element at rank ceil(p/100·n), 1-based; 0 when sorted is
// empty.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(1, min(rank, len(sorted)))-1]
}

// writeReplaySummary writes the human-readable replay report.
func writeReplaySummary(w io.Writer, rep *ReplayReport) error {
	pct := func(r *float64) string {
		if r == nil {
			return "-"
		}
		return strconv.FormatFloat(100**r, 'f', 2, 64) + "%"
	}
	prec := func(h HitStats) string {
		s := fmt.Sprintf("%s (%d/%d)", optRate(h.Precision, "-"), h.Correct, h.Hits-h.Unattributed)
		if h.Unattributed > 0 {
			s += fmt.Sprintf(", %d unattributed", h.Unattributed)
		}
		return s
	}
	fmt.Fprintf(w, "replay of %s through %s (model %s, concurrency %d)\n", rep.Data, rep.Target, rep.Model, rep.Concurrency)
	if rep.Proxy != nil {
		fmt.Fprintf(w, "in-process proxy: %s\n", rep.Proxy)
	}
	if rep.EntriesAtStart > 0 {
		fmt.Fprintf(w, "WARNING: the cache held %d entries before the replay (not a cold replay)\n", rep.EntriesAtStart)
	}
	if rep.Concurrency > 1 {
		fmt.Fprintln(w, "note: with concurrency > 1 which query warms the cache for which is timing-dependent")
	}
	fmt.Fprintf(w, "queries               %d (answered %d, errors %d)\n", rep.Queries, rep.Answered, rep.Errors)
	fmt.Fprintf(w, "hits                  %d (hit rate %s of answered): exact %d, semantic %d\n", rep.Hits, pct(rep.HitRate), rep.Exact.Hits, rep.Semantic.Hits)
	fmt.Fprintf(w, "misses                %d\n", rep.Misses)
	fmt.Fprintf(w, "bypassed              %d\n", rep.Bypassed)
	if rep.Format == queryLogLines {
		fmt.Fprintf(w, "precision             - (the query log has no labels)\n")
	} else {
		fmt.Fprintf(w, "precision (same intent)\n  all hits            %s\n  exact               %s\n  semantic            %s\n", prec(rep.All), prec(rep.Exact), prec(rep.Semantic))
	}
	if rep.SemanticSimilarityMin != nil {
		fmt.Fprintf(w, "lowest semantic similarity %.4f\n", *rep.SemanticSimilarityMin)
	}
	fmt.Fprintf(w, "upstream calls saved  %d\n", rep.UpstreamCallsSaved)
	fmt.Fprintf(w, "tokens saved          prompt %d, completion %d\n", rep.PromptTokensSaved, rep.CompletionTokensSaved)
	if err := writeLatencyTable(w, []namedLatency{{"exact hit", rep.ExactHitLatency}, {"semantic hit", rep.SemanticHitLatency},
		{"miss", rep.MissLatency}, {"bypass", rep.BypassLatency}}); err != nil {
		return err
	}
	writeErrors(w, rep.Errors, rep.ErrorsByKind, rep.ErrorSamples)
	return nil
}

// namedLatency is one row of a latency table.
type namedLatency struct {
	name string
	l    Latency
}

// writeLatencyTable writes the rows as an aligned table in milliseconds.
func writeLatencyTable(w io.Writer, rows []namedLatency) error {
	fmt.Fprintln(w, "latency (milliseconds)")
	tw := newTable(w)
	fmt.Fprint(tw, "outcome\tcount\tp50\tp95\tp99\t\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t\n", r.name, r.l.Count, r.l.P50, r.l.P95, r.l.P99)
	}
	return tw.Flush()
}

// newTable returns a tabwriter for right-aligned tables.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}

// writeErrors writes the error count by kind and the samples, if any.
func writeErrors(w io.Writer, n int, byKind map[string]int, samples []string) {
	if n == 0 {
		return
	}
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	fmt.Fprintf(w, "errors                %d:", n)
	for _, k := range kinds {
		fmt.Fprintf(w, " %s %d;", k, byKind[k])
	}
	fmt.Fprintln(w)
	for _, s := range samples {
		fmt.Fprintf(w, "  %s\n", s)
	}
}

// preflight waits up to wait for the target's GET /healthz to answer 200,
// then returns the number of entries its cache already holds (GET
// /api/v1/cache/stats), so that a run against a warm cache is flagged.
func preflight(ctx context.Context, client *http.Client, target string, wait time.Duration) (int, error) {
	base, err := loopbackURL(target)
	if err != nil {
		return 0, err
	}
	root := &url.URL{Scheme: base.Scheme, Host: base.Host}
	deadline := time.Now().Add(wait)
	for {
		err = getOK(ctx, client, root.JoinPath("healthz").String(), nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("target %s is not answering /healthz after %v: %w", root, wait, err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	var stats struct {
		Entries int `json:"entries"`
	}
	if err := getOK(ctx, client, root.JoinPath("api", "v1", "cache", "stats").String(), &stats); err != nil {
		return 0, fmt.Errorf("target %s: read cache stats: %w", root, err)
	}
	return stats.Entries, nil
}

// getOK GETs u and, when into is not nil, decodes its JSON body into it.
func getOK(ctx context.Context, client *http.Client, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	if into == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// progressMeter reports the progress of a run of total requests (and,
// when limit > 0, of at most limit long) to w. Off a terminal it writes a
// line every progressEvery completions; on a terminal (w is a character
// device) it redraws one line in place, at most every progressRedraw and
// only once the run has lasted progressDelay, so short runs print nothing
// there. Its methods must be called from one goroutine.
type progressMeter struct {
	w          io.Writer
	tty        bool
	name, unit string // "replay", "queries"
	total      int
	limit      time.Duration
	now        func() time.Time
	start      time.Time
	lastDraw   time.Time
	drawn      bool
}

func newProgressMeter(w io.Writer, name, unit string, total int, limit time.Duration) *progressMeter {
	return &progressMeter{w: w, tty: isTerminal(w), name: name, unit: unit, total: total, limit: limit, now: time.Now, start: time.Now()}
}

// isTerminal reports whether w (or the writer a syncWriter wraps) is a
// character device such as a terminal.
func isTerminal(w io.Writer) bool {
	if s, ok := w.(*syncWriter); ok {
		w = s.w
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// update records that done requests have completed, hits of them hits
// and errs errors.
func (p *progressMeter) update(done, hits, errs int) {
	if !p.tty {
		if done%progressEvery == 0 {
			fmt.Fprintf(p.w, "%s: %d/%d %s, %d hits, %d errors%s\n", p.name, done, p.total, p.unit, hits, errs, p.elapsed())
		}
		return
	}
	now := p.now()
	if now.Sub(p.start) < progressDelay || (p.drawn && now.Sub(p.lastDraw) < progressRedraw) {
		return
	}
	p.draw(now, done, hits, errs)
}

// finish ends the report: on a terminal, a bar that was drawn is redrawn
// with the final counts and ended with a newline.
func (p *progressMeter) finish(done, hits, errs int) {
	if p.tty && p.drawn {
		p.draw(p.now(), done, hits, errs)
		fmt.Fprintln(p.w)
	}
}

// progressWidth is the number of cells of the bar.
const progressWidth = 30

func (p *progressMeter) draw(now time.Time, done, hits, errs int) {
	frac := 0.0
	if p.total > 0 {
		frac = float64(done) / float64(p.total)
	}
	if p.limit > 0 {
		frac = max(frac, float64(now.Sub(p.start))/float64(p.limit))
	}
	frac = min(frac, 1)
	cells := int(frac * progressWidth)
	// \r returns to the start of the line, \x1b[K erases what a longer
	// previous line left behind.
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% %d/%d %s, %d hits, %d errors, %s\x1b[K",
		p.name, strings.Repeat("#", cells), strings.Repeat(".", progressWidth-cells), 100*frac,
		done, p.total, p.unit, hits, errs, now.Sub(p.start).Truncate(100*time.Millisecond))
	p.drawn, p.lastDraw = true, now
}

// elapsed is the time suffix of the lines written off a terminal: the
// elapsed time when the run is time-limited, else nothing.
func (p *progressMeter) elapsed() string {
	if p.limit <= 0 {
		return ""
	}
	return fmt.Sprintf(", %s of %s", p.now().Sub(p.start).Truncate(100*time.Millisecond), p.limit)
}
