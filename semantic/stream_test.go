package semantic_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/semcache/semcache/semantic"
)

// chunk builds a chat.completion.chunk payload with one choice.
func chunk(index int, delta string, finish string) string {
	f := "null"
	if finish != "" {
		f = `"` + finish + `"`
	}
	return `{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":` +
		string(rune('0'+index)) + `,"delta":` + delta + `,"finish_reason":` + f + `}]}`
}

// decode unmarshals a JSON document into a generic value.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON (%v): %s", err, b)
	}
	return m
}

// jsonValue parses a JSON literal for comparisons.
func jsonValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad literal %s: %v", s, err)
	}
	return v
}

func TestAggregateStreamMergesToolCallsByIndex(t *testing.T) {
	chunks := []string{
		chunk(0, `{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}`, ""),
		chunk(0, `{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}`, ""),
		chunk(0, `{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"tz\":"}}]}`, ""),
		chunk(0, `{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}`, ""),
		chunk(0, `{"tool_calls":[{"index":1,"function":{"arguments":"\"CET\"}"}}]}`, ""),
		chunk(0, `{}`, "tool_calls"),
	}
	body, err := semantic.AggregateStream(chunks)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, body)
	want := jsonValue(t, `{
		"id":"chatcmpl-s","object":"chat.completion","created":1700000000,"model":"m",
		"choices":[{"index":0,"finish_reason":"tool_calls","logprobs":null,"message":{
			"role":"assistant","content":null,"tool_calls":[
				{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
				{"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"tz\":\"CET\"}"}}]}}]}`)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("aggregate:\n got %s\nwant %v", body, want)
	}
	if _, ok := semantic.Cacheable(semantic.Upstream{Status: 200, Body: body}); !ok {
		t.Error("a complete tool-call stream is not cacheable")
	}
}

func TestAggregateStreamConcatenatesStringDeltas(t *testing.T) {
	chunks := []string{
		chunk(0, `{"role":"assistant","content":""}`, ""),
		chunk(1, `{"role":"assistant","content":""}`, ""),
		chunk(0, `{"reasoning_content":"Think "}`, ""),
		chunk(0, `{"reasoning_content":"hard."}`, ""),
		chunk(0, `{"content":"Hello "}`, ""),
		chunk(1, `{"content":"Bonjour"}`, ""),
		chunk(0, `{"content":"world"}`, ""),
		chunk(0, `{"content":null}`, "stop"),
		chunk(1, `{}`, "length"),
		`{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}`,
	}
	body, err := semantic.AggregateStream(chunks)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, body)
	want := jsonValue(t, `{
		"id":"chatcmpl-s","object":"chat.completion","created":1700000000,"model":"m",
		"choices":[
			{"index":0,"finish_reason":"stop","logprobs":null,"message":{"role":"assistant","content":"Hello world","reasoning_content":"Think hard."}},
			{"index":1,"finish_reason":"length","logprobs":null,"message":{"role":"assistant","content":"Bonjour"}}],
		"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}`)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("aggregate:\n got %s\nwant %v", body, want)
	}
	usage, ok := semantic.Cacheable(semantic.Upstream{Status: 200, Body: body})
	if !ok || usage.PromptTokens != 7 || usage.CompletionTokens != 5 {
		t.Errorf("Cacheable: %v %+v", ok, usage)
	}
}

func TestAggregateStreamRejects(t *testing.T) {
	for name, chunks := range map[string][]string{
		"not JSON":    {chunk(0, `{"content":"a"}`, ""), `{"choices":[`},
		"error event": {chunk(0, `{"content":"a"}`, ""), `{"error":{"message":"overloaded","type":"server_error"}}`},
		"bad choice":  {`{"choices":[1]}`},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := semantic.AnswerFromStream(chunks); err == nil {
				t.Error("no error")
			}
		})
	}
	// A stream without a finish_reason aggregates, but is not storable.
	body, err := semantic.AggregateStream([]string{chunk(0, `{"content":"a"}`, "")})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := semantic.Cacheable(semantic.Upstream{Status: 200, Body: body}); ok {
		t.Error("a stream without finish_reason is cacheable")
	}
}

// storeStream stores chunks as a streamed answer for prompt through Lookup
// and StoreAnswer and returns the Lookup hit that serves them back.
func storeStream(t *testing.T, e *env, prompt string, chunks []string) semantic.Result {
	t.Helper()
	id := ident(t, "t", prompt)
	r, vec, hit := e.cache.Lookup(t.Context(), id, semantic.Options{})
	if hit || r.Outcome != semantic.Miss || r.Key != id.Key {
		t.Fatalf("first lookup: %+v hit %v, want a miss with the key", r, hit)
	}
	a, err := semantic.AnswerFromStream(chunks)
	if err != nil {
		t.Fatal(err)
	}
	if stored, err := e.cache.StoreAnswer(t.Context(), semantic.Result{}, id, semantic.Options{}, a, vec); !stored || err != nil {
		t.Fatalf("StoreAnswer: %v %v", stored, err)
	}
	r, _, hit = e.cache.Lookup(t.Context(), id, semantic.Options{})
	if !hit || r.Tier != semantic.TierExact {
		t.Fatalf("second lookup: %+v, want an exact hit", r)
	}
	return r
}

func TestLookupAndStoreAnswer(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.8}, nil)
	chunks := []string{
		chunk(0, `{"role":"assistant","content":"","reasoning_content":null}`, ""),
		chunk(0, `{"reasoning_content":"hmm"}`, ""),
		chunk(0, `{"content":"Paris"}`, ""),
		chunk(0, `{}`, "stop"),
	}
	r := storeStream(t, e, promptBase, chunks)
	if !reflect.DeepEqual(r.Stream, chunks) {
		t.Errorf("hit Stream %q, want the recorded chunks", r.Stream)
	}
	var b struct {
		Choices []struct {
			Message map[string]any `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil || len(b.Choices) != 1 || b.Choices[0].Message["content"] != "Paris" || b.Choices[0].Message["reasoning_content"] != "hmm" {
		t.Errorf("hit body %s (%v)", r.Body, err)
	}
	// The semantic tier serves it too.
	near, _, hit := e.cache.Lookup(t.Context(), ident(t, "t", promptNear), semantic.Options{})
	if !hit || near.Tier != semantic.TierSemantic || near.Similarity < 0.8 || len(near.Stream) != len(chunks) {
		t.Errorf("near lookup: %+v", near)
	}
	// no-store: a miss is not kept.
	far := ident(t, "t", promptFar)
	_, vec, _ := e.cache.Lookup(t.Context(), far, semantic.Options{NoStore: true})
	a, _ := semantic.AnswerFromStream(chunks)
	if stored, err := e.cache.StoreAnswer(t.Context(), semantic.Result{}, far, semantic.Options{NoStore: true}, a, vec); stored || err != nil {
		t.Errorf("no-store: stored %v %v", stored, err)
	}
	s := e.cache.Snapshot(t.Context())
	if s.Requests != 4 || s.ExactHits != 1 || s.SemanticHits != 1 || s.Misses != 2 || s.UpstreamCalls != 2 || s.Entries != 1 {
		t.Errorf("stats %+v", s)
	}
}

// payloads decodes chunk payloads for comparison.
func payloads(t *testing.T, chunks []string) []map[string]any {
	t.Helper()
	out := make([]map[string]any, len(chunks))
	for i, c := range chunks {
		out[i] = decode(t, []byte(c))
	}
	return out
}

func TestStreamChunksReplaysRecordedChunks(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.8}, nil)
	usageChunk := `{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}`
	content := []string{
		chunk(0, `{"role":"assistant","content":""}`, ""),
		chunk(0, `{"content":"Hi ","reasoning_content":"x"}`, ""),
		chunk(0, `{"content":"there"}`, ""),
		chunk(0, `{}`, "stop"),
	}
	withUsage := storeStream(t, e, promptBase, append(append([]string(nil), content...), usageChunk))
	without := storeStream(t, e, promptFar, content)

	cases := []struct {
		name         string
		r            semantic.Result
		includeUsage bool
		want         []string
	}{
		{"usage recorded, asked", withUsage, true, append(append([]string(nil), content...), usageChunk)},
		{"usage recorded, not asked: dropped", withUsage, false, content},
		{"no usage recorded, not asked", without, false, content},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := semantic.StreamChunks(tc.r, tc.includeUsage)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("chunks:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
	t.Run("no usage recorded, asked: synthesized", func(t *testing.T) {
		got, err := semantic.StreamChunks(without, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(content)+1 || !reflect.DeepEqual(got[:len(content)], content) {
			t.Fatalf("chunks %q", got)
		}
		last := decode(t, []byte(got[len(content)]))
		if last["object"] != "chat.completion.chunk" || last["id"] != "chatcmpl-s" || len(last["choices"].([]any)) != 0 || last["usage"] == nil {
			t.Errorf("usage chunk %s", got[len(content)])
		}
	})
}

func TestStreamChunksSynthesizesFromJSONAnswer(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.8}, nil)
	answer := `{"id":"chatcmpl-j","object":"chat.completion","created":1700000001,"model":"m","choices":[
		{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"Let me check the weather.","reasoning_content":"The user wants weather.",
			"tool_calls":[{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}}],
		"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}`
	id := ident(t, "t", promptBase)
	_, vec, _ := e.cache.Lookup(t.Context(), id, semantic.Options{})
	up := semantic.Upstream{Status: 200, ContentType: "application/json", Body: []byte(answer)}
	if stored, err := e.cache.StoreAnswer(t.Context(), semantic.Result{}, id, semantic.Options{}, semantic.Answer{Upstream: up}, vec); !stored || err != nil {
		t.Fatalf("StoreAnswer: %v %v", stored, err)
	}
	r, _, _ := e.cache.Lookup(t.Context(), id, semantic.Options{})

	for _, includeUsage := range []bool{false, true} {
		chunks, err := semantic.StreamChunks(r, includeUsage)
		if err != nil {
			t.Fatal(err)
		}
		var words int
		for _, c := range payloads(t, chunks) {
			if c["object"] != "chat.completion.chunk" || c["id"] != "chatcmpl-j" {
				t.Errorf("chunk %v", c)
			}
			if ch, _ := c["choices"].([]any); len(ch) == 1 {
				if d := ch[0].(map[string]any)["delta"].(map[string]any); d["content"] != nil && d["content"] != "" {
					words++
				}
			}
		}
		if words != 5 {
			t.Errorf("content in %d chunks, want one per word (5)", words)
		}
		hasUsage := strings.Contains(chunks[len(chunks)-1], `"usage"`)
		if hasUsage != includeUsage {
			t.Errorf("includeUsage %v: last chunk %s", includeUsage, chunks[len(chunks)-1])
		}
		// Aggregating the synthesized chunks gives the stored answer back.
		body, err := semantic.AggregateStream(chunks)
		if err != nil {
			t.Fatal(err)
		}
		got, want := decode(t, body), decode(t, []byte(answer))
		if !includeUsage {
			delete(want, "usage")
		}
		want["choices"].([]any)[0].(map[string]any)["logprobs"] = nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\n got %s\nwant %s", body, answer)
		}
	}
}

// storeJSON stores answer, a chat.completion body, for prompt through
// Lookup and StoreAnswer and returns the Lookup hit that serves it back.
func storeJSON(t *testing.T, e *env, prompt, answer string) semantic.Result {
	t.Helper()
	id := ident(t, "t", prompt)
	_, vec, _ := e.cache.Lookup(t.Context(), id, semantic.Options{})
	up := semantic.Upstream{Status: 200, ContentType: "application/json", Body: []byte(answer)}
	if stored, err := e.cache.StoreAnswer(t.Context(), semantic.Result{}, id, semantic.Options{}, semantic.Answer{Upstream: up}, vec); !stored || err != nil {
		t.Fatalf("StoreAnswer: %v %v", stored, err)
	}
	r, _, hit := e.cache.Lookup(t.Context(), id, semantic.Options{})
	if !hit {
		t.Fatal("stored answer not found")
	}
	return r
}

// tok is a logprobs entry for token s, with its bytes and one top_logprobs
// alternative.
func tok(s string, logprob string) string {
	bs := make([]string, len(s))
	for i := range len(s) {
		bs[i] = fmt.Sprint(s[i])
	}
	b := "[" + strings.Join(bs, ",") + "]"
	return fmt.Sprintf(`{"token":%q,"logprob":%s,"bytes":%s,"top_logprobs":[{"token":%q,"logprob":%s,"bytes":%s}]}`, s, logprob, b, s, logprob, b)
}

// byteTok is a logprobs entry for a token that is part of a UTF-8
// sequence: OpenAI writes its token as escapes, its bytes as they are.
func byteTok(b ...byte) string {
	bs := make([]string, len(b))
	esc := ""
	for i, x := range b {
		bs[i] = fmt.Sprint(x)
		esc += fmt.Sprintf(`\\x%02x`, x)
	}
	return fmt.Sprintf(`{"token":"%s","logprob":-0.5,"bytes":[%s],"top_logprobs":[]}`, esc, strings.Join(bs, ","))
}

func TestStreamChunksReplaysLogprobsAndChoiceFields(t *testing.T) {
	café := []byte("é")
	cases := []struct {
		name   string
		answer string
		// aligned: every chunk's content tokens spell its content delta.
		aligned bool
	}{
		{"content tokens, one per chunk", `{"id":"chatcmpl-l","object":"chat.completion","created":1700000002,"model":"m","system_fingerprint":"fp_1",
			"choices":[{"index":0,"finish_reason":"stop","stop_reason":null,"content_filter_results":{"hate":{"filtered":false}},
				"message":{"role":"assistant","content":"Un café, merci.","refusal":null,"annotations":[]},
				"logprobs":{"content":[` + strings.Join([]string{tok("Un", "-0.1"), tok(" caf", "-0.2"), byteTok(café[0]), byteTok(café[1]), tok(",", "-0.3"), tok(" merci", "-0.4"), tok(".", "0")}, ",") + `],"refusal":null}}],
			"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`, true},
		{"refusal tokens", `{"id":"chatcmpl-r","object":"chat.completion","created":1700000003,"model":"m",
			"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":null,"refusal":"I can't help."},
				"logprobs":{"content":null,"refusal":[` + tok("I", "-0.1") + `,` + tok(" can't", "-0.2") + `,` + tok(" help.", "-0.3") + `]}}],
			"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`, true},
		{"tokens that do not spell the content", `{"id":"chatcmpl-x","object":"chat.completion","created":1700000004,"model":"m",
			"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"Hello there, friend."},
				"logprobs":{"content":[` + tok("Hi", "-1") + `,` + tok(" you", "-2") + `],"refusal":null}}],
			"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`, false},
		{"empty arrays and two choices", `{"id":"chatcmpl-e","object":"chat.completion","created":1700000005,"model":"m",
			"choices":[
				{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":""},"logprobs":{"content":[],"refusal":[]}},
				{"index":1,"finish_reason":"length","matched_stop":42,"message":{"role":"assistant","content":"ok"},"logprobs":{"content":[` + tok("ok", "-0.01") + `]}}],
			"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, semantic.Config{Threshold: 0.8}, nil)
			r := storeJSON(t, e, promptBase, tc.answer)
			chunks, err := semantic.StreamChunks(r, true)
			if err != nil {
				t.Fatal(err)
			}
			body, err := semantic.AggregateStream(chunks)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := decode(t, body), decode(t, []byte(tc.answer)); !reflect.DeepEqual(got, want) {
				t.Errorf("round trip:\n got %s\nwant %s\nchunks:\n%s", body, tc.answer, strings.Join(chunks, "\n"))
			}
			if !tc.aligned {
				return
			}
			for _, c := range payloads(t, chunks) {
				for _, raw := range c["choices"].([]any) {
					ch := raw.(map[string]any)
					delta := ch["delta"].(map[string]any)
					lp, _ := ch["logprobs"].(map[string]any)
					for _, k := range []string{"content", "refusal"} {
						text, _ := delta[k].(string)
						toks, _ := lp[k].([]any)
						var spelled []byte
						for _, tk := range toks {
							for _, b := range tk.(map[string]any)["bytes"].([]any) {
								spelled = append(spelled, byte(b.(float64)))
							}
						}
						if string(spelled) != text {
							t.Errorf("chunk delta %s %q carries tokens spelling %q", k, text, spelled)
						}
					}
				}
			}
		})
	}
}

func TestAggregateStreamKeepsChoiceFields(t *testing.T) {
	chunks := []string{
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":{"content":[],"refusal":null},"finish_reason":null,"stop_reason":null}]}`,
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[{"token":"a","logprob":0}],"refusal":null},"finish_reason":null,"stop_reason":null}]}`,
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop","stop_reason":7}]}`,
	}
	body, err := semantic.AggregateStream(chunks)
	if err != nil {
		t.Fatal(err)
	}
	want := jsonValue(t, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,
		"message":{"role":"assistant","content":"a"},"logprobs":{"content":[{"token":"a","logprob":0}],"refusal":null},
		"finish_reason":"stop","stop_reason":7}]}`)
	if got := decode(t, body); !reflect.DeepEqual(got, want) {
		t.Errorf("aggregate:\n got %s\nwant %v", body, want)
	}
}
