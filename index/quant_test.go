package index

import (
	"fmt"
	"math"
	"testing"
)

func TestDotInt8MatchesGo(t *testing.T) {
	rng := newRand(11)
	for _, n := range []int{0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 100, 384, 1536} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a, b := make([]int8, n+1)[1:], make([]int8, n+1)[1:]
			var want int32
			for i := range a {
				a[i], b[i] = int8(rng.IntN(255)-127), int8(rng.IntN(255)-127)
				want += int32(a[i]) * int32(b[i])
			}
			if got := dotInt8(a, b); got != want {
				t.Errorf("dotInt8 = %d, want %d", got, want)
			}
			if got := dotInt8Go(a, b); got != want {
				t.Errorf("dotInt8Go = %d, want %d", got, want)
			}
			if n > 0 {
				if got, want := dotInt8(a, b[:n-1]), dotInt8Go(a[:n-1], b[:n-1]); got != want {
					t.Errorf("dotInt8(a, b[:n-1]) = %d, want %d", got, want)
				}
			}
			// The extremes: every product is ±127².
			for i := range a {
				a[i], b[i] = 127, -127
			}
			if got, want := dotInt8(a, b), int32(-127*127*n); got != want {
				t.Errorf("extremes: dotInt8 = %d, want %d", got, want)
			}
		})
	}
}

// TestQuantizedDot checks the approximation HNSW walks on: for unit
// vectors, scale_a·scale_b·dot(codes) is within 0.01 of the exact cosine.
func TestQuantizedDot(t *testing.T) {
	rng := newRand(12)
	const dim = 384
	ca, cb := make([]int8, dim), make([]int8, dim)
	worst := 0.0
	for range 500 {
		a := randomVectors(rng, 1, dim)[0]
		b := perturb(rng, a, 0.5+0.5*rng.Float64())
		a, _ = Normalize(a)
		b, _ = Normalize(b)
		sa, sb := quantizeInto(ca, a), quantizeInto(cb, b)
		got := float64(sa * sb * float32(dotInt8(ca, cb)))
		worst = max(worst, math.Abs(got-float64(Dot(a, b))))
	}
	if worst > 0.01 {
		t.Errorf("worst quantised cosine error %.4f, want <= 0.01", worst)
	}
	t.Logf("worst quantised cosine error over 500 pairs: %.5f", worst)
	if s := quantizeInto(ca, make([]float32, dim)); s != 0 || dotInt8(ca, ca) != 0 {
		t.Errorf("zero vector: scale %v, codes not zero", s)
	}
}

// TestHNSWSearchSimilarityIsExact checks that the walk on int8 codes does
// not leak into the results: every similarity returned is the float32 dot
// product of the normalised query and stored vector, and results are in
// descending order of it.
func TestHNSWSearchSimilarityIsExact(t *testing.T) {
	rng := newRand(13)
	const n, dim = 3000, 64
	vecs := randomVectors(rng, n, dim)
	h := newTestHNSW(t, HNSWConfig{Dim: dim})
	for i, v := range vecs {
		mustAdd(t, h, vecID(i), v)
	}
	byID := map[string][]float32{}
	for i, v := range vecs {
		u, _ := Normalize(v)
		byID[vecID(i)] = u
	}
	for range 50 {
		q := perturb(rng, vecs[rng.IntN(n)], 0.9)
		qn, _ := Normalize(q)
		got, err := h.Search(q, 10)
		if err != nil {
			t.Fatal(err)
		}
		for i, nb := range got {
			want := SimilarityFromDistance(1 - Dot(qn, byID[nb.ID]))
			if math.Abs(float64(nb.Similarity-want)) > 1e-6 {
				t.Fatalf("result %d (%s): similarity %v, exact %v", i, nb.ID, nb.Similarity, want)
			}
			if i > 0 && nb.Similarity > got[i-1].Similarity {
				t.Fatalf("results out of order at %d: %v after %v", i, nb.Similarity, got[i-1].Similarity)
			}
		}
	}
}
