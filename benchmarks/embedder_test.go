package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/semcache/semcache/embedding"
)

// fakeEmbeddings is an OpenAI-compatible /v1/embeddings endpoint that
// answers with the vectors of a local embedder of the same dimension, so a
// run through it must measure exactly what a local run measures. It
// records the Authorization header and counts the texts it embeds.
type fakeEmbeddings struct {
	t   *testing.T
	ref *embedding.Local

	mu    sync.Mutex
	auth  map[string]bool // Authorization headers seen; guarded by mu
	texts int             // texts embedded; guarded by mu
}

func newFakeEmbeddings(t *testing.T, dim int) (*fakeEmbeddings, *httptest.Server) {
	t.Helper()
	ref, err := embedding.NewLocal(embedding.LocalConfig{Dim: dim})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeEmbeddings{t: t, ref: ref, auth: map[string]bool{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeEmbeddings) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/embeddings" {
		f.t.Errorf("request %s %s, want POST /v1/embeddings", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	var req struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.auth[r.Header.Get("Authorization")] = true
	f.texts += len(req.Input)
	f.mu.Unlock()
	vecs, err := f.ref.Embed(r.Context(), req.Input)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	data := make([]item, len(vecs))
	for i, v := range vecs {
		data[i] = item{Object: "embedding", Index: i, Embedding: v}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "model": req.Model, "data": data})
}

func TestTuneOpenAIEmbedderMatchesLocal(t *testing.T) {
	fake, srv := newFakeEmbeddings(t, 64)
	t.Setenv(embedderAPIKeyEnv, "sk-test")
	dir := t.TempDir()
	common := []string{"tune", "--format", "pairs", "--data", filepath.Join("testdata", "pairs.csv"), "--min", "0", "--step", "0.05"}
	run := func(args ...string) *TuneReport {
		t.Helper()
		out := filepath.Join(dir, strings.Join(args[:2], ""))
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), append(append(common, args...), "--out", out), &stdout, &stderr); code != 0 {
			t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
		}
		data, err := os.ReadFile(filepath.Join(out, "tune.json"))
		if err != nil {
			t.Fatal(err)
		}
		var rep TuneReport
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Fatal(err)
		}
		return &rep
	}
	remote := run("--embedder", "openai", "--embedder-url", srv.URL+"/v1", "--embedder-model", "fake-model", "--embedder-dim", "64")
	local := run("--embedder", "local", "--embedder-dim", "64")
	if remote.Embedder != "openai:fake-model:64" || !strings.HasPrefix(local.Embedder, "local:") {
		t.Errorf("fingerprints %q and %q", remote.Embedder, local.Embedder)
	}
	if !reflect.DeepEqual(remote.Rows, local.Rows) {
		t.Errorf("openai rows differ from local:\n got %s\nwant %s", rowsString(remote.Rows), rowsString(local.Rows))
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if !reflect.DeepEqual(fake.auth, map[string]bool{"Bearer sk-test": true}) {
		t.Errorf("Authorization headers %v, want only Bearer sk-test", fake.auth)
	}
	// 4 distinct question1s and 5 question2s, each embedded once.
	if fake.texts != 9 {
		t.Errorf("the server embedded %d texts, want 9", fake.texts)
	}
}

func TestTuneOpenAIEmbedderFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"message":"bad key","type":"invalid_request_error"}}`, http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	t.Setenv(embedderAPIKeyEnv, "sk-wrong")
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"tune", "--format", "pairs", "--data", filepath.Join("testdata", "pairs.csv"),
		"--embedder", "openai", "--embedder-url", srv.URL + "/v1", "--embedder-model", "m", "--embedder-dim", "8"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "embed warm set") || strings.Contains(stderr.String(), "sk-wrong") {
		t.Errorf("exit code %d, stderr %q; want 1, an embed error and no key", code, stderr.String())
	}
}

func TestNewEmbedder(t *testing.T) {
	tests := []struct {
		name            string
		opts            embedderOptions
		wantFingerprint string // "" when an error is expected
		wantErr         string
	}{
		{"local", embedderOptions{Name: "local", Dim: 32}, "local:", ""},
		{"openai behind a cache", embedderOptions{Name: "openai", Dim: 8, URL: "http://127.0.0.1:1/v1", Model: "m"}, "openai:m:8", ""},
		{"zero dimension", embedderOptions{Name: "local", Dim: 0}, "", "--embedder-dim must be > 0"},
		{"local with a model", embedderOptions{Name: "local", Dim: 8, Model: "m"}, "", "apply only to --embedder openai"},
		{"unknown", embedderOptions{Name: "word2vec", Dim: 8}, "", `--embedder "word2vec" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := newEmbedder(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(e.Fingerprint(), tt.wantFingerprint) {
				t.Errorf("fingerprint %q, want prefix %q", e.Fingerprint(), tt.wantFingerprint)
			}
			if tt.opts.Name == "openai" {
				if _, ok := e.(*embedding.Cached); !ok {
					t.Errorf("openai embedder is a %T, want *embedding.Cached", e)
				}
			}
		})
	}
}

func TestNewEmbedderTrained(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.sem")
	m := &embedding.Model{Params: embedding.ModelParams{Buckets: 64, Dim: 8}.WithDefaults()}
	if err := embedding.SaveModel(path, m, embedding.Int8Rows); err != nil {
		t.Fatal(err)
	}
	e, err := newEmbedder(embedderOptions{Name: "trained", Dim: 384, Model: path})
	if err != nil {
		t.Fatal(err)
	}
	if fp := e.Fingerprint(); !strings.HasPrefix(fp, "trained:") || !strings.HasSuffix(fp, ":8") {
		t.Errorf("fingerprint %q, want trained:...:8", fp)
	}
	for name, o := range map[string]embedderOptions{
		"no model file": {Name: "trained", Dim: 384},
		"with a URL":    {Name: "trained", Dim: 384, Model: path, URL: "http://127.0.0.1:1/v1"},
	} {
		if _, err := newEmbedder(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := newEmbedder(embedderOptions{Name: "trained", Dim: 384, Model: path + ".missing"}); err == nil {
		t.Error("missing model file: no error")
	}
}
