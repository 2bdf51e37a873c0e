package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/semantic"
)

// getUI sends a GET of path with optional headers (Host is set as the
// request's Host).
func (p *proxy) getUI(t *testing.T, path string, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	return p.send(t, req)
}

func TestUIOffByDefault(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	for _, path := range []string{"/ui/", "/ui/api/data", "/ui/api/chart/traffic.svg"} {
		if r := p.getUI(t, path, nil); r.status != http.StatusNotFound {
			t.Errorf("%s without Config.UI: status %d, want 404", path, r.status)
		}
	}
}

// TestUILoopback: under UILoopback the page and its data answer a direct
// request from this host, and nothing that came from elsewhere, through a
// proxy on this host, or under another host name (DNS rebinding).
func TestUILoopback(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), func(c *api.Config) { c.UI = api.UILoopback })
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/style.css", "/ui/api/data", "/ui/api/chart/similarity.svg"} {
		r := p.getUI(t, path, nil)
		if r.status != http.StatusOK || len(r.body) == 0 {
			t.Fatalf("%s from loopback: status %d, %d bytes", path, r.status, len(r.body))
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q does not keep the page to its server", path, csp)
		}
	}
	refused := []map[string]string{
		{"X-Forwarded-For": "203.0.113.7"},
		{"Forwarded": "for=203.0.113.7"},
		{"X-Real-IP": "203.0.113.7"},
		{"Host": "attacker.example:8080"},
	}
	for _, h := range refused {
		for _, path := range []string{"/ui/", "/ui/api/data"} {
			if code := wantError(t, p.getUI(t, path, h), http.StatusForbidden); code != "ui_loopback_only" {
				t.Errorf("%s %v: code %q", path, h, code)
			}
		}
	}
	for _, host := range []string{"localhost:1234", "127.0.0.2", "[::1]:80", "ui.localhost"} {
		if r := p.getUI(t, "/ui/api/data", map[string]string{"Host": host}); r.status != http.StatusOK {
			t.Errorf("Host %s: status %d, want 200", host, r.status)
		}
	}

	// A peer that is not on this host, whatever its Host header says.
	srv := newUIServer(t, api.Config{UI: api.UILoopback})
	req := httptest.NewRequest(http.MethodGet, "/ui/api/data", nil)
	req.RemoteAddr = "198.51.100.4:5555"
	req.Host = "127.0.0.1:8080"
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("remote peer: status %d, want 403", rec.Code)
	}
}

// newUIServer returns an api.Server (not listening) with cfg over a memory
// cache; cfg.Upstream defaults to a loopback address nobody calls.
func newUIServer(t *testing.T, cfg api.Config) *api.Server {
	t.Helper()
	if cfg.Upstream == "" {
		cfg.Upstream = "http://127.0.0.1:9/v1"
	}
	srv, err := api.New(cfg, newCacheForConfigTest(t))
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestUIToken: under UIToken the page loads from anywhere, its data only
// with the admin token.
func TestUIToken(t *testing.T) {
	p := newAdminProxy(t, func(c *api.Config) { c.UI = api.UIToken })
	if r := p.getUI(t, "/ui/", map[string]string{"X-Forwarded-For": "203.0.113.7"}); r.status != http.StatusOK {
		t.Errorf("page through a proxy: status %d, want 200", r.status)
	}
	for _, path := range []string{"/ui/api/data", "/ui/api/chart/traffic.svg"} {
		wantError(t, p.getUI(t, path, nil), http.StatusUnauthorized)
		wantError(t, p.getUI(t, path, map[string]string{"Authorization": "Bearer wrong-token-0123456789"}), http.StatusUnauthorized)
		if r := p.getUI(t, path, map[string]string{"Authorization": "Bearer " + adminToken}); r.status != http.StatusOK {
			t.Errorf("%s with the admin token: status %d", path, r.status)
		}
	}
}

func TestNewRejectsBadUI(t *testing.T) {
	cache := newCacheForConfigTest(t)
	for _, cfg := range []api.Config{
		{UI: api.UIToken},
		{UI: "public"},
	} {
		cfg.Upstream = "http://127.0.0.1:9/v1"
		if _, err := api.New(cfg, cache); err == nil || !strings.Contains(err.Error(), "UI") {
			t.Errorf("UI %q (admin token %q): err %v, want one naming UI", cfg.UI, cfg.AdminToken, err)
		}
	}
}

// uiData is the part of GET /ui/api/data these tests read.
type uiData struct {
	Stats      semantic.Snapshot `json:"stats"`
	Threshold  float64           `json:"threshold"`
	NearMisses int64             `json:"near_misses"`
	Prompts    bool              `json:"prompts"`
	Recorder   struct {
		Series struct {
			Counts map[string][]int64 `json:"counts"`
		} `json:"series"`
		Latency map[string]struct {
			Count int     `json:"count"`
			P50   float64 `json:"p50_ms"`
			P99   float64 `json:"p99_ms"`
		} `json:"latency"`
		Similarity struct {
			Hits    []int64 `json:"hits"`
			Misses  []int64 `json:"misses"`
			Refused []int64 `json:"refused"`
		} `json:"similarity"`
		Recent []struct {
			Class      string   `json:"class"`
			Key        string   `json:"key"`
			Similarity *float64 `json:"similarity"`
			Nearest    *float64 `json:"nearest"`
			Refused    string   `json:"refused"`
			Prompt     string   `json:"prompt"`
		} `json:"recent"`
	} `json:"recorder"`
}

func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}

// TestUIDataMatchesTraffic: the dashboard's data holds the same counters
// as /api/v1/cache/stats, and its series, latencies, histograms and latest
// requests account for every request, with each request's outcome, key and
// similarity as its response headers said.
func TestUIDataMatchesTraffic(t *testing.T) {
	for _, prompts := range []bool{false, true} {
		guards, err := semantic.NewGuards(semantic.DefaultGuardsConfig())
		if err != nil {
			t.Fatal(err)
		}
		p := newProxyWith(t, newUpstream(t, nil), func(c *api.Config) { c.UI, c.UIPrompts = api.UILoopback, prompts },
			func(c *semantic.Config) { c.Guards = guards })
		asked := []string{
			"How do I reset my password?",
			"How do I reset my password?",
			"Can I return an item after 30 days?",
			"Can I return items after 30 days?",
			"Can I return an item after 60 days?",
			"What is the weather like on Mars?",
		}
		var replies []reply
		for _, q := range asked {
			replies = append(replies, p.ask(t, "sk-ui", q, nil))
		}
		r := p.getUI(t, "/ui/api/data", nil)
		var d uiData
		if r.status != http.StatusOK || json.Unmarshal(r.body, &d) != nil {
			t.Fatalf("data: status %d: %s", r.status, r.body)
		}
		var stats semantic.Snapshot
		if err := json.Unmarshal(p.getUI(t, "/api/v1/cache/stats", nil).body, &stats); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(d.Stats, stats) {
			t.Errorf("data stats %+v\nstats endpoint %+v", d.Stats, stats)
		}
		if d.Threshold != testThreshold || d.Prompts != prompts {
			t.Errorf("threshold %v prompts %v, want %v %v", d.Threshold, d.Prompts, testThreshold, prompts)
		}
		byClass := map[string]int64{"exact": stats.ExactHits, "semantic": stats.SemanticHits, "miss": stats.Misses, "bypass": stats.Bypasses}
		for class, n := range byClass {
			if got := sum(d.Recorder.Series.Counts[class]); got != n {
				t.Errorf("series %s: %d requests, stats say %d", class, got, n)
			}
			if l := d.Recorder.Latency[class]; int64(l.Count) != n || (n > 0 && !(l.P50 > 0 && l.P99 >= l.P50)) {
				t.Errorf("latency %s: %+v for %d requests", class, l, n)
			}
		}
		if stats.ExactHits == 0 || stats.SemanticHits == 0 || stats.GuardRefusals.Number == 0 {
			t.Fatalf("the traffic did not give an exact hit, a semantic hit and a number refusal: %+v", stats)
		}
		if got := sum(d.Recorder.Similarity.Hits); got != stats.SemanticHits {
			t.Errorf("similarity histogram holds %d hits, want %d", got, stats.SemanticHits)
		}
		if sum(d.Recorder.Similarity.Refused) == 0 {
			t.Error("the refused neighbour is not in the similarity histogram")
		}
		if len(d.Recorder.Recent) != len(asked) {
			t.Fatalf("%d recent requests, want %d", len(d.Recorder.Recent), len(asked))
		}
		for i, rec := range d.Recorder.Recent { // newest first
			rep := replies[len(asked)-1-i]
			q := asked[len(asked)-1-i]
			if rec.Key != rep.header.Get(api.HeaderKey) {
				t.Errorf("recent %q: key %s, header %s", q, rec.Key, rep.header.Get(api.HeaderKey))
			}
			wantClass := "miss"
			if rep.semStatus() == "HIT" {
				wantClass = rep.header.Get(api.HeaderTier)
			}
			if rec.Class != wantClass || rec.Refused != rep.header.Get(api.HeaderRefused) {
				t.Errorf("recent %q: class %s refused %q; headers say %s %q", q, rec.Class, rec.Refused, wantClass, rep.header.Get(api.HeaderRefused))
			}
			if s := rep.header.Get(api.HeaderSimilarity); wantClass == "semantic" && (rec.Similarity == nil || formatSim(*rec.Similarity) != s) {
				t.Errorf("recent %q: similarity %v, header %s", q, rec.Similarity, s)
			}
			if rec.Refused != "" && (rec.Nearest == nil || *rec.Nearest < testThreshold-1e-6) {
				t.Errorf("recent %q: refused neighbour's similarity %v, want >= the threshold", q, rec.Nearest)
			}
			if want := map[bool]string{true: q, false: ""}[prompts]; rec.Prompt != want {
				t.Errorf("recent prompt %q, want %q (prompts %v)", rec.Prompt, want, prompts)
			}
		}
		if !prompts && strings.Contains(string(r.body), "password") {
			t.Error("a prompt is in the dashboard's data although prompts are off")
		}
		for _, name := range []string{"traffic", "similarity", "refusals", "adaptive"} {
			c := p.getUI(t, "/ui/api/chart/"+name+".svg", nil)
			if c.status != http.StatusOK || c.header.Get("Content-Type") != "image/svg+xml" || !strings.Contains(string(c.body), "<svg") || strings.Count(string(c.body), "<path") < 5 {
				t.Errorf("chart %s: status %d, %s, %d bytes", name, c.status, c.header.Get("Content-Type"), len(c.body))
			}
		}
		// The same near misses reach Prometheus (the Grafana dashboard's
		// panel): one refused neighbour.
		if m := string(p.getUI(t, "/metrics", nil).body); !strings.Contains(m, `semcache_miss_nearest_similarity_count{refused="true"} 1`) {
			t.Errorf("/metrics has no refused nearest neighbour:\n%s", m[:min(len(m), 400)])
		}
		if c := p.getUI(t, "/ui/api/chart/nope.svg", nil); c.status != http.StatusNotFound {
			t.Errorf("unknown chart: status %d, want 404", c.status)
		}
	}
}

// formatSim formats a similarity as the X-Semcache-Similarity header does.
func formatSim(s float64) string { return strconv.FormatFloat(s, 'f', 4, 64) }
