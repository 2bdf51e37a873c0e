package embedding

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
)

// DefaultCacheSize is the number of texts a [Cached] keeps when size is 0.
// At 384 dimensions that is about 15 MB of vectors (61 MB at 1536); the
// keys are SHA-256 digests of the texts (32 bytes), so the texts
// themselves, however long, are not kept.
const DefaultCacheSize = 10_000

// Cached wraps an Embedder with an in-memory LRU of text -> vector, keyed
// by the SHA-256 of the exact text (no normalisation: "Hi" and "hi" are
// different keys). Memory is bounded by the entry count: each holds a
// 32-byte digest and one vector, never the text.
// Identical texts are embedded once:
//   - duplicates within one Embed call are sent to the wrapped embedder
//     once;
//   - texts that another concurrent Embed call is already embedding are
//     not sent again: the caller waits for that result (a single flight
//     per text), while its other misses go to the wrapped embedder as one
//     batch. The cache is re-checked when claiming a text, so a result
//     stored just before is not recomputed.
//
// If the caller that is embedding a text gives up because its context is
// done, the callers waiting on that text do not inherit the cancellation:
// they retry with their own context. A real failure of the wrapped
// embedder is shared with everyone waiting on it and is not cached.
//
// Vectors returned by Cached are shared with the cache and with other
// callers: treat them as read-only and copy before modifying. Cached is
// safe for concurrent use if the wrapped embedder is.
type Cached struct {
	e   Embedder
	dim int
	lru *lru.Cache[[sha256.Size]byte, []float32] // internally locked; keyed by textKey

	hits, misses atomic.Uint64

	mu       sync.Mutex         // guards inflight
	inflight map[string]*flight // texts being embedded right now
}

// flight is one text being embedded by one caller on behalf of all.
type flight struct {
	done chan struct{} // closed when the fields below are final
	vec  []float32
	err  error
	// abandoned means the embedding caller's context ended; waiters retry.
	abandoned bool
}

// Stats is a snapshot of a Cached's counters. Every text passed to a
// successful Embed call counts exactly once, as a hit or a miss.
type Stats struct {
	// Hits counts texts answered without sending them to the wrapped
	// embedder: found in the cache, duplicated earlier in the same call, or
	// being embedded by a concurrent call.
	Hits uint64
	// Misses counts texts sent to the wrapped embedder, including attempts
	// that failed.
	Misses uint64
}

// NewCached returns a Cached holding up to size vectors in front of e.
// Size 0 means DefaultCacheSize (10,000); a negative size or a nil e is an
// error.
func NewCached(e Embedder, size int) (*Cached, error) {
	if e == nil {
		return nil, errors.New("cached embedder: nil Embedder")
	}
	if size < 0 {
		return nil, fmt.Errorf("cached embedder: negative size %d", size)
	}
	if size == 0 {
		size = DefaultCacheSize
	}
	l, err := lru.New[[sha256.Size]byte, []float32](size)
	if err != nil {
		return nil, fmt.Errorf("cached embedder: %w", err)
	}
	return &Cached{e: e, dim: e.Dim(), lru: l, inflight: make(map[string]*flight)}, nil
}

// textKey is the LRU key of a text.
func textKey(t string) [sha256.Size]byte { return sha256.Sum256([]byte(t)) }

// Dim returns the wrapped embedder's Dim.
func (c *Cached) Dim() int { return c.dim }

// Fingerprint returns the wrapped embedder's Fingerprint: caching does not
// change the vector space.
func (c *Cached) Fingerprint() string { return c.e.Fingerprint() }

// Stats returns a snapshot of the hit and miss counters.
func (c *Cached) Stats() Stats {
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load()}
}

// Embed returns one vector per text, in input order, each of length Dim()
// and read-only (see Cached). Errors from the wrapped embedder are returned
// as is; a wrong number of vectors wraps ErrBadResponse and a wrong length
// wraps ErrDimension. No partial result is returned on error.
func (c *Cached) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	var pending []int // positions still without a vector
	for i, t := range texts {
		if v, ok := c.lru.Get(textKey(t)); ok {
			out[i] = v
			c.hits.Add(1)
			continue
		}
		pending = append(pending, i)
	}
	for len(pending) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("cached embed: %w", err)
		}
		// Group pending positions by text, keeping first-seen order.
		positions := make(map[string][]int, len(pending))
		var distinct []string
		for _, i := range pending {
			t := texts[i]
			if _, seen := positions[t]; !seen {
				distinct = append(distinct, t)
			}
			positions[t] = append(positions[t], i)
		}
		fill := func(t string, v []float32) {
			for _, i := range positions[t] {
				out[i] = v
			}
		}

		own, ownFlights, waits := c.claim(distinct, fill)
		if len(own) > 0 {
			c.misses.Add(uint64(len(own)))
			vecs, err := c.lead(ctx, own, ownFlights)
			if err != nil {
				return nil, err
			}
			for k, t := range own {
				fill(t, vecs[k])
				c.hits.Add(uint64(len(positions[t]) - 1))
			}
		}

		pending = pending[:0]
		for _, w := range waits {
			select {
			case <-w.f.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("cached embed: %w", ctx.Err())
			}
			switch {
			case w.f.abandoned:
				pending = append(pending, positions[w.text]...)
			case w.f.err != nil:
				return nil, w.f.err
			default:
				fill(w.text, w.f.vec)
				c.hits.Add(uint64(len(positions[w.text])))
			}
		}
	}
	return out, nil
}

// waiter is a text another caller is embedding.
type waiter struct {
	text string
	f    *flight
}

// claim sorts distinct texts into three groups under c.mu: those now found
// in the cache (passed to fill and counted as hits), those in flight
// elsewhere (returned as waits), and the rest, which the caller now owns
// and must pass to lead with the returned flights.
func (c *Cached) claim(distinct []string, fill func(string, []float32)) (own []string, flights []*flight, waits []waiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range distinct {
		if f, ok := c.inflight[t]; ok {
			waits = append(waits, waiter{t, f})
			continue
		}
		// Re-check the cache: a leader stores its vectors before leaving
		// inflight, so a text absent from both is truly missing.
		if v, ok := c.lru.Get(textKey(t)); ok {
			fill(t, v)
			c.hits.Add(1)
			continue
		}
		f := &flight{done: make(chan struct{})}
		c.inflight[t] = f
		own = append(own, t)
		flights = append(flights, f)
	}
	return own, flights, waits
}

// errLeaderPanicked is given to waiters when the wrapped embedder panics in
// another caller; that caller's goroutine sees the panic itself.
var errLeaderPanicked = errors.New("cached embed: wrapped embedder panicked")

// lead embeds texts with the wrapped embedder, stores the results and
// completes flights, one per text, for anyone waiting on them. It always
// completes the flights, even if the wrapped embedder panics.
func (c *Cached) lead(ctx context.Context, texts []string, flights []*flight) (vecs [][]float32, err error) {
	finished := false
	defer func() {
		if !finished {
			err = errLeaderPanicked
		}
		if err == nil {
			for i, t := range texts {
				c.lru.Add(textKey(t), vecs[i])
			}
		}
		c.mu.Lock()
		for _, t := range texts {
			delete(c.inflight, t)
		}
		c.mu.Unlock()
		abandoned := err != nil && ctx.Err() != nil
		for i, f := range flights {
			if err == nil {
				f.vec = vecs[i]
			} else {
				f.err, f.abandoned = err, abandoned
			}
			close(f.done)
		}
	}()
	vecs, err = c.e.Embed(ctx, texts)
	if err == nil {
		err = c.check(texts, vecs)
	}
	finished = true
	return vecs, err
}

// check verifies the wrapped embedder kept its contract.
func (c *Cached) check(texts []string, vecs [][]float32) error {
	if len(vecs) != len(texts) {
		return fmt.Errorf("cached embed: %w: got %d vectors for %d texts", ErrBadResponse, len(vecs), len(texts))
	}
	for i, v := range vecs {
		if len(v) != c.dim {
			return fmt.Errorf("cached embed: text %d: %w: got %d, want %d", i, ErrDimension, len(v), c.dim)
		}
	}
	return nil
}
