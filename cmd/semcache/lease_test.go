package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semcache/semcache/index/redistest"
)

// gatedChat is a fake upstream for several proxies: each proxy reaches it
// under its own path prefix (/p<i>/v1), so the test knows which replica
// called. Calls block while the gate is closed.
type gatedChat struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []int // replica index of each call, in order
	gate  chan struct{}
	shut  sync.Once
	delay time.Duration // added to every call once the gate is open
}

var replicaPath = regexp.MustCompile(`^/p(\d+)/v1/chat/completions$`)

func newGatedChat(t *testing.T) *gatedChat {
	g := &gatedChat{gate: make(chan struct{})}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := replicaPath.FindStringSubmatch(r.URL.Path)
		if m == nil {
			http.NotFound(w, r)
			return
		}
		i, _ := strconv.Atoi(m[1])
		g.mu.Lock()
		g.calls = append(g.calls, i)
		n := len(g.calls)
		g.mu.Unlock()
		select {
		case <-g.gate:
		case <-r.Context().Done():
			return
		}
		time.Sleep(g.delay)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-%d","object":"chat.completion","model":"sim-1","choices":[{"index":0,"message":{"role":"assistant","content":"the answer of call %d"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}}`, n, n)
	}))
	t.Cleanup(func() { g.open(); g.srv.Close() })
	return g
}

func (g *gatedChat) open() { g.shut.Do(func() { close(g.gate) }) }

func (g *gatedChat) callers() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

// leaseWaits reads lease_waits from a replica's stats; -1 when it does not
// answer.
func leaseWaits(base string) int64 {
	resp, err := http.Get(base + "/api/v1/cache/stats")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var s struct {
		LeaseWaits int64 `json:"lease_waits"`
	}
	if json.NewDecoder(resp.Body).Decode(&s) != nil {
		return -1
	}
	return s.LeaseWaits
}

// TestLeaseAcrossProcesses runs three `semcache serve --backend redis`
// processes on one plain redis-server (the exact tier and the lease need no
// search module) and sends 30 concurrent identical requests spread over
// them, as a load balancer would:
//   - with the lease, they make one upstream call and all get its answer;
//     with --lease-ttl 0 (the control) every replica makes its own;
//   - with the lease holder killed (SIGKILL) mid-call, every client still
//     gets an answer (those of the killed replica retry on another, as a
//     load balancer does on a refused connection), with one more call.
//
// The polling deadlines only stop a hung test; nothing about speed is
// asserted.
func TestLeaseAcrossProcesses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		flags     []string
		kill      bool
		wantCalls int
	}{
		{"lease", nil, false, 1},
		{"no lease", []string{"--lease-ttl", "0"}, false, 3},
		{"holder killed", nil, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := redistest.Start(t)
			up := newGatedChat(t)
			var procs []*serveProcess
			for i := range 3 {
				args := append([]string{"--backend", "redis", "--redis-url", rs.URL(),
					"--upstream", fmt.Sprintf("%s/p%d/v1", up.srv.URL, i)}, tc.flags...)
				p, ok, code := startProcess(t, args...)
				if !ok {
					t.Fatalf("replica %d exited with %d:\n%s", i, code, p.stderr)
				}
				procs = append(procs, p)
			}
			question := "How do three replicas share one upstream call?"
			client := &http.Client{Timeout: 60 * time.Second}
			type answer struct {
				status, content string
				err             error
			}
			answers := make([]answer, 30)
			var retried atomic.Int64
			var wg sync.WaitGroup
			for i := range 30 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for try := 0; try < 3; try++ { // the load balancer's next upstream on a failed connection
						a := &answers[i]
						a.status, a.content, a.err = ask(client, procs[(i+try)%3].base, question)
						if a.err == nil {
							return
						}
						retried.Add(1)
					}
				}()
			}
			// Every replica is in flight: at the upstream, or waiting on
			// another's lease.
			waitFor(t, "every replica in flight", func() bool {
				n := int64(len(up.callers()))
				for _, p := range procs {
					n += max(leaseWaits(p.base), 0)
				}
				return n >= 3
			})
			if tc.kill {
				holder := up.callers()[0]
				procs[holder].kill(t)
				t.Logf("killed replica %d, the lease holder, mid-call", holder)
			}
			up.open()
			wg.Wait()
			for i, a := range answers {
				if a.err != nil {
					t.Fatalf("client %d got no answer: %v", i, a.err)
				}
			}
			calls := up.callers()
			if len(calls) != tc.wantCalls {
				t.Errorf("upstream calls %d (by replicas %v), want %d", len(calls), calls, tc.wantCalls)
			}
			if tc.wantCalls == 1 {
				for i, a := range answers {
					if a.content != answers[0].content {
						t.Errorf("client %d: %q, client 0: %q; one call, one answer", i, a.content, answers[0].content)
					}
				}
			}
			t.Logf("%s: 30 concurrent identical requests over 3 replicas: %d upstream calls, %d client retries", tc.name, len(calls), retried.Load())
		})
	}
}

// waitFor polls ok; the deadline only stops a hung test.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMeasureLease measures, for N concurrent identical misses sent at
// once over three `semcache serve --backend redis` replicas on one
// redis-server, the upstream calls and the clients' latency with and
// without the lease, against an upstream answering in 300 ms. It runs only
// with SEMCACHE_BENCH_LEASE=1 (benchmarks/RESULTS.md):
//
//	SEMCACHE_BENCH_LEASE=1 go test -run TestMeasureLease -v ./cmd/semcache
func TestMeasureLease(t *testing.T) {
	if os.Getenv("SEMCACHE_BENCH_LEASE") != "1" {
		t.Skip("a measurement: set SEMCACHE_BENCH_LEASE=1 to run it")
	}
	rs := redistest.Start(t)
	up := newGatedChat(t)
	up.delay = 300 * time.Millisecond
	up.open()
	start := func(flags ...string) []*serveProcess {
		var procs []*serveProcess
		for i := range 3 {
			p, ok, code := startProcess(t, append([]string{"--backend", "redis", "--redis-url", rs.URL(),
				"--upstream", fmt.Sprintf("%s/p%d/v1", up.srv.URL, i)}, flags...)...)
			if !ok {
				t.Fatalf("replica %d exited with %d:\n%s", i, code, p.stderr)
			}
			procs = append(procs, p)
		}
		return procs
	}
	fmt.Println("| lease | N concurrent identical misses | upstream calls | client p50 | client p99 |")
	fmt.Println("|---|---:|---:|---:|---:|")
	for _, mode := range []struct {
		name  string
		flags []string
	}{{"off (--lease-ttl 0)", []string{"--lease-ttl", "0"}}, {"on (default)", nil}} {
		procs := start(mode.flags...)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 300}, Timeout: time.Minute}
		for round, n := range []int{3, 30, 300} {
			question := fmt.Sprintf("Lease measurement question %d for %s?", round, mode.name)
			before := len(up.callers())
			lat := make([]time.Duration, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t0 := time.Now()
					if _, _, err := ask(client, procs[i%3].base, question); err != nil {
						t.Errorf("request %d: %v", i, err)
					}
					lat[i] = time.Since(t0)
				}()
			}
			wg.Wait()
			fmt.Printf("| %s | %d | %d | %v | %v |\n", mode.name, n, len(up.callers())-before,
				percentile(lat, 0.5).Round(time.Millisecond), percentile(lat, 0.99).Round(time.Millisecond))
		}
		for _, p := range procs {
			p.kill(t)
		}
	}
}
