package semantic_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/index/redistest"
	"github.com/semcache/semcache/semantic"
)

// replicas returns n caches, each with its own connection to one plain
// redis-server (the exact tier and the lease need no search module), as n
// proxy replicas would be.
func replicas(t *testing.T, n int, lease semantic.LeaseConfig) ([]*semantic.Cache, *index.Redis) {
	t.Helper()
	srv := redistest.Start(t)
	open := func() *index.Redis {
		r, err := index.NewRedis(t.Context(), index.RedisConfig{URL: srv.URL(), Dim: 3, Fingerprint: "fake/3", IndexCheckInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	var out []*semantic.Cache
	for range n {
		c, err := semantic.New(semantic.Config{Threshold: 0.9, Lease: lease,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, &fakeEmbedder{t: t}, open())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		out = append(out, c)
	}
	return out, open()
}

// gatedUpstream is a fake upstream whose calls block until open is closed
// (or answer at once when it is nil), answering with status.
type gatedUpstream struct {
	calls  atomic.Int64
	open   chan struct{}
	status atomic.Int64 // 0 means 200
}

func (g *gatedUpstream) fetch(ctx context.Context) (semantic.Upstream, error) {
	n := g.calls.Add(1)
	if g.open != nil {
		select {
		case <-g.open:
		case <-ctx.Done():
			return semantic.Upstream{}, ctx.Err()
		}
	}
	if s := g.status.Load(); s != 0 {
		return semantic.Upstream{Status: int(s), ContentType: "application/json", Body: []byte(`{"error":{"message":"down"}}`)}, nil
	}
	return semantic.Upstream{Status: 200, ContentType: "application/json",
		Body: completion(fmt.Sprintf("answer of call %d", n), 5, 7, reason("stop"))}, nil
}

// waitUntil polls cond; the deadline only stops a hung test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func sumStats(cs []*semantic.Cache, f func(*semantic.Stats) int64) int64 {
	var n int64
	for _, c := range cs {
		n += f(c.Stats())
	}
	return n
}

// TestLeaseOneUpstreamCallAcrossReplicas sends 30 concurrent identical
// requests spread over three caches sharing one Redis: with the lease they
// make one upstream call and all get its answer; without it (the control)
// each replica makes its own.
func TestLeaseOneUpstreamCallAcrossReplicas(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lease semantic.LeaseConfig
		calls int64
	}{{"lease", semantic.LeaseConfig{}, 1}, {"no lease", semantic.LeaseConfig{TTL: -1}, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			caches, _ := replicas(t, 3, tc.lease)
			up := &gatedUpstream{open: make(chan struct{})}
			id := ident(t, "t1", promptBase)
			var wg sync.WaitGroup
			results := make([]semantic.Result, 30)
			errs := make([]error, 30)
			for i := range 30 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i], errs[i] = caches[i%3].Do(t.Context(), id, up.fetch)
				}()
			}
			// Every replica's flight is in: one at the upstream and two
			// waiting on its lease, or, without the lease, three at the
			// upstream.
			waitUntil(t, "every replica is in flight", func() bool {
				return up.calls.Load()+sumStats(caches, func(s *semantic.Stats) int64 { return s.LeaseWaits.Load() }) == 3
			})
			close(up.open)
			wg.Wait()
			if got := up.calls.Load(); got != tc.calls {
				t.Errorf("upstream calls: %d, want %d", got, tc.calls)
			}
			leased := 0
			for i, r := range results {
				if errs[i] != nil {
					t.Fatalf("request %d: %v", i, errs[i])
				}
				// A request that arrived after the answer was stored is an
				// exact hit; every other one waited for an upstream call.
				if r.Outcome != semantic.Miss && (r.Outcome != semantic.Hit || r.Tier != semantic.TierExact) {
					t.Errorf("request %d: %s %s, want a MISS or an exact HIT", i, r.Outcome, r.Tier)
				}
				if tc.calls == 1 && string(r.Body) != string(results[0].Body) {
					t.Errorf("request %d got %s, request 0 %s: one call, one answer", i, r.Body, results[0].Body)
				}
				if r.Leased {
					leased++
				}
			}
			served := sumStats(caches, func(s *semantic.Stats) int64 { return s.LeaseServed.Load() })
			if want := 3 - tc.calls; served != want || sumStats(caches, func(s *semantic.Stats) int64 { return s.LeaseFallbacks.Load() }) != 0 {
				t.Errorf("lease served %d (want %d), fallbacks %d (want 0)", served, want, sumStats(caches, func(s *semantic.Stats) int64 { return s.LeaseFallbacks.Load() }))
			}
			if tc.calls == 1 && leased < 2 {
				t.Errorf("%d results marked Leased, want at least the two waiting replicas' flights", leased)
			}
			if calls := sumStats(caches, func(s *semantic.Stats) int64 { return s.UpstreamCalls.Load() }); calls != tc.calls {
				t.Errorf("Stats.UpstreamCalls: %d, want %d", calls, tc.calls)
			}
		})
	}
}

// TestLeaseHolderDies takes the lease as a holder that dies at once (it
// never refreshes nor releases it): the waiting request takes the lease
// over when it expires, makes the call and gets its answer.
func TestLeaseHolderDies(t *testing.T) {
	caches, raw := replicas(t, 1, semantic.LeaseConfig{Poll: time.Millisecond})
	id := ident(t, "t1", promptBase)
	if _, ok, err := raw.AcquireLease(t.Context(), id.Key, 50*time.Millisecond); !ok || err != nil {
		t.Fatalf("AcquireLease: %v %v", ok, err)
	}
	up := &gatedUpstream{}
	r, err := caches[0].Do(t.Context(), id, up.fetch)
	if err != nil || r.Outcome != semantic.Miss || !r.Stored || r.Leased {
		t.Fatalf("Do: %+v %v; want its own stored miss", r, err)
	}
	s := caches[0].Stats()
	if up.calls.Load() != 1 || s.LeaseWaits.Load() != 1 || s.LeaseFallbacks.Load() != 1 || s.LeaseServed.Load() != 0 {
		t.Errorf("calls %d, waits %d, fallbacks %d, served %d; want 1, 1, 1, 0", up.calls.Load(), s.LeaseWaits.Load(), s.LeaseFallbacks.Load(), s.LeaseServed.Load())
	}
	if st, err := raw.LeaseState(t.Context(), id.Key); st != index.LeaseFree || err != nil {
		t.Errorf("lease after the call: %v %v, want released", st, err)
	}
}

// TestLeaseAbandoned: when the holder's answer is not stored (an upstream
// 500), the waiters make their own calls at once, side by side, instead of
// queueing for the lease one after another.
func TestLeaseAbandoned(t *testing.T) {
	caches, raw := replicas(t, 3, semantic.LeaseConfig{Poll: time.Millisecond, Wait: 10 * time.Minute}) // no fallback by the bound within the test
	id := ident(t, "t1", promptBase)
	holderUp := &gatedUpstream{open: make(chan struct{})}
	holderUp.status.Store(500)
	done := make(chan semantic.Result, 1)
	go func() {
		r, _ := caches[0].Do(t.Context(), id, holderUp.fetch)
		done <- r
	}()
	waitUntil(t, "the holder calls upstream", func() bool { return holderUp.calls.Load() == 1 })
	waiterUp := &gatedUpstream{open: make(chan struct{})}
	got := make(chan semantic.Result, 2)
	for _, c := range caches[1:] {
		go func() {
			r, _ := c.Do(t.Context(), id, waiterUp.fetch)
			got <- r
		}()
	}
	waitUntil(t, "both other replicas wait", func() bool {
		return caches[1].Stats().LeaseWaits.Load() == 1 && caches[2].Stats().LeaseWaits.Load() == 1
	})
	close(holderUp.open)
	if r := <-done; r.Status != 500 || r.Stored {
		t.Fatalf("holder: %d stored %v, want an unstored 500", r.Status, r.Stored)
	}
	// Both waiters are at the upstream together: neither took a lease the
	// other queues behind.
	waitUntil(t, "both waiters call upstream", func() bool { return waiterUp.calls.Load() == 2 })
	close(waiterUp.open)
	for range 2 {
		if r := <-got; r.Status != 200 || !r.Stored {
			t.Errorf("waiter: %d stored %v; want its own stored 200", r.Status, r.Stored)
		}
	}
	if n := sumStats(caches, func(s *semantic.Stats) int64 { return s.LeaseFallbacks.Load() }); n != 2 {
		t.Errorf("fallbacks %d, want 2", n)
	}
	if st, _ := raw.LeaseState(t.Context(), id.Key); st == index.LeaseHeld {
		t.Errorf("lease still held after the calls")
	}
}

// TestLeaseWaitBound: a waiter whose holder is alive but slower than
// Lease.Wait makes its own call; requests that must not wait (no-cache,
// no-store) never do.
func TestLeaseWaitBound(t *testing.T) {
	caches, raw := replicas(t, 1, semantic.LeaseConfig{Wait: 20 * time.Millisecond, Poll: time.Millisecond})
	id := ident(t, "t1", promptBase)
	token, ok, err := raw.AcquireLease(t.Context(), id.Key, time.Minute) // a live, slow holder
	if !ok || err != nil {
		t.Fatalf("AcquireLease: %v %v", ok, err)
	}
	up := &gatedUpstream{}
	for _, o := range []semantic.Options{{NoStore: true}, {SkipLookup: true}} {
		if _, err := caches[0].DoWith(t.Context(), id, o, up.fetch); err != nil {
			t.Fatal(err)
		}
	}
	if s := caches[0].Stats(); s.LeaseWaits.Load() != 0 || up.calls.Load() != 2 {
		t.Fatalf("no-cache and no-store requests: %d waits, %d calls; want 0 and 2", s.LeaseWaits.Load(), up.calls.Load())
	}
	if _, err := caches[0].Delete(t.Context(), id.Key); err != nil { // the no-cache request stored its answer
		t.Fatal(err)
	}
	r, err := caches[0].Do(t.Context(), id, up.fetch)
	if err != nil || r.Outcome != semantic.Miss || !r.Stored {
		t.Fatalf("Do: %+v %v", r, err)
	}
	if s := caches[0].Stats(); s.LeaseWaits.Load() != 1 || s.LeaseFallbacks.Load() != 1 || up.calls.Load() != 3 {
		t.Errorf("waits %d, fallbacks %d, calls %d; want 1, 1, 3", s.LeaseWaits.Load(), s.LeaseFallbacks.Load(), up.calls.Load())
	}
	// The slow holder's lease is its own: the waiter neither took nor
	// released it.
	if held, err := raw.RefreshLease(t.Context(), id.Key, token, time.Minute); !held || err != nil {
		t.Errorf("the holder's lease: %v %v, want still held", held, err)
	}
}

// TestLeaseConfigRejects checks that bad lease settings name the field.
func TestLeaseConfigRejects(t *testing.T) {
	for _, lc := range []semantic.LeaseConfig{{TTL: time.Millisecond}, {TTL: 499 * time.Millisecond}, {Wait: -1}, {Poll: -1}} {
		mem, err := index.NewMemory(index.MemoryConfig{Dim: 3, SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		if _, err := semantic.New(semantic.Config{Threshold: 0.9, Lease: lc}, &fakeEmbedder{t: t}, mem); err == nil || !strings.Contains(err.Error(), "Lease.") {
			t.Errorf("%+v: %v, want an error naming the field", lc, err)
		}
	}
}
