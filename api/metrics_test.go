package api_test

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/semcache/semcache/api"
)

func TestMetrics(t *testing.T) { forEachBackend(t, testMetrics) }

// testMetrics sends a miss, an exact hit, a semantic hit and a streaming
// bypass through the proxy and reads them back from GET /metrics.
func testMetrics(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	var similarity string // the semantic hit's X-Semcache-Similarity
	for _, step := range []struct{ body, status, tier string }{
		{chat("m", "", "user", question), "MISS", ""},
		{chat("m", "", "user", question), "HIT", "exact"},
		{chat("m", "", "user", paraphrase), "HIT", "semantic"},
		{chat("m", `"stream":true`, "user", question, "assistant", "Sure,"), "BYPASS", ""},
	} {
		r := p.post(t, "sk-a", step.body)
		if r.status != 200 || r.semStatus() != step.status || r.header.Get(api.HeaderTier) != step.tier {
			t.Fatalf("%d %s tier %q, want 200 %s tier %q", r.status, r.semStatus(), r.header.Get(api.HeaderTier), step.status, step.tier)
		}
		if step.tier == "semantic" {
			similarity = r.header.Get(api.HeaderSimilarity)
		}
	}
	mf := scrape(t, p)
	checkSimilarity(t, mf, similarity)

	for _, c := range []struct {
		outcome, tier string
	}{{"hit", "exact"}, {"hit", "semantic"}, {"miss", ""}, {"bypass", ""}} {
		labels := map[string]string{"outcome": c.outcome, "tier": c.tier}
		if got := counter(t, mf, "semcache_requests_total", labels); got != 1 {
			t.Errorf("semcache_requests_total%v = %v, want 1", labels, got)
		}
		if got := histogram(t, mf, "semcache_request_duration_seconds", labels).GetSampleCount(); got != 1 {
			t.Errorf("semcache_request_duration_seconds%v count = %d, want 1", labels, got)
		}
	}
	// The bypass went upstream too, but not through the cache.
	if got := counter(t, mf, "semcache_upstream_calls_total", nil); got != 1 {
		t.Errorf("semcache_upstream_calls_total = %v, want 1", got)
	}
	for _, name := range []string{"semcache_upstream_errors_total", "semcache_lookup_errors_total", "semcache_store_errors_total"} {
		if got := counter(t, mf, name, nil); got != 0 {
			t.Errorf("%s = %v, want 0", name, got)
		}
	}
	for _, kind := range []string{"prompt", "completion"} {
		if got := counter(t, mf, "semcache_tokens_saved_total", map[string]string{"kind": kind}); got <= 0 {
			t.Errorf("semcache_tokens_saved_total{kind=%q} = %v, want > 0", kind, got)
		}
	}
	if got := metric(t, mf, "semcache_entries", dto.MetricType_GAUGE, nil).GetGauge().GetValue(); got != 1 {
		t.Errorf("semcache_entries = %v, want 1", got)
	}
	if got := metric(t, mf, "semcache_similarity_threshold", dto.MetricType_GAUGE, nil).GetGauge().GetValue(); got != testThreshold {
		t.Errorf("semcache_similarity_threshold = %v, want %v", got, testThreshold)
	}
	// The one miss came first, into an empty scope: no nearest neighbour.
	if h, ok := mf["semcache_miss_nearest_similarity"]; ok && len(h.GetMetric()) > 0 && h.GetMetric()[0].GetHistogram().GetSampleCount() != 0 {
		t.Errorf("semcache_miss_nearest_similarity counted a miss that had no neighbour: %v", h)
	}
}

// checkSimilarity checks the similarity histogram against the semantic hit's
// X-Semcache-Similarity header: one sample, in every bucket whose upper
// bound is at or above it.
func checkSimilarity(t *testing.T, mf map[string]*dto.MetricFamily, header string) {
	t.Helper()
	sim, err := strconv.ParseFloat(header, 64)
	if err != nil {
		t.Fatalf("X-Semcache-Similarity %q: %v", header, err)
	}
	h := histogram(t, mf, "semcache_semantic_similarity", nil)
	if h.GetSampleCount() != 1 || h.GetSampleSum() < sim-1e-4 || h.GetSampleSum() > sim+1e-4 {
		t.Errorf("similarity histogram: count %d sum %v, want 1 sample of %v", h.GetSampleCount(), h.GetSampleSum(), sim)
	}
	if n := len(h.GetBucket()); n != 12 || h.GetBucket()[0].GetUpperBound() != 0.5 || h.GetBucket()[10].GetUpperBound() != 1 {
		t.Errorf("similarity histogram buckets %v, want 0.5 to 1 step 0.05 and +Inf", h.GetBucket())
	}
	for _, b := range h.GetBucket() {
		le := b.GetUpperBound()
		if le > sim-1e-4 && le < sim+1e-4 {
			continue // the header is rounded to 4 decimals: too close to call
		}
		var want uint64
		if sim <= le {
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("similarity %v: bucket le=%v holds %d, want %d", sim, le, b.GetCumulativeCount(), want)
		}
	}
}

// TestMetricsPerServer starts two servers in one process: each has its own
// registry (no duplicate-registration panic) and counts only its own
// requests.
func TestMetricsPerServer(t *testing.T) {
	up := newUpstream(t, nil)
	a := newProxy(t, up, nil)
	b := newProxy(t, up, nil)
	a.post(t, "sk-a", chat("m", "", "user", question))
	miss := map[string]string{"outcome": "miss", "tier": ""}
	if got := counter(t, scrape(t, a), "semcache_requests_total", miss); got != 1 {
		t.Errorf("server a: misses = %v, want 1", got)
	}
	if got := counter(t, scrape(t, b), "semcache_requests_total", miss); got != 0 {
		t.Errorf("server b: misses = %v, want 0", got)
	}
}

// scrape gets and parses p's /metrics.
func scrape(t *testing.T, p *proxy) map[string]*dto.MetricFamily {
	t.Helper()
	r := p.do(t, http.MethodGet, "/metrics", "", "")
	if r.status != 200 {
		t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, r.body)
	}
	return mf
}

// metric returns the one metric of family name, of type typ, whose labels
// are exactly labels (an absent label counts as empty).
func metric(t *testing.T, mf map[string]*dto.MetricFamily, name string, typ dto.MetricType, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := mf[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
	if f.GetType() != typ {
		t.Fatalf("%s is a %v, want %v", name, f.GetType(), typ)
	}
	var found *dto.Metric
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			if l.GetValue() != "" {
				got[l.GetName()] = l.GetValue()
			}
		}
		if sameLabels(got, labels) {
			if found != nil {
				t.Fatalf("%s%v: more than one series", name, labels)
			}
			found = m
		}
	}
	if found == nil {
		t.Fatalf("%s%v: no such series", name, labels)
	}
	return found
}

// sameLabels compares label sets, ignoring empty values on either side.
func sameLabels(a, b map[string]string) bool {
	n := 0
	for k, v := range b {
		if v == "" {
			continue
		}
		if a[k] != v {
			return false
		}
		n++
	}
	return n == len(a)
}

func counter(t *testing.T, mf map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	return metric(t, mf, name, dto.MetricType_COUNTER, labels).GetCounter().GetValue()
}

func histogram(t *testing.T, mf map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Histogram {
	t.Helper()
	return metric(t, mf, name, dto.MetricType_HISTOGRAM, labels).GetHistogram()
}
