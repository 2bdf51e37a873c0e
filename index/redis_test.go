package index_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/index/redistest"
)

func newRedisStore(t *testing.T, srv *redistest.Server, dim int, fingerprint string) *index.Redis {
	t.Helper()
	// RetryInterval -1: no circuit breaker, so a restarted server is used
	// at once (TestRedisBreaker covers the breaker).
	r, err := index.NewRedis(context.Background(), index.RedisConfig{URL: srv.URL(), Dim: dim, Fingerprint: fingerprint, RetryInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNewRedisRejectsBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  index.RedisConfig
	}{
		{"no dim", index.RedisConfig{URL: "redis://127.0.0.1:1/0", Fingerprint: "f"}},
		{"no fingerprint", index.RedisConfig{URL: "redis://127.0.0.1:1/0", Dim: 3}},
		{"bad url", index.RedisConfig{URL: "http://x", Dim: 3, Fingerprint: "f"}},
		{"bad M", index.RedisConfig{URL: "redis://127.0.0.1:1/0", Dim: 3, Fingerprint: "f", M: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := index.NewRedis(context.Background(), tc.cfg); err == nil {
				t.Error("no error")
			}
		})
	}
}

// TestRedisExactTier needs only a plain redis-server: the exact tier is
// string keys with a TTL.
func TestRedisExactTier(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := newRedisStore(t, srv, 3, "test:exact:3")
	raw := rawClient(t, srv)

	if _, ok, err := r.Get(ctx, "k1"); ok || err != nil {
		t.Fatalf("empty store: ok %v err %v", ok, err)
	}
	if err := r.Set(ctx, "k1", "scopeA", []byte("v1"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	got, ok, err := r.Get(ctx, "k1")
	if err != nil || !ok || string(got) != "v1" {
		t.Fatalf("Get = %q %v %v", got, ok, err)
	}
	// The TTL is set with the write (SET ... PX), read back from the server.
	if ttl := raw.PTTL(ctx, "semcache:e:k1").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("PTTL %v, want in (0, 1h]", ttl)
	}
	if err := r.Set(ctx, "k1", "scopeA", []byte("v1"), nil, 0); err == nil {
		t.Error("ttl 0 accepted")
	}
	// A wrong-dimension vector writes nothing, not even the exact entry.
	if err := r.Set(ctx, "k2", "scopeA", []byte("v2"), []float32{1, 0}, time.Hour); !errors.Is(err, index.ErrDimensionMismatch) {
		t.Errorf("err = %v, want ErrDimensionMismatch", err)
	}
	if err := r.Set(ctx, "k2", "scopeA", []byte("v2"), []float32{0, 0, 0}, time.Hour); !errors.Is(err, index.ErrInvalidVector) {
		t.Errorf("err = %v, want ErrInvalidVector", err)
	}
	if n := raw.Exists(ctx, "semcache:e:k2").Val(); n != 0 {
		t.Error("a rejected Set left an exact entry")
	}
	existed, err := r.Delete(ctx, "k1")
	if err != nil || !existed {
		t.Errorf("Delete = %v %v", existed, err)
	}
	if _, ok, _ := r.Get(ctx, "k1"); ok {
		t.Error("deleted entry still served")
	}
	if existed, _ := r.Delete(ctx, "k1"); existed {
		t.Error("second Delete reported an entry")
	}
	// Without the search module the index cannot be created: Search says
	// so (and the cache fails open), it never pretends to find nothing.
	if srv.Module == "" {
		if _, err := r.Search(ctx, "scopeA", []float32{1, 0, 0}, 4); !errors.Is(err, index.ErrIndexNotReady) {
			t.Errorf("Search without the module: err = %v, want ErrIndexNotReady", err)
		}
	}
}

// TestRedisFailsFastWhenDown kills the server: operations return errors
// (never a hang past the timeouts, never a false hit) and work again after
// a restart.
func TestRedisFailsFastWhenDown(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := newRedisStore(t, srv, 3, "test:down:3")
	if err := r.Set(ctx, "k", "s", []byte("v"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, ok, err := r.Get(ctx, "k"); err == nil || ok {
		t.Errorf("Get with Redis down: ok %v err %v, want an error", ok, err)
	}
	if err := r.Set(ctx, "k2", "s", []byte("v"), nil, time.Hour); err == nil {
		t.Error("Set with Redis down: no error")
	}
	srv.Restart() // empty: nothing was persisted
	if _, ok, err := r.Get(ctx, "k"); err != nil || ok {
		t.Errorf("after restart: ok %v err %v, want a clean miss", ok, err)
	}
	if err := r.Set(ctx, "k", "s", []byte("v2"), nil, time.Hour); err != nil {
		t.Errorf("Set after restart: %v", err)
	}
}

// TestStartWithRedisDown: the store can be created while Redis is down.
func TestStartWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	r, err := index.NewRedis(context.Background(), index.RedisConfig{URL: srv.URL(), Dim: 3, Fingerprint: "test:late:3", RetryInterval: -1})
	if err != nil {
		t.Fatalf("NewRedis with Redis down: %v", err)
	}
	defer r.Close()
	if r.Ready() {
		t.Error("ready while Redis is down")
	}
	srv.Restart()
	if err := r.Set(context.Background(), "k", "s", []byte("v"), nil, time.Hour); err != nil {
		t.Errorf("Set after Redis came up: %v", err)
	}
}

func TestRedisSemanticTier(t *testing.T) {
	srv := redistest.StartSearch(t)
	ctx := context.Background()
	r := newRedisStore(t, srv, 3, "test:sem:3")
	if !r.Ready() {
		t.Fatal("index not ready with the module loaded")
	}
	put := func(key, scope string, vec []float32) {
		t.Helper()
		if err := r.Set(ctx, key, scope, []byte("value of "+key), vec, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	put("a1", "A", []float32{1, 0, 0})
	put("a2", "A", []float32{0.8, 0.6, 0})
	put("b1", "B", []float32{1, 0, 0})
	nn, err := r.Search(ctx, "A", []float32{1, 0, 0}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(nn) != 2 || nn[0].ID != "a1" || nn[1].ID != "a2" {
		t.Fatalf("Search(A) = %+v, want a1 then a2 only", nn)
	}
	if s := nn[0].Similarity; s < 0.9999 || s > 1 {
		t.Errorf("similarity of an identical vector %v, want 1", s)
	}
	if s := nn[1].Similarity; s < 0.7999 || s > 0.8001 {
		t.Errorf("similarity %v, want 0.8 (cosine of the two vectors)", s)
	}
	// Replacing a1 without a vector removes it from the index.
	if err := r.Set(ctx, "a1", "A", []byte("v"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if nn, _ := r.Search(ctx, "A", []float32{1, 0, 0}, 4); len(nn) != 1 || nn[0].ID != "a2" {
		t.Errorf("after replacing a1 without a vector: %+v", nn)
	}
	if existed, _ := r.Delete(ctx, "a2"); !existed {
		t.Error("Delete a2")
	}
	if nn, _ := r.Search(ctx, "A", []float32{1, 0, 0}, 4); len(nn) != 0 {
		t.Errorf("after Delete: %+v", nn)
	}
	if n, err := r.Len(ctx); err != nil || n != 1 {
		t.Errorf("Len = %d %v, want 1 (b1)", n, err)
	}
}

// TestRedisIndexSchemaMismatch: an existing index with another dimension is
// never dropped; start-up refuses with ErrIndexSchema.
func TestRedisIndexSchemaMismatch(t *testing.T) {
	srv := redistest.StartSearch(t)
	ctx := context.Background()
	first := newRedisStore(t, srv, 3, "test:schema")
	if err := first.Set(ctx, "k", "s", []byte("v"), []float32{1, 0, 0}, time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err := index.NewRedis(ctx, index.RedisConfig{URL: srv.URL(), Dim: 4, Fingerprint: "test:schema"})
	if !errors.Is(err, index.ErrIndexSchema) {
		t.Fatalf("err = %v, want ErrIndexSchema", err)
	}
	// The same schema is reused, and its data is still there.
	again := newRedisStore(t, srv, 3, "test:schema")
	if nn, err := again.Search(ctx, "s", []float32{1, 0, 0}, 1); err != nil || len(nn) != 1 {
		t.Errorf("reopened index: %+v %v", nn, err)
	}
}

// TestRedisBreaker: after a network failure the store stops sending
// commands for RetryInterval and fails at once with ErrUnavailable, even
// when the server is back; the window here is an hour, so the test does not
// depend on timing.
func TestRedisBreaker(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r, err := index.NewRedis(ctx, index.RedisConfig{URL: srv.URL(), Dim: 3, Fingerprint: "test:breaker:3", RetryInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A reply error (the server answered) does not open the breaker: the
	// index cannot be created without the module, yet plain commands work.
	if err := r.Set(ctx, "k", "s", []byte("v"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, _, err := r.Get(ctx, "k"); err == nil || errors.Is(err, index.ErrUnavailable) {
		t.Fatalf("first Get with Redis down: %v, want a network error", err)
	}
	srv.Restart()
	if _, _, err := r.Get(ctx, "k"); !errors.Is(err, index.ErrUnavailable) {
		t.Errorf("Get within the window: %v, want ErrUnavailable without a network attempt", err)
	}
	if err := r.Set(ctx, "k", "s", []byte("v"), nil, time.Hour); !errors.Is(err, index.ErrUnavailable) {
		t.Errorf("Set within the window: %v, want ErrUnavailable", err)
	}
}

// TestRedisFlushDeletesOnlyItsOwnKeys: Flush removes this cache's keys and
// index, never other data, and the cache works again afterwards.
func TestRedisFlushDeletesOnlyItsOwnKeys(t *testing.T) {
	srv := redistest.StartSearch(t)
	ctx := context.Background()
	raw := rawClient(t, srv)
	raw.Set(ctx, "app:session", "keep me", 0)
	raw.Set(ctx, "semcache", "no colon: not under the prefix", 0)
	r := newRedisStore(t, srv, 3, "test:flush:3")
	for _, k := range []string{"a", "b", "c"} {
		if err := r.Set(ctx, k, "s", []byte("v"), []float32{1, 0, 0}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.Flush(ctx)
	if err != nil || n != 6 {
		t.Fatalf("Flush = %d %v, want 6 keys (3 exact + 3 vector hashes)", n, err)
	}
	if got := raw.Get(ctx, "app:session").Val(); got != "keep me" {
		t.Errorf("another application's key was touched: %q", got)
	}
	if raw.Exists(ctx, "semcache").Val() != 1 {
		t.Error("a key outside the prefix was deleted")
	}
	if _, ok, _ := r.Get(ctx, "a"); ok {
		t.Error("entry survived Flush")
	}
	// The index is re-created on demand and the cache works again.
	if err := r.Set(ctx, "d", "s", []byte("v"), []float32{1, 0, 0}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if nn, err := r.Search(ctx, "s", []float32{1, 0, 0}, 4); err != nil || len(nn) != 1 || nn[0].ID != "d" {
		t.Errorf("after Flush: %+v %v", nn, err)
	}
}
