package api_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/semantic"
)

// postH posts a chat body with extra request headers.
func (p *proxy) postH(t *testing.T, key, body string, headers map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return p.send(t, req)
}

func TestCacheControlNoCacheAndNoStore(t *testing.T) {
	forEachBackend(t, testCacheControlNoCacheAndNoStore)
}

func testCacheControlNoCacheAndNoStore(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	body := chat("m", "", "user", question)
	p.post(t, "sk-a", body)

	// no-cache: skip the lookup, go upstream, store the fresh answer.
	if r := p.postH(t, "sk-a", body, map[string]string{"Cache-Control": "no-cache"}); r.semStatus() != "MISS" {
		t.Errorf("no-cache: %s, want MISS", r.semStatus())
	}
	if n := p.up.calls.Load(); n != 2 {
		t.Errorf("upstream calls %d, want 2", n)
	}
	if r := p.post(t, "sk-a", body); r.semStatus() != "HIT" {
		t.Errorf("after no-cache: %s, want HIT (the fresh answer was stored)", r.semStatus())
	}

	// no-store: the answer is not kept.
	other := chat("m", "", "user", "What are your opening hours?")
	if r := p.postH(t, "sk-a", other, map[string]string{"Cache-Control": "no-store"}); r.semStatus() != "MISS" || r.header.Get(api.HeaderKey) != "" {
		t.Errorf("no-store: %s key %q, want MISS without a key", r.semStatus(), r.header.Get(api.HeaderKey))
	}
	if r := p.post(t, "sk-a", other); r.semStatus() != "MISS" {
		t.Errorf("after no-store: %s, want MISS (nothing was stored)", r.semStatus())
	}
}

// clock is a settable time source for the cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestCacheControlMaxAge(t *testing.T) { forEachBackend(t, testCacheControlMaxAge) }

func testCacheControlMaxAge(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	p := newProxyWith(t, newUpstream(t, nil), nil, func(c *semantic.Config) { c.Now = clk.Now })
	body := chat("m", "", "user", question)
	p.post(t, "sk-a", body)
	clk.Add(100 * time.Second)
	if r := p.postH(t, "sk-a", body, map[string]string{"Cache-Control": "max-age=200"}); r.semStatus() != "HIT" || r.header.Get("Age") != "100" {
		t.Errorf("max-age=200 on a 100 s old entry: %s Age %q, want HIT Age 100", r.semStatus(), r.header.Get("Age"))
	}
	if r := p.postH(t, "sk-a", body, map[string]string{"Cache-Control": "max-age=60"}); r.semStatus() != "MISS" {
		t.Errorf("max-age=60 on a 100 s old entry: %s, want MISS", r.semStatus())
	}
	// The fresh answer replaced the old one.
	if r := p.postH(t, "sk-a", body, map[string]string{"Cache-Control": "max-age=60"}); r.semStatus() != "HIT" || r.header.Get("Age") != "0" {
		t.Errorf("after the refresh: %s Age %q, want HIT Age 0", r.semStatus(), r.header.Get("Age"))
	}
	// The semantic tier honours max-age too.
	clk.Add(100 * time.Second)
	if r := p.postH(t, "sk-a", chat("m", "", "user", paraphrase), map[string]string{"Cache-Control": "max-age=60"}); r.semStatus() != "MISS" {
		t.Errorf("paraphrase with max-age=60 on a 100 s old entry: %s, want MISS", r.semStatus())
	}
}

func TestNamespaceHeader(t *testing.T) { forEachBackend(t, testNamespaceHeader) }

func testNamespaceHeader(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	body := chat("m", "", "user", question)
	ns := func(n string) map[string]string { return map[string]string{api.HeaderNamespace: n} }
	p.postH(t, "sk-a", body, ns("docs-v1"))
	if r := p.postH(t, "sk-a", body, ns("docs-v2")); r.semStatus() != "MISS" {
		t.Errorf("other namespace: %s, want MISS", r.semStatus())
	}
	if r := p.postH(t, "sk-a", chat("m", "", "user", paraphrase), ns("docs-v2")); r.semStatus() != "HIT" {
		t.Errorf("paraphrase in docs-v2: %s, want HIT from docs-v2's own entry", r.semStatus())
	}
	if r := p.post(t, "sk-a", body); r.semStatus() != "MISS" {
		t.Errorf("no namespace: %s, want MISS", r.semStatus())
	}
	if r := p.postH(t, "sk-b", body, ns("docs-v1")); r.semStatus() != "MISS" {
		t.Errorf("same namespace, other API key: %s, want MISS (namespaces are inside the tenant)", r.semStatus())
	}
	if r := p.postH(t, "sk-a", body, ns("docs-v1")); r.semStatus() != "HIT" {
		t.Errorf("same namespace again: %s, want HIT", r.semStatus())
	}
}

func TestModeHeader(t *testing.T) { forEachBackend(t, testModeHeader) }

func testModeHeader(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	p.post(t, "sk-a", chat("m", "", "user", question))
	mode := func(m string) map[string]string { return map[string]string{api.HeaderMode: m} }
	if r := p.postH(t, "sk-a", chat("m", "", "user", paraphrase), mode("exact")); r.semStatus() != "MISS" {
		t.Errorf("paraphrase in exact mode: %s, want MISS", r.semStatus())
	}
	if r := p.postH(t, "sk-a", chat("m", "", "user", question), mode("exact")); r.semStatus() != "HIT" {
		t.Errorf("repeat in exact mode: %s, want HIT", r.semStatus())
	}
	if r := p.postH(t, "sk-a", chat("m", "", "user", question), mode("off")); r.semStatus() != "BYPASS" {
		t.Errorf("mode off: %s, want BYPASS", r.semStatus())
	}
	if r := p.postH(t, "sk-a", chat("m", "", "user", "How can i reset my password??"), mode("semantic")); r.semStatus() != "HIT" {
		t.Errorf("semantic mode: %s, want HIT", r.semStatus())
	}
}

func TestThresholdHeaderOnlyTightens(t *testing.T) {
	forEachBackend(t, testThresholdHeaderOnlyTightens)
}

func testThresholdHeaderOnlyTightens(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	p.post(t, "sk-a", chat("m", "", "user", question))
	thr := func(v string) map[string]string { return map[string]string{api.HeaderThreshold: v} }
	// The paraphrase is at about 0.906: a stricter 0.95 refuses it.
	if r := p.postH(t, "sk-a", chat("m", "", "user", paraphrase), thr("0.95")); r.semStatus() != "MISS" || r.header.Get(api.HeaderThreshold) != "0.95" {
		t.Errorf("threshold 0.95: %s (threshold in force %q), want MISS at 0.95", r.semStatus(), r.header.Get(api.HeaderThreshold))
	}
	// A looser request (0.1) cannot loosen the server's 0.85: a far prompt
	// still misses, and the header says which threshold was in force.
	r := p.postH(t, "sk-a", chat("m", "", "user", "Tell me about password managers in general"), thr("0.1"))
	if r.semStatus() != "MISS" || r.header.Get(api.HeaderThreshold) != "0.85" {
		t.Errorf("threshold 0.1: %s (threshold in force %q), want MISS at the server's 0.85", r.semStatus(), r.header.Get(api.HeaderThreshold))
	}
}

func TestBadControlHeaders(t *testing.T) { forEachBackend(t, testBadControlHeaders) }

func testBadControlHeaders(t *testing.T) {
	up := newUpstream(t, nil)
	p := newProxy(t, up, nil)
	for name, h := range map[string]map[string]string{
		"max-age negative":    {"Cache-Control": "max-age=-1"},
		"max-age not a num":   {"Cache-Control": "max-age=soon"},
		"ttl zero":            {api.HeaderTTL: "0"},
		"ttl not a number":    {api.HeaderTTL: "1h"},
		"ttl signed":          {api.HeaderTTL: "+60"},
		"ttl negative":        {api.HeaderTTL: "-60"},
		"max-age signed":      {"Cache-Control": "max-age=+5"},
		"max-age exponent":    {"Cache-Control": "max-age=1e3"},
		"max-age empty":       {"Cache-Control": "max-age="},
		"max-age quote open":  {"Cache-Control": `max-age="60`},
		"max-age quotes only": {"Cache-Control": `max-age=""`},
		"max-age space":       {"Cache-Control": "max-age= 5"},
		"mode unknown":        {api.HeaderMode: "fuzzy"},
		"threshold above 1":   {api.HeaderThreshold: "1.5"},
		"threshold zero":      {api.HeaderThreshold: "0"},
		"namespace too long":  {api.HeaderNamespace: strings.Repeat("n", 129)},
	} {
		t.Run(name, func(t *testing.T) {
			r := p.postH(t, "sk-a", chat("m", "", "user", question), h)
			if r.status != 400 || !strings.Contains(string(r.body), `"invalid_header"`) {
				t.Errorf("%d %s, want 400 invalid_header", r.status, r.body)
			}
		})
	}
	if n := up.calls.Load(); n != 0 {
		t.Errorf("upstream calls %d, want 0", n)
	}
}

// ttlStore is the real store of the current backend, recording the TTL of
// every entry stored.
type ttlStore struct {
	testStore
	mu   sync.Mutex
	ttls []time.Duration // guarded by mu
}

func (s *ttlStore) Set(ctx context.Context, key, scope string, value []byte, vec []float32, ttl time.Duration) error {
	s.mu.Lock()
	s.ttls = append(s.ttls, ttl)
	s.mu.Unlock()
	return s.testStore.Set(ctx, key, scope, value, vec, ttl)
}

// take returns the TTLs recorded since the last call.
func (s *ttlStore) take() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.ttls
	s.ttls = nil
	return t
}

func TestTTLHeaderIsCappedAtMaxTTL(t *testing.T) { forEachBackend(t, testTTLHeaderIsCappedAtMaxTTL) }

func testTTLHeaderIsCappedAtMaxTTL(t *testing.T) {
	emb, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	store := &ttlStore{testStore: newStore(t, emb)}
	p := proxyOnStore(t, newUpstream(t, nil), emb, store, func(c *api.Config) { c.MaxTTL = time.Hour }, nil)
	body := chat("m", "", "user", question)
	for _, tc := range []struct {
		ttl  string
		want time.Duration
	}{
		{"60", time.Minute},
		{"3600", time.Hour},
		{"3601", time.Hour},
		// 18446744074 s is 2^64 ns and a bit: multiplied as a Duration it
		// wraps to 0.29 s.
		{"18446744074", time.Hour},
		{"9223372036854775807", time.Hour},
		{"99999999999999999999999999", time.Hour},
	} {
		t.Run(tc.ttl, func(t *testing.T) {
			// max-age=0: skip the lookup, so every request stores.
			r := p.postH(t, "sk-a", body, map[string]string{api.HeaderTTL: tc.ttl, "Cache-Control": "max-age=0"})
			if r.status != 200 || r.semStatus() != "MISS" {
				t.Fatalf("%d %s, want 200 MISS: %s", r.status, r.semStatus(), r.body)
			}
			if got := store.take(); len(got) != 1 || got[0] != tc.want {
				t.Errorf("stored with TTLs %v, want [%v]", got, tc.want)
			}
		})
	}
}

// TestCacheControlMaxAgeForms ages an entry by 100 s before each request:
// max-age is honoured quoted, in any case, beyond any Duration (as "any
// age"), and the smallest of several wins.
func TestCacheControlMaxAgeForms(t *testing.T) { forEachBackend(t, testCacheControlMaxAgeForms) }

func testCacheControlMaxAgeForms(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	p := newProxyWith(t, newUpstream(t, nil), nil, func(c *semantic.Config) { c.Now = clk.Now })
	body := chat("m", "", "user", question)
	for _, tc := range []struct {
		cacheControl string
		want         string
	}{
		{"max-age=200", "HIT"},
		{`max-age="200"`, "HIT"},
		{`max-age="60"`, "MISS"},
		{"Max-Age=200", "HIT"},
		{"max-age=18446744074", "HIT"},
		{"max-age=99999999999999999999999999", "HIT"},
		{"max-age=200, max-age=60", "MISS"},
		{"max-age=60, max-age=200", "MISS"},
		{"max-age=0, max-age=200", "MISS"},
	} {
		t.Run(tc.cacheControl, func(t *testing.T) {
			if r := p.postH(t, "sk-a", body, map[string]string{"Cache-Control": "max-age=0"}); r.header.Get(api.HeaderKey) == "" {
				t.Fatalf("refresh stored nothing: %d %s", r.status, r.body)
			}
			clk.Add(100 * time.Second)
			r := p.postH(t, "sk-a", body, map[string]string{"Cache-Control": tc.cacheControl})
			if r.status != 200 || r.semStatus() != tc.want {
				t.Errorf("on a 100 s old entry: %d %s, want 200 %s: %s", r.status, r.semStatus(), tc.want, r.body)
			}
		})
	}
}

// TestStreamCacheControl: on a stream sent as SSE clients send it, no-cache
// is a transport hint, and the caller still has ways to leave the cache
// out: max-age=0 (fresh answer, stored), max-age=0 with no-store (fresh,
// not stored) and X-Semcache-Mode: off (BYPASS). no-store alone still
// serves a hit.
func TestStreamCacheControl(t *testing.T) { forEachBackend(t, testStreamCacheControl) }

func testStreamCacheControl(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	sse := func(cc string, extra map[string]string) map[string]string {
		h := map[string]string{"Accept": "text/event-stream", "Cache-Control": cc}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	checkComplete(t, "first", p.stream(t, question, "", sse("no-cache", nil)), "MISS", simAnswer(question))
	calls := p.up.calls.Load()
	steps := []struct {
		name    string
		prompt  string
		headers map[string]string
		want    string
		calls   int64 // upstream calls the step makes
	}{
		{"no-cache is a transport hint", question, sse("no-cache", nil), "HIT", 0},
		{"no-store alone still serves the hit", question, sse("no-cache, no-store", nil), "HIT", 0},
		{"max-age=0 skips the lookup", question, sse("no-cache, max-age=0", nil), "MISS", 1},
		{"mode off bypasses", question, sse("no-cache", map[string]string{api.HeaderMode: "off"}), "BYPASS", 1},
		{"mode off wins over max-age", question, sse("max-age=3600", map[string]string{api.HeaderMode: "off"}), "BYPASS", 1},
		{"max-age=0 with no-store", "What is the capital of France?", sse("no-cache, max-age=0, no-store", nil), "MISS", 1},
		{"... stored nothing", "What is the capital of France?", sse("no-cache", nil), "MISS", 1},
	}
	for _, st := range steps {
		r := p.stream(t, st.prompt, "", st.headers)
		if r.semStatus() != st.want || !r.done {
			t.Errorf("%s: %s (done %v), want %s", st.name, r.semStatus(), r.done, st.want)
		}
		if n := p.up.calls.Load(); n-calls != st.calls {
			t.Errorf("%s: %d upstream calls, want %d", st.name, n-calls, st.calls)
		}
		calls = p.up.calls.Load()
	}
}
