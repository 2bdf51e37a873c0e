package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/api/sim"
	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/index/redistest"
	"github.com/semcache/semcache/semantic"
)

// testThreshold is the threshold of the proxies under test; the paraphrase
// pair below is above it with the local embedder, the unrelated prompts far
// below.
const testThreshold = 0.85

// upstream is a counting fake LLM API: the simulator, or a handler of the
// test's own, behind a real HTTP server.
type upstream struct {
	srv   *httptest.Server
	calls atomic.Int64
	// lastAuth is the Authorization header of the last call.
	mu       sync.Mutex
	lastAuth string
}

func newUpstream(t *testing.T, h http.Handler) *upstream {
	t.Helper()
	if h == nil {
		h = sim.New(sim.Config{})
	}
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/chat/completions" {
			u.calls.Add(1)
		}
		u.mu.Lock()
		u.lastAuth = r.Header.Get("Authorization")
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) auth() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastAuth
}

type proxy struct {
	url   string
	cache *semantic.Cache
	up    *upstream
}

// newProxy starts the real proxy (local embedder, in-process HNSW store) in
// front of up.
func newProxy(t *testing.T, up *upstream, mutate func(*api.Config)) *proxy {
	t.Helper()
	return newProxyWith(t, up, mutate, nil)
}

// newProxyWith is newProxy with the cache's configuration adjustable too.
func newProxyWith(t *testing.T, up *upstream, mutate func(*api.Config), mutateCache func(*semantic.Config)) *proxy {
	t.Helper()
	emb, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return proxyOnStore(t, up, emb, newStore(t, emb), mutate, mutateCache)
}

// proxyOnStore starts the real proxy over the given embedder and store,
// with the test threshold and the config adjustments (either may be nil).
func proxyOnStore(t *testing.T, up *upstream, emb semantic.Embedder, store semantic.Store, mutate func(*api.Config), mutateCache func(*semantic.Config)) *proxy {
	t.Helper()
	ccfg := semantic.Config{Threshold: testThreshold}
	if mutateCache != nil {
		mutateCache(&ccfg)
	}
	cache, err := semantic.New(ccfg, emb, store)
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{Upstream: up.srv.URL + "/v1"}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := api.New(cfg, cache)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &proxy{url: hs.URL, cache: cache, up: up}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) semStatus() string { return r.header.Get(api.HeaderStatus) }

// content returns the first choice's message content.
func (r reply) content(t *testing.T) string {
	t.Helper()
	var b struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || len(b.Choices) == 0 {
		t.Fatalf("not a chat completion (%v): %s", err, r.body)
	}
	return b.Choices[0].Message.Content
}

func (p *proxy) post(t *testing.T, key string, body string) reply {
	t.Helper()
	return p.do(t, http.MethodPost, "/v1/chat/completions", key, body)
}

func (p *proxy) do(t *testing.T, method, path, key, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return p.send(t, req)
}

// send sends req and reads the whole reply.
func (p *proxy) send(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// chat builds a request body: model, extra top-level fields (a JSON object
// fragment without braces, may be empty) and messages as role/content pairs.
func chat(model, extra string, roleContent ...string) string {
	var msgs []string
	for i := 0; i+1 < len(roleContent); i += 2 {
		m, _ := json.Marshal(map[string]string{"role": roleContent[i], "content": roleContent[i+1]})
		msgs = append(msgs, string(m))
	}
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Sprintf(`{"model":%q,"messages":[%s]%s}`, model, strings.Join(msgs, ","), extra)
}

const (
	question   = "How do I reset my password?"
	paraphrase = "How can I reset my password?"
)

func TestRepeatIsOneUpstreamCall(t *testing.T) { forEachBackend(t, testRepeatIsOneUpstreamCall) }

func testRepeatIsOneUpstreamCall(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	body := chat("gpt-4o-mini", "", "user", question)
	first := p.post(t, "sk-a", body)
	if first.status != 200 || first.semStatus() != "MISS" {
		t.Fatalf("first: status %d %s, want 200 MISS: %s", first.status, first.semStatus(), first.body)
	}
	// Same prompt, other case and spacing: the exact tier normalises it.
	second := p.post(t, "sk-a", chat("gpt-4o-mini", "", "user", "  how do I RESET my password? "))
	if second.semStatus() != "HIT" || second.header.Get(api.HeaderTier) != "exact" {
		t.Fatalf("second: %s tier %q, want HIT exact", second.semStatus(), second.header.Get(api.HeaderTier))
	}
	if !bytes.Equal(first.body, second.body) {
		t.Errorf("hit body differs from the stored answer:\n%s\n%s", first.body, second.body)
	}
	if k1, k2 := first.header.Get(api.HeaderKey), second.header.Get(api.HeaderKey); k1 == "" || k1 != k2 {
		t.Errorf("X-Semcache-Key: miss %q, hit %q; want the same non-empty key", k1, k2)
	}
	if second.header.Get("Age") == "" {
		t.Error("hit has no Age header")
	}
	if n := p.up.calls.Load(); n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
}

func TestParaphraseIsSemanticHit(t *testing.T) { forEachBackend(t, testParaphraseIsSemanticHit) }

func testParaphraseIsSemanticHit(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	first := p.post(t, "sk-a", chat("gpt-4o-mini", "", "user", question))
	r := p.post(t, "sk-a", chat("gpt-4o-mini", "", "user", paraphrase))
	if r.semStatus() != "HIT" || r.header.Get(api.HeaderTier) != "semantic" {
		t.Fatalf("paraphrase: %s tier %q, want HIT semantic", r.semStatus(), r.header.Get(api.HeaderTier))
	}
	var sim float64
	if _, err := fmt.Sscan(r.header.Get(api.HeaderSimilarity), &sim); err != nil || sim < testThreshold || sim > 1 {
		t.Errorf("X-Semcache-Similarity %q: want a cosine similarity in [%v, 1]", r.header.Get(api.HeaderSimilarity), testThreshold)
	}
	if r.header.Get(api.HeaderKey) != first.header.Get(api.HeaderKey) {
		t.Errorf("semantic hit key %q, want the source entry %q", r.header.Get(api.HeaderKey), first.header.Get(api.HeaderKey))
	}
	if got := r.content(t); got != simAnswer(question) {
		t.Errorf("content %q, want the cached answer %q", got, simAnswer(question))
	}
	// Unrelated prompt: a miss.
	if u := p.post(t, "sk-a", chat("gpt-4o-mini", "", "user", "What is the capital of France?")); u.semStatus() != "MISS" {
		t.Errorf("unrelated prompt: %s, want MISS", u.semStatus())
	}
	if n := p.up.calls.Load(); n != 2 {
		t.Errorf("upstream calls = %d, want 2", n)
	}
}

func simAnswer(q string) string { return sim.AnswerPrefix + q }

// TestScopeIsolation sends a warm request, then variants that must not be
// served its answer: each differs in something that changes the answer.
func TestScopeIsolation(t *testing.T) { forEachBackend(t, testScopeIsolation) }

func testScopeIsolation(t *testing.T) {
	warm := chat("gpt-4o-mini", `"temperature":0`, "system", "You are a bank assistant.", "user", question)
	cases := []struct {
		name, key, body string
	}{
		{"other model", "sk-a", chat("gpt-4o", `"temperature":0`, "system", "You are a bank assistant.", "user", question)},
		{"other temperature", "sk-a", chat("gpt-4o-mini", `"temperature":0.9`, "system", "You are a bank assistant.", "user", question)},
		{"max_tokens added", "sk-a", chat("gpt-4o-mini", `"temperature":0,"max_tokens":5`, "system", "You are a bank assistant.", "user", question)},
		{"other system prompt", "sk-a", chat("gpt-4o-mini", `"temperature":0`, "system", "You are a pirate.", "user", question)},
		{"no system prompt", "sk-a", chat("gpt-4o-mini", `"temperature":0`, "user", question)},
		{"other history", "sk-a", chat("gpt-4o-mini", `"temperature":0`, "system", "You are a bank assistant.",
			"user", "I am locked out of my work laptop.", "assistant", "Sorry to hear that.", "user", question)},
		{"other API key", "sk-b", warm},
		{"no API key", "", warm},
	}
	p := newProxy(t, newUpstream(t, nil), nil)
	if r := p.post(t, "sk-a", warm); r.semStatus() != "MISS" {
		t.Fatalf("warm: %s", r.semStatus())
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := p.up.calls.Load()
			r := p.post(t, tc.key, tc.body)
			if r.semStatus() != "MISS" {
				t.Errorf("%s: got %s tier %q, want MISS", tc.name, r.semStatus(), r.header.Get(api.HeaderTier))
			}
			if p.up.calls.Load() != before+1 {
				t.Errorf("%s: upstream not called", tc.name)
			}
			// The paraphrase within that scope misses too (the semantic
			// tier is restricted to the scope), then hits after warming.
		})
	}
	// And the same request with the same key still hits: the isolation
	// above is not a broken cache.
	if r := p.post(t, "sk-a", warm); r.semStatus() != "HIT" {
		t.Errorf("warm again: %s, want HIT", r.semStatus())
	}
}

func TestSemanticTierRespectsScope(t *testing.T) { forEachBackend(t, testSemanticTierRespectsScope) }

func testSemanticTierRespectsScope(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	p.post(t, "sk-a", chat("gpt-4o-mini", "", "user", question))
	// A paraphrase from another tenant, and under another model, must miss.
	if r := p.post(t, "sk-b", chat("gpt-4o-mini", "", "user", paraphrase)); r.semStatus() != "MISS" {
		t.Errorf("paraphrase from another API key: %s, want MISS", r.semStatus())
	}
	if r := p.post(t, "sk-a", chat("gpt-4o", "", "user", paraphrase)); r.semStatus() != "MISS" {
		t.Errorf("paraphrase under another model: %s, want MISS", r.semStatus())
	}
}

func TestSharedNamespace(t *testing.T) { forEachBackend(t, testSharedNamespace) }

func testSharedNamespace(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), func(c *api.Config) { c.SharedNamespace = "faq" })
	p.post(t, "sk-a", chat("m", "", "user", question))
	if r := p.post(t, "sk-b", chat("m", "", "user", question)); r.semStatus() != "HIT" {
		t.Errorf("another key in a shared namespace: %s, want HIT", r.semStatus())
	}
}

func TestUpstreamErrorsPassThroughAndAreNotCached(t *testing.T) {
	forEachBackend(t, testUpstreamErrorsPassThroughAndAreNotCached)
}

func testUpstreamErrorsPassThroughAndAreNotCached(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusTooManyRequests, http.StatusBadRequest} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			errBody := fmt.Sprintf(`{"error":{"message":"upstream says %d","type":"x","code":"y"}}`, status)
			up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				io.WriteString(w, errBody)
			}))
			p := newProxy(t, up, nil)
			for i := 0; i < 2; i++ {
				r := p.post(t, "sk-a", chat("m", "", "user", question))
				if r.status != status || string(r.body) != errBody {
					t.Fatalf("call %d: %d %s, want %d %s", i, r.status, r.body, status, errBody)
				}
				if r.semStatus() != "MISS" {
					t.Errorf("call %d: %s, want MISS", i, r.semStatus())
				}
			}
			if n := up.calls.Load(); n != 2 {
				t.Errorf("upstream calls = %d, want 2 (errors must not be cached)", n)
			}
			if n, _ := p.cache.Len(t.Context()); n != 0 {
				t.Errorf("entries = %d, want 0", n)
			}
		})
	}
}

func TestIncompleteAnswerNotCached(t *testing.T) { forEachBackend(t, testIncompleteAnswerNotCached) }

func testIncompleteAnswerNotCached(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"..."},"finish_reason":"content_filter"}]}`)
	}))
	p := newProxy(t, up, nil)
	p.post(t, "sk-a", chat("m", "", "user", question))
	p.post(t, "sk-a", chat("m", "", "user", question))
	if n := up.calls.Load(); n != 2 {
		t.Errorf("upstream calls = %d, want 2", n)
	}
}

func TestConcurrentIdenticalMissesAreCoalesced(t *testing.T) {
	forEachBackend(t, testConcurrentIdenticalMissesAreCoalesced)
}

func testConcurrentIdenticalMissesAreCoalesced(t *testing.T) {
	const n = 12
	release := make(chan struct{})
	s := sim.New(sim.Config{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		s.ServeHTTP(w, r)
	}))
	p := newProxy(t, up, nil)
	body := chat("m", "", "user", question)
	replies := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = p.post(t, "sk-a", body)
		}()
	}
	// Wait until all n requests are inside the cache (the upstream is held),
	// then let the one upstream call answer.
	waitFor(t, func() bool { return p.cache.Stats().Requests.Load() == n })
	close(release)
	wg.Wait()
	if c := up.calls.Load(); c != 1 {
		t.Errorf("upstream calls = %d, want 1", c)
	}
	for i, r := range replies {
		if r.status != 200 || r.content(t) != simAnswer(question) {
			t.Errorf("reply %d: %d %s", i, r.status, r.body)
		}
	}
}

// waitFor polls cond until it holds; it synchronises with other goroutines
// and asserts nothing about time (the generous bound only stops a hung test).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBadInput(t *testing.T) { forEachBackend(t, testBadInput) }

func testBadInput(t *testing.T) {
	cases := []struct {
		name, body string
		status     int
		mentions   string
	}{
		{"malformed JSON", `{"model":"m","messages":[`, 400, "JSON"},
		{"not an object", `[1,2]`, 400, "JSON object"},
		{"empty body", ``, 400, "JSON"},
		{"no messages", `{"model":"m"}`, 400, "messages"},
		{"empty messages", `{"model":"m","messages":[]}`, 400, "messages"},
		{"messages wrong type", `{"model":"m","messages":"hi"}`, 400, "messages"},
		{"message not an object", `{"model":"m","messages":["hi"]}`, 400, "messages[0]"},
		{"role missing", `{"model":"m","messages":[{"content":"hi"}]}`, 400, "role"},
		{"content a number", `{"model":"m","messages":[{"role":"user","content":3}]}`, 400, "content"},
		{"model missing", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "model"},
		{"stream not a bool", `{"model":"m","stream":"yes","messages":[{"role":"user","content":"hi"}]}`, 400, "stream"},
		{"too large", chat("m", "", "user", strings.Repeat("x", 2048)), 413, "exceeds"},
	}
	up := newUpstream(t, nil)
	p := newProxy(t, up, func(c *api.Config) { c.MaxBodyBytes = 1024 })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := p.post(t, "sk-a", tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Type != "invalid_request_error" || e.Error.Code == nil {
				t.Fatalf("not the OpenAI error shape: %s", r.body)
			}
			if !strings.Contains(e.Error.Message, tc.mentions) {
				t.Errorf("message %q does not mention %q", e.Error.Message, tc.mentions)
			}
		})
	}
	if n := up.calls.Load(); n != 0 {
		t.Errorf("upstream calls = %d, want 0", n)
	}
	if n, _ := p.cache.Len(t.Context()); n != 0 {
		t.Errorf("entries = %d, want 0", n)
	}
}

func TestStreamingModeOffIsBypassedUnchanged(t *testing.T) {
	forEachBackend(t, testStreamingModeOffIsBypassedUnchanged)
}

func testStreamingModeOffIsBypassedUnchanged(t *testing.T) {
	up := newUpstream(t, nil)
	p := newProxy(t, up, nil)
	body := chat("m", `"stream":true`, "user", question)
	for i := 0; i < 2; i++ {
		r := p.postH(t, "sk-a", body, map[string]string{api.HeaderMode: "off"})
		if r.status != 200 || r.semStatus() != "BYPASS" {
			t.Fatalf("status %d %s, want 200 BYPASS", r.status, r.semStatus())
		}
		if ct := r.header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("Content-Type %q", ct)
		}
		if !strings.HasSuffix(string(r.body), "data: [DONE]\n\n") || !strings.Contains(string(r.body), `"chat.completion.chunk"`) {
			t.Errorf("SSE not relayed as sent:\n%s", r.body)
		}
	}
	if n := up.calls.Load(); n != 2 {
		t.Errorf("upstream calls = %d, want 2", n)
	}
	if n, _ := p.cache.Len(t.Context()); n != 0 {
		t.Errorf("entries = %d, want 0", n)
	}
}

func TestCacheDisabledIsPassThrough(t *testing.T) { forEachBackend(t, testCacheDisabledIsPassThrough) }

func testCacheDisabledIsPassThrough(t *testing.T) {
	up := newUpstream(t, nil)
	p := newProxy(t, up, func(c *api.Config) { c.CacheDisabled = true })
	for i := 0; i < 2; i++ {
		if r := p.post(t, "sk-a", chat("m", "", "user", question)); r.semStatus() != "BYPASS" || r.status != 200 {
			t.Fatalf("%d %s, want 200 BYPASS", r.status, r.semStatus())
		}
	}
	if n := up.calls.Load(); n != 2 {
		t.Errorf("upstream calls = %d, want 2", n)
	}
}

func TestNonUserLastMessageIsBypassed(t *testing.T) {
	forEachBackend(t, testNonUserLastMessageIsBypassed)
}

func testNonUserLastMessageIsBypassed(t *testing.T) {
	up := newUpstream(t, nil)
	p := newProxy(t, up, nil)
	body := chat("m", "", "user", question, "assistant", "Sure,")
	for i := 0; i < 2; i++ {
		if r := p.post(t, "sk-a", body); r.semStatus() != "BYPASS" {
			t.Fatalf("%s, want BYPASS", r.semStatus())
		}
	}
}

func TestAuthorization(t *testing.T) { forEachBackend(t, testAuthorization) }

func testAuthorization(t *testing.T) {
	t.Run("client key passed through", func(t *testing.T) {
		up := newUpstream(t, nil)
		p := newProxy(t, up, nil)
		p.post(t, "sk-client", chat("m", "", "user", question))
		if got := up.auth(); got != "Bearer sk-client" {
			t.Errorf("upstream saw Authorization %q", got)
		}
	})
	t.Run("upstream key replaces it", func(t *testing.T) {
		up := newUpstream(t, nil)
		p := newProxy(t, up, func(c *api.Config) { c.UpstreamAPIKey = "sk-server" })
		p.post(t, "sk-client", chat("m", "", "user", question))
		if got := up.auth(); got != "Bearer sk-server" {
			t.Errorf("upstream saw Authorization %q", got)
		}
		// Bypassed requests use it too.
		p.post(t, "sk-client", chat("m", `"stream":true`, "user", question, "assistant", "Sure,"))
		if got := up.auth(); got != "Bearer sk-server" {
			t.Errorf("streaming: upstream saw Authorization %q", got)
		}
	})
}

func TestUpstreamUnreachable(t *testing.T) { forEachBackend(t, testUpstreamUnreachable) }

func testUpstreamUnreachable(t *testing.T) {
	up := newUpstream(t, nil)
	p := newProxy(t, up, nil)
	up.srv.Close()
	r := p.post(t, "sk-a", chat("m", "", "user", question))
	if r.status != http.StatusBadGateway || !strings.Contains(string(r.body), `"type":"upstream_error"`) {
		t.Errorf("%d %s, want 502 in the OpenAI error shape", r.status, r.body)
	}
}

func TestHealthStatsAndPassThrough(t *testing.T) { forEachBackend(t, testHealthStatsAndPassThrough) }

func testHealthStatsAndPassThrough(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	if r := p.do(t, http.MethodGet, "/healthz", "", ""); r.status != 200 {
		t.Errorf("healthz: %d", r.status)
	}
	p.post(t, "sk-a", chat("m", "", "user", question))
	p.post(t, "sk-a", chat("m", "", "user", question))
	p.post(t, "sk-a", chat("m", "", "user", paraphrase))
	p.post(t, "sk-a", chat("m", `"stream":true`, "user", question, "assistant", "Sure,"))
	r := p.do(t, http.MethodGet, "/api/v1/cache/stats", "", "")
	var s semantic.Snapshot
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatalf("stats: %v: %s", err, r.body)
	}
	want := semantic.Snapshot{Requests: 3, Hits: 2, ExactHits: 1, SemanticHits: 1, Misses: 1, Bypasses: 1,
		HitRate: 2.0 / 3, Entries: 1, UpstreamCalls: 1, PromptTokensSaved: s.PromptTokensSaved, CompletionTokensSaved: s.CompletionTokensSaved, Policy: "static",
		StoreBytes: s.StoreBytes, StoreDiskBytes: -1} // no data directory
	if s.StoreBytes == 0 {
		t.Error("store_bytes 0 with an entry")
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("stats:\n got %+v\nwant %+v", s, want)
	}
	if s.PromptTokensSaved <= 0 || s.CompletionTokensSaved <= 0 {
		t.Errorf("tokens saved %d/%d, want > 0", s.PromptTokensSaved, s.CompletionTokensSaved)
	}
	if m := p.do(t, http.MethodGet, "/v1/models", "sk-a", ""); m.status != 200 || !strings.Contains(string(m.body), "sim-1") {
		t.Errorf("/v1/models pass-through: %d %s", m.status, m.body)
	}
	if nf := p.do(t, http.MethodGet, "/nope", "", ""); nf.status != 404 || !strings.Contains(string(nf.body), `"error"`) {
		t.Errorf("unknown route: %d %s", nf.status, nf.body)
	}
}

func TestUpstreamHeadersRelayed(t *testing.T) { forEachBackend(t, testUpstreamHeadersRelayed) }

func testUpstreamHeadersRelayed(t *testing.T) {
	var status atomic.Int64
	status.Store(http.StatusTooManyRequests)
	s := sim.New(sim.Config{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "req-123")
		w.Header().Set("X-Ratelimit-Remaining-Requests", "0")
		if st := int(status.Load()); st != 200 {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(st)
			io.WriteString(w, `{"error":{"message":"slow down","type":"rate_limit","code":null}}`)
			return
		}
		s.ServeHTTP(w, r)
	}))
	p := newProxy(t, up, nil)
	body := chat("m", "", "user", question)
	r := p.post(t, "sk-a", body)
	if r.status != 429 || r.header.Get("Retry-After") != "7" || r.header.Get("X-Request-Id") != "req-123" {
		t.Errorf("429: status %d, Retry-After %q, X-Request-Id %q; want the upstream's", r.status, r.header.Get("Retry-After"), r.header.Get("X-Request-Id"))
	}
	if k := r.header.Get(api.HeaderKey); k != "" {
		t.Errorf("a miss that stored nothing has X-Semcache-Key %q", k)
	}
	status.Store(200)
	miss := p.post(t, "sk-a", body)
	if miss.semStatus() != "MISS" || miss.header.Get("X-Request-Id") != "req-123" || miss.header.Get(api.HeaderKey) == "" {
		t.Errorf("200 miss: %s, X-Request-Id %q, key %q", miss.semStatus(), miss.header.Get("X-Request-Id"), miss.header.Get(api.HeaderKey))
	}
	hit := p.post(t, "sk-a", body)
	if hit.semStatus() != "HIT" || hit.header.Get("X-Ratelimit-Remaining-Requests") != "" || hit.header.Get("X-Request-Id") != "" {
		t.Errorf("a hit must not carry an old answer's upstream headers: %v", hit.header)
	}
}

func TestUpstreamTimeoutIs504(t *testing.T) { forEachBackend(t, testUpstreamTimeoutIs504) }

func testUpstreamTimeoutIs504(t *testing.T) {
	stop := make(chan struct{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // never answers on its own
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	defer close(stop)
	p := newProxyWith(t, up, nil, func(c *semantic.Config) { c.UpstreamTimeout = 50 * time.Millisecond })
	r := p.post(t, "sk-a", chat("m", "", "user", question))
	if r.status != http.StatusGatewayTimeout || !strings.Contains(string(r.body), `"code":"upstream_timeout"`) || r.semStatus() != "MISS" {
		t.Errorf("%d %s %s, want 504 upstream_timeout MISS", r.status, r.semStatus(), r.body)
	}
}

func TestCacheDisabledForwardsEvenInvalidBodies(t *testing.T) {
	forEachBackend(t, testCacheDisabledForwardsEvenInvalidBodies)
}

func testCacheDisabledForwardsEvenInvalidBodies(t *testing.T) {
	gotc := make(chan []byte, 1)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotc <- b
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"upstream rejects it","type":"invalid_request_error","code":null}}`)
	}))
	p := newProxy(t, up, func(c *api.Config) { c.CacheDisabled = true })
	r := p.post(t, "sk-a", `{"model":`)
	if got := <-gotc; string(got) != `{"model":` || r.status != 400 || !strings.Contains(string(r.body), "upstream rejects it") || r.semStatus() != "BYPASS" {
		t.Errorf("upstream got %q; client got %d %s %s", got, r.status, r.semStatus(), r.body)
	}
}

// backend is the store the proxies of the running test use; forEachBackend
// sets it (tests in this package are not parallel).
var backend = "memory"

// forEachBackend runs f once per backend: the in-process store, and Redis
// with the RediSearch module (skipped with a line saying what is missing when
// SEMCACHE_TEST_REDISEARCH_MODULE is not set).
func forEachBackend(t *testing.T, f func(t *testing.T)) {
	for _, b := range []string{"memory", "redis"} {
		t.Run(b, func(t *testing.T) {
			backend = b
			defer func() { backend = "memory" }()
			f(t)
		})
	}
}

type testStore interface {
	semantic.Store
	Close() error
}

// newStore returns an empty store of the current backend; for Redis, on a
// redis-server of its own.
func newStore(t *testing.T, emb semantic.Embedder) testStore {
	t.Helper()
	var st testStore
	var err error
	switch backend {
	case "redis":
		srv := redistest.StartSearch(t)
		st, err = index.NewRedis(t.Context(), index.RedisConfig{URL: srv.URL(), Dim: emb.Dim(), Fingerprint: emb.Fingerprint()})
	default:
		st, err = index.NewMemory(index.MemoryConfig{Dim: emb.Dim(), SweepInterval: -1})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestRedisFailOpen kills Redis under a running proxy: every request is
// still answered (from upstream), and caching resumes by itself once Redis
// is back, empty, with the index re-created.
func TestRedisFailOpen(t *testing.T) {
	srv := redistest.StartSearch(t)
	emb, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := index.NewRedis(t.Context(), index.RedisConfig{
		URL: srv.URL(), Dim: emb.Dim(), Fingerprint: emb.Fingerprint(),
		DialTimeout: 200 * time.Millisecond, MaxRetries: -1, RetryInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p := proxyOnStore(t, newUpstream(t, nil), emb, store, nil, nil)
	cache := p.cache
	ask := func(q, want string) {
		t.Helper()
		r := p.post(t, "sk-a", chat("m", "", "user", q))
		source := q
		if want == "HIT" {
			source = sourceOf(q)
		}
		if r.status != 200 || r.semStatus() != want || r.content(t) != simAnswer(source) {
			t.Errorf("%q: %d %s %s, want 200 %s", q, r.status, r.semStatus(), r.body, want)
		}
	}
	ask(question, "MISS")
	ask(question, "HIT")

	srv.Stop()
	ask(question, "MISS") // answered from upstream, not an error
	ask(paraphrase, "MISS")
	if cache.Stats().LookupErrors.Load() == 0 {
		t.Error("Redis faults were not counted")
	}

	srv.Restart() // empty, no index
	ask(question, "MISS")
	ask(question, "HIT")
	ask(paraphrase, "HIT") // the semantic tier works again: the index was re-created
}

// sourceOf maps a prompt of TestRedisFailOpen to the prompt whose answer a
// hit serves: the paraphrase is served the question's answer.
func sourceOf(q string) string {
	if q == paraphrase {
		return question
	}
	return q
}

// TestBadInputNamesParam: a malformed field is named in the OpenAI error's
// "param", as OpenAI does.
func TestBadInputNamesParam(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	for body, want := range map[string]string{
		`{"model":"m","temperature":"hot","messages":[{"role":"user","content":"hi"}]}`: "temperature",
		`{"model":"m","messages":[{"role":"user"},{"content":"hi"}]}`:                   "messages[1].role",
		`{"model":"m","messages":"hi"}`:                                                 "messages",
	} {
		r := p.post(t, "sk-a", body)
		var e struct {
			Error struct {
				Param *string `json:"param"`
			} `json:"error"`
		}
		if err := json.Unmarshal(r.body, &e); err != nil || r.status != 400 || e.Error.Param == nil || *e.Error.Param != want {
			t.Errorf("%s: %d %s, want 400 with param %q", body, r.status, r.body, want)
		}
	}
	// Errors that are not about one field keep param null.
	if r := p.post(t, "sk-a", `{"model":`); !strings.Contains(string(r.body), `"param":null`) {
		t.Errorf("malformed JSON: %s, want param null", r.body)
	}
}
