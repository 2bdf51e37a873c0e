package semantic_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// embNoEmbedder is the Embedder of the embeddings tests' caches; the
// embeddings path never embeds, so any call fails the test.
type embNoEmbedder struct{ t *testing.T }

func (e embNoEmbedder) Embed(context.Context, []string) ([][]float32, error) {
	e.t.Error("the embeddings path called the cache's embedder")
	return nil, errors.New("unexpected Embed")
}
func (embNoEmbedder) Dim() int            { return 3 }
func (embNoEmbedder) Fingerprint() string { return "none/3" }

// embFailStore wraps the real Memory store to fail Get or Set.
type embFailStore struct {
	*index.Memory
	getErr, setErr error
}

func (s *embFailStore) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if s.getErr != nil {
		return nil, false, s.getErr
	}
	return s.Memory.Get(ctx, key)
}

func (s *embFailStore) Set(ctx context.Context, key, scope string, value []byte, vec []float32, ttl time.Duration) error {
	if s.setErr != nil {
		return s.setErr
	}
	return s.Memory.Set(ctx, key, scope, value, vec, ttl)
}

// newEmbCache returns a cache over a real Memory store, wrapped by wrap when
// it is not nil.
func newEmbCache(t *testing.T, wrap func(*index.Memory) semantic.Store) (*semantic.Cache, *index.Memory) {
	t.Helper()
	mem, err := index.NewMemory(index.MemoryConfig{Dim: 3, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	var store semantic.Store = mem
	if wrap != nil {
		store = wrap(mem)
	}
	c, err := semantic.New(semantic.Config{Threshold: 0.9, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, embNoEmbedder{t}, store)
	if err != nil {
		t.Fatal(err)
	}
	return c, mem
}

// embVector is the fake upstream's embedding of text: a JSON array whose
// spelling ("1.50E+00", white space) a re-encoding would not keep.
func embVector(text string) string { return fmt.Sprintf("[ %d.50E+00, -0.0 ]", len(text)) }

// embUpstream is a counting fake embeddings API: it answers every call with
// embVector of each input, in order, and usage of one token per input.
type embUpstream struct {
	mu     sync.Mutex
	inputs [][]string // the input of each call
	answer func(inputs []string) semantic.Upstream
}

func (u *embUpstream) fetch(_ context.Context, body []byte) (semantic.Upstream, error) {
	var req struct {
		Input []string `json:"input"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return semantic.Upstream{}, fmt.Errorf("fake upstream: %v: %s", err, body)
	}
	u.mu.Lock()
	u.inputs = append(u.inputs, req.Input)
	u.mu.Unlock()
	if u.answer != nil {
		return u.answer(req.Input), nil
	}
	return embAnswer(req.Input), nil
}

func (u *embUpstream) calls() [][]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([][]string(nil), u.inputs...)
}

// embAnswer is a valid upstream answer for inputs.
func embAnswer(inputs []string) semantic.Upstream {
	var items []string
	for i, in := range inputs {
		items = append(items, fmt.Sprintf(`{"object":"embedding","index":%d,"embedding":%s}`, i, embVector(in)))
	}
	body := fmt.Sprintf(`{"object":"list","data":[%s],"model":"up-model","usage":{"prompt_tokens":%d,"total_tokens":%d}}`,
		strings.Join(items, ","), len(inputs), len(inputs))
	return semantic.Upstream{Status: 200, ContentType: "application/json", Body: []byte(body)}
}

// embRequest builds the request for inputs under model m for tenant t.
func embRequest(t *testing.T, tenant string, inputs ...string) semantic.EmbeddingsRequest {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model": "m", "input": inputs})
	r, err := semantic.IdentifyEmbeddings(body, tenant)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// embBody is the part of an embeddings response the tests check.
type embBody struct {
	Object string `json:"object"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Model string `json:"model"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// wantEmbeddings checks that r is a 200 list holding embVector of each
// input in order, with the given usage and outcome.
func wantEmbeddings(t *testing.T, r semantic.EmbeddingsResult, outcome semantic.Outcome, cached, usage int, inputs ...string) {
	t.Helper()
	if r.Status != 200 || r.Outcome != outcome || r.Cached != cached || r.Total != len(inputs) {
		t.Fatalf("status %d, %s %d/%d; want 200, %s %d/%d", r.Status, r.Outcome, r.Cached, r.Total, outcome, cached, len(inputs))
	}
	var b embBody
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatalf("body: %v: %s", err, r.Body)
	}
	if b.Object != "list" || len(b.Data) != len(inputs) {
		t.Fatalf("body: %s", r.Body)
	}
	for i, in := range inputs {
		d := b.Data[i]
		if d.Object != "embedding" || d.Index != i || string(d.Embedding) != embVector(in) {
			t.Errorf("data[%d] = %s %d %s; want embedding %d %s", i, d.Object, d.Index, d.Embedding, i, embVector(in))
		}
	}
	if b.Usage.PromptTokens != usage || b.Usage.TotalTokens != usage {
		t.Errorf("usage %+v, want %d prompt and total tokens", b.Usage, usage)
	}
}

func TestIdentifyEmbeddingsScope(t *testing.T) {
	const base = `{"model":"m","input":["a"],"dimensions":256}`
	cases := []struct {
		name, tenant, body string
		sameScope          bool
	}{
		{"field order", "t1", `{"dimensions":256,"input":["a"],"model":"m"}`, true},
		{"number spelling", "t1", `{"model":"m","input":["a"],"dimensions":256.0}`, true},
		{"other input", "t1", `{"model":"m","input":["b","c"],"dimensions":256}`, true},
		{"string input", "t1", `{"model":"m","input":"a","dimensions":256}`, true},
		{"other tenant", "t2", base, false},
		{"other model", "t1", `{"model":"m2","input":["a"],"dimensions":256}`, false},
		{"other dimensions", "t1", `{"model":"m","input":["a"],"dimensions":512}`, false},
		{"no dimensions", "t1", `{"model":"m","input":["a"]}`, false},
		{"encoding_format", "t1", `{"model":"m","input":["a"],"dimensions":256,"encoding_format":"base64"}`, false},
		{"user", "t1", `{"model":"m","input":["a"],"dimensions":256,"user":"u1"}`, false},
		{"unknown field", "t1", `{"model":"m","input":["a"],"dimensions":256,"x_truncate":"end"}`, false},
	}
	want, err := semantic.IdentifyEmbeddings([]byte(base), "t1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := semantic.IdentifyEmbeddings([]byte(tc.body), tc.tenant)
			if err != nil {
				t.Fatal(err)
			}
			if (got.Scope == want.Scope) != tc.sameScope {
				t.Errorf("same scope = %v, want %v", got.Scope == want.Scope, tc.sameScope)
			}
			if !tc.sameScope && got.Keys[0] == want.Keys[0] {
				t.Errorf("other scope, same key for %q", got.Inputs[0])
			}
		})
	}
}

func TestIdentifyEmbeddingsKeys(t *testing.T) {
	r, err := semantic.IdentifyEmbeddings([]byte(`{"model":"m","input":["a","b","a","A","a "]}`), "t1")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Inputs, "|"); got != "a|b|a|A|a " || r.Model != "m" {
		t.Fatalf("inputs %q model %q", got, r.Model)
	}
	if r.Keys[0] != r.Keys[2] {
		t.Error("equal inputs have different keys")
	}
	seen := map[string]bool{}
	for _, i := range []int{0, 1, 3, 4} {
		if seen[r.Keys[i]] {
			t.Errorf("input %q shares a key: inputs are cached exactly, without normalisation", r.Inputs[i])
		}
		seen[r.Keys[i]] = true
	}
	one, _ := semantic.IdentifyEmbeddings([]byte(`{"model":"m","input":"b"}`), "t1")
	if one.Keys[0] != r.Keys[1] {
		t.Error("an input's key depends on the other inputs of its request")
	}
}

func TestIdentifyEmbeddingsRejects(t *testing.T) {
	cases := []struct {
		name, body, mentions string
		tokens               bool
	}{
		{"malformed JSON", `{"model":"m","input":[`, "JSON", false},
		{"not an object", `["a"]`, "JSON object", false},
		{"trailing data", `{"model":"m","input":"a"}]`, "trailing", false},
		{"no model", `{"input":"a"}`, "model", false},
		{"model a number", `{"model":3,"input":"a"}`, "model", false},
		{"no input", `{"model":"m"}`, "input", false},
		{"null input", `{"model":"m","input":null}`, "input", false},
		{"empty string", `{"model":"m","input":""}`, "input", false},
		{"empty array", `{"model":"m","input":[]}`, "input", false},
		{"empty string in array", `{"model":"m","input":["a",""]}`, "input[1]", false},
		{"number in strings", `{"model":"m","input":["a",1]}`, "input[1]", false},
		{"string in tokens", `{"model":"m","input":[1,"a"]}`, "input[0]", false},
		{"object input", `{"model":"m","input":{"text":"a"}}`, "input", false},
		{"number input", `{"model":"m","input":3}`, "input", false},
		{"bool input", `{"model":"m","input":true}`, "input", false},
		{"tokens", `{"model":"m","input":[1,2,3]}`, "input", true},
		{"token arrays", `{"model":"m","input":[[1,2],[3]]}`, "input", true},
		{"dimensions a string", `{"model":"m","input":"a","dimensions":"256"}`, "dimensions", false},
		{"dimensions fractional", `{"model":"m","input":"a","dimensions":1.5}`, "dimensions", false},
		{"dimensions zero", `{"model":"m","input":"a","dimensions":0}`, "dimensions", false},
		{"encoding_format a number", `{"model":"m","input":"a","encoding_format":1}`, "encoding_format", false},
		{"user an object", `{"model":"m","input":"a","user":{}}`, "user", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := semantic.IdentifyEmbeddings([]byte(tc.body), "t1")
			if !errors.Is(err, semantic.ErrBadRequest) {
				t.Fatalf("err = %v, want ErrBadRequest", err)
			}
			if errors.Is(err, semantic.ErrTokenInput) != tc.tokens {
				t.Errorf("errors.Is(err, ErrTokenInput) = %v, want %v", !tc.tokens, tc.tokens)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("%q does not mention %q", err, tc.mentions)
			}
		})
	}
}

func TestDoEmbeddingsSendsOnlyMissingInputs(t *testing.T) {
	c, mem := newEmbCache(t, nil)
	up := &embUpstream{}
	ctx := t.Context()

	r, err := c.DoEmbeddings(ctx, embRequest(t, "t1", "a", "b"), up.fetch)
	if err != nil {
		t.Fatal(err)
	}
	wantEmbeddings(t, r, semantic.Miss, 0, 2, "a", "b")

	r, err = c.DoEmbeddings(ctx, embRequest(t, "t1", "b", "c", "a"), up.fetch)
	if err != nil {
		t.Fatal(err)
	}
	wantEmbeddings(t, r, semantic.Partial, 2, 1, "b", "c", "a")
	var b embBody
	_ = json.Unmarshal(r.Body, &b)
	if b.Model != "up-model" {
		t.Errorf("model %q, want the upstream's", b.Model)
	}

	r, err = c.DoEmbeddings(ctx, embRequest(t, "t1", "c", "a", "b"), up.fetch)
	if err != nil {
		t.Fatal(err)
	}
	wantEmbeddings(t, r, semantic.Hit, 3, 0, "c", "a", "b")
	_ = json.Unmarshal(r.Body, &b)
	if b.Model != "m" || r.Header != nil {
		t.Errorf("hit: model %q, header %v; want the request's model and no upstream headers", b.Model, r.Header)
	}

	if got := fmt.Sprint(up.calls()); got != "[[a b] [c]]" {
		t.Errorf("upstream inputs %s, want [[a b] [c]]", got)
	}
	if n, _ := mem.Len(ctx); n != 3 {
		t.Errorf("entries = %d, want 3", n)
	}
	s := c.Snapshot(ctx)
	if s.Requests != 3 || s.ExactHits != 1 || s.Misses != 2 || s.UpstreamCalls != 2 || s.UpstreamErrors != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestDoEmbeddingsDuplicatesGoUpstreamOnce(t *testing.T) {
	c, _ := newEmbCache(t, nil)
	up := &embUpstream{}
	r, err := c.DoEmbeddings(t.Context(), embRequest(t, "t1", "a", "b", "a", "a"), up.fetch)
	if err != nil {
		t.Fatal(err)
	}
	wantEmbeddings(t, r, semantic.Miss, 0, 2, "a", "b", "a", "a")
	r, err = c.DoEmbeddings(t.Context(), embRequest(t, "t1", "c", "a", "c"), up.fetch)
	if err != nil {
		t.Fatal(err)
	}
	wantEmbeddings(t, r, semantic.Partial, 1, 1, "c", "a", "c")
	if got := fmt.Sprint(up.calls()); got != "[[a b] [c]]" {
		t.Errorf("upstream inputs %s, want [[a b] [c]]", got)
	}
}

func TestDoEmbeddingsScopes(t *testing.T) {
	c, _ := newEmbCache(t, nil)
	up := &embUpstream{}
	if _, err := c.DoEmbeddings(t.Context(), embRequest(t, "t1", "a"), up.fetch); err != nil {
		t.Fatal(err)
	}
	r, err := c.DoEmbeddings(t.Context(), embRequest(t, "t2", "a"), up.fetch)
	if err != nil || r.Outcome != semantic.Miss {
		t.Errorf("other tenant: %s %v, want MISS", r.Outcome, err)
	}
}

func TestDoEmbeddingsIndexOrderFromUpstream(t *testing.T) {
	c, _ := newEmbCache(t, nil)
	// The upstream lists the items in reverse: index, not position, says
	// which input each belongs to.
	up := &embUpstream{answer: func(in []string) semantic.Upstream {
		body := fmt.Sprintf(`{"data":[{"index":1,"embedding":%s},{"index":0,"embedding":%s}],"usage":{"prompt_tokens":2,"total_tokens":2}}`,
			embVector(in[1]), embVector(in[0]))
		return semantic.Upstream{Status: 200, Body: []byte(body)}
	}}
	r, err := c.DoEmbeddings(t.Context(), embRequest(t, "t1", "a", "bb"), up.fetch)
	if err != nil {
		t.Fatal(err)
	}
	wantEmbeddings(t, r, semantic.Miss, 0, 2, "a", "bb")
	var b embBody
	_ = json.Unmarshal(r.Body, &b)
	if b.Model != "m" {
		t.Errorf("model %q, want the request's when the upstream names none", b.Model)
	}
}

func TestDoEmbeddingsUpstreamStatusPassedThrough(t *testing.T) {
	c, mem := newEmbCache(t, nil)
	ok := &embUpstream{}
	if _, err := c.DoEmbeddings(t.Context(), embRequest(t, "t1", "a"), ok.fetch); err != nil {
		t.Fatal(err)
	}
	errBody := `{"error":{"message":"slow down","type":"rate_limit","code":null}}`
	failing := &embUpstream{answer: func([]string) semantic.Upstream {
		return semantic.Upstream{Status: 429, ContentType: "application/json", Body: []byte(errBody)}
	}}
	r, err := c.DoEmbeddings(t.Context(), embRequest(t, "t1", "a", "b"), failing.fetch)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 429 || string(r.Body) != errBody || r.Outcome != semantic.Partial || r.Cached != 1 || r.Total != 2 {
		t.Errorf("got %d %s %s %d/%d, want the upstream's 429 unchanged, PARTIAL 1/2", r.Status, r.Body, r.Outcome, r.Cached, r.Total)
	}
	if n, _ := mem.Len(t.Context()); n != 1 {
		t.Errorf("entries = %d, want 1 (nothing stored from an error)", n)
	}
	if s := c.Snapshot(t.Context()); s.UpstreamErrors != 1 {
		t.Errorf("upstream errors = %d, want 1", s.UpstreamErrors)
	}
}

func TestDoEmbeddingsRejectsAnswersThatDoNotFit(t *testing.T) {
	item := func(i int, emb string) string { return fmt.Sprintf(`{"index":%d,"embedding":%s}`, i, emb) }
	cases := []struct{ name, body string }{
		{"not JSON", `oops`},
		{"too few items", `{"data":[` + item(0, "[1]") + `]}`},
		{"too many items", `{"data":[` + item(0, "[1]") + `,` + item(1, "[1]") + `,` + item(2, "[1]") + `]}`},
		{"repeated index", `{"data":[` + item(0, "[1]") + `,` + item(0, "[2]") + `]}`},
		{"index out of range", `{"data":[` + item(0, "[1]") + `,` + item(2, "[2]") + `]}`},
		{"negative index", `{"data":[` + item(-1, "[1]") + `,` + item(0, "[2]") + `]}`},
		{"index missing", `{"data":[` + item(0, "[1]") + `,{"embedding":[2]}]}`},
		{"embedding null", `{"data":[` + item(0, "[1]") + `,` + item(1, "null") + `]}`},
		{"embedding a number", `{"data":[` + item(0, "[1]") + `,` + item(1, "7") + `]}`},
		{"embedding missing", `{"data":[` + item(0, "[1]") + `,{"index":1}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, mem := newEmbCache(t, nil)
			up := &embUpstream{answer: func([]string) semantic.Upstream {
				return semantic.Upstream{Status: 200, Body: []byte(tc.body)}
			}}
			_, err := c.DoEmbeddings(t.Context(), embRequest(t, "t1", "a", "b"), up.fetch)
			if !errors.Is(err, semantic.ErrUpstreamEmbeddings) {
				t.Fatalf("err = %v, want ErrUpstreamEmbeddings", err)
			}
			if n, _ := mem.Len(t.Context()); n != 0 {
				t.Errorf("entries = %d, want 0", n)
			}
		})
	}
}

func TestDoEmbeddingsFetchError(t *testing.T) {
	c, mem := newEmbCache(t, nil)
	boom := errors.New("connection refused")
	r, err := c.DoEmbeddings(t.Context(), embRequest(t, "t1", "a"), func(context.Context, []byte) (semantic.Upstream, error) {
		return semantic.Upstream{}, boom
	})
	if !errors.Is(err, boom) || r.Outcome != semantic.Miss || r.Total != 1 {
		t.Errorf("err %v, %s %d/%d; want the fetch error, MISS 0/1", err, r.Outcome, r.Cached, r.Total)
	}
	if n, _ := mem.Len(t.Context()); n != 0 {
		t.Errorf("entries = %d, want 0", n)
	}
}

func TestDoEmbeddingsFailsOpen(t *testing.T) {
	t.Run("lookup", func(t *testing.T) {
		var fs *embFailStore
		c, _ := newEmbCache(t, func(m *index.Memory) semantic.Store {
			fs = &embFailStore{Memory: m}
			return fs
		})
		up := &embUpstream{}
		if _, err := c.DoEmbeddings(t.Context(), embRequest(t, "t1", "a"), up.fetch); err != nil {
			t.Fatal(err)
		}
		fs.getErr = errors.New("redis down")
		r, err := c.DoEmbeddings(t.Context(), embRequest(t, "t1", "a"), up.fetch)
		if err != nil {
			t.Fatal(err)
		}
		wantEmbeddings(t, r, semantic.Miss, 0, 1, "a")
		if n := c.Stats().LookupErrors.Load(); n != 1 {
			t.Errorf("lookup errors = %d, want 1", n)
		}
	})
	t.Run("store", func(t *testing.T) {
		c, mem := newEmbCache(t, func(m *index.Memory) semantic.Store {
			return &embFailStore{Memory: m, setErr: errors.New("redis down")}
		})
		r, err := c.DoEmbeddings(t.Context(), embRequest(t, "t1", "a", "b"), (&embUpstream{}).fetch)
		if err != nil {
			t.Fatal(err)
		}
		wantEmbeddings(t, r, semantic.Miss, 0, 2, "a", "b")
		if n := c.Stats().StoreErrors.Load(); n != 2 {
			t.Errorf("store errors = %d, want 2", n)
		}
		if n, _ := mem.Len(t.Context()); n != 0 {
			t.Errorf("entries = %d, want 0", n)
		}
	})
	t.Run("undecodable entry", func(t *testing.T) {
		c, mem := newEmbCache(t, nil)
		req := embRequest(t, "t1", "a")
		if err := mem.Set(t.Context(), req.Keys[0], req.Scope, []byte("garbage"), nil, time.Hour); err != nil {
			t.Fatal(err)
		}
		r, err := c.DoEmbeddings(t.Context(), req, (&embUpstream{}).fetch)
		if err != nil {
			t.Fatal(err)
		}
		wantEmbeddings(t, r, semantic.Miss, 0, 1, "a")
		if n := c.Stats().LookupErrors.Load(); n != 1 {
			t.Errorf("lookup errors = %d, want 1", n)
		}
	})
}

func TestDoEmbeddingsUpstreamBody(t *testing.T) {
	c, _ := newEmbCache(t, nil)
	req, err := semantic.IdentifyEmbeddings([]byte(`{"model":"m","input":"a","dimensions":64,"encoding_format":"base64","user":"u","x_extra":{"k":1.50}}`), "t1")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_, err = c.DoEmbeddings(t.Context(), req, func(_ context.Context, body []byte) (semantic.Upstream, error) {
		if err := json.Unmarshal(body, &got); err != nil {
			return semantic.Upstream{}, err
		}
		return embAnswer([]string{"a"}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `map[dimensions:64 encoding_format:base64 input:[a] model:m user:u x_extra:map[k:1.5]]`
	if fmt.Sprint(got) != want {
		t.Errorf("upstream body %v\nwant every field of the request, input as an array: %s", got, want)
	}
}

// TestDoEmbeddingsWithOptions: SkipLookup refreshes every input and stores
// the answers, NoStore keeps nothing, TTL sets the stored lifetime (checked
// on a store with a manual clock), and a namespace separates scopes.
func TestDoEmbeddingsWithOptions(t *testing.T) {
	clock := newFakeClock()
	mem, err := index.NewMemory(index.MemoryConfig{Dim: 3, SweepInterval: -1, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	c, err := semantic.New(semantic.Config{Threshold: 0.9, TTL: time.Hour, Now: clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, embNoEmbedder{t}, mem)
	if err != nil {
		t.Fatal(err)
	}
	up := &embUpstream{}
	do := func(o semantic.Options, req semantic.EmbeddingsRequest) semantic.EmbeddingsResult {
		t.Helper()
		r, err := c.DoEmbeddingsWith(t.Context(), req, o, up.fetch)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	req := embRequest(t, "t1", "a", "b")
	if r := do(semantic.Options{NoStore: true}, req); r.Outcome != semantic.Miss || len(r.Stored) != 0 {
		t.Errorf("no-store: %s, stored %v", r.Outcome, r.Stored)
	}
	if r := do(semantic.Options{TTL: time.Minute}, req); r.Outcome != semantic.Miss || len(r.Stored) != 2 {
		t.Errorf("first store: %s, stored %v", r.Outcome, r.Stored)
	}
	if r := do(semantic.Options{SkipLookup: true}, req); r.Outcome != semantic.Miss || len(up.inputs) != 3 {
		t.Errorf("no-cache: %s after %d upstream calls, want a miss and 3 calls", r.Outcome, len(up.inputs))
	}
	// The refresh stored with the cache's TTL (an hour), not the minute.
	clock.Advance(2 * time.Minute)
	if r := do(semantic.Options{}, req); r.Outcome != semantic.Hit {
		t.Errorf("after the refresh: %s, want a hit", r.Outcome)
	}
	short := embRequest(t, "t1", "c")
	do(semantic.Options{TTL: time.Minute}, short)
	clock.Advance(2 * time.Minute)
	if r := do(semantic.Options{}, short); r.Outcome != semantic.Miss {
		t.Errorf("past a one-minute TTL: %s, want a miss", r.Outcome)
	}
	body, _ := json.Marshal(map[string]any{"model": "m", "input": []string{"a", "b"}})
	other, err := semantic.IdentifyEmbeddingsIn(body, "t1", "other")
	if err != nil {
		t.Fatal(err)
	}
	if r := do(semantic.Options{}, other); r.Outcome != semantic.Miss {
		t.Errorf("another namespace: %s, want a miss", r.Outcome)
	}
	if same, _ := semantic.IdentifyEmbeddingsIn(body, "t1", ""); same.Keys[0] != req.Keys[0] {
		t.Error("the empty namespace changed the keys")
	}
}
