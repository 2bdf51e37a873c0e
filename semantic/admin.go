package semantic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/semcache/semcache/index"
)

// ErrUnsupported is returned (wrapped) by the invalidation methods when the
// cache's Store does not implement the optional interface they need
// (Tagger or Flusher).
var ErrUnsupported = errors.New("semantic: the store does not support this operation")

// Tagger is implemented by stores that can invalidate entries by tag. Tags
// are opaque strings; a store keeps them no longer than it needs to find the
// entries carrying them.
type Tagger interface {
	// Tag records that the entry under key carries tags. ttl (> 0) is at
	// least the entry's remaining lifetime, so the store may keep the tags
	// that long. Tagging a missing key is not an error.
	Tag(ctx context.Context, key string, tags []string, ttl time.Duration) error
	// DeleteTag deletes every entry carrying tag from both tiers and
	// returns how many it deleted.
	DeleteTag(ctx context.Context, tag string) (int, error)
}

// Flusher is implemented by stores that can delete all of this cache's data
// (and nothing else: never another cache's keys or a whole database).
type Flusher interface {
	// Flush deletes every entry and returns how many entries (Memory) or
	// keys (Redis) it deleted.
	Flush(ctx context.Context) (int, error)
}

var (
	_ Tagger  = (*index.Memory)(nil)
	_ Tagger  = (*index.Redis)(nil)
	_ Flusher = (*index.Memory)(nil)
	_ Flusher = (*index.Redis)(nil)
)

// NamespaceTag returns the internal tag every entry stored for tenant and
// namespace carries (the namespace "" is a tenant's default one), so that
// deleting a namespace is DeleteTag(NamespaceTag(tenant, namespace)). It
// contains NUL bytes, which the X-Semcache-Tags header cannot carry, so a
// client's tags never collide with it.
func NamespaceTag(tenant, namespace string) string {
	return "ns\x00" + tenant + "\x00" + namespace
}

// TTL returns the configured entry lifetime (Config.TTL after defaults).
func (c *Cache) TTL() time.Duration { return c.cfg.TTL }

// WithEntryTags returns ctx carrying the full list of tags (the request's
// and its namespace tag) that the caller gives the entry a request stores
// (with TagEntry, after DoWith or StoreAnswer return). The cache needs them
// when it stores that request's answer again later, off the request path:
// an adaptive-policy verification that finds the cached neighbour wrong
// re-stores the fresh answer with its vector, which replaces the entry and
// drops its tags, so the cache tags it again with these. The store's Set
// sees them too (index.WithTags): the memory backend stores the entry with
// its tags at once, in the same durable write, so that no crash leaves it
// out of reach of an invalidation. tags must not be modified afterwards.
func WithEntryTags(ctx context.Context, tags []string) context.Context {
	return index.WithTags(ctx, tags)
}

// entryTags returns the tags of WithEntryTags, or nil.
func entryTags(ctx context.Context) []string { return index.TagsFrom(ctx) }

// TagEntry records that the entry under key (Result.Key of a stored miss)
// carries tags, for DeleteTag. ttl (> 0) must be at least the entry's
// lifetime. It returns an error wrapping ErrUnsupported when the store is
// not a Tagger.
func (c *Cache) TagEntry(ctx context.Context, key string, tags []string, ttl time.Duration) error {
	t, ok := c.store.(Tagger)
	if !ok {
		return fmt.Errorf("tag entry: %w", ErrUnsupported)
	}
	if err := t.Tag(ctx, key, tags, ttl); err != nil {
		return fmt.Errorf("tag entry: %w", err)
	}
	return nil
}

// DeleteTag deletes every entry carrying tag, from both tiers, and returns
// how many it deleted. It returns an error wrapping ErrUnsupported when the
// store is not a Tagger.
func (c *Cache) DeleteTag(ctx context.Context, tag string) (int, error) {
	t, ok := c.store.(Tagger)
	if !ok {
		return 0, fmt.Errorf("delete tag: %w", ErrUnsupported)
	}
	n, err := t.DeleteTag(ctx, tag)
	if err != nil {
		return n, fmt.Errorf("delete tag: %w", err)
	}
	return n, nil
}

// DeleteNamespace deletes every entry stored for tenant and namespace: the
// entries tagged with NamespaceTag(tenant, namespace).
func (c *Cache) DeleteNamespace(ctx context.Context, tenant, namespace string) (int, error) {
	return c.DeleteTag(ctx, NamespaceTag(tenant, namespace))
}

// Flush deletes all of this cache's entries (see Flusher) and returns the
// store's count. It returns an error wrapping ErrUnsupported when the store
// is not a Flusher. The counters in Stats are kept. Under RuleBudget the
// verdicts learned are forgotten too (in Redis the shared counts go with
// every other key under the prefix), so the cache learns anew.
func (c *Cache) Flush(ctx context.Context) (int, error) {
	f, ok := c.store.(Flusher)
	if !ok {
		return 0, fmt.Errorf("flush: %w", ErrUnsupported)
	}
	n, err := f.Flush(ctx)
	if a := c.adaptive; a != nil && a.budget != nil {
		a.budget.load(nil)
	}
	if err != nil {
		return n, fmt.Errorf("flush: %w", err)
	}
	return n, nil
}

// IndexManager is implemented by stores that keep several vector indexes
// under one prefix (index.Redis: one per embedder fingerprint).
type IndexManager interface {
	Indexes(ctx context.Context) ([]index.IndexInfo, error)
	DropStaleIndexes(ctx context.Context) ([]index.IndexInfo, int, error)
}

// Indexes lists the store's vector indexes (see index.Redis.Indexes). It
// returns an error wrapping ErrUnsupported when the store is not an
// IndexManager (the memory backend has one index per scope, in process).
func (c *Cache) Indexes(ctx context.Context) ([]index.IndexInfo, error) {
	m, ok := c.store.(IndexManager)
	if !ok {
		return nil, fmt.Errorf("indexes: %w", ErrUnsupported)
	}
	out, err := m.Indexes(ctx)
	if err != nil {
		return nil, fmt.Errorf("indexes: %w", err)
	}
	return out, nil
}

// DropStaleIndexes drops the store's indexes of other embedder
// fingerprints with their vector hashes (see
// index.Redis.DropStaleIndexes) and returns them and the keys deleted. It
// returns an error wrapping ErrUnsupported when the store is not an
// IndexManager.
func (c *Cache) DropStaleIndexes(ctx context.Context) ([]index.IndexInfo, int, error) {
	m, ok := c.store.(IndexManager)
	if !ok {
		return nil, 0, fmt.Errorf("drop stale indexes: %w", ErrUnsupported)
	}
	out, n, err := m.DropStaleIndexes(ctx)
	if err != nil {
		return out, n, fmt.Errorf("drop stale indexes: %w", err)
	}
	return out, n, nil
}

var _ Leaser = (*index.Redis)(nil)
