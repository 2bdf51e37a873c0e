package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tags let a caller invalidate a group of entries at once: Tag records that
// an entry carries some tags (a source document, a namespace), DeleteTag
// deletes every entry carrying one, from both tiers. Flush deletes
// everything this store holds.

// Tag records that the entry under key carries tags. Tags leave with the
// entry: they are dropped when it expires, is evicted, deleted or replaced
// by a Set (a new answer does not inherit the old one's tags). A missing or
// expired key is not an error; nothing is recorded. ttl (> 0) is accepted
// for symmetry with Redis and ignored: tags live exactly as long as their
// entry.
//
// With a data directory the new tags are durable when Tag returns (tags the
// entry already has, e.g. from WithTags, cost no write).
func (m *Memory) Tag(_ context.Context, key string, tags []string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("index: ttl %v: must be > 0", ttl)
	}
	m.wmu.Lock() // orders the rewrite after the Set that stored r
	m.mu.Lock()
	r, ok := m.lru.Peek(key)
	if !ok || !m.cfg.Now().Before(r.expiresAt) {
		m.mu.Unlock()
		m.wmu.Unlock()
		return nil
	}
	added := false
	for _, t := range tags {
		if slices.Contains(r.tags, t) {
			continue
		}
		r.tags = append(r.tags, t)
		m.linkLocked(key, t)
		added = true
	}
	var b *diskBatch
	if added && m.disk != nil {
		b = m.disk.submit(diskOp{key: key, entry: encodeEntry(r.disk()), retag: true})
	}
	m.mu.Unlock()
	m.wmu.Unlock()
	if b != nil {
		return b.wait()
	}
	return nil
}

// DeleteTag deletes every entry carrying tag from both tiers and returns
// how many it deleted (expired entries not swept yet included). An entry
// that a concurrent Set replaces meanwhile is left alone: the new answer
// does not carry the tag.
func (m *Memory) DeleteTag(_ context.Context, tag string) (int, error) {
	type kr struct {
		k string
		r *memRecord
	}
	m.mu.Lock()
	victims := make([]kr, 0, len(m.tags[tag]))
	for k := range m.tags[tag] {
		if r, ok := m.lru.Peek(k); ok {
			victims = append(victims, kr{k, r})
		}
	}
	m.mu.Unlock()
	n := 0
	var last *diskBatch
	for _, v := range victims {
		ok, b := m.removeIfBatch(v.k, v.r) // drops the key from every tag set
		if ok {
			n++
		}
		if b != nil {
			last = b
		}
	}
	if last != nil {
		// Batches commit in order: the last one's commit is everyone's.
		return n, last.wait()
	}
	return n, nil
}

// Flush deletes every entry, vector and tag, and returns the number of
// entries deleted (expired entries not swept yet included). The store stays
// usable.
func (m *Memory) Flush(context.Context) (int, error) {
	n, b := m.flush()
	if b != nil {
		return n, b.wait()
	}
	return n, nil
}

// flush is Flush up to the durable write: it returns the batch that empties
// the data directory (nil without one).
func (m *Memory) flush() (int, *diskBatch) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	var b *diskBatch
	if m.disk != nil {
		b = m.disk.submit(diskOp{flush: true})
	}
	n := m.lru.Len()
	m.lru.Purge() // reports each entry as an eviction, which untags it
	m.evicted, m.evictedRecs = nil, nil
	// Dropping the graphs is enough: Set and removeIf hold wmu, and a
	// Search still walking an old graph finds no live entry in the LRU.
	m.parts = make(map[string]vectorIndex)
	m.tags = make(map[string]map[string]struct{})
	return n, b
}

// TagLen returns the number of distinct tags in use; the tests use it to
// check that expiry, eviction and deletion leave no tag behind.
func (m *Memory) TagLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tags)
}

// linkLocked adds key to tag's set. The caller holds mu.
func (m *Memory) linkLocked(key, tag string) {
	set := m.tags[tag]
	if set == nil {
		set = make(map[string]struct{})
		m.tags[tag] = set
	}
	set[key] = struct{}{}
}

// linkTagsLocked adds key to the set of each of r's tags. The caller holds
// mu.
func (m *Memory) linkTagsLocked(key string, r *memRecord) {
	for _, t := range r.tags {
		m.linkLocked(key, t)
	}
}

// untagLocked removes key from the set of each of r's tags, deleting sets
// that become empty. r keeps its tags (a failed Set puts the record back).
// The caller holds mu.
func (m *Memory) untagLocked(key string, r *memRecord) {
	for _, t := range r.tags {
		set := m.tags[t]
		delete(set, key)
		if len(set) == 0 {
			delete(m.tags, t)
		}
	}
}

// In Redis, a tag is a SET of entry keys under Prefix + "t:" + tag, so Flush
// (which deletes everything under Prefix) deletes the tags too. A set's
// expiry is only ever extended, to the TTL of its longest-lived member, so
// the set outlives every entry it names. Members whose entry expired, was
// evicted (allkeys-lru) or replaced are trimmed as the set is written: each
// Tag samples tagTrimSample members and removes those whose entry is gone.
// Each write adds one member and removes about tagTrimSample times the dead
// share, so the dead share settles near 1/tagTrimSample and a set holds
// about 1.15 times its live members (TestRedisTagSetsStayBounded allows
// 1.5). A stale member meanwhile is harmless: DeleteTag deleting a key that
// is gone is a no-op.

func (r *Redis) tagKey(tag string) string { return r.cfg.Prefix + "t:" + tag }

// tagTrimSample is how many members Tag checks per set and write.
const tagTrimSample = 8

// tagScript adds ARGV[1] (an entry key) to every set in KEYS, removes
// sampled members (ARGV[4] of them) whose entry, ARGV[3] .. member, no
// longer exists, and raises each set's expiry to ARGV[2] milliseconds when
// it is lower or unset. A script rather than PEXPIRE NX/GT so that Redis
// 6.2 (Redis Stack 6.2) works too. It reads entry keys not listed in KEYS,
// which standalone Redis allows (the Redis backend does not support
// Cluster).
var tagScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  redis.call('SADD', k, ARGV[1])
  for _, m in ipairs(redis.call('SRANDMEMBER', k, tonumber(ARGV[4]))) do
    if m ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. m) == 0 then
      redis.call('SREM', k, m)
    end
  end
  if redis.call('PTTL', k) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', k, ARGV[2])
  end
end
return #KEYS
`)

// clusterTagScript is tagScript for one set on a Redis Cluster, where a
// script may touch only keys of its own hash slot: it adds ARGV[1] to
// KEYS[1] and raises its expiry to ARGV[2] ms, without trimming dead
// members (their entries live in other slots). A set there holds every
// member tagged within its lifetime, at most the longest entry TTL.
var clusterTagScript = redis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
`)

// Tag records that the entry under key carries tags: SADD of key to each
// tag's set, whose expiry is raised to at least ttl (> 0; pass the entry's
// TTL or more), atomically. Tagging a key that does not exist is not an
// error.
func (r *Redis) Tag(ctx context.Context, key string, tags []string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("index: ttl %v: must be > 0", ttl)
	}
	if len(tags) == 0 {
		return nil
	}
	keys := make([]string, len(tags))
	for i, t := range tags {
		keys[i] = r.tagKey(t)
	}
	ms := max(ttl.Milliseconds(), 1)
	if r.cluster {
		_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				clusterTagScript.Eval(ctx, p, []string{k}, key, strconv.FormatInt(ms, 10)) // EVAL: a pipeline cannot fall back from EVALSHA
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("redis tag script: %w", err)
		}
		return nil
	}
	if err := tagScript.Run(ctx, r.rdb, keys, key, strconv.FormatInt(ms, 10), r.cfg.Prefix+"e:", tagTrimSample).Err(); err != nil {
		return fmt.Errorf("redis tag script: %w", err)
	}
	return nil
}

// tagBatch is how many members of a tag set DeleteTag handles per round
// trip.
const tagBatch = 500

// DeleteTag deletes every entry carrying tag, from both tiers, and returns
// how many existed. It walks the tag's set with SSCAN; per batch, one
// MULTI/EXEC deletes the entries' keys (with their verification state, see
// AddObservation) and removes those members from the set (on a Cluster a
// plain pipeline, whose keys span hash slots), so a failure
// part-way leaves the rest of the set for a retry. An entry tagged while
// DeleteTag runs may survive it.
func (r *Redis) DeleteTag(ctx context.Context, tag string) (int, error) {
	tk := r.tagKey(tag)
	deleted := 0
	var cursor uint64
	for {
		members, next, err := r.rdb.SScan(ctx, tk, cursor, "", tagBatch).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return deleted, fmt.Errorf("redis SSCAN: %w", err)
		}
		if len(members) > 0 {
			dels := make([]*redis.IntCmd, len(members))
			pipelined := r.rdb.TxPipelined
			if r.cluster {
				pipelined = r.rdb.Pipelined // a batch's keys span hash slots; each DEL stays in one
			}
			_, err := pipelined(ctx, func(p redis.Pipeliner) error {
				for i, k := range members {
					dels[i] = p.Del(ctx, r.exactKey(k), r.vectorKey(k))
					p.Del(ctx, r.obsKey(k), r.fitKey(k))
				}
				p.SRem(ctx, tk, toAny(members)...)
				return nil
			})
			if err != nil {
				return deleted, fmt.Errorf("redis MULTI DEL/SREM: %w", err)
			}
			for _, d := range dels {
				if d.Val() > 0 {
					deleted++
				}
			}
		}
		if cursor = next; cursor == 0 {
			return deleted, nil
		}
	}
}

func toAny(s []string) []any {
	a := make([]any, len(s))
	for i, v := range s {
		a[i] = v
	}
	return a
}
