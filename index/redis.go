package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrIndexSchema is returned (wrapped) when the RediSearch index of this
// cache exists with another dimension, metric or field layout than the
// embedder needs. semcache never drops or changes an existing index; the
// operator decides (another --redis-prefix, or an explicit flush).
var ErrIndexSchema = errors.New("index: existing RediSearch index has another schema")

// ErrUnavailable is returned (wrapped) while the circuit breaker is open:
// a network failure happened less than RetryInterval ago, so the operation
// was not sent.
var ErrUnavailable = errors.New("index: redis unavailable (recent network failure)")

// ErrIndexNotReady is returned (wrapped) by Search while the RediSearch
// index could not be verified or created yet (Redis down at start-up, or
// the search module missing). The cache treats it as a failed lookup and
// goes upstream.
var ErrIndexNotReady = errors.New("index: RediSearch index not ready")

// DefaultRedisM is the HNSW M of a new RediSearch index when
// RedisConfig.M is 0: RediSearch's own default, and the value every index
// semcache created before the in-process default became 32 (DefaultM), so
// that an upgrade does not fail the schema check of an existing index.
const DefaultRedisM = 16

// RedisConfig configures a Redis store. NewRedis copies it; zero values
// mean the defaults on each field.
type RedisConfig struct {
	// URL is the server, redis://[user:password@]host:port/db, a
	// Sentinel-managed primary (see ParseSentinelURL), or a Redis Cluster
	// for the exact tier only (see ParseClusterURL); required.
	URL string
	// Prefix starts every key and the index name this cache writes, so
	// that several caches (or other data) can share one database and an
	// explicit flush deletes only this cache's keys. "" means "semcache:".
	Prefix string
	// Dim is the vector length; required (> 0).
	Dim int
	// Fingerprint names the embedder's vector space (kind, model,
	// dimension); required. It is part of the index name and of the vector
	// keys' prefix, so a model change gets a new index instead of mixed
	// vectors.
	Fingerprint string
	// M, EfConstruction and EfRuntime are RediSearch's HNSW M,
	// EF_CONSTRUCTION and EF_RUNTIME for a new index; 0 means
	// DefaultRedisM (16), DefaultEfConstruction (200) and DefaultEfSearch
	// (64).
	M, EfConstruction, EfRuntime int
	// PoolSize is the connection pool size; 0 means go-redis's default (10
	// per GOMAXPROCS).
	PoolSize int
	// DialTimeout, ReadTimeout and WriteTimeout bound each connection
	// attempt and command; 0 means 1 s, 500 ms and 500 ms, so that a slow
	// or dead Redis delays a request by at most about a second before the
	// cache fails open.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// MaxRetries is the number of retries of a failed command; 0 means 1,
	// negative means none.
	MaxRetries int
	// RetryInterval is the circuit breaker's window: after a network
	// failure (refused, timed out), every operation fails at once with
	// ErrUnavailable for this long instead of waiting for its own timeout,
	// so a dead Redis delays one request per window, not every request by
	// every command. It is also how often Search retries verifying or
	// creating the index while it is not ready (Redis was down, restarted
	// empty or flushed). 0 means one second; negative turns the breaker off
	// and retries the index on every Search.
	RetryInterval time.Duration
	// IndexCheckInterval is how often a background check reads the
	// index's hash_indexing_failures (see CheckIndexing); 0 means 10 s,
	// negative turns the check off.
	IndexCheckInterval time.Duration
	// OnIndexingFailures, when not nil, is called by the check with the
	// rise of hash_indexing_failures and the total since start (the proxy
	// logs it). It must not block.
	OnIndexingFailures func(rise, total int64)
}

// Redis is semcache's shared backend: exact entries as string keys with a
// TTL (SET ... EX), and one HASH per vector (scope TAG, FLOAT32 vector, the
// entry) indexed by a RediSearch HNSW index with COSINE distance, one SET
// of entry keys per tag (see Tag), and per entry a LIST of observations and
// a STRING fit outside the vector hash (see AddObservation). Several proxies
// pointed at one Redis share the cache.
//
// On a Redis Cluster (ClusterScheme) it keeps the exact tier only, with
// each entry's keys in one hash slot (see ExactOnly).
//
// Redis is safe for concurrent use. It never flushes a database, and drops
// indexes only when asked (Flush, DropStaleIndexes): start-up creates the
// index when it is missing and verifies it when it exists; Close only
// closes connections.
type Redis struct {
	cfg RedisConfig
	rdb redis.UniversalClient
	// cluster is set for a Redis Cluster (ClusterScheme): exact tier only,
	// every key of an entry in one hash slot (see slotted).
	cluster   bool
	indexName string
	vecPrefix string // key prefix of the vector hashes, the index's PREFIX

	// mu guards ready and lastTry: whether the index is verified, and when
	// ensureIndex last tried.
	mu      sync.Mutex
	ready   bool
	lastTry time.Time

	// watchMu guards the last hash_indexing_failures seen (CheckIndexing).
	watchMu       sync.Mutex
	watchSeen     bool
	watchLast     int64
	indexFailures atomic.Int64
	stopWatch     chan struct{}
	closeOnce     sync.Once
}

// NewRedis connects to cfg.URL and verifies or creates the index. An
// unreachable server is not an error (the store starts not ready and keeps
// retrying; every operation fails fast until Redis answers), but an index
// with another schema is: it returns an error wrapping ErrIndexSchema. A
// malformed config returns an error naming the field.
func NewRedis(ctx context.Context, cfg RedisConfig) (*Redis, error) {
	if cfg.Dim <= 0 {
		return nil, fmt.Errorf("index: RedisConfig.Dim %d: must be > 0", cfg.Dim)
	}
	if cfg.Fingerprint == "" {
		return nil, errors.New("index: RedisConfig.Fingerprint: required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "semcache:"
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.M == 0 {
		cfg.M = DefaultRedisM
	}
	if cfg.EfConstruction == 0 {
		cfg.EfConstruction = DefaultEfConstruction
	}
	if cfg.EfRuntime == 0 {
		cfg.EfRuntime = DefaultEfSearch
	}
	if cfg.M < 2 || cfg.EfConstruction < 0 || cfg.EfRuntime < 0 {
		return nil, fmt.Errorf("index: RedisConfig M %d, EfConstruction %d, EfRuntime %d: want M >= 2 and positive EF values", cfg.M, cfg.EfConstruction, cfg.EfRuntime)
	}
	retries := cfg.MaxRetries
	switch {
	case retries == 0:
		retries = 1
	case retries < 0:
		retries = -1
	}
	dialTO := orDefault(cfg.DialTimeout, time.Second)
	readTO := orDefault(cfg.ReadTimeout, 500*time.Millisecond)
	writeTO := orDefault(cfg.WriteTimeout, 500*time.Millisecond)
	var newClient func() redis.UniversalClient
	cluster := strings.HasPrefix(cfg.URL, ClusterScheme+"://")
	switch {
	case cluster:
		co, err := ParseClusterURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("index: RedisConfig.URL: %w", err)
		}
		co.Protocol = 2
		co.PoolSize = cfg.PoolSize
		co.DialTimeout, co.ReadTimeout, co.WriteTimeout, co.MaxRetries = dialTO, readTO, writeTO, retries
		co.DialerRetries = 1 // see below
		newClient = func() redis.UniversalClient { return redis.NewClusterClient(co) }
	case strings.HasPrefix(cfg.URL, SentinelScheme+"://"):
		fo, err := ParseSentinelURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("index: RedisConfig.URL: %w", err)
		}
		fo.Protocol = 2 // go-redis parses FT.* replies fully only in RESP2
		fo.PoolSize = cfg.PoolSize
		fo.DialTimeout, fo.ReadTimeout, fo.WriteTimeout, fo.MaxRetries = dialTO, readTO, writeTO, retries
		// One dial attempt per address: go-redis's default of 5 with
		// backoff, per sentinel, held a start and each request for 5 to
		// 12 s when every sentinel was down, far past the breaker's bound.
		fo.DialerRetries = 1
		newClient = func() redis.UniversalClient { return redis.NewFailoverClient(fo) }
	default:
		opts, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("index: RedisConfig.URL: %w", err)
		}
		opts.Protocol = 2 // go-redis parses FT.* replies fully only in RESP2
		if cfg.PoolSize > 0 {
			opts.PoolSize = cfg.PoolSize
		}
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.MaxRetries = dialTO, readTO, writeTO, retries
		opts.DialerRetries = 1 // MaxRetries is the one retry policy
		newClient = func() redis.UniversalClient { return redis.NewClient(opts) }
	}
	quietRedisLog.Do(func() { redis.SetLogger(discardRedisLog{}) })
	name := sanitizeName(cfg.Fingerprint)
	rdb := newClient()
	if cfg.RetryInterval > 0 {
		rdb.AddHook(&breaker{window: cfg.RetryInterval})
	}
	r := &Redis{
		cfg:       cfg,
		rdb:       rdb,
		cluster:   cluster,
		indexName: cfg.Prefix + "idx:" + name,
		vecPrefix: cfg.Prefix + "v:" + name + ":",
	}
	r.stopWatch = make(chan struct{})
	if cluster {
		return r, nil // no vector index on a Cluster: nothing to verify or watch
	}
	if err := r.ensureIndex(ctx); err != nil && errors.Is(err, ErrIndexSchema) {
		r.rdb.Close()
		return nil, err
	}
	if iv := orDefault(cfg.IndexCheckInterval, 10*time.Second); iv > 0 {
		_, _ = r.CheckIndexing(ctx) // the starting count
		go r.watchIndexing(iv, r.stopWatch)
	}
	return r, nil
}

// quietRedisLog silences go-redis's own logger (process-wide, once): it
// printed a line per failed dial to stderr, unthrottled and outside the
// proxy's structured log. Every failure it reported also comes back as an
// error from a command, which the cache logs at most once per 10 s per kind
// and counts in its stats.
var quietRedisLog sync.Once

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// sanitizeName keeps an index or key component readable and free of white
// space and of the characters RediSearch queries treat specially.
func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == ':':
			return r
		}
		return '_'
	}, s)
}

// IndexName returns the RediSearch index name: Prefix + "idx:" + the
// embedder fingerprint.
func (r *Redis) IndexName() string { return r.indexName }

// Ready reports whether the index has been verified or created.
func (r *Redis) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}

// ensureIndex creates the index when FT._LIST does not name it, and checks
// its vector field when it does. Existence is decided from the index list,
// not from the text of an error.
func (r *Redis) ensureIndex(ctx context.Context) error {
	r.mu.Lock()
	r.lastTry = time.Now()
	r.mu.Unlock()
	names, err := r.rdb.FT_List(ctx).Result()
	if err != nil {
		return fmt.Errorf("%w: FT._LIST: %v", ErrIndexNotReady, err)
	}
	if slices.Contains(names, r.indexName) {
		if err := r.verifyIndex(ctx); err != nil {
			return err
		}
	} else {
		err := r.rdb.FTCreate(ctx, r.indexName,
			&redis.FTCreateOptions{OnHash: true, Prefix: []any{r.vecPrefix}},
			&redis.FieldSchema{FieldName: "scope", FieldType: redis.SearchFieldTypeTag},
			&redis.FieldSchema{FieldName: "vector", FieldType: redis.SearchFieldTypeVector, VectorArgs: &redis.FTVectorArgs{
				HNSWOptions: &redis.FTHNSWOptions{
					Type: "FLOAT32", Dim: r.cfg.Dim, DistanceMetric: "COSINE",
					// go-redis names EF_CONSTRUCTION MaxAllowedEdgesPerNode.
					MaxEdgesPerNode: r.cfg.M, MaxAllowedEdgesPerNode: r.cfg.EfConstruction, EFRunTime: r.cfg.EfRuntime,
				},
			}},
		).Err()
		if err != nil {
			// Another replica may have created it meanwhile: verify.
			if names, lerr := r.rdb.FT_List(ctx).Result(); lerr == nil && slices.Contains(names, r.indexName) {
				if verr := r.verifyIndex(ctx); verr != nil {
					return verr
				}
			} else {
				return fmt.Errorf("%w: FT.CREATE %s: %v", ErrIndexNotReady, r.indexName, err)
			}
		}
	}
	r.mu.Lock()
	r.ready = true
	r.mu.Unlock()
	return nil
}

func (r *Redis) exactKey(key string) string  { return r.cfg.Prefix + "e:" + r.slotted(key) }
func (r *Redis) vectorKey(key string) string { return r.vecPrefix + r.slotted(key) }

// slotted returns key as it appears in the names of an entry's keys: on a
// Cluster inside a hash tag, "{key}", so that the entry, its vector, its
// verification state and its lease share one hash slot and MULTI/EXEC and
// scripts over them work; unchanged otherwise (the standalone layout).
func (r *Redis) slotted(key string) string {
	if r.cluster {
		return "{" + key + "}"
	}
	return key
}

// ExactOnly reports whether the store keeps the exact tier only: on a
// Redis Cluster, where open-source RediSearch indexes no vectors across
// shards. The cache then embeds nothing (see semantic.Cache).
func (r *Redis) ExactOnly() bool { return r.cluster }

// Get returns the value stored under key; a missing or expired key is a
// miss (redis.Nil never leaves this package).
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := r.rdb.Get(ctx, r.exactKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis GET: %w", err)
	}
	return b, true, nil
}

// Set stores value under key for ttl (> 0, whole milliseconds) and, when vec
// is not nil (length Dim), the vector hash in scope, in one MULTI/EXEC
// transaction so that no half-written entry is ever visible. A nil vec
// deletes any earlier vector of the key. The same transaction deletes the
// key's verification state (see AddObservation): a new answer starts with
// none. A vector of the wrong length returns an error wrapping
// ErrDimensionMismatch, an unusable one ErrInvalidVector; neither writes
// anything.
func (r *Redis) Set(ctx context.Context, key, scope string, value []byte, vec []float32, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("index: ttl %v: must be > 0", ttl)
	}
	var blob []byte
	if vec != nil {
		if len(vec) != r.cfg.Dim {
			return fmt.Errorf("%w: got %d, index has %d", ErrDimensionMismatch, len(vec), r.cfg.Dim)
		}
		unit, err := Normalize(vec)
		if err != nil {
			return err
		}
		blob = float32Bytes(unit)
		if r.cluster {
			blob = nil // no vector index to find it: keep the exact tier only
		}
		// Create the index before writing a vector when it is missing
		// (first start, Redis restarted empty, Flush): a hash written while
		// the index exists is indexed at once, whereas hashes found by
		// FT.CREATE are indexed by a background scan. Failing here is not
		// an error for Set; the exact tier works without the index.
		if blob != nil {
			_ = r.ensureReady(ctx)
		}
	}
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.obsKey(key), r.fitKey(key))
		p.Set(ctx, r.exactKey(key), value, ttl)
		vk := r.vectorKey(key)
		if blob == nil {
			p.Del(ctx, vk)
			return nil
		}
		p.Del(ctx, vk) // a replaced entry must not keep fields of the old one
		p.HSet(ctx, vk, "scope", scope, "vector", blob, "entry", value,
			"created_ms", strconv.FormatInt(time.Now().UnixMilli(), 10))
		p.PExpire(ctx, vk, ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis MULTI SET/HSET: %w", err)
	}
	return nil
}

// Search returns up to k entries of scope nearest to vec (length Dim),
// highest cosine similarity first, with a RediSearch KNN query filtered by
// the scope TAG. Expired hashes have left the index, so no expiry check is
// needed here.
func (r *Redis) Search(ctx context.Context, scope string, vec []float32, k int) ([]Neighbor, error) {
	if len(vec) != r.cfg.Dim {
		return nil, fmt.Errorf("%w: got %d, index has %d", ErrDimensionMismatch, len(vec), r.cfg.Dim)
	}
	if k <= 0 {
		return nil, fmt.Errorf("index: k %d: must be > 0", k)
	}
	if r.cluster {
		return nil, fmt.Errorf("%w: Redis Cluster keeps the exact tier only", ErrIndexNotReady)
	}
	if err := r.ensureReady(ctx); err != nil {
		return nil, err
	}
	unit, err := Normalize(vec)
	if err != nil {
		return nil, err
	}
	res, err := r.knn(ctx, scope, unit, k)
	var replyErr redis.Error
	if errors.As(err, &replyErr) {
		// The server answered but refused: the index may be gone (Redis
		// restarted empty, or was flushed). Verify or re-create it, then
		// try once more.
		r.mu.Lock()
		r.ready = false
		r.mu.Unlock()
		if rerr := r.ensureReady(ctx); rerr == nil {
			res, err = r.knn(ctx, scope, unit, k)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("redis FT.SEARCH: %w", err)
	}
	out := make([]Neighbor, 0, len(res.Docs))
	for _, d := range res.Docs {
		key, ok := strings.CutPrefix(d.ID, r.vecPrefix)
		if !ok {
			continue
		}
		dist, err := strconv.ParseFloat(d.Fields["distance"], 32)
		if err != nil {
			return nil, fmt.Errorf("redis FT.SEARCH: distance %q of %s: %w", d.Fields["distance"], d.ID, err)
		}
		out = append(out, Neighbor{ID: key, Similarity: SimilarityFromDistance(float32(dist))})
	}
	return out, nil
}

// ensureReady returns nil when the index is verified, else tries to verify
// or create it when the last try is IndexRetryInterval old.
func (r *Redis) ensureReady(ctx context.Context) error {
	r.mu.Lock()
	ready, due := r.ready, time.Since(r.lastTry) >= r.cfg.RetryInterval
	r.mu.Unlock()
	if ready {
		return nil
	}
	if !due {
		return ErrIndexNotReady
	}
	return r.ensureIndex(ctx)
}

// knn runs the scope-filtered KNN query for the unit vector.
func (r *Redis) knn(ctx context.Context, scope string, unit []float32, k int) (*redis.FTSearchResult, error) {
	query := fmt.Sprintf("(@scope:{$scope})=>[KNN %d @vector $vec AS distance]", k)
	res, err := r.rdb.FTSearchWithArgs(ctx, r.indexName, query, &redis.FTSearchOptions{
		Params:         map[string]any{"scope": scope, "vec": float32Bytes(unit)},
		SortBy:         []redis.FTSearchSortBy{{FieldName: "distance", Asc: true}},
		Return:         []redis.FTSearchReturn{{FieldName: "distance"}},
		Limit:          k,
		DialectVersion: 2,
	}).Result()
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// Delete removes key from both tiers, with its verification state, in one
// MULTI/EXEC transaction, and reports whether the entry existed.
func (r *Redis) Delete(ctx context.Context, key string) (bool, error) {
	var del *redis.IntCmd
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, r.exactKey(key), r.vectorKey(key))
		p.Del(ctx, r.obsKey(key), r.fitKey(key))
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("redis MULTI DEL: %w", err)
	}
	return del.Val() > 0, nil
}

// Len returns the number of entries with a vector (FT.INFO num_docs).
// Exact-only entries (prompts with image parts) are not counted.
func (r *Redis) Len(ctx context.Context) (int, error) {
	if r.cluster {
		return 0, errors.New("index: Redis Cluster: entries are not counted (no vector index)")
	}
	info, err := r.rdb.FTInfo(ctx, r.indexName).Result()
	if err != nil {
		return 0, fmt.Errorf("redis FT.INFO: %w", err)
	}
	return info.NumDocs, nil
}

// Flush deletes this cache's data and nothing else: every index under
// Prefix + "idx:" (its own and those of other embedder fingerprints;
// FT.DROPINDEX without DD) and every key under Prefix (found with SCAN
// MATCH, deleted with UNLINK in batches). Keys and indexes of other
// prefixes and other databases are untouched; semcache never sends FLUSHDB
// or FLUSHALL. It returns the number of keys deleted. The index is
// re-created by the next Search or Set.
func (r *Redis) Flush(ctx context.Context) (int, error) {
	if r.cluster {
		return r.unlinkMatching(ctx, globEscape(r.cfg.Prefix)+"*", nil)
	}
	names, err := r.indexNames(ctx)
	if err != nil {
		return 0, err
	}
	for _, name := range names {
		if err := r.rdb.FTDropIndex(ctx, name).Err(); err != nil {
			return 0, fmt.Errorf("redis FT.DROPINDEX %s: %w", name, err)
		}
	}
	r.mu.Lock()
	r.ready = false
	r.lastTry = time.Time{}
	r.mu.Unlock()
	return r.unlinkMatching(ctx, globEscape(r.cfg.Prefix)+"*", nil)
}

// unlinkMatching deletes the keys SCAN MATCH pattern finds (those keep
// accepts, all when keep is nil) on every primary (one on a standalone
// server, each shard's on a Cluster), with single-key UNLINKs pipelined in
// batches of 500 (multi-key UNLINK would cross hash slots on a Cluster),
// and returns how many it deleted.
func (r *Redis) unlinkMatching(ctx context.Context, pattern string, keep func(string) bool) (int, error) {
	var deleted atomic.Int64
	each := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		batch := make([]string, 0, 500)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			cmds, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range batch {
					p.Unlink(ctx, k)
				}
				return nil
			})
			for _, c := range cmds {
				if n, ok := c.(*redis.IntCmd); ok {
					deleted.Add(n.Val())
				}
			}
			batch = batch[:0]
			if err != nil {
				return fmt.Errorf("redis UNLINK: %w", err)
			}
			return nil
		}
		for iter.Next(ctx) {
			if keep != nil && !keep(iter.Val()) {
				continue
			}
			batch = append(batch, iter.Val())
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("redis SCAN: %w", err)
		}
		return flush()
	}
	var err error
	switch c := r.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, each)
	case *redis.Client:
		err = each(ctx, c)
	default:
		err = fmt.Errorf("index: unexpected Redis client %T", r.rdb)
	}
	return int(deleted.Load()), err
}

// globEscape escapes the characters SCAN MATCH treats as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\^-`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Ping checks that the server answers.
func (r *Redis) Ping(ctx context.Context) error { return r.rdb.Ping(ctx).Err() }

// Close stops the background indexing check and closes the connections.
// It deletes nothing.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() { close(r.stopWatch) })
	return r.rdb.Close()
}

// float32Bytes encodes v as little-endian FLOAT32, RediSearch's vector blob.
func float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// breaker is a go-redis hook that fails every command at once for window
// after a network failure, so that a dead or unreachable Redis costs one
// timeout per window instead of one per command. Reply errors (the server
// answered) and cancellations do not open it. It is safe for concurrent use.
type breaker struct {
	window time.Duration
	// openUntil is the Unix nanosecond time until which commands fail
	// without being sent; 0 when closed.
	openUntil atomic.Int64
}

func (b *breaker) DialHook(next redis.DialHook) redis.DialHook { return next }

func (b *breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := b.check(); err != nil {
			cmd.SetErr(err)
			return err
		}
		err := next(ctx, cmd)
		b.observe(err)
		return err
	}
}

func (b *breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := b.check(); err != nil {
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		err := next(ctx, cmds)
		b.observe(err)
		return err
	}
}

func (b *breaker) check() error {
	if until := b.openUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return ErrUnavailable
	}
	return nil
}

// observe opens the breaker on a network failure and closes it on success.
func (b *breaker) observe(err error) {
	var reply redis.Error
	switch {
	case err == nil, errors.As(err, &reply):
		b.openUntil.Store(0) // the server answered
	case errors.Is(err, context.Canceled), errors.Is(err, ErrUnavailable):
	default:
		b.openUntil.Store(time.Now().Add(b.window).UnixNano())
	}
}
