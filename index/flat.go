package index

import (
	"fmt"
	"slices"
	"sync"
)

// Flat is an exact nearest-neighbour index over cosine similarity: Search
// compares the query with every stored vector. It is the ground truth the
// HNSW tests and benchmarks measure recall against, and a reasonable choice
// for a few thousand entries.
//
// Vectors have length Dim and are stored L2-normalised and contiguously.
//
// Flat is safe for concurrent use: Search, Len and Dim take a read lock and
// run concurrently with one another; Add and Delete take the write lock.
type Flat struct {
	dim int

	mu sync.RWMutex
	// The fields below are guarded by mu.
	vecs  []float32      // entry i's unit vector is vecs[i*dim : (i+1)*dim]
	ids   []string       // entry i's external id
	slots map[string]int // external id -> entry
}

// NewFlat returns an empty exact index for vectors of length dim. It returns
// an error when dim <= 0.
func NewFlat(dim int) (*Flat, error) {
	if dim <= 0 {
		return nil, fmt.Errorf("index: Flat dim must be positive, got %d", dim)
	}
	return &Flat{dim: dim, slots: make(map[string]int)}, nil
}

// Dim returns the vector length the index accepts.
func (f *Flat) Dim() int { return f.dim }

// Len returns the number of vectors in the index.
func (f *Flat) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.ids)
}

// Add stores a normalised copy of vec under id, replacing any vector already
// stored under id. It returns an error wrapping ErrDimensionMismatch or
// ErrInvalidVector, leaving the index unchanged, when vec has the wrong
// length or is zero, NaN or infinite.
func (f *Flat) Add(id string, vec []float32) error {
	q, err := prepare(vec, f.dim)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.slots[id]; ok {
		copy(f.vecs[i*f.dim:(i+1)*f.dim], q)
		return nil
	}
	f.slots[id] = len(f.ids)
	f.ids = append(f.ids, id)
	f.vecs = append(f.vecs, q...)
	return nil
}

// Delete removes id and reports whether it was present. The last entry is
// moved into the freed slot, so Delete is O(Dim).
func (f *Flat) Delete(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.slots[id]
	if !ok {
		return false
	}
	delete(f.slots, id)
	last := len(f.ids) - 1
	if i != last {
		f.ids[i] = f.ids[last]
		f.slots[f.ids[i]] = i
		copy(f.vecs[i*f.dim:(i+1)*f.dim], f.vecs[last*f.dim:])
	}
	f.ids[last] = ""
	f.ids = f.ids[:last]
	f.vecs = f.vecs[:last*f.dim]
	return true
}

// Search returns the k stored vectors most similar to vec, best first
// (highest cosine similarity first; ties in no particular order). vec must
// have length Dim. It returns an error when k <= 0 or when vec is invalid
// (ErrDimensionMismatch, ErrInvalidVector), and nil, nil when the index is
// empty.
func (f *Flat) Search(vec []float32, k int) ([]Neighbor, error) {
	if k <= 0 {
		return nil, fmt.Errorf("index: k must be positive, got %d", k)
	}
	q, err := prepare(vec, f.dim)
	if err != nil {
		return nil, err
	}

	f.mu.RLock()
	defer f.mu.RUnlock()
	n := len(f.ids)
	if n == 0 {
		return nil, nil
	}
	// best keeps the k nearest so far, farthest on top.
	best := make(maxHeap, 0, min(k, n)+1)
	for i := range n {
		d := 1 - Dot(q, f.vecs[i*f.dim:(i+1)*f.dim])
		if len(best) < k || d < best[0].d {
			best.push(cand{d, uint32(i)})
			if len(best) > k {
				best.pop()
			}
		}
	}
	sorted := best.drainAscending(nil)
	out := make([]Neighbor, len(sorted))
	for i, c := range sorted {
		out[i] = Neighbor{ID: f.ids[c.id], Similarity: SimilarityFromDistance(c.d)}
	}
	return out, nil
}

// IDs returns a copy of the stored ids, in no particular order.
func (f *Flat) IDs() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return append([]string(nil), f.ids...)
}

// vector returns a copy of the unit vector stored under id.
func (f *Flat) vector(id string) ([]float32, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	i, ok := f.slots[id]
	if !ok {
		return nil, false
	}
	return append([]float32(nil), f.vecs[i*f.dim:(i+1)*f.dim]...), true
}

// reserve makes room for n more vectors, so that loading many does not
// regrow the slab again and again.
func (f *Flat) reserve(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vecs = slices.Grow(f.vecs, n*f.dim)
	f.ids = slices.Grow(f.ids, n)
}

// appendUnit adds the unit vector vec (validated and normalised by
// disk.load) under id, which the index does not hold.
func (f *Flat) appendUnit(id string, vec []float32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slots[id] = len(f.ids)
	f.ids = append(f.ids, id)
	f.vecs = append(f.vecs, vec...)
}
