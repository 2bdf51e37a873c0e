package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
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
