package index_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/index/redistest"
)

// TestRedisIndexLifecycle: Indexes lists the cache's indexes under its
// prefix; DropStaleIndexes drops those of other fingerprints with their
// vector hashes (keeping the current index's hashes even when its
// fingerprint extends a stale one's, the exact entries, and everything of
// another prefix); Flush drops every index and key under the prefix and
// nothing else.
func TestRedisIndexLifecycle(t *testing.T) {
	srv := redistest.StartSearch(t)
	ctx := context.Background()
	raw := rawClient(t, srv)
	put := func(r *index.Redis, key string) {
		t.Helper()
		if err := r.Set(ctx, key, "s", []byte("v"), []float32{1, 0, 0}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	stale := newRedisStore(t, srv, 3, "fp:a")
	old := newRedisStore(t, srv, 3, "fp:old")
	cur := newRedisStore(t, srv, 3, "fp:a:b") // its key prefix extends fp:a's
	other, err := index.NewRedis(ctx, index.RedisConfig{URL: srv.URL(), Prefix: "otherapp:", Dim: 3, Fingerprint: "fp:a", RetryInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	put(stale, "s1")
	put(stale, "s2")
	put(old, "o1")
	put(cur, "c1")
	put(other, "x1")

	ixs, err := cur.Indexes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ix := range ixs {
		names = append(names, ix.Fingerprint)
		if ix.Current != (ix.Fingerprint == "fp:a:b") {
			t.Errorf("%s: Current = %v", ix.Name, ix.Current)
		}
	}
	if !slices.Equal(names, []string{"fp:a", "fp:a:b", "fp:old"}) {
		t.Fatalf("Indexes = %v, want fp:a, fp:a:b, fp:old (not otherapp's)", names)
	}
	if ixs[1].Docs != 1 || ixs[2].Docs != 1 {
		t.Errorf("docs of fp:a:b and fp:old = %d, %d; want 1, 1", ixs[1].Docs, ixs[2].Docs)
	}

	dropped, keys, err := cur.DropStaleIndexes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 2 || dropped[0].Fingerprint != "fp:a" || dropped[1].Fingerprint != "fp:old" || keys != 3 {
		t.Fatalf("DropStaleIndexes = %+v, %d keys; want fp:a and fp:old, 3 vector hashes", dropped, keys)
	}
	if nn, err := cur.Search(ctx, "s", []float32{1, 0, 0}, 4); err != nil || len(nn) != 1 || nn[0].ID != "c1" {
		t.Errorf("the current index after the drop: %+v %v", nn, err)
	}
	for _, k := range []string{"s1", "o1", "c1"} {
		if _, ok, _ := cur.Get(ctx, k); !ok {
			t.Errorf("exact entry %s was deleted with a stale index", k)
		}
	}
	if n := raw.Exists(ctx, "semcache:v:fp:a:s1", "semcache:v:fp:old:o1").Val(); n != 0 {
		t.Errorf("%d stale vector hashes left", n)
	}
	checkOther := func(when string) {
		t.Helper()
		if nn, err := other.Search(ctx, "s", []float32{1, 0, 0}, 4); err != nil || len(nn) != 1 || nn[0].ID != "x1" {
			t.Errorf("%s: another prefix's index: %+v %v", when, nn, err)
		}
	}
	checkOther("after DropStaleIndexes")

	put(stale, "s3") // the stale store re-creates its index
	n, err := cur.Flush(ctx)
	if err != nil || n != 7 {
		t.Fatalf("Flush = %d %v; want 7 keys (s1, s2, o1, c1 and s3 exact, c1 and s3 vectors)", n, err)
	}
	if ixs, _ := cur.Indexes(ctx); len(ixs) != 0 {
		t.Errorf("indexes after Flush: %+v", ixs)
	}
	checkOther("after Flush")
	if keys := raw.Keys(ctx, "semcache:*").Val(); len(keys) != 0 {
		t.Errorf("keys left under the prefix: %v", keys)
	}
}

// TestRedisIndexesWithoutSearchModule: on plain Redis there are no indexes
// and Flush still deletes the prefix's keys.
func TestRedisIndexesWithoutSearchModule(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := newRedisStore(t, srv, 3, "fp:plain")
	if err := r.Set(ctx, "k", "s", []byte("v"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if ixs, err := r.Indexes(ctx); err != nil || len(ixs) != 0 {
		t.Errorf("Indexes on plain Redis = %+v, %v", ixs, err)
	}
	if n, err := r.Flush(ctx); err != nil || n != 1 {
		t.Errorf("Flush on plain Redis = %d, %v; want 1", n, err)
	}
}
