package index

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// In Redis, an entry's verification state lives outside its vector hash, so
// that writing it never re-indexes the vector: the observations are a LIST
// under Prefix + "o:" + key and the fit a STRING under Prefix + "f:" + key.
// Both are given the exact entry's expiry when written, by a script that
// reads it (PEXPIRETIME, or PTTL on servers before Redis 7) in the same
// atomic step, so they expire in the same millisecond as the entry. Set (replacing an entry), Delete and
// DeleteTag delete them with the entry in one transaction; Flush deletes
// them with every other key under Prefix. Like the entry's own keys, they
// carry no Redis Cluster hash tag: they follow the entry's key naming.

func (r *Redis) obsKey(key string) string { return r.cfg.Prefix + "o:" + r.slotted(key) }
func (r *Redis) fitKey(key string) string { return r.cfg.Prefix + "f:" + r.slotted(key) }

// addObservationScript appends ARGV[1] to the list KEYS[2], keeps its newest
// ARGV[2] elements, gives it the remaining TTL of the entry KEYS[1] and
// returns the list; it returns nil and writes nothing when KEYS[1] is gone
// (PTTL -2) or expires within the millisecond (PTTL 0). An entry without
// expiry (PTTL -1, never written by Set) gets a state without expiry.
var addObservationScript = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 or ttl == 0 then return false end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
if ttl > 0 then
  ` + expireLikeEntry + `
else
  redis.call('PERSIST', KEYS[2])
end
return redis.call('LRANGE', KEYS[2], 0, -1)
`)

// expireLikeEntry (a Lua fragment; ttl holds KEYS[1]'s PTTL, > 0) gives
// KEYS[2] the absolute expiry of KEYS[1], read with PEXPIRETIME (Redis 7),
// so both expire in the same millisecond: a relative PEXPIRE of the PTTL
// read a moment earlier can land one millisecond later. A server without
// PEXPIRETIME gets that PEXPIRE.
const expireLikeEntry = `local at = redis.pcall('PEXPIRETIME', KEYS[1])
  if type(at) == 'number' and at > 0 then
    redis.call('PEXPIREAT', KEYS[2], at)
  else
    redis.call('PEXPIRE', KEYS[2], ttl)
  end`

// setFitScript sets KEYS[2] to ARGV[1] with the remaining TTL of the entry
// KEYS[1] and returns 1; it returns 0 and writes nothing when KEYS[1] is
// gone or expires within the millisecond.
var setFitScript = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 or ttl == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
if ttl > 0 then
  ` + expireLikeEntry + `
end
return 1
`)

// fitScript returns KEYS[2] when the entry KEYS[1] exists, else nil.
var fitScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('GET', KEYS[2])
`)

// AddObservation appends obs to the observation list of the entry under key
// (a LIST under Prefix + "o:" + key) and returns the whole list, oldest
// first, keeping only the newest max observations (max, a count, > 0; older
// ones are dropped, also when an earlier call used a larger max). The list
// is given the entry's remaining TTL (milliseconds, read with PTTL). ok is
// false, and nothing is written, when key has no live entry. An empty key
// or a max <= 0 returns an error naming the parameter and writes nothing; a
// failed command returns a wrapped error (ErrUnavailable while the circuit
// breaker is open).
//
// It is safe for concurrent use, also across processes sharing the
// database: the read of the TTL, the append, the trim, the expiry and the
// read-back run as one Lua script, atomically, so concurrent appends never
// lose an observation and the list is never left without the entry's TTL.
func (r *Redis) AddObservation(ctx context.Context, key string, obs []byte, max int) (list [][]byte, ok bool, err error) {
	if err := checkStateArgs(key, max); err != nil {
		return nil, false, err
	}
	res, err := addObservationScript.Run(ctx, r.rdb, []string{r.exactKey(key), r.obsKey(key)}, obs, strconv.Itoa(max)).StringSlice()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis observation script: %w", err)
	}
	list = make([][]byte, len(res))
	for i, s := range res {
		list[i] = []byte(s)
	}
	return list, true, nil
}

// SetFit stores fit as the fitted model of the entry under key (a STRING
// under Prefix + "f:" + key), replacing the previous one, with the entry's
// remaining TTL (milliseconds, read with PTTL). ok is false, and nothing is
// written, when key has no live entry. An empty key returns an error; a
// failed command returns a wrapped error.
//
// It is safe for concurrent use: the read of the TTL and the write run as
// one Lua script, atomically; the last of concurrent SetFit calls wins.
func (r *Redis) SetFit(ctx context.Context, key string, fit []byte) (ok bool, err error) {
	if err := checkStateKey(key); err != nil {
		return false, err
	}
	n, err := setFitScript.Run(ctx, r.rdb, []string{r.exactKey(key), r.fitKey(key)}, fit).Int64()
	if err != nil {
		return false, fmt.Errorf("redis fit script: %w", err)
	}
	return n == 1, nil
}

// Fit returns the fitted model stored for the entry under key. ok is false
// when no fit was stored since the entry was last Set, or when the entry is
// gone (checked in the same script as the read, so a fit is never returned
// for an entry that has left). An empty key returns an error; a failed
// command returns a wrapped error. It is safe for concurrent use.
func (r *Redis) Fit(ctx context.Context, key string) (fit []byte, ok bool, err error) {
	if err := checkStateKey(key); err != nil {
		return nil, false, err
	}
	s, err := fitScript.Run(ctx, r.rdb, []string{r.exactKey(key), r.fitKey(key)}).Text()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis fit script: %w", err)
	}
	return []byte(s), true, nil
}

// The adaptive policy's budget rule (semantic.RuleBudget) keeps its verdict
// counts, shared by every process using the same Prefix, in one HASH under
// Prefix + "adaptive:verdicts": one integer field per verdict kind (the
// field names are the caller's). It has no TTL (a verdict stays true as
// long as the embedder, whose fingerprint the index pins, stays); Flush
// deletes it with every other key under Prefix.

func (r *Redis) verdictsKey() string { return r.cfg.Prefix + "adaptive:verdicts" }

// AddVerdict adds 1 to the shared count under field and returns every
// count, the new one included, read in the same transaction (MULTI/EXEC),
// so concurrent calls from several processes never lose a verdict. An
// empty field returns an error naming it; a failed command returns a
// wrapped error (ErrUnavailable while the circuit breaker is open). It is
// safe for concurrent use.
func (r *Redis) AddVerdict(ctx context.Context, field string) (map[string]int64, error) {
	if field == "" {
		return nil, errors.New("index: AddVerdict: field is empty")
	}
	var all *redis.MapStringStringCmd
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HIncrBy(ctx, r.verdictsKey(), field, 1)
		all = p.HGetAll(ctx, r.verdictsKey())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis verdicts: %w", err)
	}
	return parseCounts(all.Val())
}

// Verdicts returns every shared verdict count (empty when none was added).
// A failed command returns a wrapped error. It is safe for concurrent use.
func (r *Redis) Verdicts(ctx context.Context) (map[string]int64, error) {
	all, err := r.rdb.HGetAll(ctx, r.verdictsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("redis verdicts: %w", err)
	}
	return parseCounts(all)
}

func parseCounts(m map[string]string) (map[string]int64, error) {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("redis verdicts: field %q: %w", k, err)
		}
		out[k] = n
	}
	return out, nil
}
