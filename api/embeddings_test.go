package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/api/sim"
)

// embCall is one call the fake embeddings API received.
type embCall struct {
	// inputs is the request's input.
	inputs []string
	// vectors maps each input to the embedding JSON value answered for it.
	vectors map[string]string
	// usage is the answer's usage, raw.
	usage string
}

// embUpstream is a counting fake embeddings API: h (the simulator when nil)
// behind a real HTTP server, recording every POST /v1/embeddings and its
// answer.
type embUpstream struct {
	*upstream
	mu    sync.Mutex
	calls []embCall
}

func newEmbUpstream(t *testing.T, h http.Handler) *embUpstream {
	t.Helper()
	if h == nil {
		h = sim.New(sim.Config{})
	}
	e := &embUpstream{}
	e.upstream = newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/embeddings" {
			h.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Input []string `json:"input"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			t.Errorf("upstream got input that is not an array of strings: %s", body)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		call := embCall{inputs: req.Input, vectors: map[string]string{}}
		var ans struct {
			Data []struct {
				Index     int             `json:"index"`
				Embedding json.RawMessage `json:"embedding"`
			} `json:"data"`
			Usage json.RawMessage `json:"usage"`
		}
		if rec.Code == 200 && json.Unmarshal(rec.Body.Bytes(), &ans) == nil {
			for _, d := range ans.Data {
				if d.Index >= 0 && d.Index < len(req.Input) {
					call.vectors[req.Input[d.Index]] = string(d.Embedding)
				}
			}
			call.usage = string(ans.Usage)
		}
		e.mu.Lock()
		e.calls = append(e.calls, call)
		e.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	return e
}

// embCalls returns the calls received so far.
func (e *embUpstream) embCalls() []embCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]embCall(nil), e.calls...)
}

// embList is an embeddings response.
type embList struct {
	Object string `json:"object"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Model string          `json:"model"`
	Usage json.RawMessage `json:"usage"`
}

// embed posts an embeddings request with the API key (none when empty).
func (p *proxy) embed(t *testing.T, key, body string) reply {
	t.Helper()
	return p.do(t, http.MethodPost, "/v1/embeddings", key, body)
}

// embeddings decodes a 200 embeddings reply and checks the cache headers.
func (r reply) embeddings(t *testing.T, status, cached string) embList {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d, want 200: %s", r.status, r.body)
	}
	if r.semStatus() != status || r.header.Get(api.HeaderCached) != cached {
		t.Errorf("%s %s %q, want %s %s %q", api.HeaderStatus, r.semStatus(), r.header.Get(api.HeaderCached), status, api.HeaderCached, cached)
	}
	var l embList
	if err := json.Unmarshal(r.body, &l); err != nil || l.Object != "list" {
		t.Fatalf("not an embeddings list (%v): %s", err, r.body)
	}
	for i, d := range l.Data {
		if d.Object != "embedding" || d.Index != i {
			t.Errorf("data[%d]: object %q index %d, want embedding %d", i, d.Object, d.Index, i)
		}
	}
	return l
}

// wantVectors checks that l's embeddings are want, in order, byte for byte.
func (l embList) wantVectors(t *testing.T, want ...string) {
	t.Helper()
	if len(l.Data) != len(want) {
		t.Fatalf("%d data items, want %d", len(l.Data), len(want))
	}
	for i, w := range want {
		if got := string(l.Data[i].Embedding); got != w || w == "" {
			t.Errorf("data[%d].embedding = %s, want %s", i, got, w)
		}
	}
}

func embReq(model, extra string, inputs ...string) string {
	in, _ := json.Marshal(inputs)
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Sprintf(`{"model":%q,"input":%s%s}`, model, in, extra)
}

func TestEmbeddingsBatchSendsOnlyMissingInputs(t *testing.T) {
	forEachBackend(t, testEmbeddingsBatchSendsOnlyMissingInputs)
}

func testEmbeddingsBatchSendsOnlyMissingInputs(t *testing.T) {
	up := newEmbUpstream(t, nil)
	p := newProxy(t, up.upstream, nil)

	first := p.embed(t, "sk-a", embReq("emb-1", "", "a", "b")).embeddings(t, "MISS", "0/2")
	second := p.embed(t, "sk-a", embReq("emb-1", "", "b", "c", "a")).embeddings(t, "PARTIAL", "2/3")
	calls := up.embCalls()
	if len(calls) != 2 || fmt.Sprint(calls[0].inputs) != "[a b]" || fmt.Sprint(calls[1].inputs) != "[c]" {
		t.Fatalf("upstream calls %+v, want [a b] then [c] alone", calls)
	}
	first.wantVectors(t, calls[0].vectors["a"], calls[0].vectors["b"])
	// Each input its own vector, in request order: b and a from the first
	// call, c from the second.
	second.wantVectors(t, calls[0].vectors["b"], calls[1].vectors["c"], calls[0].vectors["a"])
	if string(second.Usage) != calls[1].usage || string(first.Usage) != calls[0].usage {
		t.Errorf("usage %s then %s, want the upstream's %s then %s", first.Usage, second.Usage, calls[0].usage, calls[1].usage)
	}
	if second.Model != "emb-1" {
		t.Errorf("model %q", second.Model)
	}

	hit := p.embed(t, "sk-a", embReq("emb-1", "", "c", "a", "b")).embeddings(t, "HIT", "3/3")
	hit.wantVectors(t, calls[1].vectors["c"], calls[0].vectors["a"], calls[0].vectors["b"])
	if string(hit.Usage) != `{"prompt_tokens":0,"total_tokens":0}` || hit.Model != "emb-1" {
		t.Errorf("hit: usage %s model %q, want zero usage and the request's model", hit.Usage, hit.Model)
	}
	if n := len(up.embCalls()); n != 2 {
		t.Errorf("upstream calls = %d, want 2", n)
	}
}

func TestEmbeddingsSingleString(t *testing.T) { forEachBackend(t, testEmbeddingsSingleString) }

func testEmbeddingsSingleString(t *testing.T) {
	up := newEmbUpstream(t, nil)
	p := newProxy(t, up.upstream, nil)
	body := `{"model":"emb-1","input":"The quick brown fox"}`
	miss := p.embed(t, "sk-a", body).embeddings(t, "MISS", "0/1")
	calls := up.embCalls()
	if len(calls) != 1 || len(calls[0].inputs) != 1 {
		t.Fatalf("upstream calls %+v", calls)
	}
	want := calls[0].vectors["The quick brown fox"]
	miss.wantVectors(t, want)
	// The same text as a one-element array is the same entry.
	p.embed(t, "sk-a", embReq("emb-1", "", "The quick brown fox")).embeddings(t, "HIT", "1/1").wantVectors(t, want)
	p.embed(t, "sk-a", body).embeddings(t, "HIT", "1/1").wantVectors(t, want)
	if n := len(up.embCalls()); n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
}

func TestEmbeddingsDuplicatesGoUpstreamOnce(t *testing.T) {
	forEachBackend(t, testEmbeddingsDuplicatesGoUpstreamOnce)
}

func testEmbeddingsDuplicatesGoUpstreamOnce(t *testing.T) {
	up := newEmbUpstream(t, nil)
	p := newProxy(t, up.upstream, nil)
	l := p.embed(t, "sk-a", embReq("emb-1", "", "a", "b", "a", "a")).embeddings(t, "MISS", "0/4")
	calls := up.embCalls()
	if len(calls) != 1 || fmt.Sprint(calls[0].inputs) != "[a b]" {
		t.Fatalf("upstream calls %+v, want one with [a b]", calls)
	}
	va, vb := calls[0].vectors["a"], calls[0].vectors["b"]
	l.wantVectors(t, va, vb, va, va)

	l = p.embed(t, "sk-a", embReq("emb-1", "", "c", "a", "c")).embeddings(t, "PARTIAL", "1/3")
	calls = up.embCalls()
	if len(calls) != 2 || fmt.Sprint(calls[1].inputs) != "[c]" {
		t.Fatalf("upstream calls %+v, want a second with [c]", calls)
	}
	vc := calls[1].vectors["c"]
	l.wantVectors(t, vc, va, vc)
}

func TestEmbeddingsBadInput(t *testing.T) { forEachBackend(t, testEmbeddingsBadInput) }

func testEmbeddingsBadInput(t *testing.T) {
	cases := []struct {
		name, body string
		status     int
		code       string
		mentions   string
	}{
		{"token array", `{"model":"m","input":[1,2,3]}`, 400, "unsupported_input", "input"},
		{"token arrays", `{"model":"m","input":[[1,2],[3,4]]}`, 400, "unsupported_input", "input"},
		{"malformed JSON", `{"model":"m","input":[`, 400, "invalid_request", "JSON"},
		{"no input", `{"model":"m"}`, 400, "invalid_request", "input"},
		{"empty string", `{"model":"m","input":""}`, 400, "invalid_request", "input"},
		{"empty array", `{"model":"m","input":[]}`, 400, "invalid_request", "input"},
		{"empty string in array", `{"model":"m","input":["a",""]}`, 400, "invalid_request", "input[1]"},
		{"mixed types", `{"model":"m","input":["a",{"b":1}]}`, 400, "invalid_request", "input[1]"},
		{"number", `{"model":"m","input":42}`, 400, "invalid_request", "input"},
		{"no model", `{"input":"a"}`, 400, "invalid_request", "model"},
		{"dimensions a string", `{"model":"m","input":"a","dimensions":"8"}`, 400, "invalid_request", "dimensions"},
		{"too large", embReq("m", "", strings.Repeat("x", 2048)), 413, "request_too_large", "exceeds"},
	}
	up := newEmbUpstream(t, nil)
	p := newProxy(t, up.upstream, func(c *api.Config) { c.MaxBodyBytes = 1024 })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := p.embed(t, "sk-a", tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Type != "invalid_request_error" || e.Error.Code == nil {
				t.Fatalf("not the OpenAI error shape: %s", r.body)
			}
			if *e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.mentions) {
				t.Errorf("code %q message %q, want code %q and a message naming %q", *e.Error.Code, e.Error.Message, tc.code, tc.mentions)
			}
		})
	}
	if n := len(up.embCalls()); n != 0 {
		t.Errorf("upstream calls = %d, want 0", n)
	}
	if n, _ := p.cache.Len(t.Context()); n != 0 {
		t.Errorf("entries = %d, want 0", n)
	}
}

// TestEmbeddingsScopeIsolation warms one input, then sends variants that
// must not be served its vector: each differs in something that changes the
// vector or who may see it.
func TestEmbeddingsScopeIsolation(t *testing.T) { forEachBackend(t, testEmbeddingsScopeIsolation) }

func testEmbeddingsScopeIsolation(t *testing.T) {
	warm := embReq("emb-1", `"dimensions":16`, "a")
	cases := []struct{ name, key, body string }{
		{"other model", "sk-a", embReq("emb-2", `"dimensions":16`, "a")},
		{"other dimensions", "sk-a", embReq("emb-1", `"dimensions":32`, "a")},
		{"no dimensions", "sk-a", embReq("emb-1", "", "a")},
		{"base64", "sk-a", embReq("emb-1", `"dimensions":16,"encoding_format":"base64"`, "a")},
		{"user", "sk-a", embReq("emb-1", `"dimensions":16,"user":"u-1"`, "a")},
		{"unknown field", "sk-a", embReq("emb-1", `"dimensions":16,"x_truncate":"END"`, "a")},
		{"other API key", "sk-b", warm},
		{"no API key", "", warm},
	}
	up := newEmbUpstream(t, nil)
	p := newProxy(t, up.upstream, nil)
	p.embed(t, "sk-a", warm).embeddings(t, "MISS", "0/1")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.embCalls())
			p.embed(t, tc.key, tc.body).embeddings(t, "MISS", "0/1")
			if n := len(up.embCalls()); n != before+1 {
				t.Errorf("upstream calls %d, want %d", n, before+1)
			}
		})
	}
	p.embed(t, "sk-a", warm).embeddings(t, "HIT", "1/1")
}

func TestEmbeddingsUpstreamErrorsPassThrough(t *testing.T) {
	forEachBackend(t, testEmbeddingsUpstreamErrorsPassThrough)
}

func testEmbeddingsUpstreamErrorsPassThrough(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusTooManyRequests, http.StatusBadRequest} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			var mu sync.Mutex
			failing := false
			s := sim.New(sim.Config{})
			errBody := fmt.Sprintf(`{"error":{"message":"upstream says %d","type":"x","code":"y"}}`, status)
			up := newEmbUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				f := failing
				mu.Unlock()
				if !f {
					s.ServeHTTP(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Request-Id", "req-9")
				w.WriteHeader(status)
				io.WriteString(w, errBody)
			}))
			p := newProxy(t, up.upstream, nil)
			p.embed(t, "sk-a", embReq("emb-1", "", "a")).embeddings(t, "MISS", "0/1")
			mu.Lock()
			failing = true
			mu.Unlock()
			for i, want := range []struct{ status, cached string }{{"PARTIAL", "1/2"}, {"PARTIAL", "1/2"}} {
				r := p.embed(t, "sk-a", embReq("emb-1", "", "a", "b"))
				if r.status != status || string(r.body) != errBody || r.header.Get("X-Request-Id") != "req-9" {
					t.Fatalf("call %d: %d %s (X-Request-Id %q), want the upstream's %d %s", i, r.status, r.body, r.header.Get("X-Request-Id"), status, errBody)
				}
				if r.semStatus() != want.status || r.header.Get(api.HeaderCached) != want.cached {
					t.Errorf("call %d: %s %s, want %s %s", i, r.semStatus(), r.header.Get(api.HeaderCached), want.status, want.cached)
				}
			}
			if n := len(up.embCalls()); n != 3 {
				t.Errorf("upstream calls = %d, want 3 (errors must not be cached)", n)
			}
			// Nothing of the failed calls was stored: b is still a miss.
			// (Checked by behaviour: the Redis store's Len counts only
			// entries with a vector.)
			mu.Lock()
			failing = false
			mu.Unlock()
			p.embed(t, "sk-a", embReq("emb-1", "", "a", "b")).embeddings(t, "PARTIAL", "1/2")
		})
	}
}

func TestEmbeddingsBadUpstreamAnswerIs502(t *testing.T) {
	forEachBackend(t, testEmbeddingsBadUpstreamAnswerIs502)
}

func testEmbeddingsBadUpstreamAnswerIs502(t *testing.T) {
	cases := []struct{ name, body string }{
		{"too few items", `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}]}`},
		{"too many items", `{"object":"list","data":[{"index":0,"embedding":[0.1]},{"index":1,"embedding":[0.2]},{"index":2,"embedding":[0.3]}]}`},
		{"index repeated", `{"object":"list","data":[{"index":0,"embedding":[0.1]},{"index":0,"embedding":[0.2]}]}`},
		{"index out of range", `{"object":"list","data":[{"index":1,"embedding":[0.1]},{"index":2,"embedding":[0.2]}]}`},
		{"no embedding", `{"object":"list","data":[{"index":0,"embedding":[0.1]},{"index":1}]}`},
		{"not JSON", `<html>bad gateway</html>`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			s := sim.New(sim.Config{})
			up := newEmbUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) > 1 { // a good answer from the second call on
					s.ServeHTTP(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, tc.body)
			}))
			p := newProxy(t, up.upstream, nil)
			r := p.embed(t, "sk-a", embReq("emb-1", "", "a", "b"))
			if r.status != http.StatusBadGateway || !strings.Contains(string(r.body), `"code":"upstream_bad_response"`) {
				t.Errorf("%d %s, want 502 upstream_bad_response", r.status, r.body)
			}
			// Nothing of the bad answer was stored.
			p.embed(t, "sk-a", embReq("emb-1", "", "a", "b")).embeddings(t, "MISS", "0/2")
		})
	}
}

// TestEmbeddingsValuesByteForByte checks that an embedding is served, fresh
// and from the cache, exactly as the upstream wrote it: base64 strings
// (escapes included) and float arrays (number spelling and spacing
// included).
func TestEmbeddingsValuesByteForByte(t *testing.T) {
	forEachBackend(t, testEmbeddingsValuesByteForByte)
}

func testEmbeddingsValuesByteForByte(t *testing.T) {
	cases := []struct {
		name, format string
		vectors      map[string]string
	}{
		{"base64", "base64", map[string]string{"a": `"AAD/+wAAgD8="`, "b": `"zczMPQ\/+gL8="`}},
		{"float", "float", map[string]string{"a": "[1.0E-3, -0.50000, 2e+00]", "b": "[\n  0.1,\n  0.2\n]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := newEmbUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req struct {
					Input          []string `json:"input"`
					EncodingFormat string   `json:"encoding_format"`
				}
				_ = json.NewDecoder(r.Body).Decode(&req)
				if req.EncodingFormat != tc.format {
					t.Errorf("upstream got encoding_format %q, want %q", req.EncodingFormat, tc.format)
				}
				var items []string
				for i, in := range req.Input {
					items = append(items, fmt.Sprintf(`{"object": "embedding", "index": %d, "embedding": %s}`, i, tc.vectors[in]))
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"object":"list","data":[%s],"model":"emb-1-v2","usage":{"prompt_tokens":%d,"total_tokens":%d}}`,
					strings.Join(items, ", "), len(items), len(items))
			}))
			p := newProxy(t, up.upstream, nil)
			extra := fmt.Sprintf(`"encoding_format":%q`, tc.format)
			miss := p.embed(t, "sk-a", embReq("emb-1", extra, "a")).embeddings(t, "MISS", "0/1")
			miss.wantVectors(t, tc.vectors["a"])
			if miss.Model != "emb-1-v2" {
				t.Errorf("model %q, want the upstream's", miss.Model)
			}
			p.embed(t, "sk-a", embReq("emb-1", extra, "b", "a")).embeddings(t, "PARTIAL", "1/2").wantVectors(t, tc.vectors["b"], tc.vectors["a"])
			p.embed(t, "sk-a", embReq("emb-1", extra, "a", "b")).embeddings(t, "HIT", "2/2").wantVectors(t, tc.vectors["a"], tc.vectors["b"])
		})
	}
}

func TestEmbeddingsAuthorization(t *testing.T) { forEachBackend(t, testEmbeddingsAuthorization) }

func testEmbeddingsAuthorization(t *testing.T) {
	t.Run("client key passed through", func(t *testing.T) {
		up := newEmbUpstream(t, nil)
		p := newProxy(t, up.upstream, nil)
		p.embed(t, "sk-client", embReq("emb-1", "", "a")).embeddings(t, "MISS", "0/1")
		if got := up.auth(); got != "Bearer sk-client" {
			t.Errorf("upstream saw Authorization %q", got)
		}
	})
	t.Run("upstream key replaces it", func(t *testing.T) {
		up := newEmbUpstream(t, nil)
		p := newProxy(t, up.upstream, func(c *api.Config) { c.UpstreamAPIKey = "sk-server" })
		p.embed(t, "sk-client", embReq("emb-1", "", "a")).embeddings(t, "MISS", "0/1")
		if got := up.auth(); got != "Bearer sk-server" {
			t.Errorf("upstream saw Authorization %q", got)
		}
	})
}

func TestEmbeddingsCacheDisabledIsPassThrough(t *testing.T) {
	up := newEmbUpstream(t, nil)
	p := newProxy(t, up.upstream, func(c *api.Config) { c.CacheDisabled = true })
	for i := 0; i < 2; i++ {
		r := p.embed(t, "sk-a", embReq("emb-1", "", "a", "a"))
		if r.status != 200 || r.semStatus() != "BYPASS" {
			t.Fatalf("%d %s, want 200 BYPASS", r.status, r.semStatus())
		}
	}
	calls := up.embCalls()
	if len(calls) != 2 || fmt.Sprint(calls[0].inputs) != "[a a]" {
		t.Errorf("upstream calls %+v, want the requests unchanged, twice", calls)
	}
}

func TestEmbeddingsUpstreamUnreachable(t *testing.T) {
	up := newEmbUpstream(t, nil)
	p := newProxy(t, up.upstream, nil)
	up.srv.Close()
	r := p.embed(t, "sk-a", embReq("emb-1", "", "a"))
	if r.status != http.StatusBadGateway || !strings.Contains(string(r.body), `"type":"upstream_error"`) {
		t.Errorf("%d %s, want 502 in the OpenAI error shape", r.status, r.body)
	}
}

// embedWith posts an embeddings request with extra headers.
func (p *proxy) embedWith(t *testing.T, body string, header map[string]string) reply {
	t.Helper()
	return p.postHeaders(t, "/v1/embeddings", body, header)
}

// TestEmbeddingsControls: the per-request controls of chat completions
// apply to embeddings too: no-store keeps nothing, no-cache refreshes,
// mode off bypasses, a namespace scopes, tags tag each stored input, and a
// malformed control is a 400 that changes nothing.
func TestEmbeddingsControls(t *testing.T) { forEachBackend(t, testEmbeddingsControls) }

func testEmbeddingsControls(t *testing.T) {
	up := newEmbUpstream(t, nil)
	const admin = "embeddings-admin-token-0123"
	p := newProxy(t, up.upstream, func(c *api.Config) { c.AdminToken = admin })
	body := embReq("emb-1", "", "a", "b")
	calls := func() int { return len(up.embCalls()) }

	p.embedWith(t, body, map[string]string{"Cache-Control": "no-store"}).embeddings(t, "MISS", "0/2")
	p.embedWith(t, body, map[string]string{"Cache-Control": "no-store"}).embeddings(t, "MISS", "0/2")
	if calls() != 2 {
		t.Fatalf("no-store: %d upstream calls, want 2 (nothing kept)", calls())
	}
	p.embedWith(t, body, map[string]string{"X-Semcache-Mode": "off"})
	if r := p.embedWith(t, body, map[string]string{"X-Semcache-Mode": "off"}); r.semStatus() != "BYPASS" || r.status != 200 || calls() != 4 {
		t.Fatalf("mode off: %d %s, %d upstream calls; want 200 BYPASS, 4", r.status, r.semStatus(), calls())
	}
	if r := p.embedWith(t, body, map[string]string{"X-Semcache-TTL": "soon"}); r.status != 400 || calls() != 4 {
		t.Fatalf("malformed TTL: %d, %d upstream calls; want 400 and no call", r.status, calls())
	}

	p.embedWith(t, body, map[string]string{"X-Semcache-Tags": "doc:7"}).embeddings(t, "MISS", "0/2")
	p.embedWith(t, body, nil).embeddings(t, "HIT", "2/2")
	// The tag covers both stored inputs.
	req, _ := http.NewRequest(http.MethodPost, p.url+"/api/v1/cache/invalidate", strings.NewReader(`{"tag":"doc:7"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	if r := p.send(t, req); r.status != 200 || !strings.Contains(string(r.body), `"deleted":2`) {
		t.Fatalf("invalidate tag: %d %s, want 2 deleted", r.status, r.body)
	}
	p.embedWith(t, body, nil).embeddings(t, "MISS", "0/2")
	if calls() != 6 {
		t.Fatalf("after invalidation: %d upstream calls, want 6", calls())
	}

	p.embedWith(t, body, map[string]string{"Cache-Control": "no-cache"}).embeddings(t, "MISS", "0/2")
	if calls() != 7 {
		t.Fatalf("no-cache: %d upstream calls, want 7", calls())
	}
	p.embedWith(t, body, nil).embeddings(t, "HIT", "2/2")
	// Another namespace of the same tenant does not see them.
	p.embedWith(t, body, map[string]string{"X-Semcache-Namespace": "other"}).embeddings(t, "MISS", "0/2")
	p.embedWith(t, body, map[string]string{"X-Semcache-Namespace": "other"}).embeddings(t, "HIT", "2/2")
}
