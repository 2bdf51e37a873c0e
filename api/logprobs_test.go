package api_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/semcache/semcache/semantic"
)

// TestStreamHitOfJSONAnswerKeepsLogprobs stores a JSON answer with
// logprobs and a provider's choice field, then asks for it as a stream:
// the replayed chunks aggregate back to the stored answer, logprobs and
// all.
func TestStreamHitOfJSONAnswerKeepsLogprobs(t *testing.T) {
	forEachBackend(t, testStreamHitOfJSONAnswerKeepsLogprobs)
}

func testStreamHitOfJSONAnswerKeepsLogprobs(t *testing.T) {
	const answer = `{"id":"chatcmpl-lp","object":"chat.completion","created":1700000000,"model":"m",
		"choices":[{"index":0,"finish_reason":"stop","stop_reason":null,
			"message":{"role":"assistant","content":"Use the reset link.","refusal":null},
			"logprobs":{"content":[
				{"token":"Use","logprob":-0.01,"bytes":[85,115,101],"top_logprobs":[]},
				{"token":" the","logprob":-0.02,"bytes":[32,116,104,101],"top_logprobs":[]},
				{"token":" reset","logprob":-0.3,"bytes":[32,114,101,115,101,116],"top_logprobs":[]},
				{"token":" link","logprob":-0.4,"bytes":[32,108,105,110,107],"top_logprobs":[]},
				{"token":".","logprob":0,"bytes":[46],"top_logprobs":[]}],"refusal":null}}],
		"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}}`
	p := newProxy(t, newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(answer))
	})), nil)
	body := chat("m", `"logprobs":true`, "user", question)
	if r := p.post(t, "sk-a", body); r.status != 200 || r.semStatus() != "MISS" {
		t.Fatalf("JSON miss: %d %s %s", r.status, r.semStatus(), r.body)
	}
	s := parseSSE(t, p.postH(t, "sk-a", chat("m", `"logprobs":true,"stream":true,"stream_options":{"include_usage":true}`, "user", question), nil))
	if s.semStatus() != "HIT" || !s.done {
		t.Fatalf("stream: %s (done %v), want a HIT: %s", s.semStatus(), s.done, s.body)
	}
	agg, err := semantic.AggregateStream(s.chunks)
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if err := json.Unmarshal(agg, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(answer), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("aggregated replay:\n got %s\nwant %s", agg, answer)
	}
	if len(s.chunks) < 7 { // role, five tokens, finish (and usage)
		t.Errorf("%d chunks, want one per token", len(s.chunks))
	}
}
