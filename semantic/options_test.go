package semantic_test

import (
	"context"
	"testing"
	"time"

	"github.com/semcache/semcache/semantic"
)

func doWith(t *testing.T, c *semantic.Cache, id semantic.Identity, o semantic.Options, u *upstream) semantic.Result {
	t.Helper()
	r, err := c.DoWith(context.Background(), id, o, u.fetch)
	if err != nil {
		t.Fatalf("DoWith: %v", err)
	}
	return r
}

// TestOptionsTTL: a request's TTL replaces the configured one for the entry
// it stores.
func TestOptionsTTL(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.8, TTL: time.Hour}, nil)
	u := &upstream{resp: ok200("answer")}
	id := ident(t, "t", promptBase)
	doWith(t, e.cache, id, semantic.Options{TTL: 10 * time.Second}, u)
	e.clock.Advance(9 * time.Second)
	wantOutcome(t, doWith(t, e.cache, id, semantic.Options{}, u), semantic.Hit, semantic.TierExact)
	e.clock.Advance(2 * time.Second)
	wantOutcome(t, doWith(t, e.cache, id, semantic.Options{}, u), semantic.Miss, "")
	wantCalls(t, u, 2)
}

// TestOptionsNoStoreThenPlain: a no-store request and a plain one for the
// same key are separate flights, so the plain one's answer is stored.
func TestOptionsNoStoreThenPlain(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.8}, nil)
	u := &upstream{resp: ok200("answer")}
	id := ident(t, "t", promptBase)
	if r := doWith(t, e.cache, id, semantic.Options{NoStore: true}, u); r.Stored {
		t.Error("no-store answer was stored")
	}
	if n, _ := e.cache.Len(context.Background()); n != 0 {
		t.Errorf("Len %d after no-store, want 0", n)
	}
	if r := doWith(t, e.cache, id, semantic.Options{}, u); !r.Stored {
		t.Error("plain answer not stored")
	}
}

func TestEffectiveThresholdOnlyTightens(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.8}, nil)
	for _, tc := range []struct{ asked, want float64 }{{0, 0.8}, {0.5, 0.8}, {0.8, 0.8}, {0.9, 0.9}, {1, 1}} {
		if got := e.cache.EffectiveThreshold(tc.asked); got != tc.want {
			t.Errorf("EffectiveThreshold(%v) = %v, want %v", tc.asked, got, tc.want)
		}
	}
}
