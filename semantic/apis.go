package semantic

import (
	"fmt"
	"maps"
	"slices"
)

// API names the OpenAI endpoint a request was sent to. It is part of the
// scope (chat completions' scope document leaves it out, so entries stored
// before other endpoints were cached keep their keys): the same text sent
// to /v1/responses and to /v1/chat/completions gets answers of different
// shapes and never shares an entry.
type API string

// The endpoints the cache answers.
const (
	// APIChat is POST /v1/chat/completions (IdentifyChat).
	APIChat API = "chat.completions"
	// APIResponses is POST /v1/responses (IdentifyResponses).
	APIResponses API = "responses"
	// APICompletions is the legacy POST /v1/completions
	// (IdentifyCompletion).
	APICompletions API = "completions"
)

// Caller is who sent a request and the facts outside its body that change
// the answer. Every field is part of the scope.
type Caller struct {
	// Tenant is an opaque tenant id (the proxy uses a hash of the
	// credential, never the credential itself); may be empty.
	Tenant string
	// Namespace is a partition inside the tenant; may be empty.
	Namespace string
	// Model is the model of a request whose body names none (an Azure
	// OpenAI deployment, named in the path); empty means the body must name
	// it.
	Model string
	// Extra holds header values and path or query parameters that can
	// change the answer (OpenAI-Beta, an Azure deployment and api-version),
	// by name. Empty values should be left out by the caller: a header sent
	// empty and one not sent are the same request.
	Extra map[string]string
}

// model returns the body's model, or the caller's when the body has none.
func (w Caller) model(fields map[string]any) (string, error) {
	v, present := fields["model"]
	if (!present || v == nil) && w.Model != "" {
		return w.Model, nil
	}
	model, ok := v.(string)
	if !ok || model == "" {
		return "", badField("model: want a non-empty string")
	}
	return model, nil
}

// responsesParamKinds are the JSON kinds of the Responses API parameters
// that IdentifyResponses checks (null is always allowed).
var responsesParamKinds = map[string]jsonKinds{
	"instructions":         kindString | kindArray,
	"temperature":          kindNumber,
	"top_p":                kindNumber,
	"max_output_tokens":    kindInteger,
	"max_tool_calls":       kindInteger,
	"top_logprobs":         kindInteger,
	"parallel_tool_calls":  kindBool,
	"background":           kindBool,
	"store":                kindBool,
	"tools":                kindArray,
	"include":              kindArray,
	"tool_choice":          kindString | kindObject,
	"text":                 kindObject,
	"reasoning":            kindObject,
	"metadata":             kindObject,
	"stream_options":       kindObject,
	"prompt":               kindObject,
	"conversation":         kindString | kindObject,
	"previous_response_id": kindString,
	"truncation":           kindString,
	"service_tier":         kindString,
	"user":                 kindString,
}

// completionParamKinds are the JSON kinds of the legacy completions
// parameters that IdentifyCompletion checks (null is always allowed).
// logprobs is an integer there, not a boolean as in chat.
var completionParamKinds = map[string]jsonKinds{
	"temperature":       kindNumber,
	"top_p":             kindNumber,
	"presence_penalty":  kindNumber,
	"frequency_penalty": kindNumber,
	"max_tokens":        kindInteger,
	"n":                 kindInteger,
	"best_of":           kindInteger,
	"seed":              kindInteger,
	"logprobs":          kindInteger,
	"echo":              kindBool,
	"suffix":            kindString,
	"stop":              kindString | kindArray,
	"logit_bias":        kindObject,
	"stream_options":    kindObject,
	"user":              kindString,
}

// checkKinds checks the kinds of the listed parameters of fields, in name
// order so the first bad field reported is always the same one.
func checkKinds(fields map[string]any, kinds map[string]jsonKinds) error {
	for _, name := range slices.Sorted(maps.Keys(kinds)) {
		v, present := fields[name]
		if present && v != nil && !kinds[name].matches(v) {
			return badField("%s: want %s", name, kinds[name])
		}
	}
	return nil
}

// decodeRequest decodes a request body (decodeBody) and checks what every
// endpoint has: the model (the caller's when the body names none), the
// stream flag and the JSON kinds of the listed parameters. It returns the
// fields and an Identity and Request with Model and Stream set.
func decodeRequest(body []byte, who Caller, kinds map[string]jsonKinds) (map[string]any, Identity, Request, error) {
	var id Identity
	var rq Request
	fields, err := decodeBody(body)
	if err != nil {
		return nil, id, rq, err
	}
	if id.Model, err = who.model(fields); err != nil {
		return nil, id, rq, err
	}
	if rq.Stream, err = streamField(fields); err != nil {
		return nil, id, rq, err
	}
	return fields, id, rq, checkKinds(fields, kinds)
}

// streamField returns the body's "stream" field.
func streamField(fields map[string]any) (bool, error) {
	s, present := fields["stream"]
	if !present || s == nil {
		return false, nil
	}
	b, ok := s.(bool)
	if !ok {
		return false, badField("stream: want a boolean")
	}
	return b, nil
}

// scopeParams returns the fields of a body that are part of the scope:
// all but the ignored ones and the named ones (the prompt's own field).
func scopeParams(fields map[string]any, omit string) map[string]any {
	params := make(map[string]any, len(fields))
	for k, v := range fields {
		if !ignoredParams[k] && k != omit {
			params[k] = v
		}
	}
	return params
}

// ResponsesServerState lists the Responses API fields that make the answer
// depend on state kept by the upstream, outside the request:
// previous_response_id and conversation (earlier turns stored server-side),
// prompt (a stored prompt template, which its owner may edit) and
// background: true (the answer is fetched later by id). A request that sets
// any of them is not cacheable: IdentifyResponses reports it with
// Request.Cacheable false, and the proxy forwards it as a BYPASS.
var ResponsesServerState = []string{"previous_response_id", "conversation", "prompt", "background"}

// IdentifyResponses builds the cache identity of a Responses API request
// (POST /v1/responses) as IdentifyChat does for chat completions.
//
// The question is the text of the last input item, which must be a user
// message (input as a string is one); its content parts of type
// input_text are its text, and any other part (input_image, input_file,
// input_audio) makes the request exact-tier only, hashed as sent. The
// scope holds the caller, the model, instructions, every earlier input
// item as sent, tools, text and reasoning options, sampling parameters and
// every other field but stream, stream_options, store, metadata and
// semcache. "hi", [{"role":"user","content":"hi"}] and the same item with
// "type":"message" or as one input_text part are one request.
//
// A request whose last item is not a user message (a function_call_output)
// or that depends on server-side state (ResponsesServerState) is returned
// with Cacheable false. Errors wrap ErrBadRequest and name the field: a
// missing model, input neither a string nor a non-empty array, an item that
// is not an object, a role that is not a string, an input_text part whose
// text is not a string. Pure, safe for concurrent use.
func IdentifyResponses(body []byte, who Caller, n Normalization) (Identity, Request, error) {
	fields, id, rq, err := decodeRequest(body, who, responsesParamKinds)
	if err != nil {
		return id, rq, err
	}
	var items []any
	switch in := fields["input"].(type) {
	case string:
		items = []any{map[string]any{"role": "user", "content": in}}
	case []any:
		if len(in) == 0 {
			return id, rq, badField("input: must not be empty")
		}
		items = in
	default:
		return id, rq, badField("input: want a string or an array of input items")
	}
	for i, it := range items {
		obj, ok := it.(map[string]any)
		if !ok {
			return id, rq, badField("input[%d]: want an object", i)
		}
		if r, present := obj["role"]; present {
			if s, ok := r.(string); !ok || s == "" {
				return id, rq, badField("input[%d].role: want a non-empty string", i)
			}
		}
		switch c := obj["content"].(type) {
		case nil, string:
		case []any:
			if err := checkParts(fmt.Sprintf("input[%d].content", i), c, "input_text"); err != nil {
				return id, rq, err
			}
		default:
			return id, rq, badField("input[%d].content: want a string or an array of content parts", i)
		}
	}
	last := items[len(items)-1].(map[string]any)
	typ, _ := last["type"].(string)
	rq.Cacheable = last["role"] == "user" && (typ == "" || typ == "message")
	for _, k := range ResponsesServerState {
		if v := fields[k]; v != nil && v != false && v != "" {
			rq.Cacheable = false
		}
	}
	prompt, text := promptText(last["content"], "input_text")
	context := ""
	if text {
		if rq.Cacheable {
			prompt, context = n.split(prompt)
			context = n.normalizeProse(context)
		}
		id.Normalized = n.normalizeProse(prompt)
	} else {
		id.Normalized = partsPrefix + canonicalString(n.normalizeParts(last["content"], "input_text"))
	}
	id.Prompt = prompt
	id.Semantic = rq.Cacheable && text
	lastMeta := make(map[string]any, len(last))
	for k, v := range last {
		if k != "content" && (k != "type" || v != "message") {
			lastMeta[k] = v
		}
	}
	if err := id.seal(APIResponses, who, context, scopeParams(fields, "input"), items[:len(items)-1], lastMeta); err != nil {
		return id, rq, err
	}
	return id, rq, nil
}

// IdentifyCompletion builds the cache identity of a legacy completions
// request (POST /v1/completions) as IdentifyChat does for chat
// completions. The question is the prompt, which must be one string (or an
// array of exactly one string); token arrays and several prompts in one
// request are returned with Cacheable false (the proxy forwards them as a
// BYPASS). The scope holds the caller, the model and every other field but
// stream, stream_options, store, metadata and semcache (suffix, echo,
// best_of, logprobs included). Errors wrap ErrBadRequest and name the
// field. Pure, safe for concurrent use.
func IdentifyCompletion(body []byte, who Caller, n Normalization) (Identity, Request, error) {
	fields, id, rq, err := decodeRequest(body, who, completionParamKinds)
	if err != nil {
		return id, rq, err
	}
	prompt, ok := fields["prompt"].(string)
	if list, isList := fields["prompt"].([]any); isList && len(list) == 1 {
		prompt, ok = list[0].(string)
	}
	switch fields["prompt"].(type) {
	case string, []any:
	default:
		return id, rq, badField("prompt: want a string or an array")
	}
	rq.Cacheable = ok
	context := ""
	if ok {
		prompt, context = n.split(prompt)
		context = n.normalizeProse(context)
		id.Normalized = n.normalizeProse(prompt)
	} else {
		id.Normalized = partsPrefix + canonicalString(fields["prompt"])
	}
	id.Prompt = prompt
	id.Semantic = ok
	if err := id.seal(APICompletions, who, context, scopeParams(fields, "prompt"), nil, nil); err != nil {
		return id, rq, err
	}
	return id, rq, nil
}
