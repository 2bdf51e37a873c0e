// Package semantic is semcache's two-tier cache: an exact tier keyed by the
// request's scope and normalised prompt, then a semantic tier that serves the
// nearest stored prompt of the same scope when its cosine similarity reaches
// the threshold.
package semantic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/semcache/semcache/index"
	"golang.org/x/sync/singleflight"
)

// Embedder turns texts into L2-normalised vectors of length Dim(). The
// embedding package's types satisfy it. Implementations must be safe for
// concurrent use.
type Embedder interface {
	// Embed returns one vector per text, in order, each of length Dim().
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Dim is the vector length.
	Dim() int
	// Fingerprint names the vector space (kind, model, dimension); it is
	// part of the index identity so vectors of two models never mix.
	Fingerprint() string
}

// Store holds entries by key (the exact tier) and their vectors by scope
// (the semantic tier). index.Memory satisfies it. Implementations must be
// safe for concurrent use, and a missing key is not an error.
type Store interface {
	// Get returns the value stored under key; ok is false on a miss or an
	// expired entry.
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Set stores value under key for ttl, and vec (nil for exact-only
	// entries) in the scope's vector index. It replaces an existing entry.
	Set(ctx context.Context, key, scope string, value []byte, vec []float32, ttl time.Duration) error
	// Search returns up to k entries of the scope nearest to vec, highest
	// cosine similarity first.
	Search(ctx context.Context, scope string, vec []float32, k int) ([]index.Neighbor, error)
	// Delete removes key from both tiers; it reports whether it existed.
	Delete(ctx context.Context, key string) (bool, error)
	// Len is the number of live entries.
	Len(ctx context.Context) (int, error)
}

// Config configures a Cache. New copies it; zero values mean the defaults
// documented on each field, except Threshold, which has no default.
type Config struct {
	// Threshold is the minimum cosine similarity, in (0, 1], for a semantic
	// hit: a neighbour is served when similarity >= Threshold (a
	// similarity exactly at the threshold hits; 1e-6 of float32 rounding is
	// tolerated so that 1.0 is reachable). Higher is stricter. There is no
	// default here: the embedders' measured defaults live with them (e.g.
	// embedding.LocalDefaultThreshold) and the README says how they were
	// measured.
	Threshold float64
	// TopK is the number of neighbours the KNN query asks for. 0 means 4.
	TopK int
	// TTL is how long an entry lives after it is stored. 0 means one hour.
	TTL time.Duration
	// UpstreamTimeout bounds a coalesced upstream call, which runs detached
	// from any one client's context. 0 means 120 seconds.
	UpstreamTimeout time.Duration
	// Normalization selects exact-key normalisation; the zero value is
	// NFC, lower-case, collapsed white space.
	Normalization Normalization
	// Logger receives lookup and store failures, each kind at most once per
	// 10 seconds with the count of those not logged. nil means
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock for entry ages. nil means time.Now.
	Now func() time.Time
	// Pricing turns the tokens saved by hits into dollars saved
	// (Stats.CostSavedMicroUSD), at the price of the model of the entry
	// that served each hit. nil means no cost accounting: the cost saved
	// and UnpricedHits stay 0. DefaultPricing is the built-in table.
	Pricing *Pricing
	// Policy decides semantic hits: "" or PolicyStatic (Threshold), or
	// PolicyAdaptive (Adaptive; Threshold then only matters as the
	// per-request tightening in Options.Threshold).
	Policy Policy
	// Adaptive configures PolicyAdaptive; ignored otherwise.
	Adaptive AdaptiveConfig
	// Guards, when set, refuses semantic neighbours whose prompt differs
	// from the request's in negation, literals, opposites, roles or
	// configured words (see Guards.Flip), under either policy. nil means
	// no guards; DefaultGuardsConfig is what `semcache serve` uses. It is
	// used by the default Comparer and ignored when Compare is set.
	Guards *Guards
	// MaxEmbedBytes is the longest question, in bytes, that is embedded
	// for the semantic tier; a longer one uses the exact tier only (a miss
	// of the semantic tier is the safe side, and embedding 4 MiB on the
	// request path cost about 1.1 s of CPU with the local embedder). 0
	// means DefaultMaxEmbedBytes; negative is an error.
	MaxEmbedBytes int
	// Compare decides whether a neighbour at or above the threshold may
	// answer (see Comparer), under either policy; each refusal is counted
	// by reason in Stats and the next neighbour is tried. nil means
	// NewComparator(Guards, the cache's embedder).
	Compare Comparer
	// Lease makes concurrent identical misses of processes sharing a
	// Leaser store (index.Redis) wait for one upstream call; see Leaser
	// and LeaseConfig. Streamed requests do not take part.
	Lease LeaseConfig
}

// DefaultMaxEmbedBytes is Config.MaxEmbedBytes' default, 32 KiB: about
// 8,000 tokens of English, far beyond a question, while the text of a
// pasted document or log is left to the exact tier.
const DefaultMaxEmbedBytes = 32 << 10

// similarityTolerance absorbs float32 rounding in dot products of unit
// vectors (identical texts give 0.99999994), so that Threshold 1.0 is
// reachable.
const similarityTolerance = 1e-6

// Cache is the two-tier semantic cache. It is safe for concurrent use.
type Cache struct {
	cfg    Config
	emb    Embedder
	store  Store
	flight singleflight.Group
	stats  Stats
	faults *faultLog
	// adaptive is nil under PolicyStatic.
	adaptive *adaptive
}

// New returns a Cache over the embedder and store. It fails when cfg is out
// of range (the error names the field) or emb or store is nil.
func New(cfg Config, emb Embedder, store Store) (*Cache, error) {
	if emb == nil || store == nil {
		return nil, errors.New("semantic: embedder and store are required")
	}
	if math.IsNaN(cfg.Threshold) || cfg.Threshold <= 0 || cfg.Threshold > 1 {
		return nil, fmt.Errorf("semantic: Threshold %v: want a cosine similarity in (0, 1]", cfg.Threshold)
	}
	if cfg.TopK < 0 {
		return nil, fmt.Errorf("semantic: TopK %d: must not be negative", cfg.TopK)
	}
	if cfg.TopK == 0 {
		cfg.TopK = 4
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("semantic: TTL %v: must not be negative", cfg.TTL)
	}
	if cfg.TTL == 0 {
		cfg.TTL = time.Hour
	}
	if cfg.UpstreamTimeout < 0 {
		return nil, fmt.Errorf("semantic: UpstreamTimeout %v: must not be negative", cfg.UpstreamTimeout)
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 120 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxEmbedBytes < 0 {
		return nil, fmt.Errorf("semantic: MaxEmbedBytes %d: must not be negative", cfg.MaxEmbedBytes)
	}
	if cfg.MaxEmbedBytes == 0 {
		cfg.MaxEmbedBytes = DefaultMaxEmbedBytes
	}
	lease, err := cfg.Lease.resolve(cfg.UpstreamTimeout)
	if err != nil {
		return nil, err
	}
	cfg.Lease = lease
	if cfg.Compare == nil {
		cmp, err := NewComparator(cfg.Guards, emb)
		if err != nil {
			return nil, err
		}
		cfg.Compare = cmp
	}
	c := &Cache{cfg: cfg, emb: emb, store: store, faults: newFaultLog(cfg.Logger, cfg.Now)}
	switch cfg.Policy {
	case "", PolicyStatic:
	case PolicyAdaptive:
		a, err := newAdaptive(cfg.Adaptive, store)
		if err != nil {
			return nil, err
		}
		c.adaptive = a
		if a.shared != nil {
			// Resume from the verdicts every process has shared so far; a
			// store that cannot answer now leaves the cache to learn anew.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			counts, err := a.shared.Verdicts(ctx)
			cancel()
			if err != nil {
				c.stats.LookupErrors.Add(1)
				c.faults.warn("read shared verdicts failed; learning anew", "err", err)
			} else {
				a.budget.load(counts)
			}
		}
		a.startJudges(c)
	default:
		return nil, fmt.Errorf("semantic: Policy %q: want static or adaptive", cfg.Policy)
	}
	return c, nil
}

// Policy returns the decision policy in force.
func (c *Cache) Policy() Policy {
	if c.adaptive != nil {
		return PolicyAdaptive
	}
	return PolicyStatic
}

// MaxErrorRate returns the error bound δ in force for a request asking for
// requested (0: not asked) under PolicyAdaptive: the stricter of the two.
// It returns 0 under PolicyStatic.
func (c *Cache) MaxErrorRate(requested float64) float64 {
	if c.adaptive == nil {
		return 0
	}
	return c.adaptive.delta(Options{MaxErrorRate: requested})
}

// Normalization returns the cache's exact-key normalisation, for Identify.
func (c *Cache) Normalization() Normalization { return c.cfg.Normalization }

// Threshold returns the configured cosine-similarity threshold.
func (c *Cache) Threshold() float64 { return c.cfg.Threshold }

// Embedder returns the cache's embedder.
func (c *Cache) Embedder() Embedder { return c.emb }

// Upstream is the answer of the LLM API to one request, as the proxy
// relays it.
type Upstream struct {
	// Status is the HTTP status code.
	Status int
	// ContentType is the Content-Type header.
	ContentType string
	// Header holds the upstream's response headers (rate-limit headers,
	// request ids, Retry-After) for a fresh answer; nil on hits, since an
	// old answer's rate-limit state would mislead the client.
	Header http.Header
	// Body is the response body, unchanged.
	Body []byte
}

// FetchFunc calls the upstream LLM API. The context it gets is detached from
// the client that triggered it (it carries only the UpstreamTimeout), since
// its answer may be shared by several coalesced requests. A non-nil error
// means no answer at all (connection refused, timeout); an HTTP error status
// is an answer and is returned in Upstream.
type FetchFunc func(ctx context.Context) (Upstream, error)

// Outcome says how a request was answered.
type Outcome string

// Outcomes, as shown in the X-Semcache-Status header.
const (
	Hit    Outcome = "HIT"
	Miss   Outcome = "MISS"
	Bypass Outcome = "BYPASS"
)

// Tier says which tier served a hit.
type Tier string

// Tiers, as shown in the X-Semcache-Tier header.
const (
	TierExact    Tier = "exact"
	TierSemantic Tier = "semantic"
)

// Result is the answer to one request.
type Result struct {
	Outcome Outcome
	// Tier is set on hits.
	Tier Tier
	// Similarity is the cosine similarity in [-1, 1] of a semantic hit's
	// stored prompt to this request's prompt, or of the explored
	// neighbour's (Explored); 0 otherwise.
	Similarity float64
	// Key is the id of the entry that served the hit, or that this miss
	// stored (see Stored); the X-Semcache-Key header.
	Key string
	// Age is how long ago a hit's entry was stored.
	Age time.Duration
	// Stored reports whether a miss's answer was stored.
	Stored bool
	// Shared reports whether this answer came out of a single flight that
	// several concurrent identical requests joined (one upstream call for
	// all of them).
	Shared bool
	// Leased reports a miss answered by the entry another process stored
	// while this one waited on its lease (see Leaser): no upstream call
	// was made here.
	Leased bool
	// Explored reports a miss of PolicyAdaptive that had a neighbour it
	// chose not to serve: the answer came from upstream and the neighbour's
	// answer is being verified against it (the X-Semcache-Explore header).
	Explored bool
	// Refused is, on a miss whose best neighbour at or above the
	// threshold was refused by the Comparer, the reason (the
	// X-Semcache-Refused header): a Flip* reason, RefusedContext or
	// RefusedTemplate; "" otherwise.
	Refused string
	// Nearest is, on a miss whose semantic search found a neighbour in
	// scope, that best neighbour's cosine similarity in [-1, 1] as the
	// index reported it, whatever became of it (below the threshold,
	// refused, explored); HasNearest says whether there was one. They feed
	// the dashboard's near-miss histogram (GET /ui).
	Nearest    float64
	HasNearest bool
	// explore carries what the verification needs from the lookup to the
	// store.
	explore *exploration
	Upstream
	// Stream holds, for a hit on an entry stored from a streamed answer,
	// the chat.completion.chunk payloads as the upstream sent them (see
	// StreamChunks); nil otherwise. Body is then their aggregate.
	Stream []string

	// token usage and model of the entry that served a hit, for the stats
	savedPrompt, savedCompletion int
	savedModel                   string
	// prompt is the normalised prompt of the entry that served a hit.
	prompt string
}

// Entry is what the cache stores per answer, in the binary form of
// entrycodec.go (JSON before it, still read).
type Entry struct {
	Key    string `json:"key"`
	Scope  string `json:"scope"`
	Prompt string `json:"prompt"`
	// Model is the request's model (Identity.Model); a hit's tokens saved
	// are priced at this model's price (see Config.Pricing). Empty in
	// entries stored before it was recorded: their hits are unpriced.
	Model string `json:"model,omitempty"`
	// Response is the upstream's 200 body, byte for byte.
	Response    string `json:"response"`
	ContentType string `json:"content_type,omitempty"`
	// CreatedAt is when the entry was stored (Unix milliseconds).
	CreatedAt int64 `json:"created_at_ms"`
	// PromptTokens and CompletionTokens come from the response's usage and
	// are counted as saved on every hit.
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	// Stream holds the data payloads of a streamed answer's
	// chat.completion.chunk events, verbatim and in order, without the
	// [DONE] terminator; Response is then their aggregate (see
	// AnswerFromStream). Empty for answers received as one JSON body.
	Stream []string `json:"stream,omitempty"`
}

// Do answers one cacheable request: the exact tier, then, within a single
// flight per exact key, the exact tier again, the semantic tier and finally
// fetch. A complete 200 answer (see Cacheable) is stored with the prompt's
// vector before Do returns, so the next identical request hits.
//
// Lookup and store failures (embedder or store errors) are logged and
// counted, and the request goes upstream: the cache fails open. Do returns an
// error only when fetch does.
func (c *Cache) Do(ctx context.Context, id Identity, fetch FetchFunc) (Result, error) {
	return c.DoWith(ctx, id, Options{}, fetch)
}

// DoWith is Do with per-request options (see Options). Requests with the
// same key but different options never share a single flight.
func (c *Cache) DoWith(ctx context.Context, id Identity, o Options, fetch FetchFunc) (Result, error) {
	c.stats.Requests.Add(1)
	if !o.SkipLookup {
		if r, ok := c.exact(ctx, id, o); ok {
			return r, nil
		}
	}
	ch := c.flight.DoChan(id.Key+o.flightSuffix(), func() (any, error) {
		// The shared work must not die with the first client: detach it
		// and bound it by its own timeout.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.UpstreamTimeout)
		defer cancel()
		return c.lookupOrFetch(fctx, id, o, fetch)
	})
	select {
	case <-ctx.Done():
		c.stats.Misses.Add(1) // a miss whose client went away
		return Result{}, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			c.stats.Misses.Add(1) // a miss whose upstream call failed
			return Result{}, res.Err
		}
		r := res.Val.(Result)
		r.Shared = res.Shared
		c.count(r)
		return r, nil
	}
}

// exact serves an exact-tier hit, counting it.
func (c *Cache) exact(ctx context.Context, id Identity, o Options) (Result, bool) {
	r, ok := c.getEntry(ctx, id.Key, o)
	if !ok {
		return Result{}, false
	}
	r.Tier = TierExact
	c.count(r)
	return r, true
}

// getEntry loads and decodes an entry; a store or decoding failure is logged
// and reported as a miss, and so is an entry older than o.MaxAge.
func (c *Cache) getEntry(ctx context.Context, key string, o Options) (Result, bool) {
	raw, ok, err := c.store.Get(ctx, key)
	if err != nil {
		c.stats.LookupErrors.Add(1)
		c.faults.warn("cache lookup failed", "key", key, "err", err)
		return Result{}, false
	}
	if !ok {
		return Result{}, false
	}
	se, err := decodeEntry(raw)
	if err != nil {
		c.stats.LookupErrors.Add(1)
		c.faults.warn("cache entry undecodable", "key", key, "err", err)
		return Result{}, false
	}
	e := &se.Entry
	age := c.cfg.Now().Sub(time.UnixMilli(e.CreatedAt))
	if age < 0 {
		age = 0
	}
	if o.MaxAge > 0 && age > o.MaxAge {
		return Result{}, false
	}
	return Result{
		Outcome:  Hit,
		Key:      e.Key,
		Age:      age,
		Upstream: Upstream{Status: 200, ContentType: e.ContentType, Body: se.response},
		Stream:   e.Stream,
		prompt:   e.Prompt,
		// Saved tokens are added in count.
	}.withTokens(e), true
}

// lookupOrFetch runs inside the single flight of id.Key.
func (c *Cache) lookupOrFetch(ctx context.Context, id Identity, o Options, fetch FetchFunc) (Result, error) {
	if !o.SkipLookup {
		// Re-check inside the flight: a flight that finished just before
		// this one started has stored the answer.
		if r, ok := c.getEntry(ctx, id.Key, o); ok {
			r.Tier = TierExact
			return r, nil
		}
	}
	var vec []float32
	var lookup Result
	if c.wantsVector(id, o) {
		var ok bool
		vec, lookup, ok = c.semantic(ctx, id, o)
		if ok {
			return lookup, nil
		}
	}
	stored := false
	if l := c.leaser(o); l != nil {
		r, served, release := c.leaseOrWait(ctx, l, id, o)
		if served {
			return r, nil
		}
		defer func() { release(stored) }() // after the store: waiters look for the entry first
	}
	c.stats.UpstreamCalls.Add(1)
	up, err := fetch(ctx)
	if err != nil {
		c.stats.UpstreamErrors.Add(1)
		return Result{}, err
	}
	if up.Status != 200 {
		c.stats.UpstreamErrors.Add(1)
	}
	r := Result{Outcome: Miss, Key: id.Key, Upstream: up}
	r.Explored, r.Similarity, r.explore, r.Refused = lookup.Explored, lookup.Similarity, lookup.explore, lookup.Refused
	r.Nearest, r.HasNearest = lookup.Nearest, lookup.HasNearest
	r.Stored, _ = c.settleMiss(ctx, r, id, o, up, nil, vec)
	stored = r.Stored
	return r, nil
}

// settleMiss stores a miss's fresh answer. After an exploration it stores
// only an exact-tier copy (so an identical request hits) and queues the
// verification, whose wrong verdict stores the answer with its vector;
// otherwise it stores the answer with vec (see keep).
func (c *Cache) settleMiss(ctx context.Context, miss Result, id Identity, o Options, up Upstream, stream []string, vec []float32) (bool, error) {
	if miss.explore == nil {
		return c.keep(ctx, id, o, up, stream, vec)
	}
	if c.adaptive.budget != nil {
		// RuleBudget: every answer from upstream is stored with its
		// vector, as under the static policy; the verdict only teaches.
		stored, err := c.keep(ctx, id, o, up, stream, vec)
		if _, ok := Cacheable(up); ok {
			c.verify(verification{exploration: *miss.explore, id: id, o: o, fresh: up})
		}
		return stored, err
	}
	stored, err := c.keep(ctx, id, o, up, stream, nil)
	if _, ok := Cacheable(up); ok {
		c.verify(verification{exploration: *miss.explore, id: id, o: o, fresh: up, chunk: stream, vec: vec, tags: entryTags(ctx)})
	}
	return stored, err
}

// wantsVector reports whether a request that missed the exact tier needs
// its prompt embedded: for the semantic lookup, and for the vector stored
// with the answer (an exact-mode request still makes its entry findable by
// later semantic requests).
func (c *Cache) wantsVector(id Identity, o Options) bool {
	if x, ok := c.store.(exactOnly); ok && x.ExactOnly() {
		return false
	}
	return id.Semantic && len(id.Prompt) <= c.cfg.MaxEmbedBytes && (!o.NoStore || (o.Mode != ModeExact && !o.SkipLookup))
}

// exactOnly is implemented by stores that may keep the exact tier only
// (index.Redis on a Cluster): the cache then embeds nothing, since no
// vector could be found again.
type exactOnly interface{ ExactOnly() bool }

// keep stores up under id with vec when it is a complete answer (see
// Cacheable) and o allows it, and reports whether it did. stream is the
// raw chunk payloads of a streamed answer whose aggregate up.Body is, or
// nil. A store failure is logged, counted and returned.
func (c *Cache) keep(ctx context.Context, id Identity, o Options, up Upstream, stream []string, vec []float32) (bool, error) {
	usage, ok := Cacheable(up)
	if !ok && up.Status == 200 {
		c.stats.Unstored.Add(1)
	}
	if !ok || o.NoStore {
		return false, nil // incomplete, or the client asked for no copy
	}
	prompt := id.Normalized
	if vec == nil {
		prompt = "" // only the semantic tier compares prompts: an exact-only entry does not keep its text
	}
	e := Entry{
		Key:              id.Key,
		Scope:            id.Scope,
		Prompt:           prompt,
		Model:            id.Model,
		Response:         string(up.Body),
		ContentType:      up.ContentType,
		CreatedAt:        c.cfg.Now().UnixMilli(),
		PromptTokens:     usage.PromptTokens,
		CompletionTokens: usage.CompletionTokens,
		Stream:           stream,
	}
	ttl := c.cfg.TTL
	if o.TTL > 0 {
		ttl = o.TTL
	}
	if err := c.put(ctx, e, vec, ttl); err != nil {
		c.stats.StoreErrors.Add(1)
		c.faults.warn("cache store failed", "key", id.Key, "err", err)
		return false, err
	}
	return true, nil
}

// semantic embeds the prompt and searches its scope. It returns the vector
// (nil when embedding failed) for the store that may follow.
func (c *Cache) semantic(ctx context.Context, id Identity, o Options) ([]float32, Result, bool) {
	vecs, err := c.emb.Embed(ctx, []string{id.Prompt})
	if err == nil && len(vecs) != 1 {
		err = fmt.Errorf("embedder returned %d vectors for 1 text", len(vecs))
	}
	if err != nil {
		c.stats.LookupErrors.Add(1)
		c.faults.warn("embed prompt failed", "err", err)
		return nil, Result{}, false
	}
	vec := vecs[0]
	if o.SkipLookup || o.Mode == ModeExact {
		return vec, Result{}, false
	}
	// Under the adaptive policy the floor replaces the static threshold; a
	// request's own threshold can still only tighten.
	threshold := c.EffectiveThreshold(o.Threshold)
	nn, err := c.store.Search(ctx, id.Scope, vec, c.cfg.TopK)
	if err != nil {
		c.stats.LookupErrors.Add(1)
		c.faults.warn("semantic search failed", "err", err)
		return vec, Result{}, false
	}
	cand := math.NaN() // the similarity of the neighbour decided on, if any
	var stratum Stratum
	if c.adaptive != nil && c.adaptive.budget != nil {
		defer func() { c.adaptive.budget.count(stratum, cand) }()
	}
	refused := "" // why the best neighbour at or above the threshold was refused
	// miss is this lookup's answer when nothing is served.
	miss := func() Result {
		r := Result{Refused: refused}
		if len(nn) > 0 {
			r.Nearest, r.HasNearest = float64(nn[0].Similarity), true
		}
		return r
	}
	for j, n := range nn {
		sim := float64(n.Similarity)
		if !accept(sim, threshold) {
			break // best first: nothing further can pass
		}
		r, ok := c.getEntry(ctx, n.ID, o)
		if !ok {
			continue // expired between search and get
		}
		v, err := c.cfg.Compare.Compare(ctx, id.Normalized, r.prompt, sim, threshold)
		if err != nil {
			c.stats.LookupErrors.Add(1)
			c.faults.warn("compare neighbour failed", "err", err)
			return vec, miss(), false
		}
		if v.Refused != "" {
			c.stats.countGuard(v.Refused)
			if refused == "" {
				refused = v.Refused
			}
			continue
		}
		sim = v.Similarity
		if c.adaptive != nil {
			cand = sim
			if c.adaptive.budget != nil {
				stratum = c.stratum(ctx, r.Body, nn[j+1:], threshold, o)
			}
			explore, p := c.decide(ctx, n.ID, stratum, sim, o)
			if explore {
				c.stats.Explorations.Add(1)
				x := miss()
				x.Explored, x.Similarity, x.explore = true, sim, &exploration{entry: n.ID, similarity: sim, cached: r.Body, stratum: stratum}
				return vec, x, false
			}
			c.stats.addEstimatedError(1 - p)
		}
		r.Tier = TierSemantic
		r.Similarity = sim
		return vec, r, true
	}
	return vec, miss(), false
}

// stratum classifies the lookup whose nearest servable neighbour answered
// body by the next neighbour in rest at or above threshold (see Stratum).
// One that cannot be read is passed over.
func (c *Cache) stratum(ctx context.Context, body []byte, rest []index.Neighbor, threshold float64, o Options) Stratum {
	for _, n := range rest {
		if !accept(float64(n.Similarity), threshold) {
			break
		}
		r, ok := c.getEntry(ctx, n.ID, o)
		if !ok {
			continue
		}
		a, errA := AnswerText(body)
		b, errB := AnswerText(r.Body)
		if errA == nil && errB == nil && NormalizeAnswer(a) == NormalizeAnswer(b) {
			return StratumAgree
		}
		return StratumDisagree
	}
	return StratumAlone
}

// Accept reports whether a neighbour at cosine similarity sim (in [-1, 1])
// may be served: sim >= Threshold, with a 1e-6 float32 tolerance.
func (c *Cache) Accept(sim float64) bool { return accept(sim, c.cfg.Threshold) }

func accept(sim, threshold float64) bool { return sim+similarityTolerance >= threshold }

// EffectiveThreshold returns the similarity threshold a request asking for
// requested gets: the stricter of requested and the configured Threshold,
// or under PolicyAdaptive of requested and the adaptive similarity floor
// (AdaptiveConfig.Floor), which replaces Threshold there: no neighbour
// below it is considered, and the policy decides per entry above it. A
// request can only tighten matching, never loosen it; 0 (not asked) means
// the configured value.
func (c *Cache) EffectiveThreshold(requested float64) float64 {
	if c.adaptive != nil {
		return max(requested, c.adaptive.cfg.Floor)
	}
	return max(requested, c.cfg.Threshold)
}

func (c *Cache) put(ctx context.Context, e Entry, vec []float32, ttl time.Duration) error {
	return c.store.Set(ctx, e.Key, e.Scope, encodeEntry(&e), vec, ttl)
}

// Delete removes one entry by key (the X-Semcache-Key header value) from
// both tiers and reports whether it existed.
func (c *Cache) Delete(ctx context.Context, key string) (bool, error) {
	return c.store.Delete(ctx, key)
}

// Len returns the number of live entries.
func (c *Cache) Len(ctx context.Context) (int, error) { return c.store.Len(ctx) }

// Usage is the token usage of a chat completion.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// storableFinish lists the finish reasons of complete answers. "length" is
// included because max_tokens is part of the scope, so the same request
// would be cut at the same length again; "content_filter", null and unknown
// reasons are not stored.
var storableFinish = map[string]bool{"stop": true, "length": true, "tool_calls": true, "function_call": true}

// Cacheable reports whether an upstream answer may be stored: status 200, a
// JSON chat.completion body with at least one choice, every choice
// finished with a reason in storableFinish and carrying a well-formed
// message (see answerMessage.wellFormed). It returns the answer's usage.
// Anything else is relayed to the client and never stored.
//
// A Responses API answer ("object": "response") and a legacy completion
// ("object": "text_completion") are checked by their own rules (see
// cacheableResponse and cacheableCompletion).
func Cacheable(up Upstream) (Usage, bool) {
	if up.Status != 200 {
		return Usage{}, false
	}
	switch answerObject(up.Body) {
	case "response":
		return cacheableResponse(up.Body)
	case "text_completion":
		return cacheableCompletion(up.Body)
	}
	var body struct {
		Choices []struct {
			FinishReason *string        `json:"finish_reason"`
			Message      *answerMessage `json:"message"`
		} `json:"choices"`
		Usage Usage `json:"usage"`
	}
	if err := json.Unmarshal(up.Body, &body); err != nil || len(body.Choices) == 0 {
		return Usage{}, false
	}
	for _, ch := range body.Choices {
		if ch.FinishReason == nil || !storableFinish[*ch.FinishReason] || !ch.Message.wellFormed() {
			return Usage{}, false
		}
	}
	return body.Usage, true
}

// answerMessage is the part of a choice's message that Cacheable checks.
type answerMessage struct {
	Role         *string           `json:"role"`
	Content      json.RawMessage   `json:"content"`
	ToolCalls    []json.RawMessage `json:"tool_calls"`
	FunctionCall json.RawMessage   `json:"function_call"`
	Refusal      *string           `json:"refusal"`
}

// wellFormed reports whether m is a chat-completion message: an object
// with a non-empty role and either string content or, with null or absent
// content, tool calls, a function call or a refusal. A message that is a
// string, a number or an array fails to decode into m, so the body is not
// stored at all.
func (m *answerMessage) wellFormed() bool {
	if m == nil || m.Role == nil || *m.Role == "" {
		return false
	}
	c := bytes.TrimSpace(m.Content)
	switch {
	case len(c) > 0 && c[0] == '"':
		return true
	case len(c) == 0 || string(c) == "null":
		fc := bytes.TrimSpace(m.FunctionCall)
		return len(m.ToolCalls) > 0 || (len(fc) > 0 && fc[0] == '{') || m.Refusal != nil
	}
	return false
}

// withTokens records the entry's usage and model on the result for the
// stats.
func (r Result) withTokens(e *Entry) Result {
	r.savedPrompt, r.savedCompletion, r.savedModel = e.PromptTokens, e.CompletionTokens, e.Model
	return r
}
