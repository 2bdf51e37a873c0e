package benchmarks

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxLoadRequests bounds --requests: every result is kept in memory for
// the percentiles.
const maxLoadRequests = 1_000_000

// defaultMix is the default of --mix.
const defaultMix = "repeat=0.5,paraphrase=0.3,new=0.2"

// loadOptions are the parsed flags of "bench load".
type loadOptions struct {
	// Target is the proxy's base URL; empty runs an in-process proxy
	// configured by Proxy.
	Target string
	Proxy  proxyOptions
	// Requests and Duration are the two limits: the run stops sending at
	// whichever comes first. Both are always positive.
	Requests    int
	Duration    time.Duration
	Concurrency int
	Mix         Mix
	Pool        int
	// Data is the prompt file ("" for the built-in list) in Format, with
	// the text in column TextCol (labelled).
	Data, Format      string
	TextCol, LabelCol string
	Seed              uint64
	Model, APIKey     string
	Timeout, Wait     time.Duration
	Out               string
}

// Mix is the share of each kind of prompt a load run sends: a repeat of a
// pool prompt, a paraphrase of one, or a new prompt. Each share is in
// [0, 1] and they sum to 1.
type Mix struct {
	Repeat     float64 `json:"repeat"`
	Paraphrase float64 `json:"paraphrase"`
	New        float64 `json:"new"`
}

// mixTolerance is how far from 1 the shares of a Mix may sum, so that
// decimal spellings such as 0.1+0.2+0.7 are accepted.
const mixTolerance = 1e-9

// parseMix parses "kind=share,..." with kinds repeat, paraphrase and new,
// each at most once; a kind left out has share 0. The shares must be
// numbers in [0, 1] that sum to 1.
func parseMix(s string) (Mix, error) {
	var m Mix
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		kind, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Mix{}, fmt.Errorf("--mix %q: %q is not kind=share", s, part)
		}
		kind = strings.TrimSpace(kind)
		share, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || math.IsNaN(share) || share < 0 || share > 1 {
			return Mix{}, fmt.Errorf("--mix %q: share %q of %s: want a number in [0, 1]", s, val, kind)
		}
		if seen[kind] {
			return Mix{}, fmt.Errorf("--mix %q: %s given twice", s, kind)
		}
		seen[kind] = true
		switch kind {
		case "repeat":
			m.Repeat = share
		case "paraphrase":
			m.Paraphrase = share
		case "new":
			m.New = share
		default:
			return Mix{}, fmt.Errorf("--mix %q: unknown kind %q (want repeat, paraphrase or new)", s, kind)
		}
	}
	if sum := m.Repeat + m.Paraphrase + m.New; math.Abs(sum-1) > mixTolerance {
		return Mix{}, fmt.Errorf("--mix %q: shares sum to %g, want 1", s, sum)
	}
	return m, nil
}

// String formats m as parseMix reads it.
func (m Mix) String() string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	return "repeat=" + f(m.Repeat) + ",paraphrase=" + f(m.Paraphrase) + ",new=" + f(m.New)
}

// promptKind is the kind of a generated prompt.
type promptKind int

const (
	promptRepeat promptKind = iota
	promptParaphrase
	promptNew
	numPromptKinds
)

func (k promptKind) String() string {
	return [...]string{"repeat", "paraphrase", "new"}[k]
}

// builtinPrompts are the prompts of a load run without --data: 50
// FAQ-style questions of a help centre, distinct enough that none is a
// semantic hit for another at the local embedder's default threshold.
var builtinPrompts = []string{
	"How do I reset my password?",
	"How do I change the email address on my account?",
	"How do I enable two-factor authentication?",
	"How do I delete my account permanently?",
	"How do I update my billing address?",
	"How do I cancel my subscription?",
	"How do I download my invoices?",
	"How do I add a team member to my workspace?",
	"How do I export my data to CSV?",
	"How do I connect the app to Slack?",
	"How can I track my order?",
	"How can I return a damaged item?",
	"How can I change my delivery date?",
	"How can I contact customer support by phone?",
	"How can I get a refund for a late shipment?",
	"What is your refund policy?",
	"What is the difference between the Basic and Pro plans?",
	"What is the maximum file size I can upload?",
	"What payment methods do you accept?",
	"What happens when my free trial ends?",
	"What are your opening hours on weekends?",
	"What currencies can I pay in?",
	"What does the error code E401 mean?",
	"Why was my credit card declined?",
	"Why am I not receiving the verification email?",
	"Why is the mobile app crashing on startup?",
	"Why did my monthly bill go up?",
	"Why can't I log in after changing my phone?",
	"Where can I find my API key?",
	"Where is the nearest pickup point?",
	"Where do I enter a discount code at checkout?",
	"Can I use one license on two computers?",
	"Can I pause my membership for a month?",
	"Can I ship to a post office box?",
	"Can I upgrade my plan in the middle of a billing cycle?",
	"Can I share a shopping cart with someone else?",
	"Is my personal data stored in Europe?",
	"Is there a student discount?",
	"Is there a limit on API requests per minute?",
	"Is gift wrapping available for international orders?",
	"Do you offer an annual billing option?",
	"Do you have a dark mode for the desktop app?",
	"Does the warranty cover water damage?",
	"Does the subscription renew automatically?",
	"When will my replacement card arrive?",
	"When are the scheduled maintenance windows?",
	"Which browsers are supported?",
	"Who can see the files in a shared folder?",
	"Are backups included in every plan?",
	"Should I uninstall the old version before installing the new one?",
}

// openingSwaps are the rewordings of a prompt's opening that paraphrase
// variant 0 applies, first match wins.
var openingSwaps = [][2]string{
	{"How do I ", "How can I "},
	{"How can I ", "How do I "},
	{"What is ", "What's "},
	{"What are ", "What're "},
	{"Can I ", "Could I "},
	{"Is there ", "Is there maybe "},
	{"Why can't I ", "Why am I unable to "},
	{"Do you ", "Do you guys "},
	{"Where can I ", "Where do I "},
	{"Where do I ", "Where can I "},
}

// numParaphrases is the number of paraphrase variants of a prompt.
const numParaphrases = 4

// paraphrase returns variant v (in [0, numParaphrases)) of base, a light
// rewording that keeps the meaning and always differs from base:
//
//   - 0 swaps the opening ("How do I" <-> "How can I", "What is" ->
//     "What's", "Can I" -> "Could I", ...; see openingSwaps), or, when no
//     opening matches, starts the prompt with "Hi, " and lower-cases its
//     first letter;
//   - 1 adds "please": ", please" before the final ?, . or ! ("..., please"
//     at the end when there is none);
//   - 2 changes case and punctuation: all lower case, final ?, . or !
//     dropped (or "?" added when there is none);
//   - 3 is 0 then 1.
//
// Variant 2 differs from base only in case and punctuation, so a proxy
// that normalises case may serve it from the exact tier.
func paraphrase(base string, v int) string {
	switch v {
	case 0:
		for _, sw := range openingSwaps {
			if rest, ok := strings.CutPrefix(base, sw[0]); ok {
				return sw[1] + rest
			}
		}
		r, n := utf8.DecodeRuneInString(base)
		return "Hi, " + string(unicode.ToLower(r)) + base[n:]
	case 1:
		body, punct := splitFinalPunct(base)
		return body + ", please" + punct
	case 2:
		body, punct := splitFinalPunct(strings.ToLower(base))
		if punct == "" {
			return body + "?"
		}
		return body
	default:
		return paraphrase(paraphrase(base, 0), 1)
	}
}

// splitFinalPunct splits s into its body and a final ?, . or !.
func splitFinalPunct(s string) (body, punct string) {
	if n := len(s); n > 0 && strings.ContainsAny(s[n-1:], "?.!") {
		return s[:n-1], s[n-1:]
	}
	return s, ""
}

// syllables build the pseudo-words of synthetic new prompts.
var syllables = strings.Fields("ba be bi bo bu da de di do du fa fe fi fo ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo vu za ze zi zo zu")

// newPromptStream is the PCG stream of the prompt generator, so that a
// seed gives other draws here than in SplitExamples.
const newPromptStream = 0x10ad_9e4e_7a7e_0001

// promptGen yields the deterministic prompt sequence of a load run: for a
// given text list, pool size, mix and seed, the same prompts in the same
// order. It is not safe for concurrent use.
type promptGen struct {
	rng   *rand.Rand
	mix   Mix
	pool  []string // the base prompts of repeats and paraphrases
	fresh []string // unused texts for new prompts, taken in order
	taken map[string]bool
}

// newPromptGen shuffles the distinct texts with seed, keeps the first pool
// as the base prompts and the rest, less any that equals a paraphrase of a
// base prompt, for new prompts. It fails when there are fewer than pool
// distinct texts.
func newPromptGen(texts []string, pool int, mix Mix, seed uint64) (*promptGen, error) {
	g := &promptGen{rng: rand.New(rand.NewPCG(seed, newPromptStream)), mix: mix, taken: map[string]bool{}}
	var distinct []string
	for _, t := range texts {
		if !g.taken[t] {
			g.taken[t] = true
			distinct = append(distinct, t)
		}
	}
	if pool < 1 || pool > len(distinct) {
		return nil, fmt.Errorf("--pool %d: want 1 to %d, the number of distinct prompts", pool, len(distinct))
	}
	g.rng.Shuffle(len(distinct), func(i, j int) { distinct[i], distinct[j] = distinct[j], distinct[i] })
	g.pool = distinct[:pool]
	variants := map[string]bool{}
	for _, b := range g.pool {
		for v := range numParaphrases {
			variants[paraphrase(b, v)] = true
		}
	}
	for _, t := range distinct[pool:] {
		if !variants[t] {
			g.fresh = append(g.fresh, t)
		}
	}
	for t := range variants {
		g.taken[t] = true
	}
	return g, nil
}

// next returns the next prompt and its kind.
func (g *promptGen) next() (promptKind, string) {
	switch g.drawKind() {
	case promptRepeat:
		return promptRepeat, g.pool[g.rng.IntN(len(g.pool))]
	case promptParaphrase:
		return promptParaphrase, paraphrase(g.pool[g.rng.IntN(len(g.pool))], g.rng.IntN(numParaphrases))
	default:
		return promptNew, g.newPrompt()
	}
}

// drawKind draws a kind with the probabilities of the mix. A kind with
// share 0 is never drawn, even when the shares sum to a hair under 1.
func (g *promptGen) drawKind() promptKind {
	shares := [numPromptKinds]float64{g.mix.Repeat, g.mix.Paraphrase, g.mix.New}
	x := g.rng.Float64()
	last := promptRepeat
	for k, s := range shares {
		if s == 0 {
			continue
		}
		last = promptKind(k)
		if x < s {
			return last
		}
		x -= s
	}
	return last
}

// newPrompt returns a text never returned or pooled before: the next
// unused text, then synthetic questions about pseudo-words ("What does
// the kobazu rifeno lemita mean?"), which share too little with each other
// or with real prompts to hit in the semantic tier.
func (g *promptGen) newPrompt() string {
	if len(g.fresh) > 0 {
		t := g.fresh[0]
		g.fresh = g.fresh[1:]
		return t
	}
	for {
		words := make([]string, 3)
		for i := range words {
			var b strings.Builder
			for range 3 {
				b.WriteString(syllables[g.rng.IntN(len(syllables))])
			}
			words[i] = b.String()
		}
		t := "What does the " + strings.Join(words, " ") + " mean?"
		if !g.taken[t] {
			g.taken[t] = true
			return t
		}
	}
}

// KindStats counts the outcomes of the prompts of one kind.
type KindStats struct {
	// Sent is the number of prompts of the kind sent (and completed).
	Sent int `json:"sent"`
	// ExactHits, SemanticHits, Misses, Bypassed and Errors split Sent by
	// outcome.
	ExactHits    int `json:"exact_hits"`
	SemanticHits int `json:"semantic_hits"`
	Misses       int `json:"misses"`
	Bypassed     int `json:"bypassed"`
	Errors       int `json:"errors"`
}

// LoadReport is the result of "bench load", written to load.json.
type LoadReport struct {
	// Target is the proxy's base URL, or "in-process" for a proxy the run
	// started itself, described by Proxy (nil with a target).
	Target string         `json:"target"`
	Proxy  *ProxySettings `json:"proxy,omitempty"`
	// Data is the prompt file, or "built-in" for the built-in list.
	Data        string `json:"data"`
	Model       string `json:"model"`
	Seed        uint64 `json:"seed"`
	Concurrency int    `json:"concurrency"`
	// Pool is the number of base prompts of repeats and paraphrases; Mix
	// the share of each kind of prompt.
	Pool int `json:"pool"`
	Mix  Mix `json:"mix"`
	// RequestLimit and DurationLimitSeconds are the limits; StoppedBy is
	// "requests" when all RequestLimit requests were sent, else
	// "duration".
	RequestLimit         int     `json:"request_limit"`
	DurationLimitSeconds float64 `json:"duration_limit_seconds"`
	StoppedBy            string  `json:"stopped_by"`
	// EntriesAtStart is the target cache's entry count before the run.
	EntriesAtStart int `json:"entries_at_start"`
	// Requests is the number of requests sent, all completed: Requests =
	// Answered + Errors.
	Requests int `json:"requests"`
	Answered int `json:"answered"`
	// DurationSeconds runs from the first request sent to the last answer
	// read; Throughput is Requests / DurationSeconds.
	DurationSeconds float64 `json:"duration_seconds"`
	Throughput      float64 `json:"throughput_rps"`
	// Hits, ExactHits, SemanticHits, Misses and Bypassed split Answered by
	// outcome.
	Hits         int `json:"hits"`
	ExactHits    int `json:"exact_hits"`
	SemanticHits int `json:"semantic_hits"`
	Misses       int `json:"misses"`
	Bypassed     int `json:"bypassed"`
	// HitRate, ExactHitRate and SemanticHitRate are shares of Answered;
	// nil when nothing was answered.
	HitRate         *float64 `json:"hit_rate"`
	ExactHitRate    *float64 `json:"exact_hit_rate"`
	SemanticHitRate *float64 `json:"semantic_hit_rate"`
	// Repeat, Paraphrase and New split the requests by prompt kind.
	Repeat     KindStats `json:"repeat"`
	Paraphrase KindStats `json:"paraphrase"`
	New        KindStats `json:"new"`
	// Latency covers every answered request; the others one outcome each.
	Latency            Latency `json:"latency"`
	ExactHitLatency    Latency `json:"exact_hit_latency"`
	SemanticHitLatency Latency `json:"semantic_hit_latency"`
	MissLatency        Latency `json:"miss_latency"`
	BypassLatency      Latency `json:"bypass_latency"`
	// Errors counts requests without a valid answer, split by kind as in
	// ReplayReport; ErrorSamples holds the first few, each naming the
	// request number (1-based, in sending order).
	ErrorTally
}

func runLoadCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("semcache bench load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o loadOptions
	var mix string
	fs.StringVar(&o.Target, "target", "", "base `URL` of a running proxy on loopback, e.g. http://127.0.0.1:8080/v1; omitted: start a proxy in this process for the run")
	addProxyFlags(fs, &o.Proxy)
	fs.IntVar(&o.Requests, "requests", 2000, "send at most `N` requests (1 to 1000000)")
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "stop sending after `D`; requests in flight then finish (each within --timeout)")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "requests in flight")
	fs.StringVar(&mix, "mix", defaultMix, "shares of repeated pool prompts, paraphrases of pool prompts and new prompts; they must sum to 1")
	fs.IntVar(&o.Pool, "pool", 50, "number of base prompts that repeats and paraphrases draw from")
	fs.StringVar(&o.Data, "data", "", "prompt `FILE` (default: 50 built-in FAQ-style questions)")
	fs.StringVar(&o.Format, "format", queryLogLabelled, "format of --data: labelled (CSV with a header, or TSV if it ends in .tsv; labels are not used) or lines (one prompt per line)")
	fs.StringVar(&o.TextCol, "text-col", "text", "header name of the text column (labelled)")
	fs.StringVar(&o.LabelCol, "label-col", "category", "header name of the label column (labelled; it must exist)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the prompt sequence: the same seed sends the same prompts in the same order")
	fs.StringVar(&o.Model, "model", "sim-1", "model field of each request")
	fs.StringVar(&o.APIKey, "api-key", "sk-load", "bearer token sent to the proxy (empty = no Authorization header)")
	fs.DurationVar(&o.Timeout, "timeout", 60*time.Second, "timeout of each request")
	fs.DurationVar(&o.Wait, "wait", 10*time.Second, "how long to wait for the target's /healthz to answer before starting")
	fs.StringVar(&o.Out, "out", "", "optional `DIR` for load.json (created if missing)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: semcache bench load [--target URL] [flags]\n\n"+
			"Sends a deterministic mix of repeated, paraphrased and new prompts to URL/chat/completions\n"+
			"with --concurrency requests in flight, until --requests are sent or --duration has passed,\n"+
			"whichever comes first, and reports throughput, hit rates and latency percentiles. Without\n"+
			"--target it starts a proxy in the process (flags marked in-process proxy) and stops it after.\n\n"+
			"Paraphrases reword a pool prompt lightly and deterministically, one of: swap the opening\n"+
			"(\"How do I\" <-> \"How can I\", \"What is\" -> \"What's\", ... or prefix \"Hi, \"), add \", please\",\n"+
			"lower-case and drop the final punctuation, or the first two together. New prompts are the\n"+
			"unused texts of --data, then synthetic questions that hit nothing.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	m, err := parseMix(mix)
	if err != nil {
		return usageErrorf("%v", err)
	}
	o.Mix = m
	set := setFlags(fs)
	if err := o.validate(set); err != nil {
		return err
	}
	noteDefaultThreshold(stderr, o.Target, o.Proxy, set)
	rep, err := load(ctx, o, stderr)
	if err != nil {
		return err
	}
	return report(stdout, o.Out, "load.json", rep, writeLoadSummary)
}

// validate checks the flags that do not need the data; set holds the names
// of the flags given on the command line.
func (o loadOptions) validate(set map[string]bool) error {
	switch {
	case o.Requests < 1 || o.Requests > maxLoadRequests:
		return usageErrorf("--requests must be 1 to %d, got %d", maxLoadRequests, o.Requests)
	case o.Duration <= 0:
		return usageErrorf("--duration must be > 0, got %v", o.Duration)
	case o.Concurrency < 1:
		return usageErrorf("--concurrency must be >= 1, got %d", o.Concurrency)
	case o.Pool < 1:
		return usageErrorf("--pool must be >= 1, got %d", o.Pool)
	case o.Format != queryLogLabelled && o.Format != queryLogLines:
		return usageErrorf("--format %q: want labelled or lines", o.Format)
	case o.Data == "" && set["format"]:
		return usageErrorf("--format needs --data")
	case o.Format == queryLogLabelled && (o.TextCol == "" || o.LabelCol == ""):
		return usageErrorf("--text-col and --label-col must not be empty")
	case o.Timeout <= 0:
		return usageErrorf("--timeout must be > 0, got %v", o.Timeout)
	}
	if o.Data == "" && o.Pool > len(builtinPrompts) {
		return usageErrorf("--pool %d: the built-in list has %d prompts; use --data for more", o.Pool, len(builtinPrompts))
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

// load runs the load against o.Target or, when it is empty, against a
// proxy started in the process for the run. Progress and the in-process
// proxy's warnings go to stderr.
func load(ctx context.Context, o loadOptions, stderr io.Writer) (*LoadReport, error) {
	errw := &syncWriter{w: stderr}
	var rep *LoadReport
	settings, err := onTarget(ctx, o.Target, o.Proxy, errw, func(baseURL string) error {
		lo := o
		lo.Target = baseURL
		var err error
		rep, err = runLoad(ctx, lo, newLoopbackClient(lo.Timeout, lo.Concurrency), errw)
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

// loadPrompts returns the texts of o.Data, or the built-in prompts.
func loadPrompts(o loadOptions) ([]string, error) {
	if o.Data == "" {
		return builtinPrompts, nil
	}
	exs, err := loadQueries(o.Data, o.Format, o.TextCol, o.LabelCol)
	if err != nil {
		return nil, err
	}
	texts := make([]string, len(exs))
	for i, e := range exs {
		texts[i] = e.Text
	}
	return texts, nil
}

// loadJob is one request of a load run.
type loadJob struct {
	n    int // 1-based, in sending order
	kind promptKind
	text string
}

// loadDone is the outcome of one loadJob.
type loadDone struct {
	kind promptKind
	r    replayResult
}

// runLoad sends the prompt sequence of o to the proxy at o.Target with
// o.Concurrency workers until o.Requests are sent or o.Duration has
// passed; requests in flight then finish, each bounded by the client's
// timeout. Progress goes to progress. Cancelling ctx aborts the run with
// an error.
func runLoad(ctx context.Context, o loadOptions, client *http.Client, progress io.Writer) (*LoadReport, error) {
	rq, err := newRequester(client, o.Target, o.Model, o.APIKey)
	if err != nil {
		return nil, err
	}
	texts, err := loadPrompts(o)
	if err != nil {
		return nil, err
	}
	gen, err := newPromptGen(texts, o.Pool, o.Mix, o.Seed)
	if err != nil {
		return nil, err
	}
	entries, err := preflight(ctx, client, o.Target, o.Wait)
	if err != nil {
		return nil, err
	}
	if entries > 0 {
		fmt.Fprintf(progress, "warning: the target cache already holds %d entries, so this run does not start cold; start a fresh proxy for reproducible figures\n", entries)
	}

	start := time.Now()
	sending, stopSending := context.WithTimeout(ctx, o.Duration)
	defer stopSending()
	jobs := make(chan loadJob)
	done := make(chan loadDone, o.Concurrency)
	var workers sync.WaitGroup
	for range o.Concurrency {
		workers.Go(func() {
			for j := range jobs {
				done <- loadDone{kind: j.kind, r: rq.send(ctx, j.text, "request "+strconv.Itoa(j.n))}
			}
		})
	}
	go func() { // feeder: ends after o.Requests jobs or when sending is done
		defer close(jobs)
		for n := 1; n <= o.Requests && sending.Err() == nil; n++ {
			kind, text := gen.next()
			select {
			case jobs <- loadJob{n: n, kind: kind, text: text}:
			case <-sending.Done():
				return
			}
		}
	}()
	go func() { // closes done once every worker has returned
		workers.Wait()
		close(done)
	}()
	meter := newProgressMeter(progress, "load", "requests", o.Requests, o.Duration)
	var results []loadDone
	hits, errs := 0, 0
	for d := range done {
		results = append(results, d)
		switch d.r.kind {
		case kindExact, kindSemantic:
			hits++
		case kindError:
			errs++
		}
		meter.update(len(results), hits, errs)
	}
	meter.finish(len(results), hits, errs)
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load stopped after %d requests: %w", len(results), err)
	}
	rep := summariseLoad(results, elapsed)
	rep.EntriesAtStart = entries
	rep.Target, rep.Model, rep.Seed, rep.Concurrency = o.Target, o.Model, o.Seed, o.Concurrency
	rep.Data = o.Data
	if rep.Data == "" {
		rep.Data = "built-in"
	}
	rep.Pool, rep.Mix = o.Pool, o.Mix
	rep.RequestLimit, rep.DurationLimitSeconds = o.Requests, o.Duration.Seconds()
	rep.StoppedBy = "requests"
	if rep.Requests < o.Requests {
		rep.StoppedBy = "duration"
	}
	return rep, nil
}

// summariseLoad computes the report counts from the results, in completion
// order, of a run that lasted elapsed.
func summariseLoad(results []loadDone, elapsed time.Duration) *LoadReport {
	rep := &LoadReport{Requests: len(results), DurationSeconds: elapsed.Seconds()}
	var allMS, exactMS, semMS, missMS, bypassMS []float64
	for _, d := range results {
		ks := rep.kindStats(d.kind)
		ks.Sent++
		r := d.r
		switch r.kind {
		case kindError:
			ks.Errors++
			rep.add(r.errKind, r.errMsg)
			continue
		case kindExact:
			ks.ExactHits++
			rep.ExactHits++
			exactMS = append(exactMS, r.latencyMS)
		case kindSemantic:
			ks.SemanticHits++
			rep.SemanticHits++
			semMS = append(semMS, r.latencyMS)
		case kindMiss:
			ks.Misses++
			rep.Misses++
			missMS = append(missMS, r.latencyMS)
		case kindBypass:
			ks.Bypassed++
			rep.Bypassed++
			bypassMS = append(bypassMS, r.latencyMS)
		}
		rep.Answered++
		allMS = append(allMS, r.latencyMS)
	}
	rep.Hits = rep.ExactHits + rep.SemanticHits
	rep.HitRate = ratio(rep.Hits, rep.Answered)
	rep.ExactHitRate = ratio(rep.ExactHits, rep.Answered)
	rep.SemanticHitRate = ratio(rep.SemanticHits, rep.Answered)
	if elapsed > 0 {
		rep.Throughput = float64(rep.Requests) / elapsed.Seconds()
	}
	rep.Latency = latencyOf(allMS)
	rep.ExactHitLatency = latencyOf(exactMS)
	rep.SemanticHitLatency = latencyOf(semMS)
	rep.MissLatency = latencyOf(missMS)
	rep.BypassLatency = latencyOf(bypassMS)
	return rep
}

// kindStats returns the counters of prompt kind k.
func (rep *LoadReport) kindStats(k promptKind) *KindStats {
	switch k {
	case promptRepeat:
		return &rep.Repeat
	case promptParaphrase:
		return &rep.Paraphrase
	default:
		return &rep.New
	}
}

// writeLoadSummary writes the human-readable load report.
func writeLoadSummary(w io.Writer, rep *LoadReport) error {
	pct := func(r *float64) string {
		if r == nil {
			return "-"
		}
		return strconv.FormatFloat(100**r, 'f', 2, 64) + "%"
	}
	fmt.Fprintf(w, "load against %s (model %s, concurrency %d, seed %d)\n", rep.Target, rep.Model, rep.Concurrency, rep.Seed)
	if rep.Proxy != nil {
		fmt.Fprintf(w, "in-process proxy: %s\n", rep.Proxy)
	}
	if rep.EntriesAtStart > 0 {
		fmt.Fprintf(w, "WARNING: the cache held %d entries before the run (not a cold start)\n", rep.EntriesAtStart)
	}
	fmt.Fprintf(w, "prompts               %s, pool %d, mix %s\n", rep.Data, rep.Pool, rep.Mix)
	fmt.Fprintf(w, "limits                %d requests or %gs; stopped by %s\n", rep.RequestLimit, rep.DurationLimitSeconds, rep.StoppedBy)
	fmt.Fprintf(w, "requests              %d (answered %d, errors %d) in %.3fs\n", rep.Requests, rep.Answered, rep.Errors, rep.DurationSeconds)
	fmt.Fprintf(w, "throughput            %.1f req/s\n", rep.Throughput)
	fmt.Fprintf(w, "hits                  %d (hit rate %s of answered): exact %d (%s), semantic %d (%s)\n",
		rep.Hits, pct(rep.HitRate), rep.ExactHits, pct(rep.ExactHitRate), rep.SemanticHits, pct(rep.SemanticHitRate))
	fmt.Fprintf(w, "misses                %d\n", rep.Misses)
	fmt.Fprintf(w, "bypassed              %d\n", rep.Bypassed)
	fmt.Fprintln(w, "by prompt kind")
	tw := newTable(w)
	fmt.Fprint(tw, "kind\tsent\texact\tsemantic\tmiss\tbypass\terrors\t\n")
	for k := range numPromptKinds {
		ks := rep.kindStats(k)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", k, ks.Sent, ks.ExactHits, ks.SemanticHits, ks.Misses, ks.Bypassed, ks.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeLatencyTable(w, []namedLatency{{"all", rep.Latency}, {"exact hit", rep.ExactHitLatency},
		{"semantic hit", rep.SemanticHitLatency}, {"miss", rep.MissLatency}, {"bypass", rep.BypassLatency}}); err != nil {
		return err
	}
	writeErrors(w, rep.Errors, rep.ErrorsByKind, rep.ErrorSamples)
	return nil
}
