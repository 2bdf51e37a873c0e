package main

import (
	"bytes"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/index/redistest"
)

// TestAdminTokenFromEnvOnly: the admin token is a secret, so it comes from
// SEMCACHE_ADMIN_TOKEN only; there is no flag that would show it in ps.
func TestAdminTokenFromEnvOnly(t *testing.T) {
	c, err := parseServe(nil, env(map[string]string{"SEMCACHE_ADMIN_TOKEN": "admin-secret-0123456789"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.adminToken != "admin-secret-0123456789" {
		t.Errorf("adminToken %q, want the environment's", c.adminToken)
	}
	if _, err := parseServe([]string{"--admin-token", "admin-secret-0123456789"}, env(nil), &bytes.Buffer{}); err == nil {
		t.Error("--admin-token accepted: the token would be visible in the process list")
	}
}

// TestServeAdminEndpoints runs the server with an admin token: the admin
// endpoints answer with it, refuse without it, and the token stays out of
// the logs.
func TestServeAdminEndpoints(t *testing.T) {
	const token = "admin-secret-0123456789"
	cfg, err := parseServe([]string{"--listen", "127.0.0.1:0", "--sim-latency", "0s", "--sim-per-token-latency", "0s", "--log-level", "debug"},
		env(map[string]string{"SEMCACHE_ADMIN_TOKEN": token}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	base, logs, stop := startServe(t, cfg)
	flush := func(auth string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/cache/flush", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := flush(""); got != http.StatusUnauthorized {
		t.Errorf("flush without a token: %d, want 401", got)
	}
	if got := flush("Bearer " + token); got != http.StatusOK {
		t.Errorf("flush with the token: %d, want 200", got)
	}
	if err := stop(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the admin token is in the logs:\n%s", logs.String())
	}
}

// TestAdminIndexesCommand runs `semcache admin indexes` against a real
// serve on Redis: it lists the cache's index as current, --drop-stale
// drops the index an earlier embedder left (and keeps the current one),
// and a wrong token is exit 1 with the server's message.
func TestAdminIndexesCommand(t *testing.T) {
	srv := redistest.StartSearch(t) // skips without SEMCACHE_TEST_REDISEARCH_MODULE
	const token = "admin-secret-0123456789"
	stale, err := index.NewRedis(t.Context(), index.RedisConfig{URL: srv.URL(), Dim: 3, Fingerprint: "old:embedder:3"})
	if err != nil {
		t.Fatal(err)
	}
	stale.Close()
	cfg, err := parseServe([]string{"--listen", "127.0.0.1:0", "--backend", "redis", "--redis-url", srv.URL(), "--sim-latency", "0s", "--sim-per-token-latency", "0s"},
		env(map[string]string{"SEMCACHE_ADMIN_TOKEN": token}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	base, _, stop := startServe(t, cfg)
	defer stop()
	getenv := func(tok string) func(string) string {
		return func(k string) string {
			if k == "SEMCACHE_ADMIN_TOKEN" {
				return tok
			}
			return ""
		}
	}
	runAdmin := func(tok string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := admin(t.Context(), append([]string{"indexes", "--url", base}, args...), getenv(tok), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := runAdmin(token)
	if code != 0 || !strings.Contains(out, "semcache:idx:old:embedder:3") || !regexp.MustCompile(`semcache:idx:local\S*\s.*true`).MatchString(out) {
		t.Fatalf("admin indexes = %d\n%s%s; want the old index and the current one marked true", code, out, errs)
	}
	code, out, errs = runAdmin(token, "--drop-stale")
	if code != 0 || !strings.Contains(out, "dropped 1 indexes") || !strings.Contains(out, "old:embedder:3") {
		t.Fatalf("admin indexes --drop-stale = %d\n%s%s", code, out, errs)
	}
	if _, out, _ = runAdmin(token); strings.Contains(out, "old:embedder") || !strings.Contains(out, "true") {
		t.Errorf("after --drop-stale:\n%s", out)
	}
	if code, _, errs = runAdmin("wrong-token-0123456789"); code != 1 || !strings.Contains(errs, "401") {
		t.Errorf("wrong token: exit %d, %s", code, errs)
	}
	if code, _, _ = runAdmin(""); code != 2 {
		t.Errorf("no token: exit %d, want 2", code)
	}
}
