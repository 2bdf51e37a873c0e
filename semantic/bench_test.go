package semantic_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// benchEntries is the number of entries a benchmark cache is warmed with.
const benchEntries = 10_000

// benchScopes are the scope counts the warmed entries are spread over: all
// in one scope (one large graph), or 1,000 tenants of 10 entries each.
var benchScopes = []int{1, 1_000}

// benchEmbedCacheSize is the size of the embedding LRU in front of the local
// embedder. It is smaller than the number of paraphrases the uncached
// semantic-hit case cycles through, so that case always embeds.
const benchEmbedCacheSize = 1_000

// The prompts of the warmed caches: one per (action, object, context), a
// support-desk question; its paraphrase says "can" for "do".
var (
	benchActions = []string{
		"reset", "change", "recover", "update", "delete", "export", "back up",
		"share", "sync", "restore", "rename", "lock", "unlock", "transfer",
		"verify", "encrypt", "archive", "download", "upload", "migrate",
	}
	benchObjects = []string{
		"password", "email address", "billing details", "profile photo",
		"two-factor settings", "calendar", "contacts list", "photo library",
		"shared folders", "notification preferences", "API keys",
		"payment card", "subscription plan", "home address", "phone number",
		"security questions", "recovery codes", "team workspace",
		"project files", "chat history", "saved drafts", "invoices",
		"browser bookmarks", "music playlists", "tax documents",
	}
	benchContexts = []string{
		"on my iPhone", "on an Android tablet", "from the web dashboard",
		"without the mobile app", "on a shared family account",
		"after moving to a new country", "while travelling abroad",
		"on my work laptop", "using the command line",
		"before closing my account", "with a screen reader",
		"from a Linux desktop", "on a Chromebook at school",
		"after my phone was stolen", "with only my recovery email",
		"on the enterprise plan", "through the public API",
		"on a smart TV", "from an old Windows PC", "during a free trial",
	}
)

func benchPrompt(i int, verb string) string {
	a := benchActions[i%len(benchActions)]
	o := benchObjects[i/len(benchActions)%len(benchObjects)]
	c := benchContexts[i/(len(benchActions)*len(benchObjects))%len(benchContexts)]
	return fmt.Sprintf("How %s I %s my %s %s?", verb, a, o, c)
}

// benchSystem and benchHistory make the requests look like a support bot's:
// a system prompt and three earlier exchanges, all part of the scope.
const benchSystem = "You are the support assistant of Acme Cloud. Answer in at most " +
	"five short steps, link to the help centre when a setting is involved, and " +
	"never ask the user for their password or one-time codes."

var benchHistory = []string{
	"user", "Hi, I have a question about my account.",
	"assistant", "Of course. What would you like to do with your Acme Cloud account?",
	"user", "I use the personal plan and the mobile app, if that matters.",
	"assistant", "Thanks, that helps. Some steps differ between the app and the web dashboard, so I will say which one each step is for.",
	"user", "Great. One more thing: I have two-factor authentication turned on.",
	"assistant", "Noted. With two-factor authentication on, some changes ask you to confirm with a code from your authenticator app.",
}

// benchBody returns a chat-completion body: the system prompt, the three
// earlier exchanges, the prompt as the last user message, and typical
// sampling parameters.
func benchBody(prompt string) []byte {
	msgs := []map[string]string{{"role": "system", "content": benchSystem}}
	for i := 0; i+1 < len(benchHistory); i += 2 {
		msgs = append(msgs, map[string]string{"role": benchHistory[i], "content": benchHistory[i+1]})
	}
	msgs = append(msgs, map[string]string{"role": "user", "content": prompt})
	b, err := json.Marshal(map[string]any{
		"model":             "gpt-4o-mini",
		"messages":          msgs,
		"temperature":       0.2,
		"top_p":             1,
		"max_tokens":        512,
		"presence_penalty":  0,
		"frequency_penalty": 0,
		"seed":              42,
		"stop":              []string{"\n\n###"},
		"response_format":   map[string]string{"type": "text"},
		"user":              "user-8812",
		"stream":            false,
	})
	if err != nil {
		panic(err)
	}
	return b
}

func benchIdentity(tb testing.TB, prompt, tenant string) semantic.Identity {
	tb.Helper()
	id, rq, err := semantic.Identify(benchBody(prompt), tenant, "", semantic.Normalization{})
	if err != nil {
		tb.Fatalf("Identify: %v", err)
	}
	if !rq.Cacheable || !id.Semantic {
		tb.Fatalf("identity of %q: Cacheable %v, Semantic %v", prompt, rq.Cacheable, id.Semantic)
	}
	return id
}

// BenchmarkIdentify measures building the cache identity of a realistic
// request: a system prompt, three earlier exchanges and ten parameters.
func BenchmarkIdentify(b *testing.B) {
	body := benchBody(benchPrompt(0, "do"))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := semantic.Identify(body, "t-0123456789abcdef0123456789abcdef", "", semantic.Normalization{}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchCache is a cache warmed with benchEntries answers through Do.
type benchCache struct {
	cache *semantic.Cache
	emb   *embedding.Cached
	// stored are the identities of the warmed entries, in order.
	stored []semantic.Identity
	// paraphrases are identities of paraphrases of stored prompts, each a
	// semantic hit on its source entry (checked once when built).
	paraphrases []semantic.Identity
	// fetches counts calls of failFetch.
	fetches atomic.Int64
}

// failFetch is the fetch func of the hit benchmarks: a hit must never call
// it, so it counts the call and fails Do, which fails the benchmark.
func (bc *benchCache) failFetch(context.Context) (semantic.Upstream, error) {
	bc.fetches.Add(1)
	return semantic.Upstream{}, errors.New("fetch called on a hit path")
}

var (
	benchCachesMu sync.Mutex
	benchCaches   = map[int]*benchCache{}
)

// sharedBenchCache returns the warmed cache with scopes scopes, built on
// first use and shared by the hit benchmarks, which do not change it.
func sharedBenchCache(b *testing.B, scopes int) *benchCache {
	b.Helper()
	benchCachesMu.Lock()
	defer benchCachesMu.Unlock()
	if bc, ok := benchCaches[scopes]; ok {
		return bc
	}
	bc := newBenchCache(b, scopes)
	benchCaches[scopes] = bc
	return bc
}

// newBenchCache builds a cache like `semcache serve`'s default one (local
// embedder behind an LRU, in-process HNSW store, the local default
// threshold) and warms it with benchEntries answers spread over scopes
// tenants.
func newBenchCache(b *testing.B, scopes int) *benchCache {
	b.Helper()
	local, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		b.Fatal(err)
	}
	emb, err := embedding.NewCached(local, benchEmbedCacheSize)
	if err != nil {
		b.Fatal(err)
	}
	mem, err := index.NewMemory(index.MemoryConfig{Dim: emb.Dim(), SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mem.Close() })
	cache, err := semantic.New(semantic.Config{
		Threshold: embedding.LocalDefaultThreshold,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, emb, mem)
	if err != nil {
		b.Fatal(err)
	}
	bc := &benchCache{cache: cache, emb: emb}
	ctx := context.Background()
	// The entries are written to the store as Do stores a miss's answer,
	// not through Do: many templated prompts are within the threshold of
	// each other, and Do would serve those from the cache instead.
	for i := range benchEntries {
		id := benchIdentity(b, benchPrompt(i, "do"), fmt.Sprintf("tenant-%d", i%scopes))
		vecs, err := emb.Embed(ctx, []string{id.Prompt})
		if err != nil {
			b.Fatal(err)
		}
		raw := semantic.EncodeEntry(semantic.Entry{
			Key: id.Key, Scope: id.Scope, Prompt: id.Normalized,
			Response:    string(completion("Open Settings, then Account, and follow the steps for: "+id.Prompt, 120, 80, reason("stop"))),
			ContentType: "application/json", CreatedAt: time.Now().UnixMilli(),
			PromptTokens: 120, CompletionTokens: 80,
		})
		if err := mem.Set(ctx, id.Key, id.Scope, raw, vecs[0], time.Hour); err != nil {
			b.Fatal(err)
		}
		bc.stored = append(bc.stored, id)
	}
	if n, _ := cache.Len(ctx); n != benchEntries {
		b.Fatalf("warmed cache holds %d entries, want %d", n, benchEntries)
	}
	// Keep the paraphrases that hit their own source: the benchmark
	// measures the cache, not the embedder's judgement of paraphrases.
	for i, src := range bc.stored {
		id := benchIdentity(b, benchPrompt(i, "can"), fmt.Sprintf("tenant-%d", i%scopes))
		r, err := cache.Do(ctx, id, bc.failFetch)
		if err == nil && r.Tier == semantic.TierSemantic && r.Key == src.Key {
			bc.paraphrases = append(bc.paraphrases, id)
		}
	}
	if len(bc.paraphrases) <= benchEmbedCacheSize {
		b.Fatalf("only %d of %d paraphrases hit their source at threshold %v", len(bc.paraphrases), benchEntries, embedding.LocalDefaultThreshold)
	}
	b.Logf("scopes=%d: %d of %d paraphrases hit their source", scopes, len(bc.paraphrases), benchEntries)
	bc.fetches.Store(0)
	return bc
}

// benchHits runs Do over ids in turn and reports the fraction of requests
// served from tier (hit-rate, 1 when all is well). It fails the benchmark
// if fetch is ever called.
func benchHits(b *testing.B, bc *benchCache, ids []semantic.Identity, tier semantic.Tier) {
	b.Helper()
	ctx := context.Background()
	hits, i := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		r, err := bc.cache.Do(ctx, ids[i%len(ids)], bc.failFetch)
		if err != nil {
			b.Fatalf("request %d: %v", i, err)
		}
		if r.Outcome == semantic.Hit && r.Tier == tier {
			hits++
		}
		i++
	}
	if n := bc.fetches.Load(); n != 0 {
		b.Fatalf("fetch called %d times on the hit path", n)
	}
	b.ReportMetric(float64(hits)/float64(i), "hit-rate")
}

// BenchmarkDoExactHit measures Do for a repeated request (an exact-tier
// hit) on a cache warmed with 10,000 entries, cycling through them.
func BenchmarkDoExactHit(b *testing.B) {
	for _, scopes := range benchScopes {
		b.Run(fmt.Sprintf("entries=%d/scopes=%d", benchEntries, scopes), func(b *testing.B) {
			bc := sharedBenchCache(b, scopes)
			benchHits(b, bc, bc.stored, semantic.TierExact)
		})
	}
}

// BenchmarkDoSemanticHit measures Do for a paraphrase of a stored prompt,
// above the threshold (a semantic-tier hit), on a cache warmed with 10,000
// entries. embed=uncached cycles through more paraphrases than the
// embedding LRU holds, so every request runs the local embedder, as a
// first-seen paraphrase does; embed=cached cycles through as many
// paraphrases as the LRU holds, spread over the stored prompts, so their
// vectors come from the LRU.
func BenchmarkDoSemanticHit(b *testing.B) {
	for _, scopes := range benchScopes {
		name := fmt.Sprintf("entries=%d/scopes=%d", benchEntries, scopes)
		b.Run(name+"/embed=uncached", func(b *testing.B) {
			bc := sharedBenchCache(b, scopes)
			benchHits(b, bc, bc.paraphrases, semantic.TierSemantic)
		})
		b.Run(name+"/embed=cached", func(b *testing.B) {
			bc := sharedBenchCache(b, scopes)
			// As many paraphrases as the LRU holds, spread over the
			// whole graph: search cost varies from query to query.
			ids := make([]semantic.Identity, 0, benchEmbedCacheSize)
			for i := range benchEmbedCacheSize {
				ids = append(ids, bc.paraphrases[i*len(bc.paraphrases)/benchEmbedCacheSize])
			}
			for _, id := range ids {
				if _, err := bc.emb.Embed(context.Background(), []string{id.Prompt}); err != nil {
					b.Fatal(err)
				}
			}
			benchHits(b, bc, ids, semantic.TierSemantic)
		})
	}
}

// BenchmarkDoMiss measures the miss path of Do on a cache warmed with
// 10,000 entries in one scope: exact lookup, embedding, semantic search, a
// fetch that answers a canned 200 at once, and storing the answer with its
// vector. Every request has a new prompt of ten random words, far from the
// stored ones and from each other, so the cache (and its graph) grows by
// one entry per request; miss-rate is 1 when no request hit.
func BenchmarkDoMiss(b *testing.B) {
	b.Run(fmt.Sprintf("entries=%d/scopes=1", benchEntries), func(b *testing.B) {
		bc := newBenchCache(b, 1) // not shared: this benchmark adds entries
		base := bc.stored[0]
		answer := ok200("Here is a short answer.")
		fetch := func(context.Context) (semantic.Upstream, error) { return answer, nil }
		rng := rand.New(rand.NewPCG(1, 2))
		ctx := context.Background()
		misses, i := 0, 0
		b.ReportAllocs()
		for b.Loop() {
			r, err := bc.cache.Do(ctx, missIdentity(base, randomPrompt(rng)), fetch)
			if err != nil {
				b.Fatalf("request %d: %v", i, err)
			}
			if r.Outcome == semantic.Miss && r.Stored {
				misses++
			}
			i++
		}
		b.ReportMetric(float64(misses)/float64(i), "miss-rate")
	})
}

// benchWords are the words of the miss benchmark's random prompts.
var benchWords = strings.Fields(`
	apple river orange mountain copper violin desk lantern harbour pencil
	thunder garden rocket meadow silver candle bridge forest marble engine
	falcon island ladder pepper planet saddle tunnel velvet window zebra
	anchor basket cactus dragon feather glacier hammer jacket kettle lemon
	magnet needle oyster parrot quartz ribbon shovel tomato umbrella walnut
	yogurt badger cobalt dolphin ember fossil goblet hazel igloo jasmine
	kayak lobster mango nectar orchid pebble quiver raven sapphire tulip
	unicorn vortex willow yarrow zephyr acorn blossom canyon dune echo
	fjord geyser horizon iris jungle kelp lagoon mirage nebula oasis
	prairie quarry reef summit tundra valley wharf aurora beacon cliff`)

// randomPrompt returns a question of ten random words.
func randomPrompt(rng *rand.Rand) string {
	var sb strings.Builder
	sb.WriteString("Tell me about")
	for range 10 {
		sb.WriteByte(' ')
		sb.WriteString(benchWords[rng.IntN(len(benchWords))])
	}
	sb.WriteByte('?')
	return sb.String()
}

// missIdentity returns base's identity with another prompt, keyed as
// Identify keys it (SHA-256 of scope, NUL, normalised prompt), so that the
// timed loop measures Do alone; BenchmarkIdentify measures Identify.
func missIdentity(base semantic.Identity, prompt string) semantic.Identity {
	id := base
	id.Prompt = prompt
	id.Normalized = semantic.Normalization{}.Normalize(prompt)
	sum := sha256.Sum256([]byte(id.Scope + "\x00" + id.Normalized))
	id.Key = hex.EncodeToString(sum[:])
	return id
}
