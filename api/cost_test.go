package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// fixedUsage is the usage of every answer of fixedUsageUpstream.
const fixedPromptTokens, fixedCompletionTokens = 1234, 567

// fixedUsageUpstream answers every chat completion with the same text and
// usage, naming the request's model, so that costs can be worked out by
// hand.
func fixedUsageUpstream(t *testing.T) *upstream {
	t.Helper()
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model string `json:"model"`
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &req)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"Answer."},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
			req.Model, fixedPromptTokens, fixedCompletionTokens, fixedPromptTokens+fixedCompletionTokens)
	}))
}

func TestCostSaved(t *testing.T) { forEachBackend(t, testCostSaved) }

// testCostSaved sends hits of a priced and of an unpriced model through the
// proxy and reads the cost saved back from the stats endpoint and the
// metrics.
func testCostSaved(t *testing.T) {
	pricing, err := semantic.ParsePricing([]byte(`{"models":{"gpt-4o":{"input_per_mtok":2.5,"output_per_mtok":10}}}`))
	if err != nil {
		t.Fatal(err)
	}
	p := newProxyWith(t, fixedUsageUpstream(t), nil, func(c *semantic.Config) { c.Pricing = pricing })
	// gpt-4o-2024-08-06 is priced as gpt-4o: each hit saves
	// 1234 × 2.5 + 567 × 10 = 3085 + 5670 = 8755 micro-dollars.
	const model = "gpt-4o-2024-08-06"
	const perHit = 8755
	for _, step := range []struct{ body, status, tier string }{
		{chat(model, "", "user", question), "MISS", ""},
		{chat(model, "", "user", question), "HIT", "exact"},
		{chat(model, "", "user", paraphrase), "HIT", "semantic"},
		{chat(model, `"stream":true`, "user", question), "HIT", "exact"}, // a replayed stream is priced too
		{chat("llama-3", "", "user", question), "MISS", ""},
		{chat("llama-3", "", "user", question), "HIT", "exact"}, // not in the table
	} {
		r := p.post(t, "sk-a", step.body)
		if r.status != 200 || r.semStatus() != step.status || r.header.Get(api.HeaderTier) != step.tier {
			t.Fatalf("%s: %d %s tier %q, want 200 %s tier %q", step.body, r.status, r.semStatus(), r.header.Get(api.HeaderTier), step.status, step.tier)
		}
	}
	const wantUSD = 3 * perHit / 1e6 // 0.026265

	r := p.do(t, http.MethodGet, "/api/v1/cache/stats", "", "")
	var stats struct {
		Hits              int64    `json:"hits"`
		PromptTokensSaved int64    `json:"prompt_tokens_saved"`
		CostSavedUSD      *float64 `json:"cost_saved_usd"`
		UnpricedHits      *int64   `json:"unpriced_hits"`
		Evictions         *int64   `json:"evictions"`
	}
	if err := json.Unmarshal(r.body, &stats); err != nil || r.status != 200 {
		t.Fatalf("GET /api/v1/cache/stats: %d %s (%v)", r.status, r.body, err)
	}
	if stats.CostSavedUSD == nil || *stats.CostSavedUSD != wantUSD || stats.UnpricedHits == nil || *stats.UnpricedHits != 1 {
		t.Errorf("stats %s: want cost_saved_usd %v and unpriced_hits 1", r.body, wantUSD)
	}
	if stats.Hits != 4 || stats.PromptTokensSaved != 4*fixedPromptTokens {
		t.Errorf("stats %s: want 4 hits saving %d prompt tokens (the unpriced hit's included)", r.body, 4*fixedPromptTokens)
	}
	if stats.Evictions == nil || *stats.Evictions != 0 {
		t.Errorf("stats %s: want evictions 0", r.body)
	}

	mf := scrape(t, p)
	if got := counter(t, mf, "semcache_cost_saved_usd_total", nil); got != wantUSD {
		t.Errorf("semcache_cost_saved_usd_total = %v, want %v", got, wantUSD)
	}
	if got := counter(t, mf, "semcache_unpriced_hits_total", nil); got != 1 {
		t.Errorf("semcache_unpriced_hits_total = %v, want 1", got)
	}
	// Nothing was evicted or expired; on Redis these are always 0.
	for _, name := range []string{"semcache_evictions_total", "semcache_expired_total"} {
		if got := counter(t, mf, name, nil); got != 0 {
			t.Errorf("%s = %v, want 0", name, got)
		}
	}
}

// TestMetricsEvictions stores three answers in a memory backend of two
// entries: one LRU eviction, in the metrics and the stats.
func TestMetricsEvictions(t *testing.T) {
	emb, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := index.NewMemory(index.MemoryConfig{Dim: emb.Dim(), MaxEntries: 2, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p := proxyOnStore(t, newUpstream(t, nil), emb, store, nil, nil)
	cache := p.cache

	for _, q := range []string{"What is the capital of France?", "Write a haiku about autumn leaves", "Explain TCP slow start"} {
		if r := p.post(t, "sk-a", chat("m", "", "user", q)); r.status != 200 || r.semStatus() != "MISS" || r.header.Get(api.HeaderKey) == "" {
			t.Fatalf("%q: %d %s key %q, want 200 MISS, stored", q, r.status, r.semStatus(), r.header.Get(api.HeaderKey))
		}
	}
	mf := scrape(t, p)
	if got := counter(t, mf, "semcache_evictions_total", nil); got != 1 {
		t.Errorf("semcache_evictions_total = %v, want 1", got)
	}
	if got := counter(t, mf, "semcache_expired_total", nil); got != 0 {
		t.Errorf("semcache_expired_total = %v, want 0", got)
	}
	if got := metric(t, mf, "semcache_entries", dto.MetricType_GAUGE, nil).GetGauge().GetValue(); got != 2 {
		t.Errorf("semcache_entries = %v, want 2", got)
	}
	if n, ok := cache.Evictions(); n != 1 || !ok {
		t.Errorf("Cache.Evictions = %d, %t; want 1, true", n, ok)
	}
	var stats struct {
		Evictions int64 `json:"evictions"`
	}
	if r := p.do(t, http.MethodGet, "/api/v1/cache/stats", "", ""); json.Unmarshal(r.body, &stats) != nil || stats.Evictions != 1 {
		t.Errorf("stats %s: want evictions 1", r.body)
	}
}
