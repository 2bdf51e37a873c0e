package index

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// LeaseState is the state of one key's cross-replica lease (see
// Redis.AcquireLease and semantic.Leaser).
type LeaseState int

const (
	// LeaseFree: nobody holds the lease (never taken, released, or
	// expired because its holder died).
	LeaseFree LeaseState = iota
	// LeaseHeld: a process is fetching the answer.
	LeaseHeld
	// LeaseAbandoned: the holder's answer was not stored; waiters go
	// upstream themselves.
	LeaseAbandoned
)

// abandonedMark is the value of an abandoned lease; tokens are 32 hex
// digits, so no holder's token equals it.
const abandonedMark = "abandoned"

// refreshLeaseScript extends KEYS[1] to ARGV[2] ms when it still holds the
// token ARGV[1]; it returns 1 if it did.
var refreshLeaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

// releaseLeaseScript ends the lease KEYS[1] when it still holds the token
// ARGV[1]: it deletes it, or with ARGV[2] > 0 replaces it by the
// abandoned mark ARGV[3] for ARGV[2] ms.
var releaseLeaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1`)

func (r *Redis) leaseKey(key string) string { return r.cfg.Prefix + "lease:" + r.slotted(key) }

// AcquireLease takes the lease on the exact key key for ttl (>= 1 ms) with
// SET NX PX when nobody holds it, and returns its random token; ok is false
// when another process holds it or it is abandoned. The lease lives under
// Prefix + "lease:" + key, so Flush removes it with the rest. Errors wrap
// the Redis failure.
func (r *Redis) AcquireLease(ctx context.Context, key string, ttl time.Duration) (token string, ok bool, err error) {
	if ttl < time.Millisecond {
		return "", false, fmt.Errorf("index: lease ttl %v: must be at least 1ms", ttl)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("index: lease token: %w", err)
	}
	token = hex.EncodeToString(b[:])
	ok, err = r.rdb.SetNX(ctx, r.leaseKey(key), token, ttl).Result()
	if err != nil {
		return "", false, fmt.Errorf("redis SET NX PX: %w", err)
	}
	if !ok {
		return "", false, nil
	}
	return token, true, nil
}

// RefreshLease extends token's lease on key to ttl and reports whether token
// still held it (one Lua script: GET, compare, PEXPIRE).
func (r *Redis) RefreshLease(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	n, err := refreshLeaseScript.Run(ctx, r.rdb, []string{r.leaseKey(key)}, token, ttl.Milliseconds()).Int64()
	if err != nil {
		return false, fmt.Errorf("redis lease refresh: %w", err)
	}
	return n == 1, nil
}

// ReleaseLease ends token's lease on key: it deletes it when stored, or
// leaves the abandoned mark for abandon (deleting it when abandon < 1 ms).
// A lease token no longer holds (expired, taken over) is left alone.
func (r *Redis) ReleaseLease(ctx context.Context, key, token string, stored bool, abandon time.Duration) error {
	ms := abandon.Milliseconds()
	if stored {
		ms = 0
	}
	if err := releaseLeaseScript.Run(ctx, r.rdb, []string{r.leaseKey(key)}, token, ms, abandonedMark).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis lease release: %w", err)
	}
	return nil
}

// LeaseState reports the state of the lease on key (one GET).
func (r *Redis) LeaseState(ctx context.Context, key string) (LeaseState, error) {
	v, err := r.rdb.Get(ctx, r.leaseKey(key)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return LeaseFree, nil
	case err != nil:
		return LeaseFree, fmt.Errorf("redis GET lease: %w", err)
	case v == abandonedMark:
		return LeaseAbandoned, nil
	}
	return LeaseHeld, nil
}
