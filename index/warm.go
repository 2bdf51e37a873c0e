package index

import (
	"sync"
	"sync/atomic"
)

// warmPart is the vector index of a scope whose vectors were loaded from a
// data directory at start-up. Building an HNSW graph of 100,000 vectors
// takes minutes (benchmarks/RESULTS.md), so the scope is searchable at once
// through an exact Flat index while a background goroutine inserts the
// same vectors into the graph; once the graph holds them all, searches
// move to it and the Flat index is dropped. Adds and deletes during the
// build go to both, so the graph never misses or keeps one.
//
// It is safe for concurrent use.
type warmPart struct {
	// mu serialises writes (Add, Delete, and each background insert) and
	// the hand-over from flat to graph.
	mu    sync.Mutex
	flat  *Flat // nil once the graph is ready; guarded by mu for writes
	graph *HNSW
	ready atomic.Bool
	// flatR is flat for readers that do not hold mu; nil once ready.
	flatR atomic.Pointer[Flat]
}

var _ vectorIndex = (*warmPart)(nil)

// newWarmPart returns a part whose Flat index is flat (holding the loaded
// vectors) and whose graph is empty.
func newWarmPart(flat *Flat, graph *HNSW) *warmPart {
	p := &warmPart{flat: flat, graph: graph}
	p.flatR.Store(flat)
	return p
}

// build inserts every vector of the Flat index into the graph, one lock
// hold per vector so that writers and searches are never held up for
// long, then hands searches over to the graph. stop ends it early (the
// part keeps serving from the Flat index).
func (p *warmPart) build(stop <-chan struct{}) {
	p.mu.Lock()
	ids := p.flat.IDs()
	p.mu.Unlock()
	for _, id := range ids {
		select {
		case <-stop:
			return
		default:
		}
		p.mu.Lock()
		if vec, ok := p.flat.vector(id); ok {
			if !p.graph.Has(id) {
				_ = p.graph.Add(id, vec) // validated when it was loaded
			}
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.flat = nil
	p.flatR.Store(nil)
	p.ready.Store(true)
	p.mu.Unlock()
}

// Add adds vec under id to the graph and, while it builds, to the Flat
// index.
func (p *warmPart) Add(id string, vec []float32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.flat != nil {
		if err := p.flat.Add(id, vec); err != nil {
			return err
		}
	}
	return p.graph.Add(id, vec)
}

// Delete removes id from both indexes and reports whether it was there.
func (p *warmPart) Delete(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ok := p.graph.Delete(id)
	if p.flat != nil {
		ok = p.flat.Delete(id) || ok
	}
	return ok
}

// Search answers from the graph once it is ready, from the exact Flat
// index before.
func (p *warmPart) Search(vec []float32, k int) ([]Neighbor, error) {
	if f := p.flatR.Load(); f != nil {
		return f.Search(vec, k)
	}
	return p.graph.Search(vec, k)
}

// Len returns the number of vectors.
func (p *warmPart) Len() int {
	if f := p.flatR.Load(); f != nil {
		return f.Len()
	}
	return p.graph.Len()
}

// Ready reports whether searches have moved to the graph.
func (p *warmPart) Ready() bool { return p.ready.Load() }
