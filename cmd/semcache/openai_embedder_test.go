package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeEmbeddings is an OpenAI-compatible /v1/embeddings server on loopback
// that records the body of every request. It answers vectors of the
// length in the request's "dimensions" field when honour is set and it is
// there, else of native length; refuse, when set, answers every request
// with that status and an OpenAI error body instead.
type fakeEmbeddings struct {
	native int
	honour bool
	refuse int

	mu     sync.Mutex
	bodies []map[string]json.RawMessage // guarded by mu
}

func startFakeEmbeddings(t *testing.T, f *fakeEmbeddings) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL + "/v1"
}

func (f *fakeEmbeddings) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if r.URL.Path != "/v1/embeddings" || json.NewDecoder(r.Body).Decode(&body) != nil {
		http.Error(w, "want a JSON POST to /v1/embeddings", http.StatusNotFound)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if f.refuse != 0 {
		w.WriteHeader(f.refuse)
		io.WriteString(w, `{"error":{"message":"This model does not support specifying dimensions.","type":"invalid_request_error"}}`)
		return
	}
	n := f.native
	if d, ok := body["dimensions"]; ok && f.honour {
		n, _ = strconv.Atoi(string(d))
	}
	var input []string
	_ = json.Unmarshal(body["input"], &input)
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	resp := struct {
		Object string `json:"object"`
		Data   []item `json:"data"`
	}{Object: "list"}
	for i, text := range input {
		h := fnv.New32a()
		h.Write([]byte(text))
		v := make([]float32, n)
		for j := range v {
			v[j] = float32(1 + (h.Sum32()>>(j%16))%7)
		}
		resp.Data = append(resp.Data, item{"embedding", i, v})
	}
	json.NewEncoder(w).Encode(resp)
}

// requests returns the bodies received so far.
func (f *fakeEmbeddings) requests() []map[string]json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]json.RawMessage(nil), f.bodies...)
}

// openaiArgs are serve's flags for the openai embedder at url.
func openaiArgs(url string, extra ...string) []string {
	return append([]string{"--listen", "127.0.0.1:0", "--sim-latency", "0s", "--sim-per-token-latency", "0s",
		"--embedder", "openai", "--embedder-url", url, "--embedder-model", "text-embedding-ada-002", "--threshold", "0.9"}, extra...)
}

// chatTwice sends one prompt twice through the proxy at base and returns
// the cache statistics afterwards.
func chatTwice(t *testing.T, base string) (statuses []string, stats map[string]any) {
	t.Helper()
	body := `{"model":"sim-1","messages":[{"role":"user","content":"What are your opening hours?"}]}`
	for range 2 {
		resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("chat: status %d", resp.StatusCode)
		}
		statuses = append(statuses, resp.Header.Get("X-Semcache-Status"))
	}
	resp, err := http.Get(base + "/api/v1/cache/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatal(err)
	}
	return statuses, stats
}

// TestOpenAIEmbedderDimensions: "dimensions" is sent only when
// --embedder-dim is set (by flag or SEMCACHE_EMBEDDER_DIM); without it the
// start-up probe's length is the index's dimension, so prompts are embedded,
// stored and found without an error.
func TestOpenAIEmbedderDimensions(t *testing.T) {
	cases := []struct {
		name    string
		fake    *fakeEmbeddings
		args    []string
		env     map[string]string
		wantDim string // the "dimensions" every request must carry; "" for none
	}{
		{"unset: the model's native length, no dimensions field", &fakeEmbeddings{native: 12}, nil, nil, ""},
		{"flag: sent as dimensions", &fakeEmbeddings{native: 24, honour: true}, []string{"--embedder-dim", "12"}, nil, "12"},
		{"environment: sent as dimensions", &fakeEmbeddings{native: 24, honour: true}, nil, map[string]string{"SEMCACHE_EMBEDDER_DIM": "12"}, "12"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := tc.fake
			cfg, err := parseServe(openaiArgs(startFakeEmbeddings(t, fake), tc.args...), env(tc.env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			base, logs, stop := startServe(t, cfg)
			statuses, stats := chatTwice(t, base)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if statuses[0] != "MISS" || statuses[1] != "HIT" || stats["lookup_errors"] != 0.0 || stats["store_errors"] != 0.0 {
				t.Errorf("statuses %v, lookup_errors %v, store_errors %v; want MISS, HIT and no errors\n%s", statuses, stats["lookup_errors"], stats["store_errors"], logs)
			}
			reqs := fake.requests()
			if len(reqs) < 2 { // the probe and the prompt
				t.Fatalf("%d embeddings requests, want the probe and the prompt's", len(reqs))
			}
			for i, body := range reqs {
				if got := string(body["dimensions"]); got != tc.wantDim {
					t.Errorf("request %d: dimensions %q, want %q", i, got, tc.wantDim)
				}
			}
			if !strings.Contains(logs.String(), "embedder=openai:text-embedding-ada-002:12") {
				t.Errorf("the start log does not name the 12-dimensional space:\n%s", logs)
			}
		})
	}
}

// TestOpenAIEmbedderProbeStopsTheStart starts the proxy against embeddings
// servers whose answers contradict the settings: each stops the start with
// a *settingError (serve's exit code 2, TestServeUnusableSettingsExit2)
// naming the flag to change.
func TestOpenAIEmbedderProbeStopsTheStart(t *testing.T) {
	cases := []struct {
		name    string
		fake    *fakeEmbeddings
		args    []string
		mention []string
	}{
		{"dimensions ignored", &fakeEmbeddings{native: 12}, []string{"--embedder-dim", "1536"},
			[]string{"--embedder-dim 1536: ", "returned 12-dimensional vectors", "set --embedder-dim 12, or leave it unset"}},
		{"dimensions refused", &fakeEmbeddings{refuse: http.StatusBadRequest}, []string{"--embedder-dim", "1536"},
			[]string{"--embedder-dim 1536 (sent as dimensions", "refused the start-up probe", "does not support specifying dimensions"}},
		{"model refused", &fakeEmbeddings{refuse: http.StatusNotFound}, nil, []string{"--embedder-model text-embedding-ada-002: the embedder refused"}},
		{"key refused", &fakeEmbeddings{refuse: http.StatusUnauthorized}, nil, []string{"SEMCACHE_EMBEDDER_API_KEY: ", "(401)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := tc.fake
			cfg, err := parseServe(openaiArgs(startFakeEmbeddings(t, fake), tc.args...), env(nil), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			started := false
			err = runServe(ctx, cfg, slog.New(slog.DiscardHandler), func(string) { started = true; cancel() })
			var bad *settingError
			if started || !errors.As(err, &bad) {
				t.Fatalf("started %v, error %v; want the start stopped by a setting error", started, err)
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if len(fake.requests()) != 1 {
				t.Errorf("%d embeddings requests, want the one probe", len(fake.requests()))
			}
		})
	}
}

// TestOpenAIEmbedderUnreachableAtStart: with --embedder-dim the proxy starts
// when the embedder is down and answers from upstream (the semantic tier
// fails open); without it the dimension is unknown and the start fails with
// exit 1 naming --embedder-url.
func TestOpenAIEmbedderUnreachableAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/v1"
	ln.Close() // nothing listens there now: connections are refused

	cfg, err := parseServe(openaiArgs(down, "--embedder-dim", "12"), env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	base, logs, stop := startServe(t, cfg)
	statuses, stats := chatTwice(t, base)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if statuses[0] != "MISS" || stats["lookup_errors"] == 0.0 || !strings.Contains(logs.String(), "embedder unreachable at start-up") {
		t.Errorf("statuses %v, lookup_errors %v; want answers from upstream, counted fail-opens and a warning\n%s", statuses, stats["lookup_errors"], logs)
	}

	var stderr bytes.Buffer
	t.Setenv("SEMCACHE_LOG_FORMAT", "text")
	code := serve(context.Background(), openaiArgs(down), io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "--embedder-url "+down+": the embedder did not answer the start-up probe") ||
		!strings.Contains(stderr.String(), "set --embedder-dim") {
		t.Errorf("exit %d, stderr %q; want 1 and an error naming --embedder-url and --embedder-dim", code, stderr.String())
	}
}
