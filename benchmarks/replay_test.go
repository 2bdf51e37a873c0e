package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"
	"github.com/semcache/semcache/index/redistest"
	"github.com/semcache/semcache/semantic"
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
	return replayOptions{Target: target, Data: data, Format: queryLogLabelled, TextCol: "text", LabelCol: "category",
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

// inProcessFixture is a labelled log for the real proxy (local embedder,
// default threshold 0.87), replayed in order. By hand: line 2 miss; 3 exact
// hit; 4 exact hit (the exact key is lower-cased); 5 semantic hit of line 2
// (cosine 0.92), same label; 6 miss; 7 semantic hit of line 6 (0.92) with
// another label; 8 miss; 9 miss (0.68 to line 6).
const inProcessFixture = `text,category
How do I reset my PIN?,change_pin
How do I reset my PIN?,change_pin
HOW DO I RESET MY PIN?,change_pin
How do I reset my own PIN?,change_pin
Why was my transfer declined?,declined_transfer
Why was my bank transfer declined?,declined_card_payment
What is the exchange rate today?,exchange_rate
why was my card declined,declined_card_payment
`

// testProxy is the in-process proxy of the tests: no simulated latency.
func testProxy() proxyOptions {
	return proxyOptions{EmbedderDim: 384, Threshold: 0.87, Backend: "memory"}
}

// checkInProcessReplay checks the report of a replay of inProcessFixture.
func checkInProcessReplay(t *testing.T, rep *ReplayReport) {
	t.Helper()
	checks := []struct {
		name      string
		got, want any
	}{
		{"target", rep.Target, "in-process"},
		{"queries", rep.Queries, 8},
		{"answered", rep.Answered, 8},
		// The exchange-rate question is a BYPASS: the in-process proxy
		// has serve's default TTL rules (realtime: never cached).
		{"misses", rep.Misses, 3},
		{"bypassed", rep.Bypassed, 1},
		{"exact", rep.Exact, HitStats{Hits: 2, Correct: 2, Precision: p(1)}},
		{"semantic", rep.Semantic, HitStats{Hits: 2, Correct: 1, Precision: p(0.5)}},
		{"all hits", rep.All, HitStats{Hits: 4, Correct: 3, Precision: p(0.75)}},
		{"entries at start", rep.EntriesAtStart, 0},
	}
	for _, c := range checks {
		if fmt.Sprint(deref(c.got)) != fmt.Sprint(deref(c.want)) {
			t.Errorf("%s = %v, want %v", c.name, deref(c.got), deref(c.want))
		}
	}
	if s := rep.SemanticSimilarityMin; s == nil || *s < 0.87 || *s > 1 {
		t.Errorf("lowest semantic similarity %v, want one in [0.87, 1]", optRate(s, "nil"))
	}
	if rep.Proxy == nil || rep.Proxy.Threshold != 0.87 || rep.Proxy.Embedder != "local:lexical-v1:384" ||
		rep.Proxy.Guards != semantic.DefaultGuardKinds || rep.Proxy.TTLRules != "default" {
		t.Errorf("proxy settings %+v", rep.Proxy)
	}
}

func TestReplayInProcess(t *testing.T) {
	o := replayTestOptions("", writeFile(t, t.TempDir(), "log.csv", inProcessFixture))
	o.Proxy = testProxy()
	var stderr bytes.Buffer
	rep, err := replay(context.Background(), o, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	checkInProcessReplay(t, rep)
	if rep.Proxy.Backend != "memory" {
		t.Errorf("backend %q, want memory", rep.Proxy.Backend)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %q, want nothing", stderr.String())
	}
	var out bytes.Buffer
	if err := writeReplaySummary(&out, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "through in-process (") || !strings.Contains(out.String(), "in-process proxy: simulated upstream 0ms") {
		t.Errorf("summary does not name the in-process proxy:\n%s", out.String())
	}
}

func TestReplayInProcessRedis(t *testing.T) {
	srv := redistest.StartSearch(t)
	o := replayTestOptions("", writeFile(t, t.TempDir(), "log.csv", inProcessFixture))
	o.Proxy = testProxy()
	o.Proxy.Backend, o.Proxy.RedisURL = "redis", srv.URL()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", srv.Port)})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "someone-else:key", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rep, err := replay(ctx, o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkInProcessReplay(t, rep)
	if rep.Proxy.Backend != "redis" {
		t.Errorf("backend %q, want redis", rep.Proxy.Backend)
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "someone-else:key" {
		t.Errorf("keys after the run %q, want only the one the run did not write", keys)
	}
}

func TestReplayInProcessRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	o := replayTestOptions("", writeFile(t, t.TempDir(), "log.csv", inProcessFixture))
	o.Proxy = testProxy()
	o.Proxy.Backend, o.Proxy.RedisURL = "redis", "redis://"+addr+"/0"
	if _, err := replay(context.Background(), o, io.Discard); err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("got %v, want a not-ready error", err)
	}
}

func TestReplayMainInProcess(t *testing.T) {
	dir := t.TempDir()
	data := writeFile(t, dir, "log.csv", inProcessFixture)
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"replay", "--data", data, "--sim-latency", "0s", "--out", dir}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	js, err := os.ReadFile(filepath.Join(dir, "replay.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep ReplayReport
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	checkInProcessReplay(t, &rep)
	if !strings.Contains(stdout.String(), "through in-process") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
}

func TestReplayFlagErrors(t *testing.T) {
	data := filepath.Join("testdata", "replay.csv")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"proxy flag with target", []string{"--target", "http://127.0.0.1:1/v1", "--data", data, "--threshold", "0.9"}, "--threshold configures the in-process proxy"},
		{"remote target", []string{"--target", "http://10.0.0.1:8080/v1", "--data", data}, "not loopback"},
		{"no data", []string{}, "--data is required"},
		{"bad format", []string{"--data", data, "--format", "jsonl"}, `--format "jsonl"`},
		{"bad threshold", []string{"--data", data, "--threshold", "1.5"}, "--threshold 1.5"},
		{"bad backend", []string{"--data", data, "--backend", "disk"}, `--backend "disk"`},
		{"redis without url", []string{"--data", data, "--backend", "redis"}, "needs --redis-url"},
		{"url without redis", []string{"--data", data, "--redis-url", "redis://127.0.0.1:6379/0"}, "needs --backend redis"},
		{"negative latency", []string{"--data", data, "--sim-latency", "-1s"}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(context.Background(), append([]string{"replay"}, tt.args...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit code %d, stderr %q; want 2 and %q", code, stderr.String(), tt.want)
			}
		})
	}
}

func TestReplayLinesFormat(t *testing.T) {
	srv := httptest.NewServer(newFakeProxy(t))
	defer srv.Close()
	data := writeFile(t, t.TempDir(), "log.txt", "\ufeffWhere is my card?\r\n\r\nWhere is my card?\r\nwhere is my card\r\nwhat is the rate\r\n")
	o := replayTestOptions(srv.URL+"/v1", data)
	o.Format = queryLogLines
	rep, err := runReplay(context.Background(), o, newReplayClient(o), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Line 1 miss; 2 blank, skipped; 3 exact; 4 semantic of line 1; 5
	// semantic from an entry whose source is not in the file.
	checks := []struct {
		name      string
		got, want any
	}{
		{"format", rep.Format, "lines"},
		{"queries", rep.Queries, 4},
		{"misses", rep.Misses, 1},
		{"all hits", rep.All, HitStats{Hits: 3, Unattributed: 1}},
		{"exact", rep.Exact, HitStats{Hits: 1}},
		{"semantic", rep.Semantic, HitStats{Hits: 2, Unattributed: 1}},
	}
	for _, c := range checks {
		if fmt.Sprint(deref(c.got)) != fmt.Sprint(deref(c.want)) {
			t.Errorf("%s = %v, want %v", c.name, deref(c.got), deref(c.want))
		}
	}
	var out bytes.Buffer
	if err := writeReplaySummary(&out, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "precision             - (the query log has no labels)") || strings.Contains(out.String(), "same intent") {
		t.Errorf("summary:\n%s", out.String())
	}
}

func TestLoadLines(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          []Example // nil: an error
	}{
		{"plain", "a b\nc\n", []Example{{Text: "a b", Line: 1}, {Text: "c", Line: 2}}},
		{"no final newline", "a\nb", []Example{{Text: "a", Line: 1}, {Text: "b", Line: 2}}},
		{"crlf and bom", "\ufeffa\r\nb\r\n", []Example{{Text: "a", Line: 1}, {Text: "b", Line: 2}}},
		{"blank lines skipped, spaces kept", "\n  x \n\t\n y\n\n", []Example{{Text: "  x ", Line: 2}, {Text: " y", Line: 4}}},
		{"a label-looking comma is text", "a,b\n", []Example{{Text: "a,b", Line: 1}}},
		{"empty", "", nil},
		{"only blank lines", "\n \n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadLines(writeFile(t, dir, "f.txt", tt.content))
			if tt.want == nil {
				if err == nil {
					t.Errorf("got %v, want an error", got)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestProgressMeterOnATerminal(t *testing.T) {
	var out bytes.Buffer
	clock := time.Unix(0, 0)
	m := newProgressMeter(&out, "replay", "queries", 1000, 0)
	m.tty, m.now, m.start = true, func() time.Time { return clock }, clock
	step := func(d time.Duration, done int) {
		clock = clock.Add(d)
		m.update(done, done/2, 0)
	}
	step(time.Second, 100) // before progressDelay: nothing
	if out.Len() != 0 {
		t.Fatalf("drawn before the delay: %q", out.String())
	}
	step(time.Second, 200) // at 2s: drawn
	step(100*time.Millisecond, 300)
	step(50*time.Millisecond, 400) // 150ms after the last draw: skipped
	step(100*time.Millisecond, 500)
	draws := strings.Split(out.String(), "\r")[1:]
	if len(draws) != 2 {
		t.Fatalf("%d draws, want 2: %q", len(draws), out.String())
	}
	if want := "replay [######........................]  20% 200/1000 queries, 100 hits, 0 errors, 2s\x1b[K"; draws[0] != want {
		t.Errorf("first draw %q, want %q", draws[0], want)
	}
	if !strings.HasPrefix(draws[1], "replay [###############...............]  50% 500/1000") {
		t.Errorf("second draw %q", draws[1])
	}
	m.finish(1000, 500, 0)
	if !strings.HasSuffix(out.String(), "100% 1000/1000 queries, 500 hits, 0 errors, 2.2s\x1b[K\n") {
		t.Errorf("final draw %q", out.String())
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("want one line: %q", out.String())
	}
}

func TestProgressMeterShortRunOnATerminalPrintsNothing(t *testing.T) {
	var out bytes.Buffer
	m := newProgressMeter(&out, "replay", "queries", 1000, 0)
	clock := time.Unix(0, 0)
	m.tty, m.now, m.start = true, func() time.Time { return clock }, clock
	for i := 1; i <= 1000; i++ {
		m.update(i, 0, 0)
	}
	m.finish(1000, 0, 0)
	if out.Len() != 0 {
		t.Errorf("short run printed %q", out.String())
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminal(&bytes.Buffer{}) || isTerminal(&syncWriter{w: f}) {
		t.Error("a regular file or a buffer is not a terminal")
	}
	if tty, err := os.OpenFile("/dev/null", os.O_WRONLY, 0); err == nil { // a character device
		defer tty.Close()
		if !isTerminal(tty) || !isTerminal(&syncWriter{w: tty}) {
			t.Error("/dev/null is a character device")
		}
	}
}
