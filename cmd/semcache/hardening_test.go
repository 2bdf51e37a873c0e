package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveArgs starts `semcache serve` on a free loopback port with the
// simulated upstream (no latency) and extra flags, and returns its host:port.
func serveArgs(t *testing.T, extra ...string) string {
	t.Helper()
	args := append([]string{"--listen", "127.0.0.1:0", "--sim-latency", "0s", "--sim-per-token-latency", "0s"}, extra...)
	cfg, err := parseServe(args, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	base, _, stop := startServe(t, cfg)
	t.Cleanup(func() { _ = stop() })
	return strings.TrimPrefix(base, "http://")
}

// closedWithin reports whether the server closes conn (EOF or reset)
// before limit; what it sends first (a 408 or 400) is read and dropped.
func closedWithin(conn net.Conn, limit time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// TestSlowClientsAreCut: a client that never finishes its body is cut at
// --read-timeout, an idle keep-alive connection at --idle-timeout. The
// limits are generous (10 s) against the 200 ms configured: the test
// checks that the connection is closed at all, not how fast.
func TestSlowClientsAreCut(t *testing.T) {
	host := serveArgs(t, "--read-timeout", "200ms", "--idle-timeout", "200ms")
	slow, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":"))
	if !closedWithin(slow, 10*time.Second) {
		t.Error("a slow-body client was not cut")
	}

	idle, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if !closedWithin(idle, 10*time.Second) {
		t.Error("an idle keep-alive connection was not closed")
	}
}

// TestMaxConnections: with --max-connections 1 a second client waits
// until the first one's connection closes, then is served.
func TestMaxConnections(t *testing.T) {
	host := serveArgs(t, "--max-connections", "1")
	first, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	first.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	br := bufio.NewReader(first)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first: %v %v", resp, err)
	}
	second, err := net.Dial("tcp", host) // the kernel accepts; the server does not yet
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	_ = second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _ := second.Read(make([]byte, 1)); n > 0 {
		t.Fatal("the second connection was served while the first was open")
	}
	first.Close()
	_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(second), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("second after the first closed: %v %v", resp, err)
	}
}

// TestShutdownThatCutsRequestsExitsNonZero: SIGTERM (the context) while a
// request waits on a slow upstream, with a short --shutdown-timeout: serve
// exits with exitCut, not 0.
func TestShutdownThatCutsRequestsExitsNonZero(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	t.Setenv("SEMCACHE_LOG_LEVEL", "error")
	go func() {
		code <- serve(ctx, []string{"--listen", addr, "--sim-latency", "30s", "--shutdown-timeout", "50ms"}, io.Discard, io.Discard)
	}()
	base := "http://" + addr
	var up bool
	for range 200 { // wait for the listener
		if r, err := http.Get(base + "/healthz"); err == nil {
			r.Body.Close()
			up = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !up {
		t.Fatal("serve did not start")
	}
	go http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"slow"}]}`))
	for range 500 { // until the request is in flight
		var s struct {
			Requests int `json:"requests"`
		}
		if r, err := http.Get(base + "/api/v1/cache/stats"); err == nil {
			json.NewDecoder(r.Body).Decode(&s)
			r.Body.Close()
		}
		if s.Requests == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if c := <-code; c != exitCut {
		t.Errorf("exit code %d, want %d", c, exitCut)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://user:PASSWORD@host:8080/v1":             "http://REDACTED@host:8080/v1",
		"redis://:s3cret@127.0.0.1:6379/0":              "redis://REDACTED@127.0.0.1:6379/0",
		"https://api.example.com/v1?api-key=SECRET&x=1": "https://api.example.com/v1?api-key=REDACTED&x=1",
		"https://api.example.com/v1":                    "https://api.example.com/v1",
		"::not a url@secret":                            "REDACTED",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	// A password with an unescaped "?" or "/", and secrets in a query, on
	// every --redis-url scheme: neither the flag error nor the parser's
	// detail may carry them.
	for _, u := range []string{
		"redis-cluster://user:12345?LEAK20@127.0.0.1:17001",
		"redis-sentinel://user:pa?LEAK20@127.0.0.1:26379/mymaster",
		"redis-sentinel://user:pa/LEAK20@127.0.0.1:26379/mymaster/0",
		"redis-cluster://127.0.0.1:17001?password=LEAK20",
		"redis-sentinel://127.0.0.1:26379/mymaster?sentinel_password=LEAK20",
	} {
		_, err := parseServe([]string{"--backend", "redis", "--redis-url", u}, env(nil), &bytes.Buffer{})
		if got := redactURL(u); strings.Contains(got, "LEAK20") || strings.Contains(got, "user") {
			t.Errorf("redactURL(%q) = %q: the secret shows", u, got)
		}
		if err != nil && strings.Contains(err.Error(), "LEAK20") {
			t.Errorf("--redis-url %s: %v: the secret shows", u, err)
		}
	}
}

// TestUpstreamPasswordNotLogged: the start log line shows the upstream
// without its password.
func TestUpstreamPasswordNotLogged(t *testing.T) {
	cfg, err := parseServe([]string{"--listen", "127.0.0.1:0", "--upstream", "http://user:PASSWORD@127.0.0.1:9/v1"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	_, logs, stop := startServe(t, cfg)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "PASSWORD") || !strings.Contains(logs.String(), "REDACTED@127.0.0.1:9") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestMemoryStaysWithinTheByteBound sends 200 requests of 1 MiB through
// `semcache serve` (half refused by the upstream with 401, half answered
// with a 1 MiB answer, every prompt different) with --max-bytes 16 MiB,
// and checks that afterwards the Go heap holds no more than the bound plus
// heapSlack over what it held before: refused prompts leave nothing, the
// embedding cache keeps no texts (prompts over --max-embed-bytes are not
// embedded), and the stored answers are evicted at the bound.
func TestMemoryStaysWithinTheByteBound(t *testing.T) {
	const (
		maxBytes  = 16 << 20
		heapSlack = 24 << 20 // the server's and client's buffers, the runtime; see the README's memory figures
	)
	big := strings.Repeat("x", 1<<20)
	up := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("Authorization") == "Bearer bad" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"message":"bad key","type":"invalid_request_error"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` + big + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(ln)
	defer up.Close()
	host := serveArgs(t, "--upstream", "http://"+ln.Addr().String()+"/v1", "--max-bytes", "16777216", "--max-body-bytes", "2097152")
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	client := &http.Client{}
	for i := range 200 {
		body := `{"model":"m","messages":[{"role":"user","content":"` + strconv.Itoa(i) + big + `"}]}`
		req, _ := http.NewRequest(http.MethodPost, "http://"+host+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		key := "Bearer good"
		if i%2 == 0 {
			key = "Bearer bad"
		}
		req.Header.Set("Authorization", key)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if want := map[bool]int{true: 401, false: 200}[i%2 == 0]; resp.StatusCode != want {
			t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, want)
		}
	}
	client.CloseIdleConnections()
	after := heap()
	var stats struct {
		StoreBytes int64 `json:"store_bytes"`
		Evictions  int64 `json:"evictions"`
	}
	resp, err := http.Get("http://" + host + "/api/v1/cache/stats")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	grown := int64(after) - int64(before)
	t.Logf("heap %d -> %d bytes (grown %.1f MiB); store %d bytes, %d evictions", before, after, float64(grown)/(1<<20), stats.StoreBytes, stats.Evictions)
	if stats.StoreBytes > maxBytes || stats.Evictions == 0 {
		t.Errorf("store holds %d bytes after %d evictions, want <= %d after some", stats.StoreBytes, stats.Evictions, maxBytes)
	}
	if grown > maxBytes+heapSlack {
		t.Errorf("the heap grew by %.1f MiB, more than the %d MiB bound plus %d MiB", float64(grown)/(1<<20), maxBytes>>20, heapSlack>>20)
	}
}

// TestServeUnusableSettingsExit2 runs `semcache serve` with settings that
// parse but cannot be used, found only at start-up: each stops the start
// with exit code 2 and one line naming the flag, like a malformed setting.
func TestServeUnusableSettingsExit2(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.sem")
	if err := os.WriteFile(garbage, []byte("not a model"), 0o600); err != nil {
		t.Fatal(err)
	}
	free := "127.0.0.1:0"
	cases := []struct {
		name    string
		args    []string
		mention string
	}{
		{"address in use", []string{"--listen", taken.Addr().String()}, "--listen " + taken.Addr().String() + ": bind: address already in use"},
		{"listen not an address", []string{"--listen", "nonsense"}, `--listen "nonsense"`},
		{"listen port out of range", []string{"--listen", "127.0.0.1:99999"}, `--listen "127.0.0.1:99999"`},
		{"missing model file", []string{"--listen", free, "--embedder", "trained", "--threshold", "0.8", "--embedder-model", filepath.Join(dir, "missing.sem")}, "--embedder-model: load model: open " + filepath.Join(dir, "missing.sem")},
		{"model file is a directory", []string{"--listen", free, "--embedder", "trained", "--threshold", "0.8", "--embedder-model", dir}, "--embedder-model: " + dir},
		{"model file is not a model", []string{"--listen", free, "--embedder", "trained", "--threshold", "0.8", "--embedder-model", garbage}, "--embedder-model: " + garbage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			// ctx is already done: a start that got past the settings
			// would shut down at once and exit 0, failing the test.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			code := serve(ctx, append(tc.args, "--log-level", "error"), io.Discard, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.mention) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want 2 and one line mentioning %q", code, stderr.String(), tc.mention)
			}
		})
	}
}
