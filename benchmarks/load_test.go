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
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		spec string
		want Mix
		err  string // "" for success
	}{
		{spec: defaultMix, want: Mix{Repeat: 0.5, Paraphrase: 0.3, New: 0.2}},
		{spec: "new=1", want: Mix{New: 1}},
		{spec: " repeat = 0.1 , paraphrase=0.2,new=0.7", want: Mix{Repeat: 0.1, Paraphrase: 0.2, New: 0.7}},
		{spec: "repeat=1,paraphrase=0,new=0", want: Mix{Repeat: 1}},
		{spec: "repeat=0.5,paraphrase=0.3", err: "sum to 0.8, want 1"},
		{spec: "repeat=0.5,paraphrase=0.3,new=0.3", err: "sum to 1.1, want 1"},
		{spec: "repeat=0.5,typo=0.5", err: `unknown kind "typo"`},
		{spec: "repeat=0.5,repeat=0.5", err: "repeat given twice"},
		{spec: "repeat=1.5,new=-0.5", err: "want a number in [0, 1]"},
		{spec: "repeat=NaN,new=1", err: "want a number in [0, 1]"},
		{spec: "repeat=half,new=0.5", err: "want a number in [0, 1]"},
		{spec: "repeat", err: "not kind=share"},
		{spec: "", err: "not kind=share"},
		{spec: "repeat=1,", err: "not kind=share"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := parseMix(tt.spec)
			switch {
			case tt.err == "" && (err != nil || got != tt.want):
				t.Errorf("parseMix(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("parseMix(%q) error %v, want one containing %q", tt.spec, err, tt.err)
			}
		})
	}
	if m, err := parseMix(Mix{Repeat: 0.25, Paraphrase: 0.25, New: 0.5}.String()); err != nil || m != (Mix{Repeat: 0.25, Paraphrase: 0.25, New: 0.5}) {
		t.Errorf("String does not round-trip: %+v, %v", m, err)
	}
}

func TestParaphrase(t *testing.T) {
	tests := []struct {
		base string
		want [numParaphrases]string
	}{
		{"How do I reset my password?", [numParaphrases]string{
			"How can I reset my password?", "How do I reset my password, please?",
			"how do i reset my password", "How can I reset my password, please?"}},
		{"What is your refund policy?", [numParaphrases]string{
			"What's your refund policy?", "What is your refund policy, please?",
			"what is your refund policy", "What's your refund policy, please?"}},
		{"Tell me the opening hours", [numParaphrases]string{
			"Hi, tell me the opening hours", "Tell me the opening hours, please",
			"tell me the opening hours?", "Hi, tell me the opening hours, please"}},
		{"ok", [numParaphrases]string{"Hi, ok", "ok, please", "ok?", "Hi, ok, please"}},
	}
	for _, tt := range tests {
		for v, want := range tt.want {
			if got := paraphrase(tt.base, v); got != want {
				t.Errorf("paraphrase(%q, %d) = %q, want %q", tt.base, v, got, want)
			}
		}
	}
	for _, b := range builtinPrompts {
		for v := range numParaphrases {
			if paraphrase(b, v) == b {
				t.Errorf("paraphrase(%q, %d) is the prompt itself", b, v)
			}
		}
	}
}

// drawPrompts returns the first n prompts of a generator.
func drawPrompts(t *testing.T, texts []string, pool int, mix Mix, seed uint64, n int) (kinds []promptKind, prompts []string) {
	t.Helper()
	g, err := newPromptGen(texts, pool, mix, seed)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		k, p := g.next()
		kinds, prompts = append(kinds, k), append(prompts, p)
	}
	return kinds, prompts
}

func TestPromptGenIsDeterministic(t *testing.T) {
	mix := Mix{Repeat: 0.5, Paraphrase: 0.3, New: 0.2}
	k1, p1 := drawPrompts(t, builtinPrompts, 50, mix, 7, 500)
	k2, p2 := drawPrompts(t, builtinPrompts, 50, mix, 7, 500)
	if !slices.Equal(k1, k2) || !slices.Equal(p1, p2) {
		t.Error("the same seed gave two sequences")
	}
	if _, p3 := drawPrompts(t, builtinPrompts, 50, mix, 8, 500); slices.Equal(p1, p3) {
		t.Error("seeds 7 and 8 gave the same sequence")
	}
}

func TestPromptGenKinds(t *testing.T) {
	texts := []string{"alpha one?", "beta two?", "gamma three?", "delta four?", "alpha one?", "How can I x?", "How do I x?"}
	kinds, prompts := drawPrompts(t, texts, 2, Mix{Repeat: 0.4, Paraphrase: 0.3, New: 0.3}, 1, 300)
	g, _ := newPromptGen(texts, 2, Mix{New: 1}, 1)
	pool := g.pool
	inPool := func(s string) bool { return slices.Contains(pool, s) }
	isParaphrase := func(s string) bool {
		for _, b := range pool {
			for v := range numParaphrases {
				if paraphrase(b, v) == s {
					return true
				}
			}
		}
		return false
	}
	count := map[promptKind]int{}
	var news []string
	for i, k := range kinds {
		count[k]++
		s := prompts[i]
		switch k {
		case promptRepeat:
			if !inPool(s) {
				t.Errorf("repeat %q is not a pool prompt %q", s, pool)
			}
		case promptParaphrase:
			if inPool(s) || !isParaphrase(s) {
				t.Errorf("paraphrase %q is not a paraphrase of a pool prompt %q", s, pool)
			}
		case promptNew:
			if inPool(s) || isParaphrase(s) || slices.Contains(news, s) {
				t.Errorf("new prompt %q was pooled, a paraphrase or sent before", s)
			}
			news = append(news, s)
		}
	}
	for _, k := range []promptKind{promptRepeat, promptParaphrase, promptNew} {
		if count[k] == 0 {
			t.Errorf("no %s prompt in 300 draws", k)
		}
	}
	// The unused texts come first, in shuffled order, without the one
	// that is a paraphrase of a pool prompt when "How do I x?" is pooled.
	for _, s := range news[:min(len(news), len(g.fresh))] {
		if !slices.Contains(texts, s) {
			t.Errorf("new prompt %q before the unused texts ran out", s)
		}
	}
	if len(news) > 5 && !strings.HasPrefix(news[len(news)-1], "What does the ") {
		t.Errorf("synthetic new prompt %q", news[len(news)-1])
	}

	// A kind with share 0 is never drawn.
	kinds, _ = drawPrompts(t, texts, 2, Mix{Repeat: 0.7, Paraphrase: 0.3}, 1, 300)
	if slices.Contains(kinds, promptNew) {
		t.Error("new drawn with share 0")
	}
	if _, err := newPromptGen(texts, 7, Mix{New: 1}, 1); err == nil {
		t.Error("a pool larger than the 6 distinct texts was accepted")
	}
}

func TestBuiltinPromptsAreDistinct(t *testing.T) {
	if len(builtinPrompts) != 50 {
		t.Errorf("%d built-in prompts, want 50", len(builtinPrompts))
	}
	seen := map[string]bool{}
	for _, p := range builtinPrompts {
		if seen[p] {
			t.Errorf("duplicate built-in prompt %q", p)
		}
		seen[p] = true
	}
}

// readLoadJSON reads dir/load.json.
func readLoadJSON(t *testing.T, dir string) LoadReport {
	t.Helper()
	js, err := os.ReadFile(filepath.Join(dir, "load.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep LoadReport
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestLoadInProcess(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"load", "--requests", "200", "--duration", "10m", "--concurrency", "4",
		"--sim-latency", "0s", "--mix", "repeat=0.6,paraphrase=0.2,new=0.2", "--out", dir}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	rep := readLoadJSON(t, dir)
	if rep.Requests != 200 || rep.Answered != 200 || rep.Errors != 0 || rep.StoppedBy != "requests" {
		t.Errorf("requests %d, answered %d, errors %d, stopped by %q; want 200, 200, 0, requests", rep.Requests, rep.Answered, rep.Errors, rep.StoppedBy)
	}
	if rep.HitRate == nil || *rep.HitRate <= 0 || rep.Hits != rep.ExactHits+rep.SemanticHits || rep.Hits+rep.Misses+rep.Bypassed != rep.Answered {
		t.Errorf("hits %d = exact %d + semantic %d, misses %d, hit rate %v", rep.Hits, rep.ExactHits, rep.SemanticHits, rep.Misses, optRate(rep.HitRate, "nil"))
	}
	// 115 repeats of 50 prompts: some are sent again after a miss stored
	// them.
	if rep.Repeat.ExactHits == 0 {
		t.Errorf("repeats %+v: want exact hits", rep.Repeat)
	}
	if sent := rep.Repeat.Sent + rep.Paraphrase.Sent + rep.New.Sent; sent != 200 {
		t.Errorf("sent by kind adds up to %d", sent)
	}
	if rep.Target != "in-process" || rep.Proxy == nil || rep.Data != "built-in" || rep.Pool != 50 || rep.Seed != 1 {
		t.Errorf("report header %+v", rep)
	}
	if rep.Latency.Count != 200 || rep.Throughput <= 0 {
		t.Errorf("latency %+v, throughput %v", rep.Latency, rep.Throughput)
	}
	for _, s := range []string{"load against in-process", "stopped by requests", "requests              200 (answered 200, errors 0)", "throughput", "paraphrase"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("summary does not contain %q", s)
		}
	}
}

func TestLoadFromDataIsDeterministic(t *testing.T) {
	// With one request in flight the outcome of each prompt is fixed, so
	// two runs with one seed give the same counts.
	dir := t.TempDir()
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "question %d about topic %c%c%c\n", i, 'a'+i%26, 'a'+i/3%26, 'k'+i%7)
	}
	data := writeFile(t, dir, "prompts.txt", b.String())
	run := func() LoadReport {
		out := t.TempDir()
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), []string{"load", "--data", data, "--format", "lines", "--pool", "10", "--requests", "150",
			"--concurrency", "1", "--sim-latency", "0s", "--seed", "42", "--out", out}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
		}
		return readLoadJSON(t, out)
	}
	a, b2 := run(), run()
	if a.Requests != 150 || a.Repeat != b2.Repeat || a.Paraphrase != b2.Paraphrase || a.New != b2.New {
		t.Errorf("two runs with seed 42:\n%+v %+v %+v\n%+v %+v %+v", a.Repeat, a.Paraphrase, a.New, b2.Repeat, b2.Paraphrase, b2.New)
	}
	if a.Data != data || a.Pool != 10 {
		t.Errorf("data %q pool %d", a.Data, a.Pool)
	}
}

func TestLoadAgainstTarget(t *testing.T) {
	srv := httptest.NewServer(newFakeProxy(t))
	defer srv.Close()
	o := loadOptions{Target: srv.URL + "/v1", Requests: 120, Duration: 10 * time.Minute, Concurrency: 1,
		Mix: Mix{Repeat: 0.5, Paraphrase: 0.5}, Pool: 5, Format: queryLogLabelled, Seed: 3,
		Model: "sim-1", APIKey: "sk-replay", Timeout: 10 * time.Second}
	rep, err := runLoad(context.Background(), o, newLoopbackClient(o.Timeout, o.Concurrency), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// The fake's semantic tier ignores case and punctuation, so variant 2
	// of a paraphrase hits its base prompt: at most 4 misses per pool
	// prompt, one for the first sending of each of the other texts.
	if rep.Requests != 120 || rep.Errors != 0 || rep.Misses > 5*4 || rep.Hits < 120-5*4 {
		t.Errorf("requests %d errors %d misses %d hits %d", rep.Requests, rep.Errors, rep.Misses, rep.Hits)
	}
	if rep.Target != o.Target || rep.Proxy != nil {
		t.Errorf("target %q proxy %+v", rep.Target, rep.Proxy)
	}
}

func TestLoadStopsAtTheDuration(t *testing.T) {
	// Every answer takes 50ms and the run may send for 1ms, with one
	// request in flight: at most one request is sent.
	fake := newFakeProxy(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/chat/completions" {
			time.Sleep(50 * time.Millisecond)
		}
		fake.ServeHTTP(w, r)
	}))
	defer srv.Close()
	o := loadOptions{Target: srv.URL + "/v1", Requests: 1000, Duration: time.Millisecond, Concurrency: 1,
		Mix: Mix{Repeat: 1}, Pool: 5, Format: queryLogLabelled, Seed: 1, Model: "sim-1", APIKey: "sk-replay", Timeout: 10 * time.Second}
	rep, err := runLoad(context.Background(), o, newLoopbackClient(o.Timeout, o.Concurrency), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests > 1 || rep.Errors != 0 || rep.StoppedBy != "duration" {
		t.Errorf("requests %d errors %d stopped by %q; want at most 1 answered, stopped by duration", rep.Requests, rep.Errors, rep.StoppedBy)
	}
}

func TestLoadCancelled(t *testing.T) {
	srv := httptest.NewServer(newFakeProxy(t))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := loadOptions{Target: srv.URL + "/v1", Requests: 10, Duration: time.Minute, Concurrency: 1,
		Mix: Mix{Repeat: 1}, Pool: 5, Format: queryLogLabelled, Seed: 1, Model: "sim-1", APIKey: "sk-replay", Timeout: 10 * time.Second}
	if _, err := runLoad(ctx, o, newLoopbackClient(o.Timeout, 1), io.Discard); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("got %v, want a cancellation error", err)
	}
}

func TestLoadFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"remote target", []string{"--target", "http://api.openai.com/v1"}, "is not loopback"},
		{"private address", []string{"--target", "http://10.0.0.1:8080/v1"}, "is not loopback"},
		{"look-alike host", []string{"--target", "http://127.0.0.1.nip.io/v1"}, "is not loopback"},
		{"other scheme", []string{"--target", "ftp://127.0.0.1/v1"}, "want an http:// or https:// URL"},
		{"no scheme", []string{"--target", "127.0.0.1:8080/v1"}, `--target "127.0.0.1:8080/v1"`},
		{"proxy flag with target", []string{"--target", "http://127.0.0.1:1/v1", "--sim-latency", "5ms"}, "--sim-latency configures the in-process proxy"},
		{"no requests", []string{"--requests", "0"}, "--requests must be 1 to"},
		{"too many requests", []string{"--requests", "1000001"}, "--requests must be 1 to"},
		{"no duration", []string{"--duration", "0s"}, "--duration must be > 0"},
		{"no concurrency", []string{"--concurrency", "0"}, "--concurrency must be >= 1"},
		{"mix sum", []string{"--mix", "repeat=0.5,new=0.4"}, "sum to 0.9"},
		{"mix kind", []string{"--mix", "repeat=0.5,fresh=0.5"}, `unknown kind "fresh"`},
		{"pool beyond the built-in list", []string{"--pool", "51"}, "the built-in list has 50 prompts"},
		{"format without data", []string{"--format", "lines"}, "--format needs --data"},
		{"positional argument", []string{"extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(context.Background(), append([]string{"load"}, tt.args...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit code %d, stderr %q; want 2 and %q", code, stderr.String(), tt.want)
			}
		})
	}
}

func TestLoadProgressLines(t *testing.T) {
	srv := httptest.NewServer(newFakeProxy(t))
	defer srv.Close()
	o := loadOptions{Target: srv.URL + "/v1", Requests: 1000, Duration: 10 * time.Minute, Concurrency: 1,
		Mix: Mix{Repeat: 1}, Pool: 10, Format: queryLogLabelled, Seed: 1, Model: "sim-1", APIKey: "sk-replay", Timeout: 10 * time.Second}
	var progress bytes.Buffer
	if _, err := runLoad(context.Background(), o, newLoopbackClient(o.Timeout, o.Concurrency), &progress); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(progress.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "load: 500/1000 requests, ") || !strings.HasPrefix(lines[1], "load: 1000/1000 requests, 990 hits, 0 errors, ") {
		t.Errorf("progress:\n%s", progress.String())
	}
}
