package index

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openDurable opens a 3-d Memory store on dir with a manual clock and no
// background sweep. The caller closes it.
func openDurable(t *testing.T, dir, kind string, maxEntries int, clock *memClock) (*Memory, error) {
	t.Helper()
	return NewMemory(MemoryConfig{Dim: 3, MaxEntries: maxEntries, Index: kind, SweepInterval: -1, Now: clock.Now, Dir: dir, Fingerprint: "test-fp"})
}

func mustDurable(t *testing.T, dir, kind string, maxEntries int, clock *memClock) *Memory {
	t.Helper()
	m, err := openDurable(t, dir, kind, maxEntries, clock)
	if err != nil {
		t.Fatalf("NewMemory on %s: %v", dir, err)
	}
	return m
}

func closeOK(t *testing.T, m *Memory) {
	t.Helper()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestDurableReopen stores entries with and without vectors and tags,
// closes the store and opens the directory again: every entry is served
// again from both tiers, with its tags, and the scopes' graphs are built in
// the background while exact search answers.
func TestDurableReopen(t *testing.T) {
	for _, kind := range memKinds {
		t.Run(kind, func(t *testing.T) {
			dir, clock := t.TempDir(), newMemClock()
			m := mustDurable(t, dir, kind, 0, clock)
			ctx := WithTags(context.Background(), []string{"doc:1", "ns"})
			if err := m.Set(ctx, "x", "s1", []byte("value of x"), memX, memTTL); err != nil {
				t.Fatal(err)
			}
			memSet(t, m, "y", "s1", memY)
			memSet(t, m, "z", "s2", memZ)
			memSet(t, m, "exact", "s1", nil)
			if err := m.Tag(context.Background(), "y", []string{"doc:2"}, memTTL); err != nil {
				t.Fatal(err)
			}
			closeOK(t, m)

			m = mustDurable(t, dir, kind, 0, clock)
			defer m.Close()
			for _, k := range []string{"x", "y", "z", "exact"} {
				if got, _ := memGet(t, m, k); got != "value of "+k {
					t.Errorf("after reopening, Get(%s) = %q", k, got)
				}
			}
			check := func(when string) {
				t.Helper()
				nn, err := m.Search(context.Background(), "s1", memXY, 2)
				if err != nil || len(nn) != 2 || nn[0].ID != "x" || nn[1].ID != "y" {
					t.Errorf("%s: Search(s1) = %v, %v; want x then y", when, nn, err)
				}
				if nn, _ := m.Search(context.Background(), "s2", memZ, 2); len(nn) != 1 || nn[0].ID != "z" {
					t.Errorf("%s: Search(s2) = %v, want z", when, nn)
				}
			}
			// While the parts fill, a search sees a subset, never another id.
			if nn, err := m.Search(context.Background(), "s1", memXY, 2); err != nil || len(nn) > 2 || (len(nn) > 0 && nn[0].ID != "x" && nn[0].ID != "y") {
				t.Errorf("while the parts fill: Search(s1) = %v, %v", nn, err)
			}
			m.warmWG.Wait()
			if m.Warming() != 0 {
				t.Errorf("Warming() = %d after the builds", m.Warming())
			}
			check("after the parts are filled and the graphs built")
			for _, tc := range []struct {
				tag  string
				want int
			}{{"doc:2", 1}, {"ns", 1}, {"doc:1", 0}} { // x carries ns and doc:1
				n, err := m.DeleteTag(context.Background(), tc.tag)
				if err != nil || n != tc.want {
					t.Errorf("DeleteTag(%s) after reopening = %d, %v; want %d", tc.tag, n, err, tc.want)
				}
			}
			if m.VectorLen() != 1 {
				t.Errorf("VectorLen = %d, want 1 (z)", m.VectorLen())
			}
		})
	}
}

// TestDurableDeletionsStayDeleted checks that Delete, DeleteTag, Flush,
// replacement by an exact-only entry and eviction reach the file: nothing
// they removed comes back after a restart.
func TestDurableDeletionsStayDeleted(t *testing.T) {
	dir, clock := t.TempDir(), newMemClock()
	m := mustDurable(t, dir, "hnsw", 4, clock)
	ctx := WithTags(context.Background(), []string{"t"})
	for _, k := range []string{"a", "b"} {
		if err := m.Set(ctx, k, "s", []byte("value of "+k), memX, memTTL); err != nil {
			t.Fatal(err)
		}
	}
	memSet(t, m, "c", "s", memY)
	memSet(t, m, "d", "s", memZ)
	if n, err := m.DeleteTag(context.Background(), "t"); n != 2 || err != nil {
		t.Fatalf("DeleteTag = %d, %v", n, err)
	}
	if ok, err := m.Delete(context.Background(), "c"); !ok || err != nil {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	memSet(t, m, "d", "s", nil) // replaced by an exact-only entry
	for i := range 4 {          // e0..e3 evict d
		memSet(t, m, fmt.Sprintf("e%d", i), "s2", memXY)
	}
	closeOK(t, m)

	m = mustDurable(t, dir, "hnsw", 4, clock)
	for _, k := range []string{"a", "b", "c", "d"} {
		if got, _ := memGet(t, m, k); got != "" {
			t.Errorf("deleted %s came back after a restart: %q", k, got)
		}
	}
	if n, _ := m.Len(context.Background()); n != 4 {
		t.Errorf("Len = %d, want 4", n)
	}
	if nn, _ := m.Search(context.Background(), "s", memZ, 4); len(nn) != 0 {
		t.Errorf("Search(s) = %v: vectors of deleted entries came back", nn)
	}
	if n, err := m.Flush(context.Background()); n != 4 || err != nil {
		t.Fatalf("Flush = %d, %v", n, err)
	}
	closeOK(t, m)
	m = mustDurable(t, dir, "hnsw", 4, clock)
	defer m.Close()
	if n, _ := m.Len(context.Background()); n != 0 {
		t.Errorf("after Flush and a restart, Len = %d", n)
	}
}

// TestDurableExpiryAndBounds checks start-up: entries whose TTL passed are
// not loaded (and leave the file), and a smaller MaxEntries keeps the most
// recently stored entries, counting the rest as evictions.
func TestDurableExpiryAndBounds(t *testing.T) {
	dir, clock := t.TempDir(), newMemClock()
	m := mustDurable(t, dir, "hnsw", 0, clock)
	if err := m.Set(context.Background(), "short", "s", []byte("v"), memX, time.Second); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if err := m.Set(context.Background(), fmt.Sprintf("k%d", i), "s", []byte("v"), memY, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	closeOK(t, m)
	clock.Advance(time.Minute)
	m = mustDurable(t, dir, "hnsw", 3, clock)
	if got, _ := memGet(t, m, "short"); got != "" {
		t.Errorf("an expired entry was loaded: %q", got)
	}
	for i := range 6 {
		got, _ := memGet(t, m, fmt.Sprintf("k%d", i))
		if want := i >= 3; (got != "") != want {
			t.Errorf("k%d loaded %v, want %v (the 3 most recent)", i, got != "", want)
		}
	}
	if m.Evictions() != 3 {
		t.Errorf("Evictions = %d, want 3", m.Evictions())
	}
	closeOK(t, m)
	m = mustDurable(t, dir, "hnsw", 0, clock)
	defer m.Close()
	if n, _ := m.Len(context.Background()); n != 3 {
		t.Errorf("evicted or expired entries stayed in the file: Len %d after a third start, want 3", n)
	}
	if m.DiskBytes() <= 0 {
		t.Errorf("DiskBytes = %d", m.DiskBytes())
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestDurableRefusals checks that a directory in use, or written with
// another fingerprint, dimension or format, is refused with the matching
// error and left exactly as it was.
func TestDurableRefusals(t *testing.T) {
	dir, clock := t.TempDir(), newMemClock()
	m := mustDurable(t, dir, "hnsw", 0, clock)
	memSet(t, m, "a", "s", memX)
	if _, err := openDurable(t, dir, "hnsw", 0, clock); !errors.Is(err, ErrStoreInUse) {
		t.Errorf("second open while in use: %v, want ErrStoreInUse", err)
	}
	closeOK(t, m)
	path := filepath.Join(dir, DiskFile)
	before := fileHash(t, path)
	for name, cfg := range map[string]MemoryConfig{
		"fingerprint": {Dim: 3, Fingerprint: "other", Dir: dir, SweepInterval: -1},
		"dimension":   {Dim: 4, Fingerprint: "test-fp", Dir: dir, SweepInterval: -1},
	} {
		if _, err := NewMemory(cfg); !errors.Is(err, ErrIncompatibleStore) {
			t.Errorf("%s: %v, want ErrIncompatibleStore", name, err)
		}
	}
	if fileHash(t, path) != before {
		t.Error("a refused open changed the store file")
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("format"), binary.AppendUvarint(nil, DiskFormat+1))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := openDurable(t, dir, "hnsw", 0, clock); !errors.Is(err, ErrIncompatibleStore) {
		t.Errorf("another format: %v, want ErrIncompatibleStore", err)
	}
}

// TestDurableDamagedFile truncates the store file at many lengths and
// overwrites pieces of it with noise: each open either fails with
// ErrCorruptStore or gives a store whose every loaded entry is one that was
// written, never a panic or a wrong value.
func TestDurableDamagedFile(t *testing.T) {
	src, clock := t.TempDir(), newMemClock()
	m := mustDurable(t, src, "flat", 0, clock)
	for i := range 300 {
		v := fmt.Sprintf("value %d %s", i, bytes.Repeat([]byte("x"), i%50))
		if err := m.Set(context.Background(), fmt.Sprintf("k%d", i), "s", []byte(v), []float32{1, float32(i), 2}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	closeOK(t, m)
	orig, err := os.ReadFile(filepath.Join(src, DiskFile))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	try := func(name string, b []byte) (error, bool) {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, DiskFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := openDurable(t, dir, "flat", 0, clock)
		t.Logf("%s: %v", name, err)
		if err != nil {
			if !errors.Is(err, ErrCorruptStore) && !errors.Is(err, ErrIncompatibleStore) {
				t.Errorf("%s: %v, want ErrCorruptStore", name, err)
			}
			return err, false
		}
		defer m.Close()
		for i := range 300 {
			got, _ := memGet(t, m, fmt.Sprintf("k%d", i))
			if want := fmt.Sprintf("value %d %s", i, bytes.Repeat([]byte("x"), i%50)); got != "" && got != want {
				t.Errorf("%s: k%d = %q, want %q or nothing", name, i, got, want)
			}
		}
		return nil, true
	}
	for _, n := range []int{0, 100, 4096, 8192, len(orig) / 3, len(orig) / 2, len(orig) - 4096, len(orig) - 1} {
		// A cut file is refused as truncated before bbolt reads it (never
		// with bbolt's internals or a caught fault), or, when the cut only
		// took pages its last commit does not use, loads.
		if err, _ := try(fmt.Sprintf("truncated to %d", n), orig[:n]); err != nil && !strings.Contains(err.Error(), "truncated") {
			t.Errorf("truncated to %d: %v; want an error that says truncated", n, err)
		}
	}
	for i := range 12 {
		b := bytes.Clone(orig)
		at := rng.IntN(len(b) - 64)
		for j := range 64 {
			b[at+j] = byte(rng.UintN(256))
		}
		_, _ = try(fmt.Sprintf("noise %d at %d", i, at), b)
	}
}

// TestDurableConcurrentSets stores from many goroutines at once (their
// writes share commits) and checks that every Set that returned is loaded
// after a restart.
func TestDurableConcurrentSets(t *testing.T) {
	dir, clock := t.TempDir(), newMemClock()
	m := mustDurable(t, dir, "hnsw", 0, clock)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				k := fmt.Sprintf("g%d-%d", g, i)
				if err := m.Set(context.Background(), k, "s", []byte("value of "+k), []float32{float32(g + 1), float32(i), 1}, time.Hour); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	closeOK(t, m)
	m = mustDurable(t, dir, "hnsw", 0, clock)
	defer m.Close()
	for g := range 8 {
		for i := range 25 {
			k := fmt.Sprintf("g%d-%d", g, i)
			if got, _ := memGet(t, m, k); got != "value of "+k {
				t.Errorf("%s after a restart: %q", k, got)
			}
		}
	}
}

// TestWarmPartFill checks the fill of a loaded part: a vector added or
// deleted before the fill reaches it is not brought back by the fill, the
// others are filled in, and, for the HNSW kind, searches move to the graph.
func TestWarmPartFill(t *testing.T) {
	unit := func(v []float32) []float32 {
		u, err := Normalize(v)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	for _, kind := range memKinds {
		t.Run(kind, func(t *testing.T) {
			var g *HNSW
			if kind != "flat" {
				var err error
				if g, err = NewHNSW(HNSWConfig{Dim: 3}); err != nil {
					t.Fatal(err)
				}
			}
			var pending []loaded
			for i := range 3*warmFillBatch + 5 {
				pending = append(pending, loaded{key: fmt.Sprintf("k%d", i), vec: unit([]float32{1, float32(i%61) / 60, float32(i/61) / 60})})
			}
			p, err := newWarmPart(3, pending, g)
			if err != nil {
				t.Fatal(err)
			}
			if p.Len() != len(pending) {
				t.Errorf("Len before the fill = %d, want %d (pending counts)", p.Len(), len(pending))
			}
			// Replaced and deleted before the fill reaches them.
			if err := p.Add("k2000", []float32{0, 0, -1}); err != nil {
				t.Fatal(err)
			}
			p.Delete("k3000")
			p.build(make(chan struct{}))
			if p.Len() != len(pending)-1 {
				t.Errorf("Len after the fill = %d, want %d", p.Len(), len(pending)-1)
			}
			if kind != "flat" && !p.Ready() {
				t.Error("the graph is not ready after build")
			}
			nn, err := p.Search([]float32{0, 0, -1}, 1)
			if err != nil || len(nn) != 1 || nn[0].ID != "k2000" || nn[0].Similarity < 0.999 {
				t.Errorf("Search(k2000's new vector) = %v, %v: the fill brought back its old vector", nn, err)
			}
			has := func(id string) bool {
				if g != nil {
					return g.Has(id)
				}
				_, ok := p.flat.vector(id)
				return ok
			}
			if has("k3000") {
				t.Error("the fill brought back the deleted k3000")
			}
			if !has("k0") || !has(fmt.Sprintf("k%d", len(pending)-1)) {
				t.Error("the fill left out loaded vectors")
			}
		})
	}
}
