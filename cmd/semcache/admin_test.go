package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
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
