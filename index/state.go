package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Verification state: the adaptive decision policy keeps, per entry, a
// bounded list of observations and one fitted model, both opaque byte
// strings. The state lives exactly as long as its entry: it has the entry's
// expiry and is dropped whenever the entry leaves (Delete, replacement by
// Set, eviction, expiry, DeleteTag, Flush), so a new answer under an old key
// never inherits the old answer's observations. Writing it never touches
// the entry or its vector.

// checkStateKey rejects an empty key.
func checkStateKey(key string) error {
	if key == "" {
		return errors.New("index: key: must not be empty")
	}
	return nil
}

// checkStateArgs rejects an empty key and a max <= 0.
func checkStateArgs(key string, max int) error {
	if err := checkStateKey(key); err != nil {
		return err
	}
	if max <= 0 {
		return fmt.Errorf("index: max %d: must be > 0", max)
	}
	return nil
}

// cloneList returns a deep copy of list.
func cloneList(list [][]byte) [][]byte {
	out := make([][]byte, len(list))
	for i, b := range list {
		out[i] = slices.Clone(b)
		if out[i] == nil {
			out[i] = []byte{}
		}
	}
	return out
}

// AddObservation appends a copy of obs to the observation list of the live
// entry under key and returns a copy of the whole list, oldest first,
// keeping only the newest max observations (max, a count, > 0; older ones
// are dropped, also when an earlier call used a larger max). ok is false,
// and nothing is stored, when key has no live entry (missing, or expired
// but not swept yet). An empty key or a max <= 0 returns an error naming
// the parameter and changes nothing. The list lives on the entry's record:
// it has the entry's expiry and leaves with it (Delete, replacement by Set,
// LRU eviction, expiry, DeleteTag, Flush). It does not count as a use of
// the entry for the LRU.
//
// It is safe for concurrent use: appends to one key are serialised by the
// store's lock, so none is lost, and the bytes are copied outside it.
func (m *Memory) AddObservation(_ context.Context, key string, obs []byte, max int) (list [][]byte, ok bool, err error) {
	if err := checkStateArgs(key, max); err != nil {
		return nil, false, err
	}
	own := slices.Clone(obs)
	if own == nil {
		own = []byte{}
	}
	m.mu.Lock()
	r, found := m.lru.Peek(key)
	if !found || !m.cfg.Now().Before(r.expiresAt) {
		m.mu.Unlock()
		return nil, false, nil
	}
	r.obs = append(r.obs, own)
	if n := len(r.obs); n > max {
		r.obs = slices.Delete(r.obs, 0, n-max) // shifts in place, clears the tail
	}
	snap := slices.Clone(r.obs) // the elements are never modified: copy them unlocked
	m.mu.Unlock()
	return cloneList(snap), true, nil
}

// SetFit stores a copy of fit as the fitted model of the live entry under
// key, replacing the previous one. ok is false, and nothing is stored, when
// key has no live entry (missing, or expired but not swept yet). An empty
// key returns an error. The fit lives on the entry's record and leaves with
// it, as the observations do (see AddObservation).
//
// It is safe for concurrent use; the last of concurrent SetFit calls wins.
func (m *Memory) SetFit(_ context.Context, key string, fit []byte) (ok bool, err error) {
	if err := checkStateKey(key); err != nil {
		return false, err
	}
	own := slices.Clone(fit)
	if own == nil {
		own = []byte{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, found := m.lru.Peek(key)
	if !found || !m.cfg.Now().Before(r.expiresAt) {
		return false, nil
	}
	r.fit.Store(&own)
	return true, nil
}

// Fit returns a copy of the fitted model stored for the live entry under
// key. ok is false when no fit was stored since the entry was last Set, or
// when the entry is gone or expired. An empty key returns an error.
//
// It is safe for concurrent use. The store's lock is held only to find the
// entry; the fit is an atomically swapped value, loaded and copied outside
// the lock, so readers never wait for a SetFit.
func (m *Memory) Fit(_ context.Context, key string) (fit []byte, ok bool, err error) {
	if err := checkStateKey(key); err != nil {
		return nil, false, err
	}
	m.mu.Lock()
	r, found := m.lru.Peek(key)
	live := found && m.cfg.Now().Before(r.expiresAt)
	m.mu.Unlock()
	if !live {
		return nil, false, nil
	}
	p := r.fit.Load()
	if p == nil {
		return nil, false, nil
	}
	return append([]byte{}, *p...), true, nil
}
