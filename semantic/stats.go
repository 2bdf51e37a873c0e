package semantic

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/semcache/semcache/index"
)

// Stats are the cache's counters since start. Every field is safe for
// concurrent use; read them with Load. They carry no dependency so that the
// api package can export them to JSON and Prometheus at the edge.
type Stats struct {
	// Requests counts requests that went through Do or Lookup (bypasses
	// are not included).
	Requests atomic.Int64
	// ExactHits and SemanticHits count hits by tier.
	ExactHits    atomic.Int64
	SemanticHits atomic.Int64
	// Misses counts requests that went upstream, through their own call or
	// a coalesced one, including those whose upstream call failed (502/504)
	// and those whose client went away while waiting. Every request is
	// counted once: Requests = ExactHits + SemanticHits + Misses.
	Misses atomic.Int64
	// Bypasses counts requests the proxy forwarded without the cache
	// (cache off, not cacheable); the proxy increments it.
	Bypasses atomic.Int64
	// UpstreamCalls counts calls to the upstream made by the cache; fewer
	// than Misses when concurrent identical misses were coalesced.
	UpstreamCalls atomic.Int64
	// UpstreamErrors counts upstream calls that failed (unreachable, timed
	// out) or answered with a status other than 200 (a 429 or 500 counts).
	UpstreamErrors atomic.Int64
	// LookupErrors counts embedder and store failures on the read path;
	// each one made the request go upstream (fail open).
	LookupErrors atomic.Int64
	// StoreErrors counts answers that could not be stored.
	StoreErrors atomic.Int64
	// Unstored counts 200 answers that were relayed but not stored
	// because they are not complete, well-formed chat completions (see
	// Cacheable).
	Unstored atomic.Int64
	// LeaseWaits counts misses that found another process's lease on
	// their key (see Leaser) and waited; LeaseServed those of them the
	// holder's stored entry answered (misses with no upstream call here);
	// LeaseFallbacks those that made their own call instead (the holder
	// died and this process took the lease over, the holder's answer was
	// not stored, the wait bound passed, or Redis failed).
	LeaseWaits     atomic.Int64
	LeaseServed    atomic.Int64
	LeaseFallbacks atomic.Int64
	// PromptTokensSaved and CompletionTokensSaved add up the usage of the
	// entries that served hits.
	PromptTokensSaved     atomic.Int64
	CompletionTokensSaved atomic.Int64
	// CostSavedMicroUSD adds up, in millionths of a US dollar, what the
	// usage of the entries that served hits costs at their model's price
	// (Config.Pricing), each hit's cost rounded to the nearest
	// micro-dollar. It stays 0 without a pricing table.
	CostSavedMicroUSD atomic.Int64
	// UnpricedHits counts hits whose entry's model has no price in the
	// table (or, from before models were recorded, no model); their tokens
	// are in the tokens saved but not in the cost saved. It stays 0
	// without a pricing table.
	UnpricedHits atomic.Int64

	// Refusals counts semantic neighbours at or above the threshold that
	// the Comparer refused, by reason: index i counts RefusalReasons[i]
	// (a configured extra token counts as "token"). Read them by name
	// with Refused.
	Refusals [len(RefusalReasons)]atomic.Int64

	// The counters below move under PolicyAdaptive only.

	// Explorations counts misses that had a servable neighbour the policy
	// chose to verify instead of serving (Result.Explored).
	Explorations atomic.Int64
	// JudgeCalls counts verifications run; VerifiedRight and
	// VerifiedWrong their verdicts (JudgeErrors are among the wrong ones);
	// JudgeDropped counts verifications dropped because the queue was full
	// or the cache was closed.
	JudgeCalls    atomic.Int64
	VerifiedRight atomic.Int64
	VerifiedWrong atomic.Int64
	JudgeErrors   atomic.Int64
	JudgeDropped  atomic.Int64
	// EstimatedErrorMicros adds up, in millionths, 1 - P̂(correct | s) of
	// every semantic hit served under PolicyAdaptive: the expected number
	// of wrong answers served, by the policy's estimate (the bin's wrong
	// rate under RuleBudget, the entry's fit under RuleEntry).
	EstimatedErrorMicros atomic.Int64
}

// RefusalReasons is the bounded set of refusal reasons, in the order of
// Stats.Refusals: the label values of semcache_guard_refusals_total.
var RefusalReasons = [...]string{FlipNegation, FlipNumber, FlipLiteral, FlipOpposite, FlipRoles, FlipSubstitution, "token", RefusedContext, RefusedTemplate}

// countGuard counts one refusal by its reason (see Comparer).
func (s *Stats) countGuard(reason string) {
	if strings.HasPrefix(reason, flipToken) {
		reason = "token"
	}
	for i, r := range RefusalReasons {
		if r == reason {
			s.Refusals[i].Add(1)
			return
		}
	}
	s.Refusals[slices.Index(RefusalReasons[:], "token")].Add(1) // an unknown reason of a custom Comparer: counted as a token
}

// Refused returns the refusals counted for reason (one of RefusalReasons).
func (s *Stats) Refused(reason string) int64 {
	for i, r := range RefusalReasons {
		if r == reason {
			return s.Refusals[i].Load()
		}
	}
	return 0
}

// addEstimatedError adds a served hit's estimated probability of being
// wrong.
func (s *Stats) addEstimatedError(p float64) {
	if p >= 0 && p <= 1 {
		s.EstimatedErrorMicros.Add(int64(math.Round(p * 1e6)))
	}
}

// Stats returns the cache's live counters.
func (c *Cache) Stats() *Stats { return &c.stats }

// Snapshot is a point-in-time copy of Stats plus derived figures, in the
// shape of GET /api/v1/cache/stats.
type Snapshot struct {
	Requests     int64   `json:"requests"`
	Hits         int64   `json:"hits"`
	ExactHits    int64   `json:"exact_hits"`
	SemanticHits int64   `json:"semantic_hits"`
	Misses       int64   `json:"misses"`
	Bypasses     int64   `json:"bypasses"`
	HitRate      float64 `json:"hit_rate"` // hits / requests, 0 when no requests
	Entries      int     `json:"entries"`  // -1 when the store could not count
	// StoreBytes is what the entries count against the memory backend's
	// byte bound (--max-bytes); -1 on stores that do not report it.
	StoreBytes int64 `json:"store_bytes"`
	// StoreDiskBytes is the size in bytes of the memory backend's store
	// file in its data directory (--data-dir); -1 without one.
	StoreDiskBytes int64 `json:"store_disk_bytes"`
	UpstreamCalls  int64 `json:"upstream_calls"`
	UpstreamErrors int64 `json:"upstream_errors"`
	LookupErrors   int64 `json:"lookup_errors"`
	StoreErrors    int64 `json:"store_errors"`
	Unstored       int64 `json:"unstored_answers"`
	// LeaseWaits, LeaseServed and LeaseFallbacks: see Stats; 0 on stores
	// that no other process shares.
	LeaseWaits            int64   `json:"lease_waits"`
	LeaseServed           int64   `json:"lease_served"`
	LeaseFallbacks        int64   `json:"lease_fallbacks"`
	PromptTokensSaved     int64   `json:"prompt_tokens_saved"`
	CompletionTokensSaved int64   `json:"completion_tokens_saved"`
	CostSavedUSD          float64 `json:"cost_saved_usd"` // CostSavedMicroUSD / 10⁶
	UnpricedHits          int64   `json:"unpriced_hits"`
	// Evictions counts entries the store dropped to stay within its size
	// bound (the memory backend's LRU); 0 on stores that do not report
	// them (Redis: see INFO evicted_keys).
	Evictions int64 `json:"evictions"`
	// GuardRefusals counts neighbours at or above the threshold that were
	// refused, by reason (see RefusalReasons).
	GuardRefusals GuardRefusals `json:"guard_refusals"`
	// Policy is "static" or "adaptive"; the fields below it are 0 under
	// static.
	Policy        string `json:"policy"`
	Explorations  int64  `json:"explorations"`
	JudgeCalls    int64  `json:"judge_calls"`
	VerifiedRight int64  `json:"verified_right"`
	VerifiedWrong int64  `json:"verified_wrong"`
	JudgeErrors   int64  `json:"judge_errors"`
	JudgeDropped  int64  `json:"judge_dropped"`
	// EstimatedErrorRate is the expected fraction of requests answered
	// wrongly by semantic hits, by the policy's estimate: EstimatedErrorMicros
	// / 10⁶ / requests.
	EstimatedErrorRate float64 `json:"estimated_error_rate"`
	// MaxErrorRate is the configured δ (0 under static).
	MaxErrorRate float64 `json:"max_error_rate"`
	// AdaptiveRule is the adaptive policy's rule, "budget" or "entry"
	// (omitted under static).
	AdaptiveRule string `json:"adaptive_rule,omitempty"`
	// LearnedThresholds are, under RuleBudget, the lowest cosine
	// similarity served at the configured δ per stratum ("alone", "agree",
	// "disagree"; see Stratum), null where nothing is served yet (omitted
	// under other rules).
	LearnedThresholds map[string]*float64 `json:"learned_thresholds,omitempty"`
}

// GuardRefusals counts neighbours at or above the threshold that were
// refused, by reason: by the guards (see Guards.Flip) or by the
// comparison (context: the text around the question changed; template:
// the part that differs under a shared template is not similar enough).
type GuardRefusals struct {
	Negation     int64 `json:"negation"`
	Number       int64 `json:"number"`
	Literal      int64 `json:"literal"`
	Opposite     int64 `json:"opposite"`
	Roles        int64 `json:"roles"`
	Token        int64 `json:"token"`
	Context      int64 `json:"context"`
	Template     int64 `json:"template"`
	Substitution int64 `json:"substitution"`
}

// Snapshot copies the counters and counts the live entries.
func (c *Cache) Snapshot(ctx context.Context) Snapshot {
	s := &c.stats
	out := Snapshot{
		Requests:              s.Requests.Load(),
		ExactHits:             s.ExactHits.Load(),
		SemanticHits:          s.SemanticHits.Load(),
		Misses:                s.Misses.Load(),
		Bypasses:              s.Bypasses.Load(),
		UpstreamCalls:         s.UpstreamCalls.Load(),
		UpstreamErrors:        s.UpstreamErrors.Load(),
		LookupErrors:          s.LookupErrors.Load(),
		StoreErrors:           s.StoreErrors.Load(),
		Unstored:              s.Unstored.Load(),
		LeaseWaits:            s.LeaseWaits.Load(),
		LeaseServed:           s.LeaseServed.Load(),
		LeaseFallbacks:        s.LeaseFallbacks.Load(),
		PromptTokensSaved:     s.PromptTokensSaved.Load(),
		CompletionTokensSaved: s.CompletionTokensSaved.Load(),
		CostSavedUSD:          float64(s.CostSavedMicroUSD.Load()) / 1e6,
		UnpricedHits:          s.UnpricedHits.Load(),
		GuardRefusals: GuardRefusals{
			Negation:     s.Refused(FlipNegation),
			Number:       s.Refused(FlipNumber),
			Literal:      s.Refused(FlipLiteral),
			Opposite:     s.Refused(FlipOpposite),
			Roles:        s.Refused(FlipRoles),
			Token:        s.Refused("token"),
			Context:      s.Refused(RefusedContext),
			Template:     s.Refused(RefusedTemplate),
			Substitution: s.Refused(FlipSubstitution),
		},
		Policy:        string(c.Policy()),
		Explorations:  s.Explorations.Load(),
		JudgeCalls:    s.JudgeCalls.Load(),
		VerifiedRight: s.VerifiedRight.Load(),
		VerifiedWrong: s.VerifiedWrong.Load(),
		JudgeErrors:   s.JudgeErrors.Load(),
		JudgeDropped:  s.JudgeDropped.Load(),
		MaxErrorRate:  c.MaxErrorRate(0),
	}
	if a := c.adaptive; a != nil {
		out.AdaptiveRule = string(a.cfg.Rule)
		if th, ok := c.LearnedThresholds(); ok {
			out.LearnedThresholds = map[string]*float64{}
			for k, t := range th {
				var p *float64
				if !math.IsNaN(t) {
					p = &t
				}
				out.LearnedThresholds[Stratum(k).String()] = p
			}
		}
	}
	out.Evictions, _ = c.Evictions()
	out.Hits = out.ExactHits + out.SemanticHits
	if out.Requests > 0 {
		out.HitRate = float64(out.Hits) / float64(out.Requests)
		out.EstimatedErrorRate = float64(s.EstimatedErrorMicros.Load()) / 1e6 / float64(out.Requests)
	}
	n, err := c.store.Len(ctx)
	if err != nil {
		n = -1
	}
	out.Entries = n
	out.StoreBytes, out.StoreDiskBytes = -1, -1
	if b, ok := c.store.(interface{ Bytes() int64 }); ok {
		out.StoreBytes = b.Bytes()
	}
	if b, ok := c.store.(interface{ DiskBytes() int64 }); ok {
		out.StoreDiskBytes = b.DiskBytes()
	}
	return out
}

// LearnedThresholds returns, under PolicyAdaptive with RuleBudget, the
// lowest cosine similarity served at the configured δ per stratum (indexed
// by Stratum; NaN where nothing is served yet) and true; under other
// policies and rules it returns false. It is safe for concurrent use.
func (c *Cache) LearnedThresholds() ([3]float64, bool) {
	if c.adaptive == nil || c.adaptive.budget == nil {
		return [3]float64{}, false
	}
	return c.adaptive.budget.thresholds(c.adaptive.cfg.MaxErrorRate), true
}

// count records one answered request in the stats.
func (c *Cache) count(r Result) {
	switch {
	case r.Outcome == Hit && r.Tier == TierExact:
		c.stats.ExactHits.Add(1)
	case r.Outcome == Hit:
		c.stats.SemanticHits.Add(1)
	case r.Outcome == Miss:
		c.stats.Misses.Add(1)
	}
	if r.Outcome == Hit {
		c.stats.PromptTokensSaved.Add(int64(r.savedPrompt))
		c.stats.CompletionTokensSaved.Add(int64(r.savedCompletion))
		c.countCost(r)
	}
}

// countCost adds the cost of a hit's saved tokens to the stats, or counts
// the hit as unpriced. Without a pricing table it does nothing.
func (c *Cache) countCost(r Result) {
	if c.cfg.Pricing == nil {
		return
	}
	price, ok := c.cfg.Pricing.Lookup(r.savedModel)
	if !ok {
		c.stats.UnpricedHits.Add(1)
		return
	}
	c.stats.CostSavedMicroUSD.Add(int64(math.Round(price.microUSD(r.savedPrompt, r.savedCompletion))))
}

// evictionCounter is implemented by stores that evict entries on their own
// to stay within a size bound (index.Memory).
type evictionCounter interface {
	// Evictions is the number of entries evicted since start, excluding
	// deletions and expiry.
	Evictions() int64
}

// expiryCounter is implemented by stores that delete expired entries
// themselves and count them (index.Memory).
type expiryCounter interface {
	// Expired is the number of expired entries deleted since start.
	Expired() int64
}

// index.Memory reports its evictions and expiries; Redis does neither.
var (
	_ evictionCounter = (*index.Memory)(nil)
	_ expiryCounter   = (*index.Memory)(nil)
)

// Evictions returns how many entries the store has evicted to stay within
// its size bound since start (LRU evictions of index.Memory; deletions and
// expiry are not evictions). ok is false when the store does not report
// evictions: Redis evicts under its own maxmemory policy and counts them in
// INFO stats evicted_keys.
func (c *Cache) Evictions() (n int64, ok bool) {
	if ec, ok := c.store.(evictionCounter); ok {
		return ec.Evictions(), true
	}
	return 0, false
}

// Expired returns how many expired entries the store has deleted since
// start. ok is false when the store does not report them: Redis expires
// keys itself and counts them in INFO stats expired_keys.
func (c *Cache) Expired() (n int64, ok bool) {
	if ec, ok := c.store.(expiryCounter); ok {
		return ec.Expired(), true
	}
	return 0, false
}
