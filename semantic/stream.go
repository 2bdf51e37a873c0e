package semantic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Lookup answers a request from the cache alone, for callers that go
// upstream themselves (the streaming proxy path): the exact tier, then the
// semantic tier. On a hit it returns the Result, counted like a hit of
// DoWith. On a miss it returns a Result with Outcome Miss and Key id.Key,
// and counts the request as a miss and an upstream call: the caller must go
// upstream, and may then store a complete answer with StoreAnswer, passing
// the returned vector (nil when the prompt was not embedded). Failures fail
// open, as in DoWith.
//
// Lookup does not coalesce: concurrent identical misses each go upstream.
// A stream is relayed to its client as it arrives, so one client's stream
// cannot be handed to others without buffering it or tying them to the
// first client's connection.
func (c *Cache) Lookup(ctx context.Context, id Identity, o Options) (Result, []float32, bool) {
	c.stats.Requests.Add(1)
	if !o.SkipLookup {
		if r, ok := c.exact(ctx, id, o); ok {
			return r, nil, true
		}
	}
	var vec []float32
	var lookup Result
	if c.wantsVector(id, o) {
		var ok bool
		vec, lookup, ok = c.semantic(ctx, id, o)
		if ok {
			c.count(lookup)
			return lookup, vec, true
		}
	}
	r := Result{Outcome: Miss, Key: id.Key, Explored: lookup.Explored, Similarity: lookup.Similarity, explore: lookup.explore, Refused: lookup.Refused,
		Nearest: lookup.Nearest, HasNearest: lookup.HasNearest}
	c.count(r)
	c.stats.UpstreamCalls.Add(1)
	return r, vec, false
}

// Answer is an upstream answer to store with StoreAnswer.
type Answer struct {
	// Upstream is the answer as one chat.completion body (for a streamed
	// answer, the aggregate of Stream).
	Upstream
	// Stream holds a streamed answer's chunk payloads as received (see
	// Entry.Stream); nil for an answer received as one body.
	Stream []string
}

// StoreAnswer stores a, fetched by the caller after the Lookup miss miss,
// under id with vec (Lookup's vector), as DoWith stores its answers: only
// when it is complete (see Cacheable) and o allows it (NoStore, TTL); after
// an exploration (miss.Explored) it queues the verification as DoWith does.
// It reports whether the answer was stored; the error is a store failure,
// already logged and counted in StoreErrors.
func (c *Cache) StoreAnswer(ctx context.Context, miss Result, id Identity, o Options, a Answer, vec []float32) (bool, error) {
	return c.settleMiss(ctx, miss, id, o, a.Upstream, a.Stream, vec)
}

// AnswerFromStream aggregates the data payloads of a complete
// chat.completion.chunk stream (without [DONE]) into an Answer whose body is
// the chat.completion the same request would have got without streaming
// (see AggregateStream) and whose Stream is chunks. It fails when a payload
// is not a JSON object or is an error.
func AnswerFromStream(chunks []string) (Answer, error) {
	body, err := AggregateStream(chunks)
	if err != nil {
		return Answer{}, err
	}
	return Answer{
		Upstream: Upstream{Status: 200, ContentType: "application/json", Body: body},
		Stream:   slices.Clone(chunks),
	}, nil
}

// ErrStreamChunk is wrapped by AggregateStream's errors: a payload that is
// not a chunk, or an error event.
var ErrStreamChunk = errors.New("bad stream chunk")

// AggregateStream merges the payloads of a chat.completion.chunk stream
// into one chat.completion body, choice by choice (by the choices' index):
// content and every other string delta field (refusal, reasoning_content
// and fields this package does not know) are concatenated; tool_calls are
// merged by their index, with function.arguments concatenated and id,
// type and function.name taken once; object fields are merged the same way;
// other values replace earlier ones. The last non-null finish_reason of a
// choice is its finish_reason; the arrays of its logprobs objects (content,
// refusal) are concatenated, and their other fields taken as for choice
// fields. Any other choice field (stop_reason, content_filter_results...)
// takes its last non-null value. id, created, model, system_fingerprint and
// service_tier come from the chunks, and usage from the chunk that carried
// it (absent when none did).
func AggregateStream(chunks []string) ([]byte, error) {
	out := map[string]any{"object": "chat.completion"}
	type choice struct {
		index    json.Number
		message  map[string]any
		calls    map[string]map[string]any // tool calls by index
		finish   any
		logprobs map[string]any
		extra    map[string]any // other choice fields
	}
	choices := map[string]*choice{}
	for i, s := range chunks {
		m, err := decodeChunk(s)
		if err != nil {
			return nil, fmt.Errorf("%w %d: %v", ErrStreamChunk, i, err)
		}
		if e, ok := m["error"]; ok && e != nil {
			return nil, fmt.Errorf("%w %d: an error event", ErrStreamChunk, i)
		}
		for _, k := range []string{"id", "created", "model", "system_fingerprint", "service_tier", "usage"} {
			if v, ok := m[k]; ok && v != nil {
				out[k] = v
			}
		}
		list, _ := m["choices"].([]any)
		for j, raw := range list {
			cm, ok := raw.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w %d: choices[%d] is not an object", ErrStreamChunk, i, j)
			}
			idx := chunkIndex(cm["index"], j)
			ch := choices[idx.String()]
			if ch == nil {
				ch = &choice{index: idx, message: map[string]any{"role": "assistant"}, calls: map[string]map[string]any{}, extra: map[string]any{}}
				choices[idx.String()] = ch
			}
			if d, ok := cm["delta"].(map[string]any); ok {
				for k, v := range d {
					calls, isList := v.([]any)
					if k != "tool_calls" || !isList {
						mergeDeltaField(ch.message, k, v)
						continue
					}
					for n, rawCall := range calls {
						call, ok := rawCall.(map[string]any)
						if !ok {
							return nil, fmt.Errorf("%w %d: tool_calls[%d] is not an object", ErrStreamChunk, i, n)
						}
						ci := chunkIndex(call["index"], n).String()
						if ch.calls[ci] == nil {
							ch.calls[ci] = map[string]any{}
						}
						for ck, cv := range call {
							mergeDeltaField(ch.calls[ci], ck, cv)
						}
					}
				}
			}
			if f := cm["finish_reason"]; f != nil {
				ch.finish = f
			}
			if lp, ok := cm["logprobs"].(map[string]any); ok {
				if ch.logprobs == nil {
					ch.logprobs = map[string]any{}
				}
				for k, v := range lp {
					if add, ok := v.([]any); ok {
						old, _ := ch.logprobs[k].([]any)
						// An empty array stays one, not null.
						ch.logprobs[k] = append(append([]any{}, old...), add...)
					} else {
						setLast(ch.logprobs, k, v)
					}
				}
			}
			for k, v := range cm {
				if !chunkChoiceFields[k] {
					setLast(ch.extra, k, v)
				}
			}
		}
	}
	list := make([]any, 0, len(choices))
	for _, key := range sortedByIndex(choices) {
		ch := choices[key]
		if _, ok := ch.message["content"]; !ok {
			ch.message["content"] = nil // as in a non-streamed tool-call answer
		}
		if len(ch.calls) > 0 {
			calls := make([]any, 0, len(ch.calls))
			for _, ci := range sortedByIndex(ch.calls) {
				call := ch.calls[ci]
				delete(call, "index") // a chat.completion's tool calls have none
				calls = append(calls, call)
			}
			ch.message["tool_calls"] = calls
		}
		var logprobs any
		if ch.logprobs != nil {
			logprobs = ch.logprobs
		}
		c := ch.extra
		c["index"], c["message"], c["finish_reason"], c["logprobs"] = ch.index, ch.message, ch.finish, logprobs
		list = append(list, c)
	}
	out["choices"] = list
	return json.Marshal(out)
}

// chunkChoiceFields are the fields of a chunk's choice that AggregateStream
// merges in their own way; "message" has no place in a chunk and is dropped.
var chunkChoiceFields = map[string]bool{"index": true, "delta": true, "message": true, "finish_reason": true, "logprobs": true}

// setLast sets dst[k] to v unless v is null and dst already has k: the last
// non-null value wins, and a field that was only ever null stays null.
func setLast(dst map[string]any, k string, v any) {
	if _, had := dst[k]; !had || v != nil {
		dst[k] = v
	}
}

// deltaOnceFields are the string fields of a delta that name something rather
// than continue it: they are taken from the first chunk that has them, in
// case an upstream repeats them in every chunk.
var deltaOnceFields = map[string]bool{"role": true, "id": true, "type": true, "name": true}

// mergeDeltaField merges one delta field v into dst[k]: strings are appended
// (except deltaOnceFields, kept from their first non-empty value), objects are
// merged field by field, null never overwrites, and any other value
// replaces the previous one.
func mergeDeltaField(dst map[string]any, k string, v any) {
	old, had := dst[k]
	switch x := v.(type) {
	case nil:
		if !had {
			dst[k] = nil
		}
	case string:
		prev, ok := old.(string)
		switch {
		case !ok || prev == "":
			dst[k] = x
		case !deltaOnceFields[k]:
			dst[k] = prev + x
		}
	case map[string]any:
		obj, ok := old.(map[string]any)
		if !ok {
			obj = map[string]any{}
			dst[k] = obj
		}
		for fk, fv := range x {
			mergeDeltaField(obj, fk, fv)
		}
	default:
		dst[k] = v
	}
}

// chunkIndex returns a choice's or tool call's index field, or its position
// when it has none.
func chunkIndex(v any, pos int) json.Number {
	if n, ok := v.(json.Number); ok {
		return n
	}
	return json.Number(strconv.Itoa(pos))
}

// sortedByIndex returns the keys of m, decimal indexes, in numeric order.
func sortedByIndex[V any](m map[string]V) []string {
	return slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		x, _ := strconv.ParseFloat(a, 64)
		y, _ := strconv.ParseFloat(b, 64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return strings.Compare(a, b)
	})
}

// StreamChunks returns the chat.completion.chunk payloads (without the
// [DONE] terminator) that replay a hit to a streaming request.
//
// For an entry stored from a stream, they are the recorded payloads,
// verbatim, so every delta field (content, tool_calls, reasoning_content,
// fields this package does not know) reaches the client as the upstream
// sent it. A recorded usage chunk (usage set, no choices) is kept only when
// includeUsage (the request's stream_options.include_usage); when asked for
// and none was recorded, one is added from the stored usage.
//
// For an entry stored from a JSON answer, they are synthesized: per choice
// a role chunk (with the message's null fields, e.g. refusal: null), one
// chunk per other message field (reasoning_content, refusal...), the
// content split after each run of white space, one chunk per tool call,
// the finish_reason chunk with the choice's other fields (stop_reason,
// content_filter_results...); then the usage chunk when includeUsage. A
// choice's logprobs object is spread over the chunks as splitLogprobs
// says: content and refusal go one token per chunk, each chunk with its
// token's logprobs, when the tokens spell the text. AggregateStream of the
// result gives the stored choices back.
func StreamChunks(r Result, includeUsage bool) ([]string, error) {
	body, err := decodeChunk(string(r.Body))
	if err != nil {
		return nil, fmt.Errorf("stored answer: %w", err)
	}
	usage := body["usage"]
	if usage == nil {
		usage = map[string]any{
			"prompt_tokens":     r.savedPrompt,
			"completion_tokens": r.savedCompletion,
			"total_tokens":      r.savedPrompt + r.savedCompletion,
		}
	}
	if len(r.Stream) > 0 {
		out := make([]string, 0, len(r.Stream)+1)
		sawUsage := false
		for _, s := range r.Stream {
			if isUsageChunk(s) {
				if includeUsage {
					out = append(out, s)
					sawUsage = true
				}
				continue
			}
			out = append(out, s)
		}
		if includeUsage && !sawUsage {
			out = append(out, encodeChunk(body, "chat.completion.chunk", []any{}, usage))
		}
		return out, nil
	}

	list, _ := body["choices"].([]any)
	var out []string
	for j, raw := range list {
		ch, _ := raw.(map[string]any)
		msg, _ := ch["message"].(map[string]any)
		idx := chunkIndex(ch["index"], j)
		emit := func(delta map[string]any, logprobs map[string]any, finish any, extra map[string]any) {
			c := map[string]any{"index": idx, "delta": delta, "finish_reason": finish, "logprobs": nil}
			if logprobs != nil {
				c["logprobs"] = logprobs
			}
			for k, v := range extra {
				c[k] = v
			}
			out = append(out, encodeChunk(body, "chat.completion.chunk", []any{c}, nil))
		}
		lp := splitLogprobs(ch["logprobs"], msg)
		role, _ := msg["role"].(string)
		if role == "" {
			role = "assistant"
		}
		_, isText := msg["content"].(string)
		first := map[string]any{"role": role, "content": nil}
		if isText {
			first["content"] = ""
		}
		for k, v := range msg {
			if v == nil && k != "role" && k != "content" {
				first[k] = nil // refusal: null, as OpenAI's first chunk has it
			}
		}
		emit(first, lp.first, nil, nil)
		// field emits message field k: its token pieces when its logprobs
		// were split, else content in words and any other field whole.
		field := func(k string, v any) {
			pieces, ok := lp.pieces[k]
			if !ok {
				if s, isText := v.(string); isText && k == "content" {
					pieces = wordPieces(s)
				} else {
					emit(map[string]any{k: v}, nil, nil, nil)
					return
				}
			}
			for _, p := range pieces {
				emit(map[string]any{k: p.text}, lp.chunk(k, p.logprobs), nil, nil)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(msg)) {
			if v := msg[k]; v != nil && k != "role" && k != "content" && k != "tool_calls" {
				field(k, v)
			}
		}
		if isText {
			field("content", msg["content"])
		}
		calls, _ := msg["tool_calls"].([]any)
		for n, rawCall := range calls {
			call, ok := rawCall.(map[string]any)
			if !ok {
				continue
			}
			delta := maps.Clone(call)
			delta["index"] = n
			emit(map[string]any{"tool_calls": []any{delta}}, nil, nil, nil)
		}
		extra := map[string]any{}
		for k, v := range ch {
			if !chunkChoiceFields[k] {
				extra[k] = v // stop_reason, content_filter_results...
			}
		}
		emit(map[string]any{}, nil, ch["finish_reason"], extra)
	}
	if includeUsage {
		out = append(out, encodeChunk(body, "chat.completion.chunk", []any{}, usage))
	}
	return out, nil
}

// piece is one delta of a string message field and the logprobs of the
// tokens it holds (nil when it carries none).
type piece struct {
	text     string
	logprobs []any
}

// wordPieces splits s after each run of white space (see splitAfterSpaces).
func wordPieces(s string) []piece {
	words := splitAfterSpaces(s)
	out := make([]piece, len(words))
	for i, w := range words {
		out[i] = piece{text: w}
	}
	return out
}

// replayLogprobs is a stored choice's logprobs object laid out over the
// chunks that replay it.
type replayLogprobs struct {
	// first is the role chunk's logprobs: the object's non-array fields and
	// the arrays not split over pieces; nil when there are none, or the
	// choice has no logprobs object.
	first map[string]any
	// scalars are the object's non-array fields (refusal: null), repeated
	// in every chunk that carries logprobs.
	scalars map[string]any
	// pieces are the deltas of the message fields whose token arrays were
	// split, by field name.
	pieces map[string][]piece
}

// splitLogprobs lays out a stored choice's logprobs over its replay. Each
// non-empty array field of the object (content, refusal) holds the tokens
// of the message's string field of the same name. When the tokens spell
// that text exactly (by their bytes, else their token strings), the field
// is replayed one token per chunk, each chunk carrying its token's entry
// (tokens that end inside a UTF-8 sequence are joined with the next, so
// every delta is valid text). Otherwise the text is split into words and
// the whole array goes with the first word. Either way concatenating the
// chunks' arrays gives the stored array, in order. An array with no text
// to go with goes in the role chunk.
func splitLogprobs(v any, msg map[string]any) replayLogprobs {
	lp, ok := v.(map[string]any)
	if !ok {
		return replayLogprobs{}
	}
	r := replayLogprobs{first: map[string]any{}, scalars: map[string]any{}, pieces: map[string][]piece{}}
	for k, v := range lp {
		arr, isArr := v.([]any)
		if !isArr {
			r.scalars[k] = v
			r.first[k] = v
			continue
		}
		text, isText := msg[k].(string)
		if !isText || text == "" || len(arr) == 0 || deltaOnceFields[k] {
			r.first[k] = arr
			continue
		}
		pieces, ok := tokenPieces(text, arr)
		if !ok {
			pieces = []piece{{text: text}}
			if k == "content" {
				pieces = wordPieces(text)
			}
			pieces[0].logprobs = arr
		}
		r.pieces[k] = pieces
	}
	if len(r.first) == 0 && len(lp) > 0 {
		r.first = nil // every array went with its text
	}
	return r
}

// chunk returns the logprobs object of a chunk carrying tokens of field k:
// the scalars and k's tokens; nil when it carries none.
func (r replayLogprobs) chunk(k string, tokens []any) map[string]any {
	if tokens == nil {
		return nil
	}
	m := maps.Clone(r.scalars)
	m[k] = tokens
	return m
}

// tokenPieces splits text at the boundaries of the tokens in lps (logprobs
// entries: token, bytes, logprob...), joining tokens that end inside a
// UTF-8 sequence with the next. It reports false when the tokens do not
// spell text exactly.
func tokenPieces(text string, lps []any) ([]piece, bool) {
	var out []piece
	start, pos := 0, 0
	var cur []any
	for _, raw := range lps {
		t, ok := raw.(map[string]any)
		if !ok {
			return nil, false
		}
		tok, ok := tokenBytes(t)
		if !ok || !strings.HasPrefix(text[pos:], tok) {
			return nil, false
		}
		pos += len(tok)
		cur = append(cur, raw)
		if pos == len(text) || utf8.RuneStart(text[pos]) {
			out = append(out, piece{text: text[start:pos], logprobs: cur})
			start, cur = pos, nil
		}
	}
	return out, pos == len(text) && cur == nil
}

// tokenBytes returns the text of one logprobs entry: its bytes array when
// it has one (a token may be part of a UTF-8 sequence, which its token
// string cannot hold), else its token string.
func tokenBytes(t map[string]any) (string, bool) {
	if bs, ok := t["bytes"].([]any); ok {
		b := make([]byte, len(bs))
		for i, x := range bs {
			n, ok := x.(json.Number)
			v, err := strconv.ParseUint(string(n), 10, 8)
			if !ok || err != nil {
				return "", false
			}
			b[i] = byte(v)
		}
		return string(b), true
	}
	tok, ok := t["token"].(string)
	return tok, ok
}

// isUsageChunk reports whether a payload is the usage chunk that
// stream_options.include_usage adds: usage set and no choices.
func isUsageChunk(s string) bool {
	if !strings.Contains(s, `"usage"`) {
		return false
	}
	m, err := decodeChunk(s)
	if err != nil {
		return false
	}
	list, _ := m["choices"].([]any)
	return m["usage"] != nil && len(list) == 0
}

// encodeChunk encodes a stream chunk of the given object
// ("chat.completion.chunk", "text_completion") with the identity fields of
// src (the stored answer or a chunk), the given choices and, when not nil,
// usage.
func encodeChunk(src map[string]any, object string, choices []any, usage any) string {
	c := map[string]any{"object": object, "choices": choices}
	for _, k := range []string{"id", "created", "model", "system_fingerprint", "service_tier"} {
		if v, ok := src[k]; ok {
			c[k] = v
		}
	}
	if usage != nil {
		c["usage"] = usage
	}
	b, err := json.Marshal(c)
	if err != nil {
		// Every value came out of a JSON decoder.
		panic(fmt.Sprintf("semantic: encode chunk: %v", err))
	}
	return string(b)
}

// splitAfterSpaces splits s after each run of white space, so the pieces
// concatenate back to s: "a b  c" gives "a ", "b  ", "c".
func splitAfterSpaces(s string) []string {
	var out []string
	start, inSpace := 0, false
	for i, r := range s {
		sp := unicode.IsSpace(r)
		if inSpace && !sp {
			out = append(out, s[start:i])
			start = i
		}
		inSpace = sp
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// decodeChunk decodes a JSON object (a chunk payload or a stored answer),
// keeping numbers as written.
func decodeChunk(s string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	if strings.TrimSpace(s[dec.InputOffset():]) != "" {
		return nil, errors.New("trailing data after the JSON object")
	}
	return m, nil
}
