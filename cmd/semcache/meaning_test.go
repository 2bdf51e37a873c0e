package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/semcache/semcache/index/redistest"
)

// The prompts of the end-to-end meaning tests. faqTemplate and ragContext
// are long shared stretches that dominate a whole-message vector.
const (
	faqTemplate = "You are AcmeBot, the friendly assistant of Acme Corp. Always answer politely, in at most two " +
		"sentences, and never share internal information. If you do not know, say so and point the customer " +
		"to the help centre.\n\nCustomer question: "
	ragContext = "Use the context to answer.\n\nContext: Acme ships to the US and Canada. Orders over $50 ship " +
		"free; smaller orders pay a flat fee. Refunds are accepted within 30 days of delivery. Billing questions " +
		"go to the accounts team.\n\nQuestion: "
)

// meaningCase is a pair of requests sent in order to one fresh proxy: the
// first is stored, the second must get the outcome want, and on a miss the
// X-Semcache-Refused header refused ("" for any or none).
type meaningCase struct {
	name    string
	first   openai.ChatCompletionMessage
	second  openai.ChatCompletionMessage
	want    string // HIT or MISS
	refused string
}

func userText(s string) openai.ChatCompletionMessage {
	return openai.ChatCompletionMessage{Role: openai.ChatMessageRoleUser, Content: s}
}

func userImage(url string) openai.ChatCompletionMessage {
	return openai.ChatCompletionMessage{Role: openai.ChatMessageRoleUser, MultiContent: []openai.ChatMessagePart{
		{Type: openai.ChatMessagePartTypeText, Text: "What is in this image?"},
		{Type: openai.ChatMessagePartTypeImageURL, ImageURL: &openai.ChatMessageImageURL{URL: url}},
	}}
}

var meaningCases = []meaningCase{
	{"template: another question", userText(faqTemplate + "How do I reset my password?"),
		userText(faqTemplate + "How do I delete my account?"), "MISS", ""},
	{"template: a rewording", userText(faqTemplate + "How do I reset my password?"),
		userText(faqTemplate + "How can I reset my password?"), "HIT", ""},
	{"context: another question", userText(ragContext + "Is shipping free?"),
		userText(ragContext + "Who handles billing questions?"), "MISS", ""},
	{"context: a number changed", userText(ragContext + "How long do I have to ask for a refund?"),
		userText(strings.Replace(ragContext, "30 days", "14 days", 1) + "How long do I have to ask for a refund?"), "MISS", ""},
	{"context: a word changed", userText(ragContext + "Where do you ship?"),
		userText(strings.Replace(ragContext, "Canada", "Mexico", 1) + "Where do you ship?"), "MISS", ""},
	{"context: a rewording", userText(ragContext + "Is shipping free?"),
		userText(ragContext + "is shipping free??"), "HIT", ""},
	{"numbers", userText("Is 17 a prime number?"), userText("Is 21 a prime number?"), "MISS", "number"},
	{"numbers: decimals", userText("What is 2.5% of $1,200?"), userText("What is 2.6% of $1,200?"), "MISS", "number"},
	{"opposites", userText("How do I enable two-factor authentication?"),
		userText("How do I disable two-factor authentication?"), "MISS", "opposite"},
	{"opposites: turn on/off", userText("How do I turn on dark mode on my phone?"),
		userText("How do I turn off dark mode on my phone?"), "MISS", "opposite"},
	{"swapped roles", userText("How do I transfer money from savings to checking?"),
		userText("How do I transfer money from checking to savings?"), "MISS", "roles"},
	{"image URL case", userImage("https://images.example.com/cats/Photo_A.png"),
		userImage("https://images.example.com/cats/photo_a.png"), "MISS", ""},
	{"base64 case", userText("Decode this base64 string: SGVsbG8gV29ybGQh"),
		userText("Decode this base64 string: sgvsbg8gv29ybgqh"), "MISS", ""},
	{"code case", userText("What does this print?\n```python\nprint('Hello'.upper())\n```"),
		userText("What does this print?\n```python\nprint('Hello'.Upper())\n```"), "MISS", ""},
	{"prose case and space", userText("What are your opening hours?"),
		userText("  what are   your OPENING hours?"), "HIT", ""},
}

// TestServeMeaning sends each class of meaning change through `semcache
// serve` at its defaults with a real OpenAI client, on the memory backend
// and, when the RediSearch module is available, on Redis: a stored answer
// is never served to a prompt that means something else, and rewordings
// and case-only changes of prose still hit.
func TestServeMeaning(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			for _, tc := range meaningCases {
				t.Run(tc.name, func(t *testing.T) {
					args := []string{"--listen", "127.0.0.1:0", "--sim-latency", "0s", "--sim-per-token-latency", "0s"}
					if backend == "redis" {
						srv := redistest.StartSearch(t) // skips without SEMCACHE_TEST_REDISEARCH_MODULE
						args = append(args, "--backend", "redis", "--redis-url", srv.URL())
					}
					cfg, err := parseServe(args, env(nil), &bytes.Buffer{})
					if err != nil {
						t.Fatal(err)
					}
					base, _, stop := startServe(t, cfg)
					defer func() {
						if err := stop(); err != nil {
							t.Errorf("shutdown: %v", err)
						}
					}()
					oc := openai.DefaultConfig("sk-test")
					oc.BaseURL = base + "/v1"
					client := openai.NewClientWithConfig(oc)
					ask := func(m openai.ChatCompletionMessage) (openai.ChatCompletionResponse, error) {
						return client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
							Model: "sim-1", Messages: []openai.ChatCompletionMessage{m}})
					}
					first, err := ask(tc.first)
					if err != nil {
						t.Fatal(err)
					}
					if s := first.Header().Get("X-Semcache-Status"); s != "MISS" {
						t.Fatalf("first request: %s, want MISS", s)
					}
					second, err := ask(tc.second)
					if err != nil {
						t.Fatal(err)
					}
					h := second.Header()
					if got := h.Get("X-Semcache-Status"); got != tc.want {
						t.Errorf("second request: %s (tier %q, similarity %q, refused %q), want %s",
							got, h.Get("X-Semcache-Tier"), h.Get("X-Semcache-Similarity"), h.Get("X-Semcache-Refused"), tc.want)
					}
					// The simulated upstream answers from the text, so two
					// image requests with one text get one answer.
					served := first.Choices[0].Message.Content == second.Choices[0].Message.Content
					if tc.want == "MISS" && served && tc.second.MultiContent == nil {
						t.Errorf("the second request was served the first one's answer %q", first.Choices[0].Message.Content)
					}
					if tc.want == "MISS" && tc.refused != "" {
						if h.Get("X-Semcache-Refused") != tc.refused {
							t.Errorf("X-Semcache-Refused %q, want %q", h.Get("X-Semcache-Refused"), tc.refused)
						}
						checkRefusalCounted(t, base, tc.refused)
					}
				})
			}
		})
	}
}

// checkRefusalCounted checks that the stats and /metrics of the server at
// base count one refusal for reason.
func checkRefusalCounted(t *testing.T, base, reason string) {
	t.Helper()
	get := func(path string) []byte {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var stats struct {
		Refusals map[string]int64 `json:"guard_refusals"`
	}
	if err := json.Unmarshal(get("/api/v1/cache/stats"), &stats); err != nil {
		t.Fatal(err)
	}
	if stats.Refusals[reason] != 1 {
		t.Errorf("stats guard_refusals %v, want %s 1", stats.Refusals, reason)
	}
	if line := `semcache_guard_refusals_total{reason="` + reason + `"} 1`; !strings.Contains(string(get("/metrics")), line) {
		t.Errorf("/metrics lacks %s", line)
	}
}

// TestGoOpenAIStreamGetsHits: go-openai sends Cache-Control: no-cache with
// Accept: text/event-stream on every stream; the repeat of a streamed
// request is still a hit, with the same text. Chat completions and
// embeddings through the same client hit on their repeat too.
func TestGoOpenAIStreamGetsHits(t *testing.T) {
	cfg, err := parseServe([]string{"--listen", "127.0.0.1:0", "--sim-latency", "0s", "--sim-per-token-latency", "0s"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	base, _, stop := startServe(t, cfg)
	defer stop()
	oc := openai.DefaultConfig("sk-test")
	oc.BaseURL = base + "/v1"
	client := openai.NewClientWithConfig(oc)
	var texts []string
	for i, want := range []string{"MISS", "HIT"} {
		st, err := client.CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
			Model: "sim-1", Stream: true, Messages: []openai.ChatCompletionMessage{userText("What are your opening hours?")}})
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Header().Get("X-Semcache-Status"); got != want {
			t.Errorf("stream %d: %s, want %s", i, got, want)
		}
		var b strings.Builder
		for {
			r, err := st.Recv()
			if err != nil {
				break
			}
			if len(r.Choices) > 0 {
				b.WriteString(r.Choices[0].Delta.Content)
			}
		}
		st.Close()
		texts = append(texts, b.String())
	}
	if texts[0] == "" || texts[0] != texts[1] {
		t.Errorf("streamed texts %q, want one non-empty text twice", texts)
	}
	// Chat and embeddings through the same client: a repeat is a hit.
	for i, want := range []string{"MISS", "HIT"} {
		r, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
			Model: "sim-1", Messages: []openai.ChatCompletionMessage{userText("Do you deliver on Sundays?")}})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Header().Get("X-Semcache-Status"); got != want || r.Choices[0].Message.Content == "" {
			t.Errorf("chat %d: %s %q, want %s with an answer", i, got, r.Choices[0].Message.Content, want)
		}
		e, err := client.CreateEmbeddings(context.Background(), openai.EmbeddingRequest{
			Model: "sim-embed", Input: []string{"opening hours", "delivery on Sundays"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Header().Get("X-Semcache-Status"); got != want || len(e.Data) != 2 || len(e.Data[1].Embedding) == 0 {
			t.Errorf("embeddings %d: %s, %d vectors, want %s with 2", i, got, len(e.Data), want)
		}
	}
}
