package index

import (
	"sync"
	"sync/atomic"
)

// warmFillBatch is the number of loaded vectors a warmPart copies into its
// Flat index per lock hold.
const warmFillBatch = 1024

// warmPart is the vector index of a scope whose vectors were loaded from a
// data directory at start-up. NewMemory returns as soon as the exact tier
// is loaded (the vectors are read and checked, not yet indexed); a
// background goroutine then fills the part's exact Flat index in batches,
// so the scope becomes searchable within a second at 100,000 entries
// (benchmarks/RESULTS.md), and then, unless the index kind is flat,
// inserts the same vectors into an HNSW graph, which takes minutes. Once
// the graph holds them all, searches move to it and the Flat index is
// dropped. While it fills, a search sees only the vectors filled so far: it
// may miss a neighbour, never return one that is not stored.
//
// Adds and deletes during the fill and the build go to both indexes, and a
// loaded vector whose id was added or deleted since is not filled in, so
// neither index misses a change or brings back a stale vector.
//
// It is safe for concurrent use.
type warmPart struct {
	// mu serialises writes (Add, Delete, each fill batch and each
	// background insert) and the hand-over from flat to graph.
	mu    sync.Mutex
	flat  *Flat // nil once the graph is ready; guarded by mu for writes
	graph *HNSW // nil for the flat index kind: the Flat index is kept
	// pending are the loaded vectors not yet filled in, and touched the
	// ids added or deleted while there were any; both guarded by mu.
	pending []loaded
	touched map[string]struct{}
	left    atomic.Int64 // len(pending), for Len without mu
	ready   atomic.Bool
	// flatR is flat for readers that do not hold mu; nil once ready.
	flatR atomic.Pointer[Flat]
}

var _ vectorIndex = (*warmPart)(nil)

// newWarmPart returns a part of an empty Flat index of dim that will hold
// the loaded unit vectors of pending (validated and normalised by
// disk.load), and of graph when it is not nil.
func newWarmPart(dim int, pending []loaded, graph *HNSW) (*warmPart, error) {
	f, err := NewFlat(dim)
	if err != nil {
		return nil, err
	}
	p := &warmPart{flat: f, graph: graph, pending: pending, touched: map[string]struct{}{}}
	p.left.Store(int64(len(pending)))
	p.flatR.Store(f)
	return p, nil
}

// build fills the Flat index from the loaded vectors, then inserts every
// vector of the Flat index into the graph, one lock hold per vector so
// that writers and searches are never held up for long, then hands
// searches over to the graph. stop ends it early (the part keeps serving
// from the Flat index, with what it holds).
func (p *warmPart) build(stop <-chan struct{}) {
	p.mu.Lock()
	p.flat.reserve(len(p.pending))
	p.mu.Unlock()
	for {
		select {
		case <-stop:
			return
		default:
		}
		p.mu.Lock()
		n := min(warmFillBatch, len(p.pending))
		for _, l := range p.pending[:n] {
			if _, ok := p.touched[l.key]; !ok {
				p.flat.appendUnit(l.key, l.vec)
			}
		}
		p.pending = p.pending[n:]
		p.left.Store(int64(len(p.pending)))
		done := len(p.pending) == 0
		if done {
			p.pending, p.touched = nil, nil
		}
		p.mu.Unlock()
		if done {
			break
		}
	}
	if p.graph == nil {
		return
	}
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

// touchLocked records that id changed while loaded vectors are pending.
// The caller holds mu.
func (p *warmPart) touchLocked(id string) {
	if p.touched != nil {
		p.touched[id] = struct{}{}
	}
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
	p.touchLocked(id)
	if p.graph == nil {
		return nil
	}
	return p.graph.Add(id, vec)
}

// Delete removes id from both indexes, and from the vectors still to be
// filled in, and reports whether either index held it.
func (p *warmPart) Delete(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ok := false
	if p.graph != nil {
		ok = p.graph.Delete(id)
	}
	if p.flat != nil {
		ok = p.flat.Delete(id) || ok
	}
	p.touchLocked(id) // a pending vector of id is not filled in
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

// Len returns the number of vectors, counting those still to be filled in
// (including any deleted since, until the fill passes them), so that a
// filling part is never taken for an empty one.
func (p *warmPart) Len() int {
	if f := p.flatR.Load(); f != nil {
		return f.Len() + int(p.left.Load())
	}
	return p.graph.Len()
}

// Ready reports whether searches have moved to the graph.
func (p *warmPart) Ready() bool { return p.ready.Load() }
