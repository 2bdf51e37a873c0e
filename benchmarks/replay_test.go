package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode"
)

// fakeProxy mimics the semcache proxy in front of the simulated upstream:
// an exact tier keyed by the text, a "semantic" tier keyed by the text
// lower-cased without punctuation, and the answer "Simulated answer to: "
// + the text that stored the entry. "boom" fails with 500 and "please
// bypass" bypasses the cache. Usage: prompt_tokens is the number of words
// of the stored text, completion_tokens four more.
type fakeProxy struct {
	t      *testing.T
	mu     sync.Mutex        // guards the maps
	exact  map[string]string // text -> stored source text
	sem    map[string]string // normalised text -> stored source text
	simFor map[string]string // normalised text -> X-Semcache-Similarity
}

func newFakeProxy(t *testing.T) *fakeProxy {
	return &fakeProxy{
		t:     t,
		exact: map[string]string{},
		// An entry left by an earlier run on other data: its source
		// query is not in the replayed file.
		sem:    map[string]string{"what is the rate": "What is the rate today"},
		simFor: map[string]string{"what is the rate": "0.91"},
	}
}

func normalise(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == ' ' {
			return unicode.ToLower(r)
		}
		return -1
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

func (f *fakeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/healthz":
		io.WriteString(w, `{"status":"ok"}`)
		return
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/cache/stats":
		f.mu.Lock()
		fmt.Fprintf(w, `{"entries":%d}`, len(f.exact))
		f.mu.Unlock()
		return
	}
	var req chatRequest
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" ||
		r.Header.Get("Authorization") != "Bearer sk-replay" || r.Header.Get("Content-Type") != "application/json" ||
		json.NewDecoder(r.Body).Decode(&req) != nil || req.Model != "sim-1" ||
		len(req.Messages) != 1 || req.Messages[0].Role != "user" {
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	text := req.Messages[0].Content
	if text == "boom" {
		http.Error(w, `{"error":{"message":"upstream exploded"}}`, http.StatusInternalServerError)
		return
	}
	key := normalise(text)
	f.mu.Lock()
	source, status, tier, sim := text, "MISS", "", ""
	switch {
	case text == "please bypass":
		status = "BYPASS"
	case f.exact[text] != "":
		source, status, tier = f.exact[text], "HIT", "exact"
	case f.sem[key] != "":
		source, status, tier, sim = f.sem[key], "HIT", "semantic", "0.93"
		if s := f.simFor[key]; s != "" {
			sim = s
		}
	default:
		f.exact[text] = text
		f.sem[key] = text
	}
	f.mu.Unlock()

	w.Header().Set(headerStatus, status)
	if tier != "" {
		w.Header().Set(headerTier, tier)
	}
	if sim != "" {
		w.Header().Set(headerSimilarity, sim)
	}
	words := len(strings.Fields(source))
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":"x","object":"chat.completion","model":"sim-1","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
		simulatedPrefix+source, words, words+4, 2*words+4)
}

func replayTestOptions(target, data string) replayOptions {
	return replayOptions{Target: target, Data: data, TextCol: "text", LabelCol: "category",
		Model: "sim-1", APIKey: "sk-replay", Concurrency: 1, Timeout: 10e9}
}

func TestReplayFlagsAWarmCache(t *testing.T) {
	srv := httptest.NewServer(newFakeProxy(t))
	defer srv.Close()
	o := replayTestOptions(srv.URL+"/v1", filepath.Join("testdata", "replay.csv"))
	var progress bytes.Buffer
	first, err := runReplay(context.Background(), o, newReplayClient(o), &progress)
	if err != nil {
		t.Fatal(err)
	}
	if first.EntriesAtStart != 0 || strings.Contains(progress.String(), "not a cold replay") {
		t.Errorf("first replay: entries at start %d, progress %q; want a cold start", first.EntriesAtStart, progress.String())
	}
	second, err := runReplay(context.Background(), o, newReplayClient(o), &progress)
	if err != nil {
		t.Fatal(err)
	}
	if second.EntriesAtStart == 0 || !strings.Contains(progress.String(), "not a cold replay") {
		t.Errorf("second replay: entries at start %d, progress %q; want the warm cache flagged", second.EntriesAtStart, progress.String())
	}
	var out bytes.Buffer
	if err := writeReplaySummary(&out, second); err != nil || !strings.Contains(out.String(), "WARNING") {
		t.Errorf("summary does not flag the warm cache: %v\n%s", err, out.String())
	}
}

func TestReplay(t *testing.T) {
	srv := httptest.NewServer(newFakeProxy(t))
	defer srv.Close()
	o := replayTestOptions(srv.URL+"/v1", filepath.Join("testdata", "replay.csv"))
	var progress bytes.Buffer
	rep, err := runReplay(context.Background(), o, newReplayClient(o), &progress)
	if err != nil {
		t.Fatal(err)
	}
	// By hand, line by line: 2 miss; 3 exact hit (correct); 4 semantic
	// (correct); 5 semantic from card_arrival for lost_card (wrong); 6
	// miss; 7 semantic from a text not in the file (unattributed); 8 500;
	// 9 bypass; 10 semantic (correct); 11 miss.
	checks := []struct {
		name      string
		got, want any
	}{
		{"queries", rep.Queries, 10},
		{"answered", rep.Answered, 9},
		{"errors", rep.Errors, 1},
		{"errors by kind", rep.ErrorsByKind, map[string]int{"http 500": 1}},
		{"hits", rep.Hits, 5},
		{"misses", rep.Misses, 3},
		{"bypassed", rep.Bypassed, 1},
		{"hit rate", optRate(rep.HitRate, "nil"), optRate(p(5.0/9), "")},
		{"all hits", rep.All, HitStats{Hits: 5, Correct: 3, Unattributed: 1, Precision: p(3.0 / 4)}},
		{"exact", rep.Exact, HitStats{Hits: 1, Correct: 1, Precision: p(1)}},
		{"semantic", rep.Semantic, HitStats{Hits: 4, Correct: 2, Unattributed: 1, Precision: p(2.0 / 3)}},
		{"lowest similarity", optRate(rep.SemanticSimilarityMin, "nil"), "0.9100"},
		{"calls saved", rep.UpstreamCallsSaved, 5},
		{"prompt tokens saved", rep.PromptTokensSaved, 4 + 4 + 4 + 5 + 5},
		{"completion tokens saved", rep.CompletionTokensSaved, 22 + 5*4},
		{"latency counts", []int{rep.ExactHitLatency.Count, rep.SemanticHitLatency.Count, rep.MissLatency.Count, rep.BypassLatency.Count}, []int{1, 4, 3, 1}},
	}
	for _, c := range checks {
		if fmt.Sprint(deref(c.got)) != fmt.Sprint(deref(c.want)) {
			t.Errorf("%s = %v, want %v", c.name, deref(c.got), deref(c.want))
		}
	}
	if len(rep.ErrorSamples) != 1 || !strings.HasPrefix(rep.ErrorSamples[0], "line 8: http 500: ") {
		t.Errorf("error samples %q, want one naming line 8", rep.ErrorSamples)
	}
	if progress.Len() != 0 {
		t.Errorf("progress for 10 queries: %q, want none", progress.String())
	}

	var out bytes.Buffer
	if err := writeReplaySummary(&out, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	for _, s := range []string{"hits                  5 (hit rate 55.56% of answered): exact 1, semantic 4",
		"semantic            0.6667 (2/3), 1 unattributed", "errors                1: http 500 1;"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary does not contain %q:\n%s", s, out.String())
		}
	}
}

// deref makes HitStats with pointer fields printable by value.
func deref(v any) any {
	if h, ok := v.(HitStats); ok {
		return fmt.Sprintf("%d/%d/%d/%s", h.Hits, h.Correct, h.Unattributed, optRate(h.Precision, "nil"))
	}
	return v
}

func TestReplayMainWritesJSONAndHonoursLimit(t *testing.T) {
	srv := httptest.NewServer(newFakeProxy(t))
	defer srv.Close()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"replay", "--target", srv.URL + "/v1/", "--data", filepath.Join("testdata", "replay.csv"),
		"--limit", "3", "--out", dir}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	var rep ReplayReport
	data, err := os.ReadFile(filepath.Join(dir, "replay.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Queries != 3 || rep.Misses != 1 || rep.Exact.Hits != 1 || rep.Semantic.Hits != 1 || rep.All.Correct != 2 {
		t.Errorf("replay.json: %s", data)
	}
}

func TestReplayConcurrentWithProgress(t *testing.T) {
	srv := httptest.NewServer(newFakeProxy(t))
	defer srv.Close()
	var b strings.Builder
	b.WriteString("text,category\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "question number %d,label%d\n", i%400, i%400)
	}
	data := writeFile(t, t.TempDir(), "log.csv", b.String())
	o := replayTestOptions(srv.URL+"/v1", data)
	o.Concurrency = 8
	var progress bytes.Buffer
	rep, err := runReplay(context.Background(), o, newReplayClient(o), &progress)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Queries != 1000 || rep.Answered != 1000 || rep.Errors != 0 {
		t.Errorf("queries %d answered %d errors %d", rep.Queries, rep.Answered, rep.Errors)
	}
	// Which duplicate arrives first is racy, but every text has one label.
	if rep.All.Precision == nil || *rep.All.Precision != 1 || rep.Hits < 1 {
		t.Errorf("all hits %+v", deref(rep.All))
	}
	if lines := strings.Count(progress.String(), "\n"); lines != 2 || !strings.Contains(progress.String(), "replay: 1000/1000 queries") {
		t.Errorf("progress:\n%s", progress.String())
	}
}

func TestReplayCancelled(t *testing.T) {
	srv := httptest.NewServer(newFakeProxy(t))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := replayTestOptions(srv.URL+"/v1", filepath.Join("testdata", "replay.csv"))
	if _, err := runReplay(ctx, o, newReplayClient(o), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("got %v, want a cancellation error", err)
	}
}

func TestLoopbackURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/v1", true},
		{"http://127.3.2.1/v1", true},
		{"https://localhost:8443/v1", true},
		{"http://LocalHost:8080/v1", true},
		{"http://[::1]:8080/v1", true},
		{"http://api.openai.com/v1", false},
		{"http://10.0.0.1:8080/v1", false},
		{"http://0.0.0.0:8080/v1", false},
		{"http://128.0.0.1/v1", false},
		{"http://127.0.0.1.nip.io/v1", false},
		{"http://localhost.example.com/v1", false},
		{"ftp://127.0.0.1/v1", false},
		{"127.0.0.1:8080/v1", false},
		{"http://[::2]/v1", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := loopbackURL(tt.url)
			if (err == nil) != tt.ok {
				t.Errorf("loopbackURL(%q) error = %v, want ok=%v", tt.url, err, tt.ok)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{50: 5, 95: 10, 99: 10, 10: 1, 11: 2} {
		if got := percentile(xs, p); got != want {
			t.Errorf("percentile(1..10, %v) = %v, want %v", p, got, want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil, 50) = %v, want 0", got)
	}
}
