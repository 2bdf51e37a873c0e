package api_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/semantic"
)

// adminToken is the admin token of the proxies under test.
const adminToken = "test-admin-token-0123456789"

// newAdminProxy starts a proxy with the admin endpoints enabled.
func newAdminProxy(t *testing.T, mutate func(*api.Config)) *proxy {
	t.Helper()
	return newProxy(t, newUpstream(t, nil), func(c *api.Config) {
		c.AdminToken = adminToken
		if mutate != nil {
			mutate(c)
		}
	})
}

// wantDeleted checks a 200 {"deleted": n} answer.
func wantDeleted(t *testing.T, r reply, n int) {
	t.Helper()
	var b struct {
		Deleted *int `json:"deleted"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &b) != nil || b.Deleted == nil {
		t.Fatalf("status %d %s, want 200 {\"deleted\": %d}", r.status, r.body, n)
	}
	if *b.Deleted != n {
		t.Errorf("deleted %d, want %d", *b.Deleted, n)
	}
}

// wantError checks an answer in the OpenAI error shape and returns its code.
func wantError(t *testing.T, r reply, status int) string {
	t.Helper()
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Type == "" || e.Error.Message == "" || e.Error.Code == nil {
		t.Fatalf("not the OpenAI error shape: %s", r.body)
	}
	return *e.Error.Code
}

// ask posts a one-message chat completion with extra headers and returns the
// reply; the answer must be a 200.
func (p *proxy) ask(t *testing.T, key, prompt string, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.url+"/v1/chat/completions", strings.NewReader(chat("gpt-4o-mini", "", "user", prompt)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	r := p.send(t, req)
	if r.status != http.StatusOK {
		t.Fatalf("%q: status %d: %s", prompt, r.status, r.body)
	}
	return r
}

// wantStatus asks prompt as key and checks X-Semcache-Status.
func (p *proxy) wantStatus(t *testing.T, key, prompt string, header map[string]string, want string) reply {
	t.Helper()
	r := p.ask(t, key, prompt, header)
	if r.semStatus() != want {
		t.Errorf("%s %q %v: %s, want %s", key, prompt, header, r.semStatus(), want)
	}
	return r
}

var adminEndpoints = []struct{ method, path, body string }{
	{http.MethodDelete, "/api/v1/cache/entries/0123abcd", ""},
	{http.MethodPost, "/api/v1/cache/invalidate", `{"tag":"doc:1"}`},
	{http.MethodPost, "/api/v1/cache/flush", ""},
}

// TestAdminDisabledWithoutToken: without an admin token the endpoints do
// not exist, whatever the request carries.
func TestAdminDisabledWithoutToken(t *testing.T) {
	p := newProxy(t, newUpstream(t, nil), nil)
	for _, ep := range adminEndpoints {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			r := p.do(t, ep.method, ep.path, adminToken, ep.body)
			if code := wantError(t, r, http.StatusNotFound); code != "not_found" {
				t.Errorf("code %q, want not_found", code)
			}
		})
	}
}

// TestAdminAuth: a missing, wrong or differently-schemed token is a 401 in
// the OpenAI error shape; the token never appears in answers or logs.
func TestAdminAuth(t *testing.T) {
	var logs syncBuffer
	var clock atomic.Int64 // each look at the clock is a minute later: the failure limit never bites here
	p := newAdminProxy(t, func(c *api.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Now = func() time.Time { return time.Unix(clock.Add(60), 0) }
	})
	cases := []struct {
		name, auth string
	}{
		{"no header", ""},
		{"wrong token", "Bearer wrong-token-0123456789"},
		{"token prefix", "Bearer " + adminToken[:len(adminToken)-1]},
		{"token plus suffix", "Bearer " + adminToken + "x"},
		{"other scheme", "Basic " + adminToken},
		{"bare token", adminToken},
	}
	for _, ep := range adminEndpoints {
		for _, tc := range cases {
			t.Run(ep.path+"/"+tc.name, func(t *testing.T) {
				req, err := http.NewRequest(ep.method, p.url+ep.path, strings.NewReader(ep.body))
				if err != nil {
					t.Fatal(err)
				}
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				r := p.send(t, req)
				if code := wantError(t, r, http.StatusUnauthorized); code != "invalid_admin_token" {
					t.Errorf("code %q, want invalid_admin_token", code)
				}
				if r.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				if bytes.Contains(r.body, []byte(adminToken)) {
					t.Error("the answer shows the admin token")
				}
			})
		}
	}
	// The scheme is case-insensitive, and the right token works.
	wantDeleted(t, p.send(t, func() *http.Request {
		req, _ := http.NewRequest(http.MethodPost, p.url+"/api/v1/cache/flush", nil)
		req.Header.Set("Authorization", "bearer "+adminToken)
		return req
	}()), 0)
	if strings.Contains(logs.String(), adminToken[:12]) {
		t.Errorf("the admin token leaked into the logs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "admin request refused") {
		t.Error("refused admin requests are not logged")
	}
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestAdminTokenValidated: New refuses an admin token too short to be a
// secret, without showing it.
func TestAdminTokenValidated(t *testing.T) {
	for _, tok := range []string{"short", "has white space in it 0123456789", "tab\tin-the-token-0123456789"} {
		_, err := api.New(api.Config{Upstream: "http://127.0.0.1:1/v1", AdminToken: tok}, newCacheForConfigTest(t))
		if err == nil {
			t.Errorf("AdminToken %q accepted", tok)
			continue
		}
		if strings.Contains(err.Error(), tok) {
			t.Errorf("the error shows the token: %v", err)
		}
	}
}

func newCacheForConfigTest(t *testing.T) *semantic.Cache {
	t.Helper()
	p := newProxy(t, newUpstream(t, nil), nil)
	return p.cache
}

func TestAdminDeleteEntry(t *testing.T) { forEachBackend(t, testAdminDeleteEntry) }

// testAdminDeleteEntry deletes an entry by its X-Semcache-Key: neither tier
// serves it afterwards (a paraphrase misses too).
func testAdminDeleteEntry(t *testing.T) {
	p := newAdminProxy(t, nil)
	key := p.wantStatus(t, "sk-a", question, nil, "MISS").header.Get(api.HeaderKey)
	p.wantStatus(t, "sk-a", question, nil, "HIT")
	if key == "" {
		t.Fatal("no X-Semcache-Key on a stored miss")
	}
	wantDeleted(t, p.do(t, http.MethodDelete, "/api/v1/cache/entries/"+key, adminToken, ""), 1)
	p.wantStatus(t, "sk-a", paraphrase, nil, "MISS") // neither tier has it
	wantDeleted(t, p.do(t, http.MethodDelete, "/api/v1/cache/entries/no-such-key", adminToken, ""), 0)
}

func TestAdminFlush(t *testing.T) { forEachBackend(t, testAdminFlush) }

// testAdminFlush deletes every entry of every tenant; the cache works
// afterwards.
func testAdminFlush(t *testing.T) {
	p := newAdminProxy(t, nil)
	p.wantStatus(t, "sk-a", question, nil, "MISS")
	p.wantStatus(t, "sk-b", "What is the capital of France?", nil, "MISS")
	r := p.do(t, http.MethodPost, "/api/v1/cache/flush", adminToken, "{}")
	var b struct{ Deleted int }
	if r.status != http.StatusOK || json.Unmarshal(r.body, &b) != nil || b.Deleted < 2 {
		t.Fatalf("flush: %d %s, want 200 and at least 2 deleted", r.status, r.body)
	}
	if n, _ := p.cache.Len(t.Context()); n != 0 {
		t.Errorf("entries after flush = %d", n)
	}
	p.wantStatus(t, "sk-a", question, nil, "MISS")
	p.wantStatus(t, "sk-b", "What is the capital of France?", nil, "MISS")
	p.wantStatus(t, "sk-a", paraphrase, nil, "HIT") // stored again, index re-created
}

func TestAdminInvalidateTag(t *testing.T) { forEachBackend(t, testAdminInvalidateTag) }

// testAdminInvalidateTag: entries tagged doc:1 (of any tenant) are deleted
// by {"tag": "doc:1"}; others stay. The entries are tagged as the chat
// handler does once wired (Cache.TagEntry with the entry's key).
func testAdminInvalidateTag(t *testing.T) {
	p := newAdminProxy(t, nil)
	tag := func(r reply, tags ...string) {
		t.Helper()
		if err := p.cache.TagEntry(t.Context(), r.header.Get(api.HeaderKey), tags, time.Hour); err != nil {
			t.Fatalf("TagEntry: %v", err)
		}
	}
	const other = "What is the capital of France?"
	tag(p.wantStatus(t, "sk-a", question, nil, "MISS"), "doc:1", "doc:2")
	tag(p.wantStatus(t, "sk-b", question, nil, "MISS"), "doc:1")
	tag(p.wantStatus(t, "sk-a", other, nil, "MISS"), "doc:2")

	wantDeleted(t, p.do(t, http.MethodPost, "/api/v1/cache/invalidate", adminToken, `{"tag":"doc:1"}`), 2)
	p.wantStatus(t, "sk-a", paraphrase, nil, "MISS")
	p.wantStatus(t, "sk-b", question, nil, "MISS")
	p.wantStatus(t, "sk-a", other, nil, "HIT")
	wantDeleted(t, p.do(t, http.MethodPost, "/api/v1/cache/invalidate", adminToken, `{"tag":"doc:1"}`), 0)
}

func TestAdminInvalidateNamespace(t *testing.T) { forEachBackend(t, testAdminInvalidateNamespace) }

// testAdminInvalidateNamespace deletes one tenant's namespace, named by the
// namespace and the tenant's API key: the same namespace of another key and
// the key's other namespaces stay. The entries carry the namespace tag as
// the chat handler gives it once wired.
func testAdminInvalidateNamespace(t *testing.T) {
	p := newAdminProxy(t, nil)
	ns := func(name string) map[string]string { return map[string]string{api.HeaderNamespace: name} }
	store := func(key, namespace string) {
		t.Helper()
		r := p.wantStatus(t, key, question, ns(namespace), "MISS")
		tag := semantic.NamespaceTag(semantic.TenantFromToken(key), namespace)
		if err := p.cache.TagEntry(t.Context(), r.header.Get(api.HeaderKey), []string{tag}, time.Hour); err != nil {
			t.Fatalf("TagEntry: %v", err)
		}
	}
	store("sk-a", "support")
	store("sk-a", "")
	store("sk-b", "support")

	wantDeleted(t, p.do(t, http.MethodPost, "/api/v1/cache/invalidate", adminToken,
		`{"namespace":"support","api_key":"sk-a"}`), 1)
	p.wantStatus(t, "sk-a", question, ns("support"), "MISS")
	p.wantStatus(t, "sk-a", question, nil, "HIT")
	p.wantStatus(t, "sk-b", question, ns("support"), "HIT")

	// "" is the default namespace.
	wantDeleted(t, p.do(t, http.MethodPost, "/api/v1/cache/invalidate", adminToken,
		`{"namespace":"","api_key":"sk-a"}`), 1)
	p.wantStatus(t, "sk-a", question, nil, "MISS")
}

// TestAdminInvalidateSharedNamespace: with --namespace every client is one
// tenant, so a namespace is named without an API key.
func TestAdminInvalidateSharedNamespace(t *testing.T) {
	p := newAdminProxy(t, func(c *api.Config) { c.SharedNamespace = "team" })
	r := p.wantStatus(t, "sk-a", question, map[string]string{api.HeaderNamespace: "support"}, "MISS")
	// The tenant of a shared namespace, as the proxy names it.
	tag := semantic.NamespaceTag("ns:team", "support")
	if err := p.cache.TagEntry(t.Context(), r.header.Get(api.HeaderKey), []string{tag}, time.Hour); err != nil {
		t.Fatal(err)
	}
	r = p.do(t, http.MethodPost, "/api/v1/cache/invalidate", adminToken, `{"namespace":"support","api_key":"sk-a"}`)
	if code := wantError(t, r, http.StatusBadRequest); code != "invalid_request" {
		t.Errorf("api_key with a shared namespace: code %q", code)
	}
	wantDeleted(t, p.do(t, http.MethodPost, "/api/v1/cache/invalidate", adminToken, `{"namespace":"support"}`), 1)
	p.wantStatus(t, "sk-b", question, map[string]string{api.HeaderNamespace: "support"}, "MISS")
}

// TestAdminBadRequests: malformed invalidation requests are 400s that say
// what is wrong, and delete nothing.
func TestAdminBadRequests(t *testing.T) {
	p := newAdminProxy(t, nil)
	p.wantStatus(t, "sk-a", question, nil, "MISS")
	cases := []struct {
		name, path, body, mentions string
	}{
		{"empty invalidate", "/api/v1/cache/invalidate", ``, "tag"},
		{"empty object", "/api/v1/cache/invalidate", `{}`, "tag"},
		{"tag and namespace", "/api/v1/cache/invalidate", `{"tag":"a","namespace":"b","api_key":"k"}`, "tag"},
		{"empty tag", "/api/v1/cache/invalidate", `{"tag":""}`, "tag"},
		{"tag with a comma", "/api/v1/cache/invalidate", `{"tag":"a,b"}`, "tag"},
		{"tag with a NUL", "/api/v1/cache/invalidate", `{"tag":"ns\u0000x"}`, "tag"},
		{"tag too long", "/api/v1/cache/invalidate", `{"tag":"` + strings.Repeat("x", 129) + `"}`, "tag"},
		{"tag with api_key", "/api/v1/cache/invalidate", `{"tag":"a","api_key":"k"}`, "api_key"},
		{"namespace without api_key", "/api/v1/cache/invalidate", `{"namespace":"support"}`, "api_key"},
		{"namespace unprintable", "/api/v1/cache/invalidate", `{"namespace":"a\u0007","api_key":"k"}`, "namespace"},
		{"unknown field", "/api/v1/cache/invalidate", `{"tags":["a"]}`, "tags"},
		{"not JSON", "/api/v1/cache/invalidate", `tag=a`, "JSON"},
		{"two objects", "/api/v1/cache/invalidate", `{"tag":"a"}{"tag":"b"}`, "one JSON object"},
		{"flush with fields", "/api/v1/cache/flush", `{"all":true}`, "all"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := p.do(t, http.MethodPost, tc.path, adminToken, tc.body)
			wantError(t, r, http.StatusBadRequest)
			if !bytes.Contains(r.body, []byte(tc.mentions)) {
				t.Errorf("message does not mention %q: %s", tc.mentions, r.body)
			}
		})
	}
	p.wantStatus(t, "sk-a", question, nil, "HIT")
}

func TestTagsHeaderAndNamespaceWired(t *testing.T) {
	forEachBackend(t, testTagsHeaderAndNamespaceWired)
}

// testTagsHeaderAndNamespaceWired: the chat handler itself attaches the
// X-Semcache-Tags and the namespace tag to what it stores, streaming or
// not, so invalidation needs nothing else.
func testTagsHeaderAndNamespaceWired(t *testing.T) {
	p := newAdminProxy(t, nil)
	tagged := map[string]string{api.HeaderTags: "doc:9"}
	p.wantStatus(t, "sk-a", question, tagged, "MISS")
	r := p.postH(t, "sk-a", chat("m", `"stream":true`, "user", "Where is my parcel?"), tagged)
	if r.semStatus() != "MISS" {
		t.Fatalf("stream: %s", r.semStatus())
	}
	p.wantStatus(t, "sk-a", "What is the capital of France?", map[string]string{api.HeaderNamespace: "geo"}, "MISS")

	wantDeleted(t, p.do(t, http.MethodPost, "/api/v1/cache/invalidate", adminToken, `{"tag":"doc:9"}`), 2)
	p.wantStatus(t, "sk-a", question, nil, "MISS")
	wantDeleted(t, p.do(t, http.MethodPost, "/api/v1/cache/invalidate", adminToken, `{"namespace":"geo","api_key":"sk-a"}`), 1)
	p.wantStatus(t, "sk-a", "What is the capital of France?", map[string]string{api.HeaderNamespace: "geo"}, "MISS")

	if r := p.postH(t, "sk-a", chat("m", "", "user", question), map[string]string{api.HeaderTags: strings.Repeat("t", 129)}); r.status != 400 {
		t.Errorf("malformed tags: %d, want 400", r.status)
	}
}

// TestAdminAuthFailuresAreLimited: past the burst of wrong tokens an
// address gets 429 (even with the right token) until time passes; the
// failures are logged once per minute with their count, not once each.
func TestAdminAuthFailuresAreLimited(t *testing.T) {
	var logs syncBuffer
	var now atomic.Int64
	now.Store(1_000_000)
	p := newAdminProxy(t, func(c *api.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.Now = func() time.Time { return time.Unix(now.Load(), 0) }
	})
	flush := func(token string) reply {
		return p.do(t, http.MethodPost, "/api/v1/cache/flush", token, "")
	}
	for i := range 10 {
		if r := flush("wrong-token-0123456789"); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i+1, r.status)
		}
	}
	r := flush(adminToken)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("after 10 failures the right token got %d (Retry-After %q), want 429", r.status, r.header.Get("Retry-After"))
	}
	if n := strings.Count(logs.String(), "admin request refused"); n != 1 {
		t.Errorf("%d log lines for 11 refusals in one minute, want 1:\n%s", n, logs.String())
	}
	now.Add(61) // a minute later the address may try again, and the next failure is logged with its count
	wantDeleted(t, flush(adminToken), 0)
	flush("wrong-token-0123456789")
	if !strings.Contains(logs.String(), "failures=11") { // 9 wrong, 1 blocked, 1 wrong since the first line
		t.Errorf("the second log line does not count the failures since the first:\n%s", logs.String())
	}
}

func TestAdminIndexes(t *testing.T) { forEachBackend(t, testAdminIndexes) }

// testAdminIndexes: on Redis the index endpoints list the cache's index
// (current) and drop nothing when there is no stale one; on the memory
// backend they are 501 in OpenAI's error shape; both need the token.
func testAdminIndexes(t *testing.T) {
	p := newAdminProxy(t, nil)
	p.wantStatus(t, "sk-a", question, nil, "MISS")
	if r := p.do(t, http.MethodGet, "/api/v1/cache/indexes", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("without the token: %d", r.status)
	}
	list := p.do(t, http.MethodGet, "/api/v1/cache/indexes", adminToken, "")
	drop := p.do(t, http.MethodPost, "/api/v1/cache/indexes/drop-stale", adminToken, "{}")
	if backend != "redis" {
		wantError(t, list, http.StatusNotImplemented)
		wantError(t, drop, http.StatusNotImplemented)
		return
	}
	var l struct {
		Indexes []struct {
			Name    string
			Docs    int64
			Current bool
		}
	}
	if list.status != http.StatusOK || json.Unmarshal(list.body, &l) != nil || len(l.Indexes) != 1 || !l.Indexes[0].Current || l.Indexes[0].Docs != 1 {
		t.Fatalf("indexes: %d %s; want one current index of 1 doc", list.status, list.body)
	}
	var d struct {
		Dropped []any
		Deleted int
	}
	if drop.status != http.StatusOK || json.Unmarshal(drop.body, &d) != nil || d.Dropped == nil || len(d.Dropped) != 0 || d.Deleted != 0 {
		t.Fatalf("drop-stale: %d %s; want nothing dropped", drop.status, drop.body)
	}
	p.wantStatus(t, "sk-a", paraphrase, nil, "HIT") // the current index is kept
}
