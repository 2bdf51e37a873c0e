package semantic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/index/redistest"
	"github.com/semcache/semcache/semantic"
)

// Prompts at cosine similarity 0.8 to promptBase ([0.8, 0.6, 0] like
// promptNear), and answers for the judge's embedding stage.
var nearPrompts []string

const (
	answerParis   = "Paris."       // [1, 0, 0]
	answerItParis = "It is Paris." // [0.8, 0.6, 0]: 0.8 to answerParis
	promptNegated = "What is not the capital of France?"
	promptTwo     = "Is 2 the answer?" // [0, 1, 0]
	promptThree   = "Is 3 the answer?" // [0, 1, 0]
)

func init() {
	for i := range 12 {
		p := fmt.Sprintf("Capital city of France, variant %d?", i)
		nearPrompts = append(nearPrompts, p)
		fakeVectors[p] = []float32{0.8, 0.6, 0}
	}
	fakeVectors[answerParis] = []float32{1, 0, 0}
	fakeVectors[answerItParis] = []float32{0.8, 0.6, 0}
	fakeVectors[promptNegated] = []float32{1, 0, 0}
	fakeVectors[promptTwo] = []float32{0, 1, 0}
	fakeVectors[promptThree] = []float32{0, 1, 0}
}

// stateStore is a store with the adaptive policy's per-entry state.
type stateStore interface {
	semantic.Store
	AddObservation(ctx context.Context, key string, obs []byte, max int) ([][]byte, bool, error)
	SetFit(ctx context.Context, key string, fit []byte) (bool, error)
	Fit(ctx context.Context, key string) ([]byte, bool, error)
	Close() error
}

// stateBackend opens a store; reopen opens a second client on the same
// data (a new process would see what reopen sees).
type stateBackend struct {
	name   string
	open   func(t *testing.T) stateStore
	reopen func(t *testing.T) stateStore
}

// forStateBackends runs f on the memory store and on Redis with the search
// module (skipped with a line without SEMCACHE_TEST_REDISEARCH_MODULE).
func forStateBackends(t *testing.T, f func(t *testing.T, b stateBackend)) {
	t.Run("memory", func(t *testing.T) {
		var mem *index.Memory
		open := func(t *testing.T) stateStore {
			if mem == nil {
				var err error
				mem, err = index.NewMemory(index.MemoryConfig{Dim: 3, SweepInterval: -1, Index: "flat"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { mem.Close() })
			}
			return mem
		}
		f(t, stateBackend{"memory", open, open})
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.StartSearch(t)
		open := func(t *testing.T) stateStore {
			r, err := index.NewRedis(t.Context(), index.RedisConfig{URL: srv.URL(), Dim: 3, Fingerprint: "fake/3"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return r
		}
		f(t, stateBackend{"redis", open, open})
	})
}

// adaptiveCache returns an adaptive cache over store with the test
// embedder; mod adjusts the adaptive configuration.
func adaptiveCache(t *testing.T, store semantic.Store, mod func(*semantic.AdaptiveConfig)) *semantic.Cache {
	t.Helper()
	a := semantic.AdaptiveConfig{MaxErrorRate: 0.01, MinObservations: 2, Seed: 7, Judge: &semantic.AnswerJudge{}, Rule: semantic.RuleEntry}
	if mod != nil {
		mod(&a)
	}
	c, err := semantic.New(semantic.Config{Threshold: 0.99, Policy: semantic.PolicyAdaptive, Adaptive: a,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, &fakeEmbedder{t: t}, store)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// answering is an upstream that answers every request with text.
func answering(text string, calls *atomic.Int32) semantic.FetchFunc {
	return func(context.Context) (semantic.Upstream, error) {
		calls.Add(1)
		return semantic.Upstream{Status: 200, ContentType: "application/json", Body: completion(text, 10, 2, reason("stop"))}, nil
	}
}

func mustDo(t *testing.T, c *semantic.Cache, prompt string, o semantic.Options, fetch semantic.FetchFunc) semantic.Result {
	t.Helper()
	r, err := c.DoWith(t.Context(), ident(t, "", prompt), o, fetch)
	if err != nil {
		t.Fatalf("DoWith(%q): %v", prompt, err)
	}
	c.Drain()
	return r
}

func storedFit(t *testing.T, s stateStore, key string) semantic.Fit {
	t.Helper()
	raw, ok, err := s.Fit(t.Context(), key)
	if err != nil || !ok {
		t.Fatalf("Fit(%s) = ok %v, %v", key, ok, err)
	}
	var f semantic.Fit
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("stored fit %s: %v", raw, err)
	}
	return f
}

func setFit(t *testing.T, s stateStore, key string, f semantic.Fit) {
	t.Helper()
	raw, _ := json.Marshal(f)
	if ok, err := s.SetFit(t.Context(), key, raw); !ok || err != nil {
		t.Fatalf("SetFit = %v, %v", ok, err)
	}
}

// TestAdaptiveLearnsAndPersists: a young entry is always explored; each
// right verdict becomes an observation in the store, visible to a second
// client of the same store (a restarted process); the explored request
// keeps an exact-tier copy of its fresh answer.
func TestAdaptiveLearnsAndPersists(t *testing.T) {
	forStateBackends(t, func(t *testing.T, b stateBackend) {
		store := b.open(t)
		c := adaptiveCache(t, store, nil)
		var calls atomic.Int32
		up := answering(answerParis, &calls)
		base := mustDo(t, c, promptBase, semantic.Options{}, up)
		if base.Outcome != semantic.Miss || !base.Stored {
			t.Fatalf("first request: %+v", base)
		}
		for i, p := range nearPrompts[:2] {
			r := mustDo(t, c, p, semantic.Options{}, up)
			if r.Outcome != semantic.Miss || !r.Explored {
				t.Fatalf("request %d at 0.8 to a young entry: outcome %s, explored %v; want an exploration", i, r.Outcome, r.Explored)
			}
			if f := storedFit(t, store, base.Key); f.N != i+1 {
				t.Errorf("after %d verdicts the stored fit has N = %d", i+1, f.N)
			}
		}
		s := c.Snapshot(t.Context())
		if s.Explorations != 2 || s.JudgeCalls != 2 || s.VerifiedRight != 2 || s.VerifiedWrong != 0 || calls.Load() != 3 {
			t.Errorf("stats %+v, upstream calls %d", s, calls.Load())
		}
		// The explored request's fresh answer is in the exact tier.
		if r := mustDo(t, c, nearPrompts[0], semantic.Options{}, up); r.Outcome != semantic.Hit || r.Tier != semantic.TierExact {
			t.Errorf("repeat of an explored request: %s %s, want an exact hit", r.Outcome, r.Tier)
		}

		// A second client sees both observations and appends after them.
		other := b.reopen(t)
		list, ok, err := other.AddObservation(t.Context(), base.Key, []byte{0, 0, 0x40, 0x3f, 1}, 256)
		if err != nil || !ok || len(list) != 3 {
			t.Fatalf("second client: AddObservation = %d observations, %v, %v; want 3", len(list), ok, err)
		}
	})
}

// TestAdaptiveWrongVerdictAddsEntry: when the fresh answer differs, the
// request becomes an entry of its own, findable by its vector, and the
// observation is recorded as wrong.
func TestAdaptiveWrongVerdictAddsEntry(t *testing.T) {
	forStateBackends(t, func(t *testing.T, b stateBackend) {
		store := b.open(t)
		c := adaptiveCache(t, store, nil)
		var calls atomic.Int32
		base := mustDo(t, c, promptBase, semantic.Options{}, answering(answerParis, &calls))
		near := mustDo(t, c, nearPrompts[0], semantic.Options{}, answering("Lyon.", &calls))
		if !near.Explored {
			t.Fatalf("near request not explored: %+v", near)
		}
		if s := c.Snapshot(t.Context()); s.VerifiedWrong != 1 || s.VerifiedRight != 0 {
			t.Errorf("verdicts: right %d, wrong %d; want 0, 1", s.VerifiedRight, s.VerifiedWrong)
		}
		if f := storedFit(t, store, base.Key); f.N != 1 {
			t.Errorf("base fit N = %d, want 1", f.N)
		}
		// The new entry starts with the symmetric observation: the base
		// prompt at 0.8 would get its answer wrong.
		list, ok, err := store.AddObservation(t.Context(), near.Key, []byte{0, 0, 0x80, 0x3f, 1}, 256)
		if err != nil || !ok || len(list) != 2 || list[0][4] != 0 {
			t.Errorf("new entry's observations = %v, %v, %v; want the wrong one at 0.8 first", list, ok, err)
		}
		id := ident(t, "", nearPrompts[1])
		nn, err := store.Search(t.Context(), id.Scope, []float32{0.8, 0.6, 0}, 1)
		if err != nil || len(nn) != 1 || nn[0].ID != near.Key {
			t.Fatalf("nearest to the near vector = %+v, %v; want the wrongly-served request's own entry %s", nn, err, near.Key)
		}
		// The next request like it is explored against that new entry,
		// whose answer is right for it.
		r := mustDo(t, c, nearPrompts[1], semantic.Options{}, answering("Lyon.", &calls))
		if !r.Explored || c.Snapshot(t.Context()).VerifiedRight != 1 {
			t.Errorf("second near request: explored %v, right verdicts %d", r.Explored, c.Snapshot(t.Context()).VerifiedRight)
		}
	})
}

// steep is a fit that serves any similarity well above 0.3: α(ε) = 1-ε,
// at most 0.995 on the default grid.
var steep = semantic.Fit{T: 0.3, Gamma: 200, SDT: 0.001, N: 50}

// TestAdaptiveFloor: below the floor a neighbour is neither served nor
// explored, however good its fit; above it, the same fit serves.
func TestAdaptiveFloor(t *testing.T) {
	forStateBackends(t, func(t *testing.T, b stateBackend) {
		for _, c := range []struct {
			floor   float64
			outcome semantic.Outcome
		}{{0.85, semantic.Miss}, {0.75, semantic.Hit}} {
			store := b.open(t)
			cache := adaptiveCache(t, store, func(a *semantic.AdaptiveConfig) { a.Floor = c.floor })
			var calls atomic.Int32
			base := mustDo(t, cache, promptBase, semantic.Options{Threshold: 0}, answering(answerParis, &calls))
			setFit(t, store, base.Key, steep)
			r := mustDo(t, cache, nearPrompts[0], semantic.Options{}, answering(answerParis, &calls))
			s := cache.Snapshot(t.Context())
			if r.Outcome != c.outcome || r.Explored || s.Explorations != 0 || s.JudgeCalls != 0 {
				t.Errorf("floor %.2f, neighbour at 0.8: outcome %s explored %v, explorations %d, judge calls %d; want %s, no exploration",
					c.floor, r.Outcome, r.Explored, s.Explorations, s.JudgeCalls, c.outcome)
			}
			if c.outcome == semantic.Hit && (r.Tier != semantic.TierSemantic || r.Similarity < 0.79) {
				t.Errorf("floor %.2f: %+v, want a semantic hit at 0.8", c.floor, r)
			}
			if c.outcome == semantic.Miss && !r.Stored {
				t.Errorf("floor %.2f: the miss below the floor was not stored", c.floor)
			}
			if _, err := cache.Delete(t.Context(), base.Key); err != nil {
				t.Fatal(err)
			}
			if _, err := cache.Delete(t.Context(), r.Key); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestAdaptiveMaxErrorTightenOnly: X-Semcache-Max-Error (Options) can
// lower δ, which makes the cache explore where it served, but never raise
// it.
func TestAdaptiveMaxErrorTightenOnly(t *testing.T) {
	forStateBackends(t, func(t *testing.T, b stateBackend) {
		for _, c := range []struct {
			configured, requested float64
			wantServed            bool
		}{
			{0.01, 0, true},       // α 0.995 >= 1-δ: τ̂ = 0, always served
			{0.01, 0.5, true},     // looser: same as configured
			{0.01, 0.001, false},  // tighter: τ̂ = 0.8, explorations
			{0.001, 0.5, false},   // looser than a strict configuration: ignored
			{0.001, 0.001, false}, // equal
		} {
			store := b.open(t)
			cache := adaptiveCache(t, store, func(a *semantic.AdaptiveConfig) { a.MaxErrorRate = c.configured })
			if got, want := cache.MaxErrorRate(c.requested), min(c.configured, max(c.requested, 0)); (c.requested > 0 && got != want) || (c.requested == 0 && got != c.configured) {
				t.Errorf("MaxErrorRate(%v) with δ %v = %v", c.requested, c.configured, got)
			}
			var calls atomic.Int32
			base := mustDo(t, cache, promptBase, semantic.Options{}, answering(answerParis, &calls))
			setFit(t, store, base.Key, steep)
			for _, p := range nearPrompts[:10] {
				mustDo(t, cache, p, semantic.Options{MaxErrorRate: c.requested}, answering(answerParis, &calls))
			}
			s := cache.Snapshot(t.Context())
			if served := s.Explorations == 0 && s.SemanticHits == 10; served != c.wantServed {
				t.Errorf("δ %v, requested %v: %d semantic hits, %d explorations; want all served: %v",
					c.configured, c.requested, s.SemanticHits, s.Explorations, c.wantServed)
			}
			if !c.wantServed && s.Explorations == 0 {
				t.Errorf("δ %v, requested %v: no exploration at τ̂ 0.8 in 10 requests", c.configured, c.requested)
			}
			for _, p := range append([]string{promptBase}, nearPrompts[:10]...) {
				if _, err := cache.Delete(t.Context(), ident(t, "", p).Key); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// TestAdaptiveJudgeFailureIsWrong: an LLM judge that fails (HTTP 500, or a
// reply that is neither yes nor no) gives a wrong verdict: the observation
// is recorded as wrong and the fresh answer becomes an entry.
func TestAdaptiveJudgeFailureIsWrong(t *testing.T) {
	for _, reply := range []string{"", "maybe"} {
		var judged atomic.Int32
		llm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			judged.Add(1)
			if reply == "" {
				http.Error(w, "overloaded", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(completion(reply, 1, 1, reason("stop")))
		}))
		t.Cleanup(llm.Close)
		mem, err := index.NewMemory(index.MemoryConfig{Dim: 3, SweepInterval: -1, Index: "flat"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mem.Close() })
		judge := &semantic.AnswerJudge{Embedder: &fakeEmbedder{t: t}, Threshold: 0.99, GreyBand: 0.5,
			LLM: &semantic.LLMJudge{URL: llm.URL, Model: "judge", Client: &http.Client{Timeout: 10 * time.Second}}}
		c := adaptiveCache(t, mem, func(a *semantic.AdaptiveConfig) { a.Judge = judge })
		var calls atomic.Int32
		base := mustDo(t, c, promptBase, semantic.Options{}, answering(answerParis, &calls))
		near := mustDo(t, c, nearPrompts[0], semantic.Options{}, answering(answerItParis, &calls))
		s := c.Snapshot(t.Context())
		if !near.Explored || judged.Load() != 1 || s.JudgeErrors != 1 || s.VerifiedWrong != 1 || s.VerifiedRight != 0 {
			t.Errorf("reply %q: explored %v, LLM calls %d, stats %+v; want one judge error counted wrong", reply, near.Explored, judged.Load(), s)
		}
		raw, ok, _ := mem.Fit(t.Context(), base.Key)
		var f semantic.Fit
		if !ok || json.Unmarshal(raw, &f) != nil || f.N != 1 {
			t.Errorf("reply %q: base fit %s", reply, raw)
		}
		list, _, _ := mem.AddObservation(t.Context(), base.Key, []byte{0, 0, 0, 0, 0}, 256)
		if len(list) != 2 || list[0][4] != 0 {
			t.Errorf("reply %q: first observation %v, want recorded as wrong", reply, list)
		}
		if mem.VectorLen() != 2 {
			t.Errorf("reply %q: %d vectors, want 2 (the fresh answer became an entry)", reply, mem.VectorLen())
		}
		// A judge error says nothing about the new entry: no observation.
		if _, ok, _ := mem.Fit(t.Context(), near.Key); ok {
			t.Errorf("reply %q: the new entry got a fit from a judge error", reply)
		}
	}
}

// TestGuardsOnServingPath: under the static policy, a neighbour that
// differs in negation or numbers is refused (counted by reason) even at
// similarity 1; without guards it is served.
func TestGuardsOnServingPath(t *testing.T) {
	g, err := semantic.NewGuards(semantic.GuardsConfig{Numbers: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, guards := range []*semantic.Guards{nil, g} {
		e := newEnv(t, semantic.Config{Threshold: 0.9, Guards: guards}, nil)
		var calls atomic.Int32
		for _, pair := range [][2]string{{promptBase, promptNegated}, {promptTwo, promptThree}} {
			mustDo(t, e.cache, pair[0], semantic.Options{}, answering(answerParis, &calls))
			r := mustDo(t, e.cache, pair[1], semantic.Options{}, answering(answerParis, &calls))
			if want := guards == nil; (r.Outcome == semantic.Hit) != want {
				t.Errorf("guards %v: %q after %q: %s, want hit %v", guards != nil, pair[1], pair[0], r.Outcome, want)
			}
		}
		s := e.cache.Snapshot(t.Context())
		want := semantic.GuardRefusals{}
		if guards != nil {
			want = semantic.GuardRefusals{Negation: 1, Number: 1}
		}
		if s.GuardRefusals != want {
			t.Errorf("guards %v: refusals %+v, want %+v", guards != nil, s.GuardRefusals, want)
		}
	}
}

// TestAdaptiveConfigErrors: bad adaptive settings name the field and no
// cache is made.
func TestAdaptiveConfigErrors(t *testing.T) {
	mem, err := index.NewMemory(index.MemoryConfig{Dim: 3, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for _, c := range []struct {
		a    semantic.AdaptiveConfig
		want string
	}{
		{semantic.AdaptiveConfig{}, "Judge"},
		{semantic.AdaptiveConfig{Judge: &semantic.AnswerJudge{}, MaxErrorRate: 1}, "MaxErrorRate"},
		{semantic.AdaptiveConfig{Judge: &semantic.AnswerJudge{}, MaxErrorRate: -0.1}, "MaxErrorRate"},
		{semantic.AdaptiveConfig{Judge: &semantic.AnswerJudge{}, Floor: 1.5}, "Floor"},
		{semantic.AdaptiveConfig{Judge: &semantic.AnswerJudge{}, MinObservations: -1}, "MinObservations"},
		{semantic.AdaptiveConfig{Judge: &semantic.AnswerJudge{}, Epsilons: []float64{0.1, 1}}, "Epsilons"},
		{semantic.AdaptiveConfig{Judge: &semantic.AnswerJudge{}, Rule: "global"}, "Rule"},
		{semantic.AdaptiveConfig{Judge: &semantic.AnswerJudge{}, Audit: 1}, "Audit"},
		{semantic.AdaptiveConfig{Judge: &semantic.AnswerJudge{}, Audit: -0.1}, "Audit"},
	} {
		_, err := semantic.New(semantic.Config{Threshold: 0.9, Policy: semantic.PolicyAdaptive, Adaptive: c.a}, &fakeEmbedder{t: t}, mem)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want one naming %s", c.a, err, c.want)
		}
	}
	if _, err := semantic.New(semantic.Config{Threshold: 0.9, Policy: "sometimes"}, &fakeEmbedder{t: t}, mem); err == nil || !strings.Contains(err.Error(), "Policy") {
		t.Errorf("unknown policy: %v", err)
	}
}

// TestAdaptiveCloseDropsUnfinished: Close does not wait for a slow judge:
// the verification in flight is cancelled and counted as dropped, never
// recorded as wrong; requests after Close still work and queue nothing.
func TestAdaptiveCloseDropsUnfinished(t *testing.T) {
	asked := make(chan struct{}, 1)
	llm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so that the server notices the client hanging up
		asked <- struct{}{}
		<-r.Context().Done() // never answers: only the cancellation ends it
	}))
	defer llm.Close()
	mem, err := index.NewMemory(index.MemoryConfig{Dim: 3, SweepInterval: -1, Index: "flat"})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	judge := &semantic.AnswerJudge{Embedder: &fakeEmbedder{t: t}, Threshold: 0.99, GreyBand: 0.5,
		LLM: &semantic.LLMJudge{URL: llm.URL, Model: "judge"}}
	c := adaptiveCache(t, mem, func(a *semantic.AdaptiveConfig) { a.Judge = judge; a.JudgeTimeout = time.Hour })
	var calls atomic.Int32
	base, err := c.Do(t.Context(), ident(t, "", promptBase), answering(answerParis, &calls))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(t.Context(), ident(t, "", nearPrompts[0]), answering(answerItParis, &calls)); err != nil {
		t.Fatal(err)
	}
	<-asked // the verification is in the LLM judge's hands
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		t.Fatal("Close waited for the judge")
	}
	s := c.Snapshot(t.Context())
	if s.JudgeDropped != 1 || s.VerifiedWrong != 0 || s.VerifiedRight != 0 || s.JudgeErrors != 0 {
		t.Errorf("after Close: %+v; want one dropped verification and no verdict", s)
	}
	if _, ok, _ := mem.Fit(t.Context(), base.Key); ok {
		t.Error("an unfinished verification was recorded")
	}
	r, err := c.Do(t.Context(), ident(t, "", nearPrompts[1]), answering(answerItParis, &calls))
	if err != nil || !r.Explored {
		t.Fatalf("request after Close: %+v, %v", r, err)
	}
	if s := c.Snapshot(t.Context()); s.JudgeDropped != 2 {
		t.Errorf("after a request past Close: dropped %d, want 2", s.JudgeDropped)
	}
}
