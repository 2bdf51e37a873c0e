package index

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// probeTTL bounds how long a probe document outlives a crash of the
// process that wrote it.
const probeTTL = 10 * time.Second

// verifyIndex checks that the existing index is the one this cache would
// create (see ensureIndex) and returns an error wrapping ErrIndexSchema
// naming the index and the first difference found. RediSearch 2.6's FT.INFO
// reports the key type, the prefixes and the field types but not a vector
// field's type, dimension, metric or HNSW parameters, so three checks are
// layered, each run where the server supports it:
//
//  1. FT.INFO: key type HASH, the single prefix vecPrefix, a TAG field
//     "scope" and a VECTOR field "vector" (and dimension and metric where a
//     later version reports them).
//  2. FT.DEBUG VECSIM_INFO (RediSearch 2.4 and later, unless the server
//     disables debug commands): algorithm HNSW, type FLOAT32, dimension
//     Dim, metric COSINE, and M, EF_CONSTRUCTION and EF_RUNTIME.
//  3. A probe document, always: a hash written under vecPrefix in a scope
//     no request can have, with a FLOAT32 unit vector p of length Dim, must
//     be found by a KNN query for 2p at cosine distance 0. An index of
//     another prefix, vector type or dimension does not index it (not
//     found); one of the L2 or IP metric gives distance 1 or -1. The probe
//     is deleted at once.
//
// An unreachable server or an unexpected reply wraps ErrIndexNotReady (the
// store retries later), never ErrIndexSchema.
func (r *Redis) verifyIndex(ctx context.Context) error {
	info, err := r.rdb.FTInfo(ctx, r.indexName).Result()
	if err != nil {
		return fmt.Errorf("%w: FT.INFO %s: %v", ErrIndexNotReady, r.indexName, err)
	}
	mismatch := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrIndexSchema, r.indexName, fmt.Sprintf(format, args...))
	}
	if kt := info.IndexDefinition.KeyType; kt != "" && !strings.EqualFold(kt, "HASH") {
		return mismatch("key type %s, want HASH", kt)
	}
	if p := info.IndexDefinition.Prefixes; !slices.Equal(p, []string{r.vecPrefix}) {
		return mismatch("prefixes %q, want [%q]", p, r.vecPrefix)
	}
	var haveScope, haveVector bool
	for _, a := range info.Attributes {
		switch a.Attribute {
		case "scope":
			if !strings.EqualFold(a.Type, "TAG") {
				return mismatch("field scope is %s, want TAG", a.Type)
			}
			haveScope = true
		case "vector":
			if !strings.EqualFold(a.Type, "VECTOR") {
				return mismatch("field vector is %s, want VECTOR", a.Type)
			}
			if a.Dim != 0 && a.Dim != r.cfg.Dim {
				return mismatch("vector dimension %d, want %d", a.Dim, r.cfg.Dim)
			}
			if a.DistanceMetric != "" && !strings.EqualFold(a.DistanceMetric, "COSINE") {
				return mismatch("vector metric %s, want COSINE", a.DistanceMetric)
			}
			haveVector = true
		}
	}
	if !haveScope || !haveVector {
		return mismatch("lacks a TAG field scope or a VECTOR field vector")
	}
	if err := r.verifyVecsimInfo(ctx, mismatch); err != nil {
		return err
	}
	return r.probeIndex(ctx, mismatch)
}

// useVecsimInfo turns check 2 of verifyIndex on; tests turn it off to show
// that the probe alone catches what FT.INFO does not report.
var useVecsimInfo = true

// verifyVecsimInfo compares FT.DEBUG VECSIM_INFO of the vector field with
// the configuration. A server that refuses the command (debug commands
// disabled, another module version) skips this check: the probe still
// covers type, dimension and metric.
func (r *Redis) verifyVecsimInfo(ctx context.Context, mismatch func(string, ...any) error) error {
	if !useVecsimInfo {
		return nil
	}
	reply, err := r.rdb.Do(ctx, "FT.DEBUG", "VECSIM_INFO", r.indexName, "vector").Slice()
	var replyErr redis.Error
	if errors.As(err, &replyErr) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: FT.DEBUG VECSIM_INFO %s: %v", ErrIndexNotReady, r.indexName, err)
	}
	got := map[string]string{}
	for i := 0; i+1 < len(reply); i += 2 {
		got[fmt.Sprint(reply[i])] = fmt.Sprint(reply[i+1])
	}
	want := []struct{ field, value string }{
		{"ALGORITHM", "HNSW"}, {"TYPE", "FLOAT32"}, {"DIMENSION", strconv.Itoa(r.cfg.Dim)}, {"METRIC", "COSINE"},
		{"M", strconv.Itoa(r.cfg.M)}, {"EF_CONSTRUCTION", strconv.Itoa(r.cfg.EfConstruction)}, {"EF_RUNTIME", strconv.Itoa(r.cfg.EfRuntime)},
	}
	for _, w := range want {
		if v, ok := got[w.field]; ok && !strings.EqualFold(v, w.value) {
			return mismatch("vector %s %s, want %s", w.field, v, w.value)
		}
	}
	return nil
}

// probeIndex writes a probe document, queries it and deletes it (see
// verifyIndex, check 3).
func (r *Redis) probeIndex(ctx context.Context, mismatch func(string, ...any) error) error {
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("%w: probe nonce: %v", ErrIndexNotReady, err)
	}
	// Real scopes are hex digests; this one holds letters no digest has.
	scope := "semcacheprobe" + hex.EncodeToString(nonce[:])
	key := r.vecPrefix + scope
	unit := make([]float32, r.cfg.Dim)
	for i := range unit {
		unit[i] = float32(i%7+1) / 7
	}
	unit, err := Normalize(unit)
	if err != nil {
		return err
	}
	twice := make([]float32, len(unit))
	for i, x := range unit {
		twice[i] = 2 * x
	}
	defer r.rdb.Del(context.WithoutCancel(ctx), key)
	// The TTL makes sure a crash before the DEL leaves nothing for long.
	if _, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "scope", scope, "vector", float32Bytes(unit))
		p.PExpire(ctx, key, probeTTL)
		return nil
	}); err != nil {
		return fmt.Errorf("%w: probe HSET: %v", ErrIndexNotReady, err)
	}
	res, err := r.knn(ctx, scope, twice, 1)
	var replyErr redis.Error
	switch {
	case errors.As(err, &replyErr):
		return mismatch("refuses a %d-dimensional FLOAT32 query vector: %v", r.cfg.Dim, err)
	case err != nil:
		return fmt.Errorf("%w: probe FT.SEARCH %s: %v", ErrIndexNotReady, r.indexName, err)
	case len(res.Docs) == 0:
		return mismatch("a probe hash under prefix %q with a %d-dimensional FLOAT32 vector was not indexed (another prefix, vector type or dimension)", r.vecPrefix, r.cfg.Dim)
	}
	d, err := strconv.ParseFloat(res.Docs[0].Fields["distance"], 64)
	if err != nil {
		return fmt.Errorf("%w: probe distance %q: %v", ErrIndexNotReady, res.Docs[0].Fields["distance"], err)
	}
	if d < -1e-3 || d > 1e-3 {
		return mismatch("the probe vector's distance to twice itself is %g, want 0 (the COSINE metric; L2 gives 1, IP -1)", d)
	}
	return nil
}

// CheckIndexing reads the index's hash_indexing_failures (FT.INFO) and
// returns by how much it rose since the last call (0 on the first call,
// which records the starting count, and after the index was re-created
// with a lower count). A rise means vector hashes this cache wrote were
// not indexed, so the semantic tier cannot find them; the store's
// background check (RedisConfig.IndexCheckInterval) adds each rise to
// IndexingFailures and reports it to RedisConfig.OnIndexingFailures. Safe
// for concurrent use.
func (r *Redis) CheckIndexing(ctx context.Context) (int64, error) {
	info, err := r.rdb.FTInfo(ctx, r.indexName).Result()
	if err != nil {
		return 0, fmt.Errorf("redis FT.INFO %s: %w", r.indexName, err)
	}
	n := int64(info.HashIndexingFailures)
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	rise := int64(0)
	if r.watchSeen && n > r.watchLast {
		rise = n - r.watchLast
	}
	r.watchSeen, r.watchLast = true, n
	if rise > 0 {
		total := r.indexFailures.Add(rise)
		if r.cfg.OnIndexingFailures != nil {
			r.cfg.OnIndexingFailures(rise, total)
		}
	}
	return rise, nil
}

// IndexingFailures returns the number of vector hashes the index failed
// to index since the store started, as counted by CheckIndexing. The
// cache's stats add it to store_errors.
func (r *Redis) IndexingFailures() int64 { return r.indexFailures.Load() }

// watchIndexing runs CheckIndexing every interval until done is closed.
// Errors (Redis down, index gone) are left to the operations that meet
// them.
func (r *Redis) watchIndexing(interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			_, _ = r.CheckIndexing(ctx)
			cancel()
		}
	}
}
