package benchmarks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/api/sim"
	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// inProcessTarget is the Target of a report when the run started its own
// proxy instead of using --target.
const inProcessTarget = "in-process"

// proxyOptions configure the proxy a bench command starts in the process
// when --target is omitted. The flags that set them are rejected with
// --target, where the running proxy's own configuration applies.
type proxyOptions struct {
	// SimLatency is the simulated upstream's time to first token;
	// SimPerToken is added per completion token.
	SimLatency, SimPerToken time.Duration
	// EmbedderDim is the local embedder's vector length (> 0).
	EmbedderDim int
	// Threshold is the cosine similarity in (0, 1] of a semantic hit.
	Threshold float64
	// Backend is "memory" (index.NewMemory) or "redis" (index.NewRedis at
	// RedisURL, under a fresh prefix that is flushed at the end).
	Backend  string
	RedisURL string
}

// proxyFlags are the names of the flags addProxyFlags defines.
var proxyFlags = []string{"sim-latency", "sim-per-token-latency", "embedder-dim", "threshold", "backend", "redis-url"}

// addProxyFlags defines the in-process proxy's flags on fs.
func addProxyFlags(fs *flag.FlagSet, p *proxyOptions) {
	fs.DurationVar(&p.SimLatency, "sim-latency", 20*time.Millisecond, "in-process proxy: simulated upstream time to first token")
	fs.DurationVar(&p.SimPerToken, "sim-per-token-latency", 0, "in-process proxy: simulated upstream time per completion token")
	fs.IntVar(&p.EmbedderDim, "embedder-dim", embedding.DefaultLocalDim, "in-process proxy: vector length of the local embedder")
	fs.Float64Var(&p.Threshold, "threshold", embedding.LocalDefaultThreshold, "in-process proxy: cosine similarity in (0, 1] a neighbour needs for a semantic hit (default: the local embedder's measured default)")
	fs.StringVar(&p.Backend, "backend", "memory", "in-process proxy: store, memory or redis")
	fs.StringVar(&p.RedisURL, "redis-url", "", "in-process proxy: redis://host:port/db for --backend redis (needs RediSearch); the run writes under a fresh key prefix and deletes it at the end")
}

// checkProxyFlags rejects the in-process proxy's flags when target is set
// (set holds the names of the flags given on the command line), and
// validates them otherwise.
func checkProxyFlags(p proxyOptions, target string, set map[string]bool) error {
	if target != "" {
		for _, name := range proxyFlags {
			if set[name] {
				return usageErrorf("--%s configures the in-process proxy and cannot be used with --target (the running proxy's own configuration applies)", name)
			}
		}
		return nil
	}
	switch {
	case p.SimLatency < 0 || p.SimPerToken < 0:
		return usageErrorf("--sim-latency and --sim-per-token-latency must not be negative")
	case p.EmbedderDim < 1:
		return usageErrorf("--embedder-dim must be >= 1, got %d", p.EmbedderDim)
	case math.IsNaN(p.Threshold) || p.Threshold <= 0 || p.Threshold > 1:
		return usageErrorf("--threshold %v: want a cosine similarity in (0, 1] (higher is stricter)", p.Threshold)
	}
	switch p.Backend {
	case "memory":
		if p.RedisURL != "" {
			return usageErrorf("--redis-url needs --backend redis")
		}
	case "redis":
		if !strings.HasPrefix(p.RedisURL, "redis://") && !strings.HasPrefix(p.RedisURL, "rediss://") {
			return usageErrorf("--backend redis needs --redis-url redis://host:port/db, got %q", p.RedisURL)
		}
	default:
		return usageErrorf("--backend %q: want memory or redis", p.Backend)
	}
	return nil
}

// setFlags returns the names of the flags given on fs's command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// ProxySettings describe the in-process proxy of a run without --target,
// so that a report says what its figures were measured against.
type ProxySettings struct {
	// SimLatencyMS and SimPerTokenMS are the simulated upstream's time to
	// first token and time per completion token, in milliseconds.
	SimLatencyMS  float64 `json:"sim_latency_ms"`
	SimPerTokenMS float64 `json:"sim_per_token_latency_ms"`
	// Embedder is the embedder's fingerprint, e.g. local:lexical-v1:384.
	Embedder string `json:"embedder"`
	// Threshold is the semantic tier's cosine-similarity threshold.
	Threshold float64 `json:"threshold"`
	// Backend is memory or redis.
	Backend string `json:"backend"`
	// Guards and TTLRules are `semcache serve`'s defaults, which the
	// in-process proxy uses too: the negation guard and the default TTL
	// rules.
	Guards   string `json:"guards"`
	TTLRules string `json:"ttl_rules"`
}

// String is the one-line description used in the summaries.
func (s ProxySettings) String() string {
	return fmt.Sprintf("simulated upstream %gms + %gms/token, embedder %s, threshold %g, %s backend, guards %s, TTL rules %s",
		s.SimLatencyMS, s.SimPerTokenMS, s.Embedder, s.Threshold, s.Backend, s.Guards, s.TTLRules)
}

// inProcessProxy is a semcache proxy assembled as `semcache serve` does it
// (simulated upstream, local embedder behind an embedding cache, memory or
// Redis store, semantic cache, api server), each server on its own
// 127.0.0.1 listener. Its servers' goroutines are owned by it and end in
// Close, which the caller must call exactly once.
type inProcessProxy struct {
	// URL is the proxy's base URL, http://127.0.0.1:PORT/v1.
	URL      string
	Settings ProxySettings

	proxy, upstream *http.Server
	serving         sync.WaitGroup // the two Serve goroutines
	store           interface{ Close() error }
	redis           *index.Redis // nil for the memory backend
	log             *slog.Logger
}

// startInProcess starts a proxy configured by p. Warnings and errors of the
// proxy are logged to logw, which must be safe for concurrent use.
func startInProcess(ctx context.Context, p proxyOptions, logw io.Writer) (_ *inProcessProxy, err error) {
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ip := &inProcessProxy{log: log}
	defer func() {
		if err != nil {
			ip.Close(context.WithoutCancel(ctx))
		}
	}()

	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start simulated upstream: %w", err)
	}
	ip.upstream = ip.serve(upLn, sim.New(sim.Config{Latency: p.SimLatency, PerToken: p.SimPerToken}))

	local, err := embedding.NewLocal(embedding.LocalConfig{Dim: p.EmbedderDim})
	if err != nil {
		return nil, err
	}
	emb, err := embedding.NewCached(local, 10_000) // `semcache serve`'s default size
	if err != nil {
		return nil, err
	}
	var store semantic.Store
	switch p.Backend {
	case "redis":
		r, err := newBenchRedis(ctx, p.RedisURL, emb)
		if err != nil {
			return nil, err
		}
		ip.store, ip.redis, store = r, r, r
	default:
		m, err := index.NewMemory(index.MemoryConfig{Dim: emb.Dim()})
		if err != nil {
			return nil, err
		}
		ip.store, store = m, m
	}
	guards, err := semantic.NewGuards(semantic.DefaultGuardsConfig()) // serve's default --guards
	if err != nil {
		return nil, err
	}
	cache, err := semantic.New(semantic.Config{Threshold: p.Threshold, Logger: log, Guards: guards}, emb, store)
	if err != nil {
		return nil, err
	}
	// The default transport keeps 2 idle connections per host, too few for
	// a benchmark's concurrency: connections would churn to the upstream.
	upstreamClient := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 30 * time.Second}}
	srv, err := api.New(api.Config{Upstream: "http://" + upLn.Addr().String() + "/v1", HTTPClient: upstreamClient, Logger: log,
		Rules: semantic.DefaultRules()}, cache) // serve's default: --ttl-rules default
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	ip.proxy = ip.serve(ln, srv)
	ip.URL = "http://" + ln.Addr().String() + "/v1"
	ip.Settings = ProxySettings{
		SimLatencyMS:  float64(p.SimLatency.Microseconds()) / 1000,
		SimPerTokenMS: float64(p.SimPerToken.Microseconds()) / 1000,
		Embedder:      emb.Fingerprint(),
		Threshold:     p.Threshold,
		Backend:       p.Backend,
		Guards:        semantic.DefaultGuardKinds,
		TTLRules:      "default",
	}
	return ip, nil
}

// newBenchRedis opens a Redis store under a prefix of its own, so the run
// neither sees nor deletes anyone else's entries, and fails unless the
// RediSearch index is ready: a benchmark on the exact tier alone would
// report misleading figures.
func newBenchRedis(ctx context.Context, url string, emb semantic.Embedder) (*index.Redis, error) {
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	r, err := index.NewRedis(ctx, index.RedisConfig{
		URL: url, Prefix: "semcache-bench:" + hex.EncodeToString(id[:]) + ":",
		Dim: emb.Dim(), Fingerprint: emb.Fingerprint(),
	})
	if err != nil {
		return nil, fmt.Errorf("redis backend: %w", err)
	}
	if !r.Ready() {
		r.Close()
		return nil, fmt.Errorf("redis backend at %s not ready: server down or RediSearch module missing", url)
	}
	return r, nil
}

// serve serves h on ln in a goroutine that Close waits for.
func (ip *inProcessProxy) serve(ln net.Listener, h http.Handler) *http.Server {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ip.serving.Go(func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			ip.log.Error("in-process server stopped", "addr", ln.Addr().String(), "err", err)
		}
	})
	return hs
}

// Close stops the proxy, then the simulated upstream, each after its
// requests in flight finish (at most 10 seconds, then they are cut), waits
// for their goroutines, deletes the Redis keys the run wrote (only its own
// prefix) and closes the store. It returns the first error.
func (ip *inProcessProxy) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var errs []error
	for _, hs := range []*http.Server{ip.proxy, ip.upstream} {
		if hs == nil {
			continue
		}
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err, hs.Close())
		}
	}
	ip.serving.Wait()
	if ip.redis != nil {
		if _, err := ip.redis.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("delete the run's redis keys: %w", err))
		}
	}
	if ip.store != nil {
		errs = append(errs, ip.store.Close())
	}
	return errors.Join(errs...)
}

// syncWriter serialises writes to w, so that the in-process proxy's logs
// and a command's progress can share stderr.
type syncWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// onTarget calls run with the base URL of target or, when target is empty,
// of a proxy started in the process for the call and stopped after it,
// whose settings it then returns (nil with a target). The proxy logs its
// warnings to logw, which must be safe for concurrent use.
func onTarget(ctx context.Context, target string, p proxyOptions, logw io.Writer, run func(baseURL string) error) (*ProxySettings, error) {
	if target != "" {
		return nil, run(target)
	}
	ip, err := startInProcess(ctx, p, logw)
	if err != nil {
		return nil, fmt.Errorf("start the in-process proxy: %w", err)
	}
	err = run(ip.URL)
	if cerr := ip.Close(ctx); cerr != nil && err == nil {
		err = fmt.Errorf("stop the in-process proxy: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	return &ip.Settings, nil
}
