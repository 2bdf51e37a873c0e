package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/semcache/semcache/index/redistest"
)

// TestSentinelFailover runs `semcache serve --redis-url redis-sentinel://`
// on Debian's redis-server as primary and replica with three sentinels,
// kills the primary (SIGKILL) under a steady load of four clients, and
// checks that every request is still answered (the cache fails open while
// the sentinels promote the replica), that an entry replicated before the
// kill is served from the new primary, and that caching resumes there (a
// new question is stored and then a HIT). The polling deadlines only stop
// a hung test; nothing about speed is asserted.
func TestSentinelFailover(t *testing.T) {
	primary := redistest.Start(t)
	replica := redistest.StartReplica(t, primary)
	sentinels := redistest.StartSentinels(t, primary, "semcache-test", 3, 1)
	cfg, err := parseServe([]string{"--listen", "127.0.0.1:0", "--backend", "redis", "--redis-url", sentinels.URL(),
		"--sim-latency", "0s", "--sim-per-token-latency", "0s"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	base, logs, stop := startServe(t, cfg)
	defer stop()
	client := &http.Client{Timeout: 30 * time.Second}
	before := "What does the failover test ask before the kill?"
	for i, want := range []string{"MISS", "HIT"} {
		if s, _, err := ask(client, base, before); err != nil || s != want {
			t.Fatalf("before the kill, ask %d: %s %v; want %s\n%s", i, s, err, want, logs)
		}
	}
	raw := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(primary.Port)})
	if n, err := raw.Do(context.Background(), "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d %v", n, err)
	}
	raw.Close()

	var (
		wg       sync.WaitGroup
		done     = make(chan struct{})
		sent     atomic.Int64
		failures atomic.Int64
		firstErr atomic.Value
		// Phases: 0 before the kill, 1 from the kill to the promotion
		// seen by the test, 2 after it.
		phase   atomic.Int32
		latMu   sync.Mutex
		lat     [3][]time.Duration
		phaseEr [3]int
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				q := fmt.Sprintf("Load question %d of client %d during the failover?", i%50, w)
				sent.Add(1)
				ph, start := phase.Load(), time.Now()
				_, _, err := ask(client, base, q)
				latMu.Lock()
				lat[ph] = append(lat[ph], time.Since(start))
				if err != nil {
					phaseEr[ph]++
				}
				latMu.Unlock()
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	for sent.Load() < 1000 { // load is running against the primary
		time.Sleep(5 * time.Millisecond)
	}
	killed := time.Now()
	var promoted time.Duration
	primary.Stop()
	phase.Store(1)
	sc := redis.NewSentinelClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(sentinels.Servers[0].Port)})
	defer sc.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		addr, err := sc.GetMasterAddrByName(context.Background(), sentinels.MasterName).Result()
		if err == nil && len(addr) == 2 && addr[1] == strconv.Itoa(replica.Port) {
			phase.Store(2)
			promoted = time.Since(killed)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sentinels did not promote the replica: %v %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Caching resumes on the new primary.
	after := "What does the failover test ask after the promotion?"
	for deadline = time.Now().Add(60 * time.Second); ; {
		s1, _, err1 := ask(client, base, after)
		s2, _, err2 := ask(client, base, after)
		if err1 == nil && err2 == nil && s2 == "HIT" {
			_ = s1
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caching did not resume after the failover: %s %v, %s %v\n%s", s1, err1, s2, err2, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	if s, _, err := ask(client, base, before); err != nil || s != "HIT" {
		t.Errorf("the entry replicated before the kill: %s %v; want a HIT from the new primary", s, err)
	}
	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during the failover (first: %v): the cache must fail open", n, sent.Load(), firstErr.Load())
	}
	t.Logf("%d requests during the failover, %d failed; the sentinels promoted the replica %v after the kill", sent.Load(), failures.Load(), promoted.Round(time.Millisecond))
	latMu.Lock()
	defer latMu.Unlock()
	for i, name := range []string{"before the kill", "kill to promotion", "after the promotion"} {
		if len(lat[i]) == 0 {
			continue
		}
		slices.Sort(lat[i])
		t.Logf("failover | %s | %d requests | %d errors | p50 %v | p99 %v | max %v", name, len(lat[i]), phaseEr[i],
			percentile(lat[i], 0.5).Round(time.Microsecond), percentile(lat[i], 0.99).Round(time.Microsecond), lat[i][len(lat[i])-1].Round(time.Microsecond))
	}
}

// TestServeOnRedisCluster runs `semcache serve --redis-url
// redis-cluster://` on a three-node Redis Cluster of Debian's redis-server:
// the exact tier works across shards (MISS, then HIT), the semantic tier is
// off (a rephrased question is a MISS, not a lookup error), and the start
// says so.
func TestServeOnRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	cfg, err := parseServe([]string{"--listen", "127.0.0.1:0", "--backend", "redis", "--redis-url", cl.URL(),
		"--sim-latency", "0s", "--sim-per-token-latency", "0s"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	base, logs, stop := startServe(t, cfg)
	defer stop()
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range 20 {
		q := fmt.Sprintf("How do I reset the password of account number %d?", i)
		for _, want := range []string{"MISS", "HIT"} {
			if s, _, err := ask(client, base, q); err != nil || s != want {
				t.Fatalf("%q: %s %v, want %s\n%s", q, s, err, want, logs)
			}
		}
	}
	if s, _, err := ask(client, base, "how do i reset the password of account number 3, please?"); err != nil || s != "MISS" {
		t.Errorf("a rephrased question: %s %v, want a MISS (no semantic tier on a Cluster)", s, err)
	}
	var stats struct {
		LookupErrors int64 `json:"lookup_errors"`
		StoreErrors  int64 `json:"store_errors"`
		ExactHits    int64 `json:"exact_hits"`
	}
	getJSON(t, base+"/api/v1/cache/stats", &stats)
	if stats.LookupErrors != 0 || stats.StoreErrors != 0 || stats.ExactHits != 20 {
		t.Errorf("stats %+v: want 20 exact hits and no errors", stats)
	}
	if !strings.Contains(logs.String(), "exact tier only") {
		t.Errorf("the start does not say the semantic tier is off:\n%s", logs)
	}
}
