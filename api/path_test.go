package api_test

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/semcache/semcache/api"
)

// TestPassThroughPathEscape sends raw request lines, so that no client
// cleans them first, through the real proxy with an operator key and an
// upstream base path below /tenants/acme: every path that could climb out
// of the base path is refused with 400 and never reaches the upstream,
// while an ordinary pass-through path still does, with the operator key.
func TestPassThroughPathEscape(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.RawPath+"|"+r.URL.Path)
		mu.Unlock()
		w.Write([]byte(`{"object":"list","data":[]}`))
	}))
	p := newProxy(t, up, func(c *api.Config) {
		c.Upstream = up.srv.URL + "/tenants/acme/v1"
		c.UpstreamAPIKey = "sk-operator-key"
	})
	host := strings.TrimPrefix(p.url, "http://")
	raw := func(path string) (int, string) {
		t.Helper()
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		return resp.StatusCode, b.String()
	}
	for _, path := range []string{
		"/v1/../../tenants/other/v1/models",
		"/v1/%2e%2e/%2e%2e/tenants/other/v1/models",
		"/v1/%2E%2E/x",
		"/v1/..%2f..%2ftenants/other/v1/models",
		"/v1/models%2f..%2f..%2f..%2fother",
		"/v1/%252e%252e/%252e%252e/other",
		"/v1/..%5c..%5cother",
		"/v1/models/..",
		"/v1/./models",
		"/v1//models",
		"/v1/models%00",
	} {
		status, body := raw(path)
		if status != http.StatusBadRequest || !strings.Contains(body, `"invalid_path"`) {
			t.Errorf("%s: %d %s, want 400 invalid_path", path, status, body)
		}
	}
	mu.Lock()
	if len(seen) != 0 {
		t.Errorf("the upstream was reached: %q", seen)
	}
	mu.Unlock()
	if status, _ := raw("/v1/models"); status != http.StatusOK {
		t.Fatalf("/v1/models: %d, want 200", status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != "|/tenants/acme/v1/models" || up.auth() != "Bearer sk-operator-key" {
		t.Errorf("upstream saw %q with %q, want /tenants/acme/v1/models with the operator key", seen, up.auth())
	}
}

// TestMalformedAnswerIsRelayedNotStored: a 200 whose message is not a
// message object reaches the client as sent, is never stored (the repeat
// goes upstream again) and is counted in unstored_answers and /metrics.
func TestMalformedAnswerIsRelayedNotStored(t *testing.T) {
	const bad = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":"just a string","finish_reason":"stop"}]}`
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(bad))
	}))
	p := newProxy(t, up, nil)
	body := chat("m", "", "user", "Tell me a joke")
	for i := range 2 {
		r := p.post(t, "sk-a", body)
		if r.status != 200 || string(r.body) != bad || r.semStatus() != "MISS" {
			t.Fatalf("request %d: %d %s %s, want the body relayed as a MISS", i, r.status, r.semStatus(), r.body)
		}
	}
	if n := up.calls.Load(); n != 2 {
		t.Errorf("%d upstream calls, want 2", n)
	}
	stats := string(p.do(t, http.MethodGet, "/api/v1/cache/stats", "", "").body)
	if !strings.Contains(stats, `"unstored_answers":2`) || !strings.Contains(stats, `"entries":0`) {
		t.Errorf("stats %s", stats)
	}
	if m := string(p.do(t, http.MethodGet, "/metrics", "", "").body); !strings.Contains(m, "semcache_unstored_answers_total 2") {
		t.Error("/metrics lacks semcache_unstored_answers_total 2")
	}
}
