// Package embedding turns text into L2-normalised float32 vectors for semcache's semantic tier.
package embedding

import (
	"context"
	"errors"
	"math"
)

// Embedder is the method set every embedder in this package provides. It is
// declared here only as the input of [NewCached]; consumers such as package
// semantic declare their own interface with the methods they need.
type Embedder interface {
	// Embed returns one vector per text, in input order. Each vector has
	// length Dim() and unit L2 norm.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Dim is the length of every vector returned by Embed.
	Dim() int
	// Fingerprint identifies the vector space ("kind:model:dim"); vectors
	// with different fingerprints must never be compared.
	Fingerprint() string
}

// Compile-time guards: every embedder satisfies Embedder.
var (
	_ Embedder = (*Local)(nil)
	_ Embedder = (*OpenAI)(nil)
	_ Embedder = (*Cached)(nil)
	_ Embedder = (*Trained)(nil)
)

// ErrDimension is returned (wrapped) when an upstream embedder produces a
// vector whose length differs from the configured Dim. The message names
// the expected and actual lengths.
var ErrDimension = errors.New("embedding dimension mismatch")

// ErrBadResponse is returned (wrapped) when an upstream embedder produces a
// malformed answer: the wrong number of vectors, duplicate or out-of-range
// indices, or a vector that cannot be normalised (all zeros, NaN or Inf).
var ErrBadResponse = errors.New("malformed embedding response")

// l2normalise scales v in place to unit L2 norm. It accumulates in float64
// so long vectors do not lose precision, and reports false, leaving v
// untouched, when the norm is zero or not finite.
func l2normalise(v []float32) bool {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 || math.IsInf(sum, 0) || math.IsNaN(sum) {
		return false
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
	return true
}
