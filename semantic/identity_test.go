package semantic

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// baseBody is the request most identity tests start from: a system message,
// an earlier user/assistant exchange, a tool and a temperature.
const baseBody = `{"model":"gpt-4o-mini","temperature":0.7,"messages":[` +
	`{"role":"system","content":"You are terse."},` +
	`{"role":"user","content":"Hi"},` +
	`{"role":"assistant","content":"Hello!"},` +
	`{"role":"user","content":"What is Go?"}],` +
	`"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}]}`

// baseRequest returns a fresh, mutable decoding of baseBody.
func baseRequest(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(baseBody), &m); err != nil {
		t.Fatalf("decode baseBody: %v", err)
	}
	return m
}

// messages returns the request's messages as objects, for mutation.
func messages(t *testing.T, req map[string]any) []any {
	t.Helper()
	msgs, ok := req["messages"].([]any)
	if !ok {
		t.Fatalf("messages is %T", req["messages"])
	}
	return msgs
}

func message(t *testing.T, req map[string]any, i int) map[string]any {
	t.Helper()
	msgs := messages(t, req)
	if i < 0 {
		i += len(msgs)
	}
	m, ok := msgs[i].(map[string]any)
	if !ok {
		t.Fatalf("messages[%d] is %T", i, msgs[i])
	}
	return m
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode request: %v", err)
	}
	return b
}

// identify calls Identify and fails the test on an error.
func identify(t *testing.T, body []byte, tenant, namespace string, n Normalization) (Identity, Request) {
	t.Helper()
	id, rq, err := Identify(body, tenant, namespace, n)
	if err != nil {
		t.Fatalf("Identify(%s): %v", body, err)
	}
	checkHash(t, "Scope", id.Scope)
	checkHash(t, "Key", id.Key)
	if id.Scope == id.Key {
		t.Errorf("Scope and Key are both %s", id.Scope)
	}
	return id, rq
}

// checkHash fails unless s is a lower-case hex SHA-256 (64 characters).
func checkHash(t *testing.T, name, s string) {
	t.Helper()
	if len(s) != 64 || strings.ToLower(s) != s {
		t.Errorf("%s = %q: want 64 lower-case hex characters", name, s)
		return
	}
	if _, err := hex.DecodeString(s); err != nil {
		t.Errorf("%s = %q: not hex: %v", name, s, err)
	}
}

func TestIdentifyCanonicalJSON(t *testing.T) {
	base, _ := identify(t, []byte(baseBody), "tenant", "ns", Normalization{})
	tests := []struct {
		name string
		body string
	}{
		{"base", baseBody},
		{
			"top-level keys permuted",
			`{"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}],` +
				`"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"What is Go?"}],` +
				`"temperature":0.7,"model":"gpt-4o-mini"}`,
		},
		{
			"keys permuted inside messages and tools",
			`{"model":"gpt-4o-mini","temperature":0.7,"messages":[` +
				`{"content":"You are terse.","role":"system"},{"content":"Hi","role":"user"},{"content":"Hello!","role":"assistant"},{"content":"What is Go?","role":"user"}],` +
				`"tools":[{"function":{"parameters":{"properties":{"q":{"type":"string"}},"type":"object"},"name":"lookup"},"type":"function"}]}`,
		},
		{
			"white space between tokens",
			"{\n\t\"model\" : \"gpt-4o-mini\",\r\n  \"temperature\":  0.7 ,\n \"messages\" : [\n" +
				"  { \"role\": \"system\", \"content\": \"You are terse.\" },\n" +
				"  { \"role\": \"user\", \"content\": \"Hi\" },\n" +
				"  { \"role\": \"assistant\", \"content\": \"Hello!\" },\n" +
				"  { \"role\": \"user\", \"content\": \"What is Go?\" }\n ],\n" +
				" \"tools\": [ { \"type\": \"function\", \"function\": { \"name\": \"lookup\", \"parameters\": { \"type\": \"object\", \"properties\": { \"q\": { \"type\": \"string\" } } } } } ]\n}\n",
		},
		{"temperature 0.70", strings.Replace(baseBody, `"temperature":0.7`, `"temperature":0.70`, 1)},
		{"temperature 7e-1", strings.Replace(baseBody, `"temperature":0.7`, `"temperature":7e-1`, 1)},
		{"temperature 7E-1", strings.Replace(baseBody, `"temperature":0.7`, `"temperature":7E-1`, 1)},
		{"temperature 0.7000", strings.Replace(baseBody, `"temperature":0.7`, `"temperature":0.7000`, 1)},
		{"temperature 70e-2", strings.Replace(baseBody, `"temperature":0.7`, `"temperature":70e-2`, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.body == baseBody && tt.name != "base" {
				t.Fatal("test body is unchanged from baseBody")
			}
			id, _ := identify(t, []byte(tt.body), "tenant", "ns", Normalization{})
			if id.Scope != base.Scope {
				t.Errorf("Scope = %s, want %s", id.Scope, base.Scope)
			}
			if id.Key != base.Key {
				t.Errorf("Key = %s, want %s", id.Key, base.Key)
			}
			if id != base {
				t.Errorf("Identity = %+v, want %+v", id, base)
			}
		})
	}
}

func TestIdentifyIntegerSpellings(t *testing.T) {
	ref := strings.Replace(baseBody, `"model"`, `"max_tokens":100,"model"`, 1)
	want, _ := identify(t, []byte(ref), "", "", Normalization{})
	for _, spelling := range []string{"100.0", "1e2", "1E+2", "100.00", "10e1"} {
		t.Run(spelling, func(t *testing.T) {
			body := strings.Replace(baseBody, `"model"`, `"max_tokens":`+spelling+`,"model"`, 1)
			got, _ := identify(t, []byte(body), "", "", Normalization{})
			if got.Scope != want.Scope || got.Key != want.Key {
				t.Errorf("max_tokens %s: Scope/Key differ from max_tokens 100", spelling)
			}
		})
	}
}

func TestIdentifyScopeChanges(t *testing.T) {
	const tenant, namespace = "tenant-a", "ns-a"
	base, _ := identify(t, []byte(baseBody), tenant, namespace, Normalization{})
	tests := []struct {
		name      string
		mutate    func(t *testing.T, req map[string]any)
		tenant    string // "" means tenant
		namespace string // "" means namespace
	}{
		{name: "model", mutate: func(t *testing.T, r map[string]any) { r["model"] = "gpt-4o" }},
		{name: "temperature changed", mutate: func(t *testing.T, r map[string]any) { r["temperature"] = 0.8 }},
		{name: "temperature removed", mutate: func(t *testing.T, r map[string]any) { delete(r, "temperature") }},
		{name: "temperature 0", mutate: func(t *testing.T, r map[string]any) { r["temperature"] = 0 }},
		{name: "top_p", mutate: func(t *testing.T, r map[string]any) { r["top_p"] = 0.9 }},
		{name: "max_tokens", mutate: func(t *testing.T, r map[string]any) { r["max_tokens"] = 100 }},
		{name: "max_completion_tokens", mutate: func(t *testing.T, r map[string]any) { r["max_completion_tokens"] = 100 }},
		{name: "n", mutate: func(t *testing.T, r map[string]any) { r["n"] = 2 }},
		{name: "stop", mutate: func(t *testing.T, r map[string]any) { r["stop"] = []any{"\n"} }},
		{name: "stop as string", mutate: func(t *testing.T, r map[string]any) { r["stop"] = "END" }},
		{name: "seed", mutate: func(t *testing.T, r map[string]any) { r["seed"] = 42 }},
		{name: "tools removed", mutate: func(t *testing.T, r map[string]any) { delete(r, "tools") }},
		{name: "tool renamed", mutate: func(t *testing.T, r map[string]any) {
			r["tools"].([]any)[0].(map[string]any)["function"].(map[string]any)["name"] = "search"
		}},
		{name: "tool parameter type", mutate: func(t *testing.T, r map[string]any) {
			fn := r["tools"].([]any)[0].(map[string]any)["function"].(map[string]any)
			fn["parameters"].(map[string]any)["properties"].(map[string]any)["q"] = map[string]any{"type": "integer"}
		}},
		{name: "tool_choice", mutate: func(t *testing.T, r map[string]any) { r["tool_choice"] = "auto" }},
		{name: "response_format", mutate: func(t *testing.T, r map[string]any) {
			r["response_format"] = map[string]any{"type": "json_object"}
		}},
		{name: "logit_bias", mutate: func(t *testing.T, r map[string]any) { r["logit_bias"] = map[string]any{"50256": -100} }},
		{name: "presence_penalty", mutate: func(t *testing.T, r map[string]any) { r["presence_penalty"] = 0.5 }},
		{name: "frequency_penalty", mutate: func(t *testing.T, r map[string]any) { r["frequency_penalty"] = 0.5 }},
		{name: "unknown param reasoning_effort", mutate: func(t *testing.T, r map[string]any) { r["reasoning_effort"] = "high" }},
		{name: "different system message", mutate: func(t *testing.T, r map[string]any) {
			message(t, r, 0)["content"] = "You are verbose."
		}},
		{name: "system message removed", mutate: func(t *testing.T, r map[string]any) {
			r["messages"] = messages(t, r)[1:]
		}},
		{name: "developer message added", mutate: func(t *testing.T, r map[string]any) {
			dev := map[string]any{"role": "developer", "content": "Answer in French."}
			r["messages"] = append([]any{dev}, messages(t, r)...)
		}},
		{name: "system message becomes developer message", mutate: func(t *testing.T, r map[string]any) {
			message(t, r, 0)["role"] = "developer"
		}},
		{name: "different earlier user turn", mutate: func(t *testing.T, r map[string]any) {
			message(t, r, 1)["content"] = "Hey"
		}},
		{name: "earlier user turn differs only in case", mutate: func(t *testing.T, r map[string]any) {
			message(t, r, 1)["content"] = "hi"
		}},
		{name: "different earlier assistant turn", mutate: func(t *testing.T, r map[string]any) {
			message(t, r, 2)["content"] = "Good day!"
		}},
		{name: "added earlier turn", mutate: func(t *testing.T, r map[string]any) {
			msgs := messages(t, r)
			last := msgs[len(msgs)-1]
			extra := []any{
				map[string]any{"role": "user", "content": "And Rust?"},
				map[string]any{"role": "assistant", "content": "Also a language."},
			}
			r["messages"] = append(append(msgs[:len(msgs)-1:len(msgs)-1], extra...), last)
		}},
		{name: "name of the last user message", mutate: func(t *testing.T, r map[string]any) {
			message(t, r, -1)["name"] = "alice"
		}},
		{name: "different tenant", tenant: "tenant-b"},
		{name: "different namespace", namespace: "ns-b"},
	}
	seen := map[string]string{base.Scope: "base"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := baseRequest(t)
			if tt.mutate != nil {
				tt.mutate(t, req)
			}
			tenant, namespace := tenant, namespace
			if tt.tenant != "" {
				tenant = tt.tenant
			}
			if tt.namespace != "" {
				namespace = tt.namespace
			}
			id, _ := identify(t, encode(t, req), tenant, namespace, Normalization{})
			if id.Scope == base.Scope {
				t.Errorf("Scope unchanged (%s)", id.Scope)
			}
			if id.Key == base.Key {
				t.Errorf("Key unchanged (%s)", id.Key)
			}
			if id.Prompt != base.Prompt {
				t.Errorf("Prompt = %q, want %q", id.Prompt, base.Prompt)
			}
			if other, dup := seen[id.Scope]; dup {
				t.Errorf("Scope equals the scope of case %q", other)
			}
			seen[id.Scope] = tt.name
		})
	}
}

// TestIdentifyTenantNamespaceNotConfused checks that tenant and namespace are
// separate fields of the scope, not concatenated.
func TestIdentifyTenantNamespaceNotConfused(t *testing.T) {
	a, _ := identify(t, []byte(baseBody), "ab", "", Normalization{})
	b, _ := identify(t, []byte(baseBody), "a", "b", Normalization{})
	c, _ := identify(t, []byte(baseBody), "", "ab", Normalization{})
	if a.Scope == b.Scope || b.Scope == c.Scope || a.Scope == c.Scope {
		t.Errorf("tenant/namespace splits collide: %s %s %s", a.Scope, b.Scope, c.Scope)
	}
}

func TestIdentifyIgnoredParams(t *testing.T) {
	base, baseRq := identify(t, []byte(baseBody), "t", "ns", Normalization{})
	if baseRq.Stream {
		t.Fatal("base request: Stream = true, want false")
	}
	tests := []struct {
		name  string
		field string
		value any
	}{
		{"stream true", "stream", true},
		{"stream false", "stream", false},
		{"stream null", "stream", nil},
		{"stream_options", "stream_options", map[string]any{"include_usage": true}},
		{"store", "store", true},
		{"metadata", "metadata", map[string]any{"user": "42", "trace": "abc"}},
		{"semcache", "semcache", map[string]any{"ttl": 60, "no_store": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := baseRequest(t)
			req[tt.field] = tt.value
			id, _ := identify(t, encode(t, req), "t", "ns", Normalization{})
			if id.Scope != base.Scope {
				t.Errorf("Scope changed: %s, want %s", id.Scope, base.Scope)
			}
			if id.Key != base.Key {
				t.Errorf("Key changed: %s, want %s", id.Key, base.Key)
			}
		})
	}
}

// lastUserBody is baseBody with the last user message's content replaced by
// content (raw JSON).
func lastUserBody(content string) []byte {
	return []byte(strings.Replace(baseBody, `"content":"What is Go?"`, `"content":`+content, 1))
}

func TestIdentifyPrompt(t *testing.T) {
	tests := []struct {
		name         string
		a, b         string // the last user message's text
		n            Normalization
		wantSameKey  bool
		wantPromptA  string
		wantNormalA  string
		wantSemantic bool
	}{
		{
			name: "different text", a: "What is Go?", b: "What is Rust?",
			wantPromptA: "What is Go?", wantNormalA: "what is go?",
		},
		{
			name: "case and spaces collapse by default", a: "Hello   World", b: "hello world", wantSameKey: true,
			wantPromptA: "Hello   World", wantNormalA: "hello world",
		},
		{
			name: "leading and trailing space and newlines", a: "  hello\n\tworld  ", b: "hello world", wantSameKey: true,
			wantPromptA: "  hello\n\tworld  ", wantNormalA: "hello world",
		},
		{
			name: "KeepCase", a: "Hello   World", b: "hello world", n: Normalization{KeepCase: true},
			wantPromptA: "Hello   World", wantNormalA: "Hello World",
		},
		{
			name: "KeepCase, same case", a: "Hello   World", b: "Hello World", n: Normalization{KeepCase: true}, wantSameKey: true,
			wantPromptA: "Hello   World", wantNormalA: "Hello World",
		},
		{
			name: "KeepSpace", a: "Hello   World", b: "hello world", n: Normalization{KeepSpace: true},
			wantPromptA: "Hello   World", wantNormalA: "hello   world",
		},
		{
			name: "KeepSpace, same spacing", a: "Hello   World", b: "hello   world", n: Normalization{KeepSpace: true}, wantSameKey: true,
			wantPromptA: "Hello   World", wantNormalA: "hello   world",
		},
		{
			name: "NFC by default", a: "caf\u00e9", b: "cafe\u0301", wantSameKey: true,
			wantPromptA: "caf\u00e9", wantNormalA: "caf\u00e9",
		},
		{
			name: "NFC by default, decomposed first", a: "cafe\u0301", b: "caf\u00e9", wantSameKey: true,
			wantPromptA: "cafe\u0301", wantNormalA: "caf\u00e9",
		},
		{
			name: "SkipNFC", a: "caf\u00e9", b: "cafe\u0301", n: Normalization{SkipNFC: true},
			wantPromptA: "caf\u00e9", wantNormalA: "caf\u00e9",
		},
		{
			name: "all kept", a: "Hello  World", b: "hello world", n: Normalization{SkipNFC: true, KeepCase: true, KeepSpace: true},
			wantPromptA: "Hello  World", wantNormalA: "Hello  World",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, rq := identify(t, lastUserBody(encodeString(t, tt.a)), "t", "", tt.n)
			b, _ := identify(t, lastUserBody(encodeString(t, tt.b)), "t", "", tt.n)
			if a.Scope != b.Scope {
				t.Errorf("Scope differs with the last user message's text: %s vs %s", a.Scope, b.Scope)
			}
			if got := a.Key == b.Key; got != tt.wantSameKey {
				t.Errorf("same Key = %v, want %v (normalised %q vs %q)", got, tt.wantSameKey, a.Normalized, b.Normalized)
			}
			if a.Prompt != tt.wantPromptA {
				t.Errorf("Prompt = %q, want %q (the text as sent)", a.Prompt, tt.wantPromptA)
			}
			if a.Normalized != tt.wantNormalA {
				t.Errorf("Normalized = %q, want %q", a.Normalized, tt.wantNormalA)
			}
			if !a.Semantic || !rq.Cacheable {
				t.Errorf("Semantic = %v, Cacheable = %v, want both true for a text prompt", a.Semantic, rq.Cacheable)
			}
			if a.Model != "gpt-4o-mini" {
				t.Errorf("Model = %q, want gpt-4o-mini", a.Model)
			}
		})
	}
}

func encodeString(t *testing.T, s string) string {
	t.Helper()
	return string(encode(t, s))
}

func TestIdentifyNormalizationChangesOnlyKey(t *testing.T) {
	// The normalisation decides which prompts share an exact entry; the scope
	// (the semantic tier's filter) must not depend on it.
	body := lastUserBody(`"Hello   World"`)
	def, _ := identify(t, body, "t", "", Normalization{})
	for _, n := range []Normalization{{SkipNFC: true}, {KeepCase: true}, {KeepSpace: true}} {
		id, _ := identify(t, body, "t", "", n)
		if id.Scope != def.Scope {
			t.Errorf("%+v: Scope changed with the normalisation", n)
		}
	}
}

func TestNormalizationNormalize(t *testing.T) {
	tests := []struct {
		name string
		n    Normalization
		in   string
		want string
	}{
		{"empty", Normalization{}, "", ""},
		{"only space", Normalization{}, " \t\n ", ""},
		{"default", Normalization{}, "  Hello \t\n World  ", "hello world"},
		{"non-breaking space collapses", Normalization{}, "a\u00a0\u00a0b", "a b"},
		{"ideographic space collapses", Normalization{}, "a\u3000b", "a b"},
		{"non-ASCII lower case", Normalization{}, "\u00c9COLE", "\u00e9cole"},
		{"composed", Normalization{}, "e\u0301", "\u00e9"},
		{"decomposed upper case", Normalization{}, "E\u0301", "\u00e9"},
		{"KeepCase", Normalization{KeepCase: true}, "  Hello \t World ", "Hello World"},
		{"KeepSpace", Normalization{KeepSpace: true}, "  Hello \t World ", "  hello \t world "},
		{"SkipNFC", Normalization{SkipNFC: true}, "E\u0301", "e\u0301"},
		{"all kept", Normalization{SkipNFC: true, KeepCase: true, KeepSpace: true}, " E\u0301  X ", " E\u0301  X "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.n.Normalize(tt.in); got != tt.want {
				t.Errorf("%+v.Normalize(%q) = %q, want %q", tt.n, tt.in, got, tt.want)
			}
			// Normalising twice changes nothing.
			if got := tt.n.Normalize(tt.n.Normalize(tt.in)); got != tt.want {
				t.Errorf("Normalize is not idempotent: %q", got)
			}
		})
	}
}

func TestIdentifyContentShapes(t *testing.T) {
	tests := []struct {
		name          string
		body          []byte
		wantPrompt    string // "" skips the check
		wantSemantic  bool
		wantCacheable bool
		wantStream    bool
	}{
		{
			name:       "string content",
			body:       lastUserBody(`"What is Go?"`),
			wantPrompt: "What is Go?", wantSemantic: true, wantCacheable: true,
		},
		{
			name:       "array of text parts",
			body:       lastUserBody(`[{"type":"text","text":"What is"},{"type":"text","text":"Go?"}]`),
			wantPrompt: "What is\nGo?", wantSemantic: true, wantCacheable: true,
		},
		{
			name:       "single text part",
			body:       lastUserBody(`[{"type":"text","text":"What is Go?"}]`),
			wantPrompt: "What is Go?", wantSemantic: true, wantCacheable: true,
		},
		{
			name:         "text and image_url parts",
			body:         lastUserBody(`[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]`),
			wantSemantic: false, wantCacheable: true,
		},
		{
			name:         "input_audio part",
			body:         lastUserBody(`[{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]`),
			wantSemantic: false, wantCacheable: true,
		},
		{
			name:         "file part",
			body:         lastUserBody(`[{"type":"text","text":"Summarise this."},{"type":"file","file":{"file_id":"file-abc"}}]`),
			wantSemantic: false, wantCacheable: true,
		},
		{
			name:         "part of a type this package does not know",
			body:         lastUserBody(`[{"type":"hologram","hologram":{"depth":3}}]`),
			wantSemantic: false, wantCacheable: true,
		},
		{
			name:         "null content",
			body:         lastUserBody(`null`),
			wantSemantic: false, wantCacheable: true,
		},
		{
			name: "last message from the assistant",
			body: []byte(`{"model":"m","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}`),
		},
		{
			name: "last message a tool result",
			body: []byte(`{"model":"m","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}]}`),
		},
		{
			name: "last message a system message",
			body: []byte(`{"model":"m","messages":[{"role":"system","content":"Be terse."}]}`),
		},
		{
			name:       "stream true",
			body:       []byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"Hi"}]}`),
			wantPrompt: "Hi", wantSemantic: true, wantCacheable: true, wantStream: true,
		},
		{
			name:       "stream false",
			body:       []byte(`{"model":"m","stream":false,"messages":[{"role":"user","content":"Hi"}]}`),
			wantPrompt: "Hi", wantSemantic: true, wantCacheable: true,
		},
		{
			name:       "stream null",
			body:       []byte(`{"model":"m","stream":null,"messages":[{"role":"user","content":"Hi"}]}`),
			wantPrompt: "Hi", wantSemantic: true, wantCacheable: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, rq := identify(t, tt.body, "", "", Normalization{})
			if tt.wantPrompt != "" && id.Prompt != tt.wantPrompt {
				t.Errorf("Prompt = %q, want %q", id.Prompt, tt.wantPrompt)
			}
			if id.Semantic != tt.wantSemantic {
				t.Errorf("Semantic = %v, want %v", id.Semantic, tt.wantSemantic)
			}
			if rq.Cacheable != tt.wantCacheable {
				t.Errorf("Cacheable = %v, want %v", rq.Cacheable, tt.wantCacheable)
			}
			if rq.Stream != tt.wantStream {
				t.Errorf("Stream = %v, want %v", rq.Stream, tt.wantStream)
			}
		})
	}
}

func TestIdentifyNonTextContentKeys(t *testing.T) {
	// Exact-only requests still get distinct keys per content, and the same
	// key for the same content sent with its keys in another order.
	img := func(url string) []byte {
		return lastUserBody(`[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"` + url + `"}}]`)
	}
	a, _ := identify(t, img("https://example.com/a.png"), "", "", Normalization{})
	b, _ := identify(t, img("https://example.com/b.png"), "", "", Normalization{})
	a2, _ := identify(t, lastUserBody(`[{"text":"What is this?","type":"text"},{"image_url":{"url":"https://example.com/a.png"},"type":"image_url"}]`), "", "", Normalization{})
	if a.Key == b.Key {
		t.Error("two different images share a Key")
	}
	if a.Scope != b.Scope {
		t.Error("the last message's content changed the Scope")
	}
	if a.Key != a2.Key {
		t.Error("the same image parts with permuted keys have different Keys")
	}
}

func TestIdentifyBadRequest(t *testing.T) {
	const ok = `{"model":"m","messages":[{"role":"user","content":"Hi"}]}`
	tests := []struct {
		name     string
		body     string
		wantText string // a substring naming the offending field
	}{
		{"empty body", ``, "JSON"},
		{"malformed JSON", `{"model":"m","messages":[`, "JSON"},
		{"not JSON", `hello`, "JSON"},
		{"JSON array body", `[` + ok + `]`, "JSON object"},
		{"JSON string body", `"hello"`, "JSON object"},
		{"null", `null`, "JSON object"},
		{"trailing garbage", ok + ` x`, "trailing"},
		{"trailing object", ok + ` {}`, "trailing"},
		{"trailing closing brace", ok + `}`, "trailing"},
		{"trailing closing bracket", ok + `]`, "trailing"},
		{"missing model", `{"messages":[{"role":"user","content":"Hi"}]}`, "model"},
		{"empty model", `{"model":"","messages":[{"role":"user","content":"Hi"}]}`, "model"},
		{"model a number", `{"model":4,"messages":[{"role":"user","content":"Hi"}]}`, "model"},
		{"model null", `{"model":null,"messages":[{"role":"user","content":"Hi"}]}`, "model"},
		{"missing messages", `{"model":"m"}`, "messages"},
		{"messages null", `{"model":"m","messages":null}`, "messages"},
		{"empty messages", `{"model":"m","messages":[]}`, "messages"},
		{"messages an object", `{"model":"m","messages":{"role":"user","content":"Hi"}}`, "messages"},
		{"messages a string", `{"model":"m","messages":"Hi"}`, "messages"},
		{"a message that is a string", `{"model":"m","messages":["Hi"]}`, "messages[0]"},
		{"a later message that is null", `{"model":"m","messages":[{"role":"user","content":"Hi"},null]}`, "messages[1]"},
		{"role missing", `{"model":"m","messages":[{"content":"Hi"}]}`, "messages[0].role"},
		{"role empty", `{"model":"m","messages":[{"role":"","content":"Hi"}]}`, "messages[0].role"},
		{"role a number", `{"model":"m","messages":[{"role":1,"content":"Hi"}]}`, "messages[0].role"},
		{"earlier role missing", `{"model":"m","messages":[{"content":"Be terse."},{"role":"user","content":"Hi"}]}`, "messages[0].role"},
		{"content a number", `{"model":"m","messages":[{"role":"user","content":5}]}`, "messages[0].content"},
		{"content an object", `{"model":"m","messages":[{"role":"user","content":{"text":"Hi"}}]}`, "messages[0].content"},
		{"content a boolean", `{"model":"m","messages":[{"role":"user","content":true}]}`, "messages[0].content"},
		{"stream a string", `{"model":"m","stream":"true","messages":[{"role":"user","content":"Hi"}]}`, "stream"},
		{"temperature a string", `{"model":"m","temperature":"hot","messages":[{"role":"user","content":"Hi"}]}`, "temperature"},
		{"max_tokens a string", `{"model":"m","max_tokens":"10","messages":[{"role":"user","content":"Hi"}]}`, "max_tokens"},
		{"max_tokens a fraction", `{"model":"m","max_tokens":1.5,"messages":[{"role":"user","content":"Hi"}]}`, "max_tokens"},
		{"stop a number", `{"model":"m","stop":3,"messages":[{"role":"user","content":"Hi"}]}`, "stop"},
		{"tools an object", `{"model":"m","tools":{},"messages":[{"role":"user","content":"Hi"}]}`, "tools"},
		{"stream a number", `{"model":"m","stream":1,"messages":[{"role":"user","content":"Hi"}]}`, "stream"},
		{"number out of range", `{"model":"m","temperature":1e400,"messages":[{"role":"user","content":"Hi"}]}`, "1e400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Identify([]byte(tt.body), "t", "ns", Normalization{})
			if err == nil {
				t.Fatalf("Identify(%s) = nil error, want ErrBadRequest", tt.body)
			}
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("error %q does not wrap ErrBadRequest", err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not name %q", err, tt.wantText)
			}
		})
	}
	// The control body is valid, so each failure above comes from its
	// change.
	identify(t, []byte(ok), "t", "ns", Normalization{})
}

// TestIdentifyBadContentParts: a malformed content part, in the last
// message or an earlier one, is a FieldError naming it; text parts must
// carry a string text.
func TestIdentifyBadContentParts(t *testing.T) {
	body := func(earlier, last string) string {
		return `{"model":"m","messages":[{"role":"user","content":` + earlier + `},{"role":"user","content":` + last + `}]}`
	}
	const good = `[{"type":"text","text":"Hi"}]`
	tests := []struct {
		name, body, field, msg string
	}{
		{"text part without text", body(good, `[{"type":"text"}]`), "messages[1].content[0].text", "want a string"},
		{"text a number", body(good, `[{"type":"text","text":5}]`), "messages[1].content[0].text", "want a string"},
		{"text null", body(good, `[{"type":"text","text":null}]`), "messages[1].content[0].text", "want a string"},
		{"second part bad", body(good, `[{"type":"text","text":"a"},{"type":"text","text":["b"]}]`), "messages[1].content[1].text", "want a string"},
		{"part a string", body(good, `["Hi"]`), "messages[1].content[0]", "want a content part object"},
		{"part null", body(good, `[null]`), "messages[1].content[0]", "want a content part object"},
		{"type missing", body(good, `[{"text":"Hi"}]`), "messages[1].content[0].type", "want a non-empty string"},
		{"type a number", body(good, `[{"type":1,"text":"Hi"}]`), "messages[1].content[0].type", "want a non-empty string"},
		{"type empty", body(good, `[{"type":"","text":"Hi"}]`), "messages[1].content[0].type", "want a non-empty string"},
		{"earlier message", body(`[{"type":"text"}]`, good), "messages[0].content[0].text", "want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Identify([]byte(tt.body), "t", "ns", Normalization{})
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("Identify(%s) = %v, want a *FieldError wrapping ErrBadRequest", tt.body, err)
			}
			if fe.Field != tt.field || fe.Msg != tt.msg {
				t.Errorf("FieldError{%q, %q}, want {%q, %q}", fe.Field, fe.Msg, tt.field, tt.msg)
			}
		})
	}
	// The control body is valid, so each failure above comes from its
	// change.
	identify(t, []byte(body(good, good)), "t", "ns", Normalization{})
}

func TestTenantFromToken(t *testing.T) {
	// Every token has a character outside lower-case hex, so "contains the
	// token" cannot hold by chance.
	tokens := []string{"sk-secret-123", "sk-secret-124", "z", "Z", " sk-secret-123", "anonymous", strings.Repeat("x", 4096)}
	seen := make(map[string]string)
	for _, tok := range tokens {
		got := TenantFromToken(tok)
		if again := TenantFromToken(tok); again != got {
			t.Errorf("TenantFromToken(%q) not deterministic: %q then %q", tok, got, again)
		}
		if strings.Contains(got, tok) {
			t.Errorf("TenantFromToken(%q) = %q contains the token", tok, got)
		}
		if got == "anonymous" || got == "" {
			t.Errorf("TenantFromToken(%q) = %q, want a hashed tenant", tok, got)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("tokens %q and %q share tenant %q", other, tok, got)
		}
		seen[got] = tok
	}
	if got := TenantFromToken(""); got != "anonymous" {
		t.Errorf(`TenantFromToken("") = %q, want "anonymous"`, got)
	}
}

func FuzzIdentify(f *testing.F) {
	seeds := []string{
		baseBody,
		`{"model":"m","messages":[{"role":"user","content":"Hi"}]}`,
		`{"model":"m","stream":true,"temperature":7e-1,"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u"}}]}]}`,
		`{"model":"m","messages":[{"role":"user","content":"Hi"},{"role":"tool","content":null}]}`,
		`{"model":"m","messages":[{"role":"user","content":"caf` + "e\u0301" + `   X"}],"n":-0,"seed":1e400}`,
		`{"model":"m","messages":[]}`,
		`[1,2]`,
		`null`,
		`{} }`,
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i))
	}
	f.Fuzz(func(t *testing.T, body []byte, flags uint8) {
		n := Normalization{SkipNFC: flags&1 != 0, KeepCase: flags&2 != 0, KeepSpace: flags&4 != 0}
		id, rq, err := Identify(body, "tenant", "ns", n)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %q does not wrap ErrBadRequest", err)
			}
			return
		}
		checkHash(t, "Scope", id.Scope)
		checkHash(t, "Key", id.Key)
		if id.Semantic && !rq.Cacheable {
			t.Error("Semantic without Cacheable")
		}
		if text := !strings.HasPrefix(id.Normalized, partsPrefix); text && id.Normalized != n.Normalize(id.Prompt) {
			t.Errorf("Normalized = %q, want Normalize(Prompt) = %q", id.Normalized, n.Normalize(id.Prompt))
		} else if !text && id.Semantic {
			t.Errorf("content parts %q are Semantic", id.Normalized)
		}
		id2, rq2, err := Identify(body, "tenant", "ns", n)
		if err != nil || id2 != id || rq2 != rq {
			t.Errorf("Identify is not deterministic: %+v %+v %v", id2, rq2, err)
		}
	})
}
