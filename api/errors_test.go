package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/semcache/semcache/api"
)

// openAIError decodes r's body as the OpenAI error shape, failing the test
// when it is not one: JSON, with message, type, param and code present.
func openAIError(t *testing.T, r reply) (message, typ string, param, code *string) {
	t.Helper()
	var b struct {
		Error *struct {
			Message string         `json:"message"`
			Type    string         `json:"type"`
			Param   *string        `json:"param"`
			Code    *string        `json:"code"`
			Raw     map[string]any `json:"-"`
		} `json:"error"`
	}
	var raw struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("Content-Type %q, want application/json: %s", r.header.Get("Content-Type"), r.body)
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.Error == nil {
		t.Fatalf("not the OpenAI error shape (%v): %s", err, r.body)
	}
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := raw.Error[k]; !ok {
			t.Errorf("error has no %q: %s", k, r.body)
		}
	}
	return b.Error.Message, b.Error.Type, b.Error.Param, b.Error.Code
}

// TestRoutingErrorsAreOpenAIShaped: the proxy's own 404 and 405 answers
// come in the OpenAI error shape, a 405 with the Allow header.
func TestRoutingErrorsAreOpenAIShaped(t *testing.T) {
	up := newUpstream(t, nil)
	p := newProxy(t, up, func(c *api.Config) { c.AdminToken = "admin-token-0123456789" })
	cases := []struct {
		method, path string
		status       int
		code         string
		allow        string // a method the Allow header must list; "" for none
	}{
		{http.MethodPost, "/healthz", 405, "method_not_allowed", "GET"},
		{http.MethodDelete, "/metrics", 405, "method_not_allowed", "GET"},
		{http.MethodPut, "/api/v1/cache/stats", 405, "method_not_allowed", "GET"},
		{http.MethodGet, "/api/v1/cache/flush", 405, "method_not_allowed", "POST"},
		{http.MethodGet, "/nope", 404, "not_found", ""},
		{http.MethodPost, "/v2/chat/completions", 404, "not_found", ""},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := p.do(t, tc.method, tc.path, "sk-a", "")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			msg, typ, param, code := openAIError(t, r)
			if typ != "invalid_request_error" || param != nil || code == nil || *code != tc.code {
				t.Errorf("type %q param %v code %v, want invalid_request_error, null, %q: %s", typ, param, code, tc.code, r.body)
			}
			if !strings.Contains(msg, tc.path) {
				t.Errorf("message %q does not name the path %s", msg, tc.path)
			}
			allow := r.header.Get("Allow")
			if tc.allow == "" && allow != "" {
				t.Errorf("Allow %q on a %d", allow, tc.status)
			}
			if tc.allow != "" && !strings.Contains(allow, tc.allow) {
				t.Errorf("Allow %q, want it to list %s", allow, tc.allow)
			}
		})
	}
	if n := up.calls.Load(); n != 0 {
		t.Errorf("upstream calls %d, want 0", n)
	}
}

// TestOtherMethodsOnV1AreForwarded: below /v1 the proxy answers only POST
// chat completions and embeddings itself; other methods on those paths are
// the upstream's to answer (OpenAI lists stored chat completions at GET
// /v1/chat/completions), so they are forwarded, not refused.
func TestOtherMethodsOnV1AreForwarded(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"object":"list","data":[],"method":"` + r.Method + `"}`))
	}))
	p := newProxy(t, up, nil)
	r := p.do(t, http.MethodGet, "/v1/chat/completions", "sk-a", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"method":"GET"`) {
		t.Errorf("GET /v1/chat/completions: %d %s, want the upstream's answer", r.status, r.body)
	}
}
