package index_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/index/redistest"
)

// TestRedisSchemaVerified: an existing index of the cache's name whose
// schema differs from the one the cache creates in any way that matters
// (dimension, vector type, metric, prefix, key type, fields, HNSW
// parameters) stops NewRedis with ErrIndexSchema naming the index, even
// when the index is empty, with and without FT.DEBUG VECSIM_INFO; the
// index is left in place and the probe leaves no key behind. The same
// schema made by hand is accepted.
func TestRedisSchemaVerified(t *testing.T) {
	srv := redistest.StartSearch(t)
	ctx := context.Background()
	raw := rawClient(t, srv)
	const fp, dim = "test:schema:v", 8
	name, prefix := "semcache:idx:"+fp, "semcache:v:"+fp+":"
	hnsw := func(typ string, d int, metric string, m, efc, efr int) string {
		return fmt.Sprintf("vector VECTOR HNSW 12 TYPE %s DIM %d DISTANCE_METRIC %s M %d EF_CONSTRUCTION %d EF_RUNTIME %d", typ, d, metric, m, efc, efr)
	}
	good := hnsw("FLOAT32", dim, "COSINE", index.DefaultRedisM, index.DefaultEfConstruction, index.DefaultEfSearch)
	cases := []struct {
		name, create string
		onlyVecsim   bool // a difference only FT.DEBUG VECSIM_INFO can see
	}{
		{"dimension", "ON HASH PREFIX 1 " + prefix + " SCHEMA scope TAG " + hnsw("FLOAT32", 128, "COSINE", 16, 200, 64), false},
		{"float64", "ON HASH PREFIX 1 " + prefix + " SCHEMA scope TAG " + hnsw("FLOAT64", dim, "COSINE", 16, 200, 64), false},
		{"l2", "ON HASH PREFIX 1 " + prefix + " SCHEMA scope TAG " + hnsw("FLOAT32", dim, "L2", 16, 200, 64), false},
		{"ip", "ON HASH PREFIX 1 " + prefix + " SCHEMA scope TAG " + hnsw("FLOAT32", dim, "IP", 16, 200, 64), false},
		{"prefix", "ON HASH PREFIX 1 other: SCHEMA scope TAG " + good, false},
		{"json", "ON JSON PREFIX 1 " + prefix + " SCHEMA $.scope AS scope TAG $.vector AS " + good, false},
		{"scope text", "ON HASH PREFIX 1 " + prefix + " SCHEMA scope TEXT " + good, false},
		{"no scope", "ON HASH PREFIX 1 " + prefix + " SCHEMA " + good, false},
		{"flat", "ON HASH PREFIX 1 " + prefix + " SCHEMA scope TAG vector VECTOR FLAT 6 TYPE FLOAT32 DIM 8 DISTANCE_METRIC COSINE", true},
		{"m", "ON HASH PREFIX 1 " + prefix + " SCHEMA scope TAG " + hnsw("FLOAT32", dim, "COSINE", 4, 200, 64), true},
	}
	for _, vecsim := range []bool{true, false} {
		for _, tc := range cases {
			if tc.onlyVecsim && !vecsim {
				continue
			}
			t.Run(fmt.Sprintf("%s/vecsim=%v", tc.name, vecsim), func(t *testing.T) {
				defer index.SetVecsimInfoCheck(vecsim)()
				if err := raw.Do(ctx, args("FT.CREATE", name, tc.create)...).Err(); err != nil {
					if strings.Contains(err.Error(), "unknown index type") || strings.Contains(err.Error(), "JSON") {
						t.Skipf("this server cannot create the case: %v", err)
					}
					t.Fatal(err)
				}
				defer raw.Do(ctx, "FT.DROPINDEX", name)
				_, err := index.NewRedis(ctx, index.RedisConfig{URL: srv.URL(), Dim: dim, Fingerprint: fp, RetryInterval: -1})
				if !errors.Is(err, index.ErrIndexSchema) || !strings.Contains(err.Error(), name) {
					t.Fatalf("NewRedis over a %s index: %v; want ErrIndexSchema naming %s", tc.name, err, name)
				}
				if names, _ := raw.Do(ctx, "FT._LIST").StringSlice(); !slices.Contains(names, name) {
					t.Errorf("the refused index was dropped: %v", names)
				}
				if keys, _ := raw.Keys(ctx, "*semcacheprobe*").Result(); len(keys) != 0 {
					t.Errorf("probe keys left behind: %v", keys)
				}
			})
		}
		t.Run(fmt.Sprintf("same schema/vecsim=%v", vecsim), func(t *testing.T) {
			defer index.SetVecsimInfoCheck(vecsim)()
			if err := raw.Do(ctx, args("FT.CREATE", name, "ON HASH PREFIX 1 "+prefix+" SCHEMA scope TAG "+good)...).Err(); err != nil {
				t.Fatal(err)
			}
			defer raw.Do(ctx, "FT.DROPINDEX", name)
			r, err := index.NewRedis(ctx, index.RedisConfig{URL: srv.URL(), Dim: dim, Fingerprint: fp, RetryInterval: -1})
			if err != nil {
				t.Fatalf("NewRedis over the same schema made by hand: %v", err)
			}
			defer r.Close()
			if !r.Ready() {
				t.Error("not ready over the same schema")
			}
		})
	}
}

func args(cmd, name, rest string) []any {
	out := []any{cmd, name}
	for _, f := range strings.Fields(rest) {
		out = append(out, f)
	}
	return out
}

// TestRedisIndexingFailuresCounted: a vector hash under the cache's prefix
// that the index cannot index (here one of the wrong length) raises
// hash_indexing_failures, which CheckIndexing reports once, to the
// callback and in IndexingFailures.
func TestRedisIndexingFailuresCounted(t *testing.T) {
	srv := redistest.StartSearch(t)
	ctx := context.Background()
	var calls []int64
	r, err := index.NewRedis(ctx, index.RedisConfig{URL: srv.URL(), Dim: 3, Fingerprint: "test:fail", RetryInterval: -1,
		IndexCheckInterval: -1, OnIndexingFailures: func(rise, total int64) { calls = append(calls, rise, total) }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if rise, err := r.CheckIndexing(ctx); err != nil || rise != 0 {
		t.Fatalf("first CheckIndexing = %d, %v; want 0", rise, err)
	}
	if err := r.Set(ctx, "good", "s", []byte("v"), []float32{1, 0, 0}, time.Hour); err != nil {
		t.Fatal(err)
	}
	raw := rawClient(t, srv)
	if err := raw.HSet(ctx, "semcache:v:test:fail:bad", "scope", "s", "vector", "12345678").Err(); err != nil {
		t.Fatal(err)
	}
	if rise, err := r.CheckIndexing(ctx); err != nil || rise != 1 {
		t.Fatalf("CheckIndexing after a bad hash = %d, %v; want 1", rise, err)
	}
	if rise, _ := r.CheckIndexing(ctx); rise != 0 {
		t.Errorf("a second CheckIndexing counted the same failure again: %d", rise)
	}
	if r.IndexingFailures() != 1 || len(calls) != 2 || calls[0] != 1 || calls[1] != 1 {
		t.Errorf("IndexingFailures = %d, callback calls %v; want 1 and [1 1]", r.IndexingFailures(), calls)
	}
}
