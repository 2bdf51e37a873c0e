package benchmarks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkNearestNeighbours measures the brute-force 1-NN search of tune
// at the embedder's default dimension; "dots/s" counts vector dot products.
func BenchmarkNearestNeighbours(b *testing.B) {
	const dim = 384
	for _, size := range []struct{ queries, warm int }{{100, 1000}, {300, 10000}} {
		b.Run(fmt.Sprintf("q%d_w%d_d%d", size.queries, size.warm, dim), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			gen := func(n int) [][]float32 {
				out := make([][]float32, n)
				for i := range out {
					v := make([]float32, dim)
					for j := range v {
						v[j] = float32(rng.NormFloat64())
					}
					out[i] = normalised(v)
				}
				return out
			}
			queries, warm := gen(size.queries), gen(size.warm)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				nearestNeighbours(context.Background(), queries, warm)
			}
			b.ReportMetric(float64(size.queries*size.warm)*float64(b.N)/b.Elapsed().Seconds(), "dots/s")
		})
	}
}
