package index

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// queryCosine is the cosine similarity between a stored vector and the
// perturbed copy used to query for it: a paraphrased prompt, roughly.
const queryCosine = 0.89

// newRand returns a deterministic generator for test data.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 42))
}

// randomUnit returns a uniformly random unit vector of length dim.
func randomUnit(rng *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return mustNormalize(v)
}

func mustNormalize(v []float32) []float32 {
	u, err := Normalize(v)
	if err != nil {
		panic(err)
	}
	return u
}

// noiseSigma is the per-component standard deviation of Gaussian noise that,
// added to a unit vector of length dim and renormalised, gives an expected
// cosine of cos to the original: 1/sqrt(1 + dim*sigma^2) = cos.
func noiseSigma(dim int, cos float64) float64 {
	return math.Sqrt((1/(cos*cos) - 1) / float64(dim))
}

// perturb returns a unit vector at cosine about cos to the unit vector v.
func perturb(rng *rand.Rand, v []float32, cos float64) []float32 {
	sigma := noiseSigma(len(v), cos)
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x + float32(rng.NormFloat64()*sigma)
	}
	return mustNormalize(out)
}

// randomVectors returns n random unit vectors of length dim.
func randomVectors(rng *rand.Rand, n, dim int) [][]float32 {
	vs := make([][]float32, n)
	for i := range vs {
		vs[i] = randomUnit(rng, dim)
	}
	return vs
}

// clusteredVectors returns n unit vectors drawn around clusters random
// centres, each at cosine about 0.75 to its centre.
func clusteredVectors(rng *rand.Rand, n, dim, clusters int) [][]float32 {
	centres := randomVectors(rng, clusters, dim)
	vs := make([][]float32, n)
	for i := range vs {
		vs[i] = perturb(rng, centres[rng.IntN(clusters)], 0.75)
	}
	return vs
}

func vecID(i int) string { return fmt.Sprintf("v%d", i) }

func newTestHNSW(t testing.TB, cfg HNSWConfig) *HNSW {
	t.Helper()
	h, err := NewHNSW(cfg)
	if err != nil {
		t.Fatalf("NewHNSW(%+v): %v", cfg, err)
	}
	return h
}

func newTestFlat(t testing.TB, dim int) *Flat {
	t.Helper()
	f, err := NewFlat(dim)
	if err != nil {
		t.Fatalf("NewFlat(%d): %v", dim, err)
	}
	return f
}

// knnIndex is what the recall helpers need from HNSW and Flat.
type knnIndex interface {
	Add(id string, vec []float32) error
	Search(vec []float32, k int) ([]Neighbor, error)
}

func mustAdd(t testing.TB, idx knnIndex, id string, v []float32) {
	t.Helper()
	if err := idx.Add(id, v); err != nil {
		t.Fatalf("Add(%q): %v", id, err)
	}
}

func mustSearch(t testing.TB, idx knnIndex, q []float32, k int) []Neighbor {
	t.Helper()
	got, err := idx.Search(q, k)
	if err != nil {
		t.Fatalf("Search(k=%d): %v", k, err)
	}
	return got
}

// recall compares idx with the exact index on queries and returns the mean
// recall@1 and recall@k.
func recall(t testing.TB, idx, exact knnIndex, queries [][]float32, k int) (r1, rk float64) {
	t.Helper()
	for _, q := range queries {
		want := mustSearch(t, exact, q, k)
		got := mustSearch(t, idx, q, k)
		if len(got) > 0 && len(want) > 0 && got[0].ID == want[0].ID {
			r1++
		}
		truth := make(map[string]bool, len(want))
		for _, n := range want {
			truth[n.ID] = true
		}
		hits := 0
		for _, n := range got {
			if truth[n.ID] {
				hits++
			}
		}
		rk += float64(hits) / float64(len(want))
	}
	n := float64(len(queries))
	return r1 / n, rk / n
}

// checkGraph verifies the structural invariants of h: link lists within
// capacity, no self, duplicate or dangling links, reverse edges in step with
// forward edges, and an entry point on the highest level.
func checkGraph(t *testing.T, h *HNSW) {
	t.Helper()
	h.mu.RLock()
	defer h.mu.RUnlock()
	live, top := 0, -1
	for i := range h.nodes {
		nd := &h.nodes[i]
		if nd.level < 0 {
			continue
		}
		live++
		top = max(top, nd.level)
		if got, ok := h.ids[nd.id]; !ok || got != uint32(i) {
			t.Fatalf("node %d (%q) not in id map (got %d, %v)", i, nd.id, got, ok)
		}
		for l := 0; l <= nd.level; l++ {
			links := nd.links[l]
			if len(links) > h.maxLinks(l) {
				t.Fatalf("node %d layer %d has %d links, cap %d", i, l, len(links), h.maxLinks(l))
			}
			seen := map[uint32]bool{}
			for _, x := range links {
				switch {
				case x == uint32(i):
					t.Fatalf("node %d links to itself on layer %d", i, l)
				case seen[x]:
					t.Fatalf("node %d links twice to %d on layer %d", i, x, l)
				case h.nodes[x].level < l:
					t.Fatalf("node %d links on layer %d to %d of level %d", i, l, x, h.nodes[x].level)
				case countID(h.nodes[x].in[l], uint32(i)) != 1:
					t.Fatalf("edge %d->%d on layer %d has no single reverse record", i, x, l)
				}
				seen[x] = true
			}
			for _, x := range nd.in[l] {
				if h.nodes[x].level < l || countID(h.nodes[x].links[l], uint32(i)) != 1 {
					t.Fatalf("reverse record %d<-%d on layer %d has no forward edge", i, x, l)
				}
			}
		}
	}
	if live != len(h.ids) {
		t.Fatalf("%d live nodes, %d ids", live, len(h.ids))
	}
	if top != h.maxLevel {
		t.Fatalf("maxLevel %d, highest node level %d", h.maxLevel, top)
	}
	if live > 0 && h.nodes[h.entry].level != h.maxLevel {
		t.Fatalf("entry %d has level %d, maxLevel %d", h.entry, h.nodes[h.entry].level, h.maxLevel)
	}
}

func countID(ids []uint32, id uint32) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

func TestNewHNSW(t *testing.T) {
	tests := []struct {
		name    string
		cfg     HNSWConfig
		wantErr string // field named in the error; "" for success
		want    HNSWConfig
	}{
		{"defaults", HNSWConfig{Dim: 8}, "", HNSWConfig{Dim: 8, M: 32, EfConstruction: 200, EfSearch: 64, Seed: 1}},
		{"explicit", HNSWConfig{Dim: 3, M: 4, EfConstruction: 40, EfSearch: 10, Seed: -7}, "", HNSWConfig{Dim: 3, M: 4, EfConstruction: 40, EfSearch: 10, Seed: -7}},
		{"zero dim", HNSWConfig{}, "Dim", HNSWConfig{}},
		{"negative dim", HNSWConfig{Dim: -1}, "Dim", HNSWConfig{}},
		{"negative M", HNSWConfig{Dim: 4, M: -2}, "M", HNSWConfig{}},
		{"M of one", HNSWConfig{Dim: 4, M: 1}, "M", HNSWConfig{}},
		{"negative EfConstruction", HNSWConfig{Dim: 4, EfConstruction: -1}, "EfConstruction", HNSWConfig{}},
		{"negative EfSearch", HNSWConfig{Dim: 4, EfSearch: -1}, "EfSearch", HNSWConfig{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewHNSW(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), "HNSWConfig."+tt.wantErr+" ") {
					t.Fatalf("NewHNSW(%+v) error = %v, want one naming %s", tt.cfg, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewHNSW(%+v): %v", tt.cfg, err)
			}
			if got := h.Config(); got != tt.want {
				t.Errorf("Config() = %+v, want %+v", got, tt.want)
			}
			if h.Dim() != tt.cfg.Dim || h.Len() != 0 {
				t.Errorf("Dim, Len = %d, %d, want %d, 0", h.Dim(), h.Len(), tt.cfg.Dim)
			}
		})
	}
}

func TestHNSWBasics(t *testing.T) {
	const dim = 16
	rng := newRand(1)
	h := newTestHNSW(t, HNSWConfig{Dim: dim})
	q := randomUnit(rng, dim)

	if got, err := h.Search(q, 3); got != nil || err != nil {
		t.Fatalf("Search on empty index = %v, %v, want nil, nil", got, err)
	}

	vecs := randomVectors(rng, 50, dim)
	for i, v := range vecs {
		mustAdd(t, h, vecID(i), v)
	}
	if h.Len() != 50 {
		t.Fatalf("Len() = %d, want 50", h.Len())
	}
	checkGraph(t, h)

	t.Run("exact match first", func(t *testing.T) {
		for i, v := range vecs {
			got := mustSearch(t, h, v, 1)
			if len(got) != 1 || got[0].ID != vecID(i) {
				t.Fatalf("Search(vecs[%d]) = %v, want %s first", i, got, vecID(i))
			}
			if math.Abs(float64(got[0].Similarity)-1) > 1e-5 {
				t.Errorf("self similarity = %v, want 1", got[0].Similarity)
			}
		}
	})
	t.Run("unnormalised query", func(t *testing.T) {
		scaled := make([]float32, dim)
		for i, x := range vecs[7] {
			scaled[i] = 3 * x
		}
		if got := mustSearch(t, h, scaled, 1); got[0].ID != vecID(7) {
			t.Errorf("Search(3*vecs[7]) = %v, want %s", got, vecID(7))
		}
	})
	t.Run("sorted best first", func(t *testing.T) {
		got := mustSearch(t, h, q, 10)
		if len(got) != 10 {
			t.Fatalf("got %d results, want 10", len(got))
		}
		for i := 1; i < len(got); i++ {
			if got[i].Similarity > got[i-1].Similarity {
				t.Fatalf("results not sorted: %v", got)
			}
		}
		for _, n := range got {
			if n.Similarity < -1 || n.Similarity > 1 {
				t.Fatalf("similarity %v outside [-1, 1]", n.Similarity)
			}
		}
	})
	t.Run("k larger than Len", func(t *testing.T) {
		if got := mustSearch(t, h, q, 500); len(got) != 50 {
			t.Errorf("got %d results, want all 50", len(got))
		}
	})
	t.Run("non-positive k", func(t *testing.T) {
		for _, k := range []int{0, -1} {
			if _, err := h.Search(q, k); err == nil {
				t.Errorf("Search(k=%d) error = nil, want one", k)
			}
		}
	})
	t.Run("delete", func(t *testing.T) {
		if !h.Delete(vecID(3)) {
			t.Fatal("Delete(v3) = false, want true")
		}
		if h.Delete(vecID(3)) {
			t.Fatal("second Delete(v3) = true, want false")
		}
		if h.Delete("never-added") {
			t.Fatal("Delete(never-added) = true, want false")
		}
		if h.Len() != 49 {
			t.Fatalf("Len() = %d, want 49", h.Len())
		}
		for _, n := range mustSearch(t, h, vecs[3], 49) {
			if n.ID == vecID(3) {
				t.Fatal("deleted id returned")
			}
		}
		checkGraph(t, h)
	})
	t.Run("slot reuse", func(t *testing.T) {
		v := randomUnit(rng, dim)
		mustAdd(t, h, "new", v)
		if got := mustSearch(t, h, v, 1); got[0].ID != "new" {
			t.Errorf("Search(new) = %v, want new", got)
		}
		checkGraph(t, h)
	})
}

func TestHNSWReplace(t *testing.T) {
	const dim = 8
	rng := newRand(2)
	h := newTestHNSW(t, HNSWConfig{Dim: dim})
	for i, v := range randomVectors(rng, 30, dim) {
		mustAdd(t, h, vecID(i), v)
	}
	old, replacement := randomUnit(rng, dim), randomUnit(rng, dim)
	mustAdd(t, h, "x", old)
	mustAdd(t, h, "x", replacement)

	if h.Len() != 31 {
		t.Fatalf("Len() = %d, want 31", h.Len())
	}
	got := mustSearch(t, h, replacement, 1)
	if got[0].ID != "x" || math.Abs(float64(got[0].Similarity)-1) > 1e-5 {
		t.Errorf("Search(replacement) = %v, want x at similarity 1", got)
	}
	for _, n := range mustSearch(t, h, old, 31) {
		if n.ID == "x" && math.Abs(float64(n.Similarity)-float64(Dot(old, replacement))) > 1e-5 {
			t.Errorf("x has similarity %v to the old vector, want %v", n.Similarity, Dot(old, replacement))
		}
	}
	checkGraph(t, h)
}

// invalidVectors are rejected by Add and Search of an index of dimension 4.
var invalidVectors = []struct {
	name string
	vec  []float32
	want error
}{
	{"too short", []float32{1, 2, 3}, ErrDimensionMismatch},
	{"too long", []float32{1, 2, 3, 4, 5}, ErrDimensionMismatch},
	{"empty", nil, ErrDimensionMismatch},
	{"zero", []float32{0, 0, 0, 0}, ErrInvalidVector},
	{"NaN", []float32{1, float32(math.NaN()), 0, 0}, ErrInvalidVector},
	{"+Inf", []float32{1, 0, float32(math.Inf(1)), 0}, ErrInvalidVector},
	{"-Inf", []float32{float32(math.Inf(-1)), 0, 0, 1}, ErrInvalidVector},
}

func TestHNSWRejectsInvalidVectors(t *testing.T) {
	h := newTestHNSW(t, HNSWConfig{Dim: 4})
	a, b := []float32{1, 0, 0, 0}, []float32{0, 1, 0, 0}
	mustAdd(t, h, "a", a)
	mustAdd(t, h, "b", b)
	for _, tt := range invalidVectors {
		t.Run(tt.name, func(t *testing.T) {
			for _, id := range []string{"new", "a"} { // a fresh id and a replacement
				if err := h.Add(id, tt.vec); !errors.Is(err, tt.want) {
					t.Errorf("Add(%q) error = %v, want %v", id, err, tt.want)
				}
			}
			if _, err := h.Search(tt.vec, 1); !errors.Is(err, tt.want) {
				t.Errorf("Search error = %v, want %v", err, tt.want)
			}
			if h.Len() != 2 {
				t.Errorf("Len() = %d, want 2", h.Len())
			}
			if got := mustSearch(t, h, a, 1); got[0].ID != "a" || got[0].Similarity < 0.99999 {
				t.Errorf("Search(a) = %v, want a unchanged", got)
			}
			checkGraph(t, h)
		})
	}
	t.Run("mismatch names both dims", func(t *testing.T) {
		err := h.Add("c", make([]float32, 7))
		if err == nil || !strings.Contains(err.Error(), "7") || !strings.Contains(err.Error(), "4") {
			t.Errorf("error = %v, want both dimensions", err)
		}
	})
}

func TestHNSWDeleteEntryPoint(t *testing.T) {
	const dim, n = 16, 300
	rng := newRand(3)
	h := newTestHNSW(t, HNSWConfig{Dim: dim, M: 4, EfConstruction: 50})
	vecs := randomVectors(rng, n, dim)
	for i, v := range vecs {
		mustAdd(t, h, vecID(i), v)
	}
	deleted := map[string]bool{}
	for range 100 {
		h.mu.RLock()
		entry := h.nodes[h.entry].id
		h.mu.RUnlock()
		if !h.Delete(entry) {
			t.Fatalf("Delete(entry %q) = false", entry)
		}
		deleted[entry] = true
		checkGraph(t, h)
	}
	misses := 0
	for i, v := range vecs {
		got := mustSearch(t, h, v, 1)
		if deleted[vecID(i)] {
			if got[0].ID == vecID(i) {
				t.Fatalf("deleted %s returned", vecID(i))
			}
			continue
		}
		if got[0].ID != vecID(i) {
			misses++
		}
	}
	if misses > 2 {
		t.Errorf("%d of %d surviving vectors not found by exact query", misses, n-len(deleted))
	}
	for id := range deleted {
		h.Delete(id) // absent: no-op
	}
	for i := range n {
		h.Delete(vecID(i))
	}
	if h.Len() != 0 {
		t.Fatalf("Len() = %d after deleting all, want 0", h.Len())
	}
	checkGraph(t, h)
	if got, err := h.Search(vecs[0], 1); got != nil || err != nil {
		t.Fatalf("Search on emptied index = %v, %v, want nil, nil", got, err)
	}
	mustAdd(t, h, "again", vecs[0])
	if got := mustSearch(t, h, vecs[0], 1); got[0].ID != "again" {
		t.Fatalf("Search after refill = %v", got)
	}
}

func TestHNSWDeleteManyKeepsRecall(t *testing.T) {
	t.Parallel()
	const dim = 384
	n, queries := 2000, 300
	if testing.Short() {
		n, queries = 1000, 200
	}
	rng := newRand(4)
	h := newTestHNSW(t, HNSWConfig{Dim: dim})
	vecs := randomVectors(rng, n, dim)
	for i, v := range vecs {
		mustAdd(t, h, vecID(i), v)
	}
	exact := newTestFlat(t, dim)
	deleted := map[string]bool{}
	for i, v := range vecs {
		if rng.IntN(2) == 0 {
			if !h.Delete(vecID(i)) {
				t.Fatalf("Delete(%s) = false", vecID(i))
			}
			deleted[vecID(i)] = true
			continue
		}
		mustAdd(t, exact, vecID(i), v)
	}
	checkGraph(t, h)
	if h.Len() != exact.Len() {
		t.Fatalf("Len() = %d, want %d", h.Len(), exact.Len())
	}

	qs := make([][]float32, queries)
	for i := range qs {
		qs[i] = perturb(rng, vecs[rng.IntN(n)], queryCosine) // half aim at deleted vectors
	}
	for _, q := range qs {
		for _, nb := range mustSearch(t, h, q, 10) {
			if deleted[nb.ID] {
				t.Fatalf("deleted id %s returned", nb.ID)
			}
		}
	}
	r1, r10 := recall(t, h, exact, qs, 10)
	t.Logf("after deleting %d of %d: recall@1 %.3f recall@10 %.3f", len(deleted), n, r1, r10)
	if r1 < 0.95 {
		t.Errorf("recall@1 = %.3f after deletes, want >= 0.95", r1)
	}
}

// TestHNSWChurnKeepsRecall replays a cache's eviction pattern: the oldest
// entry (often the entry point) is deleted for every new one added, so that
// every slot is reused several times over, and the repaired graph must still
// find what exact search finds.
func TestHNSWChurnKeepsRecall(t *testing.T) {
	t.Parallel()
	const dim, live, churn, queries = 128, 500, 2000, 200
	rng := newRand(12)
	h := newTestHNSW(t, HNSWConfig{Dim: dim, M: 8, EfConstruction: 100})
	vecs := randomVectors(rng, live+churn, dim)
	for i, v := range vecs {
		mustAdd(t, h, vecID(i), v)
		if i >= live && !h.Delete(vecID(i-live)) {
			t.Fatalf("Delete(%s) = false", vecID(i-live))
		}
	}
	checkGraph(t, h)
	exact := newTestFlat(t, dim)
	for i := churn; i < live+churn; i++ {
		mustAdd(t, exact, vecID(i), vecs[i])
	}
	if h.Len() != live || len(h.nodes) > live+1 {
		t.Fatalf("Len() = %d over %d slots, want %d over at most %d", h.Len(), len(h.nodes), live, live+1)
	}
	qs := make([][]float32, queries)
	for i := range qs {
		qs[i] = perturb(rng, vecs[churn+rng.IntN(live)], queryCosine)
	}
	r1, r10 := recall(t, h, exact, qs, 10)
	t.Logf("after %d replacements of %d: recall@1 %.3f recall@10 %.3f", churn, live, r1, r10)
	if r1 < 0.98 {
		t.Errorf("recall@1 = %.3f after churn, want >= 0.98", r1)
	}
}

// TestHNSWRecallAgainstFlat is the test DefaultEfSearch cites: with the
// default configuration, recall@1 against exact search is at least 0.98 on
// random 384-d unit vectors queried with perturbed copies (cosine ~0.89 to
// the source, like a paraphrased prompt).
func TestHNSWRecallAgainstFlat(t *testing.T) {
	t.Parallel()
	const dim = 384
	n, queries := 5000, 500
	if testing.Short() {
		n, queries = 2000, 200
	}
	rng := newRand(5)
	h := newTestHNSW(t, HNSWConfig{Dim: dim})
	exact := newTestFlat(t, dim)
	vecs := randomVectors(rng, n, dim)
	for i, v := range vecs {
		mustAdd(t, h, vecID(i), v)
		mustAdd(t, exact, vecID(i), v)
	}
	qs := make([][]float32, queries)
	for i := range qs {
		qs[i] = perturb(rng, vecs[rng.IntN(n)], queryCosine)
	}
	r1, r10 := recall(t, h, exact, qs, 10)
	t.Logf("n=%d EfSearch=%d: recall@1 %.3f recall@10 %.3f", n, DefaultEfSearch, r1, r10)
	if r1 < 0.98 {
		t.Errorf("recall@1 = %.3f, want >= 0.98", r1)
	}
}

func TestHNSWDeterministic(t *testing.T) {
	const dim = 16
	vecs := randomVectors(newRand(6), 300, dim)
	build := func() *HNSW {
		h := newTestHNSW(t, HNSWConfig{Dim: dim, M: 6, Seed: 99})
		for i, v := range vecs {
			mustAdd(t, h, vecID(i), v)
		}
		return h
	}
	a, b := build(), build()
	if a.entry != b.entry || a.maxLevel != b.maxLevel {
		t.Fatalf("entry/maxLevel differ: %d/%d vs %d/%d", a.entry, a.maxLevel, b.entry, b.maxLevel)
	}
	for i := range a.nodes {
		if fmt.Sprint(a.nodes[i].links) != fmt.Sprint(b.nodes[i].links) {
			t.Fatalf("node %d links differ", i)
		}
	}
}

func TestHNSWSearchEf(t *testing.T) {
	const dim = 32
	rng := newRand(7)
	h := newTestHNSW(t, HNSWConfig{Dim: dim, EfSearch: 4})
	vecs := randomVectors(rng, 200, dim)
	for i, v := range vecs {
		mustAdd(t, h, vecID(i), v)
	}
	for _, tt := range []struct{ k, ef, want int }{
		{k: 1, ef: 0, want: 1},
		{k: 20, ef: 4, want: 20}, // ef raised to k
		{k: 5, ef: 100, want: 5},
	} {
		t.Run(fmt.Sprintf("k=%d ef=%d", tt.k, tt.ef), func(t *testing.T) {
			got, err := h.SearchEf(vecs[0], tt.k, tt.ef)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want || got[0].ID != vecID(0) {
				t.Errorf("got %d results starting %v, want %d starting v0", len(got), got[0], tt.want)
			}
		})
	}
}

func TestHNSWConcurrent(t *testing.T) {
	const dim, writers, readers, perWriter = 32, 4, 4, 150
	rng := newRand(8)
	h := newTestHNSW(t, HNSWConfig{Dim: dim, M: 8, EfConstruction: 64})
	vecs := make([][][]float32, writers)
	for w := range vecs {
		vecs[w] = randomVectors(rng, perWriter, dim)
	}
	queries := randomVectors(rng, 50, dim)

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i, v := range vecs[w] {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := h.Add(id, v); err != nil {
					t.Errorf("Add(%s): %v", id, err)
					return
				}
				if i%3 == 0 {
					h.Delete(id)
				}
				if i%5 == 0 && i > 0 {
					h.Delete(fmt.Sprintf("w%d-%d", w, i-1))
				}
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			for i := range 200 {
				if _, err := h.Search(queries[(r+i)%len(queries)], 5); err != nil {
					t.Errorf("Search: %v", err)
					return
				}
				_ = h.Len()
			}
		})
	}
	wg.Wait()

	want := 0
	for i := range perWriter {
		if i%3 != 0 && !(i+1 < perWriter && (i+1)%5 == 0) {
			want++
		}
	}
	if h.Len() != writers*want {
		t.Errorf("Len() = %d, want %d", h.Len(), writers*want)
	}
	checkGraph(t, h)
	for w := range writers {
		for i, v := range vecs[w] {
			id := fmt.Sprintf("w%d-%d", w, i)
			got := mustSearch(t, h, v, 1)
			alive := i%3 != 0 && !(i+1 < perWriter && (i+1)%5 == 0)
			if alive != (got[0].ID == id) {
				t.Errorf("Search(%s) = %s, alive %v", id, got[0].ID, alive)
			}
		}
	}
}

func TestDot(t *testing.T) {
	rng := newRand(9)
	if !useAVX2 {
		t.Log("no AVX2+FMA on this CPU: Dot is the Go kernel")
	}
	// Lengths around the kernel's 8- and 32-lane steps, and an offset of
	// one element so that the loads are not 32-byte aligned.
	for _, n := range []int{0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 65, 100, 384, 1536} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a, b := make([]float32, n+1)[1:], make([]float32, n+1)[1:]
			var want float64
			for i := range a {
				a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
				want += float64(a[i]) * float64(b[i])
			}
			tol := 1e-4 * math.Sqrt(float64(n)+1)
			if got := Dot(a, b); math.Abs(float64(got)-want) > tol {
				t.Errorf("Dot = %v, want %v", got, want)
			}
			if got := dotGo(a, b); math.Abs(float64(got)-want) > tol {
				t.Errorf("dotGo = %v, want %v", got, want)
			}
			if n > 0 {
				// The shorter length is used when they differ.
				if got, want := Dot(a, b[:n-1]), dotGo(a[:n-1], b[:n-1]); math.Abs(float64(got-want)) > tol {
					t.Errorf("Dot(a, b[:n-1]) = %v, want %v", got, want)
				}
				if got, want := Dot(a[:n-1], b), dotGo(a[:n-1], b[:n-1]); math.Abs(float64(got-want)) > tol {
					t.Errorf("Dot(a[:n-1], b) = %v, want %v", got, want)
				}
			}
		})
	}
}

// BenchmarkDot compares the kernel Dot uses with the portable Go loop on
// in-cache vectors.
func BenchmarkDot(b *testing.B) {
	rng := newRand(3)
	for _, n := range []int{384, 1536} {
		x, y := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], y[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		var sink float32
		b.Run(fmt.Sprintf("dim=%d/Dot", n), func(b *testing.B) {
			for b.Loop() {
				sink += Dot(x, y)
			}
		})
		b.Run(fmt.Sprintf("dim=%d/go", n), func(b *testing.B) {
			for b.Loop() {
				sink += dotGo(x, y)
			}
		})
		_ = sink
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   []float32
		want []float32
		err  error
	}{
		{"unit", []float32{0, 1}, []float32{0, 1}, nil},
		{"scaled", []float32{3, 4}, []float32{0.6, 0.8}, nil},
		{"negative", []float32{-2, 0, 0}, []float32{-1, 0, 0}, nil},
		{"huge components", []float32{3e38, 3e38}, []float32{0.70710677, 0.70710677}, nil},
		{"tiny components", []float32{1e-30, 0}, []float32{1, 0}, nil},
		{"empty", nil, nil, ErrInvalidVector},
		{"zero", []float32{0, 0, 0}, nil, ErrInvalidVector},
		{"NaN", []float32{float32(math.NaN()), 1}, nil, ErrInvalidVector},
		{"Inf", []float32{1, float32(math.Inf(1))}, nil, ErrInvalidVector},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := append([]float32(nil), tt.in...)
			got, err := Normalize(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if fmt.Sprint(tt.in) != fmt.Sprint(orig) {
				t.Errorf("input modified: %v, was %v", tt.in, orig)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if math.Abs(float64(got[i]-tt.want[i])) > 1e-6 {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
			if len(got) > 0 && &got[0] == &tt.in[0] {
				t.Error("Normalize returned its input, want a copy")
			}
		})
	}
}

func TestSimilarityFromDistance(t *testing.T) {
	tests := []struct {
		name string
		d, s float32
	}{
		{"identical", 0, 1},
		{"orthogonal", 1, 0},
		{"opposite", 2, -1},
		{"close", 0.25, 0.75},
		{"far", 1.5, -0.5},
		{"rounding below zero clamps", -1e-6, 1},
		{"rounding above two clamps", 2 + 1e-6, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SimilarityFromDistance(tt.d); got != tt.s {
				t.Errorf("SimilarityFromDistance(%v) = %v, want %v", tt.d, got, tt.s)
			}
			if tt.d >= 0 && tt.d <= 2 {
				if got := DistanceFromSimilarity(tt.s); got != tt.d {
					t.Errorf("DistanceFromSimilarity(%v) = %v, want %v", tt.s, got, tt.d)
				}
			}
		})
	}
	t.Run("matches cosine", func(t *testing.T) {
		a, b := mustNormalize([]float32{1, 2, 3}), mustNormalize([]float32{-1, 0.5, 2})
		d := 1 - Dot(a, b) // RediSearch COSINE distance
		if got, want := SimilarityFromDistance(d), Dot(a, b); math.Abs(float64(got-want)) > 1e-6 {
			t.Errorf("similarity %v, want cosine %v", got, want)
		}
	})
}
