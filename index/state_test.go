package index

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/semcache/semcache/index/redistest"
)

// stateStore is what the verification-state tests need of Memory and Redis.
type stateStore interface {
	taggedStore
	Delete(ctx context.Context, key string) (bool, error)
	AddObservation(ctx context.Context, key string, obs []byte, max int) ([][]byte, bool, error)
	SetFit(ctx context.Context, key string, fit []byte) (bool, error)
	Fit(ctx context.Context, key string) ([]byte, bool, error)
}

var (
	_ stateStore = (*Memory)(nil)
	_ stateStore = (*Redis)(nil)
)

// stateBackend is one store under test. newStore returns, for Redis, a raw
// client to look at the keys behind the store's back; nil for Memory.
type stateBackend struct {
	name     string
	newStore func(t *testing.T) (stateStore, *redis.Client)
}

// stateBackends returns the in-process store and Redis (with the search
// module when SEMCACHE_TEST_REDISEARCH_MODULE is set, else plain
// redis-server; skipped with a line when none is installed). The tests
// store exact-only entries, which need no search module.
func stateBackends() []stateBackend {
	return []stateBackend{
		{"memory", func(t *testing.T) (stateStore, *redis.Client) {
			m, _ := newTestMemory(t, "flat", 0)
			return m, nil
		}},
		{"redis", func(t *testing.T) (stateStore, *redis.Client) {
			srv := startTagRedis(t)
			r := newTagRedis(t, srv)
			opts, err := redis.ParseURL(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			raw := redis.NewClient(opts)
			t.Cleanup(func() { raw.Close() })
			return r, raw
		}},
	}
}

// stAdd appends obs to key's list with max and returns the list as strings.
func stAdd(t *testing.T, s stateStore, key, obs string, max int) ([]string, bool) {
	t.Helper()
	list, ok, err := s.AddObservation(context.Background(), key, []byte(obs), max)
	if err != nil {
		t.Fatalf("AddObservation(%s, %s, %d): %v", key, obs, max, err)
	}
	if !ok && list != nil {
		t.Errorf("AddObservation(%s) returned a list %q with ok false", key, list)
	}
	out := make([]string, len(list))
	for i, b := range list {
		out[i] = string(b)
	}
	return out, ok
}

func stSetFit(t *testing.T, s stateStore, key, fit string) bool {
	t.Helper()
	ok, err := s.SetFit(context.Background(), key, []byte(fit))
	if err != nil {
		t.Fatalf("SetFit(%s): %v", key, err)
	}
	return ok
}

func stFit(t *testing.T, s stateStore, key string) (string, bool) {
	t.Helper()
	fit, ok, err := s.Fit(context.Background(), key)
	if err != nil {
		t.Fatalf("Fit(%s): %v", key, err)
	}
	if !ok && fit != nil {
		t.Errorf("Fit(%s) returned %q with ok false", key, fit)
	}
	return string(fit), ok
}

// stKeys counts the Redis state keys of key; 0 for Memory (raw nil).
func stKeys(t *testing.T, raw *redis.Client, key string) int64 {
	t.Helper()
	if raw == nil {
		return 0
	}
	n, err := raw.Exists(context.Background(), "semcache:o:"+key, "semcache:f:"+key).Result()
	if err != nil {
		t.Fatalf("EXISTS: %v", err)
	}
	return n
}

// stWrite gives key two observations and a fit.
func stWrite(t *testing.T, s stateStore, key string) {
	t.Helper()
	stAdd(t, s, key, "obs-1", 10)
	if got, ok := stAdd(t, s, key, "obs-2", 10); !ok || !slices.Equal(got, []string{"obs-1", "obs-2"}) {
		t.Fatalf("AddObservation(%s) = %q %v, want [obs-1 obs-2]", key, got, ok)
	}
	if !stSetFit(t, s, key, "fit of "+key) {
		t.Fatalf("SetFit(%s) found no entry", key)
	}
}

// wantGone checks that key has no entry and no state: reads miss, writes
// are refused, and (Redis) no state key exists.
func wantGone(t *testing.T, s stateStore, raw *redis.Client, key string) {
	t.Helper()
	if _, ok := stFit(t, s, key); ok {
		t.Errorf("Fit(%s) found a fit of an entry that is gone", key)
	}
	if got, ok := stAdd(t, s, key, "late", 10); ok {
		t.Errorf("AddObservation(%s) stored %q for an entry that is gone", key, got)
	}
	if stSetFit(t, s, key, "late") {
		t.Errorf("SetFit(%s) stored a fit for an entry that is gone", key)
	}
	if n := stKeys(t, raw, key); n != 0 {
		t.Errorf("%d state keys of %s left", n, key)
	}
}

// wantFresh checks that the live entry under key starts with no state: no
// fit, and a first observation that is alone in the list.
func wantFresh(t *testing.T, s stateStore, key string) {
	t.Helper()
	if fit, ok := stFit(t, s, key); ok {
		t.Errorf("Fit(%s) = %q: the entry inherited an old fit", key, fit)
	}
	if got, ok := stAdd(t, s, key, "fresh", 10); !ok || !slices.Equal(got, []string{"fresh"}) {
		t.Errorf("AddObservation(%s) = %q %v, want [fresh]: the entry inherited old observations", key, got, ok)
	}
}

// TestStateAppendAndCap: observations come back oldest first, capped at the
// newest max; a fit is replaced by the next.
func TestStateAppendAndCap(t *testing.T) {
	for _, b := range stateBackends() {
		t.Run(b.name, func(t *testing.T) {
			s, _ := b.newStore(t)
			tsSet(t, s, "k", nil)
			steps := []struct {
				obs  string
				max  int
				want []string
			}{
				{"o1", 3, []string{"o1"}},
				{"o2", 3, []string{"o1", "o2"}},
				{"o3", 3, []string{"o1", "o2", "o3"}},
				{"o4", 3, []string{"o2", "o3", "o4"}},
				{"o5", 3, []string{"o3", "o4", "o5"}},
				{"o6", 2, []string{"o5", "o6"}}, // a smaller max trims older ones too
				{"o7", 1, []string{"o7"}},
				{"", 5, []string{"o7", ""}}, // an empty observation is one
			}
			for _, st := range steps {
				got, ok := stAdd(t, s, "k", st.obs, st.max)
				if !ok || !slices.Equal(got, st.want) {
					t.Errorf("AddObservation(%q, max %d) = %q %v, want %q", st.obs, st.max, got, ok, st.want)
				}
			}

			if fit, ok := stFit(t, s, "k"); ok {
				t.Errorf("Fit before SetFit = %q", fit)
			}
			for _, fit := range []string{"fit-1", "fit-2, longer"} {
				if !stSetFit(t, s, "k", fit) {
					t.Fatalf("SetFit(%s) found no entry", fit)
				}
				if got, ok := stFit(t, s, "k"); !ok || got != fit {
					t.Errorf("Fit = %q %v, want %q", got, ok, fit)
				}
			}
			if v, ok, err := s.Get(context.Background(), "k"); err != nil || !ok || string(v) != "value of k" {
				t.Errorf("Get after state writes = %q %v %v: the entry changed", v, ok, err)
			}
		})
	}
}

// TestStateMissingKey: state writes for a key without an entry are refused
// and write nothing.
func TestStateMissingKey(t *testing.T) {
	for _, b := range stateBackends() {
		t.Run(b.name, func(t *testing.T) {
			s, raw := b.newStore(t)
			tsSet(t, s, "other", nil)
			wantGone(t, s, raw, "nope")
			// Another key's state is not another entry's.
			if _, ok := stFit(t, s, "other"); ok {
				t.Error("Fit of an entry never given one found a fit")
			}
		})
	}
}

// TestStateRejectsBadInput: an empty key or a max <= 0 is an error naming
// the parameter, and changes nothing.
func TestStateRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	for _, b := range stateBackends() {
		t.Run(b.name, func(t *testing.T) {
			s, raw := b.newStore(t)
			tsSet(t, s, "k", nil)
			stAdd(t, s, "k", "o1", 10)
			stSetFit(t, s, "k", "fit")

			for _, max := range []int{0, -1} {
				if _, _, err := s.AddObservation(ctx, "k", []byte("bad"), max); err == nil || !strings.Contains(err.Error(), "max") {
					t.Errorf("AddObservation(max %d): err = %v, want one naming max", max, err)
				}
			}
			if _, _, err := s.AddObservation(ctx, "", []byte("bad"), 10); err == nil || !strings.Contains(err.Error(), "key") {
				t.Errorf("AddObservation(key \"\"): err = %v, want one naming key", err)
			}
			if _, err := s.SetFit(ctx, "", []byte("bad")); err == nil || !strings.Contains(err.Error(), "key") {
				t.Errorf("SetFit(key \"\"): err = %v, want one naming key", err)
			}
			if _, _, err := s.Fit(ctx, ""); err == nil || !strings.Contains(err.Error(), "key") {
				t.Errorf("Fit(key \"\"): err = %v, want one naming key", err)
			}

			if got, _ := stAdd(t, s, "k", "o2", 10); !slices.Equal(got, []string{"o1", "o2"}) {
				t.Errorf("list after rejected calls = %q, want [o1 o2]", got)
			}
			if got, _ := stFit(t, s, "k"); got != "fit" {
				t.Errorf("fit after rejected calls = %q, want fit", got)
			}
			if n := stKeys(t, raw, ""); n != 0 {
				t.Errorf("%d state keys for the empty key", n)
			}
		})
	}
}

// TestStateLeavesWithEntry: every way an entry leaves drops its state, and
// a later entry under the same key starts with none; other keys keep theirs.
func TestStateLeavesWithEntry(t *testing.T) {
	ctx := context.Background()
	ways := []struct {
		name    string
		remove  func(t *testing.T, s stateStore)
		replace bool // the entry is still there, with a new answer
		flush   bool // every key goes, "other" too
	}{
		{"Delete", func(t *testing.T, s stateStore) {
			if ok, err := s.Delete(ctx, "k"); err != nil || !ok {
				t.Fatalf("Delete = %v %v", ok, err)
			}
		}, false, false},
		{"Set replaces", func(t *testing.T, s stateStore) {
			tsSet(t, s, "k", nil)
		}, true, false},
		{"DeleteTag", func(t *testing.T, s stateStore) {
			if n := tsDeleteTag(t, s, "doc"); n != 1 {
				t.Fatalf("DeleteTag = %d, want 1", n)
			}
		}, false, false},
		{"Flush", func(t *testing.T, s stateStore) {
			if _, err := s.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
		}, false, true},
	}
	for _, b := range stateBackends() {
		for _, w := range ways {
			t.Run(b.name+"/"+w.name, func(t *testing.T) {
				s, raw := b.newStore(t)
				tsSet(t, s, "k", nil, "doc")
				tsSet(t, s, "other", nil)
				stWrite(t, s, "k")
				stWrite(t, s, "other")
				if n := stKeys(t, raw, "k"); raw != nil && n != 2 {
					t.Fatalf("%d state keys of k before, want 2", n)
				}

				w.remove(t, s)

				if w.replace {
					if n := stKeys(t, raw, "k"); n != 0 {
						t.Errorf("%d state keys of the replaced entry left", n)
					}
					wantFresh(t, s, "k")
				} else {
					wantGone(t, s, raw, "k")
					tsSet(t, s, "k", nil)
					wantFresh(t, s, "k")
				}
				if w.flush {
					wantGone(t, s, raw, "other")
					return
				}
				if got, ok := stAdd(t, s, "other", "obs-3", 10); !ok || !slices.Equal(got, []string{"obs-1", "obs-2", "obs-3"}) {
					t.Errorf("other's list = %q %v: removing k touched it", got, ok)
				}
				if got, ok := stFit(t, s, "other"); !ok || got != "fit of other" {
					t.Errorf("other's fit = %q %v: removing k touched it", got, ok)
				}
			})
		}
	}
}

// TestStateConcurrent: 8 goroutines x 50 appends to one key lose nothing
// and keep each writer's order, while SetFit and Fit race on the same key
// (run with -race).
func TestStateConcurrent(t *testing.T) {
	const writers, perWriter = 8, 50
	ctx := context.Background()
	for _, b := range stateBackends() {
		t.Run(b.name, func(t *testing.T) {
			s, raw := b.newStore(t)
			tsSet(t, s, "k", nil)
			var wg sync.WaitGroup
			errs := make(chan error, writers+2)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perWriter {
						obs := fmt.Sprintf("w%d:i%04d", w, i) // 9 bytes
						if _, ok, err := s.AddObservation(ctx, "k", []byte(obs), writers*perWriter); err != nil || !ok {
							errs <- fmt.Errorf("AddObservation(%s) = %v %v", obs, ok, err)
							return
						}
					}
				}()
			}
			fits := map[string]bool{}
			for i := range perWriter {
				fits[fmt.Sprintf("fit-%d", i)] = true
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					if ok, err := s.SetFit(ctx, "k", fmt.Appendf(nil, "fit-%d", i)); err != nil || !ok {
						errs <- fmt.Errorf("SetFit = %v %v", ok, err)
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				for range perWriter {
					fit, ok, err := s.Fit(ctx, "k")
					if err != nil || (ok && !fits[string(fit)]) {
						errs <- fmt.Errorf("Fit = %q %v %v", fit, ok, err)
						return
					}
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}

			list, ok := stAdd(t, s, "k", "last", writers*perWriter+1)
			if !ok || len(list) != writers*perWriter+1 {
				t.Fatalf("list has %d observations (ok %v), want %d", len(list), ok, writers*perWriter+1)
			}
			next := make([]int, writers) // each writer's next expected i
			for _, obs := range list[:len(list)-1] {
				var w, i int
				if _, err := fmt.Sscanf(obs, "w%d:i%d", &w, &i); err != nil || w < 0 || w >= writers {
					t.Fatalf("observation %q: %v", obs, err)
				}
				if i != next[w] {
					t.Fatalf("writer %d: got i %d, want %d (lost or reordered)", w, i, next[w])
				}
				next[w]++
			}
			if got, ok := stFit(t, s, "k"); !ok || got != fmt.Sprintf("fit-%d", perWriter-1) {
				t.Errorf("final fit = %q %v, want fit-%d", got, ok, perWriter-1)
			}
			if raw != nil {
				for _, k := range []string{"semcache:o:k", "semcache:f:k"} {
					if d := raw.PTTL(ctx, k).Val(); d <= 0 {
						t.Errorf("PTTL %s = %v after concurrent writes, want > 0", k, d)
					}
				}
			}
		})
	}
}

// TestStateCopies: callers cannot alias the stored state through the slices
// they pass in or get back.
func TestStateCopies(t *testing.T) {
	ctx := context.Background()
	for _, b := range stateBackends() {
		t.Run(b.name, func(t *testing.T) {
			s, _ := b.newStore(t)
			tsSet(t, s, "k", nil)

			in := []byte("obs-1")
			list, _, err := s.AddObservation(ctx, "k", in, 10)
			if err != nil {
				t.Fatal(err)
			}
			in[0] = 'X'
			list[0][0] = 'Y'
			list[0] = []byte("replaced")
			if got, _ := stAdd(t, s, "k", "obs-2", 10); !slices.Equal(got, []string{"obs-1", "obs-2"}) {
				t.Errorf("list = %q, want [obs-1 obs-2]: mutating a slice changed the store", got)
			}

			fit := []byte("fit")
			if _, err := s.SetFit(ctx, "k", fit); err != nil {
				t.Fatal(err)
			}
			fit[0] = 'X'
			got, _, err := s.Fit(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			got[0] = 'Y'
			if got, _ := stFit(t, s, "k"); got != "fit" {
				t.Errorf("fit = %q, want fit: mutating a slice changed the store", got)
			}
		})
	}
}

// TestRedisStateLayout: the state lives in a LIST and a STRING of their
// own under the prefix, with the entry's expiry; the vector hash is not
// touched.
func TestRedisStateLayout(t *testing.T) {
	ctx := context.Background()
	var s stateStore
	var raw *redis.Client
	for _, b := range stateBackends() {
		if b.name == "redis" {
			s, raw = b.newStore(t)
		}
	}
	// With the search module, store a vector too, to see that the hash
	// keeps exactly its fields.
	var vec []float32
	if os.Getenv(redistest.ModuleEnv) != "" {
		vec = memX
	}
	tsSet(t, s, "k", vec)
	stWrite(t, s, "k")

	if typ := raw.Type(ctx, "semcache:o:k").Val(); typ != "list" {
		t.Errorf("TYPE semcache:o:k = %q, want list", typ)
	}
	if typ := raw.Type(ctx, "semcache:f:k").Val(); typ != "string" {
		t.Errorf("TYPE semcache:f:k = %q, want string", typ)
	}
	entryTTL := raw.PTTL(ctx, "semcache:e:k").Val()
	for _, k := range []string{"semcache:o:k", "semcache:f:k"} {
		if d := raw.PTTL(ctx, k).Val(); d <= 0 || d > entryTTL || d > memTTL {
			t.Errorf("PTTL %s = %v, want in (0, %v] (the entry's)", k, d, entryTTL)
		}
	}
	// Redis 7 reports the absolute expiry: it is the entry's, to the
	// millisecond. Older servers lack PEXPIRETIME; PTTL above suffices.
	if at, err := raw.PExpireTime(ctx, "semcache:e:k").Result(); err == nil {
		for _, k := range []string{"semcache:o:k", "semcache:f:k"} {
			if got := raw.PExpireTime(ctx, k).Val(); got != at {
				t.Errorf("PEXPIRETIME %s = %v, want the entry's %v", k, got, at)
			}
		}
	}
	if vec != nil {
		fields := raw.HKeys(ctx, s.(*Redis).vectorKey("k")).Val()
		slices.Sort(fields)
		if want := []string{"created_ms", "entry", "scope", "vector"}; !slices.Equal(fields, want) {
			t.Errorf("vector hash fields = %v, want %v", fields, want)
		}
	}

	// An entry made persistent by hand keeps a persistent state: the state
	// never outlives, nor dies before, its entry.
	if err := raw.Persist(ctx, "semcache:e:k").Err(); err != nil {
		t.Fatal(err)
	}
	stAdd(t, s, "k", "obs-3", 10)
	if d := raw.PTTL(ctx, "semcache:o:k").Val(); d != -1 {
		t.Errorf("PTTL semcache:o:k = %v for a persistent entry, want -1 (none)", d)
	}
}

// TestMemoryStateLeavesWithEntry: expiry (read or swept) and LRU eviction
// drop an entry's state; an expired entry not swept yet refuses new state.
// The clock is fake: nothing sleeps.
func TestMemoryStateLeavesWithEntry(t *testing.T) {
	ctx := context.Background()
	m, clock := newTestMemory(t, "flat", 2)
	tsSet(t, m, "read", nil)
	tsSet(t, m, "swept", nil)
	stWrite(t, m, "read")
	stWrite(t, m, "swept")

	clock.Advance(memTTL - time.Nanosecond)
	if got, ok := stFit(t, m, "read"); !ok || got != "fit of read" {
		t.Fatalf("Fit just before expiry = %q %v", got, ok)
	}
	clock.Advance(time.Nanosecond)
	// Expired, not swept yet: the record is still there, its state is not
	// served and takes nothing new.
	wantGone(t, m, nil, "read")
	if _, ok := memGet(t, m, "read"); ok { // deletes the expired entry
		t.Fatal("expired entry served")
	}
	if n := m.Sweep(); n != 1 {
		t.Errorf("Sweep = %d, want 1 (swept)", n)
	}
	wantGone(t, m, nil, "swept")
	for _, k := range []string{"read", "swept"} {
		tsSet(t, m, k, nil)
		wantFresh(t, m, k)
	}

	// MaxEntries 2: a third entry evicts the least recently used, "read".
	for _, k := range []string{"read", "swept"} {
		tsSet(t, m, k, nil)
		stWrite(t, m, k)
	}
	tsSet(t, m, "third", nil)
	if _, ok := memGet(t, m, "read"); ok {
		t.Fatal("read not evicted")
	}
	wantGone(t, m, nil, "read")
	tsSet(t, m, "read", nil) // evicts "swept"
	wantFresh(t, m, "read")
	if _, ok, _ := m.Get(ctx, "swept"); ok {
		t.Fatal("swept not evicted")
	}
	tsSet(t, m, "swept", nil)
	wantFresh(t, m, "swept")
}

// TestRedisVerdicts: the budget rule's shared counts add up across clients
// (two processes), concurrent adds lose nothing, the hash has no TTL, an
// empty field is refused and Flush forgets them.
func TestRedisVerdicts(t *testing.T) {
	ctx := context.Background()
	srv := startTagRedis(t)
	a, b := newTagRedis(t, srv), newTagRedis(t, srv)
	if got, err := a.Verdicts(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Verdicts of a new database = %v, %v; want none", got, err)
	}
	if got, err := a.AddVerdict(ctx, "agree/0.86/r"); err != nil || !maps.Equal(got, map[string]int64{"agree/0.86/r": 1}) {
		t.Fatalf("first AddVerdict = %v, %v", got, err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			c := []*Redis{a, b}[i%2]
			if _, err := c.AddVerdict(ctx, "agree/0.86/r"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := b.AddVerdict(ctx, "alone/0.70/w")
	if err != nil || !maps.Equal(got, map[string]int64{"agree/0.86/r": 21, "alone/0.70/w": 1}) {
		t.Errorf("after 21 + 1 verdicts from two clients: %v, %v", got, err)
	}
	opts, _ := redis.ParseURL(srv.URL())
	raw := redis.NewClient(opts)
	t.Cleanup(func() { raw.Close() })
	if d := raw.PTTL(ctx, "semcache:adaptive:verdicts").Val(); d != -1 {
		t.Errorf("PTTL of the verdicts hash = %v, want -1 (none)", d)
	}
	if _, err := a.AddVerdict(ctx, ""); err == nil || !strings.Contains(err.Error(), "field") {
		t.Errorf("AddVerdict(\"\") = %v, want an error naming the field", err)
	}
	if _, err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Verdicts(ctx); err != nil || len(got) != 0 {
		t.Errorf("Verdicts after Flush = %v, %v; want none", got, err)
	}
}
