package index

import (
	"context"
	"errors"
	"slices"
)

// tagsKey is the context key of WithTags.
type tagsKey struct{}

// WithTags returns ctx carrying tags for the entry a Set on it stores: the
// entry is stored with them at once (and, with a data directory, in the
// same transaction), so no crash or failure can leave it untagged and out
// of reach of DeleteTag. semantic.WithEntryTags sets it.
func WithTags(ctx context.Context, tags []string) context.Context {
	return context.WithValue(ctx, tagsKey{}, tags)
}

// TagsFrom returns the tags of WithTags, or nil.
func TagsFrom(ctx context.Context) []string {
	t, _ := ctx.Value(tagsKey{}).([]string)
	return t
}

// uniqueTags returns a copy of tags without empty and repeated ones, or
// nil.
func uniqueTags(tags []string) []string {
	var out []string
	for _, t := range tags {
		if t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// disk returns the stored form of r. The caller holds mu or wmu (for tags).
func (r *memRecord) disk() *diskEntry {
	return &diskEntry{seq: r.seq, scope: r.scope, expiresAt: r.expiresAt, hasVector: r.hasVector, tags: r.tags, value: r.value}
}

// openDir opens the data directory and loads its live entries, oldest
// first, so that the LRU ranks them by the order they were stored and the
// MaxEntries and MaxBytes bounds hold (the oldest are evicted, from the file
// too). Expired entries are deleted from the file, never loaded. Each
// scope's vectors go into a warmPart (searchable at once by exact search)
// whose HNSW graph is built in the background, unless the index is flat.
func (m *Memory) openDir() error {
	d, err := openDisk(m.cfg.Dir, m.cfg.Dim, m.cfg.Fingerprint)
	if err != nil {
		return err
	}
	all, drop, err := d.load(m.cfg.Dim)
	if err != nil {
		d.close()
		return err
	}
	now := m.cfg.Now()
	live := all[:0]
	for _, l := range all {
		if !now.Before(l.e.expiresAt) {
			drop = append(drop, l.key)
			continue
		}
		live = append(live, l)
	}
	all = live
	slices.SortFunc(all, func(a, b loaded) int {
		switch {
		case a.e.seq < b.e.seq:
			return -1
		case a.e.seq > b.e.seq:
			return 1
		}
		return 0
	})
	m.mu.Lock()
	for _, l := range all {
		rec := &memRecord{scope: l.e.scope, value: l.e.value, expiresAt: l.e.expiresAt, hasVector: l.e.hasVector, seq: l.e.seq, tags: l.e.tags}
		m.lru.Add(l.key, rec)
		m.linkTagsLocked(l.key, rec)
		m.bytes += m.recordBytes(l.key, rec)
		for m.cfg.MaxBytes > 0 && m.bytes > m.cfg.MaxBytes && m.lru.Len() > 1 {
			m.lru.RemoveOldest()
		}
		m.seq = max(m.seq, l.e.seq)
	}
	evicted := slices.Clone(m.evicted)
	m.evicted, m.evictedRecs = m.evicted[:0], m.evictedRecs[:0]
	m.evictions.Add(int64(len(evicted)))
	byScope := map[string][]loaded{}
	for _, l := range all {
		if r, ok := m.lru.Peek(l.key); ok && r.hasVector {
			byScope[l.e.scope] = append(byScope[l.e.scope], l)
		}
	}
	for scope, ls := range byScope {
		var g *HNSW
		if m.cfg.Index != "flat" {
			if g, err = NewHNSW(m.cfg.HNSW); err != nil {
				m.mu.Unlock()
				d.close()
				return err
			}
		}
		p, err := newWarmPart(m.cfg.Dim, ls, g)
		if err != nil {
			m.mu.Unlock()
			d.close()
			return err
		}
		m.parts[scope] = p
		m.warming.Add(1)
		m.warmWG.Add(1)
		go func() {
			defer m.warmWG.Done()
			p.build(m.stop)
			m.warming.Add(-1)
		}()
	}
	m.mu.Unlock()
	m.disk = d
	if drop = append(drop, evicted...); len(drop) > 0 {
		if err := d.submit(diskOp{del: drop}).wait(); err != nil {
			close(m.stop) // the sweep has not started; this stops the builders
			m.warmWG.Wait()
			return errors.Join(err, d.close())
		}
	}
	return nil
}

// DiskBytes returns the size of the data directory's store file in bytes,
// or -1 without a data directory. bbolt reuses the pages of deleted entries
// rather than shrinking the file, so it stays near its high-water mark,
// which MaxEntries and MaxBytes bound.
func (m *Memory) DiskBytes() int64 {
	if m.disk == nil {
		return -1
	}
	return m.disk.size()
}

// Warming returns the number of scopes loaded from the data directory whose
// HNSW graph is still being built in the background; their searches are
// exact (Flat) meanwhile.
func (m *Memory) Warming() int { return int(m.warming.Load()) }
