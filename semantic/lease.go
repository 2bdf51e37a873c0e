package semantic

import (
	"context"
	"fmt"
	"time"

	"github.com/semcache/semcache/index"
)

// Leaser is implemented by stores that several processes share (index.Redis)
// so that concurrent identical misses on different replicas make one
// upstream call: the first to miss takes a short lease on the exact key,
// the others wait for the entry it stores. Leases are advisory: a lost or
// expired lease costs at most an extra upstream call, never a wrong answer,
// because a waiter serves only an entry stored under its own exact key.
// Implementations must be safe for concurrent use.
type Leaser interface {
	// AcquireLease takes the lease on key for ttl when nobody holds it
	// (SET NX PX) and returns the token that names this holder; ok is
	// false when another holder has it.
	AcquireLease(ctx context.Context, key string, ttl time.Duration) (token string, ok bool, err error)
	// RefreshLease extends the lease to ttl while token holds it and
	// reports whether it still did.
	RefreshLease(ctx context.Context, key, token string, ttl time.Duration) (bool, error)
	// ReleaseLease ends token's lease. With stored false (the answer was
	// not stored: an upstream error, an incomplete answer) it leaves an
	// abandoned mark for abandon instead, so that waiters make their own
	// calls at once rather than queueing for the lease one after another.
	// A lease token no longer holds is left alone.
	ReleaseLease(ctx context.Context, key, token string, stored bool, abandon time.Duration) error
	// LeaseState reports whether the lease on key is free, held or
	// abandoned (see index.LeaseState).
	LeaseState(ctx context.Context, key string) (index.LeaseState, error)
}

// LeaseConfig tunes the cross-replica lease (Config.Lease). Zero values
// mean the defaults; the lease is used only when the Store is a Leaser.
type LeaseConfig struct {
	// TTL is the lease's lifetime, renewed every TTL/3 while its holder
	// fetches; a holder that dies frees it within TTL. 0 means
	// DefaultLeaseTTL; negative turns the lease off (every replica makes
	// its own call, as without a shared store).
	TTL time.Duration
	// Wait bounds how long a waiter waits for a live holder's entry
	// before it makes its own call. 0 means min(DefaultLeaseWait,
	// UpstreamTimeout/2), so that a waiter that gives up still has time
	// for its own call; negative is an error.
	Wait time.Duration
	// Poll is how often a waiter looks for the entry and the lease; 0
	// means DefaultLeasePoll; negative is an error.
	Poll time.Duration
}

// Lease defaults. DefaultLeaseTTL is short so that a killed holder delays
// its waiters by about 2 s; it is renewed every 667 ms, far more often than
// a Redis round trip (under 1 ms on a LAN) can fail by chance.
// DefaultLeasePoll adds at most 10 ms to a waiter's answer and costs each
// waiting process two Redis commands per poll per key.
const (
	DefaultLeaseTTL  = 2 * time.Second
	DefaultLeaseWait = 30 * time.Second
	DefaultLeasePoll = 10 * time.Millisecond
	// MinLeaseTTL is the shortest lease accepted. In a trial with 30
	// concurrent requests over three replicas on 2 cores, leases of 3 to
	// 100 ms expired before their renewal (3 and 2 upstream calls instead
	// of 1); 300 ms held.
	MinLeaseTTL = 500 * time.Millisecond
	// leaseAbandon is how long an abandoned mark stays: long enough for
	// every waiter's next poll, short enough that a later request takes a
	// new lease.
	leaseAbandon = time.Second
)

// resolve fills the defaults and validates c; upstream is
// Config.UpstreamTimeout, already resolved.
func (c LeaseConfig) resolve(upstream time.Duration) (LeaseConfig, error) {
	if c.Wait < 0 {
		return c, fmt.Errorf("semantic: Lease.Wait %v: must not be negative", c.Wait)
	}
	if c.Poll < 0 {
		return c, fmt.Errorf("semantic: Lease.Poll %v: must not be negative", c.Poll)
	}
	if c.TTL > 0 && c.TTL < MinLeaseTTL {
		return c, fmt.Errorf("semantic: Lease.TTL %v: want at least %v, or negative for off", c.TTL, MinLeaseTTL)
	}
	if c.TTL == 0 {
		c.TTL = DefaultLeaseTTL
	}
	if c.Wait == 0 {
		c.Wait = min(DefaultLeaseWait, upstream/2)
	}
	if c.Poll == 0 {
		c.Poll = DefaultLeasePoll
	}
	return c, nil
}

// leaser returns the store's Leaser when a request with options o takes
// part in the lease: not a no-cache request (it must go upstream) nor a
// no-store one (it stores nothing to wait for), and only when the lease is
// on.
func (c *Cache) leaser(o Options) Leaser {
	l, ok := c.store.(Leaser)
	if !ok || c.cfg.Lease.TTL < 0 || o.SkipLookup || o.NoStore {
		return nil
	}
	return l
}

// leaseOrWait runs after both tiers missed, inside the key's single flight.
// It takes the lease on id.Key, or waits for the holder's entry. served is
// true when that entry answers the request (r is then a miss coalesced
// with another replica's call); otherwise the caller makes its own call and
// then calls release, after storing the answer, with whether it stored it.
// Store failures are counted and fail open: the caller makes its own call.
func (c *Cache) leaseOrWait(ctx context.Context, l Leaser, id Identity, o Options) (r Result, served bool, release func(stored bool)) {
	cfg := c.cfg.Lease
	noop := func(bool) {}
	deadline := time.Now().Add(cfg.Wait)
	waited := false
	fallback := func() (Result, bool, func(bool)) {
		if waited {
			c.stats.LeaseFallbacks.Add(1)
		}
		return Result{}, false, noop
	}
	for {
		token, ok, err := l.AcquireLease(ctx, id.Key, cfg.TTL)
		if err != nil {
			c.stats.LookupErrors.Add(1)
			c.faults.warn("cache lease failed", "key", id.Key, "err", err)
			return fallback()
		}
		if ok {
			// Double check: a holder stores its entry before it releases,
			// so an entry stored by a holder that finished between this
			// flight's lookup and now is found here.
			if r, ok := c.getEntry(ctx, id.Key, o); ok {
				_ = l.ReleaseLease(context.WithoutCancel(ctx), id.Key, token, true, 0)
				if !waited {
					r.Tier = TierExact // as the re-check at the flight's start would have found it
					return r, true, noop
				}
				return c.leased(r), true, noop
			}
			if waited {
				c.stats.LeaseFallbacks.Add(1) // the holder died (its lease expired) or released without our seeing the entry
			}
			stop := c.refreshLease(ctx, l, id.Key, token)
			return Result{}, false, func(stored bool) {
				stop()
				if err := l.ReleaseLease(context.WithoutCancel(ctx), id.Key, token, stored, leaseAbandon); err != nil {
					c.faults.warn("cache lease release failed", "key", id.Key, "err", err)
				}
			}
		}
		if !waited {
			waited = true
			c.stats.LeaseWaits.Add(1)
		}
		for {
			if !time.Now().Before(deadline) {
				return fallback()
			}
			t := time.NewTimer(cfg.Poll)
			select {
			case <-ctx.Done():
				t.Stop()
				return fallback()
			case <-t.C:
			}
			if r, ok := c.getEntry(ctx, id.Key, o); ok {
				return c.leased(r), true, noop
			}
			st, err := l.LeaseState(ctx, id.Key)
			if err != nil {
				c.stats.LookupErrors.Add(1)
				c.faults.warn("cache lease failed", "key", id.Key, "err", err)
				return fallback()
			}
			if st == index.LeaseAbandoned {
				return fallback()
			}
			if st == index.LeaseFree {
				break // the holder died or finished without our seeing the entry: try to take over
			}
		}
	}
}

// leased turns an entry another process stored while this one waited into
// this request's answer: a miss (the request waited for an upstream call,
// as one coalesced in a single flight does), never a hit, so hit rates and
// tokens saved stay what the cache itself served.
func (c *Cache) leased(r Result) Result {
	c.stats.LeaseServed.Add(1)
	r.Outcome, r.Tier, r.Leased = Miss, "", true
	r.savedPrompt, r.savedCompletion, r.savedModel = 0, 0, ""
	return r
}

// refreshLease renews the lease every TTL/3 until the returned stop is
// called. A lost lease is not an error: the fetch goes on, and at worst
// another replica makes a second call.
func (c *Cache) refreshLease(ctx context.Context, l Leaser, key, token string) (stop func()) {
	ttl := c.cfg.Lease.TTL
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if held, err := l.RefreshLease(context.WithoutCancel(ctx), key, token, ttl); err != nil || !held {
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
