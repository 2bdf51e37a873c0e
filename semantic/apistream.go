package semantic

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// responseFailureEvents are the Responses API stream events after which
// the answer is not complete and must not be stored.
var responseFailureEvents = map[string]bool{
	"error": true, "response.failed": true, "response.incomplete": true, "response.cancelled": true,
}

// AnswerFromResponseEvents turns the data payloads of a complete Responses
// API event stream (each a JSON object whose "type" is its event name) into
// an Answer: its body is the response object of the response.completed
// event, the answer the same request would have got without streaming, and
// its Stream is the payloads as received, replayed verbatim by
// ResponseEvents. It fails when a payload is not a JSON object, when an
// error, response.failed, response.incomplete or response.cancelled event
// occurs, or when no response.completed event carries a response whose
// status is "completed".
func AnswerFromResponseEvents(payloads []string) (Answer, error) {
	var body []byte
	for i, p := range payloads {
		m, err := decodeChunk(p)
		if err != nil {
			return Answer{}, fmt.Errorf("%w %d: %v", ErrStreamChunk, i, err)
		}
		typ, _ := m["type"].(string)
		if responseFailureEvents[typ] {
			return Answer{}, fmt.Errorf("%w %d: a %s event", ErrStreamChunk, i, typ)
		}
		if typ == "response.completed" {
			if body, err = json.Marshal(m["response"]); err != nil {
				return Answer{}, fmt.Errorf("%w %d: %v", ErrStreamChunk, i, err)
			}
		}
	}
	if body == nil {
		return Answer{}, fmt.Errorf("%w: no response.completed event", ErrStreamChunk)
	}
	up := Upstream{Status: 200, ContentType: "application/json", Body: body}
	if _, ok := cacheableResponse(body); !ok {
		return Answer{}, fmt.Errorf("%w: the completed response is not complete", ErrStreamChunk)
	}
	return Answer{Upstream: up, Stream: slices.Clone(payloads)}, nil
}

// ResponseEvents returns the Responses API event payloads (JSON objects
// whose "type" is the event name, numbered by sequence_number) that replay
// a hit to a streaming request.
//
// For an entry stored from a stream they are the recorded payloads,
// verbatim. For an entry stored from a JSON response they are synthesized
// in the order the API sends them: response.created and
// response.in_progress (the response with status in_progress and no
// output), then per output item response.output_item.added; for a message,
// per content part response.content_part.added, the text in
// response.output_text.delta events split after each run of white space
// (response.refusal.delta for a refusal), response.output_text.done (or
// response.refusal.done) and response.content_part.done; for a function
// call, response.function_call_arguments.delta and .done; then
// response.output_item.done; last response.completed with the stored
// response. Concatenating the deltas gives the stored text exactly.
func ResponseEvents(r Result) ([]string, error) {
	if len(r.Stream) > 0 {
		return slices.Clone(r.Stream), nil
	}
	resp, err := decodeChunk(string(r.Body))
	if err != nil || resp["object"] != "response" {
		return nil, fmt.Errorf("stored answer: not a response object")
	}
	var out []string
	emit := func(typ string, fields map[string]any) {
		fields["type"] = typ
		fields["sequence_number"] = len(out)
		b, err := json.Marshal(fields)
		if err != nil {
			// Every value came out of a JSON decoder.
			panic(fmt.Sprintf("semantic: encode event: %v", err))
		}
		out = append(out, string(b))
	}
	start := maps.Clone(resp)
	start["status"], start["output"], start["usage"] = "in_progress", []any{}, nil
	delete(start, "output_text")
	emit("response.created", map[string]any{"response": start})
	emit("response.in_progress", map[string]any{"response": start})
	items, _ := resp["output"].([]any)
	for oi, raw := range items {
		item, ok := raw.(map[string]any)
		if !ok {
			return nil, errors.New("stored answer: an output item is not an object")
		}
		itemID := item["id"]
		added := maps.Clone(item)
		if _, has := item["status"]; has {
			added["status"] = "in_progress"
		}
		switch item["type"] {
		case "message":
			added["content"] = []any{}
		case "function_call":
			added["arguments"] = ""
		}
		emit("response.output_item.added", map[string]any{"output_index": oi, "item": added})
		switch item["type"] {
		case "message":
			parts, _ := item["content"].([]any)
			for ci, rawPart := range parts {
				part, _ := rawPart.(map[string]any)
				kind, field := "output_text", "text"
				if part["type"] == "refusal" {
					kind, field = "refusal", "refusal"
				}
				text, _ := part[field].(string)
				empty := maps.Clone(part)
				empty[field] = ""
				if kind == "output_text" {
					empty["annotations"] = []any{}
				}
				at := map[string]any{"item_id": itemID, "output_index": oi, "content_index": ci}
				with := func(extra map[string]any) map[string]any {
					m := maps.Clone(at)
					maps.Copy(m, extra)
					return m
				}
				emit("response.content_part.added", with(map[string]any{"part": empty}))
				for _, w := range splitAfterSpaces(text) {
					d := with(map[string]any{"delta": w})
					if kind == "output_text" {
						d["logprobs"] = []any{}
					}
					emit("response."+kind+".delta", d)
				}
				done := with(map[string]any{field: text})
				if kind == "output_text" {
					lp, _ := part["logprobs"].([]any)
					done["logprobs"] = append([]any{}, lp...)
				}
				emit("response."+kind+".done", done)
				emit("response.content_part.done", with(map[string]any{"part": part}))
			}
		case "function_call":
			args, _ := item["arguments"].(string)
			at := map[string]any{"item_id": itemID, "output_index": oi}
			d := maps.Clone(at)
			d["delta"] = args
			emit("response.function_call_arguments.delta", d)
			done := maps.Clone(at)
			done["arguments"] = args
			emit("response.function_call_arguments.done", done)
		}
		emit("response.output_item.done", map[string]any{"output_index": oi, "item": item})
	}
	emit("response.completed", map[string]any{"response": resp})
	return out, nil
}

// AnswerFromCompletionStream aggregates the data payloads of a complete
// legacy completions stream (text_completion chunks, without [DONE]) into
// an Answer whose body is the text_completion the same request would have
// got without streaming: per choice (by index) the texts concatenated, the
// last non-null finish_reason and logprobs arrays concatenated; id,
// created, model, system_fingerprint and usage from the chunks. Its Stream
// is chunks. It fails when a payload is not a JSON object or is an error.
func AnswerFromCompletionStream(chunks []string) (Answer, error) {
	out := map[string]any{"object": "text_completion"}
	type choice struct {
		index    json.Number
		text     strings.Builder
		finish   any
		logprobs map[string]any
	}
	choices := map[string]*choice{}
	for i, s := range chunks {
		m, err := decodeChunk(s)
		if err != nil {
			return Answer{}, fmt.Errorf("%w %d: %v", ErrStreamChunk, i, err)
		}
		if e, ok := m["error"]; ok && e != nil {
			return Answer{}, fmt.Errorf("%w %d: an error event", ErrStreamChunk, i)
		}
		for _, k := range []string{"id", "created", "model", "system_fingerprint", "usage"} {
			if v, ok := m[k]; ok && v != nil {
				out[k] = v
			}
		}
		list, _ := m["choices"].([]any)
		for j, raw := range list {
			cm, ok := raw.(map[string]any)
			if !ok {
				return Answer{}, fmt.Errorf("%w %d: choices[%d] is not an object", ErrStreamChunk, i, j)
			}
			idx := chunkIndex(cm["index"], j)
			ch := choices[idx.String()]
			if ch == nil {
				ch = &choice{index: idx}
				choices[idx.String()] = ch
			}
			t, _ := cm["text"].(string)
			ch.text.WriteString(t)
			if f := cm["finish_reason"]; f != nil {
				ch.finish = f
			}
			if lp, ok := cm["logprobs"].(map[string]any); ok {
				if ch.logprobs == nil {
					ch.logprobs = map[string]any{}
				}
				for k, v := range lp {
					old, _ := ch.logprobs[k].([]any)
					if add, ok := v.([]any); ok {
						ch.logprobs[k] = append(old, add...)
					} else if v != nil {
						ch.logprobs[k] = v
					}
				}
			}
		}
	}
	list := make([]any, 0, len(choices))
	for _, key := range sortedByIndex(choices) {
		ch := choices[key]
		var logprobs any
		if ch.logprobs != nil {
			logprobs = ch.logprobs
		}
		list = append(list, map[string]any{"index": ch.index, "text": ch.text.String(), "finish_reason": ch.finish, "logprobs": logprobs})
	}
	out["choices"] = list
	body, err := json.Marshal(out)
	if err != nil {
		return Answer{}, err
	}
	return Answer{Upstream: Upstream{Status: 200, ContentType: "application/json", Body: body}, Stream: slices.Clone(chunks)}, nil
}

// CompletionChunks returns the text_completion chunk payloads (without
// [DONE]) that replay a legacy completions hit to a streaming request: the
// recorded payloads of an entry stored from a stream (its usage chunk kept
// only when includeUsage), or, for an entry stored from a JSON answer, per
// choice its text split after each run of white space and a last chunk
// with its finish_reason and logprobs, then a usage chunk when
// includeUsage.
func CompletionChunks(r Result, includeUsage bool) ([]string, error) {
	body, err := decodeChunk(string(r.Body))
	if err != nil || body["object"] != "text_completion" {
		return nil, fmt.Errorf("stored answer: not a text completion")
	}
	if len(r.Stream) > 0 {
		out := make([]string, 0, len(r.Stream))
		for _, s := range r.Stream {
			if !isUsageChunk(s) || includeUsage {
				out = append(out, s)
			}
		}
		return out, nil
	}
	chunk := func(choices []any, usage any) string { return encodeChunk(body, "text_completion", choices, usage) }
	var out []string
	list, _ := body["choices"].([]any)
	for j, raw := range list {
		ch, _ := raw.(map[string]any)
		idx := chunkIndex(ch["index"], j)
		text, _ := ch["text"].(string)
		for _, w := range splitAfterSpaces(text) {
			out = append(out, chunk([]any{map[string]any{"index": idx, "text": w, "finish_reason": nil, "logprobs": nil}}, nil))
		}
		out = append(out, chunk([]any{map[string]any{"index": idx, "text": "", "finish_reason": ch["finish_reason"], "logprobs": ch["logprobs"]}}, nil))
	}
	if includeUsage {
		usage := body["usage"]
		if usage == nil {
			usage = map[string]any{"prompt_tokens": r.savedPrompt, "completion_tokens": r.savedCompletion, "total_tokens": r.savedPrompt + r.savedCompletion}
		}
		out = append(out, chunk([]any{}, usage))
	}
	return out, nil
}
