package semantic_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// Prompts of the fake embedder's vector space, with their cosine
// similarity to promptBase (every vector is a unit vector, so the dot
// products are exact up to float32 rounding).
const (
	promptBase  = "What is the capital of France?" // [1, 0, 0]
	promptTwin  = "Name the capital of France."    // [1, 0, 0]: similarity 1
	promptNear  = "Capital city of France?"        // [0.8, 0.6, 0]: similarity 0.8
	promptBelow = "Which city is France's capital" // [0.7999, ~0.6001, 0]: similarity 0.7999
	promptFar   = "How do I bake bread?"           // [0, 0, 1]: similarity 0

	// Two prompts on the diagonal [1, 1, 1]: its float32 self-similarity
	// is 0.99999994, not 1, so only the tolerance lets Threshold 1 hit.
	promptDiag  = "Tell me about the sky."
	promptDiag2 = "Describe the sky."
)

// fakeVectors maps every prompt the tests embed to its vector.
var fakeVectors = map[string][]float32{
	promptBase:  {1, 0, 0},
	promptTwin:  {1, 0, 0},
	promptNear:  {0.8, 0.6, 0},
	promptBelow: {0.7999, float32(math.Sqrt(1 - 0.7999*0.7999)), 0},
	promptFar:   {0, 0, 1},
	promptDiag:  {1, 1, 1},
	promptDiag2: {1, 1, 1},
}

// fakeEmbedder is a deterministic Embedder over fakeVectors. An unknown text
// fails the test, so that a test cannot pass by failing open.
type fakeEmbedder struct {
	t     *testing.T
	calls atomic.Int32

	mu  sync.Mutex
	err error // returned by Embed when set
}

var _ semantic.Embedder = (*fakeEmbedder)(nil)

func (e *fakeEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	e.calls.Add(1)
	e.mu.Lock()
	err := e.err
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make([][]float32, len(texts))
	for i, s := range texts {
		v, ok := fakeVectors[s]
		if !ok {
			e.t.Errorf("fake embedder: no vector for %q", s)
			return nil, fmt.Errorf("fake embedder: unknown text %q", s)
		}
		out[i] = append([]float32(nil), v...)
	}
	return out, nil
}

func (e *fakeEmbedder) Dim() int            { return 3 }
func (e *fakeEmbedder) Fingerprint() string { return "fake/3" }

func (e *fakeEmbedder) fail(err error) {
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
}

// fakeClock is a manual clock, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := new(fakeClock)
	// A whole second, so that millisecond timestamps round-trip exactly.
	c.ns.Store(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// hookStore wraps the real Memory store to observe or fail Set.
type hookStore struct {
	*index.Memory
	setErr error         // returned by Set instead of storing, when set
	stored chan struct{} // receives after each successful Set, when set
}

func (s *hookStore) Set(ctx context.Context, key, scope string, value []byte, vec []float32, ttl time.Duration) error {
	if s.setErr != nil {
		return s.setErr
	}
	err := s.Memory.Set(ctx, key, scope, value, vec, ttl)
	if err == nil && s.stored != nil {
		s.stored <- struct{}{}
	}
	return err
}

// env is one cache under test with its collaborators.
type env struct {
	cache *semantic.Cache
	mem   *index.Memory
	emb   *fakeEmbedder
	clock *fakeClock
}

// newEnv returns a cache over a real Memory store (no background sweep) and
// the fake embedder, both on one fake clock. wrap, when not nil, wraps the
// store the cache sees.
func newEnv(t *testing.T, cfg semantic.Config, wrap func(*index.Memory) semantic.Store) *env {
	t.Helper()
	clock := newFakeClock()
	mem, err := index.NewMemory(index.MemoryConfig{Dim: 3, SweepInterval: -1, Now: clock.Now})
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	t.Cleanup(func() { mem.Close() })
	var store semantic.Store = mem
	if wrap != nil {
		store = wrap(mem)
	}
	emb := &fakeEmbedder{t: t}
	cfg.Now = clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := semantic.New(cfg, emb, store)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &env{cache: c, mem: mem, emb: emb, clock: clock}
}

// ident returns the identity of a one-message request with the given prompt
// for the given tenant.
func ident(t *testing.T, tenant, prompt string) semantic.Identity {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"model":    "gpt-4o-mini",
		"messages": []any{map[string]any{"role": "user", "content": prompt}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id, rq, err := semantic.Identify(body, tenant, "", semantic.Normalization{})
	if err != nil {
		t.Fatalf("Identify: %v", err)
	}
	if !rq.Cacheable || !id.Semantic {
		t.Fatalf("identity of %q: Cacheable %v, Semantic %v", prompt, rq.Cacheable, id.Semantic)
	}
	return id
}

// completion returns a chat.completion body with one choice per finish
// reason (nil for a JSON null) and the given usage.
func completion(text string, promptTokens, completionTokens int, finish ...*string) []byte {
	type choice struct {
		Index        int            `json:"index"`
		Message      map[string]any `json:"message"`
		FinishReason *string        `json:"finish_reason"`
	}
	var choices []choice
	for i, f := range finish {
		choices = append(choices, choice{i, map[string]any{"role": "assistant", "content": text}, f})
	}
	b, err := json.Marshal(map[string]any{
		"id":      "chatcmpl-1",
		"object":  "chat.completion",
		"choices": choices,
		"usage":   map[string]int{"prompt_tokens": promptTokens, "completion_tokens": completionTokens, "total_tokens": promptTokens + completionTokens},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func reason(s string) *string { return &s }

func ok200(text string) semantic.Upstream {
	return semantic.Upstream{Status: 200, ContentType: "application/json", Body: completion(text, 10, 5, reason("stop"))}
}

// upstream is a counting fake of the LLM API.
type upstream struct {
	calls atomic.Int32
	resp  semantic.Upstream
	err   error
}

func (u *upstream) fetch(context.Context) (semantic.Upstream, error) {
	u.calls.Add(1)
	return u.resp, u.err
}

// do calls Do and fails the test on an error.
func do(t *testing.T, c *semantic.Cache, id semantic.Identity, fetch semantic.FetchFunc) semantic.Result {
	t.Helper()
	r, err := c.Do(context.Background(), id, fetch)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	return r
}

func wantOutcome(t *testing.T, r semantic.Result, outcome semantic.Outcome, tier semantic.Tier) {
	t.Helper()
	if r.Outcome != outcome || r.Tier != tier {
		t.Errorf("Outcome/Tier = %s/%q, want %s/%q", r.Outcome, r.Tier, outcome, tier)
	}
}

func wantCalls(t *testing.T, u *upstream, n int32) {
	t.Helper()
	if got := u.calls.Load(); got != n {
		t.Errorf("upstream calls = %d, want %d", got, n)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	mem, err := index.NewMemory(index.MemoryConfig{Dim: 3, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	emb := &fakeEmbedder{t: t}
	tests := []struct {
		name     string
		cfg      semantic.Config
		emb      semantic.Embedder
		store    semantic.Store
		wantText string
	}{
		{"threshold zero", semantic.Config{}, emb, mem, "Threshold"},
		{"threshold negative", semantic.Config{Threshold: -0.5}, emb, mem, "Threshold"},
		{"threshold above one", semantic.Config{Threshold: 1.0001}, emb, mem, "Threshold"},
		{"threshold NaN", semantic.Config{Threshold: math.NaN()}, emb, mem, "Threshold"},
		{"threshold +Inf", semantic.Config{Threshold: math.Inf(1)}, emb, mem, "Threshold"},
		{"negative TopK", semantic.Config{Threshold: 0.9, TopK: -1}, emb, mem, "TopK"},
		{"negative TTL", semantic.Config{Threshold: 0.9, TTL: -time.Second}, emb, mem, "TTL"},
		{"negative UpstreamTimeout", semantic.Config{Threshold: 0.9, UpstreamTimeout: -time.Second}, emb, mem, "UpstreamTimeout"},
		{"nil embedder", semantic.Config{Threshold: 0.9}, nil, mem, "embedder"},
		{"nil store", semantic.Config{Threshold: 0.9}, emb, nil, "store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := semantic.New(tt.cfg, tt.emb, tt.store)
			if err == nil {
				t.Fatalf("New(%+v) = %v, nil; want an error", tt.cfg, c)
			}
			if c != nil {
				t.Errorf("New returned a cache with its error")
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not name %s", err, tt.wantText)
			}
		})
	}

	for _, th := range []float64{1e-9, 0.5, 1} {
		c, err := semantic.New(semantic.Config{Threshold: th}, emb, mem)
		if err != nil {
			t.Errorf("New(Threshold %v): %v", th, err)
			continue
		}
		if c.Threshold() != th {
			t.Errorf("Threshold() = %v, want %v", c.Threshold(), th)
		}
	}
}

func TestAccept(t *testing.T) {
	tests := []struct {
		threshold, sim float64
		want           bool
	}{
		{0.8, 0.8, true},
		{0.8, 0.9, true},
		{0.8, 0.79999995, true}, // float32 rounding of 0.8
		{0.8, 0.7999, false},
		{0.8, -1, false},
		{1, 1, true},
		{1, 0.99999994, true}, // a self-match in float32
		{1, 0.9999, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%v", tt.threshold, tt.sim), func(t *testing.T) {
			e := newEnv(t, semantic.Config{Threshold: tt.threshold}, nil)
			if got := e.cache.Accept(tt.sim); got != tt.want {
				t.Errorf("Threshold %v: Accept(%v) = %v, want %v", tt.threshold, tt.sim, got, tt.want)
			}
		})
	}
}

func TestDoMissThenExactHit(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.9}, nil)
	u := &upstream{resp: ok200("Paris.")}
	id := ident(t, "t", promptBase)

	r := do(t, e.cache, id, u.fetch)
	wantOutcome(t, r, semantic.Miss, "")
	wantCalls(t, u, 1)
	if !r.Stored || r.Key != id.Key || r.Status != 200 || string(r.Body) != string(u.resp.Body) {
		t.Errorf("miss = %+v, want Stored, Key %s, the upstream answer", r, id.Key)
	}
	if e.mem.VectorLen() != 1 {
		t.Errorf("VectorLen = %d, want 1 (the prompt's vector)", e.mem.VectorLen())
	}

	r = do(t, e.cache, id, u.fetch)
	wantOutcome(t, r, semantic.Hit, semantic.TierExact)
	wantCalls(t, u, 1)
	if r.Key != id.Key || r.Status != 200 || r.ContentType != "application/json" || string(r.Body) != string(u.resp.Body) {
		t.Errorf("hit = %+v, want the stored answer under %s", r, id.Key)
	}
	if r.Stored || r.Similarity != 0 {
		t.Errorf("exact hit: Stored %v, Similarity %v; want false, 0", r.Stored, r.Similarity)
	}
	if got := e.emb.calls.Load(); got != 1 {
		t.Errorf("embedder calls = %d, want 1 (an exact hit embeds nothing)", got)
	}

	// Another spelling with the same normalised prompt is an exact hit too.
	r = do(t, e.cache, ident(t, "t", "  WHAT is the capital   of France?"), u.fetch)
	wantOutcome(t, r, semantic.Hit, semantic.TierExact)
	wantCalls(t, u, 1)
}

func TestDoSemanticThreshold(t *testing.T) {
	tests := []struct {
		name      string
		threshold float64
		stored    string
		query     string
		wantHit   bool
		wantSim   float64
	}{
		{"similarity equal to the threshold hits", 0.8, promptBase, promptNear, true, 0.8},
		{"similarity just below the threshold misses", 0.8, promptBase, promptBelow, false, 0},
		{"above the threshold hits", 0.7, promptBase, promptNear, true, 0.8},
		{"below a strict threshold misses", 0.9, promptBase, promptNear, false, 0},
		{"threshold 1 reached by an identical vector", 1, promptBase, promptTwin, true, 1},
		{"threshold 1 reached despite float32 rounding", 1, promptDiag, promptDiag2, true, 1},
		{"threshold 1 not reached by a near vector", 1, promptBase, promptNear, false, 0},
		{"orthogonal misses at a low threshold", 0.01, promptBase, promptFar, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, semantic.Config{Threshold: tt.threshold}, nil)
			stored := ident(t, "t", tt.stored)
			query := ident(t, "t", tt.query)
			if stored.Scope != query.Scope || stored.Key == query.Key {
				t.Fatal("test prompts must share a scope and differ in key")
			}
			u := &upstream{resp: ok200("Paris.")}
			do(t, e.cache, stored, u.fetch)

			u2 := &upstream{resp: ok200("Other.")}
			r := do(t, e.cache, query, u2.fetch)
			if !tt.wantHit {
				wantOutcome(t, r, semantic.Miss, "")
				wantCalls(t, u2, 1)
				if string(r.Body) != string(u2.resp.Body) {
					t.Errorf("miss served %s, want the new upstream answer", r.Body)
				}
				return
			}
			wantOutcome(t, r, semantic.Hit, semantic.TierSemantic)
			wantCalls(t, u2, 0)
			if r.Key != stored.Key {
				t.Errorf("Key = %s, want the stored entry's %s", r.Key, stored.Key)
			}
			if string(r.Body) != string(u.resp.Body) {
				t.Errorf("Body = %s, want the stored answer", r.Body)
			}
			if math.Abs(r.Similarity-tt.wantSim) > 1e-6 {
				t.Errorf("Similarity = %v, want %v", r.Similarity, tt.wantSim)
			}
			// A semantic hit stores nothing new.
			if n, _ := e.cache.Len(context.Background()); n != 1 {
				t.Errorf("Len = %d, want 1", n)
			}
			if s := e.cache.Stats(); s.SemanticHits.Load() != 1 || s.LookupErrors.Load() != 0 {
				t.Errorf("SemanticHits %d, LookupErrors %d; want 1, 0", s.SemanticHits.Load(), s.LookupErrors.Load())
			}
		})
	}
}

func TestDoSemanticTierRestrictedToScope(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.5}, nil)
	u := &upstream{resp: ok200("Paris.")}
	a := ident(t, "tenant-a", promptBase)
	do(t, e.cache, a, u.fetch)

	// The same vector, even the same prompt, in another scope never hits.
	// Each case uses its own tenant, so that it cannot hit an earlier
	// case's answer.
	for i, prompt := range []string{promptBase, promptTwin, promptNear} {
		t.Run(prompt, func(t *testing.T) {
			b := ident(t, fmt.Sprintf("tenant-b%d", i), prompt)
			if b.Scope == a.Scope {
				t.Fatal("tenants share a scope")
			}
			ub := &upstream{resp: ok200("Other.")}
			r := do(t, e.cache, b, ub.fetch)
			wantOutcome(t, r, semantic.Miss, "")
			wantCalls(t, ub, 1)
			if string(r.Body) != string(ub.resp.Body) {
				t.Errorf("other tenant got %s, want its own upstream answer", r.Body)
			}
		})
	}
	// And tenant-a still hits its own entry semantically.
	r := do(t, e.cache, ident(t, "tenant-a", promptNear), (&upstream{resp: ok200("x")}).fetch)
	wantOutcome(t, r, semantic.Hit, semantic.TierSemantic)
	if string(r.Body) != string(u.resp.Body) {
		t.Errorf("tenant-a semantic hit served %s", r.Body)
	}
}

func TestDoUncacheableAnswers(t *testing.T) {
	tests := []struct {
		name      string
		up        semantic.Upstream
		wantStore bool
	}{
		{"200 stop", ok200("Paris."), true},
		{"200 length", semantic.Upstream{Status: 200, Body: completion("Par", 10, 1, reason("length"))}, true},
		{"200 tool_calls", semantic.Upstream{Status: 200, Body: completion("", 10, 1, reason("tool_calls"))}, true},
		{"200 two choices, both stop", semantic.Upstream{Status: 200, Body: completion("a", 1, 1, reason("stop"), reason("stop"))}, true},
		{"500", semantic.Upstream{Status: 500, ContentType: "application/json", Body: []byte(`{"error":{"message":"boom"}}`)}, false},
		{"429", semantic.Upstream{Status: 429, ContentType: "application/json", Body: []byte(`{"error":{"message":"slow down"}}`)}, false},
		{"201 with a complete body", semantic.Upstream{Status: 201, Body: completion("Paris.", 1, 1, reason("stop"))}, false},
		{"200 content_filter", semantic.Upstream{Status: 200, Body: completion("", 10, 0, reason("content_filter"))}, false},
		{"200 null finish_reason", semantic.Upstream{Status: 200, Body: completion("Par", 10, 1, nil)}, false},
		{"200 unknown finish_reason", semantic.Upstream{Status: 200, Body: completion("Par", 10, 1, reason("interrupted"))}, false},
		{"200 one of two choices filtered", semantic.Upstream{Status: 200, Body: completion("a", 1, 1, reason("stop"), reason("content_filter"))}, false},
		{"200 no choices", semantic.Upstream{Status: 200, Body: []byte(`{"object":"chat.completion","choices":[]}`)}, false},
		{"200 choices missing", semantic.Upstream{Status: 200, Body: []byte(`{"object":"chat.completion"}`)}, false},
		{"200 invalid JSON", semantic.Upstream{Status: 200, Body: []byte(`{"choices":[{"finish_reason":"stop"}`)}, false},
		{"200 SSE body", semantic.Upstream{Status: 200, ContentType: "text/event-stream", Body: []byte("data: {}\n\n")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, semantic.Config{Threshold: 0.9}, nil)
			u := &upstream{resp: tt.up}
			id := ident(t, "t", promptBase)

			r := do(t, e.cache, id, u.fetch)
			wantOutcome(t, r, semantic.Miss, "")
			if r.Upstream.Status != tt.up.Status || r.ContentType != tt.up.ContentType || string(r.Body) != string(tt.up.Body) {
				t.Errorf("answer = %d %q %s, want it unchanged: %d %q %s",
					r.Upstream.Status, r.ContentType, r.Body, tt.up.Status, tt.up.ContentType, tt.up.Body)
			}
			if r.Stored != tt.wantStore {
				t.Errorf("Stored = %v, want %v", r.Stored, tt.wantStore)
			}
			if _, ok := semantic.Cacheable(tt.up); ok != tt.wantStore {
				t.Errorf("Cacheable = %v, want %v", ok, tt.wantStore)
			}
			wantLen := 0
			if tt.wantStore {
				wantLen = 1
			}
			if n, _ := e.cache.Len(context.Background()); n != wantLen {
				t.Errorf("Len = %d, want %d", n, wantLen)
			}
			if e.mem.VectorLen() != wantLen {
				t.Errorf("VectorLen = %d, want %d", e.mem.VectorLen(), wantLen)
			}

			r = do(t, e.cache, id, u.fetch)
			if tt.wantStore {
				wantOutcome(t, r, semantic.Hit, semantic.TierExact)
				wantCalls(t, u, 1)
			} else {
				wantOutcome(t, r, semantic.Miss, "")
				wantCalls(t, u, 2)
			}
			wantErrs := int64(0)
			if tt.up.Status != 200 {
				wantErrs = int64(u.calls.Load())
			}
			if got := e.cache.Stats().UpstreamErrors.Load(); got != wantErrs {
				t.Errorf("UpstreamErrors = %d, want %d", got, wantErrs)
			}
		})
	}
}

func TestDoFetchError(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.9}, nil)
	errDown := errors.New("connection refused")
	u := &upstream{err: errDown}
	id := ident(t, "t", promptBase)

	r, err := e.cache.Do(context.Background(), id, u.fetch)
	if !errors.Is(err, errDown) {
		t.Fatalf("Do error = %v, want %v", err, errDown)
	}
	if r.Outcome != "" || r.Body != nil {
		t.Errorf("Result with the error = %+v, want zero", r)
	}
	if n, _ := e.cache.Len(context.Background()); n != 0 || e.mem.VectorLen() != 0 {
		t.Errorf("Len %d, VectorLen %d after a failed fetch; want 0, 0", n, e.mem.VectorLen())
	}
	s := e.cache.Snapshot(context.Background())
	// A failed upstream call is still a miss: every request is counted once.
	if s.UpstreamCalls != 1 || s.UpstreamErrors != 1 || s.Misses != 1 || s.Hits != 0 || s.Requests != 1 {
		t.Errorf("Snapshot = %+v, want 1 request, 1 miss, 1 upstream call, 1 upstream error", s)
	}

	// The failure was not cached: the next call goes upstream again.
	u.err, u.resp = nil, ok200("Paris.")
	r = do(t, e.cache, id, u.fetch)
	wantOutcome(t, r, semantic.Miss, "")
	wantCalls(t, u, 2)
}

func TestDoEmbedderFailureFailsOpen(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.5}, nil)
	e.emb.fail(errors.New("embedder down"))
	u := &upstream{resp: ok200("Paris.")}
	id := ident(t, "t", promptBase)

	r := do(t, e.cache, id, u.fetch)
	wantOutcome(t, r, semantic.Miss, "")
	wantCalls(t, u, 1)
	if !r.Stored {
		t.Error("answer not stored although the exact tier needs no vector")
	}
	if got := e.cache.Stats().LookupErrors.Load(); got != 1 {
		t.Errorf("LookupErrors = %d, want 1", got)
	}
	if n, _ := e.mem.Len(context.Background()); n != 1 || e.mem.VectorLen() != 0 {
		t.Errorf("Len %d, VectorLen %d; want 1 entry without a vector", n, e.mem.VectorLen())
	}

	// The exact tier serves it without the embedder.
	r = do(t, e.cache, id, u.fetch)
	wantOutcome(t, r, semantic.Hit, semantic.TierExact)
	wantCalls(t, u, 1)

	// With the embedder back, a similar prompt misses: there is no vector to
	// find, and its own answer is stored with a vector.
	e.emb.fail(nil)
	u2 := &upstream{resp: ok200("Paris!")}
	r = do(t, e.cache, ident(t, "t", promptNear), u2.fetch)
	wantOutcome(t, r, semantic.Miss, "")
	wantCalls(t, u2, 1)
	if e.mem.VectorLen() != 1 {
		t.Errorf("VectorLen = %d, want 1", e.mem.VectorLen())
	}
}

func TestDoStoreFailureFailsOpen(t *testing.T) {
	errFull := errors.New("store full")
	e := newEnv(t, semantic.Config{Threshold: 0.9}, func(m *index.Memory) semantic.Store {
		return &hookStore{Memory: m, setErr: errFull}
	})
	u := &upstream{resp: ok200("Paris.")}
	id := ident(t, "t", promptBase)

	r := do(t, e.cache, id, u.fetch)
	wantOutcome(t, r, semantic.Miss, "")
	if r.Stored || string(r.Body) != string(u.resp.Body) {
		t.Errorf("Stored %v, Body %s; want false and the upstream answer", r.Stored, r.Body)
	}
	if got := e.cache.Stats().StoreErrors.Load(); got != 1 {
		t.Errorf("StoreErrors = %d, want 1", got)
	}
	do(t, e.cache, id, u.fetch)
	wantCalls(t, u, 2)
}

// waitingCtx is a context that reports the first call of Done. Do selects
// on ctx.Done only after it has joined the single flight (DoChan), so the
// report tells the test that the caller is now waiting on the shared call.
type waitingCtx struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
}

func newWaitingCtx(parent context.Context) *waitingCtx {
	return &waitingCtx{Context: parent, waiting: make(chan struct{})}
}

func (c *waitingCtx) Done() <-chan struct{} {
	c.once.Do(func() { close(c.waiting) })
	return c.Context.Done()
}

func TestDoCoalescesConcurrentMisses(t *testing.T) {
	const callers = 12
	e := newEnv(t, semantic.Config{Threshold: 0.9}, nil)
	id := ident(t, "t", promptBase)
	answer := ok200("Paris.")

	var calls atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // never leave callers blocked on a failed test
	fetch := func(ctx context.Context) (semantic.Upstream, error) {
		if calls.Add(1) == 1 {
			close(entered)
		}
		<-release
		return answer, nil
	}

	results := make([]semantic.Result, callers)
	errs := make([]error, callers)
	ctxs := make([]*waitingCtx, callers)
	var wg sync.WaitGroup
	call := func(i int) {
		ctxs[i] = newWaitingCtx(context.Background())
		wg.Go(func() { results[i], errs[i] = e.cache.Do(ctxs[i], id, fetch) })
	}
	call(0)
	<-entered // the leader's flight is blocked in fetch
	for i := 1; i < callers; i++ {
		call(i)
	}
	waitFor(t, "every caller to wait on the flight", func() bool {
		for _, c := range ctxs {
			select {
			case <-c.waiting:
			default:
				return false
			}
		}
		return true
	})
	if got := e.cache.Stats().Requests.Load(); got != callers {
		t.Errorf("Requests = %d while the flight is blocked, want %d", got, callers)
	}
	releaseOnce()
	wg.Wait()

	if got := calls.Load(); got != 1 {
		t.Errorf("fetch called %d times, want 1", got)
	}
	for i, r := range results {
		if errs[i] != nil {
			t.Errorf("caller %d: %v", i, errs[i])
			continue
		}
		if string(r.Body) != string(answer.Body) || r.Upstream.Status != 200 {
			t.Errorf("caller %d: %d %s, want the shared answer", i, r.Upstream.Status, r.Body)
		}
		if r.Outcome != semantic.Miss || !r.Shared || !r.Stored || r.Key != id.Key {
			t.Errorf("caller %d: Outcome %s, Shared %v, Stored %v, Key %s; want a shared, stored miss of %s",
				i, r.Outcome, r.Shared, r.Stored, r.Key, id.Key)
		}
	}
	s := e.cache.Snapshot(context.Background())
	if s.UpstreamCalls != 1 || s.Requests != callers || s.Misses != callers || s.Hits != 0 || s.Entries != 1 {
		t.Errorf("Snapshot = %+v, want 1 upstream call, %d requests and misses, 1 entry", s, callers)
	}
	if got := e.emb.calls.Load(); got != 1 {
		t.Errorf("embedder calls = %d, want 1 (the flight embeds once)", got)
	}

	// The next identical request is an exact hit.
	u := &upstream{resp: ok200("other")}
	wantOutcome(t, do(t, e.cache, id, u.fetch), semantic.Hit, semantic.TierExact)
	wantCalls(t, u, 0)
}

// waitFor yields until cond holds, failing the test after a bounded number
// of attempts (no wall clock).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 10_000_000 {
		if cond() {
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("gave up waiting for %s", what)
}

func TestDoCancelledCallerDoesNotCancelSharedCall(t *testing.T) {
	stored := make(chan struct{}, 1)
	e := newEnv(t, semantic.Config{Threshold: 0.9}, func(m *index.Memory) semantic.Store {
		return &hookStore{Memory: m, stored: stored}
	})
	id := ident(t, "t", promptBase)
	answer := ok200("Paris.")

	entered := make(chan struct{})
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce)
	fetchErr := make(chan error, 1)
	fetch := func(ctx context.Context) (semantic.Upstream, error) {
		close(entered)
		<-release
		fetchErr <- ctx.Err() // the detached context must still be live
		return answer, nil
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.cache.Do(ctx, id, fetch)
		done <- err
	}()
	<-entered
	cancel()
	// Do returns while fetch is still blocked.
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Do returned %v, want context.Canceled", err)
	}

	releaseOnce()
	if err := <-fetchErr; err != nil {
		t.Errorf("fetch saw its context done (%v) after the only caller left", err)
	}
	<-stored // the abandoned flight still stores the answer

	u := &upstream{resp: ok200("other")}
	r := do(t, e.cache, id, u.fetch)
	wantOutcome(t, r, semantic.Hit, semantic.TierExact)
	wantCalls(t, u, 0)
	if string(r.Body) != string(answer.Body) {
		t.Errorf("hit served %s, want the abandoned flight's answer", r.Body)
	}
}

func TestDoAgeAndTTL(t *testing.T) {
	const ttl = 10 * time.Minute
	tests := []struct {
		name    string
		advance time.Duration
		query   string
		want    semantic.Outcome
		tier    semantic.Tier
	}{
		{"fresh exact hit", 0, promptBase, semantic.Hit, semantic.TierExact},
		{"exact hit after 90s", 90 * time.Second, promptBase, semantic.Hit, semantic.TierExact},
		{"semantic hit after 90s", 90 * time.Second, promptNear, semantic.Hit, semantic.TierSemantic},
		{"exact hit 1ms before the TTL", ttl - time.Millisecond, promptBase, semantic.Hit, semantic.TierExact},
		{"exact miss at the TTL", ttl, promptBase, semantic.Miss, ""},
		{"semantic miss at the TTL", ttl, promptNear, semantic.Miss, ""},
		{"exact miss after the TTL", ttl + time.Hour, promptBase, semantic.Miss, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, semantic.Config{Threshold: 0.8, TTL: ttl}, nil)
			do(t, e.cache, ident(t, "t", promptBase), (&upstream{resp: ok200("Paris.")}).fetch)
			e.clock.Advance(tt.advance)

			u := &upstream{resp: ok200("Paris, again.")}
			r := do(t, e.cache, ident(t, "t", tt.query), u.fetch)
			wantOutcome(t, r, tt.want, tt.tier)
			if tt.want == semantic.Hit {
				wantCalls(t, u, 0)
				if r.Age != tt.advance {
					t.Errorf("Age = %v, want %v", r.Age, tt.advance)
				}
			} else {
				wantCalls(t, u, 1)
				if r.Age != 0 {
					t.Errorf("miss Age = %v, want 0", r.Age)
				}
			}
		})
	}
}

func TestDefaultTTLIsOneHour(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.9}, nil)
	id := ident(t, "t", promptBase)
	u := &upstream{resp: ok200("Paris.")}
	do(t, e.cache, id, u.fetch)
	e.clock.Advance(time.Hour - time.Millisecond)
	wantOutcome(t, do(t, e.cache, id, u.fetch), semantic.Hit, semantic.TierExact)
	e.clock.Advance(time.Millisecond)
	wantOutcome(t, do(t, e.cache, id, u.fetch), semantic.Miss, "")
}

func TestStatsAndSnapshot(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.8}, nil)
	paris := &upstream{resp: semantic.Upstream{Status: 200, Body: completion("Paris.", 12, 3, reason("stop"))}}
	bread := &upstream{resp: semantic.Upstream{Status: 200, Body: completion("Knead.", 7, 40, reason("stop"))}}
	failing := &upstream{resp: semantic.Upstream{Status: 503, Body: []byte(`{}`)}}

	steps := []struct {
		prompt string
		up     *upstream
		want   semantic.Outcome
		tier   semantic.Tier
	}{
		{promptBase, paris, semantic.Miss, ""},                   // stored: 12 + 3 tokens
		{promptBase, paris, semantic.Hit, semantic.TierExact},    // saves 12 + 3
		{promptNear, paris, semantic.Hit, semantic.TierSemantic}, // saves 12 + 3
		{promptTwin, paris, semantic.Hit, semantic.TierSemantic}, // saves 12 + 3
		{promptFar, bread, semantic.Miss, ""},                    // stored: 7 + 40
		{promptFar, bread, semantic.Hit, semantic.TierExact},     // saves 7 + 40
		{promptBelow, failing, semantic.Miss, ""},                // 0.7999: upstream error, not stored
	}
	for i, s := range steps {
		r := do(t, e.cache, ident(t, "t", s.prompt), s.up.fetch)
		if r.Outcome != s.want || r.Tier != s.tier {
			t.Errorf("step %d (%q): %s/%q, want %s/%q", i, s.prompt, r.Outcome, r.Tier, s.want, s.tier)
		}
	}
	e.cache.Stats().Bypasses.Add(1) // the proxy's count

	got := e.cache.Snapshot(context.Background())
	want := semantic.Snapshot{
		Requests:              7,
		Hits:                  4,
		ExactHits:             2,
		SemanticHits:          2,
		Misses:                3,
		Bypasses:              1,
		HitRate:               4.0 / 7.0,
		Entries:               2,
		UpstreamCalls:         3,
		UpstreamErrors:        1,
		LookupErrors:          0,
		StoreErrors:           0,
		PromptTokensSaved:     3*12 + 7,
		CompletionTokensSaved: 3*3 + 40,
		Policy:                "static",
	}
	if got.StoreBytes == 0 {
		t.Errorf("StoreBytes 0 with 2 entries")
	}
	want.StoreBytes = got.StoreBytes // the store's own accounting, tested in index
	want.StoreDiskBytes = -1         // no data directory
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Snapshot =\n %+v\nwant\n %+v", got, want)
	}

	// The live counters agree with the snapshot.
	s := e.cache.Stats()
	if s.Requests.Load() != want.Requests || s.Misses.Load() != want.Misses || s.PromptTokensSaved.Load() != want.PromptTokensSaved {
		t.Error("Stats and Snapshot disagree")
	}

	// Snapshot of a fresh cache: no division by zero.
	fresh := newEnv(t, semantic.Config{Threshold: 0.8}, nil).cache.Snapshot(context.Background())
	if !reflect.DeepEqual(fresh, semantic.Snapshot{Policy: "static", StoreDiskBytes: -1}) {
		t.Errorf("fresh Snapshot = %+v, want zero counters", fresh)
	}
}

func TestDeleteRemovesBothTiers(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.8}, nil)
	id := ident(t, "t", promptBase)
	u := &upstream{resp: ok200("Paris.")}
	do(t, e.cache, id, u.fetch)

	ok, err := e.cache.Delete(context.Background(), id.Key)
	if err != nil || !ok {
		t.Fatalf("Delete = %v, %v; want true, nil", ok, err)
	}
	if e.mem.VectorLen() != 0 {
		t.Errorf("VectorLen = %d after Delete, want 0", e.mem.VectorLen())
	}
	u2 := &upstream{resp: ok200("Paris!")}
	wantOutcome(t, do(t, e.cache, ident(t, "t", promptNear), u2.fetch), semantic.Miss, "")
	if ok, _ := e.cache.Delete(context.Background(), id.Key); ok {
		t.Error("second Delete reported the entry present")
	}
}

// A miss reports its best neighbour's similarity, whatever became of it,
// and says so when the scope held none: the dashboard's near-miss
// histogram reads them.
func TestMissReportsNearestNeighbour(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.9}, nil)
	first := do(t, e.cache, ident(t, "t", promptBase), (&upstream{resp: ok200("Paris.")}).fetch)
	wantOutcome(t, first, semantic.Miss, "")
	if first.HasNearest {
		t.Errorf("first miss in an empty scope: HasNearest with Nearest %v, want none", first.Nearest)
	}
	r := do(t, e.cache, ident(t, "t", promptNear), (&upstream{resp: ok200("Other.")}).fetch)
	wantOutcome(t, r, semantic.Miss, "")
	if !r.HasNearest || math.Abs(r.Nearest-0.8) > 1e-6 {
		t.Errorf("miss below the threshold: Nearest %v (HasNearest %v), want 0.8", r.Nearest, r.HasNearest)
	}
	if r.Similarity != 0 {
		t.Errorf("Similarity = %v on a plain miss, want 0 (it stays the served or explored similarity)", r.Similarity)
	}
}
