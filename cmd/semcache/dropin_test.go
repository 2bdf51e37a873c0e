package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/semcache/semcache/api/sim"
	"github.com/semcache/semcache/index/redistest"
)

// recorded is one request the recording upstream received.
type recorded struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// recordingUpstream is the fake LLM API of the drop-in tests: it records
// every request (headers and body as received) and answers from the
// simulator. An Azure OpenAI path /openai/deployments/{d}/{endpoint} is
// answered as /v1/{endpoint} with model d.
type recordingUpstream struct {
	t   *testing.T
	sim *sim.Sim
	mu  sync.Mutex
	got []recorded
	srv *httptest.Server
}

var azurePath = regexp.MustCompile(`^/openai/deployments/([^/]+)/(.+)$`)

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{t: t, sim: sim.New(sim.Config{})}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.got = append(u.got, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		u.mu.Unlock()
		if m := azurePath.FindStringSubmatch(r.URL.Path); m != nil {
			var fields map[string]any
			_ = json.Unmarshal(body, &fields)
			fields["model"] = m[1]
			body, _ = json.Marshal(fields)
			r.URL.Path = "/v1/" + m[2]
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		u.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// requests returns what the upstream received so far.
func (u *recordingUpstream) requests() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recorded(nil), u.got...)
}

// last returns the last request the upstream received.
func (u *recordingUpstream) last() recorded {
	u.t.Helper()
	got := u.requests()
	if len(got) == 0 {
		u.t.Fatal("the upstream received nothing")
	}
	return got[len(got)-1]
}

// startDropIn runs `semcache serve` in front of a recording upstream (the
// base URL given as upstreamPath below it) with extra flags, on the memory
// backend or, for "redis", on a RediSearch server started for the test.
func startDropIn(t *testing.T, backend, upstreamPath string, extra ...string) (base string, up *recordingUpstream, logs *bytes.Buffer) {
	t.Helper()
	up = newRecordingUpstream(t)
	args := append([]string{"--listen", "127.0.0.1:0", "--upstream", up.srv.URL + upstreamPath, "--log-level", "debug"}, extra...)
	if backend == "redis" {
		srv := redistest.StartSearch(t) // skips without SEMCACHE_TEST_REDISEARCH_MODULE
		args = append(args, "--backend", "redis", "--redis-url", srv.URL())
	}
	cfg, err := parseServe(args, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	base, logs, stop := startServe(t, cfg)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return base, up, logs
}

// reply is one answer of the proxy.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) cache() string { return r.header.Get("X-Semcache-Status") }

// send POSTs body to url with the headers (name, value pairs).
func send(t *testing.T, url, body string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// sseEvent is one server-sent event: its event field and data.
type sseEvent struct{ event, data string }

// events parses an event stream (events ended by a blank line).
func events(t *testing.T, b []byte) []sseEvent {
	t.Helper()
	var out []sseEvent
	for _, block := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n\n") {
		if strings.TrimSpace(block) == "" {
			continue
		}
		var e sseEvent
		for _, l := range strings.Split(block, "\n") {
			if v, ok := strings.CutPrefix(l, "event: "); ok {
				e.event = v
			} else if v, ok := strings.CutPrefix(l, "data: "); ok {
				e.data = v
			}
		}
		out = append(out, e)
	}
	return out
}

// responseText returns the output_text of a response object.
func responseText(t *testing.T, b []byte) string {
	t.Helper()
	var r struct {
		Object string `json:"object"`
		Status string `json:"status"`
		Output []struct {
			Content []struct {
				Type, Text string
			} `json:"content"`
		} `json:"output"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Object != "response" || r.Status != "completed" {
		t.Fatalf("not a completed response (%v): %s", err, b)
	}
	var s strings.Builder
	for _, o := range r.Output {
		for _, c := range o.Content {
			if c.Type == "output_text" {
				s.WriteString(c.Text)
			}
		}
	}
	return s.String()
}

// responseStream checks that a Responses event stream is complete and in
// the API's order (response.created first, response.completed last, every
// sequence_number one more than the one before, each event's name its
// type) and returns the concatenated output_text deltas and the final
// response.
func responseStream(t *testing.T, r reply) (string, []byte) {
	t.Helper()
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %q: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	evs := events(t, r.body)
	if len(evs) < 4 {
		t.Fatalf("stream: %d events, want the whole sequence: %s", len(evs), r.body)
	}
	var text strings.Builder
	var final []byte
	for i, e := range evs {
		var d struct {
			Type     string          `json:"type"`
			Seq      *int            `json:"sequence_number"`
			Delta    string          `json:"delta"`
			Response json.RawMessage `json:"response"`
		}
		if err := json.Unmarshal([]byte(e.data), &d); err != nil {
			t.Fatalf("event %d: %v: %q", i, err, e.data)
		}
		if d.Type != e.event || d.Seq == nil || *d.Seq != i {
			t.Errorf("event %d: event %q type %q sequence_number %v", i, e.event, d.Type, d.Seq)
		}
		switch {
		case i == 0 && d.Type != "response.created":
			t.Errorf("first event %q, want response.created", d.Type)
		case i == len(evs)-1 && d.Type != "response.completed":
			t.Errorf("last event %q, want response.completed", d.Type)
		}
		if d.Type == "response.output_text.delta" {
			text.WriteString(d.Delta)
		}
		if d.Type == "response.completed" {
			final = d.Response
		}
	}
	return text.String(), final
}

// TestResponsesAPI: POST /v1/responses through the cache, JSON and stream,
// on each backend: a repeat is an exact hit, a rewording a semantic hit, a
// JSON entry replays as a complete event stream and a stream entry as
// JSON; server-side state is a bypass; what is not the question (another
// instruction) is another scope; stats and metrics count it.
func TestResponsesAPI(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			base, up, _ := startDropIn(t, backend, "/v1")
			url := base + "/v1/responses"
			auth := []string{"Authorization", "Bearer sk-a"}
			q := "What are your opening hours on weekdays?"
			want := sim.AnswerPrefix + q

			first := send(t, url, `{"model":"sim-1","input":"`+q+`"}`, auth...)
			if first.status != 200 || first.cache() != "MISS" || responseText(t, first.body) != want {
				t.Fatalf("first: %d %s %s", first.status, first.cache(), first.body)
			}
			// The same question as one user item with input_text parts.
			second := send(t, url, `{"model":"sim-1","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"`+q+`"}]}]}`, auth...)
			if second.cache() != "HIT" || second.header.Get("X-Semcache-Tier") != "exact" || !bytes.Equal(second.body, first.body) {
				t.Errorf("same question as items: %s %s, want an exact HIT with the stored body", second.cache(), second.header.Get("X-Semcache-Tier"))
			}
			if n := len(up.requests()); n != 1 {
				t.Errorf("upstream calls %d, want 1", n)
			}
			// Stored as JSON, replayed as a stream.
			st := send(t, url, `{"model":"sim-1","input":"`+q+`","stream":true}`, auth...)
			if st.cache() != "HIT" {
				t.Errorf("stream of a stored JSON answer: %s, want HIT", st.cache())
			}
			text, final := responseStream(t, st)
			if text != want || responseText(t, final) != want {
				t.Errorf("replayed stream text %q, final %q; want %q", text, responseText(t, final), want)
			}
			// A semantic hit: a rewording.
			sem := send(t, url, `{"model":"sim-1","input":"What are your opening hours during weekdays?"}`, auth...)
			if sem.cache() != "HIT" || sem.header.Get("X-Semcache-Tier") != "semantic" {
				t.Errorf("rewording: %s %s (refused %q), want a semantic HIT", sem.cache(), sem.header.Get("X-Semcache-Tier"), sem.header.Get("X-Semcache-Refused"))
			}
			// Other instructions: another scope.
			other := send(t, url, `{"model":"sim-1","instructions":"Answer in French.","input":"`+q+`"}`, auth...)
			if other.cache() != "MISS" {
				t.Errorf("other instructions: %s, want MISS", other.cache())
			}
			// A streamed miss is stored and replays verbatim; its JSON
			// form is the completed response.
			q2 := "Do you ship parcels to Canada?"
			smiss := send(t, url, `{"model":"sim-1","input":"`+q2+`","stream":true}`, auth...)
			if smiss.cache() != "MISS" {
				t.Errorf("stream miss: %s", smiss.cache())
			}
			mtext, _ := responseStream(t, smiss)
			shit := send(t, url, `{"model":"sim-1","input":"`+q2+`","stream":true}`, auth...)
			if shit.cache() != "HIT" || !bytes.Equal(shit.body, smiss.body) {
				t.Errorf("stream repeat: %s, want a HIT replaying the recorded events", shit.cache())
			}
			jhit := send(t, url, `{"model":"sim-1","input":"`+q2+`"}`, auth...)
			if jhit.cache() != "HIT" || responseText(t, jhit.body) != mtext || mtext != sim.AnswerPrefix+q2 {
				t.Errorf("JSON of a stored stream: %s %q, want HIT %q", jhit.cache(), jhit.body, mtext)
			}
			// Server-side state: never from the cache.
			for _, f := range []string{`"previous_response_id":"resp_1"`, `"conversation":"conv_1"`, `"background":true`, `"prompt":{"id":"pmpt_1"}`} {
				b := send(t, url, `{"model":"sim-1","input":"`+q+`",`+f+`}`, auth...)
				if b.cache() != "BYPASS" {
					t.Errorf("%s: %s, want BYPASS", f, b.cache())
				}
			}
			// A function call output last: nothing to cache.
			fc := send(t, url, `{"model":"sim-1","input":[{"role":"user","content":"`+q+`"},{"type":"function_call_output","call_id":"c1","output":"42"}]}`, auth...)
			if fc.cache() != "BYPASS" {
				t.Errorf("function_call_output last: %s, want BYPASS", fc.cache())
			}
			bad := send(t, url, `{"model":"sim-1","input":[{"role":"user","content":[{"type":"input_text","text":5}]}]}`, auth...)
			if bad.status != 400 || !strings.Contains(string(bad.body), "input[0].content[0].text") {
				t.Errorf("bad input_text: %d %s, want 400 naming input[0].content[0].text", bad.status, bad.body)
			}
			var stats struct {
				Hits, Misses, Bypasses int
			}
			getJSON(t, base+"/api/v1/cache/stats", &stats)
			if stats.Hits != 5 || stats.Misses != 3 || stats.Bypasses != 5 {
				t.Errorf("stats %+v, want 5 hits, 3 misses, 5 bypasses", stats)
			}
		})
	}
}

// getJSON GETs url and decodes its JSON body into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestLegacyCompletions: POST /v1/completions with a string prompt is
// cached like chat, JSON and stream; a token-array prompt is a bypass.
func TestLegacyCompletions(t *testing.T) {
	base, up, _ := startDropIn(t, "memory", "/v1")
	url := base + "/v1/completions"
	auth := []string{"Authorization", "Bearer sk-a"}
	p := "Write a tagline for an ice cream shop."
	first := send(t, url, `{"model":"sim-1","prompt":"`+p+`","max_tokens":30}`, auth...)
	second := send(t, url, `{"model":"sim-1","prompt":"`+p+`","max_tokens":30}`, auth...)
	if first.cache() != "MISS" || second.cache() != "HIT" || !bytes.Equal(first.body, second.body) {
		t.Errorf("JSON: %s then %s, want MISS then HIT with the same body", first.cache(), second.cache())
	}
	if other := send(t, url, `{"model":"sim-1","prompt":"`+p+`","max_tokens":60}`, auth...); other.cache() != "MISS" {
		t.Errorf("another max_tokens: %s, want MISS", other.cache())
	}
	st := send(t, url, `{"model":"sim-1","prompt":"`+p+`","max_tokens":30,"stream":true}`, auth...)
	if st.cache() != "HIT" {
		t.Errorf("stream of a stored answer: %s, want HIT", st.cache())
	}
	var text strings.Builder
	evs := events(t, st.body)
	for _, e := range evs[:len(evs)-1] {
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(e.data), &c); err != nil || c.Object != "text_completion" {
			t.Fatalf("chunk %q: %v", e.data, err)
		}
		for _, ch := range c.Choices {
			text.WriteString(ch.Text)
		}
	}
	if evs[len(evs)-1].data != "[DONE]" || text.String() != sim.AnswerPrefix+p {
		t.Errorf("replayed stream %q, want %q then [DONE]", text.String(), sim.AnswerPrefix+p)
	}
	p2 := "Write a tagline for a bakery."
	sm := send(t, url, `{"model":"sim-1","prompt":"`+p2+`","stream":true}`, auth...)
	sh := send(t, url, `{"model":"sim-1","prompt":"`+p2+`","stream":true}`, auth...)
	if sm.cache() != "MISS" || sh.cache() != "HIT" || !bytes.Equal(sm.body, sh.body) {
		t.Errorf("stream: %s then %s, want MISS then HIT replaying the same events", sm.cache(), sh.cache())
	}
	if b := send(t, url, `{"model":"sim-1","prompt":[1,2,3]}`, auth...); b.cache() != "BYPASS" {
		t.Errorf("token prompt: %s, want BYPASS", b.cache())
	}
	if n := len(up.requests()); n != 4 {
		t.Errorf("upstream calls %d, want 4", n)
	}
}

// TestAzureDeployments: Azure OpenAI's deployment paths are cached with
// the deployment and api-version in the scope and the api-key header as
// the tenant's credential, forwarded upstream and never logged.
func TestAzureDeployments(t *testing.T) {
	base, up, logs := startDropIn(t, "memory", "")
	const key = "azure-key-0123456789abcdef"
	chat := func(deployment, version, apiKey string) reply {
		return send(t, base+"/openai/deployments/"+deployment+"/chat/completions?api-version="+version,
			`{"messages":[{"role":"user","content":"What is the capital of France?"}]}`, "api-key", apiKey)
	}
	first := chat("gpt4o", "2024-10-21", key)
	if first.status != 200 || first.cache() != "MISS" {
		t.Fatalf("first: %d %s %s", first.status, first.cache(), first.body)
	}
	got := up.last()
	if got.Path != "/openai/deployments/gpt4o/chat/completions" || got.RawQuery != "api-version=2024-10-21" || got.Header.Get("api-key") != key {
		t.Errorf("upstream got %s?%s api-key %q", got.Path, got.RawQuery, got.Header.Get("api-key"))
	}
	if c := chat("gpt4o", "2024-10-21", key); c.cache() != "HIT" {
		t.Errorf("repeat: %s, want HIT", c.cache())
	}
	for name, r := range map[string]reply{
		"another api-version": chat("gpt4o", "2025-01-01-preview", key),
		"another deployment":  chat("gpt35", "2024-10-21", key),
		"another api-key":     chat("gpt4o", "2024-10-21", "azure-key-other-0000000000"),
	} {
		if r.cache() != "MISS" {
			t.Errorf("%s: %s, want MISS", name, r.cache())
		}
	}
	emb := func() reply {
		return send(t, base+"/openai/deployments/emb/embeddings?api-version=2024-10-21", `{"input":["hello there"]}`, "api-key", key)
	}
	if e1, e2 := emb(), emb(); e1.status != 200 || e1.cache() != "MISS" || e2.cache() != "HIT" {
		t.Errorf("embeddings: %d %s then %s, want MISS then HIT: %s", e1.status, e1.cache(), e2.cache(), e1.body)
	}
	if strings.Contains(logs.String(), key) {
		t.Error("the api-key appears in the log")
	}
}

// TestHeadersReachTheUpstream: on a cached-path miss the upstream gets
// every end-to-end header the client sent but the cache's own controls and
// hop-by-hop headers; OpenAI-Beta and --scope-headers are in the scope,
// tracing headers are not.
func TestHeadersReachTheUpstream(t *testing.T) {
	base, up, _ := startDropIn(t, "memory", "/v1", "--scope-headers", "X-Tenant-Region")
	body := `{"model":"sim-1","messages":[{"role":"user","content":"Tell me a fun fact about owls."}]}`
	h := []string{"Authorization", "Bearer sk-a", "OpenAI-Beta", "assistants=v2", "HTTP-Referer", "https://app.example.com",
		"X-Title", "Example App", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"X-Custom-Thing", "42", "X-Tenant-Region", "eu", "X-Semcache-TTL", "60", "Cache-Control", "no-store",
		"Connection", "X-Hop", "X-Hop", "gone"}
	if r := send(t, base+"/v1/chat/completions", body, h...); r.cache() != "MISS" {
		t.Fatalf("first: %s", r.cache())
	}
	got := up.last().Header
	for _, k := range []string{"OpenAI-Beta", "HTTP-Referer", "X-Title", "traceparent", "X-Custom-Thing", "X-Tenant-Region"} {
		want := ""
		for i := 0; i < len(h); i += 2 {
			if strings.EqualFold(h[i], k) {
				want = h[i+1]
			}
		}
		if got.Get(k) != want {
			t.Errorf("upstream %s = %q, want %q", k, got.Get(k), want)
		}
	}
	if got.Get("Authorization") != "Bearer sk-a" {
		t.Errorf("upstream Authorization %q", got.Get("Authorization"))
	}
	for _, k := range []string{"X-Semcache-TTL", "Cache-Control", "X-Hop"} {
		if v := got.Get(k); v != "" {
			t.Errorf("upstream got %s: %q, want it removed", k, v)
		}
	}
	// Cache-Control: no-store stored nothing; the same request stores now.
	base2 := func(extra ...string) reply {
		return send(t, base+"/v1/chat/completions", body, append([]string{"Authorization", "Bearer sk-a", "OpenAI-Beta", "assistants=v2", "X-Tenant-Region", "eu"}, extra...)...)
	}
	if r := base2("traceparent", "00-1"); r.cache() != "MISS" {
		t.Fatalf("store: %s", r.cache())
	}
	if r := base2("traceparent", "00-2"); r.cache() != "HIT" {
		t.Errorf("another traceparent: %s, want HIT (not in the scope)", r.cache())
	}
	r := send(t, base+"/v1/chat/completions", body, "Authorization", "Bearer sk-a", "OpenAI-Beta", "assistants=v1", "X-Tenant-Region", "eu")
	if r.cache() != "MISS" {
		t.Errorf("another OpenAI-Beta: %s, want MISS", r.cache())
	}
	r = send(t, base+"/v1/chat/completions", body, "Authorization", "Bearer sk-a", "OpenAI-Beta", "assistants=v2", "X-Tenant-Region", "us")
	if r.cache() != "MISS" {
		t.Errorf("another X-Tenant-Region (--scope-headers): %s, want MISS", r.cache())
	}

	// A BYPASS forwards the same end-to-end headers and drops the same
	// controls.
	bh := append([]string{"X-Semcache-Mode", "off"}, h...)
	if r := send(t, base+"/v1/chat/completions", body, bh...); r.cache() != "BYPASS" {
		t.Fatalf("bypass: %s", r.cache())
	}
	got = up.last().Header
	for _, k := range []string{"OpenAI-Beta", "X-Custom-Thing", "traceparent"} {
		if got.Get(k) == "" {
			t.Errorf("bypass: upstream lacks %s", k)
		}
	}
	for _, k := range []string{"X-Semcache-Mode", "X-Semcache-TTL", "Cache-Control", "X-Hop"} {
		if v := got.Get(k); v != "" {
			t.Errorf("bypass: upstream got %s: %q, want it removed", k, v)
		}
	}
}

// TestStoredStreamsCarryUsage: a streamed miss whose client did not ask
// for usage is sent upstream with stream_options.include_usage, the client
// gets no usage chunk, and a later JSON hit has the usage (and saves its
// tokens).
func TestStoredStreamsCarryUsage(t *testing.T) {
	base, up, _ := startDropIn(t, "memory", "/v1")
	url := base + "/v1/chat/completions"
	msg := `"messages":[{"role":"user","content":"How do I reset my router?"}]`
	s := send(t, url, `{"model":"sim-1","stream":true,`+msg+`}`, "Authorization", "Bearer sk-a")
	if s.cache() != "MISS" {
		t.Fatalf("stream: %s", s.cache())
	}
	var sent struct {
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.Unmarshal(up.last().Body, &sent); err != nil || !sent.StreamOptions.IncludeUsage {
		t.Errorf("upstream body %s, want stream_options.include_usage true", up.last().Body)
	}
	for _, e := range events(t, s.body) {
		if strings.Contains(e.data, `"prompt_tokens"`) {
			t.Errorf("the client got a usage chunk it did not ask for: %s", e.data)
		}
	}
	j := send(t, url, `{"model":"sim-1",`+msg+`}`, "Authorization", "Bearer sk-a")
	var got struct {
		Usage *struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(j.body, &got); err != nil || j.cache() != "HIT" || got.Usage == nil || got.Usage.CompletionTokens == 0 {
		t.Errorf("JSON hit of the stored stream: %s %s, want usage", j.cache(), j.body)
	}
	var stats struct {
		Saved int `json:"completion_tokens_saved"`
	}
	getJSON(t, base+"/api/v1/cache/stats", &stats)
	if stats.Saved == 0 {
		t.Error("stats completion_tokens_saved 0 after a hit on a stored stream")
	}
}

// openAIError decodes an OpenAI-shaped error body; ok is false when the
// body is not one.
func openAIError(b []byte) (msg string, ok bool) {
	var e struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
		return "", false
	}
	return e.Error.Message, true
}

// TestControlsThroughServe drives the request controls of issue 13 through
// a real `semcache serve` and a recording upstream: an SDK's reflexive
// Cache-Control: no-cache on a stream does not skip the lookup; max-age=0
// does, and reaches the upstream; a quoted max-age and a TTL beyond any
// clock are accepted; bad content parts and a wrong method get
// OpenAI-shaped errors and never reach the upstream.
func TestControlsThroughServe(t *testing.T) {
	base, up, _ := startDropIn(t, "memory", "/v1")
	url := base + "/v1/chat/completions"
	auth := []string{"Authorization", "Bearer sk-a"}
	stream := `{"model":"sim-1","stream":true,"messages":[{"role":"user","content":"How do I reset my router?"}]}`
	if r := send(t, url, stream, auth...); r.cache() != "MISS" {
		t.Fatalf("first stream: %s", r.cache())
	}
	sse := append([]string{"Accept", "text/event-stream", "Cache-Control", "no-cache"}, auth...)
	if r := send(t, url, stream, sse...); r.cache() != "HIT" {
		t.Errorf("stream with the SDK's Cache-Control: no-cache: %s, want HIT", r.cache())
	}
	n := len(up.requests())
	for _, cc := range []string{"max-age=0", "max-age=0, no-store"} {
		if r := send(t, url, stream, append([]string{"Cache-Control", cc}, auth...)...); r.status != 200 || r.cache() == "HIT" {
			t.Errorf("Cache-Control: %s: %d %s, want 200 and no hit", cc, r.status, r.cache())
		}
	}
	if got := len(up.requests()) - n; got != 2 {
		t.Errorf("max-age=0 requests reached the upstream %d times, want 2", got)
	}

	quoted := `{"model":"sim-1","messages":[{"role":"user","content":"What are your opening hours?"}]}`
	if r := send(t, url, quoted, append([]string{"Cache-Control", `max-age="60"`}, auth...)...); r.status != 200 {
		t.Errorf(`Cache-Control: max-age="60": %d %s, want 200`, r.status, r.body)
	}
	long := `{"model":"sim-1","messages":[{"role":"user","content":"Can I change my delivery address?"}]}`
	if r := send(t, url, long, append([]string{"X-Semcache-TTL", "18446744074"}, auth...)...); r.status != 200 || r.cache() != "MISS" {
		t.Errorf("X-Semcache-TTL 18446744074: %d %s %s, want 200 MISS", r.status, r.cache(), r.body)
	}
	if r := send(t, url, long, auth...); r.cache() != "HIT" {
		t.Errorf("after a TTL beyond any clock: %s, want HIT", r.cache())
	}

	n = len(up.requests())
	for name, body := range map[string]string{
		"text part without text": `{"model":"sim-1","messages":[{"role":"user","content":[{"type":"text"}]}]}`,
		"text part not a string": `{"model":"sim-1","messages":[{"role":"user","content":[{"type":"text","text":5}]}]}`,
	} {
		r := send(t, url, body, auth...)
		if _, ok := openAIError(r.body); r.status != 400 || !ok {
			t.Errorf("%s: %d %s, want 400 with an OpenAI error", name, r.status, r.body)
		}
	}
	if got := len(up.requests()) - n; got != 0 {
		t.Errorf("refused requests reached the upstream %d times", got)
	}
	// Other methods are passed through (GET /v1/chat/completions is
	// OpenAI's list of stored completions); the default simulated upstream
	// answers those it does not serve as OpenAI does.
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		req, err := http.NewRequest(m, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if _, ok := openAIError(b); resp.StatusCode != 405 || !ok {
			t.Errorf("%s /v1/chat/completions: %d %s, want 405 with an OpenAI error", m, resp.StatusCode, b)
		}
	}
}

// TestAdaptiveThresholdThroughServe checks that under --policy adaptive
// the X-Semcache-Threshold header, sent when a request asks for a
// threshold, names the threshold in force (the --similarity-floor, or a
// stricter per-request threshold), never a static threshold that is not
// used.
func TestAdaptiveThresholdThroughServe(t *testing.T) {
	base, _, _ := startDropIn(t, "memory", "/v1", "--policy", "adaptive", "--similarity-floor", "0.6")
	url := base + "/v1/chat/completions"
	body := `{"model":"sim-1","messages":[{"role":"user","content":"How do I reset my router?"}]}`
	// Unasked, no threshold header (as under the static policy).
	for asked, want := range map[string]string{"": "", "0.3": "0.6", "0.75": "0.75"} {
		h := []string{"Authorization", "Bearer sk-a"}
		if asked != "" {
			h = append(h, "X-Semcache-Threshold", asked)
		}
		if got := send(t, url, body, h...).header.Get("X-Semcache-Threshold"); got != want {
			t.Errorf("asked %q: X-Semcache-Threshold %q, want %q", asked, got, want)
		}
	}
}
