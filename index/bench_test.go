package index

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

const (
	benchDim      = 384  // all-MiniLM-L6-v2 and similar sentence encoders
	benchDimLarge = 1536 // OpenAI text-embedding-3-small
	benchQueries  = 500  // queries used for the recall metrics
	benchClusters = 100
)

var benchSizes = []int{10_000, 20_000, 100_000}

// benchSizesLarge are the sizes searched at benchDimLarge. The
// 100,000-vector 1536-d graphs take several minutes each to build on a
// 2-core machine; select the smaller cases with -bench 'dim=1536/n=10000'.
var benchSizesLarge = []int{10_000, 100_000}

// benchData is a data set with its queries: perturbed copies (cosine ~0.89)
// of randomly chosen stored vectors.
type benchData struct {
	vecs    [][]float32
	queries [][]float32
}

func makeBenchData(kind string, n, dim int) benchData {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	var vecs [][]float32
	switch kind {
	case "random":
		vecs = randomVectors(rng, n, dim)
	case "clustered":
		vecs = clusteredVectors(rng, n, dim, benchClusters)
	default:
		panic("unknown data kind " + kind)
	}
	qs := make([][]float32, benchQueries)
	for i := range qs {
		qs[i] = perturb(rng, vecs[rng.IntN(n)], queryCosine)
	}
	return benchData{vecs: vecs, queries: qs}
}

// benchFixture is a built HNSW graph and its exact counterpart. Building the
// 100k graphs takes minutes, so fixtures are built on first use by the
// sub-benchmark that needs them and cached for reruns.
type benchFixture struct {
	data  benchData
	hnsw  *HNSW
	exact *Flat
}

var (
	benchMu       sync.Mutex
	benchFixtures = map[string]*benchFixture{}
)

func getBenchFixture(b *testing.B, kind string, n, dim int) *benchFixture {
	return getBenchFixtureM(b, kind, n, dim, 0)
}

// getBenchFixtureM is getBenchFixture for a graph of M links per node (0:
// DefaultM).
func getBenchFixtureM(b *testing.B, kind string, n, dim, m int) *benchFixture {
	b.Helper()
	benchMu.Lock()
	defer benchMu.Unlock()
	if m == 0 {
		m = DefaultM
	}
	key := fmt.Sprintf("%s/%d/%d/%d", kind, n, dim, m)
	if fx, ok := benchFixtures[key]; ok {
		return fx
	}
	fx := &benchFixture{
		data:  makeBenchData(kind, n, dim),
		hnsw:  newTestHNSW(b, HNSWConfig{Dim: dim, M: m}),
		exact: newTestFlat(b, dim),
	}
	for i, v := range fx.data.vecs {
		mustAdd(b, fx.hnsw, vecID(i), v)
		mustAdd(b, fx.exact, vecID(i), v)
	}
	benchFixtures[key] = fx
	return fx
}

// BenchmarkHNSWSearch measures k=1 search latency (ns/op) at the default
// EfSearch and reports recall@1 and recall@10 against Flat over
// benchQueries perturbed-copy queries, computed outside the timed loop.
// Sub-benchmarks n=N/kind are 384-d; dim=1536/n=N/kind are 1536-d.
func BenchmarkHNSWSearch(b *testing.B) {
	for _, n := range benchSizes {
		for _, kind := range []string{"random", "clustered"} {
			b.Run(fmt.Sprintf("n=%d/%s", n, kind), func(b *testing.B) {
				benchHNSWSearch(b, kind, n, benchDim)
			})
		}
	}
	for _, n := range benchSizesLarge {
		for _, kind := range []string{"random", "clustered"} {
			b.Run(fmt.Sprintf("dim=%d/n=%d/%s", benchDimLarge, n, kind), func(b *testing.B) {
				benchHNSWSearch(b, kind, n, benchDimLarge)
			})
		}
	}
}

func benchHNSWSearch(b *testing.B, kind string, n, dim int) {
	fx := getBenchFixture(b, kind, n, dim)
	r1, r10 := recall(b, fx.hnsw, fx.exact, fx.data.queries, 10)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := fx.hnsw.Search(fx.data.queries[i%len(fx.data.queries)], 1); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(r1, "recall@1")
	b.ReportMetric(r10, "recall@10")
}

// BenchmarkHNSWAdd measures inserting 384-d random vectors into a graph that
// already holds 10,000 with the default configuration.
func BenchmarkHNSWAdd(b *testing.B) {
	const base, pool = 10_000, 20_000
	rng := rand.New(rand.NewPCG(1, 2))
	vecs := randomVectors(rng, base+pool, benchDim)
	h := newTestHNSW(b, HNSWConfig{Dim: benchDim})
	for i, v := range vecs[:base] {
		mustAdd(b, h, vecID(i), v)
	}
	extra := vecs[base:]
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := h.Add(fmt.Sprintf("add%d", i), extra[i%pool]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkFlatSearch measures exact k=1 search over 384-d random vectors.
func BenchmarkFlatSearch(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			data := makeBenchData("random", n, benchDim)
			f := newTestFlat(b, benchDim)
			for i, v := range data.vecs {
				mustAdd(b, f, vecID(i), v)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := f.Search(data.queries[i%len(data.queries)], 1); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkHNSWSearchEf measures recall@1, distance evaluations and
// latency of k=1 searches on 100,000 uniformly random 384-d vectors (the
// worst case) for M = 16 and 32 and several EF_RUNTIME values: what
// raising --hnsw-ef-runtime or --hnsw-m buys, and the measurement behind
// DefaultM and DefaultEfSearch.
func BenchmarkHNSWSearchEf(b *testing.B) {
	for _, m := range []int{16, 32} {
		for _, ef := range []int{32, 48, 64, 128, 256} {
			b.Run(fmt.Sprintf("n=100000/random/M=%d/ef=%d", m, ef), func(b *testing.B) {
				fx := getBenchFixtureM(b, "random", 100_000, benchDim, m)
				hits, evals := 0, 0
				for _, q := range fx.data.queries {
					got, n, err := fx.hnsw.searchEf(q, 1, ef)
					if err != nil {
						b.Fatal(err)
					}
					evals += n
					want := mustSearch(b, fx.exact, q, 1)
					if len(got) > 0 && got[0].ID == want[0].ID {
						hits++
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					mustSearchEf(b, fx.hnsw, fx.data.queries[i%len(fx.data.queries)], 1, ef)
					i++
				}
				b.ReportMetric(float64(hits)/float64(len(fx.data.queries)), "recall@1")
				b.ReportMetric(float64(evals)/float64(len(fx.data.queries)), "evals/op")
			})
		}
	}
}

func mustSearchEf(b *testing.B, h *HNSW, q []float32, k, ef int) []Neighbor {
	b.Helper()
	got, err := h.SearchEf(q, k, ef)
	if err != nil {
		b.Fatal(err)
	}
	return got
}
