package index

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/semcache/semcache/index/redistest"
)

// taggedStore is what the tag tests need of Memory and Redis.
type taggedStore interface {
	Set(ctx context.Context, key, scope string, value []byte, vec []float32, ttl time.Duration) error
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Search(ctx context.Context, scope string, vec []float32, k int) ([]Neighbor, error)
	Tag(ctx context.Context, key string, tags []string, ttl time.Duration) error
	DeleteTag(ctx context.Context, tag string) (int, error)
	Flush(ctx context.Context) (int, error)
}

var (
	_ taggedStore = (*Memory)(nil)
	_ taggedStore = (*Redis)(nil)
)

// tagBackend is one store under test; search is false for a Redis without
// the search module (the exact tier and the tags work without it).
type tagBackend struct {
	name   string
	new    func(t *testing.T) taggedStore
	search bool
}

// tagBackends returns the in-process store (both indexes) and Redis: with
// the RediSearch module when SEMCACHE_TEST_REDISEARCH_MODULE is set, else a
// plain redis-server (skipped with a line when none is installed).
func tagBackends() []tagBackend {
	bs := []tagBackend{}
	for _, kind := range memKinds {
		bs = append(bs, tagBackend{"memory-" + kind, func(t *testing.T) taggedStore {
			m, _ := newTestMemory(t, kind, 0)
			return m
		}, true})
	}
	withModule := os.Getenv(redistest.ModuleEnv) != ""
	bs = append(bs, tagBackend{"redis", func(t *testing.T) taggedStore {
		srv := startTagRedis(t)
		return newTagRedis(t, srv)
	}, withModule})
	return bs
}

func startTagRedis(t *testing.T) *redistest.Server {
	t.Helper()
	if os.Getenv(redistest.ModuleEnv) != "" {
		return redistest.StartSearch(t)
	}
	return redistest.Start(t)
}

func newTagRedis(t *testing.T, srv *redistest.Server) *Redis {
	t.Helper()
	r, err := NewRedis(context.Background(), RedisConfig{URL: srv.URL(), Dim: 3, Fingerprint: "test:tags:3", RetryInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func tsSet(t *testing.T, s taggedStore, key string, vec []float32, tags ...string) {
	t.Helper()
	ctx := context.Background()
	if err := s.Set(ctx, key, "scope", []byte("value of "+key), vec, memTTL); err != nil {
		t.Fatalf("Set(%s): %v", key, err)
	}
	if len(tags) > 0 {
		if err := s.Tag(ctx, key, tags, memTTL); err != nil {
			t.Fatalf("Tag(%s): %v", key, err)
		}
	}
}

func tsHas(t *testing.T, s taggedStore, key string) bool {
	t.Helper()
	_, ok, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	return ok
}

func tsSearch(t *testing.T, s taggedStore, vec []float32) []string {
	t.Helper()
	nn, err := s.Search(context.Background(), "scope", vec, 10)
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	got := ids(nn)
	slices.Sort(got)
	return got
}

func tsDeleteTag(t *testing.T, s taggedStore, tag string) int {
	t.Helper()
	n, err := s.DeleteTag(context.Background(), tag)
	if err != nil {
		t.Fatalf("DeleteTag(%s): %v", tag, err)
	}
	return n
}

// TestDeleteTag tags entries of both kinds (with a vector, exact-only):
// DeleteTag deletes exactly the entries carrying the tag, from both tiers,
// and counts only entries that still existed.
func TestDeleteTag(t *testing.T) {
	for _, b := range tagBackends() {
		t.Run(b.name, func(t *testing.T) {
			s := b.new(t)
			tsSet(t, s, "a", memX, "doc:1", "doc:2")
			tsSet(t, s, "b", nil, "doc:1") // exact-only
			tsSet(t, s, "c", memXY, "doc:2")
			tsSet(t, s, "d", memY) // untagged
			if b.search {
				if got := tsSearch(t, s, memX); !slices.Equal(got, []string{"a", "c", "d"}) {
					t.Fatalf("Search before = %v, want [a c d]", got)
				}
			}

			if n := tsDeleteTag(t, s, "doc:1"); n != 2 {
				t.Errorf("DeleteTag(doc:1) = %d, want 2 (a, b)", n)
			}
			for key, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true} {
				if got := tsHas(t, s, key); got != want {
					t.Errorf("after DeleteTag(doc:1): Get(%s) found %v, want %v", key, got, want)
				}
			}
			if b.search {
				if got := tsSearch(t, s, memX); !slices.Equal(got, []string{"c", "d"}) {
					t.Errorf("Search after = %v, want [c d]: a deleted entry left its vector", got)
				}
			}
			if n := tsDeleteTag(t, s, "doc:1"); n != 0 {
				t.Errorf("second DeleteTag(doc:1) = %d, want 0", n)
			}
			// doc:2 still names a, which is gone: only c is counted.
			if n := tsDeleteTag(t, s, "doc:2"); n != 1 {
				t.Errorf("DeleteTag(doc:2) = %d, want 1 (c)", n)
			}
			if n := tsDeleteTag(t, s, "never used"); n != 0 {
				t.Errorf("DeleteTag of an unknown tag = %d, want 0", n)
			}
			if !tsHas(t, s, "d") {
				t.Error("the untagged entry was deleted")
			}
		})
	}
}

// TestTagRejectsBadTTL: a tag needs a lifetime, as an entry does.
func TestTagRejectsBadTTL(t *testing.T) {
	for _, b := range tagBackends() {
		t.Run(b.name, func(t *testing.T) {
			s := b.new(t)
			tsSet(t, s, "a", memX)
			if err := s.Tag(context.Background(), "a", []string{"x"}, 0); err == nil {
				t.Error("ttl 0 accepted")
			}
		})
	}
}

// TestTagMissingKey: tagging a key that is not stored is not an error, and
// creates nothing DeleteTag would count.
func TestTagMissingKey(t *testing.T) {
	for _, b := range tagBackends() {
		t.Run(b.name, func(t *testing.T) {
			s := b.new(t)
			if err := s.Tag(context.Background(), "nope", []string{"x"}, memTTL); err != nil {
				t.Fatalf("Tag of a missing key: %v", err)
			}
			if n := tsDeleteTag(t, s, "x"); n != 0 {
				t.Errorf("DeleteTag = %d, want 0", n)
			}
		})
	}
}

// checkTagsConsistent checks Memory's tag invariant: key k is in tags[t]
// exactly when the LRU's record for k lists t, and no set is empty.
func checkTagsConsistent(t *testing.T, m *Memory) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]map[string]struct{}{}
	for _, k := range m.lru.Keys() {
		r, _ := m.lru.Peek(k)
		for _, tag := range r.tags {
			if want[tag] == nil {
				want[tag] = map[string]struct{}{}
			}
			want[tag][k] = struct{}{}
		}
	}
	if fmt.Sprint(want) != fmt.Sprint(m.tags) {
		t.Errorf("tag map %v, want %v (from the records)", m.tags, want)
	}
}

// TestMemoryTagsLeaveWithTheirEntries: every way an entry leaves (lazy
// expiry on Get, Sweep, eviction, Delete, replacement) drops its tags, so the
// tag map empties.
func TestMemoryTagsLeaveWithTheirEntries(t *testing.T) {
	ctx := context.Background()
	for _, kind := range memKinds {
		t.Run(kind, func(t *testing.T) {
			m, clock := newTestMemory(t, kind, 3)

			tsSet(t, m, "expired-get", memX, "t1", "shared")
			tsSet(t, m, "expired-sweep", nil, "t2", "shared")
			clock.Advance(memTTL)
			if tsHas(t, m, "expired-get") {
				t.Fatal("expired entry served")
			}
			if n := m.Sweep(); n != 1 {
				t.Errorf("Sweep = %d, want 1", n)
			}
			checkTagsConsistent(t, m)
			if n := m.TagLen(); n != 0 {
				t.Errorf("after expiry: %d tags left", n)
			}

			// MaxEntries 3: the fourth Set evicts the least recently used.
			tsSet(t, m, "e1", memX, "evict")
			tsSet(t, m, "e2", memY, "keep")
			tsSet(t, m, "e3", memZ, "keep")
			tsSet(t, m, "e4", memXY, "keep")
			if tsHas(t, m, "e1") {
				t.Fatal("e1 not evicted")
			}
			checkTagsConsistent(t, m)
			if n := m.TagLen(); n != 1 {
				t.Errorf("after eviction: %d tags, want 1 (keep)", n)
			}

			// A replaced entry does not keep the old answer's tags.
			tsSet(t, m, "e2", memY)
			if n := tsDeleteTag(t, m, "keep"); n != 2 {
				t.Errorf("DeleteTag(keep) = %d, want 2 (e3, e4; e2 was replaced)", n)
			}
			if !tsHas(t, m, "e2") {
				t.Error("the replacement of a tagged entry was deleted with the old tag")
			}
			tsSet(t, m, "e5", memX, "gone")
			if _, err := m.Delete(ctx, "e5"); err != nil {
				t.Fatal(err)
			}
			checkTagsConsistent(t, m)
			if n := m.TagLen(); n != 0 {
				t.Errorf("at the end: %d tags left, want 0", n)
			}
			wantSizes(t, m, 1, 1)
		})
	}
}

// TestMemoryFlush deletes every entry, vector and tag; the store stays
// usable.
func TestMemoryFlush(t *testing.T) {
	ctx := context.Background()
	for _, kind := range memKinds {
		t.Run(kind, func(t *testing.T) {
			m, _ := newTestMemory(t, kind, 0)
			tsSet(t, m, "a", memX, "doc")
			tsSet(t, m, "b", nil, "doc")
			memSet(t, m, "c", "other", memY)
			n, err := m.Flush(ctx)
			if err != nil || n != 3 {
				t.Fatalf("Flush = %d %v, want 3", n, err)
			}
			wantSizes(t, m, 0, 0)
			if n := m.TagLen(); n != 0 {
				t.Errorf("%d tags survived Flush", n)
			}
			if got := tsSearch(t, m, memX); len(got) != 0 {
				t.Errorf("Search after Flush = %v", got)
			}
			tsSet(t, m, "a", memX, "doc")
			if got := tsSearch(t, m, memX); !slices.Equal(got, []string{"a"}) {
				t.Errorf("Search after a new Set = %v, want [a]", got)
			}
			if n := tsDeleteTag(t, m, "doc"); n != 1 {
				t.Errorf("DeleteTag after Flush = %d, want 1", n)
			}
		})
	}
}

// TestMemoryTagsConcurrent races Set, Tag, Delete, DeleteTag and expiry on
// a few keys; the tag invariant holds at the end and, once every entry is
// gone, no tag is left.
func TestMemoryTagsConcurrent(t *testing.T) {
	ctx := context.Background()
	m, clock := newTestMemory(t, "flat", 8)
	vecs := [][]float32{memX, memY, memZ, memXY, nil}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				key := fmt.Sprintf("k%d", (i*7+w)%12)
				tag := fmt.Sprintf("t%d", (i+w)%3)
				switch i % 5 {
				case 0, 1:
					_ = m.Set(ctx, key, fmt.Sprintf("s%d", i%2), []byte("v"), vecs[i%len(vecs)], memTTL)
				case 2:
					_ = m.Tag(ctx, key, []string{tag, "all"}, memTTL)
				case 3:
					_, _ = m.Delete(ctx, key)
				case 4:
					_, _ = m.DeleteTag(ctx, tag)
				}
				if i%100 == 99 && w == 0 {
					clock.Advance(memTTL / 4)
					m.Sweep()
				}
			}
		}()
	}
	wg.Wait()
	checkTagsConsistent(t, m)
	checkMemoryConsistent(t, m)
	clock.Advance(memTTL)
	m.Sweep()
	if n := m.TagLen(); n != 0 {
		t.Errorf("%d tags left after every entry expired", n)
	}
	wantSizes(t, m, 0, 0)
}

// TestRedisTagSets checks the Redis layout: one SET per tag under the
// prefix, whose expiry is only ever raised, deleted with the entries by
// DeleteTag and by Flush; keys of other prefixes are untouched.
func TestRedisTagSets(t *testing.T) {
	srv := startTagRedis(t)
	ctx := context.Background()
	r := newTagRedis(t, srv)
	raw := rawRedis(t, srv)

	tsSet(t, r, "a", memX)
	if err := r.Tag(ctx, "a", []string{"doc:1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if m := raw.SMembers(ctx, "semcache:t:doc:1").Val(); !slices.Equal(m, []string{"a"}) {
		t.Errorf("SMEMBERS semcache:t:doc:1 = %v, want [a]", m)
	}
	pttl := func() time.Duration { return raw.PTTL(ctx, "semcache:t:doc:1").Val() }
	if d := pttl(); d <= 59*time.Minute || d > time.Hour {
		t.Errorf("tag set PTTL %v, want about 1h", d)
	}
	if err := r.Tag(ctx, "b", []string{"doc:1"}, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if d := pttl(); d <= 119*time.Minute {
		t.Errorf("tag set PTTL %v after a 2h member, want about 2h", d)
	}
	if err := r.Tag(ctx, "c", []string{"doc:1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := pttl(); d <= 119*time.Minute {
		t.Errorf("tag set PTTL %v: a shorter member lowered it", d)
	}

	// A large set is walked in several batches.
	for i := range 2*tagBatch + 7 {
		key := fmt.Sprintf("bulk%d", i)
		if err := r.Set(ctx, key, "scope", []byte("v"), nil, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := r.Tag(ctx, key, []string{"bulk"}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n := tsDeleteTag(t, r, "bulk"); n != 2*tagBatch+7 {
		t.Errorf("DeleteTag(bulk) = %d, want %d", n, 2*tagBatch+7)
	}
	if n := raw.Exists(ctx, "semcache:t:bulk", "semcache:e:bulk0").Val(); n != 0 {
		t.Errorf("%d keys left by DeleteTag(bulk)", n)
	}

	if err := raw.Set(ctx, "other:t:doc:1", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := raw.Exists(ctx, "semcache:t:doc:1").Val(); n != 0 {
		t.Error("a tag set survived Flush")
	}
	if n := raw.Exists(ctx, "other:t:doc:1").Val(); n != 1 {
		t.Error("Flush deleted a key of another prefix")
	}
}

// TestRedisTagSetsStayBounded stores far more tagged entries than fit
// under maxmemory with allkeys-lru: Redis evicts entries, and the tag set
// is trimmed as it is written, so it never names many more keys than
// there are live entries (the bound documented at tagTrimSample).
func TestRedisTagSetsStayBounded(t *testing.T) {
	srv := startTagRedis(t)
	ctx := context.Background()
	r := newTagRedis(t, srv)
	raw := rawRedis(t, srv)
	if err := raw.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.ConfigSet(ctx, "maxmemory", "4mb").Err(); err != nil {
		t.Fatal(err)
	}
	val := []byte(strings.Repeat("v", 2000))
	for i := range 6000 {
		key := fmt.Sprintf("k%05d", i)
		if err := r.Set(ctx, key, "scope", val, nil, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := r.Tag(ctx, key, []string{"ns"}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	evicted, _ := strconv.Atoi(infoField(raw.Info(ctx, "stats").Val(), "evicted_keys"))
	members := raw.SMembers(ctx, "semcache:t:ns").Val()
	live := 0
	for _, m := range members {
		if raw.Exists(ctx, "semcache:e:"+m).Val() == 1 {
			live++
		}
	}
	t.Logf("%d evicted keys; the tag set holds %d members, %d of them live", evicted, len(members), live)
	if evicted < 1000 {
		t.Fatalf("only %d keys evicted: the test did not run under memory pressure", evicted)
	}
	// The set is a key too: allkeys-lru may evict it (LRU clocks have a
	// 1 s resolution, so it ties with the entries written in the same
	// second), after which it restarts from the next Tag. The bound must
	// hold either way.
	if float64(len(members)) > 1.5*float64(live)+tagTrimSample {
		t.Errorf("tag set of %d members for %d live entries, want at most 1.5x", len(members), live)
	}
}

// infoField returns the value of name in an INFO reply.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// rawRedis returns a plain client of srv, closed at the end of the test,
// to look at the keys the store wrote.
func rawRedis(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(opts)
	t.Cleanup(func() { raw.Close() })
	return raw
}
