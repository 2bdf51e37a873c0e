package index

import (
	"errors"
	"fmt"
	"math"
)

// Neighbor is one result of a nearest-neighbour search.
type Neighbor struct {
	// ID is the external id the vector was added under.
	ID string
	// Similarity is the cosine similarity between the query and the stored
	// vector, in [-1, 1]; higher is closer.
	Similarity float32
}

// ErrDimensionMismatch is returned when a vector's length differs from the
// index dimension. It is wrapped together with both lengths; test for it with
// errors.Is.
var ErrDimensionMismatch = errors.New("index: vector dimension mismatch")

// ErrInvalidVector is returned for vectors that cannot be normalised: the
// zero vector, or a vector with a NaN or infinite component. It is wrapped
// with the reason; test for it with errors.Is.
var ErrInvalidVector = errors.New("index: invalid vector")

// Dot returns the dot product of a and b, which must have the same length
// (the shorter length is used otherwise). For L2-normalised vectors this is
// their cosine similarity. On amd64 CPUs with AVX2 and FMA it runs a kernel
// of our own in dot_amd64.s (8 lanes, 4 accumulators, fused multiply-add);
// elsewhere the portable Go loop dotGo. The two differ only by float32
// rounding (TestDotMatchesGo). BenchmarkDot in vector_test.go measures both.
func Dot(a, b []float32) float32 {
	return dotKernel(a, b)
}

// Normalize returns a new slice holding v scaled to unit L2 norm; v is not
// modified. It returns an error wrapping ErrInvalidVector when v is empty,
// all zeros, or has a NaN or infinite component. The norm is accumulated in
// float64 so that large components do not overflow.
func Normalize(v []float32) ([]float32, error) {
	return normalizeInto(make([]float32, 0, len(v)), v)
}

// normalizeInto is Normalize writing into dst, which is grown as needed and
// returned. It lets searches reuse a pooled query buffer.
func normalizeInto(dst, v []float32) ([]float32, error) {
	var sum float64
	for i, x := range v {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return dst, fmt.Errorf("%w: component %d is %v", ErrInvalidVector, i, x)
		}
		sum += f * f
	}
	if sum == 0 {
		return dst, fmt.Errorf("%w: zero norm", ErrInvalidVector)
	}
	inv := 1 / math.Sqrt(sum)
	dst = append(dst[:0], v...)
	for i, x := range dst {
		dst[i] = float32(float64(x) * inv)
	}
	return dst, nil
}

// SimilarityFromDistance converts a cosine distance into a cosine similarity:
//
//	s = 1 - d
//
// Cosine distance is d = 1 - cos(a, b), the definition RediSearch uses for
// its COSINE metric and the one the HNSW graph uses internally, so d lies in
// [0, 2] and s in [-1, 1], higher is closer. This is the single place the
// conversion lives; DistanceFromSimilarity is its inverse.
//
// The result is clamped to [-1, 1] so that float rounding (a self-match at
// distance -1e-7, say) never yields a similarity above 1.
func SimilarityFromDistance(d float32) float32 {
	return min(max(1-d, -1), 1)
}

// DistanceFromSimilarity converts a cosine similarity into a cosine distance:
//
//	d = 1 - s
//
// It is the inverse of SimilarityFromDistance; the result is clamped to
// [0, 2].
func DistanceFromSimilarity(s float32) float32 {
	return min(max(1-s, 0), 2)
}

// checkDim returns an error wrapping ErrDimensionMismatch when len(v) != dim.
func checkDim(v []float32, dim int) error {
	if len(v) != dim {
		return fmt.Errorf("%w: got %d, want %d", ErrDimensionMismatch, len(v), dim)
	}
	return nil
}

// prepare checks v's length and returns a normalised copy.
func prepare(v []float32, dim int) ([]float32, error) {
	if err := checkDim(v, dim); err != nil {
		return nil, err
	}
	return Normalize(v)
}

// dotGo is the portable reference kernel, unrolled by four. Tests check Dot
// against it.
func dotGo(a, b []float32) float32 {
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= n; i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < n; i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
