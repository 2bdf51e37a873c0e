package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// IndexInfo describes one RediSearch index of this cache (its name starts
// with Prefix + "idx:"). JSON names are those of the admin endpoint.
type IndexInfo struct {
	// Name is the index name, Prefix + "idx:" + the sanitised fingerprint.
	Name string `json:"name"`
	// Fingerprint is the (sanitised) embedder fingerprint the index holds
	// vectors of.
	Fingerprint string `json:"fingerprint"`
	// Docs is FT.INFO num_docs: the vector hashes indexed.
	Docs int64 `json:"docs"`
	// MemoryMB is FT.INFO total_index_memory_sz_mb plus vector_index_sz_mb
	// where reported: the index's own memory in MiB, not its hashes'.
	MemoryMB float64 `json:"memory_mb"`
	// Current reports whether this is the index of the store's fingerprint.
	Current bool `json:"current"`
}

// indexNames returns the names FT._LIST gives under Prefix + "idx:"; none
// on a server without the search module (FT._LIST unknown).
func (r *Redis) indexNames(ctx context.Context) ([]string, error) {
	if r.cluster {
		return nil, nil // no vector index on a Cluster
	}
	names, err := r.rdb.FT_List(ctx).Result()
	var replyErr redis.Error
	if errors.As(err, &replyErr) && strings.Contains(strings.ToLower(err.Error()), "unknown command") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis FT._LIST: %w", err)
	}
	return slices.DeleteFunc(names, func(n string) bool { return !strings.HasPrefix(n, r.cfg.Prefix+"idx:") }), nil
}

// Indexes lists this cache's indexes: those FT._LIST names under Prefix +
// "idx:", sorted by name, with their FT.INFO. Indexes of other prefixes are
// not listed. A server without the search module has none.
func (r *Redis) Indexes(ctx context.Context) ([]IndexInfo, error) {
	names, err := r.indexNames(ctx)
	if err != nil {
		return nil, err
	}
	var out []IndexInfo
	for _, name := range names {
		info, err := r.rdb.FTInfo(ctx, name).Result()
		if err != nil {
			return nil, fmt.Errorf("redis FT.INFO %s: %w", name, err)
		}
		out = append(out, IndexInfo{Name: name, Fingerprint: strings.TrimPrefix(name, r.cfg.Prefix+"idx:"), Docs: int64(info.NumDocs),
			MemoryMB: info.TotalIndexMemorySzMB + info.VectorIndexSzMB, Current: name == r.indexName})
	}
	slices.SortFunc(out, func(a, b IndexInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DropStaleIndexes drops every index of this cache but the current one
// (those of other embedder fingerprints, left by an embedder change) and
// deletes their vector hashes (keys under Prefix + "v:" + fingerprint +
// ":", except those under the key prefix of another index still listed,
// whose fingerprint may extend this one). Exact entries are shared by
// every fingerprint and kept. It returns the indexes dropped and the keys
// deleted; on an error, what was dropped before it stays dropped.
func (r *Redis) DropStaleIndexes(ctx context.Context) ([]IndexInfo, int, error) {
	all, err := r.Indexes(ctx)
	if err != nil {
		return nil, 0, err
	}
	vecPrefixes := make([]string, len(all))
	for i, ix := range all {
		vecPrefixes[i] = r.cfg.Prefix + "v:" + ix.Fingerprint + ":"
	}
	var dropped []IndexInfo
	deleted := 0
	for _, ix := range all {
		if ix.Current {
			continue
		}
		if err := r.rdb.FTDropIndex(ctx, ix.Name).Err(); err != nil {
			return dropped, deleted, fmt.Errorf("redis FT.DROPINDEX %s: %w", ix.Name, err)
		}
		dropped = append(dropped, ix)
		own := r.cfg.Prefix + "v:" + ix.Fingerprint + ":"
		var others []string // key prefixes of other indexes, longer than own
		for _, p := range append(vecPrefixes, r.vecPrefix) {
			if len(p) > len(own) && strings.HasPrefix(p, own) {
				others = append(others, p)
			}
		}
		n, err := r.unlinkMatching(ctx, globEscape(own)+"*", func(key string) bool {
			return !slices.ContainsFunc(others, func(p string) bool { return strings.HasPrefix(key, p) })
		})
		deleted += n
		if err != nil {
			return dropped, deleted, err
		}
	}
	return dropped, deleted, nil
}
