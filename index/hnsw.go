package index

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
)

// Defaults applied by NewHNSW to zero HNSWConfig fields.
const (
	// DefaultM is the default number of links per node on layers >= 1
	// (layer 0 gets 2*M) of the in-process index. Malkov & Yashunin
	// (arXiv:1603.09320, section 4) recommend 12 to 48 for mid-dimensional
	// data; 32 is the value that meets recall@1 >= 0.98 at the default
	// EfSearch on 100,000 uniformly random 384-d vectors, the worst case:
	// 0.994 with about 3,700 distance evaluations, against 0.874 at M = 16
	// (BenchmarkHNSWSearchEf, benchmarks/RESULTS.md). It costs twice the
	// link memory of M = 16 (256 bytes per node on layer 0) and more work
	// per insert. The Redis backend keeps RediSearch's default of 16
	// (DefaultRedisM), so that existing Redis indexes keep their schema.
	DefaultM = 32
	// DefaultEfConstruction is the default candidate list size while
	// inserting. 200 is RediSearch's EF_CONSTRUCTION default and the value
	// the paper's and hnswlib's benchmarks commonly use.
	DefaultEfConstruction = 200
	// DefaultEfSearch is the default candidate list size while querying
	// (RediSearch's EF_RUNTIME). With M = 32 (DefaultM), 64 reaches
	// recall@1 0.994 against exact search on 100,000 uniformly random
	// 384-d vectors queried with perturbed copies at cosine ~0.89 (the
	// worst case), and 1.000 on 100,000 clustered ones, in under 200 µs
	// (BenchmarkHNSWSearch, BenchmarkHNSWSearchEf, benchmarks/RESULTS.md,
	// "In-process default M = 32"). With M = 16 recall@1 on the random
	// set is 0.874 at 64; raise EfSearch or M, or use SearchEf, then.
	DefaultEfSearch = 64
	// DefaultSeed is the level-generation seed used when HNSWConfig.Seed is 0.
	DefaultSeed = 1
)

// maxLayers caps the level drawn for a node. With M=2 a draw above 32 needs a
// uniform variate below 2^-22; the cap only guards against pathological
// graphs and never binds for M >= 4.
const maxLayers = 32

// HNSWConfig configures NewHNSW. Zero values of the optional fields select
// the documented defaults; NewHNSW copies the config and never mutates it.
type HNSWConfig struct {
	// Dim is the vector length every Add and Search must use. Required, > 0.
	Dim int
	// M is the maximum number of links per node on layers >= 1; layer 0 keeps
	// up to M0 = 2*M. Larger M raises recall and memory. 0 means DefaultM
	// (32); 1 is rejected because the level multiplier 1/ln(M) is undefined.
	M int
	// EfConstruction is the size of the dynamic candidate list used while
	// inserting. Values below M are raised to M. 0 means
	// DefaultEfConstruction (200).
	EfConstruction int
	// EfSearch is the size of the dynamic candidate list used by Search
	// (RediSearch's EF_RUNTIME); it is raised to k when k is larger. 0 means
	// DefaultEfSearch (64).
	EfSearch int
	// Seed seeds the random level generator so that graphs built by the same
	// sequence of calls are identical. 0 means DefaultSeed (1).
	Seed int64
}

// HNSW is an approximate nearest-neighbour index over cosine similarity,
// implementing Hierarchical Navigable Small World graphs (Malkov & Yashunin,
// arXiv:1603.09320): greedy descent through the upper layers, a beam search
// of width ef on layer 0, and the neighbour-selection heuristic (Algorithm 4
// with keepPrunedConnections) for choosing and shrinking links.
//
// Vectors have length Dim and are stored L2-normalised; inside the graph the
// distance is 1 - dot. Deletes remove the node and repair the graph
// immediately (no tombstones), so deleted ids are never returned and their
// slots are reused by later inserts. Each node keeps its Dim float32s in
// one slab, an int8 copy of them (quant.go: Dim bytes and a float32 scale)
// in another, up to M0 = 2*M links on layer 0 and M on each upper layer,
// plus the matching reverse edges, as uint32s.
//
// Inserts walk the graph on the float32 vectors. Searches walk it on the
// int8 codes (a quarter of the memory traffic; cosine off by at most about
// 0.002, TestQuantizedDot) and recompute the similarity of the closest
// rerankDepth candidates on the float32 vectors, so the similarities
// returned are exact.
//
// HNSW is safe for concurrent use: Search, Len and Dim take a read lock and
// run concurrently with one another; Add and Delete take the write lock.
type HNSW struct {
	dim            int
	m, m0          int
	efConstruction int
	efSearch       int
	seed           int64
	ml             float64 // level multiplier 1/ln(M)

	// searchers pools *searcher scratch space (visited marks, heaps) so that
	// concurrent searches under the read lock do not share state.
	searchers sync.Pool

	mu sync.RWMutex
	// The fields below are guarded by mu.
	rng      *rand.Rand
	vecs     []float32 // node i's unit vector is vecs[i*dim : (i+1)*dim]
	codes    []int8    // node i's int8 codes are codes[i*dim : (i+1)*dim] (quant.go)
	scales   []float32 // node i's code scale
	nodes    []node
	ids      map[string]uint32 // external id -> node
	free     []uint32          // slots of deleted nodes, reused by Add
	entry    uint32            // entry point; meaningful only when maxLevel >= 0
	maxLevel int               // level of the entry point; -1 when empty
}

// node is one graph vertex. links and in are indexed by layer 0..level.
// The graph keeps reverse edges so that Delete finds every node pointing at
// the deleted one without scanning the graph.
type node struct {
	id    string
	level int        // top layer of this node; -1 when the slot is free
	links [][]uint32 // links[l]: out-neighbours on layer l
	in    [][]uint32 // in[l]: nodes whose links[l] contain this node
}

// cand is a node with its distance to the current query or base node.
type cand struct {
	d  float32
	id uint32
}

// NewHNSW returns an empty index configured by cfg. It returns an error
// naming the offending field when Dim <= 0, M, EfConstruction or EfSearch is
// negative, or M == 1.
func NewHNSW(cfg HNSWConfig) (*HNSW, error) {
	switch {
	case cfg.Dim <= 0:
		return nil, fmt.Errorf("index: HNSWConfig.Dim must be positive, got %d", cfg.Dim)
	case cfg.M < 0:
		return nil, fmt.Errorf("index: HNSWConfig.M must not be negative, got %d", cfg.M)
	case cfg.M == 1:
		return nil, errors.New("index: HNSWConfig.M must be at least 2, got 1")
	case cfg.EfConstruction < 0:
		return nil, fmt.Errorf("index: HNSWConfig.EfConstruction must not be negative, got %d", cfg.EfConstruction)
	case cfg.EfSearch < 0:
		return nil, fmt.Errorf("index: HNSWConfig.EfSearch must not be negative, got %d", cfg.EfSearch)
	}
	if cfg.M == 0 {
		cfg.M = DefaultM
	}
	if cfg.EfConstruction == 0 {
		cfg.EfConstruction = DefaultEfConstruction
	}
	if cfg.EfSearch == 0 {
		cfg.EfSearch = DefaultEfSearch
	}
	if cfg.Seed == 0 {
		cfg.Seed = DefaultSeed
	}
	h := &HNSW{
		dim:            cfg.Dim,
		m:              cfg.M,
		m0:             2 * cfg.M,
		efConstruction: max(cfg.EfConstruction, cfg.M),
		efSearch:       cfg.EfSearch,
		seed:           cfg.Seed,
		ml:             1 / math.Log(float64(cfg.M)),
		rng:            rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15)),
		ids:            make(map[string]uint32),
		maxLevel:       -1,
	}
	h.searchers.New = func() any { return new(searcher) }
	return h, nil
}

// Config returns the effective configuration, with defaults filled in and
// EfConstruction raised to at least M.
func (h *HNSW) Config() HNSWConfig {
	return HNSWConfig{Dim: h.dim, M: h.m, EfConstruction: h.efConstruction, EfSearch: h.efSearch, Seed: h.seed}
}

// Dim returns the vector length the index accepts.
func (h *HNSW) Dim() int { return h.dim }

// Len returns the number of vectors in the index.
func (h *HNSW) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.ids)
}

// Has reports whether a vector is stored under id.
func (h *HNSW) Has(id string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	_, ok := h.ids[id]
	return ok
}

// Add inserts vec under id, replacing the vector already stored under id if
// any (the old node is deleted, with repair, and a new one inserted). vec
// must have length Dim; the index stores a normalised copy and does not
// retain vec. It returns an error wrapping ErrDimensionMismatch or
// ErrInvalidVector, leaving the index unchanged, when vec has the wrong
// length or is zero, NaN or infinite.
func (h *HNSW) Add(id string, vec []float32) error {
	q, err := prepare(vec, h.dim)
	if err != nil {
		return err
	}
	s := h.getSearcher()
	defer h.searchers.Put(s)

	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.ids[id]; ok {
		h.deleteLocked(s, id)
	}
	h.insertLocked(s, id, q)
	return nil
}

// Delete removes id and its vector, reconnecting the nodes that linked to it
// (see repairLocked) and choosing a new entry point when needed. It reports
// whether id was present. Its cost is comparable to an Add.
func (h *HNSW) Delete(id string) bool {
	s := h.getSearcher()
	defer h.searchers.Put(s)

	h.mu.Lock()
	defer h.mu.Unlock()
	return h.deleteLocked(s, id)
}

// Search returns up to k nearest neighbours of vec, best first (highest
// cosine similarity first), using the configured EfSearch as the candidate
// list size. vec must have length Dim. It returns an error when k <= 0 or
// when vec is invalid (ErrDimensionMismatch, ErrInvalidVector), and nil, nil
// when the index is empty.
func (h *HNSW) Search(vec []float32, k int) ([]Neighbor, error) {
	return h.SearchEf(vec, k, h.efSearch)
}

// SearchEf is Search with an explicit candidate list size ef, which is raised
// to k when smaller; ef <= 0 selects the configured EfSearch. Larger ef trades
// latency for recall.
func (h *HNSW) SearchEf(vec []float32, k, ef int) ([]Neighbor, error) {
	out, _, err := h.searchEf(vec, k, ef)
	return out, err
}

// searchEf is SearchEf that also returns the number of distance
// evaluations on layer 0, for the benchmarks.
func (h *HNSW) searchEf(vec []float32, k, ef int) ([]Neighbor, int, error) {
	if k <= 0 {
		return nil, 0, fmt.Errorf("index: k must be positive, got %d", k)
	}
	if err := checkDim(vec, h.dim); err != nil {
		return nil, 0, err
	}
	if ef <= 0 {
		ef = h.efSearch
	}
	ef = max(ef, k)

	s := h.getSearcher()
	defer h.searchers.Put(s)
	q, err := normalizeInto(s.query, vec)
	s.query = q
	if err != nil {
		return nil, 0, err
	}

	if len(s.qcode) < h.dim {
		s.qcode = make([]int8, h.dim)
	}
	p := &s.probe
	*p = probe{f: q, c: s.qcode[:h.dim], quant: true}
	p.cs = quantizeInto(p.c, q)

	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.maxLevel < 0 {
		return nil, 0, nil
	}
	ep := h.entry
	epD := h.dist(p, ep)
	for l := h.maxLevel; l > 0; l-- {
		ep, epD = h.greedyLocked(p, ep, epD, l)
	}
	s.eps = append(s.eps[:0], cand{epD, ep})
	h.searchLayerLocked(s, p, s.eps, ef, 0)
	s.w = s.res.drainAscending(s.w[:0])
	// Re-rank the closest candidates on the exact vectors: the walk ranked
	// them by int8 codes, whose similarities are off by about 1e-3.
	s.w = s.w[:min(len(s.w), max(k, rerankDepth))]
	for i := range s.w {
		s.w[i].d = 1 - Dot(q, h.vec(s.w[i].id))
	}
	sortCands(s.w)

	out := make([]Neighbor, min(k, len(s.w)))
	for i := range out {
		c := s.w[i]
		out[i] = Neighbor{ID: h.nodes[c.id].id, Similarity: SimilarityFromDistance(c.d)}
	}
	return out, s.evals, nil
}

// vec returns node i's stored unit vector.
func (h *HNSW) vec(i uint32) []float32 {
	off := int(i) * h.dim
	return h.vecs[off : off+h.dim : off+h.dim]
}

// code returns node i's int8 codes.
func (h *HNSW) code(i uint32) []int8 {
	off := int(i) * h.dim
	return h.codes[off : off+h.dim : off+h.dim]
}

// rerankDepth is the number of the walk's closest candidates (at least k)
// whose distances Search recomputes on the exact vectors before returning
// the k closest. Measured in BenchmarkHNSWSearch (RESULTS.md).
const rerankDepth = 16

// probe is a query or an inserted vector as the graph walk sees it: the
// unit vector f and, when quant is set, its int8 codes c with scale cs, in
// which case distances are computed on the codes.
type probe struct {
	f     []float32
	c     []int8
	cs    float32
	quant bool
}

// dist is the cosine distance between p and node i: exact on the float32
// vectors, or approximated on the int8 codes when p.quant is set.
func (h *HNSW) dist(p *probe, i uint32) float32 {
	if p.quant {
		return 1 - p.cs*h.scales[i]*float32(dotInt8(p.c, h.code(i)))
	}
	return 1 - Dot(p.f, h.vec(i))
}

// prefetchNode asks for the part of node i that dist(p, i) will read.
func (h *HNSW) prefetchNode(p *probe, i uint32) {
	if p.quant {
		prefetch(h.code(i))
	} else {
		prefetchFloats(h.vec(i))
	}
}

// maxLinks is the link-list capacity on layer l: M0 on layer 0, M above.
func (h *HNSW) maxLinks(l int) int {
	if l == 0 {
		return h.m0
	}
	return h.m
}

// randomLevel draws floor(-ln(U) * mL) with U uniform in (0, 1].
func (h *HNSW) randomLevel() int {
	u := 1 - h.rng.Float64()
	return min(int(math.Floor(-math.Log(u)*h.ml)), maxLayers-1)
}

// greedyLocked walks layer l from ep, moving to the closest neighbour while
// that improves the distance to q (SEARCH-LAYER with ef = 1).
func (h *HNSW) greedyLocked(p *probe, ep uint32, epD float32, l int) (uint32, float32) {
	for changed := true; changed; {
		changed = false
		for _, n := range h.nodes[ep].links[l] {
			if d := h.dist(p, n); d < epD {
				ep, epD, changed = n, d, true
			}
		}
	}
	return ep, epD
}

// searchLayerLocked is SEARCH-LAYER (Algorithm 2): a best-first beam search
// of layer l from eps that leaves the ef nearest nodes found in s.res. The
// candidates min-heap is expanded closest first and the search stops only
// when the closest unexpanded candidate is farther than the farthest of the
// ef results.
func (h *HNSW) searchLayerLocked(s *searcher, p *probe, eps []cand, ef, l int) {
	s.resetVisited(len(h.nodes))
	s.evals = 0
	s.cands = s.cands[:0]
	s.res = s.res[:0]
	for _, e := range eps {
		if !s.visit(e.id) {
			continue
		}
		s.cands.push(e)
		s.res.push(e)
		if len(s.res) > ef {
			s.res.pop()
		}
	}
	for len(s.cands) > 0 {
		c := s.cands.pop()
		if c.d > s.res[0].d {
			break
		}
		// Mark and prefetch the unvisited neighbours first, so that their
		// memory loads overlap, then compute their distances.
		s.next = s.next[:0]
		for _, n := range h.nodes[c.id].links[l] {
			if s.visit(n) {
				s.next = append(s.next, n)
				h.prefetchNode(p, n)
			}
		}
		s.evals += len(s.next)
		for _, n := range s.next {
			d := h.dist(p, n)
			if len(s.res) < ef || d < s.res[0].d {
				s.cands.push(cand{d, n})
				s.res.push(cand{d, n})
				if len(s.res) > ef {
					s.res.pop()
				}
			}
		}
	}
}

// selectNeighborsLocked is SELECT-NEIGHBORS-HEURISTIC (Algorithm 4) with
// extendCandidates = false and keepPrunedConnections = true. cs holds
// candidates sorted by ascending distance to the base element. A candidate
// is kept when it is closer to the base than to every already kept one; the
// remaining slots up to m are then filled with the closest pruned
// candidates. The result is appended to dst[:0].
func (h *HNSW) selectNeighborsLocked(s *searcher, cs []cand, m int, dst []cand) []cand {
	dst = dst[:0]
	if len(cs) <= m {
		return append(dst, cs...)
	}
	pruned := s.pruned[:0]
	for _, c := range cs {
		if len(dst) >= m {
			break
		}
		vc := h.vec(c.id)
		good := true
		for _, r := range dst {
			if 1-Dot(vc, h.vec(r.id)) < c.d {
				good = false
				break
			}
		}
		if good {
			dst = append(dst, c)
		} else {
			pruned = append(pruned, c)
		}
	}
	for _, c := range pruned {
		if len(dst) >= m {
			break
		}
		dst = append(dst, c)
	}
	s.pruned = pruned
	return dst
}

// allocLocked returns a slot for a new node with the given id, vector and
// level, reusing a freed slot when one exists.
func (h *HNSW) allocLocked(id string, q []float32, level int) uint32 {
	var i uint32
	if n := len(h.free); n > 0 {
		i = h.free[n-1]
		h.free = h.free[:n-1]
		copy(h.vec(i), q)
	} else {
		i = uint32(len(h.nodes))
		h.nodes = append(h.nodes, node{})
		h.vecs = append(h.vecs, q...)
		h.codes = append(h.codes, make([]int8, h.dim)...)
		h.scales = append(h.scales, 0)
	}
	h.scales[i] = quantizeInto(h.code(i), q)
	nd := &h.nodes[i]
	nd.id = id
	nd.level = level
	nd.links = resizeLayers(nd.links, level+1)
	nd.in = resizeLayers(nd.in, level+1)
	for l := 0; l <= level; l++ {
		if nd.links[l] == nil {
			nd.links[l] = make([]uint32, 0, h.maxLinks(l)+1)
		}
	}
	h.ids[id] = i
	return i
}

// resizeLayers returns ls with n empty layers, keeping the backing arrays of
// layers that already exist.
func resizeLayers(ls [][]uint32, n int) [][]uint32 {
	for len(ls) < n {
		ls = append(ls, nil)
	}
	ls = ls[:n]
	for l := range ls {
		ls[l] = ls[l][:0]
	}
	return ls
}

// insertLocked is INSERT (Algorithm 1) for a new id and unit vector q.
func (h *HNSW) insertLocked(s *searcher, id string, q []float32) {
	level := h.randomLevel()
	i := h.allocLocked(id, q, level)
	if h.maxLevel < 0 {
		h.entry, h.maxLevel = i, level
		return
	}
	p := &s.probe
	*p = probe{f: q}
	ep := h.entry
	epD := h.dist(p, ep)
	for l := h.maxLevel; l > level; l-- {
		ep, epD = h.greedyLocked(p, ep, epD, l)
	}
	s.eps = append(s.eps[:0], cand{epD, ep})
	for l := min(level, h.maxLevel); l >= 0; l-- {
		h.searchLayerLocked(s, p, s.eps, h.efConstruction, l)
		s.w = s.res.drainAscending(s.w[:0])
		s.sel = h.selectNeighborsLocked(s, s.w, h.m, s.sel)
		for _, c := range s.sel {
			h.linkLocked(i, c.id, l)
		}
		for _, c := range s.sel {
			h.addLinkLocked(s, c.id, i, c.d, l)
		}
		s.eps = append(s.eps[:0], s.w...)
	}
	if level > h.maxLevel {
		h.entry, h.maxLevel = i, level
	}
}

// linkLocked adds the edge from -> to on layer l, with its reverse record.
func (h *HNSW) linkLocked(from, to uint32, l int) {
	h.nodes[from].links[l] = append(h.nodes[from].links[l], to)
	h.nodes[to].in[l] = append(h.nodes[to].in[l], from)
}

// addLinkLocked adds the edge e -> n (n at distance d from e) on layer l and,
// when e's list overflows, shrinks it back to capacity with the heuristic.
func (h *HNSW) addLinkLocked(s *searcher, e, n uint32, d float32, l int) {
	links := h.nodes[e].links[l]
	if len(links) < h.maxLinks(l) {
		h.linkLocked(e, n, l)
		return
	}
	ve := h.vec(e)
	cs := s.shrink[:0]
	for _, x := range links {
		cs = append(cs, cand{1 - Dot(ve, h.vec(x)), x})
	}
	cs = append(cs, cand{d, n})
	sortCands(cs)
	s.sel2 = h.selectNeighborsLocked(s, cs, h.maxLinks(l), s.sel2)
	h.setLinksLocked(e, l, s.sel2)
	s.shrink = cs
}

// setLinksLocked replaces e's links on layer l by sel, keeping the reverse
// edges in step.
func (h *HNSW) setLinksLocked(e uint32, l int, sel []cand) {
	old := h.nodes[e].links[l]
	for _, x := range old {
		if !containsCand(sel, x) {
			h.nodes[x].in[l] = removeID(h.nodes[x].in[l], e)
		}
	}
	for _, c := range sel {
		if !slices.Contains(old, c.id) {
			h.nodes[c.id].in[l] = append(h.nodes[c.id].in[l], e)
		}
	}
	old = old[:0]
	for _, c := range sel {
		old = append(old, c.id)
	}
	h.nodes[e].links[l] = old
}

// deleteLocked removes id from the graph, repairs the neighbourhood on every
// layer the node lived on, frees its slot and moves the entry point if it
// was the deleted node. It reports whether id was present.
func (h *HNSW) deleteLocked(s *searcher, id string) bool {
	i, ok := h.ids[id]
	if !ok {
		return false
	}
	delete(h.ids, id)
	nd := &h.nodes[i]
	level := nd.level
	newEntry, haveNewEntry := uint32(0), false
	for l := level; l >= 0; l-- {
		outs := append(s.outs[:0], nd.links[l]...)
		ins := append(s.ins[:0], nd.in[l]...)
		for _, o := range outs {
			h.nodes[o].in[l] = removeID(h.nodes[o].in[l], i)
		}
		for _, x := range ins {
			h.nodes[x].links[l] = removeID(h.nodes[x].links[l], i)
		}
		nd.links[l] = nd.links[l][:0]
		nd.in[l] = nd.in[l][:0]
		for _, x := range ins {
			h.repairLocked(s, x, l, outs, ins)
		}
		if !haveNewEntry && i == h.entry && l == h.maxLevel {
			// A neighbour on the top layer has the same level and can take
			// over as entry point without changing maxLevel.
			if len(outs) > 0 {
				newEntry, haveNewEntry = outs[0], true
			} else if len(ins) > 0 {
				newEntry, haveNewEntry = ins[0], true
			}
		}
		s.outs, s.ins = outs, ins
	}
	nd.id = ""
	nd.level = -1
	h.free = append(h.free, i)

	if i == h.entry {
		switch {
		case haveNewEntry:
			h.entry = newEntry
		case len(h.ids) == 0:
			h.maxLevel = -1
		default:
			h.entry, h.maxLevel = h.highestNodeLocked()
		}
	}
	return true
}

// highestNodeLocked scans for a live node with the highest level. Delete
// calls it only when the entry point had no neighbour on the top layer.
func (h *HNSW) highestNodeLocked() (uint32, int) {
	best, bestLevel := uint32(0), -1
	for j := range h.nodes {
		if h.nodes[j].level > bestLevel {
			best, bestLevel = uint32(j), h.nodes[j].level
		}
	}
	return best, bestLevel
}

// repairLocked reconnects x on layer l after it lost its link to a deleted
// node whose out- and in-neighbours on that layer were outs and ins. The
// candidates are x's remaining neighbours plus the deleted node's neighbours
// (x's neighbours' neighbours through the deleted node); the heuristic
// picks up to the layer's capacity among them.
func (h *HNSW) repairLocked(s *searcher, x uint32, l int, outs, ins []uint32) {
	s.resetVisited(len(h.nodes))
	s.visit(x)
	vx := h.vec(x)
	cs := s.shrink[:0]
	add := func(ids []uint32) {
		for _, y := range ids {
			if s.visit(y) {
				cs = append(cs, cand{1 - Dot(vx, h.vec(y)), y})
			}
		}
	}
	add(h.nodes[x].links[l])
	add(outs)
	add(ins)
	sortCands(cs)
	s.sel2 = h.selectNeighborsLocked(s, cs, h.maxLinks(l), s.sel2)
	h.setLinksLocked(x, l, s.sel2)
	s.shrink = cs
}

// sortCands sorts cs by ascending distance, breaking ties by id so that
// graphs are deterministic.
func sortCands(cs []cand) {
	slices.SortFunc(cs, func(a, b cand) int {
		switch {
		case a.d < b.d:
			return -1
		case a.d > b.d:
			return 1
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
}

func containsCand(cs []cand, id uint32) bool {
	for _, c := range cs {
		if c.id == id {
			return true
		}
	}
	return false
}

// removeID removes the first occurrence of id from ids, not preserving order.
func removeID(ids []uint32, id uint32) []uint32 {
	for j, x := range ids {
		if x == id {
			last := len(ids) - 1
			ids[j] = ids[last]
			return ids[:last]
		}
	}
	return ids
}

// getSearcher takes scratch space from the pool.
func (h *HNSW) getSearcher() *searcher {
	return h.searchers.Get().(*searcher)
}

// searcher is per-call scratch space. It is owned by one goroutine between
// getSearcher and searchers.Put.
type searcher struct {
	marks  []uint32 // marks[i] == gen when node i was visited
	gen    uint32
	cands  minHeap // candidates to expand, closest first
	res    maxHeap // best ef results, farthest on top
	query  []float32
	qcode  []int8
	next   []uint32
	evals  int // distance evaluations of the last searchLayerLocked (tests)
	probe  probe
	eps    []cand
	w      []cand
	sel    []cand
	sel2   []cand
	shrink []cand
	pruned []cand
	outs   []uint32
	ins    []uint32
}

// resetVisited clears the visited set for a graph of n slots in O(1) by
// bumping the generation, reallocating only when the graph has grown.
func (s *searcher) resetVisited(n int) {
	if len(s.marks) < n {
		s.marks = make([]uint32, n+n/4+64)
		s.gen = 0
	}
	s.gen++
	if s.gen == 0 {
		clear(s.marks)
		s.gen = 1
	}
}

// visit marks node i visited and reports whether it was not visited before.
func (s *searcher) visit(i uint32) bool {
	if s.marks[i] == s.gen {
		return false
	}
	s.marks[i] = s.gen
	return true
}

// minHeap is a binary heap of candidates ordered by ascending distance.
type minHeap []cand

func (h *minHeap) push(c cand) {
	*h = append(*h, c)
	a := *h
	j := len(a) - 1
	for j > 0 {
		p := (j - 1) / 2
		if a[p].d <= a[j].d {
			break
		}
		a[p], a[j] = a[j], a[p]
		j = p
	}
}

func (h *minHeap) pop() cand {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a = a[:last]
	for j := 0; ; {
		l := 2*j + 1
		if l >= len(a) {
			break
		}
		if r := l + 1; r < len(a) && a[r].d < a[l].d {
			l = r
		}
		if a[j].d <= a[l].d {
			break
		}
		a[j], a[l] = a[l], a[j]
		j = l
	}
	*h = a
	return top
}

// maxHeap is a binary heap of candidates ordered by descending distance; its
// root is the farthest result.
type maxHeap []cand

func (h *maxHeap) push(c cand) {
	*h = append(*h, c)
	a := *h
	j := len(a) - 1
	for j > 0 {
		p := (j - 1) / 2
		if a[p].d >= a[j].d {
			break
		}
		a[p], a[j] = a[j], a[p]
		j = p
	}
}

func (h *maxHeap) pop() cand {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a = a[:last]
	for j := 0; ; {
		l := 2*j + 1
		if l >= len(a) {
			break
		}
		if r := l + 1; r < len(a) && a[r].d > a[l].d {
			l = r
		}
		if a[j].d >= a[l].d {
			break
		}
		a[j], a[l] = a[l], a[j]
		j = l
	}
	*h = a
	return top
}

// drainAscending empties the heap into dst, closest first, and returns dst.
func (h *maxHeap) drainAscending(dst []cand) []cand {
	n := len(*h)
	dst = slices.Grow(dst[:0], n)[:n]
	for j := n - 1; j >= 0; j-- {
		dst[j] = h.pop()
	}
	return dst
}
