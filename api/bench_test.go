package api_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/api/sim"
	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// benchServer is a proxy under benchmark.
type benchServer struct {
	url string
	up  *upstream
	// conns counts the client connections the proxy accepted.
	conns atomic.Int64
}

// benchProxy starts the proxy as `semcache serve` wires it by default (the
// local embedder behind an LRU, the in-process store) in front of the
// simulator, with logging at info level to nowhere.
func benchProxy(b *testing.B) *benchServer {
	b.Helper()
	up := &upstream{}
	simulator := sim.New(sim.Config{})
	up.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/chat/completions" {
			up.calls.Add(1)
		}
		simulator.ServeHTTP(w, r)
	}))
	b.Cleanup(up.srv.Close)

	local, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		b.Fatal(err)
	}
	emb, err := embedding.NewCached(local, 0)
	if err != nil {
		b.Fatal(err)
	}
	store, err := index.NewMemory(index.MemoryConfig{Dim: emb.Dim(), SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	cache, err := semantic.New(semantic.Config{Threshold: testThreshold, Logger: discard}, emb, store)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := api.New(api.Config{Upstream: up.srv.URL + "/v1", Logger: discard}, cache)
	if err != nil {
		b.Fatal(err)
	}
	bs := &benchServer{up: up}
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			bs.conns.Add(1)
		}
	}
	hs.Start()
	b.Cleanup(hs.Close)
	bs.url = hs.URL
	return bs
}

// benchPost sends one chat completion on client and returns the response's
// status, cache status and tier; the body is read to the end so that the
// connection is reused.
func benchPost(b *testing.B, client *http.Client, url, body string) (int, string, string) {
	req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-bench")
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(api.HeaderStatus), resp.Header.Get(api.HeaderTier)
}

// benchChat is the request of the proxy benchmarks: a system prompt, a
// parameter and the prompt.
func benchChat(prompt string) string {
	return chat("gpt-4o-mini", `"temperature":0`, "system", "You are a helpful assistant.", "user", prompt)
}

// benchProxyHits warms the proxy with question, then sends prompt in a loop
// on one keep-alive connection and reports the fraction of HIT responses
// from tier (hit-rate, 1 when all is well). It fails the benchmark if the
// upstream is called after the warm-up or the client opens a second
// connection.
func benchProxyHits(b *testing.B, prompt, tier string) {
	bs := benchProxy(b)
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	if status, cache, _ := benchPost(b, client, bs.url, benchChat(question)); status != 200 || cache != "MISS" {
		b.Fatalf("warm-up: %d %s, want 200 MISS", status, cache)
	}
	warm := bs.up.calls.Load()
	body := benchChat(prompt)
	hits, n := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		status, cache, gotTier := benchPost(b, client, bs.url, body)
		if status == 200 && cache == "HIT" && gotTier == tier {
			hits++
		}
		n++
	}
	if calls := bs.up.calls.Load() - warm; calls != 0 {
		b.Fatalf("upstream called %d times on the hit path", calls)
	}
	if c := bs.conns.Load(); c != 1 {
		b.Fatalf("client opened %d connections, want 1 (keep-alive)", c)
	}
	b.ReportMetric(float64(hits)/float64(n), "hit-rate")
}

// BenchmarkProxyExactHit measures a repeated chat completion through the
// real HTTP server (client, server, Identify, exact tier, response), on one
// keep-alive connection: the gateway's overhead on an exact hit. The
// allocations are the client's and the server's together.
func BenchmarkProxyExactHit(b *testing.B) {
	benchProxyHits(b, question, "exact")
}

// BenchmarkProxySemanticHit is BenchmarkProxyExactHit for a paraphrase of
// the cached prompt, served by the semantic tier. The paraphrase repeats,
// so after the first request its vector comes from the embedding LRU;
// semantic.BenchmarkDoSemanticHit measures a first-seen paraphrase and a
// 10,000-entry scope.
func BenchmarkProxySemanticHit(b *testing.B) {
	benchProxyHits(b, paraphrase, "semantic")
}
