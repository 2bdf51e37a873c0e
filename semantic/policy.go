package semantic

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Policy selects how the semantic tier decides whether to serve a
// neighbour.
type Policy string

// Policies, as given to --policy.
const (
	// PolicyStatic serves a neighbour whose cosine similarity reaches
	// Config.Threshold (the default).
	PolicyStatic Policy = "static"
	// PolicyAdaptive learns from verified answers where neighbours are
	// right, and serves so that at most AdaptiveConfig.MaxErrorRate of the
	// requests get a wrong cached answer (see AdaptiveConfig).
	PolicyAdaptive Policy = "adaptive"
)

// AdaptiveConfig configures PolicyAdaptive. New copies it; zero values mean
// the defaults on each field, except Judge, which is required.
//
// For a request whose nearest neighbour (at cosine similarity s, not below
// Floor, past the guards) is entry E, the cache either serves E's answer or
// explores: it answers from upstream and queues a verification (Judge) of
// E's answer against the fresh one, off the request path. Rule decides
// which, from the verdicts so far:
//
//   - RuleBudget (the default) learns, from all verdicts, the wrong rate
//     per similarity and stratum (see Stratum) and serves the neighbours
//     likeliest to be right first, as many as the bound allows (see
//     RuleBudget). Every answer from upstream is stored with its vector, as
//     under PolicyStatic.
//   - RuleEntry is vCache's (arXiv:2502.03771): per entry, a logistic fit
//     of its observations (FitObservations) and an exploration probability
//     τ̂ (ExploreProbability), always exploring while E has fewer than
//     MinObservations observations. The verdict adds (s, right?) to E's
//     observations and refits E; a wrong verdict also stores the fresh
//     answer as an entry of its own (with the request's vector), and a
//     right one leaves only an exact-tier copy of the fresh answer.
//
// benchmarks/RESULTS.md "Adaptive policy" measures both against static
// thresholds.
type AdaptiveConfig struct {
	// MaxErrorRate is δ in (0, 1): the largest fraction of requests that
	// may be answered with a wrong cached answer. 0 means 0.01 (issue 7's
	// default). A request may lower it (Options.MaxErrorRate), never
	// raise it.
	MaxErrorRate float64
	// MinObservations is, under RuleEntry, the number of verified
	// observations an entry needs before it is ever served from the
	// semantic tier. 0 means 4 (issue 7's default; benchmarks/RESULTS.md
	// measures 1 too).
	MinObservations int
	// MaxObservations bounds, under RuleEntry, the observations kept per
	// entry (the newest are kept). 0 means 256.
	MaxObservations int
	// Floor is the hard cosine-similarity floor in (0, 1]: a neighbour
	// below it is neither served nor explored (the request is a plain miss
	// and its answer is stored). 0 means 0.5, the lower end of the
	// threshold sweeps in benchmarks/RESULTS.md (nothing below it was
	// measured).
	Floor float64
	// Epsilons is the ε grid of ExploreProbability; nil means
	// DefaultEpsilons.
	Epsilons []float64
	// Seed seeds the exploration draws (a PCG source), so that a replay is
	// reproducible. 0 means a random seed.
	Seed uint64
	// Judge verifies explored answers; required.
	Judge Judge
	// JudgeWorkers is the number of goroutines running verifications. 0
	// means 2.
	JudgeWorkers int
	// JudgeQueue bounds the verifications waiting for a worker; one that
	// does not fit is dropped and counted in Stats.JudgeDropped (no
	// observation, no new entry). 0 means 1024.
	JudgeQueue int
	// JudgeTimeout bounds one verification. 0 means 30 seconds.
	JudgeTimeout time.Duration
	// Rule is how the error budget is spent: RuleBudget (the default, also
	// for "") or RuleEntry.
	Rule Allocation
	// Audit is, under RuleBudget, the probability in (0, 1) of exploring a
	// neighbour that would be served, so that the wrong rate where the
	// cache serves keeps being measured. 0 means 0.01: each audit turns a
	// would-be hit into a miss, so the rate is the share of hits it costs.
	Audit float64
}

// Allocation selects how PolicyAdaptive spends its error budget.
type Allocation string

// Rules, as given to --adaptive-rule.
const (
	// RuleBudget learns where to serve from all verdicts at once. Per
	// stratum (whether the second neighbour's answer agrees, see Stratum)
	// and similarity bin (0.02 wide from Floor up) it keeps the verdicts
	// and the number of lookups whose neighbour fell there (decayed over
	// the last 100 or so), estimates each bin's wrong rate (Jeffreys'
	// prior, made monotone in similarity by pool-adjacent-violators), and
	// serves the bins in increasing wrong rate as long as the upper
	// confidence bound of the resulting error rate is at most δ (see
	// budget.served). A neighbour elsewhere is explored: its request goes
	// upstream anyway, so the verdict costs only the judge. A neighbour
	// that would be served is explored with probability Audit. With a
	// store that shares verdict counts (index.Redis: AddVerdict, Verdicts)
	// the verdicts are pooled by every process using it and read back at
	// New, so a restart resumes; the lookup counts are per process. With
	// index.Memory everything is per process.
	RuleBudget Allocation = "budget"
	// RuleEntry is vCache's rule: per entry, explore with probability τ̂
	// from the entry's own fit (ExploreProbability); the observations and
	// fits are kept in the store, shared by replicas.
	RuleEntry Allocation = "entry"
)

// stateStore is what PolicyAdaptive needs of the Store beyond Store: the
// per-entry observations and fit, kept for the entry's lifetime outside its
// vector (index.Memory and index.Redis have it).
type stateStore interface {
	AddObservation(ctx context.Context, key string, obs []byte, max int) ([][]byte, bool, error)
	SetFit(ctx context.Context, key string, fit []byte) (bool, error)
	Fit(ctx context.Context, key string) ([]byte, bool, error)
}

// verdictStore is what RuleBudget uses of a Store that shares its verdict
// counts between processes (index.Redis has it): the counts are named by
// budget.field.
type verdictStore interface {
	AddVerdict(ctx context.Context, field string) (map[string]int64, error)
	Verdicts(ctx context.Context) (map[string]int64, error)
}

// adaptive is the running state of PolicyAdaptive.
type adaptive struct {
	cfg   AdaptiveConfig
	state stateStore
	// budget is the RuleBudget state (nil under RuleEntry), and shared
	// the store keeping its verdict counts for every process (nil when the
	// store keeps none: the counts are then this process's own).
	budget *budget
	shared verdictStore

	rmu sync.Mutex
	rng *rand.Rand

	jobs    chan verification
	pending sync.WaitGroup // queued or running verifications
	stop    sync.Once
	done    sync.WaitGroup // workers
	// base is cancelled by Close: verifications in flight stop and queued
	// ones are dropped.
	base       context.Context
	cancelBase context.CancelFunc
	// cmu guards closed against the close of jobs: verify holds it for
	// reading while it sends.
	cmu    sync.RWMutex
	closed bool
}

func newAdaptive(cfg AdaptiveConfig, store Store) (*adaptive, error) {
	st, ok := store.(stateStore)
	if !ok {
		return nil, fmt.Errorf("semantic: Policy adaptive: the store (%T) keeps no per-entry observations", store)
	}
	if cfg.Judge == nil {
		return nil, fmt.Errorf("semantic: Adaptive.Judge: required for Policy adaptive")
	}
	if cfg.MaxErrorRate == 0 {
		cfg.MaxErrorRate = 0.01
	}
	if !(cfg.MaxErrorRate > 0 && cfg.MaxErrorRate < 1) {
		return nil, fmt.Errorf("semantic: Adaptive.MaxErrorRate %v: want a fraction in (0, 1)", cfg.MaxErrorRate)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"MinObservations", cfg.MinObservations}, {"MaxObservations", cfg.MaxObservations},
		{"JudgeWorkers", cfg.JudgeWorkers}, {"JudgeQueue", cfg.JudgeQueue}} {
		if f.v < 0 {
			return nil, fmt.Errorf("semantic: Adaptive.%s %d: must not be negative", f.name, f.v)
		}
	}
	cfg.MinObservations = cmp.Or(cfg.MinObservations, 4)
	cfg.MaxObservations = cmp.Or(cfg.MaxObservations, 256)
	cfg.JudgeWorkers = cmp.Or(cfg.JudgeWorkers, 2)
	cfg.JudgeQueue = cmp.Or(cfg.JudgeQueue, 1024)
	if cfg.JudgeTimeout < 0 {
		return nil, fmt.Errorf("semantic: Adaptive.JudgeTimeout %v: must not be negative", cfg.JudgeTimeout)
	}
	cfg.JudgeTimeout = cmp.Or(cfg.JudgeTimeout, 30*time.Second)
	if cfg.Floor == 0 {
		cfg.Floor = 0.5
	}
	if !(cfg.Floor > 0 && cfg.Floor <= 1) {
		return nil, fmt.Errorf("semantic: Adaptive.Floor %v: want a cosine similarity in (0, 1]", cfg.Floor)
	}
	for _, e := range cfg.Epsilons {
		if !(e > 0 && e < 1) {
			return nil, fmt.Errorf("semantic: Adaptive.Epsilons: %v is not in (0, 1)", e)
		}
	}
	switch cfg.Rule {
	case "", RuleBudget:
		cfg.Rule = RuleBudget
	case RuleEntry:
	default:
		return nil, fmt.Errorf("semantic: Adaptive.Rule %q: want entry or budget", cfg.Rule)
	}
	if cfg.Audit == 0 {
		cfg.Audit = 0.01
	}
	if !(cfg.Audit > 0 && cfg.Audit < 1) {
		return nil, fmt.Errorf("semantic: Adaptive.Audit %v: want a probability in (0, 1)", cfg.Audit)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	a := &adaptive{cfg: cfg, state: st, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		jobs: make(chan verification, cfg.JudgeQueue)}
	a.base, a.cancelBase = context.WithCancel(context.Background())
	if cfg.Rule == RuleBudget {
		a.budget = newBudget(cfg.Floor)
		a.shared, _ = store.(verdictStore)
	}
	return a, nil
}

// draw returns a uniform number in [0, 1).
func (a *adaptive) draw() float64 {
	a.rmu.Lock()
	defer a.rmu.Unlock()
	return a.rng.Float64()
}

// delta is the error bound in force for o: the stricter of the configured
// one and the request's.
func (a *adaptive) delta(o Options) float64 {
	if o.MaxErrorRate > 0 {
		return min(o.MaxErrorRate, a.cfg.MaxErrorRate)
	}
	return a.cfg.MaxErrorRate
}

// exploration is the pending verification of an explored neighbour; it
// rides on the miss Result from the lookup to the store.
type exploration struct {
	entry      string  // the neighbour's key
	similarity float64 // request to neighbour
	cached     []byte  // the neighbour's answer
	stratum    Stratum // RuleBudget's stratum of the lookup
}

// verification is one queued judge run.
type verification struct {
	exploration
	id    Identity
	o     Options
	fresh Upstream
	chunk []string
	vec   []float32
	// tags are the request's entry tags (WithEntryTags), applied again
	// when the verification re-stores the fresh answer.
	tags []string
}

// decide reports whether to explore a request at similarity s to entry key
// (of stratum k, used by RuleBudget) rather than serve it, and the
// estimated P(correct | s) used (NaN when the neighbour could not be served
// at all: outside what RuleBudget serves, or an entry with too few
// observations under RuleEntry).
func (c *Cache) decide(ctx context.Context, key string, k Stratum, s float64, o Options) (explore bool, pCorrect float64) {
	a := c.adaptive
	if a.budget != nil {
		serve, q := a.budget.serves(k, s, a.delta(o))
		if !serve {
			return true, math.NaN()
		}
		return a.draw() < a.cfg.Audit, 1 - q
	}
	raw, ok, err := a.state.Fit(ctx, key)
	if err != nil {
		c.stats.LookupErrors.Add(1)
		c.faults.warn("read entry fit failed", "key", key, "err", err)
		return true, math.NaN()
	}
	var f Fit
	if !ok || json.Unmarshal(raw, &f) != nil || f.N < a.cfg.MinObservations {
		return true, math.NaN()
	}
	tau := ExploreProbability(f, s, a.delta(o), a.cfg.Epsilons)
	return a.draw() < tau, f.Correct(s)
}

// verify queues the verification of an explored answer, or counts it as
// dropped when the queue is full.
func (c *Cache) verify(v verification) {
	a := c.adaptive
	a.cmu.RLock()
	defer a.cmu.RUnlock()
	if a.closed {
		c.stats.JudgeDropped.Add(1)
		return
	}
	a.pending.Add(1)
	select {
	case a.jobs <- v:
	default:
		a.pending.Done()
		c.stats.JudgeDropped.Add(1)
	}
}

// startJudges starts the verification workers.
func (a *adaptive) startJudges(c *Cache) {
	for range a.cfg.JudgeWorkers {
		a.done.Add(1)
		go func() {
			defer a.done.Done()
			for v := range a.jobs {
				if a.base.Err() != nil {
					c.stats.JudgeDropped.Add(1) // closed: dropped, not judged
				} else {
					c.settle(v)
				}
				a.pending.Done()
			}
		}()
	}
}

// settle runs one verification: judge, record the observation, refit, and
// store the fresh answer as an entry of its own when the cached one was
// wrong. A judge error counts as wrong.
//
// A wrong verdict (answers that differ, not a judge error) is also the new
// entry's first observation: the cached prompt, at the same similarity,
// would get the new answer wrong, as the answers differ both ways. This
// gives a young entry the wrong neighbour its fit most needs to find where
// it may serve.
func (c *Cache) settle(v verification) {
	a := c.adaptive
	ctx, cancel := context.WithTimeout(a.base, a.cfg.JudgeTimeout)
	defer cancel()
	c.stats.JudgeCalls.Add(1)
	right, err := a.cfg.Judge.Judge(ctx, JudgeInput{Prompt: v.id.Prompt, Cached: v.cached, Fresh: v.fresh.Body})
	if a.base.Err() != nil {
		// Closed while judging: an unfinished verdict is no verdict.
		c.stats.JudgeDropped.Add(1)
		return
	}
	if err != nil {
		c.stats.JudgeErrors.Add(1)
		c.faults.warn("judge failed; counted as wrong", "err", err)
		right = false
	}
	if right {
		c.stats.VerifiedRight.Add(1)
	} else {
		c.stats.VerifiedWrong.Add(1)
	}
	if a.budget != nil {
		// RuleBudget learns from the verdict alone: the fresh answer was
		// stored with its vector at the miss.
		if a.shared != nil {
			counts, err := a.shared.AddVerdict(ctx, a.budget.field(v.stratum, v.similarity, right))
			if err == nil {
				a.budget.load(counts) // every process's verdicts, this one's included
				return
			}
			c.stats.StoreErrors.Add(1)
			c.faults.warn("record shared verdict failed; kept in this process", "err", err)
		}
		a.budget.record(v.stratum, v.similarity, right)
		return
	}
	c.observe(ctx, v.entry, Observation{Similarity: v.similarity, Correct: right})
	if !right && v.vec != nil {
		// The neighbour's answer does not fit this request: make the
		// request an entry of its own, findable by its vector.
		stored, _ := c.keep(ctx, v.id, v.o, v.fresh, v.chunk, v.vec)
		if stored && len(v.tags) > 0 {
			// Storing replaced the exact-tier copy and dropped its tags:
			// an entry no invalidation can find must not stay.
			ttl := c.cfg.TTL
			if v.o.TTL > 0 {
				ttl = v.o.TTL
			}
			if terr := c.TagEntry(ctx, v.id.Key, v.tags, ttl); terr != nil && !errors.Is(terr, ErrUnsupported) {
				c.faults.warn("tagging a re-stored entry failed; deleting it", "key", v.id.Key, "err", terr)
				_, _ = c.store.Delete(ctx, v.id.Key)
				stored = false
			}
		}
		if stored && err == nil {
			c.observe(ctx, v.id.Key, Observation{Similarity: v.similarity, Correct: false})
		}
	}
}

// observe appends o to the observations of the entry under key and stores
// the entry's new fit. Failures are logged and counted as store errors; an
// entry that has gone in between is skipped.
func (c *Cache) observe(ctx context.Context, key string, o Observation) {
	a := c.adaptive
	list, ok, err := a.state.AddObservation(ctx, key, encodeObservation(o), a.cfg.MaxObservations)
	if err != nil {
		c.stats.StoreErrors.Add(1)
		c.faults.warn("record observation failed", "key", key, "err", err)
		return
	}
	if !ok {
		return
	}
	obs := make([]Observation, 0, len(list))
	for _, b := range list {
		if o, err := decodeObservation(b); err == nil {
			obs = append(obs, o)
		}
	}
	raw, _ := json.Marshal(FitObservations(obs))
	if _, err := a.state.SetFit(ctx, key, raw); err != nil {
		c.stats.StoreErrors.Add(1)
		c.faults.warn("store entry fit failed", "key", key, "err", err)
	}
}

// Drain waits until every queued verification has been settled. Replays
// call it after each request to be deterministic; a server never needs to.
// It returns at once for PolicyStatic.
func (c *Cache) Drain() {
	if c.adaptive != nil {
		c.adaptive.pending.Wait()
	}
}

// Close stops the verification workers: verifications in flight are
// cancelled and queued ones dropped, all counted in Stats.JudgeDropped and
// none recorded (shutting down must not wait on a slow judge, and an
// unfinished verification is not a "wrong" verdict). Call Drain first to
// settle them instead. Requests made after Close are answered as before but
// queue no verification. It is a no-op for PolicyStatic and safe to call
// more than once and concurrently with requests.
func (c *Cache) Close() {
	if a := c.adaptive; a != nil {
		a.stop.Do(func() {
			a.cancelBase()
			a.cmu.Lock()
			a.closed = true
			close(a.jobs)
			a.cmu.Unlock()
			a.done.Wait()
		})
	}
}
