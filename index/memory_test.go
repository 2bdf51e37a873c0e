package index

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memKinds are the vector indexes a Memory store can use; most tests run
// against both.
var memKinds = []string{"hnsw", "flat"}

// memClock is a manual clock, safe for concurrent use.
type memClock struct{ ns atomic.Int64 }

func newMemClock() *memClock {
	c := new(memClock)
	c.ns.Store(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *memClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *memClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// newTestMemory returns a 3-d Memory store without a background sweep, on
// a manual clock, closed when the test ends.
func newTestMemory(t *testing.T, kind string, maxEntries int) (*Memory, *memClock) {
	t.Helper()
	clock := newMemClock()
	m, err := NewMemory(MemoryConfig{Dim: 3, MaxEntries: maxEntries, Index: kind, SweepInterval: -1, Now: clock.Now})
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m, clock
}

var (
	memX  = []float32{1, 0, 0}
	memY  = []float32{0, 1, 0}
	memZ  = []float32{0, 0, 1}
	memXY = []float32{0.8, 0.6, 0} // cosine 0.8 with memX, 0.6 with memY
)

const memTTL = time.Minute

func memSet(t *testing.T, m *Memory, key, scope string, vec []float32) {
	t.Helper()
	if err := m.Set(context.Background(), key, scope, []byte("value of "+key), vec, memTTL); err != nil {
		t.Fatalf("Set(%s, %s): %v", key, scope, err)
	}
}

// memGet returns the value under key, or "" on a miss.
func memGet(t *testing.T, m *Memory, key string) (string, bool) {
	t.Helper()
	v, ok, err := m.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	if !ok && v != nil {
		t.Errorf("Get(%s) missed with value %q", key, v)
	}
	return string(v), ok
}

// memSearch returns the ids Search finds, best first.
func memSearch(t *testing.T, m *Memory, scope string, vec []float32, k int) []Neighbor {
	t.Helper()
	nn, err := m.Search(context.Background(), scope, vec, k)
	if err != nil {
		t.Fatalf("Search(%s): %v", scope, err)
	}
	return nn
}

func ids(nn []Neighbor) []string {
	out := make([]string, len(nn))
	for i, n := range nn {
		out[i] = n.ID
	}
	return out
}

func memLen(t *testing.T, m *Memory) int {
	t.Helper()
	n, err := m.Len(context.Background())
	if err != nil {
		t.Fatalf("Len: %v", err)
	}
	return n
}

// wantSizes checks the entry and vector counts, and that the LRU and the
// vector indexes agree (checkMemoryConsistent).
func wantSizes(t *testing.T, m *Memory, entries, vectors int) {
	t.Helper()
	if n := memLen(t, m); n != entries {
		t.Errorf("Len = %d, want %d", n, entries)
	}
	if n := m.VectorLen(); n != vectors {
		t.Errorf("VectorLen = %d, want %d", n, vectors)
	}
	checkMemoryConsistent(t, m)
}

// checkMemoryConsistent checks Memory's invariant: every entry with a vector
// has exactly one, in its own scope's index, and every indexed vector
// belongs to such an entry. Empty indexes are dropped.
func checkMemoryConsistent(t *testing.T, m *Memory) {
	t.Helper()
	m.wmu.Lock() // no writer may run while we look
	defer m.wmu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	indexed := make(map[string]string) // id -> scope
	for scope, p := range m.parts {
		var pids []string
		switch p := p.(type) {
		case *HNSW:
			p.mu.RLock()
			for id := range p.ids {
				pids = append(pids, id)
			}
			p.mu.RUnlock()
		case *Flat:
			p.mu.RLock()
			pids = append(pids, p.ids...)
			p.mu.RUnlock()
		default:
			t.Fatalf("scope %q: index %T", scope, p)
		}
		if len(pids) == 0 {
			t.Errorf("scope %q: empty index left behind", scope)
		}
		for _, id := range pids {
			if other, dup := indexed[id]; dup {
				t.Errorf("id %q indexed in scopes %q and %q", id, other, scope)
			}
			indexed[id] = scope
		}
	}
	withVector := 0
	for _, k := range m.lru.Keys() {
		r, _ := m.lru.Peek(k)
		scope, ok := indexed[k]
		switch {
		case r.hasVector && !ok:
			t.Errorf("entry %q has no vector in scope %q", k, r.scope)
		case r.hasVector && scope != r.scope:
			t.Errorf("entry %q of scope %q has its vector in scope %q", k, r.scope, scope)
		case !r.hasVector && ok:
			t.Errorf("exact-only entry %q has a vector in scope %q", k, scope)
		}
		if r.hasVector {
			withVector++
		}
	}
	if withVector != len(indexed) {
		t.Errorf("%d entries with vectors, %d vectors indexed", withVector, len(indexed))
	}
}

func TestNewMemoryConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     MemoryConfig
		wantErr bool
	}{
		{"Dim 0", MemoryConfig{}, true},
		{"Dim negative", MemoryConfig{Dim: -3}, true},
		{"MaxEntries negative", MemoryConfig{Dim: 3, MaxEntries: -1}, true},
		{"Index bogus", MemoryConfig{Dim: 3, Index: "bogus"}, true},
		{"Index upper case", MemoryConfig{Dim: 3, Index: "HNSW"}, true},
		{"HNSW M 1", MemoryConfig{Dim: 3, HNSW: HNSWConfig{M: 1}}, true},
		{"HNSW EfSearch negative", MemoryConfig{Dim: 3, HNSW: HNSWConfig{EfSearch: -1}}, true},
		{"defaults", MemoryConfig{Dim: 3}, false},
		{"hnsw", MemoryConfig{Dim: 3, Index: "hnsw", MaxEntries: 1}, false},
		{"flat", MemoryConfig{Dim: 3, Index: "flat"}, false},
		{"HNSW Dim ignored", MemoryConfig{Dim: 3, HNSW: HNSWConfig{Dim: 7}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.SweepInterval = -1
			m, err := NewMemory(cfg)
			if tt.wantErr {
				if err == nil {
					m.Close()
					t.Fatalf("NewMemory(%+v) = nil error, want one", tt.cfg)
				}
				if m != nil {
					t.Error("NewMemory returned a store with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("NewMemory(%+v): %v", tt.cfg, err)
			}
			defer m.Close()
			if m.Dim() != 3 {
				t.Errorf("Dim = %d, want 3", m.Dim())
			}
			// A 3-d vector works whatever HNSW.Dim said.
			memSet(t, m, "k", "s", memX)
			wantSizes(t, m, 1, 1)
		})
	}
}

func TestMemoryBasics(t *testing.T) {
	for _, kind := range memKinds {
		t.Run(kind, func(t *testing.T) {
			m, _ := newTestMemory(t, kind, 0)
			ctx := context.Background()

			if _, ok := memGet(t, m, "x"); ok {
				t.Error("Get on an empty store hit")
			}
			if nn := memSearch(t, m, "s", memX, 4); nn != nil {
				t.Errorf("Search on an empty store = %v, want nil", nn)
			}

			memSet(t, m, "x", "s", memX)
			memSet(t, m, "y", "s", memY)
			memSet(t, m, "exact", "s", nil) // exact tier only
			wantSizes(t, m, 3, 2)

			for _, k := range []string{"x", "y", "exact"} {
				if v, ok := memGet(t, m, k); !ok || v != "value of "+k {
					t.Errorf("Get(%s) = %q, %v; want its value", k, v, ok)
				}
			}

			nn := memSearch(t, m, "s", memXY, 4)
			if got := ids(nn); !slices.Equal(got, []string{"x", "y"}) {
				t.Fatalf("Search = %v, want [x y] (the exact-only entry has no vector)", got)
			}
			if math.Abs(float64(nn[0].Similarity)-0.8) > 1e-6 || math.Abs(float64(nn[1].Similarity)-0.6) > 1e-6 {
				t.Errorf("similarities = %v, %v; want 0.8, 0.6", nn[0].Similarity, nn[1].Similarity)
			}
			if got := ids(memSearch(t, m, "s", memY, 1)); !slices.Equal(got, []string{"y"}) {
				t.Errorf("Search k=1 = %v, want [y]", got)
			}
			if nn := memSearch(t, m, "s", []float32{2, 0, 0}, 1); len(nn) != 1 || nn[0].Similarity < 0.999999 {
				t.Errorf("Search with an unnormalised query = %v, want x at similarity 1", nn)
			}
			if _, err := m.Search(ctx, "s", []float32{1, 0}, 1); !errors.Is(err, ErrDimensionMismatch) {
				t.Errorf("Search with a 2-d query: %v, want ErrDimensionMismatch", err)
			}

			ok, err := m.Delete(ctx, "x")
			if err != nil || !ok {
				t.Fatalf("Delete(x) = %v, %v; want true, nil", ok, err)
			}
			if _, ok := memGet(t, m, "x"); ok {
				t.Error("Get(x) hit after Delete")
			}
			if got := ids(memSearch(t, m, "s", memX, 4)); !slices.Equal(got, []string{"y"}) {
				t.Errorf("Search after Delete(x) = %v, want [y]", got)
			}
			wantSizes(t, m, 2, 1)
			if ok, _ := m.Delete(ctx, "x"); ok {
				t.Error("second Delete(x) reported it present")
			}
			if ok, _ := m.Delete(ctx, "never"); ok {
				t.Error("Delete of an unknown key reported it present")
			}
			if ok, _ := m.Delete(ctx, "exact"); !ok {
				t.Error("Delete(exact) reported it absent")
			}
			if ok, _ := m.Delete(ctx, "y"); !ok {
				t.Error("Delete(y) reported it absent")
			}
			wantSizes(t, m, 0, 0)
			if nn := memSearch(t, m, "s", memX, 4); len(nn) != 0 {
				t.Errorf("Search after deleting everything = %v", nn)
			}
		})
	}
}

func TestMemoryScopesIsolated(t *testing.T) {
	for _, kind := range memKinds {
		t.Run(kind, func(t *testing.T) {
			m, _ := newTestMemory(t, kind, 0)
			memSet(t, m, "a1", "A", memX)
			memSet(t, m, "a2", "A", memXY)
			memSet(t, m, "b1", "B", memZ)
			wantSizes(t, m, 3, 3)

			// Query B with A's exact vectors: only B's entry, however far.
			for _, q := range [][]float32{memX, memXY, memY} {
				if got := ids(memSearch(t, m, "B", q, 10)); !slices.Equal(got, []string{"b1"}) {
					t.Errorf("Search(B, %v) = %v, want [b1]", q, got)
				}
			}
			if got := ids(memSearch(t, m, "A", memZ, 10)); len(got) != 2 || slices.Contains(got, "b1") {
				t.Errorf("Search(A, z) = %v, want a1 and a2 only", got)
			}
			for _, scope := range []string{"C", "", "a"} {
				if nn := memSearch(t, m, scope, memX, 10); len(nn) != 0 {
					t.Errorf("Search(%q) = %v, want nothing", scope, nn)
				}
			}
		})
	}
}

func TestMemoryReplace(t *testing.T) {
	tests := []struct {
		name        string
		scope       string
		vec         []float32
		wantVectors int
		wantIn      string // the scope whose search finds k, "" for none
	}{
		{"same scope, new vector", "A", memY, 1, "A"},
		{"same scope, same vector", "A", memX, 1, "A"},
		{"other scope", "B", memY, 1, "B"},
		{"same scope, no vector", "A", nil, 0, ""},
		{"other scope, no vector", "B", nil, 0, ""},
	}
	for _, kind := range memKinds {
		for _, tt := range tests {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				m, _ := newTestMemory(t, kind, 0)
				memSet(t, m, "k", "A", memX)
				if err := m.Set(context.Background(), "k", tt.scope, []byte("new"), tt.vec, memTTL); err != nil {
					t.Fatalf("replacing Set: %v", err)
				}
				wantSizes(t, m, 1, tt.wantVectors)
				if v, ok := memGet(t, m, "k"); !ok || v != "new" {
					t.Errorf("Get = %q, %v; want the new value", v, ok)
				}
				for _, scope := range []string{"A", "B"} {
					got := ids(memSearch(t, m, scope, memY, 10))
					want := []string{}
					if scope == tt.wantIn {
						want = []string{"k"}
					}
					if !slices.Equal(got, want) {
						t.Errorf("Search(%s) = %v, want %v", scope, got, want)
					}
				}
				if tt.vec != nil {
					nn := memSearch(t, m, tt.wantIn, tt.vec, 1)
					if len(nn) != 1 || nn[0].Similarity < 0.999999 {
						t.Errorf("Search with the new vector = %v, want k at similarity 1", nn)
					}
				}
			})
		}
	}

	// Replacing an exact-only entry with a vector adds it.
	m, _ := newTestMemory(t, "hnsw", 0)
	memSet(t, m, "k", "A", nil)
	memSet(t, m, "k", "A", memX)
	wantSizes(t, m, 1, 1)
}

func TestMemorySetRejects(t *testing.T) {
	tests := []struct {
		name    string
		vec     []float32
		ttl     time.Duration
		wantErr error // nil: any error
	}{
		{"too short", []float32{1, 0}, memTTL, ErrDimensionMismatch},
		{"too long", []float32{1, 0, 0, 0}, memTTL, ErrDimensionMismatch},
		{"empty", []float32{}, memTTL, ErrDimensionMismatch},
		{"zero vector", []float32{0, 0, 0}, memTTL, ErrInvalidVector},
		{"NaN", []float32{float32(math.NaN()), 1, 0}, memTTL, ErrInvalidVector},
		{"+Inf", []float32{float32(math.Inf(1)), 0, 0}, memTTL, ErrInvalidVector},
		{"ttl 0", memY, 0, nil},
		{"ttl negative", memY, -time.Second, nil},
		{"ttl 0 without vector", nil, 0, nil},
	}
	for _, kind := range memKinds {
		for _, tt := range tests {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				m, _ := newTestMemory(t, kind, 0)
				memSet(t, m, "old", "s", memX)

				for _, key := range []string{"new", "old"} {
					err := m.Set(context.Background(), key, "s", []byte("bad"), tt.vec, tt.ttl)
					if err == nil {
						t.Fatalf("Set(%s) = nil error", key)
					}
					if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
						t.Errorf("Set(%s) error %v, want %v", key, err, tt.wantErr)
					}
				}
				wantSizes(t, m, 1, 1)
				if _, ok := memGet(t, m, "new"); ok {
					t.Error("the rejected new key is stored")
				}
				if v, ok := memGet(t, m, "old"); !ok || v != "value of old" {
					t.Errorf("Get(old) = %q, %v; want it unchanged", v, ok)
				}
				if got := ids(memSearch(t, m, "s", memX, 10)); !slices.Equal(got, []string{"old"}) {
					t.Errorf("Search = %v, want [old]", got)
				}
			})
		}
	}
}

func TestMemoryExpiry(t *testing.T) {
	for _, kind := range memKinds {
		t.Run(kind, func(t *testing.T) {
			m, clock := newTestMemory(t, kind, 0)
			ctx := context.Background()
			set := func(key string, vec []float32, ttl time.Duration) {
				t.Helper()
				if err := m.Set(ctx, key, "s", []byte(key), vec, ttl); err != nil {
					t.Fatal(err)
				}
			}
			set("short", memX, 10*time.Second)
			set("long", memXY, time.Hour)
			set("short-exact", nil, 10*time.Second)

			clock.Advance(10*time.Second - time.Nanosecond)
			if _, ok := memGet(t, m, "short"); !ok {
				t.Error("Get(short) missed 1ns before its expiry")
			}
			if got := ids(memSearch(t, m, "s", memX, 10)); !slices.Equal(got, []string{"short", "long"}) {
				t.Errorf("Search before expiry = %v, want [short long]", got)
			}

			clock.Advance(time.Nanosecond) // exactly at the expiry
			// Search omits the expired entry before any sweep or read.
			if got := ids(memSearch(t, m, "s", memX, 10)); !slices.Equal(got, []string{"long"}) {
				t.Errorf("Search at expiry = %v, want [long]", got)
			}
			wantSizes(t, m, 3, 2) // nothing removed yet

			// Get deletes the expired entry, vector included.
			if _, ok := memGet(t, m, "short"); ok {
				t.Error("Get(short) hit at its expiry")
			}
			wantSizes(t, m, 2, 1)

			// Sweep removes what is left expired and counts it.
			if n := m.Sweep(); n != 1 {
				t.Errorf("Sweep = %d, want 1 (short-exact)", n)
			}
			wantSizes(t, m, 1, 1)
			if n := m.Sweep(); n != 0 {
				t.Errorf("second Sweep = %d, want 0", n)
			}

			clock.Advance(time.Hour)
			if n := m.Sweep(); n != 1 {
				t.Errorf("Sweep after an hour = %d, want 1", n)
			}
			wantSizes(t, m, 0, 0)
			if nn := memSearch(t, m, "s", memXY, 10); len(nn) != 0 {
				t.Errorf("Search after the sweep = %v", nn)
			}
		})
	}
}

func TestMemorySweepRemovesVectors(t *testing.T) {
	for _, kind := range memKinds {
		t.Run(kind, func(t *testing.T) {
			m, clock := newTestMemory(t, kind, 0)
			for i := range 10 {
				memSet(t, m, fmt.Sprintf("k%d", i), fmt.Sprintf("scope%d", i%3), []float32{1, float32(i), 0})
			}
			wantSizes(t, m, 10, 10)
			clock.Advance(memTTL)
			if n := m.Sweep(); n != 10 {
				t.Errorf("Sweep = %d, want 10", n)
			}
			wantSizes(t, m, 0, 0)
		})
	}
}

func TestMemoryReplaceResetsTTL(t *testing.T) {
	m, clock := newTestMemory(t, "flat", 0)
	memSet(t, m, "k", "s", memX)
	clock.Advance(memTTL - time.Second)
	memSet(t, m, "k", "s", memX)
	clock.Advance(time.Second)
	if _, ok := memGet(t, m, "k"); !ok {
		t.Error("a replaced entry expired on its old TTL")
	}
	if n := m.Sweep(); n != 0 {
		t.Errorf("Sweep = %d, want 0", n)
	}
}

func TestMemoryLRUEviction(t *testing.T) {
	const maxN = 3
	for _, kind := range memKinds {
		t.Run(kind, func(t *testing.T) {
			m, _ := newTestMemory(t, kind, maxN)
			vecs := [][]float32{memX, memY, memZ, memXY, {0, 0.6, 0.8}}
			for i, v := range vecs[:maxN] {
				memSet(t, m, fmt.Sprintf("k%d", i), fmt.Sprintf("scope%d", i%2), v)
			}
			wantSizes(t, m, maxN, maxN)

			// Reading k0 makes k1 the least recently used.
			if _, ok := memGet(t, m, "k0"); !ok {
				t.Fatal("Get(k0) missed")
			}
			memSet(t, m, "k3", "scope1", vecs[3])
			wantSizes(t, m, maxN, maxN)
			if _, ok := memGet(t, m, "k1"); ok {
				t.Error("k1 (least recently used) was not evicted")
			}
			for _, k := range []string{"k0", "k2", "k3"} {
				if _, ok := memGet(t, m, k); !ok {
					t.Errorf("Get(%s) missed; only k1 should be evicted", k)
				}
			}
			for _, scope := range []string{"scope0", "scope1"} {
				if got := ids(memSearch(t, m, scope, memY, 10)); slices.Contains(got, "k1") {
					t.Errorf("Search(%s) = %v still finds the evicted k1", scope, got)
				}
			}

			// An exact-only entry evicts a vector too.
			if err := m.Set(context.Background(), "e", "scope0", nil, nil, memTTL); err != nil {
				t.Fatal(err)
			}
			wantSizes(t, m, maxN, maxN-1)

			// Evicting the last vector of a scope drops its index.
			m2, _ := newTestMemory(t, kind, 1)
			memSet(t, m2, "a", "A", memX)
			memSet(t, m2, "b", "B", memX)
			wantSizes(t, m2, 1, 1)
			if nn := memSearch(t, m2, "A", memX, 10); len(nn) != 0 {
				t.Errorf("Search(A) = %v after its only entry was evicted", nn)
			}
			// Evicting an entry of the same scope keeps the new vector.
			memSet(t, m2, "c", "B", memY)
			wantSizes(t, m2, 1, 1)
			if got := ids(memSearch(t, m2, "B", memY, 10)); !slices.Equal(got, []string{"c"}) {
				t.Errorf("Search(B) = %v, want [c]", got)
			}
		})
	}
}

func TestMemoryConcurrent(t *testing.T) {
	const (
		workers = 8
		ops     = 300
		keys    = 40
		scopes  = 3
	)
	for _, kind := range memKinds {
		for _, maxEntries := range []int{0, 16} {
			t.Run(fmt.Sprintf("%s/max%d", kind, maxEntries), func(t *testing.T) {
				m, clock := newTestMemory(t, kind, maxEntries)
				ctx := context.Background()
				var wg sync.WaitGroup
				for w := range workers {
					wg.Go(func() {
						for i := range ops {
							key := fmt.Sprintf("k%d", (w*7+i*13)%keys)
							scope := fmt.Sprintf("s%d", (w+i)%scopes)
							vec := []float32{1, float32(w), float32(i%5) + 0.5}
							var err error
							switch i % 6 {
							case 0, 1:
								err = m.Set(ctx, key, scope, []byte(key), vec, memTTL)
							case 2:
								_, _, err = m.Get(ctx, key)
							case 3:
								var nn []Neighbor
								nn, err = m.Search(ctx, scope, vec, 5)
								for _, n := range nn {
									if n.Similarity > 1 || n.Similarity < -1 {
										t.Errorf("similarity %v out of range", n.Similarity)
									}
								}
							case 4:
								_, err = m.Delete(ctx, key)
							case 5:
								if w == 0 && i%60 == 5 {
									clock.Advance(memTTL / 4) // some entries expire mid-run
								}
								m.Sweep()
								_ = m.VectorLen()
							}
							if err != nil {
								t.Errorf("worker %d op %d: %v", w, i, err)
								return
							}
						}
					})
				}
				wg.Wait()

				// Every entry was set with a vector.
				n := memLen(t, m)
				if v := m.VectorLen(); n != v {
					t.Errorf("Len = %d, VectorLen = %d; want equal", n, v)
				}
				if maxEntries > 0 && n > maxEntries {
					t.Errorf("Len = %d > MaxEntries %d", n, maxEntries)
				}
				checkMemoryConsistent(t, m)
			})
		}
	}
}

func TestMemoryClose(t *testing.T) {
	for _, sweep := range []time.Duration{-1, time.Hour} {
		t.Run(fmt.Sprint(sweep), func(t *testing.T) {
			m, err := NewMemory(MemoryConfig{Dim: 3, SweepInterval: sweep})
			if err != nil {
				t.Fatal(err)
			}
			memSet(t, m, "k", "s", memX)
			if err := m.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := m.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			// Close deletes nothing.
			if v, ok := memGet(t, m, "k"); !ok || v != "value of k" {
				t.Errorf("Get after Close = %q, %v; want the entry", v, ok)
			}
			if got := ids(memSearch(t, m, "s", memX, 1)); !slices.Equal(got, []string{"k"}) {
				t.Errorf("Search after Close = %v, want [k]", got)
			}
			wantSizes(t, m, 1, 1)
		})
	}
}

// TestMemorySearchDuringMove checks Search against the state a Set passes
// through when it moves a key to another scope or drops its vector: the LRU
// already holds the new record while the old scope's index still holds the
// old vector. A query of the old scope must not see the key then, or the
// semantic tier would serve the other scope's value.
func TestMemorySearchDuringMove(t *testing.T) {
	tests := []struct {
		name   string
		scope  string
		vector bool
	}{
		{"moved to another scope", "B", true},
		{"moved to another scope without a vector", "B", false},
		{"vector dropped in the same scope", "A", false},
	}
	for _, kind := range memKinds {
		for _, tt := range tests {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				m, clock := newTestMemory(t, kind, 0)
				memSet(t, m, "k", "A", memX)
				// The first half of Set: the new record is in the LRU, the
				// old vector has not been deleted yet.
				m.mu.Lock()
				m.lru.Add("k", &memRecord{scope: tt.scope, value: []byte("new"), expiresAt: clock.Now().Add(memTTL), hasVector: tt.vector})
				m.mu.Unlock()
				if got := ids(memSearch(t, m, "A", memX, 10)); len(got) != 0 {
					t.Errorf("Search(A) = %v, want nothing: k no longer has a vector in A", got)
				}
			})
		}
	}
}

// TestMemoryEvictionAndExpiryCounts checks that Evictions counts only the
// LRU's evictions, and Expired only expired entries deleted by a read or
// the sweep: replacements, deletions and Flush count in neither.
func TestMemoryEvictionAndExpiryCounts(t *testing.T) {
	ctx := context.Background()
	m, clock := newTestMemory(t, "flat", 2)
	want := func(evictions, expired int64) {
		t.Helper()
		if got := m.Evictions(); got != evictions {
			t.Errorf("Evictions = %d, want %d", got, evictions)
		}
		if got := m.Expired(); got != expired {
			t.Errorf("Expired = %d, want %d", got, expired)
		}
	}
	memSet(t, m, "a", "s", memX)
	memSet(t, m, "b", "s", memY)
	memSet(t, m, "b", "s", memZ) // a replacement, not an eviction
	want(0, 0)
	memSet(t, m, "c", "s", memXY) // a third entry in a store of 2 evicts a
	want(1, 0)
	if _, ok := memGet(t, m, "a"); ok {
		t.Error("a was not evicted")
	}

	if ok, err := m.Delete(ctx, "b"); err != nil || !ok {
		t.Fatalf("Delete(b) = %v, %v", ok, err)
	}
	want(1, 0)

	if err := m.Set(ctx, "short", "s", []byte("v"), nil, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, "short2", "s", []byte("v"), nil, time.Second); err != nil { // evicts c
		t.Fatal(err)
	}
	want(2, 0)
	clock.Advance(time.Second)
	if _, ok := memGet(t, m, "short"); ok { // deleted when read
		t.Error("Get(short) hit after its expiry")
	}
	want(2, 1)
	if n := m.Sweep(); n != 1 {
		t.Errorf("Sweep = %d, want 1", n)
	}
	want(2, 2)

	memSet(t, m, "d", "s", memX)
	if _, err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want(2, 2)
}

// TestMemoryMaxBytes: past MaxBytes the least recently used entries are
// evicted (with their vectors), Bytes stays within the bound, an entry
// larger than the bound alone is refused and changes nothing.
func TestMemoryMaxBytes(t *testing.T) {
	ctx := context.Background()
	m, err := NewMemory(MemoryConfig{Dim: 4, MaxBytes: 10_000, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	val := make([]byte, 2000)
	for i := range 10 {
		if err := m.Set(ctx, fmt.Sprintf("k%d", i), "s", val, []float32{1, float32(i), 0, 0}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if b := m.Bytes(); b > 10_000 || b == 0 {
		t.Errorf("Bytes %d, want in (0, 10000]", b)
	}
	if _, ok, _ := m.Get(ctx, "k0"); ok {
		t.Error("the oldest entry survived the byte bound")
	}
	if _, ok, _ := m.Get(ctx, "k9"); !ok {
		t.Error("the newest entry was evicted")
	}
	n, _ := m.Len(ctx)
	if ev := m.Evictions(); ev == 0 || int(ev)+n != 10 {
		t.Errorf("%d evictions and %d entries, want them to add up to 10", ev, n)
	}
	before := m.Bytes()
	if err := m.Set(ctx, "huge", "s", make([]byte, 20_000), nil, time.Hour); !errors.Is(err, ErrTooLarge) {
		t.Errorf("an entry over the bound: %v, want ErrTooLarge", err)
	}
	if m.Bytes() != before {
		t.Errorf("a refused entry changed Bytes %d -> %d", before, m.Bytes())
	}
	for i := range 10 {
		m.Delete(ctx, fmt.Sprintf("k%d", i))
	}
	if m.Bytes() != 0 {
		t.Errorf("Bytes %d after deleting everything, want 0", m.Bytes())
	}
}
