package semantic_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/semcache/semcache/semantic"
)

// An entry stored as JSON by an earlier version (a data directory or a
// Redis database kept across an upgrade) is still served, and one in a
// format this build cannot read is a counted miss, never a wrong answer.
func TestServesEntriesOfEarlierFormat(t *testing.T) {
	e := newEnv(t, semantic.Config{Threshold: 0.9}, nil)
	ctx := context.Background()
	old := ident(t, "t1", promptBase)
	body := completion("Open Settings.", 7, 3, reason("stop"))
	raw, err := json.Marshal(semantic.Entry{Key: old.Key, Scope: old.Scope, Response: string(body),
		ContentType: "application/json", CreatedAt: e.clock.Now().UnixMilli(), PromptTokens: 7, CompletionTokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.mem.Set(ctx, old.Key, old.Scope, raw, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	up := &upstream{resp: ok200("fresh")}
	r, err := e.cache.Do(ctx, old, up.fetch)
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != semantic.Hit || r.Tier != semantic.TierExact || string(r.Body) != string(body) || up.calls.Load() != 0 {
		t.Fatalf("JSON entry: outcome %s tier %s body %q, %d upstream calls; want the stored answer",
			r.Outcome, r.Tier, r.Body, up.calls.Load())
	}

	later := ident(t, "t1", promptFar)
	if err := e.mem.Set(ctx, later.Key, later.Scope, []byte("\x00SE\x09future"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	before := e.cache.Stats().LookupErrors.Load()
	r, err = e.cache.Do(ctx, later, up.fetch)
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != semantic.Miss || up.calls.Load() != 1 || e.cache.Stats().LookupErrors.Load() <= before {
		t.Fatalf("unreadable entry: outcome %s, %d upstream calls, lookup errors %d→%d; want a counted miss",
			r.Outcome, up.calls.Load(), before, e.cache.Stats().LookupErrors.Load())
	}
	// The fresh answer replaced it in the current format.
	if r, _ := e.cache.Do(ctx, later, up.fetch); r.Outcome != semantic.Hit || up.calls.Load() != 1 {
		t.Fatalf("after the miss: outcome %s, %d upstream calls; want a hit on the stored answer", r.Outcome, up.calls.Load())
	}
}
