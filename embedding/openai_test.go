package embedding

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

const (
	testKey   = "sk-test-secret-key"
	testModel = "text-embedding-3-small"
	testDim   = 16
)

// fakeUpstream is an OpenAI /v1/embeddings endpoint. It checks each
// request, records its inputs and answers with reference vectors (from a
// Local embedder, scaled so the client must normalise them) listed in
// reverse order, so a client that trusts response order gets them wrong.
type fakeUpstream struct {
	t   *testing.T
	ref *Local

	// respond, if set, replaces the normal answer for batch number n.
	respond func(w http.ResponseWriter, n int, input []string) bool

	mu       sync.Mutex
	requests []embeddingsRequest // guarded by mu
}

type embeddingsRequest struct {
	Model      string   `json:"model"`
	Input      []string `json:"input"`
	Dimensions int      `json:"dimensions"`
	Auth       string   `json:"-"`
	// Fields holds every top-level field of the body, to tell a field
	// that was left out from one sent as 0.
	Fields map[string]json.RawMessage `json:"-"`
}

func newFakeUpstream(t *testing.T) (*fakeUpstream, *httptest.Server) {
	t.Helper()
	f := &fakeUpstream{t: t, ref: newLocal(t, LocalConfig{Dim: testDim})}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/embeddings" {
		f.t.Errorf("request %s %s, want POST /v1/embeddings", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	var req embeddingsRequest
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err == nil {
		err = json.Unmarshal(body, &req.Fields)
	}
	if err != nil {
		f.t.Errorf("decode request: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.Auth = r.Header.Get("Authorization")
	f.mu.Lock()
	n := len(f.requests)
	f.requests = append(f.requests, req)
	f.mu.Unlock()

	if f.respond != nil && f.respond(w, n, req.Input) {
		return
	}
	vecs, err := f.ref.Embed(r.Context(), req.Input)
	if err != nil {
		f.t.Errorf("reference embed: %v", err)
	}
	var data []openai.Embedding
	for i := len(vecs) - 1; i >= 0; i-- {
		scaled := make([]float32, len(vecs[i]))
		for j, x := range vecs[i] {
			scaled[j] = 2.5 * x
		}
		data = append(data, openai.Embedding{Object: "embedding", Embedding: scaled, Index: i})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "model": req.Model, "data": data})
}

func (f *fakeUpstream) recorded() []embeddingsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newOpenAI(t *testing.T, srv *httptest.Server, cfg OpenAIConfig) *OpenAI {
	t.Helper()
	cfg.BaseURL = srv.URL + "/v1"
	if cfg.Model == "" {
		cfg.Model = testModel
	}
	if cfg.Dim == 0 {
		cfg.Dim = testDim
	}
	cfg.HTTPClient = srv.Client()
	o, err := NewOpenAI(cfg)
	if err != nil {
		t.Fatalf("NewOpenAI: %v", err)
	}
	return o
}

func TestNewOpenAI(t *testing.T) {
	valid := OpenAIConfig{BaseURL: "https://api.openai.com/v1", Model: testModel, Dim: 1536}
	tests := []struct {
		name    string
		edit    func(*OpenAIConfig)
		wantErr bool
	}{
		{name: "valid", edit: func(*OpenAIConfig) {}},
		{name: "empty key is allowed", edit: func(c *OpenAIConfig) { c.APIKey = "" }},
		{name: "missing base URL", edit: func(c *OpenAIConfig) { c.BaseURL = "" }, wantErr: true},
		{name: "relative base URL", edit: func(c *OpenAIConfig) { c.BaseURL = "api.openai.com/v1" }, wantErr: true},
		{name: "non-http base URL", edit: func(c *OpenAIConfig) { c.BaseURL = "ftp://example.com" }, wantErr: true},
		{name: "missing model", edit: func(c *OpenAIConfig) { c.Model = "" }, wantErr: true},
		{name: "missing dim", edit: func(c *OpenAIConfig) { c.Dim = 0 }, wantErr: true},
		{name: "negative timeout", edit: func(c *OpenAIConfig) { c.Timeout = -time.Second }, wantErr: true},
		{name: "negative batch size", edit: func(c *OpenAIConfig) { c.BatchSize = -1 }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.edit(&cfg)
			o, err := NewOpenAI(cfg)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewOpenAI(%+v) succeeded, want error", cfg)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewOpenAI: %v", err)
			}
			if o.Dim() != 1536 || o.Fingerprint() != "openai:text-embedding-3-small:1536" {
				t.Errorf("Dim() = %d, Fingerprint() = %q", o.Dim(), o.Fingerprint())
			}
		})
	}
}

func TestOpenAIEmbed(t *testing.T) {
	tests := []struct {
		name           string
		apiKey         string
		sendDimensions bool
		wantAuth       string
		wantDimensions int
	}{
		{name: "with key", apiKey: testKey, wantAuth: "Bearer " + testKey},
		{name: "without key", apiKey: "", wantAuth: ""},
		{name: "send dimensions", apiKey: testKey, sendDimensions: true, wantAuth: "Bearer " + testKey, wantDimensions: testDim},
	}
	texts := []string{"How do I reset my password?", "What is the weather in Paris?", "Grüße aus Köln"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newFakeUpstream(t)
			o := newOpenAI(t, srv, OpenAIConfig{APIKey: tt.apiKey, SendDimensions: tt.sendDimensions})

			got := embedAll(t, o, texts...)
			want := embedAll(t, fake.ref, texts...)
			for i := range texts {
				assertUnit(t, got[i])
				assertClose(t, got[i], want[i], 1e-6)
			}

			reqs := fake.recorded()
			if len(reqs) != 1 {
				t.Fatalf("%d upstream requests, want 1", len(reqs))
			}
			req := reqs[0]
			if req.Model != testModel {
				t.Errorf("model = %q, want %q", req.Model, testModel)
			}
			if !slices.Equal(req.Input, texts) {
				t.Errorf("input = %q, want %q", req.Input, texts)
			}
			if req.Auth != tt.wantAuth {
				t.Errorf("Authorization = %q, want %q", req.Auth, tt.wantAuth)
			}
			if req.Dimensions != tt.wantDimensions {
				t.Errorf("dimensions = %d, want %d", req.Dimensions, tt.wantDimensions)
			}
			if _, sent := req.Fields["dimensions"]; sent != tt.sendDimensions {
				t.Errorf("dimensions field sent: %v, want %v (body fields %v)", sent, tt.sendDimensions, slices.Sorted(maps.Keys(req.Fields)))
			}
		})
	}
}

func TestOpenAIBatching(t *testing.T) {
	tests := []struct {
		name        string
		batchSize   int
		n           int
		wantBatches []int
	}{
		{name: "5 texts in batches of 2", batchSize: 2, n: 5, wantBatches: []int{2, 2, 1}},
		{name: "exact multiple", batchSize: 2, n: 4, wantBatches: []int{2, 2}},
		{name: "default batch size", batchSize: 0, n: 300, wantBatches: []int{256, 44}},
		{name: "no texts, no call", batchSize: 2, n: 0, wantBatches: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newFakeUpstream(t)
			o := newOpenAI(t, srv, OpenAIConfig{BatchSize: tt.batchSize})
			texts := make([]string, tt.n)
			for i := range texts {
				texts[i] = fmt.Sprintf("text number %d", i)
			}
			got := embedAll(t, o, texts...)
			want := embedAll(t, fake.ref, texts...)
			for i := range texts {
				assertClose(t, got[i], want[i], 1e-6)
			}
			var sizes []int
			var sent []string
			for _, r := range fake.recorded() {
				sizes = append(sizes, len(r.Input))
				sent = append(sent, r.Input...)
			}
			if !slices.Equal(sizes, tt.wantBatches) {
				t.Errorf("batch sizes = %v, want %v", sizes, tt.wantBatches)
			}
			if !slices.Equal(sent, texts) {
				t.Errorf("texts sent out of order or incomplete")
			}
		})
	}
}

func TestOpenAIErrors(t *testing.T) {
	vec := func(n int, x float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = x
		}
		return v
	}
	answer := func(data ...openai.Embedding) func(http.ResponseWriter, int, []string) bool {
		return func(w http.ResponseWriter, _ int, _ []string) bool {
			writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
			return true
		}
	}
	tests := []struct {
		name    string
		respond func(w http.ResponseWriter, n int, input []string) bool
		check   func(t *testing.T, err error)
	}{
		{
			name:    "wrong dimension",
			respond: answer(openai.Embedding{Embedding: vec(testDim+1, 1), Index: 0}, openai.Embedding{Embedding: vec(testDim, 1), Index: 1}),
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrDimension) {
					t.Errorf("err = %v, want ErrDimension", err)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("got %d, want %d", testDim+1, testDim)) {
					t.Errorf("err = %q, want it to name both lengths", err)
				}
			},
		},
		{
			name:    "too few vectors",
			respond: answer(openai.Embedding{Embedding: vec(testDim, 1), Index: 0}),
			check:   wantIs(ErrBadResponse),
		},
		{
			name:    "duplicate index",
			respond: answer(openai.Embedding{Embedding: vec(testDim, 1), Index: 0}, openai.Embedding{Embedding: vec(testDim, 1), Index: 0}),
			check:   wantIs(ErrBadResponse),
		},
		{
			name:    "index out of range",
			respond: answer(openai.Embedding{Embedding: vec(testDim, 1), Index: 0}, openai.Embedding{Embedding: vec(testDim, 1), Index: 2}),
			check:   wantIs(ErrBadResponse),
		},
		{
			name:    "zero vector",
			respond: answer(openai.Embedding{Embedding: vec(testDim, 0), Index: 0}, openai.Embedding{Embedding: vec(testDim, 1), Index: 1}),
			check:   wantIs(ErrBadResponse),
		},
		{
			name: "upstream 500",
			respond: func(w http.ResponseWriter, _ int, _ []string) bool {
				writeJSON(w, http.StatusInternalServerError, map[string]any{
					"error": map[string]any{"message": "the server had an error", "type": "server_error"},
				})
				return true
			},
			check: func(t *testing.T, err error) {
				var apiErr *openai.APIError
				if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != http.StatusInternalServerError {
					t.Fatalf("err = %v, want a wrapped *openai.APIError with status 500", err)
				}
				if !strings.HasPrefix(err.Error(), "embed batch 0: ") {
					t.Errorf("err = %q, want prefix %q", err, "embed batch 0: ")
				}
			},
		},
		{
			name: "second batch fails",
			respond: func(w http.ResponseWriter, n int, _ []string) bool {
				if n == 0 {
					return false
				}
				http.Error(w, "bad gateway", http.StatusBadGateway)
				return true
			},
			check: func(t *testing.T, err error) {
				if !strings.HasPrefix(err.Error(), "embed batch 1: ") {
					t.Errorf("err = %q, want prefix %q", err, "embed batch 1: ")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newFakeUpstream(t)
			fake.respond = tt.respond
			o := newOpenAI(t, srv, OpenAIConfig{APIKey: testKey, BatchSize: 2})
			got, err := o.Embed(context.Background(), []string{"a", "b", "c"})
			if err == nil {
				t.Fatalf("Embed succeeded with %d vectors, want error", len(got))
			}
			if got != nil {
				t.Errorf("Embed returned a partial result alongside %v", err)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error %q leaks the API key", err)
			}
			tt.check(t, err)
		})
	}
}

func wantIs(target error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("err = %v, want errors.Is(err, %v)", err, target)
		}
	}
}

func TestOpenAITimeout(t *testing.T) {
	fake, srv := newFakeUpstream(t)
	release := make(chan struct{})
	defer close(release)
	fake.respond = func(w http.ResponseWriter, _ int, _ []string) bool {
		<-release // never answers while the client waits
		return true
	}
	// The per-call Timeout ends the call; the test does not measure time.
	o := newOpenAI(t, srv, OpenAIConfig{Timeout: time.Millisecond})
	_, err := o.Embed(context.Background(), []string{"a"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

// TestProbeOpenAIDim: the probe reports the length the server returns, sends
// "dimensions" only with SendDimensions, and its errors say whether the
// server refused the request (HTTPStatus) or could not be reached.
func TestProbeOpenAIDim(t *testing.T) {
	fake, srv := newFakeUpstream(t) // answers testDim-long vectors whatever "dimensions" says
	cfg := OpenAIConfig{BaseURL: srv.URL + "/v1", Model: testModel, HTTPClient: srv.Client()}
	n, err := ProbeOpenAIDim(context.Background(), cfg)
	if err != nil || n != testDim {
		t.Fatalf("probe without Dim: %d, %v; want %d", n, err, testDim)
	}
	withDim := cfg
	withDim.Dim, withDim.SendDimensions = 8, true
	if n, err := ProbeOpenAIDim(context.Background(), withDim); err != nil || n != testDim {
		t.Fatalf("probe with dimensions 8: %d, %v; want the %d the server returned", n, err, testDim)
	}
	reqs := fake.recorded()
	if len(reqs) != 2 || len(reqs[0].Input) != 1 {
		t.Fatalf("requests %+v, want two of one text each", reqs)
	}
	if _, sent := reqs[0].Fields["dimensions"]; sent {
		t.Errorf("probe without SendDimensions sent dimensions: %v", reqs[0].Fields)
	}
	if reqs[1].Dimensions != 8 {
		t.Errorf("probe with SendDimensions sent dimensions %d, want 8", reqs[1].Dimensions)
	}

	fake.respond = func(w http.ResponseWriter, n int, _ []string) bool {
		if n == 2 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": "This model does not support specifying dimensions.", "type": "invalid_request_error"}})
		} else {
			writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{}})
		}
		return true
	}
	if _, err := ProbeOpenAIDim(context.Background(), withDim); HTTPStatus(err) != http.StatusBadRequest {
		t.Errorf("refused probe: %v, HTTPStatus %d; want 400", err, HTTPStatus(err))
	}
	if _, err := ProbeOpenAIDim(context.Background(), cfg); !errors.Is(err, ErrBadResponse) || HTTPStatus(err) != 0 {
		t.Errorf("probe answered with no vector: %v; want ErrBadResponse and no HTTP status", err)
	}
	srv.Close()
	if _, err := ProbeOpenAIDim(context.Background(), cfg); err == nil || HTTPStatus(err) != 0 {
		t.Errorf("probe of a closed server: %v, HTTPStatus %d; want an error without a status", err, HTTPStatus(err))
	}
}
