package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// responses answers POST /v1/responses: a response object whose one
// output message holds the simulated answer to the last user input (input
// as a string, or the input_text parts of the last user item), or with
// "stream": true the Responses API's event sequence: response.created,
// response.in_progress, response.output_item.added,
// response.content_part.added, one response.output_text.delta per word,
// response.output_text.done, response.content_part.done,
// response.output_item.done and response.completed.
func (s *Sim) responses(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model  string          `json:"model"`
		Input  json.RawMessage `json:"input"`
		Stream bool            `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Input) == 0 {
		badRequest(w, "simulator: want a JSON body with input")
		return
	}
	s.calls.Add(1)
	var prompt string
	if json.Unmarshal(req.Input, &prompt) != nil {
		var items []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		_ = json.Unmarshal(req.Input, &items)
		for _, it := range items {
			if it.Role == "user" {
				prompt = contentText(it.Content)
			}
		}
	}
	answer := AnswerPrefix + prompt
	in, out := Tokens(prompt)+4, Tokens(answer)
	sum := sha256.Sum256([]byte(answer))
	id := "resp_sim" + hex.EncodeToString(sum[:8])
	msgID := "msg_sim" + hex.EncodeToString(sum[8:16])
	created := time.Now().Unix()
	if !sleep(r.Context(), s.cfg.Latency) {
		return
	}
	response := func(status string, output []any, usage any) map[string]any {
		return map[string]any{"id": id, "object": "response", "created_at": created, "status": status,
			"model": req.Model, "output": output, "usage": usage, "error": nil, "incomplete_details": nil}
	}
	part := map[string]any{"type": "output_text", "text": answer, "annotations": []any{}}
	item := map[string]any{"id": msgID, "type": "message", "role": "assistant", "status": "completed", "content": []any{part}}
	usage := map[string]any{"input_tokens": in, "output_tokens": out, "total_tokens": in + out}
	if !req.Stream {
		if !sleep(r.Context(), time.Duration(out)*s.cfg.PerToken) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(response("completed", []any{item}, usage))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl, _ := w.(http.Flusher)
	seq := 0
	send := func(typ string, ev map[string]any) {
		ev["type"], ev["sequence_number"] = typ, seq
		seq++
		b, _ := json.Marshal(ev)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, b)
		if fl != nil {
			fl.Flush()
		}
	}
	at := func(kv ...any) map[string]any {
		m := map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	send("response.created", map[string]any{"response": response("in_progress", []any{}, nil)})
	send("response.in_progress", map[string]any{"response": response("in_progress", []any{}, nil)})
	send("response.output_item.added", map[string]any{"output_index": 0,
		"item": map[string]any{"id": msgID, "type": "message", "role": "assistant", "status": "in_progress", "content": []any{}}})
	send("response.content_part.added", at("part", map[string]any{"type": "output_text", "text": "", "annotations": []any{}}))
	words := strings.SplitAfter(answer, " ")
	perWord := time.Duration(out) * s.cfg.PerToken / time.Duration(len(words))
	for _, wd := range words {
		if !sleep(r.Context(), perWord) {
			return
		}
		send("response.output_text.delta", at("delta", wd, "logprobs", []any{}))
	}
	send("response.output_text.done", at("text", answer, "logprobs", []any{}))
	send("response.content_part.done", at("part", part))
	send("response.output_item.done", map[string]any{"output_index": 0, "item": item})
	send("response.completed", map[string]any{"response": response("completed", []any{item}, usage)})
}

// completions answers the legacy POST /v1/completions: a text_completion
// whose text is the simulated answer to the prompt (a string), or with
// "stream": true one text_completion chunk per word, the finish_reason
// chunk, the usage chunk when stream_options.include_usage, and [DONE].
func (s *Sim) completions(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model         string `json:"model"`
		Prompt        any    `json:"prompt"`
		Stream        bool   `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Prompt == nil {
		badRequest(w, "simulator: want a JSON body with prompt")
		return
	}
	s.calls.Add(1)
	prompt, _ := req.Prompt.(string)
	answer := AnswerPrefix + prompt
	in, out := Tokens(prompt), Tokens(answer)
	usage := map[string]int{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out}
	sum := sha256.Sum256([]byte(answer))
	id := "cmpl-sim-" + hex.EncodeToString(sum[:8])
	created := time.Now().Unix()
	if !sleep(r.Context(), s.cfg.Latency) {
		return
	}
	body := func(choices []any) map[string]any {
		return map[string]any{"id": id, "object": "text_completion", "created": created, "model": req.Model, "choices": choices}
	}
	choice := func(text string, finish any) []any {
		return []any{map[string]any{"index": 0, "text": text, "finish_reason": finish, "logprobs": nil}}
	}
	if !req.Stream {
		if !sleep(r.Context(), time.Duration(out)*s.cfg.PerToken) {
			return
		}
		b := body(choice(answer, "stop"))
		b["usage"] = usage
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(b)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl, _ := w.(http.Flusher)
	send := func(m map[string]any) {
		b, _ := json.Marshal(m)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if fl != nil {
			fl.Flush()
		}
	}
	for _, wd := range strings.SplitAfter(answer, " ") {
		send(body(choice(wd, nil)))
	}
	send(body(choice("", "stop")))
	if req.StreamOptions.IncludeUsage {
		u := body([]any{})
		u["usage"] = usage
		send(u)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// badRequest writes an OpenAI-shaped 400.
func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, msg, nil)
}

// writeError writes an OpenAI-shaped error of the status; code is the
// error's code (nil for none).
func writeError(w http.ResponseWriter, status int, msg string, code any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": "invalid_request_error", "param": nil, "code": code}})
	_, _ = w.Write(b)
}
