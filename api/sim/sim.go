// Package sim is a simulated OpenAI-compatible LLM API: deterministic
// answers that name the prompt they answer, token usage, and a configurable
// latency. `semcache serve` runs it when no upstream is configured, and the
// tests and the benchmark harness use it as their upstream.
package sim

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// AnswerPrefix starts every simulated answer; the rest of the answer is the
// last user message as sent, so a replay can tell which query an answer
// (and so a cache hit) came from.
const AnswerPrefix = "Simulated answer to: "

// Config configures the simulator. Zero values mean no latency.
type Config struct {
	// Latency is the time to first token of every answer.
	Latency time.Duration
	// PerToken is added for every completion token (the generation time).
	PerToken time.Duration
}

// Sim is the simulated upstream. It serves POST /v1/chat/completions,
// POST /v1/responses and POST /v1/completions (each JSON or, with
// "stream": true, server-sent events), POST /v1/embeddings and
// GET /v1/models. It is safe for concurrent use.
type Sim struct {
	cfg   Config
	calls atomic.Int64
	mux   *http.ServeMux
}

// New returns a simulator.
func New(cfg Config) *Sim {
	s := &Sim{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /v1/chat/completions", s.chat)
	s.mux.HandleFunc("POST /v1/responses", s.responses)
	s.mux.HandleFunc("POST /v1/completions", s.completions)
	s.mux.HandleFunc("POST /v1/embeddings", s.embeddings)
	s.mux.HandleFunc("GET /v1/models", s.models)
	return s
}

// Calls returns the number of chat completions, responses and legacy
// completions answered so far.
func (s *Sim) Calls() int64 { return s.calls.Load() }

// ServeHTTP serves the simulator's routes. A path it does not serve gets
// an OpenAI-shaped 404 (code not_found), a method a path does not take an
// OpenAI-shaped 405 (code method_not_allowed) with the Allow header, as
// OpenAI's API answers: the simulator is the default upstream of
// `semcache serve`, so its errors are what a new user's client sees.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		h.ServeHTTP(w, r)
		return
	}
	// The mux's own answer (404, or 405 with Allow) gives the status.
	probe := &statusProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if allow := probe.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	switch probe.status {
	case http.StatusMethodNotAllowed:
		writeError(w, probe.status, fmt.Sprintf("simulator: method %s is not allowed on %s", r.Method, r.URL.Path), "method_not_allowed")
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("simulator: no such endpoint: %s %s", r.Method, r.URL.Path), "not_found")
	}
}

// statusProbe is the http.ResponseWriter the mux's not-found and
// method-not-allowed handlers write to: it keeps the status and headers
// and drops the plain-text body.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int)      { p.status = status }

type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// Tokens estimates the token count of text the way OpenAI's rule of thumb
// does: about 4 characters per token, at least one per word.
func Tokens(text string) int {
	words := len(strings.Fields(text))
	byChars := (len(text) + 3) / 4
	return max(words, byChars)
}

func (s *Sim) chat(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model         string    `json:"model"`
		Messages      []message `json:"messages"`
		Stream        bool      `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"message":"simulator: want a JSON body with messages","type":"invalid_request_error","param":null,"code":null}}`)
		return
	}
	s.calls.Add(1)
	prompt := 0
	var lastUser string
	for _, m := range req.Messages {
		text := contentText(m.Content)
		prompt += Tokens(text) + 4 // per-message overhead, as in OpenAI's counting
		if m.Role == "user" {
			lastUser = text
		}
	}
	answer := AnswerPrefix + lastUser
	completion := Tokens(answer)
	usage := map[string]int{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
	sum := sha256.Sum256([]byte(answer))
	id := "chatcmpl-sim-" + hex.EncodeToString(sum[:8])
	created := time.Now().Unix()
	if !sleep(r.Context(), s.cfg.Latency) {
		return
	}
	if req.Stream {
		var u map[string]int
		if req.StreamOptions.IncludeUsage {
			u = usage
		}
		s.stream(r.Context(), w, id, req.Model, created, answer, u)
		return
	}
	if !sleep(r.Context(), time.Duration(completion)*s.cfg.PerToken) {
		return
	}
	resp := map[string]any{
		"id":      id,
		"object":  "chat.completion",
		"created": created,
		"model":   req.Model,
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": answer},
			"finish_reason": "stop",
		}},
		"usage": usage,
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// stream writes the answer as chat.completion.chunk events, one per word
// with the per-token latency spread over them, then the finish_reason
// chunk, the usage chunk when usage is not nil (stream_options.include_usage)
// and [DONE].
func (s *Sim) stream(ctx context.Context, w http.ResponseWriter, id, model string, created int64, answer string, usage map[string]int) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fl, _ := w.(http.Flusher)
	send := func(chunk map[string]any) {
		chunk["id"], chunk["object"], chunk["created"], chunk["model"] = id, "chat.completion.chunk", created, model
		b, _ := json.Marshal(chunk)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if fl != nil {
			fl.Flush()
		}
	}
	choice := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	send(choice(map[string]any{"role": "assistant", "content": ""}, nil))
	words := strings.SplitAfter(answer, " ")
	perWord := time.Duration(Tokens(answer)) * s.cfg.PerToken / time.Duration(len(words))
	for _, wd := range words {
		if !sleep(ctx, perWord) {
			return
		}
		send(choice(map[string]any{"content": wd}, nil))
	}
	send(choice(map[string]any{}, "stop"))
	if usage != nil {
		send(map[string]any{"choices": []any{}, "usage": usage})
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if fl != nil {
		fl.Flush()
	}
}

// EmbeddingDim is the length of the simulator's embeddings when the
// request has no dimensions field.
const EmbeddingDim = 8

// Embedding returns the simulator's embedding of text under model: dim
// float32s derived from SHA-256 of the model and the text, L2-normalised.
// Equal arguments always give the same vector; any other text or model
// gives an unrelated one. It is what POST /v1/embeddings answers.
func Embedding(model, text string, dim int) []float32 {
	v := make([]float32, dim)
	var sum [sha256.Size]byte
	var norm float64
	for i := range v {
		if i%(sha256.Size/4) == 0 {
			sum = sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", model, text, i/(sha256.Size/4)))
		}
		u := binary.LittleEndian.Uint32(sum[4*(i%(sha256.Size/4)):])
		v[i] = float32(u)/math.MaxUint32*2 - 1
		norm += float64(v[i]) * float64(v[i])
	}
	if norm > 0 {
		n := float32(math.Sqrt(norm))
		for i := range v {
			v[i] /= n
		}
	}
	return v
}

// embeddings answers an embeddings request whose input is a string or an
// array of strings: one Embedding per input, as floats or, with
// "encoding_format": "base64", as base64 of the little-endian float32s, as
// OpenAI sends them. Usage counts Tokens of every input as prompt tokens.
func (s *Sim) embeddings(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		Dimensions     int             `json:"dimensions"`
		EncodingFormat string          `json:"encoding_format"`
	}
	bad := func(msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": "simulator: " + msg, "type": "invalid_request_error", "param": "input", "code": nil}})
		w.Write(b)
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		bad("want a JSON body with model and input")
		return
	}
	var inputs []string
	var one string
	if json.Unmarshal(req.Input, &one) == nil {
		inputs = []string{one}
	} else if json.Unmarshal(req.Input, &inputs) != nil {
		bad("want input as a string or an array of strings")
		return
	}
	if len(inputs) == 0 || req.Dimensions < 0 {
		bad("want a non-empty input and positive dimensions")
		return
	}
	dim := req.Dimensions
	if dim == 0 {
		dim = EmbeddingDim
	}
	if !sleep(r.Context(), s.cfg.Latency) {
		return
	}
	data := make([]any, len(inputs))
	tokens := 0
	for i, in := range inputs {
		vec := Embedding(req.Model, in, dim)
		var emb any = vec
		if req.EncodingFormat == "base64" {
			b := make([]byte, 0, 4*dim)
			for _, f := range vec {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(b)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": emb}
		tokens += Tokens(in)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"object": "list",
		"data":   data,
		"model":  req.Model,
		"usage":  map[string]int{"prompt_tokens": tokens, "total_tokens": tokens},
	})
}

func (s *Sim) models(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"object":"list","data":[{"id":"sim-1","object":"model","created":0,"owned_by":"semcache-simulator"}]}`)
}

// contentText returns the text of a message content: a string, or the text
// parts of an array joined by newlines.
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) == nil {
		var texts []string
		for _, p := range parts {
			if p.Type == "text" || p.Type == "input_text" {
				texts = append(texts, p.Text)
			}
		}
		return strings.Join(texts, "\n")
	}
	return ""
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
