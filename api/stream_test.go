package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/semcache/semcache/api"
)

// sse is a streamed reply split into its events.
type sse struct {
	reply
	// chunks are the data payloads before [DONE].
	chunks []string
	// done reports whether the stream ended with data: [DONE] as its last
	// event.
	done bool
}

// parseSSE splits a reply body into data payloads.
func parseSSE(t *testing.T, r reply) sse {
	t.Helper()
	s := sse{reply: r}
	for _, ev := range strings.Split(string(r.body), "\n\n") {
		if ev == "" {
			continue
		}
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("not a one-line data event: %q in\n%s", ev, r.body)
		}
		if s.done {
			t.Fatalf("event after [DONE]:\n%s", r.body)
		}
		if data == "[DONE]" {
			s.done = true
			continue
		}
		s.chunks = append(s.chunks, data)
	}
	return s
}

// text is the concatenated content deltas of the first choice.
func (s sse) text(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, c := range s.chunks {
		var ch struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(c), &ch); err != nil || ch.Object != "chat.completion.chunk" {
			t.Fatalf("not a chat.completion.chunk (%v): %s", err, c)
		}
		if len(ch.Choices) > 0 {
			b.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	return b.String()
}

// usageChunks counts the chunks with usage and no choices.
func (s sse) usageChunks(t *testing.T) int {
	t.Helper()
	n := 0
	for _, c := range s.chunks {
		var ch struct {
			Choices []any `json:"choices"`
			Usage   any   `json:"usage"`
		}
		if err := json.Unmarshal([]byte(c), &ch); err != nil {
			t.Fatal(err)
		}
		if ch.Usage != nil && len(ch.Choices) == 0 {
			n++
		}
	}
	return n
}

// stream posts a streaming request (extra top-level fields may be added)
// with optional headers and parses the reply.
func (p *proxy) stream(t *testing.T, prompt, extra string, headers map[string]string) sse {
	t.Helper()
	fields := `"stream":true`
	if extra != "" {
		fields += "," + extra
	}
	r := p.postH(t, "sk-a", chat("m", fields, "user", prompt), headers)
	return parseSSE(t, r)
}

// checkComplete fails unless s is a 200 event stream of more than two
// chunks ending in [DONE] whose text is want.
func checkComplete(t *testing.T, name string, s sse, status, want string) {
	t.Helper()
	if s.status != 200 || s.semStatus() != status || !strings.HasPrefix(s.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%s: %d %s %q, want 200 %s text/event-stream: %s", name, s.status, s.semStatus(), s.header.Get("Content-Type"), status, s.body)
	}
	if !s.done || len(s.chunks) <= 2 {
		t.Errorf("%s: %d chunks, [DONE] %v; want more than 2 and [DONE]:\n%s", name, len(s.chunks), s.done, s.body)
	}
	if got := s.text(t); got != want {
		t.Errorf("%s: text %q, want %q", name, got, want)
	}
}

func TestStreamMissThenHit(t *testing.T) { forEachBackend(t, testStreamMissThenHit) }

func testStreamMissThenHit(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	miss := p.stream(t, question, "", nil)
	checkComplete(t, "miss", miss, "MISS", simAnswer(question))
	hit := p.stream(t, question, "", nil)
	checkComplete(t, "hit", hit, "HIT", simAnswer(question))
	if hit.header.Get(api.HeaderTier) != "exact" || hit.header.Get("Age") == "" {
		t.Errorf("hit: tier %q Age %q", hit.header.Get(api.HeaderTier), hit.header.Get("Age"))
	}
	if k := miss.header.Get(api.HeaderKey); k == "" || k != hit.header.Get(api.HeaderKey) {
		t.Errorf("X-Semcache-Key: miss %q, hit %q; want the same non-empty key", k, hit.header.Get(api.HeaderKey))
	}
	if !reflect.DeepEqual(hit.chunks, miss.chunks) {
		t.Errorf("hit chunks differ from the recorded ones:\n%q\n%q", hit.chunks, miss.chunks)
	}
	if n := p.up.calls.Load(); n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
	s := p.cache.Snapshot(t.Context())
	// The client did not ask for usage: the proxy asked the upstream for
	// it (so the stored stream carries it and the hit saves tokens) and
	// kept the usage chunk from the client, on the miss and on the hit.
	if s.Requests != 2 || s.ExactHits != 1 || s.Misses != 1 || s.UpstreamCalls != 1 || s.Bypasses != 0 || s.Entries != 1 || s.CompletionTokensSaved == 0 {
		t.Errorf("stats %+v, want the hit's completion tokens saved", s)
	}
	if m, h := miss.usageChunks(t), hit.usageChunks(t); m != 0 || h != 0 {
		t.Errorf("usage chunks: miss %d, hit %d; want none (the client did not ask)", m, h)
	}
	// Prometheus sees the stream as a miss and a hit.
	mf := scrape(t, p)
	for _, l := range []map[string]string{{"outcome": "miss", "tier": ""}, {"outcome": "hit", "tier": "exact"}} {
		if got := histogram(t, mf, "semcache_request_duration_seconds", l).GetSampleCount(); got != 1 {
			t.Errorf("semcache_request_duration_seconds%v count = %d, want 1", l, got)
		}
	}
}

func TestStreamIncludeUsage(t *testing.T) { forEachBackend(t, testStreamIncludeUsage) }

func testStreamIncludeUsage(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	const withUsage = `"stream_options":{"include_usage":true}`
	// Recorded with usage: replayed only to requests that ask for it.
	miss := p.stream(t, question, withUsage, nil)
	checkComplete(t, "miss", miss, "MISS", simAnswer(question))
	if n := miss.usageChunks(t); n != 1 {
		t.Fatalf("miss has %d usage chunks, want 1 from the simulator", n)
	}
	asked := p.stream(t, question, withUsage, nil)
	checkComplete(t, "hit asking for usage", asked, "HIT", simAnswer(question))
	if !reflect.DeepEqual(asked.chunks, miss.chunks) {
		t.Errorf("hit asking for usage: chunks differ from the recorded ones:\n%q\n%q", asked.chunks, miss.chunks)
	}
	plain := p.stream(t, question, "", nil)
	checkComplete(t, "hit without usage", plain, "HIT", simAnswer(question))
	if n := plain.usageChunks(t); n != 0 || len(plain.chunks) != len(miss.chunks)-1 {
		t.Errorf("hit without usage: %d usage chunks, %d chunks; want the recording minus its usage chunk", n, len(plain.chunks))
	}
	if s := p.cache.Snapshot(t.Context()); s.CompletionTokensSaved <= 0 {
		t.Errorf("tokens saved %d, want the recorded usage", s.CompletionTokensSaved)
	}

	// Recorded without usage: a request that asks gets one synthesized.
	other := "What are your opening hours?"
	checkComplete(t, "other miss", p.stream(t, other, "", nil), "MISS", simAnswer(other))
	synth := p.stream(t, other, withUsage, nil)
	checkComplete(t, "other hit asking for usage", synth, "HIT", simAnswer(other))
	if n := synth.usageChunks(t); n != 1 || !strings.Contains(synth.chunks[len(synth.chunks)-1], `"usage"`) {
		t.Errorf("synthesized usage: %d usage chunks, last %s", n, synth.chunks[len(synth.chunks)-1])
	}
}

// sseUpstream is a hand-written streaming upstream: it sends events as
// data: lines, flushing each, then ends as end says.
type sseUpstream struct {
	events []string
	// end is "done" (data: [DONE]), "abort" (the connection closed before
	// [DONE]) or "eof" (the body ends without [DONE]).
	end string
}

func (u sseUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	for _, e := range u.events {
		fmt.Fprintf(w, "data: %s\n\n", e)
		w.(http.Flusher).Flush()
	}
	switch u.end {
	case "done":
		io.WriteString(w, "data: [DONE]\n\n")
	case "abort":
		panic(http.ErrAbortHandler) // the connection is closed mid-stream
	}
}

// ev builds a chat.completion.chunk payload with one choice.
func ev(delta, finish string) string {
	f := "null"
	if finish != "" {
		f = `"` + finish + `"`
	}
	return `{"id":"chatcmpl-u","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":` + f + `}]}`
}

func TestStreamReplaysDeltasVerbatim(t *testing.T) {
	forEachBackend(t, testStreamReplaysDeltasVerbatim)
}

func testStreamReplaysDeltasVerbatim(t *testing.T) {
	events := []string{
		ev(`{"role":"assistant","content":"","reasoning_content":""}`, ""),
		ev(`{"reasoning_content":"The user forgot "}`, ""),
		ev(`{"reasoning_content":"a password."}`, ""),
		ev(`{"content":"Click "}`, ""),
		ev(`{"content":"reset."}`, ""),
		ev(`{}`, "stop"),
	}
	p := newProxy(t, newUpstream(t, sseUpstream{events: events, end: "done"}), nil)
	miss := p.stream(t, question, "", nil)
	checkComplete(t, "miss", miss, "MISS", "Click reset.")
	hit := p.stream(t, question, "", nil)
	checkComplete(t, "hit", hit, "HIT", "Click reset.")
	if !reflect.DeepEqual(hit.chunks, events) {
		t.Errorf("hit chunks:\n%q\nwant the upstream's, byte for byte:\n%q", hit.chunks, events)
	}
	// A non-streaming request gets the aggregate, reasoning included.
	r := p.post(t, "sk-a", chat("m", "", "user", question))
	var b struct {
		Object  string `json:"object"`
		Choices []struct {
			Message      map[string]any `json:"message"`
			FinishReason string         `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || r.semStatus() != "HIT" || b.Object != "chat.completion" || len(b.Choices) != 1 {
		t.Fatalf("non-streaming: %s (%v) %s", r.semStatus(), err, r.body)
	}
	if m := b.Choices[0].Message; m["content"] != "Click reset." || m["reasoning_content"] != "The user forgot a password." || b.Choices[0].FinishReason != "stop" {
		t.Errorf("non-streaming aggregate: %s", r.body)
	}
	if n := p.up.calls.Load(); n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
}

func TestStreamToolCalls(t *testing.T) { forEachBackend(t, testStreamToolCalls) }

func testStreamToolCalls(t *testing.T) {
	events := []string{
		ev(`{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"reset_password","arguments":""}}]}`, ""),
		ev(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"user\":"}}]}`, ""),
		ev(`{"tool_calls":[{"index":0,"function":{"arguments":"\"ann\"}"}}]}`, ""),
		ev(`{}`, "tool_calls"),
	}
	p := newProxy(t, newUpstream(t, sseUpstream{events: events, end: "done"}), nil)
	if miss := p.stream(t, question, "", nil); !miss.done || miss.semStatus() != "MISS" {
		t.Fatalf("miss: %s %s", miss.semStatus(), miss.body)
	}
	if hit := p.stream(t, question, "", nil); !reflect.DeepEqual(hit.chunks, events) || hit.semStatus() != "HIT" {
		t.Errorf("hit %s chunks:\n%q\nwant\n%q", hit.semStatus(), hit.chunks, events)
	}
	r := p.post(t, "sk-a", chat("m", "", "user", question))
	var b struct {
		Choices []struct {
			Message struct {
				Content   *string `json:"content"`
				ToolCalls []struct {
					ID       string `json:"id"`
					Function struct {
						Name      string `json:"name"`
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || len(b.Choices) != 1 || len(b.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("non-streaming (%v): %s", err, r.body)
	}
	m := b.Choices[0].Message
	if tc := m.ToolCalls[0]; m.Content != nil || tc.ID != "call_1" || tc.Function.Name != "reset_password" || tc.Function.Arguments != `{"user":"ann"}` {
		t.Errorf("tool call aggregate: %s", r.body)
	}
}

// TestStreamNotStored covers the streams that must never be stored: each
// is relayed as the upstream sent it, and the next request is a miss.
func TestStreamNotStored(t *testing.T) { forEachBackend(t, testStreamNotStored) }

func testStreamNotStored(t *testing.T) {
	complete := []string{ev(`{"role":"assistant","content":""}`, ""), ev(`{"content":"Click reset."}`, ""), ev(`{}`, "stop")}
	cases := []struct {
		name     string
		upstream http.Handler
		mutate   func(*api.Config)
		headers  map[string]string
		// status is the status the client gets; body, when set, a string
		// its body contains.
		status int
		body   string
		// upstreamError reports whether the call counts as an upstream
		// error.
		upstreamError bool
	}{
		{name: "aborted before [DONE]", upstream: sseUpstream{events: complete[:2], end: "abort"}, status: 200, upstreamError: true},
		{name: "ended without [DONE]", upstream: sseUpstream{events: complete, end: "eof"}, status: 200},
		{name: "no finish_reason", upstream: sseUpstream{events: complete[:2], end: "done"}, status: 200, body: "data: [DONE]"},
		{name: "content_filter", upstream: sseUpstream{events: []string{ev(`{"content":"no"}`, "content_filter")}, end: "done"}, status: 200},
		{name: "error event", upstream: sseUpstream{events: append(complete[:2:2], `{"error":{"message":"overloaded","type":"server_error","code":null}}`), end: "done"},
			status: 200, body: "overloaded", upstreamError: true},
		{name: "upstream 500", upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":{"message":"boom","type":"server_error","code":null}}`)
		}), status: 500, body: "boom", upstreamError: true},
		{name: "over the size cap", upstream: sseUpstream{events: complete, end: "done"}, mutate: func(c *api.Config) { c.MaxStreamBytes = 300 },
			status: 200, body: "data: [DONE]"},
		{name: "no-store", upstream: sseUpstream{events: complete, end: "done"}, headers: map[string]string{"Cache-Control": "no-store"},
			status: 200, body: "data: [DONE]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, tc.upstream)
			p := newProxy(t, up, tc.mutate)
			body := chat("m", `"stream":true`, "user", question)
			for i := range 2 {
				req, err := http.NewRequest(http.MethodPost, p.url+"/v1/chat/completions", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer sk-a")
				for k, v := range tc.headers {
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if tc.name == "aborted before [DONE]" {
					if rerr == nil {
						t.Errorf("request %d: the cut stream reached the client as complete:\n%s", i, got)
					}
				} else if rerr != nil {
					t.Fatalf("request %d: read: %v", i, rerr)
				}
				if resp.StatusCode != tc.status || resp.Header.Get(api.HeaderStatus) != "MISS" || !strings.Contains(string(got), tc.body) {
					t.Errorf("request %d: %d %s, want %d MISS containing %q:\n%s", i, resp.StatusCode, resp.Header.Get(api.HeaderStatus), tc.status, tc.body, got)
				}
			}
			if n := up.calls.Load(); n != 2 {
				t.Errorf("upstream calls = %d, want 2", n)
			}
			s := p.cache.Snapshot(t.Context())
			wantErrors := int64(0)
			if tc.upstreamError {
				wantErrors = 2
			}
			if s.Entries != 0 || s.Misses != 2 || s.UpstreamCalls != 2 || s.UpstreamErrors != wantErrors {
				t.Errorf("stats %+v, want no entry, 2 misses and %d upstream errors", s, wantErrors)
			}
		})
	}
}

func TestStreamAndJSONAnswersServeEachOther(t *testing.T) {
	forEachBackend(t, testStreamAndJSONAnswersServeEachOther)
}

func testStreamAndJSONAnswersServeEachOther(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	// Stored from a stream, served as JSON.
	checkComplete(t, "stream miss", p.stream(t, question, "", nil), "MISS", simAnswer(question))
	r := p.post(t, "sk-a", chat("m", "", "user", question))
	if r.status != 200 || r.semStatus() != "HIT" || r.content(t) != simAnswer(question) || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("JSON from a stored stream: %d %s %q %s", r.status, r.semStatus(), r.header.Get("Content-Type"), r.body)
	}
	// Stored from JSON, served as a stream: synthesized chunks.
	other := "What are your opening hours?"
	if m := p.post(t, "sk-a", chat("m", "", "user", other)); m.semStatus() != "MISS" {
		t.Fatalf("JSON miss: %s", m.semStatus())
	}
	s := p.stream(t, other, "", nil)
	checkComplete(t, "stream from a stored JSON answer", s, "HIT", simAnswer(other))
	if len(s.chunks) < len(strings.Fields(simAnswer(other))) {
		t.Errorf("%d chunks for %d words: the content must be split", len(s.chunks), len(strings.Fields(simAnswer(other))))
	}
	if !strings.Contains(s.chunks[len(s.chunks)-1], `"finish_reason":"stop"`) || s.usageChunks(t) != 0 {
		t.Errorf("last chunk %s, want the finish chunk and no usage", s.chunks[len(s.chunks)-1])
	}
	u := p.stream(t, other, `"stream_options":{"include_usage":true}`, nil)
	if u.usageChunks(t) != 1 {
		t.Errorf("include_usage: %d usage chunks, want 1", u.usageChunks(t))
	}
	if n := p.up.calls.Load(); n != 2 {
		t.Errorf("upstream calls = %d, want 2", n)
	}
}

func TestStreamParaphraseIsSemanticHit(t *testing.T) {
	forEachBackend(t, testStreamParaphraseIsSemanticHit)
}

func testStreamParaphraseIsSemanticHit(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	miss := p.stream(t, question, "", nil)
	checkComplete(t, "miss", miss, "MISS", simAnswer(question))
	hit := p.stream(t, paraphrase, "", nil)
	checkComplete(t, "paraphrase", hit, "HIT", simAnswer(question))
	var sim float64
	if _, err := fmt.Sscan(hit.header.Get(api.HeaderSimilarity), &sim); err != nil || hit.header.Get(api.HeaderTier) != "semantic" || sim < testThreshold {
		t.Errorf("tier %q similarity %q, want a semantic hit", hit.header.Get(api.HeaderTier), hit.header.Get(api.HeaderSimilarity))
	}
	if !reflect.DeepEqual(hit.chunks, miss.chunks) {
		t.Errorf("semantic hit chunks differ from the recorded ones")
	}
	// Controls apply: exact mode refuses the semantic hit, and a stricter
	// threshold than the similarity too.
	if r := p.stream(t, paraphrase, "", map[string]string{api.HeaderMode: "exact"}); r.semStatus() != "MISS" {
		t.Errorf("exact mode: %s, want MISS", r.semStatus())
	}
	if r := p.stream(t, question, "", map[string]string{"Cache-Control": "no-cache"}); r.semStatus() != "MISS" || !r.done {
		t.Errorf("no-cache: %s, want MISS", r.semStatus())
	}
	if r := p.stream(t, question, "", map[string]string{api.HeaderMode: "off"}); r.semStatus() != "BYPASS" || !r.done {
		t.Errorf("mode off: %s, want BYPASS", r.semStatus())
	}
	if n := p.up.calls.Load(); n != 4 {
		t.Errorf("upstream calls = %d, want 4", n)
	}
}

func TestStreamClientDisconnect(t *testing.T) { forEachBackend(t, testStreamClientDisconnect) }

func testStreamClientDisconnect(t *testing.T) {
	cancelled := make(chan struct{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: %s\n\n", ev(`{"role":"assistant","content":"Click "}`, ""))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the rest never comes: the proxy must cancel
		close(cancelled)
	}))
	p := newProxy(t, up, nil)
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/v1/chat/completions", strings.NewReader(chat("m", `"stream":true`, "user", question)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, "Click") {
		t.Fatalf("first event: %q %v (relayed before the stream ended)", line, err)
	}
	cancel()
	resp.Body.Close()
	<-cancelled // the upstream call was cancelled with the client
	waitFor(t, func() bool { return p.cache.Stats().Misses.Load() == 1 })
	if n, _ := p.cache.Len(t.Context()); n != 0 {
		t.Errorf("entries = %d, want 0", n)
	}
	if s := p.cache.Snapshot(t.Context()); s.UpstreamErrors != 0 {
		t.Errorf("a client hanging up counted as an upstream error: %+v", s)
	}
}
