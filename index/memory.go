package index

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// MemoryConfig configures an in-process Memory store. NewMemory copies it;
// zero values mean the defaults on each field.
type MemoryConfig struct {
	// Dim is the vector length of the semantic tier; required (> 0).
	Dim int
	// MaxEntries bounds the number of entries (exact and semantic tiers
	// together); the least recently used entry is evicted past it, and its
	// vector is deleted from the graph. 0 means 100,000.
	MaxEntries int
	// MaxBytes bounds the bytes the entries hold (see recordBytes: key,
	// scope, value and vector, plus a fixed overhead per entry); least
	// recently used entries are evicted past it, and an entry larger than
	// MaxBytes on its own is refused with ErrTooLarge. 0 means no byte
	// bound; negative is an error.
	MaxBytes int64
	// Index selects the vector index of each scope: "hnsw" (the default) or
	// "flat" (exact brute force, the better choice for small caches).
	Index string
	// HNSW holds M / EF_CONSTRUCTION / EF_RUNTIME for the per-scope graphs;
	// its Dim is ignored (Dim above is used). Zero fields mean
	// HNSWConfig's defaults.
	HNSW HNSWConfig
	// SweepInterval is how often a background sweep deletes expired
	// entries (expired entries are also deleted when they are read). 0
	// means one minute; negative disables the background sweep (call
	// Sweep yourself).
	SweepInterval time.Duration
	// Now is the clock for expiry. nil means time.Now.
	Now func() time.Time
	// Dir is the data directory that makes the store durable; "" keeps
	// everything in process memory. With Dir, every entry (value, scope,
	// vector, tags, expiry) is written to Dir/DiskFile before Set
	// returns (see disk.go for the layout and crash rule), deletions,
	// evictions and Flush before they return, and NewMemory loads the
	// live entries back. What is not kept: the LRU's recency of hits
	// (after a restart entries rank by the order they were stored) and
	// the adaptive policy's verification state (see AddObservation), so
	// entries are verified afresh.
	Dir string
	// Fingerprint is the embedder fingerprint the vectors were made with;
	// with Dir it is recorded in a new store and must match an existing
	// one (ErrIncompatibleStore otherwise).
	Fingerprint string
}

// vectorIndex is what Memory needs of HNSW and Flat.
type vectorIndex interface {
	Add(id string, vec []float32) error
	Delete(id string) bool
	Search(vec []float32, k int) ([]Neighbor, error)
	Len() int
}

var (
	_ vectorIndex = (*HNSW)(nil)
	_ vectorIndex = (*Flat)(nil)
)

// memRecord is one entry of a Memory store.
type memRecord struct {
	scope     string
	value     []byte
	expiresAt time.Time
	hasVector bool
	// seq orders entries by when they were stored (see MemoryConfig.Dir);
	// guarded by Memory.wmu when set.
	seq uint64
	// tags are the entry's tags (see Tag); guarded by Memory.mu, unlike
	// the fields above, which never change after Set.
	tags []string
	// obs is the entry's observation list, oldest first (see
	// AddObservation); guarded by Memory.mu. The byte slices are private
	// copies, never modified once appended.
	obs [][]byte
	// fit is the entry's fitted model (see SetFit), nil for none; swapped
	// atomically, so Fit reads it without holding Memory.mu. The bytes are
	// a private copy, never modified once stored.
	fit atomic.Pointer[[]byte]
}

// Memory is semcache's embedded backend: a bounded LRU of entries with a
// per-entry TTL (the exact tier) and one vector index per scope (the
// semantic tier), so that a KNN query only ever sees its own scope's
// vectors. Entries leave the vector index when they expire, are evicted or
// are deleted.
//
// Memory is safe for concurrent use. Reads take a short lock on the LRU;
// writes (Set, Delete, expiry) are serialised by a writer lock so that the
// LRU and the vector indexes always agree, and run the graph updates outside
// the LRU lock, so lookups are not blocked by HNSW inserts. The tag map (see
// Tag) is kept under the LRU lock and updated by every path that removes or
// replaces an entry, so it never names a key that is gone. An entry's
// verification state (see AddObservation) lives on its record, so it leaves
// with the entry by every one of those paths.
type Memory struct {
	cfg MemoryConfig

	// wmu serialises every mutation of lru and parts; taken before mu.
	wmu sync.Mutex
	// mu guards lru, parts, tags and every record's tags and obs.
	mu    sync.Mutex
	lru   *simplelru.LRU[string, *memRecord]
	parts map[string]vectorIndex
	// tags maps a tag to the keys of the entries that carry it: key k is
	// in tags[t] exactly when the LRU's record for k lists t. Empty sets
	// are deleted.
	tags map[string]map[string]struct{}
	// evicted collects the LRU's evictions during one Add; guarded by mu
	// and drained by the writer that caused them.
	evicted []string
	// evictedRecs holds the records evicted alongside evicted.
	evictedRecs []*memRecord

	// bytes is the recordBytes sum of the LRU's records; guarded by mu.
	bytes int64
	// evictions counts the LRU's evictions (see Evictions); expired counts
	// expired entries deleted (see Expired).
	evictions atomic.Int64
	expired   atomic.Int64

	// disk is the data directory's store; nil without MemoryConfig.Dir.
	disk *disk
	// seq is the last seq given to a record; guarded by wmu.
	seq uint64
	// warming counts the loaded scopes whose graph is still being built
	// (see warmPart); warmWG waits for their builders.
	warming atomic.Int64
	warmWG  sync.WaitGroup

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewMemory returns a Memory store and starts its expiry sweep. It fails
// with an error naming the field when cfg is out of range. Call Close to
// stop the sweep.
func NewMemory(cfg MemoryConfig) (*Memory, error) {
	if cfg.Dim <= 0 {
		return nil, fmt.Errorf("index: MemoryConfig.Dim %d: must be > 0", cfg.Dim)
	}
	if cfg.MaxEntries < 0 {
		return nil, fmt.Errorf("index: MemoryConfig.MaxEntries %d: must not be negative", cfg.MaxEntries)
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("index: MemoryConfig.MaxBytes %d: must not be negative", cfg.MaxBytes)
	}
	switch cfg.Index {
	case "":
		cfg.Index = "hnsw"
	case "hnsw", "flat":
	default:
		return nil, fmt.Errorf("index: MemoryConfig.Index %q: want hnsw or flat", cfg.Index)
	}
	cfg.HNSW.Dim = cfg.Dim
	if _, err := NewHNSW(cfg.HNSW); err != nil { // validate once, up front
		return nil, fmt.Errorf("index: MemoryConfig.HNSW: %w", err)
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Memory{cfg: cfg, parts: make(map[string]vectorIndex), tags: make(map[string]map[string]struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	// The LRU calls this under mu for every entry it drops: evictions,
	// Remove (delete, expiry) and Purge (Flush).
	l, err := simplelru.NewLRU[string, *memRecord](cfg.MaxEntries, func(k string, r *memRecord) {
		m.bytes -= m.recordBytes(k, r)
		m.evicted = append(m.evicted, k)
		m.evictedRecs = append(m.evictedRecs, r)
		m.untagLocked(k, r)
	})
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	m.lru = l
	if cfg.Dir != "" {
		if err := m.openDir(); err != nil {
			return nil, err
		}
	}
	if cfg.SweepInterval > 0 {
		go m.sweepLoop()
	} else {
		close(m.done)
	}
	return m, nil
}

// recordOverhead is the fixed cost counted per entry on top of its bytes:
// the record, its LRU element and map slot, and its graph node's links
// (at M = 16 about 32 neighbour ids on layer 0), rounded up.
const recordOverhead = 512

// ErrTooLarge is returned by Set for an entry larger than
// MemoryConfig.MaxBytes on its own.
var ErrTooLarge = errors.New("index: entry larger than the byte bound")

// recordBytes is what an entry counts against MaxBytes: its key, scope,
// value and vector (4 bytes per dimension) plus recordOverhead.
func (m *Memory) recordBytes(key string, r *memRecord) int64 {
	n := int64(len(key) + len(r.scope) + len(r.value) + recordOverhead)
	if r.hasVector {
		n += int64(4 * m.cfg.Dim)
	}
	return n
}

// Bytes returns the bytes the live entries count against MaxBytes (see
// recordBytes), whether or not a byte bound is set.
func (m *Memory) Bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes
}

// Dim returns the vector length.
func (m *Memory) Dim() int { return m.cfg.Dim }

// Get returns the value stored under key. An expired entry is deleted and
// reported as a miss. The returned slice must not be modified.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	r, ok := m.lru.Get(key)
	expired := ok && !m.cfg.Now().Before(r.expiresAt)
	m.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	if expired {
		if m.removeIf(key, r) {
			m.expired.Add(1)
		}
		return nil, false, nil
	}
	return r.value, true, nil
}

// Set stores value under key in scope for ttl (> 0), replacing any entry
// with that key (and dropping its tags), and adds vec (length Dim; nil for an exact-only entry) to
// the scope's vector index. A vector of the wrong length returns an error
// wrapping ErrDimensionMismatch, an unusable one ErrInvalidVector, and a
// ttl <= 0 an error; none of them changes the store.
func (m *Memory) Set(ctx context.Context, key, scope string, value []byte, vec []float32, ttl time.Duration) error {
	rec, b, err := m.set(ctx, key, scope, value, vec, ttl)
	if err != nil || b == nil {
		return err
	}
	if err := b.wait(); err != nil {
		// Not durable: take it out of memory too, so that nothing is
		// served that a restart would not know.
		m.removeIf(key, rec)
		return err
	}
	return nil
}

// set is Set up to the durable write: it returns the stored record and,
// with a data directory, the batch that commits it (to wait on after wmu
// is released).
func (m *Memory) set(ctx context.Context, key, scope string, value []byte, vec []float32, ttl time.Duration) (*memRecord, *diskBatch, error) {
	if ttl <= 0 {
		return nil, nil, fmt.Errorf("index: ttl %v: must be > 0", ttl)
	}
	if vec != nil {
		if len(vec) != m.cfg.Dim {
			return nil, nil, fmt.Errorf("%w: got %d, index has %d", ErrDimensionMismatch, len(vec), m.cfg.Dim)
		}
		if _, err := Normalize(vec); err != nil {
			return nil, nil, err
		}
	}
	rec := &memRecord{scope: scope, value: value, expiresAt: m.cfg.Now().Add(ttl), hasVector: vec != nil, tags: uniqueTags(TagsFrom(ctx))}
	size := m.recordBytes(key, rec)
	if m.cfg.MaxBytes > 0 && size > m.cfg.MaxBytes {
		return nil, nil, fmt.Errorf("%w: entry of %d bytes, MaxBytes %d", ErrTooLarge, size, m.cfg.MaxBytes)
	}

	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.seq++
	rec.seq = m.seq
	m.mu.Lock()
	old, hadOld := m.lru.Peek(key)
	m.lru.Add(key, rec)
	if hadOld {
		// A replacement is not reported as an eviction; untag here: the
		// new answer does not inherit the old one's tags.
		m.untagLocked(key, old)
		m.bytes -= m.recordBytes(key, old)
	}
	m.linkTagsLocked(key, rec) // its own tags (WithTags)
	m.bytes += size
	for m.cfg.MaxBytes > 0 && m.bytes > m.cfg.MaxBytes && m.lru.Len() > 1 {
		m.lru.RemoveOldest() // the callback collects it as an eviction
	}
	evKeys, evRecs := m.takeEvictedLocked()
	// Only Add evicts: Remove and Purge, which also call the LRU's
	// callback, discard what it collected.
	m.evictions.Add(int64(len(evKeys)))
	part := m.parts[scope]
	if vec != nil && part == nil {
		var err error
		if part, err = m.newPart(); err != nil {
			m.mu.Unlock()
			return nil, nil, err
		}
		m.parts[scope] = part
	}
	m.mu.Unlock()

	if hadOld && old.hasVector && (old.scope != scope || vec == nil) {
		m.deleteVector(key, old.scope)
	}
	if vec != nil {
		if err := part.Add(key, vec); err != nil {
			// Validated above, so this is not expected; undo the LRU write
			// so that nothing is half stored.
			m.mu.Lock()
			m.lru.Remove(key)
			if hadOld {
				m.lru.Add(key, old)
				m.bytes += m.recordBytes(key, old)
				m.linkTagsLocked(key, old)
			}
			m.evicted, m.evictedRecs = m.evicted[:0], m.evictedRecs[:0]
			m.mu.Unlock()
			return nil, nil, fmt.Errorf("index: add vector: %w", err)
		}
	}
	var b *diskBatch
	if m.disk != nil {
		// Under wmu, so the file sees changes in the order memory does;
		// the evictions this Set caused leave the file in the same
		// transaction.
		op := diskOp{key: key, entry: encodeEntry(rec.disk())}
		if vec != nil {
			op.vec = encodeVector(vec)
		}
		b = m.disk.submit(op)
		if len(evKeys) > 0 {
			b = m.disk.submit(diskOp{del: evKeys})
		}
	}
	for i, k := range evKeys {
		if evRecs[i].hasVector {
			m.deleteVector(k, evRecs[i].scope)
		}
	}
	return rec, b, nil
}

// Search returns up to k live entries of scope nearest to vec (length Dim),
// highest cosine similarity first. A scope with no vectors returns nil. A
// vector of the wrong length returns an error wrapping
// ErrDimensionMismatch.
func (m *Memory) Search(_ context.Context, scope string, vec []float32, k int) ([]Neighbor, error) {
	if len(vec) != m.cfg.Dim {
		return nil, fmt.Errorf("%w: got %d, index has %d", ErrDimensionMismatch, len(vec), m.cfg.Dim)
	}
	m.mu.Lock()
	part := m.parts[scope]
	m.mu.Unlock()
	if part == nil {
		return nil, nil
	}
	nn, err := part.Search(vec, k)
	if err != nil {
		return nil, err
	}
	// Drop entries that expired but have not been swept yet, and entries
	// whose key a concurrent Set has just moved to another scope (or
	// stripped of its vector) before removing the old vector.
	now := m.cfg.Now()
	live := nn[:0]
	m.mu.Lock()
	for _, n := range nn {
		if r, ok := m.lru.Peek(n.ID); ok && r.scope == scope && r.hasVector && now.Before(r.expiresAt) {
			live = append(live, n)
		}
	}
	m.mu.Unlock()
	return live, nil
}

// Delete removes key from both tiers and reports whether it existed. With
// a data directory it returns once the deletion is durable; an error
// writing it is returned (the entry is already gone from memory).
func (m *Memory) Delete(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	r, ok := m.lru.Peek(key)
	m.mu.Unlock()
	if !ok {
		return false, nil
	}
	return m.removeDurably(key, r)
}

// Len returns the number of entries, counting expired entries that have not
// been swept yet.
func (m *Memory) Len(context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len(), nil
}

// VectorLen returns the number of vectors across every scope's index; the
// tests use it to check that expiry and eviction leave the graph.
func (m *Memory) VectorLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range m.parts {
		n += p.Len()
	}
	return n
}

// Sweep deletes every expired entry now and returns how many it deleted.
// The background sweep calls it every SweepInterval.
func (m *Memory) Sweep() int {
	now := m.cfg.Now()
	type kr struct {
		k string
		r *memRecord
	}
	var expired []kr
	m.mu.Lock()
	for _, k := range m.lru.Keys() {
		if r, ok := m.lru.Peek(k); ok && !now.Before(r.expiresAt) {
			expired = append(expired, kr{k, r})
		}
	}
	m.mu.Unlock()
	n := 0
	for _, e := range expired {
		if m.removeIf(e.k, e.r) {
			n++
		}
	}
	m.expired.Add(int64(n))
	return n
}

// Evictions returns the number of entries the LRU has evicted since start
// to stay within MaxEntries. Deletions (Delete, tag invalidation, Flush),
// expiry and replacements by Set are not evictions.
func (m *Memory) Evictions() int64 { return m.evictions.Load() }

// Expired returns the number of expired entries deleted since start, by
// the sweep or when read. Expired entries deleted otherwise (Delete, Flush)
// are not counted.
func (m *Memory) Expired() int64 { return m.expired.Load() }

// Close stops the background sweep and graph builds and, with a data
// directory, commits what was submitted and closes the file, releasing its
// lock. It does not delete any entry. The store must not be used after.
func (m *Memory) Close() error {
	m.once.Do(func() { close(m.stop) })
	<-m.done
	m.warmWG.Wait()
	if m.disk != nil {
		return m.disk.close()
	}
	return nil
}

func (m *Memory) sweepLoop() {
	defer close(m.done)
	t := time.NewTicker(m.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

// removeIf deletes key when it still holds the record r (a concurrent Set
// may have replaced it), from the LRU and from its scope's vector index.
// With a data directory the deletion is submitted but not waited for
// (expired entries are not loaded anyway); see removeDurably.
func (m *Memory) removeIf(key string, r *memRecord) bool {
	ok, _ := m.removeIfBatch(key, r)
	return ok
}

// removeDurably is removeIf that returns only once the deletion is in the
// data directory, so that an invalidated entry cannot come back after a
// restart. Without a data directory it is removeIf.
func (m *Memory) removeDurably(key string, r *memRecord) (bool, error) {
	ok, b := m.removeIfBatch(key, r)
	if b != nil {
		return ok, b.wait()
	}
	return ok, nil
}

// removeIfBatch is removeIf returning the batch that deletes key from the
// data directory (nil without one, or when nothing was deleted).
func (m *Memory) removeIfBatch(key string, r *memRecord) (bool, *diskBatch) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.mu.Lock()
	cur, ok := m.lru.Peek(key)
	if !ok || cur != r {
		m.mu.Unlock()
		return false, nil
	}
	m.lru.Remove(key)
	m.evicted, m.evictedRecs = m.evicted[:0], m.evictedRecs[:0] // Remove reports itself as an eviction
	m.mu.Unlock()
	if r.hasVector {
		m.deleteVector(key, r.scope)
	}
	var b *diskBatch
	if m.disk != nil {
		b = m.disk.submit(diskOp{del: []string{key}})
	}
	return true, b
}

// deleteVector removes key's vector from scope's index and drops the index
// when it becomes empty. The caller holds wmu, not mu.
func (m *Memory) deleteVector(key, scope string) {
	m.mu.Lock()
	part := m.parts[scope]
	m.mu.Unlock()
	if part == nil {
		return
	}
	part.Delete(key)
	if part.Len() == 0 {
		m.mu.Lock()
		delete(m.parts, scope)
		m.mu.Unlock()
	}
}

// takeEvictedLocked returns and clears the evictions of the last LRU
// operation. The caller holds mu.
func (m *Memory) takeEvictedLocked() ([]string, []*memRecord) {
	if len(m.evicted) == 0 {
		return nil, nil
	}
	k := append([]string(nil), m.evicted...)
	r := append([]*memRecord(nil), m.evictedRecs...)
	m.evicted, m.evictedRecs = m.evicted[:0], m.evictedRecs[:0]
	return k, r
}

func (m *Memory) newPart() (vectorIndex, error) {
	if m.cfg.Index == "flat" {
		return NewFlat(m.cfg.Dim)
	}
	return NewHNSW(m.cfg.HNSW)
}
