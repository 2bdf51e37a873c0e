package api_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semcache/semcache/api"
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
		"max-age negative":   {"Cache-Control": "max-age=-1"},
		"max-age not a num":  {"Cache-Control": "max-age=soon"},
		"ttl zero":           {api.HeaderTTL: "0"},
		"ttl not a number":   {api.HeaderTTL: "1h"},
		"mode unknown":       {api.HeaderMode: "fuzzy"},
		"threshold above 1":  {api.HeaderThreshold: "1.5"},
		"threshold zero":     {api.HeaderThreshold: "0"},
		"namespace too long": {api.HeaderNamespace: strings.Repeat("n", 129)},
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
