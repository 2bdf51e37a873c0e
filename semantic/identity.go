package semantic

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrBadRequest is wrapped by every error that Identify returns for a
// request body the cache cannot accept (malformed JSON, no messages, a field
// of the wrong type). Callers map it to HTTP 400 with errors.Is.
var ErrBadRequest = errors.New("invalid request")

// FieldError is the error for one malformed field of a request body. It
// wraps ErrBadRequest; Field is the path of the field as OpenAI's error
// "param" names it, e.g. "messages[2].role" or "temperature".
type FieldError struct {
	Field string
	// Msg says what the field should be, e.g. "want a number".
	Msg string
}

func (e *FieldError) Error() string {
	return ErrBadRequest.Error() + ": field " + e.Field + ": " + e.Msg
}

// Unwrap makes errors.Is(err, ErrBadRequest) hold.
func (e *FieldError) Unwrap() error { return ErrBadRequest }

// badField returns a *FieldError from "FIELD: message" formatted text.
func badField(format string, args ...any) error {
	field, msg, _ := strings.Cut(fmt.Sprintf(format, args...), ": ")
	return &FieldError{Field: field, Msg: msg}
}

// ignoredParams are the top-level request fields that never change the
// answer and so are left out of the scope. Every other field, including
// unknown ones, is part of the scope: an unknown parameter might change the
// answer, and serving a wrong answer is worse than a miss.
//
//   - stream, stream_options: the transport shape, not the content.
//   - store, metadata: OpenAI's stored-completions bookkeeping.
//   - semcache: this cache's own per-request controls.
var ignoredParams = map[string]bool{
	"stream":         true,
	"stream_options": true,
	"store":          true,
	"metadata":       true,
	"semcache":       true,
}

// jsonKinds is a set of JSON value kinds a parameter may take.
type jsonKinds uint8

const (
	kindNumber jsonKinds = 1 << iota
	kindInteger
	kindString
	kindBool
	kindArray
	kindObject
)

func (k jsonKinds) matches(v any) bool {
	switch v.(type) {
	case json.Number:
		if k&kindNumber != 0 {
			return true
		}
		// An integer is any number with an integral value: 100, 100.0, 1e2.
		f, err := v.(json.Number).Float64()
		return k&kindInteger != 0 && err == nil && f == math.Trunc(f)
	case string:
		return k&kindString != 0
	case bool:
		return k&kindBool != 0
	case []any:
		return k&kindArray != 0
	case map[string]any:
		return k&kindObject != 0
	}
	return false
}

func (k jsonKinds) String() string {
	var names []string
	for _, n := range []struct {
		k    jsonKinds
		name string
	}{{kindNumber, "a number"}, {kindInteger, "an integer"}, {kindString, "a string"}, {kindBool, "a boolean"}, {kindArray, "an array"}, {kindObject, "an object"}} {
		if k&n.k != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, " or ")
}

// paramKinds are the JSON kinds of the OpenAI chat parameters whose type
// Identify checks (null is always allowed). A request with, say, a string
// temperature is refused with 400 before it reaches the cache or the
// upstream. Parameters not listed are passed on unchecked (and are part of
// the scope).
var paramKinds = map[string]jsonKinds{
	"temperature":           kindNumber,
	"top_p":                 kindNumber,
	"presence_penalty":      kindNumber,
	"frequency_penalty":     kindNumber,
	"max_tokens":            kindInteger,
	"max_completion_tokens": kindInteger,
	"n":                     kindInteger,
	"seed":                  kindInteger,
	"top_logprobs":          kindInteger,
	"logprobs":              kindBool,
	"parallel_tool_calls":   kindBool,
	"stop":                  kindString | kindArray,
	"logit_bias":            kindObject,
	"response_format":       kindObject,
	"stream_options":        kindObject,
	"metadata":              kindObject,
	"tools":                 kindArray,
	"functions":             kindArray,
	"tool_choice":           kindString | kindObject,
	"function_call":         kindString | kindObject,
	"user":                  kindString,
}

// paramNames are paramKinds' keys in order, so that the first bad field
// reported is always the same one.
var paramNames = slices.Sorted(maps.Keys(paramKinds))

// Normalization selects how the last user message becomes the exact key
// and the text the semantic tier compares. The zero value is the default:
//
//   - the message is split into a question and its context (a template, a
//     retrieved document) as split describes; the context becomes part of
//     the scope, the question is what is embedded and compared;
//   - prose is normalised: Unicode NFC, lower case, runs of white space
//     collapsed to one space and trimmed. Literals are kept byte for byte:
//     fenced and inline code, URLs (data: URLs too), e-mail addresses,
//     quoted strings and case-sensitive tokens (see isCaseSensitiveToken),
//     since case and spacing change their meaning.
//
// The embedder sees the question as sent; normalisation only decides
// which prompts share an exact-tier entry and what the guards compare.
type Normalization struct {
	// SkipNFC leaves prose in its original Unicode normal form.
	SkipNFC bool
	// KeepCase leaves the letter case of prose as sent.
	KeepCase bool
	// KeepSpace leaves the white space of prose as sent (no collapsing,
	// no trimming).
	KeepSpace bool
	// Question, when set, names the question inside the last user message:
	// the text its group named "question" matches is embedded and
	// compared, and the rest of the message becomes part of the scope
	// (`semcache serve --question-pattern`). When it does not match (or
	// its group is empty), the automatic split applies. Set it with
	// CompileQuestionPattern, which checks the group.
	Question *regexp.Regexp
	// WholeMessage turns the automatic split off: without a matching
	// Question pattern the whole message is the question
	// (`--split-context off`).
	WholeMessage bool
}

// ErrQuestionPattern is returned by CompileQuestionPattern for a pattern
// that does not compile or has no group named "question".
var ErrQuestionPattern = errors.New("invalid question pattern")

// CompileQuestionPattern compiles an operator's question pattern (RE2
// syntax, see regexp/syntax) for Normalization.Question. It must hold a
// group named "question", e.g. `(?s)Customer question:\s*(?P<question>.+)`.
func CompileQuestionPattern(expr string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrQuestionPattern, err)
	}
	if re.SubexpIndex("question") < 0 {
		return nil, fmt.Errorf("%w: %q has no group named \"question\" ((?P<question>...))", ErrQuestionPattern, expr)
	}
	return re, nil
}

// Normalize returns the text s normalised as n says (literals kept, prose
// normalised; no question split). It is a pure function and safe for
// concurrent use.
func (n Normalization) Normalize(s string) string { return n.normalizeProse(s) }

// Identity is the cache identity of one chat-completion request, built by
// Identify: the one place that decides who may see an entry. The same Scope
// is part of the exact Key and is the filter of the semantic tier's KNN
// query, so the two tiers can never disagree.
type Identity struct {
	// Scope is a hex SHA-256 (64 characters) over the canonical JSON of
	// everything that changes the answer except the question: tenant,
	// namespace, model, every parameter not in the ignored list, every
	// earlier message, the last message's other fields, and the context
	// the question was split from (a template, a retrieved passage; see
	// Normalization), normalised.
	Scope string
	// Key is the exact-tier key and the entry id: hex SHA-256 (64
	// characters) of Scope and the normalised question. It is what the
	// X-Semcache-Key response header shows.
	Key string
	// Prompt is the question of the last user message as sent (the whole
	// message when it was not split); it is what gets embedded. For content
	// that is not plain text (images, audio) it is the canonical JSON of
	// the content and Semantic is false.
	Prompt string
	// Normalized is Prompt after Normalization, the text of the exact key
	// and what the Comparer compares. For content that is not plain text
	// it is a prefix no text can produce and the canonical JSON of the
	// content with only its text parts normalised.
	Normalized string
	// Semantic reports whether the semantic tier may be used: the last
	// message is a user message whose content is text only. Requests with
	// image or audio parts use the exact tier only, since the embedder sees
	// text alone.
	Semantic bool
	// Model is the request's model field, for logs and stats.
	Model string
}

// Request is the part of a chat-completion body that the proxy needs to
// route it; Identify fills it in.
type Request struct {
	// Stream is the body's "stream" field.
	Stream bool
	// Cacheable is false when the request cannot be cached at all: the last
	// message is not a user message (a tool result, an assistant prefill).
	Cacheable bool
}

// Identify parses a chat-completion request body and builds its cache
// identity for the given tenant and namespace (either may be empty). The
// tenant is an opaque string chosen by the caller (the proxy uses a hash of
// the bearer token, never the token itself).
//
// Errors wrap ErrBadRequest and name the offending field: malformed JSON, a
// missing or non-string model, a missing or empty messages array, a message
// that is not an object or has no string role, content that is neither a
// string, null nor an array, a content part that is not an object or has
// no non-empty string type, a text part whose text is not a string (see
// checkParts). Identify is a pure function, safe for concurrent use.
func Identify(body []byte, tenant, namespace string, n Normalization) (Identity, Request, error) {
	return IdentifyChat(body, Caller{Tenant: tenant, Namespace: namespace}, n)
}

// IdentifyChat is Identify for a caller with request facts outside the
// body (see Caller). A Caller with only Tenant and Namespace gives the same
// Identity as Identify.
func IdentifyChat(body []byte, who Caller, n Normalization) (Identity, Request, error) {
	if id, rq, ok := identifyChatFast(body, who, n); ok {
		return id, rq, nil
	}
	return identifyChatGeneral(body, who, n)
}

// identifyChatGeneral is IdentifyChat on decoded trees: every body
// identifyChatFast leaves to it, and the reference that path is tested
// against.
func identifyChatGeneral(body []byte, who Caller, n Normalization) (Identity, Request, error) {
	var id Identity
	var rq Request
	fields, err := decodeBody(body)
	if err != nil {
		return id, rq, err
	}
	model, err := who.model(fields)
	if err != nil {
		return id, rq, err
	}
	id.Model = model
	if s, present := fields["stream"]; present && s != nil {
		b, ok := s.(bool)
		if !ok {
			return id, rq, badField("stream: want a boolean")
		}
		rq.Stream = b
	}
	for _, name := range paramNames {
		kinds := paramKinds[name]
		v, present := fields[name]
		if !present || v == nil {
			continue
		}
		if !kinds.matches(v) {
			return id, rq, badField("%s: want %s", name, kinds)
		}
	}
	msgs, ok := fields["messages"].([]any)
	if !ok {
		return id, rq, badField("messages: want an array of message objects")
	}
	if len(msgs) == 0 {
		return id, rq, badField("messages: must not be empty")
	}
	for i, m := range msgs {
		obj, ok := m.(map[string]any)
		if !ok {
			return id, rq, badField("messages[%d]: want an object", i)
		}
		if r, ok := obj["role"].(string); !ok || r == "" {
			return id, rq, badField("messages[%d].role: want a non-empty string", i)
		}
		switch c := obj["content"].(type) {
		case nil, string:
		case []any:
			if err := checkParts(fmt.Sprintf("messages[%d].content", i), c, "text"); err != nil {
				return id, rq, err
			}
		default:
			return id, rq, badField("messages[%d].content: want a string, null or an array of parts", i)
		}
	}

	last := msgs[len(msgs)-1].(map[string]any)
	rq.Cacheable = last["role"] == "user"
	prompt, text := promptText(last["content"], "text")
	context := ""
	if text {
		if rq.Cacheable {
			prompt, context = n.split(prompt)
			context = n.normalizeProse(context)
		}
		id.Normalized = n.normalizeProse(prompt)
	} else {
		// Non-text content (images, audio, files) is hashed verbatim but
		// for the prose of its text parts, under a prefix no text prompt
		// can produce.
		id.Normalized = partsPrefix + canonicalString(n.normalizeParts(last["content"], "text"))
	}
	id.Prompt = prompt
	id.Semantic = rq.Cacheable && text

	// The scope: every field but the ignored ones, with the last message's
	// content removed (it is what the exact key and the embedding cover).
	params := make(map[string]any, len(fields))
	for k, v := range fields {
		if !ignoredParams[k] && k != "messages" {
			params[k] = v
		}
	}
	lastMeta := make(map[string]any, len(last))
	for k, v := range last {
		if k != "content" {
			lastMeta[k] = v
		}
	}
	if err := id.seal(APIChat, who, context, params, msgs[:len(msgs)-1], lastMeta); err != nil {
		return id, rq, err
	}
	return id, rq, nil
}

// seal sets id's Scope and Key from the scope document of an api request:
// the caller, the context split from the question, the parameters, the
// earlier messages or input items and the last one's other fields. The
// document of a chat request with no Caller.Extra is the layout of scope
// version 2 unchanged, so existing entries keep their keys.
func (id *Identity) seal(api API, who Caller, context string, params map[string]any, history []any, lastMeta map[string]any) error {
	scopeDoc := map[string]any{
		"v":         2, // bump when the scope layout or the normalisation changes
		"context":   context,
		"tenant":    who.Tenant,
		"namespace": who.Namespace,
		"params":    params,
		"history":   history,
		"last":      lastMeta,
	}
	if api != APIChat {
		scopeDoc["api"] = string(api)
	}
	if len(who.Extra) > 0 {
		extra := make(map[string]any, len(who.Extra))
		for k, v := range who.Extra {
			extra[k] = v
		}
		scopeDoc["extra"] = extra
	}
	canon, err := canonicalJSON(scopeDoc)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	id.Scope = hashHex(canon)
	id.Key = hashHex([]byte(id.Scope + "\x00" + id.Normalized))
	return nil
}

// decodeBody decodes a request body that must be one JSON object, in
// valid UTF-8 (see checkUTF8), numbers kept as written. Errors wrap
// ErrBadRequest.
func decodeBody(body []byte) (map[string]any, error) {
	if err := checkUTF8(body); err != nil {
		return nil, err
	}
	return decodeObject(body)
}

// checkUTF8 refuses a body that is not valid UTF-8 or that escapes a lone
// UTF-16 surrogate ("\ud800" without its pair): encoding/json would turn
// either into U+FFFD, so two different byte strings would share a key.
func checkUTF8(body []byte) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: body is not valid UTF-8", ErrBadRequest)
	}
	for i := 0; i < len(body); i++ {
		j := bytes.IndexByte(body[i:], '\\')
		if j < 0 {
			break
		}
		i += j
		if i+1 >= len(body) {
			continue
		}
		if body[i+1] != 'u' {
			i++ // an escaped character, perhaps a backslash
			continue
		}
		r, ok := hex4(body, i+2)
		if !ok {
			return nil // malformed escape: the JSON decoder reports it
		}
		switch {
		case r >= 0xd800 && r <= 0xdbff:
			lo, ok := hex4(body, i+8)
			if i+7 >= len(body) || body[i+6] != '\\' || body[i+7] != 'u' || !ok || lo < 0xdc00 || lo > 0xdfff {
				return fmt.Errorf("%w: body escapes a lone UTF-16 surrogate (\\u%04x)", ErrBadRequest, r)
			}
			i += 11
		case r >= 0xdc00 && r <= 0xdfff:
			return fmt.Errorf("%w: body escapes a lone UTF-16 surrogate (\\u%04x)", ErrBadRequest, r)
		default:
			i += 5
		}
	}
	return nil
}

// hex4 parses the 4 hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 32)
	return rune(v), err == nil
}

// checkParts checks the content parts at field (e.g. messages[2].content):
// each must be an object with a non-empty string "type", and a part of
// type textType ("text" in chat, "input_text" in the Responses API) must
// have a string "text" (else a part like {"type":"text"} would be an empty
// prompt and share its entry with every other malformed one). Parts of
// other types (image_url, input_audio, file, types this package does not
// know) are not looked into: they are hashed verbatim.
func checkParts(field string, parts []any, textType string) error {
	for j, p := range parts {
		obj, ok := p.(map[string]any)
		if !ok {
			return badField("%s[%d]: want a content part object", field, j)
		}
		typ, ok := obj["type"].(string)
		if !ok || typ == "" {
			return badField("%s[%d].type: want a non-empty string", field, j)
		}
		if _, ok := obj["text"].(string); typ == textType && !ok {
			return badField("%s[%d].text: want a string", field, j)
		}
	}
	return nil
}

// promptText returns the text of a message content and whether it is text
// only. A string is itself; an array of parts of type textType ({"type":
// "text","text":...} in chat) is their texts joined by newlines; anything else (image, audio or file parts)
// is its canonical JSON, reported as not text. Identify has checked the
// parts (checkParts) before it is called.
func promptText(content any, textType string) (string, bool) {
	switch c := content.(type) {
	case string:
		return c, true
	case []any:
		var parts []string
		for _, p := range c {
			obj, ok := p.(map[string]any)
			if !ok || obj["type"] != textType {
				return canonicalString(content), false
			}
			t, ok := obj["text"].(string)
			if !ok {
				return canonicalString(content), false
			}
			parts = append(parts, t)
		}
		return strings.Join(parts, "\n"), true
	default:
		return canonicalString(content), false
	}
}

// partsPrefix starts the normalised text of non-text content; it holds a
// NUL byte, which a JSON string can only hold escaped, so no text prompt
// shares an exact key with content parts.
const partsPrefix = "\x00parts\x00"

// normalizeParts returns content with the text of its parts of type
// textType normalised and every other part (image_url, input_audio, file)
// as sent: a URL or a base64 payload differing only in case is another
// image.
func (n Normalization) normalizeParts(content any, textType string) any {
	parts, ok := content.([]any)
	if !ok {
		return content
	}
	out := make([]any, len(parts))
	for i, p := range parts {
		obj, ok := p.(map[string]any)
		t, isText := obj["text"].(string)
		if !ok || obj["type"] != textType || !isText {
			out[i] = p
			continue
		}
		c := maps.Clone(obj)
		c["text"] = n.normalizeProse(t)
		out[i] = c
	}
	return out
}

func canonicalString(v any) string {
	b, err := canonicalJSON(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// canonicalJSON encodes v with sorted object keys and numbers in one
// spelling: integers as written, other numbers in Go's shortest 'g' form,
// so 0.70 and 0.7 give the same bytes. Map iteration order can never
// change the result. It is appendCanonical into a new slice.
func canonicalJSON(v any) ([]byte, error) {
	return appendCanonical(make([]byte, 0, 512), v)
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TenantFromToken returns the tenant id for a bearer token: a hex SHA-256
// (first 32 characters) of a fixed prefix and the token, so the token itself
// is never stored or logged. An empty token is the tenant "anonymous".
func TenantFromToken(token string) string {
	if token == "" {
		return "anonymous"
	}
	return "t-" + hashHex([]byte("semcache-tenant\x00" + token))[:32]
}
