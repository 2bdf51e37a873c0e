package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/semantic"
)

// faqAnswer is the one answer of the FAQ upstream below, whatever the
// wording of the question: every paraphrase gets the same answer, so the
// exact-match judge finds cached answers right.
const faqAnswer = `{"id":"chatcmpl-faq","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Open Settings, then Security, then Reset password."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}`

func faqUpstream(t *testing.T) *upstream {
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(faqAnswer))
	}))
}

type fitStore interface {
	SetFit(ctx context.Context, key string, fit []byte) (bool, error)
	Fit(ctx context.Context, key string) ([]byte, bool, error)
}

// postHeaders posts body to path with the API key sk-a and extra headers.
func (p *proxy) postHeaders(t *testing.T, path, body string, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-a")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return p.send(t, req)
}

func postWith(t *testing.T, p *proxy, body string, header map[string]string) reply {
	t.Helper()
	return p.postHeaders(t, "/v1/chat/completions", body, header)
}

// TestAdaptivePolicyEndToEnd runs the adaptive policy through the real
// server: a young entry is explored (X-Semcache-Explore) and verified off
// the request path; an entry whose stored fit is sure is served; the
// per-request X-Semcache-Max-Error only tightens and is echoed; the stats
// and /metrics count explorations and verdicts.
func TestAdaptivePolicyEndToEnd(t *testing.T) { forEachBackend(t, testAdaptivePolicyEndToEnd) }

func testAdaptivePolicyEndToEnd(t *testing.T) {
	emb, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	store := newStore(t, emb)
	p := proxyOnStore(t, faqUpstream(t), emb, store, nil, func(c *semantic.Config) {
		c.Policy = semantic.PolicyAdaptive
		c.Adaptive = semantic.AdaptiveConfig{MaxErrorRate: 0.01, MinObservations: 1, Seed: 3, Judge: &semantic.AnswerJudge{}, Rule: semantic.RuleEntry}
	})
	first := p.post(t, "sk-a", chat("m", "", "user", question))
	if first.header.Get(api.HeaderStatus) != "MISS" {
		t.Fatalf("first request: %s", first.header.Get(api.HeaderStatus))
	}
	key := first.header.Get(api.HeaderKey)
	second := p.post(t, "sk-a", chat("m", "", "user", paraphrase))
	if sim, err := strconv.ParseFloat(second.header.Get(api.HeaderSimilarity), 64); err != nil || sim < 0.5 || sim > 1 {
		t.Errorf("explored miss: %s = %v, want the neighbour's similarity", api.HeaderSimilarity, sim)
	}
	if second.header.Get(api.HeaderStatus) != "MISS" || second.header.Get(api.HeaderExplore) != "1" || string(second.body) != faqAnswer {
		t.Fatalf("paraphrase of a young entry: status %s, explore %q; want an explored MISS with the upstream's answer",
			second.header.Get(api.HeaderStatus), second.header.Get(api.HeaderExplore))
	}
	p.cache.Drain()
	raw, ok, err := store.(fitStore).Fit(t.Context(), key)
	var f semantic.Fit
	if err != nil || !ok || json.Unmarshal(raw, &f) != nil || f.N != 1 {
		t.Fatalf("entry fit after one verdict: %s, %v, %v", raw, ok, err)
	}

	// A sure fit: alpha(eps) = 1 - eps, at most 0.995, so tau-hat is 0 at
	// delta 0.01 and 0.8 at delta 0.001.
	sure, _ := json.Marshal(semantic.Fit{T: 0.2, Gamma: 200, SDT: 0.001, N: 40})
	if ok, err := store.(fitStore).SetFit(t.Context(), key, sure); !ok || err != nil {
		t.Fatal(ok, err)
	}
	for _, q := range []string{"How could I reset my password?", "How do I reset the password?"} {
		r := postWith(t, p, chat("m", "", "user", q), map[string]string{api.HeaderMaxError: "0.5"})
		if r.header.Get(api.HeaderStatus) != "HIT" || r.header.Get(api.HeaderTier) != "semantic" {
			t.Errorf("%q with a sure fit: %s %s, want a semantic HIT", q, r.header.Get(api.HeaderStatus), r.header.Get(api.HeaderTier))
		}
		if got := r.header.Get(api.HeaderMaxError); got != "0.01" {
			t.Errorf("asked 0.5: %s = %q, want the server's 0.01 (tighten only)", api.HeaderMaxError, got)
		}
	}
	explored := 0
	for _, q := range []string{"How can I reset the password?", "how do i reset my password", "How do I reset my password now?", "Reset my password, how?", "How to reset my password?"} {
		r := postWith(t, p, chat("m", "", "user", q), map[string]string{api.HeaderMaxError: "0.001"})
		if got := r.header.Get(api.HeaderMaxError); got != "0.001" {
			t.Errorf("asked 0.001: %s = %q", api.HeaderMaxError, got)
		}
		if r.header.Get(api.HeaderExplore) == "1" {
			explored++
		}
	}
	if explored == 0 {
		t.Error("delta 0.001 (tau-hat 0.8): no exploration in 5 requests")
	}
	bad := postWith(t, p, chat("m", "", "user", question), map[string]string{api.HeaderMaxError: "1.5"})
	if bad.status != http.StatusBadRequest || !strings.Contains(string(bad.body), api.HeaderMaxError) {
		t.Errorf("X-Semcache-Max-Error 1.5: %d %s", bad.status, bad.body)
	}

	p.cache.Drain()
	var s semantic.Snapshot
	if err := json.Unmarshal(p.do(t, http.MethodGet, "/api/v1/cache/stats", "", "").body, &s); err != nil {
		t.Fatal(err)
	}
	if s.Policy != "adaptive" || s.MaxErrorRate != 0.01 || s.Explorations != int64(1+explored) || s.VerifiedRight != s.Explorations || s.SemanticHits < 2 {
		t.Errorf("stats: %+v", s)
	}
	metrics := string(p.do(t, http.MethodGet, "/metrics", "", "").body)
	for _, line := range []string{"semcache_explorations_total ", `semcache_verifications_total{verdict="right"} `} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics has no %q", line)
		}
	}
}

// TestGuardsEndToEnd: with the negation guard, a prompt that differs from a
// cached one by "not" is a MISS although its similarity passes the
// threshold (checked without guards), counted in stats and /metrics.
func TestGuardsEndToEnd(t *testing.T) { forEachBackend(t, testGuardsEndToEnd) }

func testGuardsEndToEnd(t *testing.T) {
	const negated = "How do I not reset my password?"
	g, err := semantic.NewGuards(semantic.GuardsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, guards := range []*semantic.Guards{nil, g} {
		p := newProxyWith(t, newUpstream(t, nil), nil, func(c *semantic.Config) { c.Guards = guards })
		p.post(t, "sk-a", chat("m", "", "user", question))
		r := p.post(t, "sk-a", chat("m", "", "user", negated))
		want := "HIT"
		if guards != nil {
			want = "MISS"
		}
		if got := r.header.Get(api.HeaderStatus); got != want {
			t.Errorf("guards %v: %q after %q: %s, want %s", guards != nil, negated, question, got, want)
		}
		var s semantic.Snapshot
		if err := json.Unmarshal(p.do(t, http.MethodGet, "/api/v1/cache/stats", "", "").body, &s); err != nil {
			t.Fatal(err)
		}
		metrics := string(p.do(t, http.MethodGet, "/metrics", "", "").body)
		if guards != nil && (s.GuardRefusals.Negation != 1 || !strings.Contains(metrics, `semcache_guard_refusals_total{reason="negation"} 1`)) {
			t.Errorf("guard refusals: stats %+v; metrics lines: %v", s.GuardRefusals, grepLines(metrics, "guard_refusals"))
		}
	}
}

func grepLines(text, sub string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// TestAdaptiveStreamExploration: under either rule, a streamed request
// whose neighbour has no verdicts yet is explored too: relayed from
// upstream with X-Semcache-Explore, and verified against the cached answer
// once the stream is complete.
func TestAdaptiveStreamExploration(t *testing.T) {
	for _, rule := range []semantic.Allocation{semantic.RuleBudget, semantic.RuleEntry} {
		t.Run(string(rule), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T) { testAdaptiveStreamExploration(t, rule) })
		})
	}
}

func testAdaptiveStreamExploration(t *testing.T, rule semantic.Allocation) {
	p := newProxyWith(t, newUpstream(t, nil), nil, func(c *semantic.Config) {
		c.Policy = semantic.PolicyAdaptive
		c.Adaptive = semantic.AdaptiveConfig{Seed: 5, Judge: &semantic.AnswerJudge{}, Rule: rule}
	})
	p.post(t, "sk-a", chat("m", "", "user", question))
	r := p.post(t, "sk-a", chat("m", `"stream":true`, "user", paraphrase))
	if r.status != http.StatusOK || r.header.Get(api.HeaderStatus) != "MISS" || r.header.Get(api.HeaderExplore) != "1" {
		t.Fatalf("streamed paraphrase: %d %s explore %q", r.status, r.header.Get(api.HeaderStatus), r.header.Get(api.HeaderExplore))
	}
	if !strings.Contains(string(r.body), "data: [DONE]") {
		t.Errorf("stream not relayed to the end: %s", r.body)
	}
	p.cache.Drain()
	if s := p.cache.Snapshot(t.Context()); s.Explorations != 1 || s.JudgeCalls != 1 {
		t.Errorf("after the stream: explorations %d, judge calls %d; want 1, 1", s.Explorations, s.JudgeCalls)
	}
}

// TestAdaptiveReStoredEntryKeepsTags: a wrong verdict re-stores the
// explored request's answer with its vector, off the request path; the
// entry keeps the request's tags, so invalidating the tag still finds it.
func TestAdaptiveReStoredEntryKeepsTags(t *testing.T) {
	forEachBackend(t, testAdaptiveReStoredEntryKeepsTags)
}

func testAdaptiveReStoredEntryKeepsTags(t *testing.T) {
	const admin = "adaptive-admin-token-0123"
	p := newProxyWith(t, newUpstream(t, nil), func(c *api.Config) { c.AdminToken = admin }, func(c *semantic.Config) {
		c.Policy = semantic.PolicyAdaptive
		c.Adaptive = semantic.AdaptiveConfig{Seed: 9, Judge: &semantic.AnswerJudge{}, Rule: semantic.RuleEntry}
	})
	p.post(t, "sk-a", chat("m", "", "user", question))
	r := postWith(t, p, chat("m", "", "user", paraphrase), map[string]string{"X-Semcache-Tags": "doc:9"})
	if r.header.Get(api.HeaderExplore) != "1" {
		t.Fatalf("paraphrase not explored: %s", r.header.Get(api.HeaderStatus))
	}
	p.cache.Drain() // the simulator answers each prompt differently: a wrong verdict, a re-store
	if s := p.cache.Snapshot(t.Context()); s.VerifiedWrong != 1 {
		t.Fatalf("verdicts: %+v", s)
	}
	req, _ := http.NewRequest(http.MethodPost, p.url+"/api/v1/cache/invalidate", strings.NewReader(`{"tag":"doc:9"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	if got := p.send(t, req); got.status != 200 || !strings.Contains(string(got.body), `"deleted":1`) {
		t.Fatalf("invalidate doc:9: %d %s, want the re-stored entry deleted", got.status, got.body)
	}
	if again := p.post(t, "sk-a", chat("m", "", "user", paraphrase)); again.header.Get(api.HeaderStatus) == "HIT" && again.header.Get(api.HeaderTier) == "exact" {
		t.Error("the invalidated entry still answers")
	}
}

// TestBudgetRuleEndToEnd runs the adaptive policy's default rule through
// the real server: paraphrases of one FAQ question are explored
// (X-Semcache-Explore) until the verdicts bound the error within δ, then
// served; the stats and /metrics report the learned threshold.
func TestBudgetRuleEndToEnd(t *testing.T) { forEachBackend(t, testBudgetRuleEndToEnd) }

func testBudgetRuleEndToEnd(t *testing.T) {
	emb, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p := proxyOnStore(t, faqUpstream(t), emb, newStore(t, emb), nil, func(c *semantic.Config) {
		c.Policy = semantic.PolicyAdaptive
		c.Adaptive = semantic.AdaptiveConfig{MaxErrorRate: 0.05, Seed: 3, Judge: &semantic.AnswerJudge{}}
	})
	explored, hits := 0, 0
	for i := range 80 {
		r := p.post(t, "sk-a", chat("m", "", "user", fmt.Sprintf("How do I reset my password, please (case %d)?", i)))
		p.cache.Drain()
		if string(r.body) != faqAnswer {
			t.Fatalf("request %d: body %s", i, r.body)
		}
		switch {
		case r.header.Get(api.HeaderStatus) == "HIT" && r.header.Get(api.HeaderTier) == "semantic":
			hits++
		case r.header.Get(api.HeaderExplore) == "1":
			if hits > 0 {
				continue // an audit
			}
			explored++
		}
	}
	if explored < 20 || hits == 0 {
		t.Fatalf("%d explorations before the first of %d semantic hits; want 20 or more, then hits", explored, hits)
	}
	var s semantic.Snapshot
	if err := json.Unmarshal(p.do(t, http.MethodGet, "/api/v1/cache/stats", "", "").body, &s); err != nil {
		t.Fatal(err)
	}
	served := 0
	for _, th := range s.LearnedThresholds {
		if th != nil {
			served++
		}
	}
	if s.AdaptiveRule != "budget" || served == 0 || s.VerifiedWrong != 0 {
		t.Errorf("stats: rule %q, learned thresholds %v, wrong verdicts %d", s.AdaptiveRule, s.LearnedThresholds, s.VerifiedWrong)
	}
	if metrics := string(p.do(t, http.MethodGet, "/metrics", "", "").body); !strings.Contains(metrics, "semcache_learned_threshold{stratum=") {
		t.Errorf("/metrics has no semcache_learned_threshold")
	}
}

// TestAdaptiveThresholdEcho: under the adaptive policy X-Semcache-Threshold
// echoes the similarity floor in force (the request's when stricter), not
// the static threshold the policy does not use.
func TestAdaptiveThresholdEcho(t *testing.T) {
	emb, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p := proxyOnStore(t, faqUpstream(t), emb, newStore(t, emb), nil, func(c *semantic.Config) {
		c.Threshold = 0.87
		c.Policy = semantic.PolicyAdaptive
		c.Adaptive = semantic.AdaptiveConfig{MaxErrorRate: 0.01, Floor: 0.6, Seed: 3, Judge: &semantic.AnswerJudge{}}
	})
	for asked, want := range map[string]string{"0.3": "0.6", "0.75": "0.75"} {
		r := postWith(t, p, chat("m", "", "user", question), map[string]string{api.HeaderThreshold: asked})
		if got := r.header.Get(api.HeaderThreshold); got != want {
			t.Errorf("asked %s: %s %q, want %q (never the unused 0.87)", asked, api.HeaderThreshold, got, want)
		}
	}
}
