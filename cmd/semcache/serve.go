package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/net/netutil"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/api/sim"
	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// defaultThreshold is the cosine-similarity threshold each embedder gets
// when --threshold is not given. The local embedder's value was measured
// with `semcache bench tune` on BANKING77 (see README, "Choosing the
// threshold"). The openai embedder has no default: we cannot measure a
// remote model offline, and a guessed number is how other caches serve
// wrong answers, so --threshold is required with it under the static
// policy (the adaptive one takes none). The trained embedder's default is
// the threshold stored in its model file, measured by `semcache embedder
// train` on held-out data at precision 0.95 (serveConfig.modelThreshold).
var defaultThreshold = map[string]float64{
	"local": localDefaultThreshold,
}

// serveConfig is everything `semcache serve` is configured with.
type serveConfig struct {
	listen        string
	upstream      string
	upstreamKey   string // from SEMCACHE_UPSTREAM_API_KEY only
	adminToken    string // from SEMCACHE_ADMIN_TOKEN only; empty disables the admin endpoints
	enabled       bool
	ui            string // --ui: off, loopback or token (api.UIAccess)
	uiPrompts     bool
	backend       string
	redisURL      string
	redisPrefix   string
	redisPoolSize int
	redisTimeout  time.Duration
	redisDialTO   time.Duration
	redisRetries  int
	leaseTTL      time.Duration
	// modelThreshold is the threshold stored in the --embedder-model
	// file, read by validate; 0 when none.
	modelThreshold float64
	leaseWait      time.Duration
	indexKind      string
	embedder       string
	embedderURL    string
	embedderModel  string
	embedderDim    int
	embedderKey    string // from SEMCACHE_EMBEDDER_API_KEY only
	embedCacheSize int
	threshold      string // empty: the embedder's default
	topK           int
	ttl            time.Duration
	maxTTL         time.Duration
	ttlRules       string
	pricing        string
	maxEntries     int
	// dataDir is the memory backend's data directory, "" for memory only;
	// dataDirDefault reports that it is the default, not --data-dir.
	dataDir         string
	dataDirDefault  bool
	maxBytes        int64
	maxEmbedBytes   int
	maxBodyBytes    int64
	maxStreamBytes  int64
	upstreamTimeout time.Duration
	shutdownTimeout time.Duration
	readTimeout     time.Duration
	writeTimeout    time.Duration
	idleTimeout     time.Duration
	maxConns        int
	namespace       string
	scopeHeaders    string
	normalize       string
	hnswM           int
	hnswEfConstr    int
	hnswEfRuntime   int
	simLatency      time.Duration
	simPerToken     time.Duration
	logLevel        string
	logFormat       string
	// policy and the adaptive policy's settings (issue 7)
	policy         string
	maxErrorRate   float64
	floor          float64
	minObs         int
	adaptiveRule   string
	auditRate      float64
	judge          string
	judgeThreshold float64
	judgeGreyBand  float64
	judgeLLMURL    string
	judgeLLMModel  string
	judgeLLMKey    string
	judgeWorkers   int
	policySeed     int64
	guards         string
	guardTokens    string
	guardOpposites string
	questionRegexp string
	splitContext   string
	// given holds the flags set on the command line or from the
	// environment.
	given map[string]bool
}

// envFlags maps each flag to the environment variable that sets it when the
// flag is not on the command line (the flag wins).
var envFlags = map[string]string{
	"listen":                "SEMCACHE_LISTEN",
	"upstream":              "SEMCACHE_UPSTREAM",
	"cache":                 "SEMCACHE_ENABLED",
	"backend":               "SEMCACHE_BACKEND",
	"redis-url":             "SEMCACHE_REDIS_URL",
	"redis-prefix":          "SEMCACHE_REDIS_PREFIX",
	"redis-pool-size":       "SEMCACHE_REDIS_POOL_SIZE",
	"redis-timeout":         "SEMCACHE_REDIS_TIMEOUT",
	"redis-dial-timeout":    "SEMCACHE_REDIS_DIAL_TIMEOUT",
	"redis-max-retries":     "SEMCACHE_REDIS_MAX_RETRIES",
	"lease-ttl":             "SEMCACHE_LEASE_TTL",
	"lease-wait":            "SEMCACHE_LEASE_WAIT",
	"index":                 "SEMCACHE_INDEX",
	"embedder":              "SEMCACHE_EMBEDDER",
	"embedder-url":          "SEMCACHE_EMBEDDER_URL",
	"embedder-model":        "SEMCACHE_EMBEDDER_MODEL",
	"embedder-dim":          "SEMCACHE_EMBEDDER_DIM",
	"embedding-cache-size":  "SEMCACHE_EMBEDDING_CACHE_SIZE",
	"threshold":             "SEMCACHE_THRESHOLD",
	"top-k":                 "SEMCACHE_TOP_K",
	"ttl":                   "SEMCACHE_TTL",
	"max-ttl":               "SEMCACHE_MAX_TTL",
	"ttl-rules":             "SEMCACHE_TTL_RULES",
	"pricing":               "SEMCACHE_PRICING",
	"max-bytes":             "SEMCACHE_MAX_BYTES",
	"data-dir":              "SEMCACHE_DATA_DIR",
	"max-embed-bytes":       "SEMCACHE_MAX_EMBED_BYTES",
	"max-entries":           "SEMCACHE_MAX_ENTRIES",
	"max-stream-bytes":      "SEMCACHE_MAX_STREAM_BYTES",
	"max-body-bytes":        "SEMCACHE_MAX_BODY_BYTES",
	"upstream-timeout":      "SEMCACHE_UPSTREAM_TIMEOUT",
	"shutdown-timeout":      "SEMCACHE_SHUTDOWN_TIMEOUT",
	"read-timeout":          "SEMCACHE_READ_TIMEOUT",
	"write-timeout":         "SEMCACHE_WRITE_TIMEOUT",
	"idle-timeout":          "SEMCACHE_IDLE_TIMEOUT",
	"max-connections":       "SEMCACHE_MAX_CONNECTIONS",
	"namespace":             "SEMCACHE_NAMESPACE",
	"ui":                    "SEMCACHE_UI",
	"ui-prompts":            "SEMCACHE_UI_PROMPTS",
	"scope-headers":         "SEMCACHE_SCOPE_HEADERS",
	"normalize":             "SEMCACHE_NORMALIZE",
	"hnsw-m":                "SEMCACHE_HNSW_M",
	"hnsw-ef-construction":  "SEMCACHE_HNSW_EF_CONSTRUCTION",
	"hnsw-ef-runtime":       "SEMCACHE_HNSW_EF_RUNTIME",
	"sim-latency":           "SEMCACHE_SIM_LATENCY",
	"sim-per-token-latency": "SEMCACHE_SIM_PER_TOKEN_LATENCY",
	"log-level":             "SEMCACHE_LOG_LEVEL",
	"log-format":            "SEMCACHE_LOG_FORMAT",
	"policy":                "SEMCACHE_POLICY",
	"max-error-rate":        "SEMCACHE_MAX_ERROR_RATE",
	"similarity-floor":      "SEMCACHE_SIMILARITY_FLOOR",
	"min-observations":      "SEMCACHE_MIN_OBSERVATIONS",
	"adaptive-rule":         "SEMCACHE_ADAPTIVE_RULE",
	"audit-rate":            "SEMCACHE_AUDIT_RATE",
	"judge":                 "SEMCACHE_JUDGE",
	"judge-threshold":       "SEMCACHE_JUDGE_THRESHOLD",
	"judge-grey-band":       "SEMCACHE_JUDGE_GREY_BAND",
	"judge-llm-url":         "SEMCACHE_JUDGE_LLM_URL",
	"judge-llm-model":       "SEMCACHE_JUDGE_LLM_MODEL",
	"judge-workers":         "SEMCACHE_JUDGE_WORKERS",
	"policy-seed":           "SEMCACHE_POLICY_SEED",
	"guards":                "SEMCACHE_GUARDS",
	"guard-tokens":          "SEMCACHE_GUARD_TOKENS",
	"guard-opposites":       "SEMCACHE_GUARD_OPPOSITES",
	"question-pattern":      "SEMCACHE_QUESTION_PATTERN",
	"split-context":         "SEMCACHE_SPLIT_CONTEXT",
}

// parseServe parses flags, then fills unset flags from the environment
// (getenv), and validates the result. Errors name the flag or variable; -h
// prints the flags to help and returns flag.ErrHelp.
func parseServe(args []string, getenv func(string) string, help io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by the caller
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&c.upstream, "upstream", "", "OpenAI-compatible base URL, e.g. https://api.openai.com/v1; empty runs the built-in simulated upstream")
	boolFlag(fs, &c.enabled, "cache", true, "cache enabled; false makes semcache a pure pass-through (rollback switch)")
	fs.StringVar(&c.ui, "ui", "loopback", "operator's dashboard at /ui: off, loopback (only clients on this host, straight to semcache) or token (any address, its data only with SEMCACHE_ADMIN_TOKEN)")
	boolFlag(fs, &c.uiPrompts, "ui-prompts", false, "show each recent request's prompt on the dashboard (prompts may be private)")
	fs.StringVar(&c.backend, "backend", "memory", "cache backend: memory (in-process LRU + HNSW) or redis (Redis Stack / RediSearch, shared by replicas)")
	fs.StringVar(&c.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis server for --backend redis (needs the RediSearch module for the semantic tier): redis://host:port/db, redis-sentinel://host:port,host:port/master/db, or redis-cluster://host:port,host:port (exact tier only)")
	fs.StringVar(&c.redisPrefix, "redis-prefix", "semcache:", "prefix of every key and of the index name this cache writes in Redis")
	intFlag(fs, &c.redisPoolSize, "redis-pool-size", 0, "Redis connection pool size; 0 means 10 per CPU")
	durationFlag(fs, &c.redisTimeout, "redis-timeout", 500*time.Millisecond, "Redis read and write timeout: the longest Redis can delay a request before the cache fails open")
	durationFlag(fs, &c.redisDialTO, "redis-dial-timeout", time.Second, "Redis connect timeout")
	intFlag(fs, &c.redisRetries, "redis-max-retries", 1, "retries of a failed Redis command; 0 for none")
	durationFlag(fs, &c.leaseTTL, "lease-ttl", semantic.DefaultLeaseTTL, "--backend redis: lifetime of the lease by which one replica fetches a missed answer while the others wait for it, renewed while it fetches (0: no lease, every replica calls upstream itself)")
	durationFlag(fs, &c.leaseWait, "lease-wait", 0, "--backend redis: longest a replica waits for another's leased answer before calling upstream itself (0: min(30s, --upstream-timeout/2))")
	fs.StringVar(&c.indexKind, "index", "hnsw", "vector index per scope for the memory backend: hnsw or flat (exact brute force)")
	fs.StringVar(&c.embedder, "embedder", "local", "embedder: local (built-in lexical, offline), openai (any OpenAI-compatible /embeddings) or trained (a model file from `semcache embedder train`, offline)")
	fs.StringVar(&c.embedderURL, "embedder-url", "", "base URL of the embeddings API for --embedder openai")
	fs.StringVar(&c.embedderModel, "embedder-model", "", "embedding model for --embedder openai, e.g. text-embedding-3-small; model file for --embedder trained")
	intFlag(fs, &c.embedderDim, "embedder-dim", 0, "vector length; 0 means 384 for local; openai: when set, sent as dimensions (text-embedding-3 and later), when unset the model's native length, learned at start-up")
	intFlag(fs, &c.embedCacheSize, "embedding-cache-size", 10000, "embeddings kept in memory so identical texts are embedded once (entries)")
	fs.StringVar(&c.threshold, "threshold", "", "--policy static: cosine similarity in (0, 1] a neighbour needs for a semantic hit; higher is stricter; default: the embedder's measured default (refused under --policy adaptive)")
	intFlag(fs, &c.topK, "top-k", 4, "neighbours per KNN query")
	durationFlag(fs, &c.ttl, "ttl", time.Hour, "entry time to live")
	fs.StringVar(&c.ttlRules, "ttl-rules", "default", "TTL rules: default (the built-in set, docs/ttl-rules.md), none, or a JSON rules file")
	fs.StringVar(&c.pricing, "pricing", "default", "model prices that turn tokens saved into dollars saved: default (the built-in OpenAI list prices, docs/pricing.md), none, or a JSON pricing file")
	durationFlag(fs, &c.maxTTL, "max-ttl", 24*time.Hour, "largest entry lifetime a request (X-Semcache-TTL) or a TTL rule may give")
	intFlag(fs, &c.maxEntries, "max-entries", 100000, "maximum entries held by the memory backend (LRU beyond)")
	fs.StringVar(&c.dataDir, "data-dir", "", "memory backend: directory where entries are kept across restarts (none: memory only); default $XDG_STATE_HOME/semcache or ~/.local/state/semcache")
	intFlag(fs, &c.maxEmbedBytes, "max-embed-bytes", semantic.DefaultMaxEmbedBytes, "longest question, in bytes, embedded for the semantic tier; longer ones use the exact tier only")
	int64Flag(fs, &c.maxBytes, "max-bytes", 1<<30, "bytes the memory backend's entries may hold (answers, keys, vectors; LRU beyond; 0: no byte bound)")
	int64Flag(fs, &c.maxStreamBytes, "max-stream-bytes", 4<<20, "largest streamed answer recorded for the cache, in bytes of the event stream; longer ones are relayed but not stored")
	int64Flag(fs, &c.maxBodyBytes, "max-body-bytes", 4<<20, "largest request body accepted, in bytes (413 beyond)")
	durationFlag(fs, &c.upstreamTimeout, "upstream-timeout", 120*time.Second, "bound on one upstream chat completion")
	durationFlag(fs, &c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long requests in flight may finish before they are cut")
	durationFlag(fs, &c.readTimeout, "read-timeout", 60*time.Second, "longest time to read one request, headers and body, from a client")
	durationFlag(fs, &c.writeTimeout, "write-timeout", 0, "longest time from the end of a request's headers to the end of its response, streams included (0: --upstream-timeout + 30s)")
	durationFlag(fs, &c.idleTimeout, "idle-timeout", 120*time.Second, "how long an idle keep-alive connection is kept open")
	intFlag(fs, &c.maxConns, "max-connections", 10000, "most client connections open at once; more wait to be accepted (0: no bound)")
	fs.StringVar(&c.namespace, "namespace", "", "shared namespace: all clients share one cache instead of one per API key")
	fs.StringVar(&c.scopeHeaders, "scope-headers", "", "comma-separated request headers whose values join the scope, besides OpenAI-Beta, OpenAI-Organization and OpenAI-Project (e.g. a header your upstream reads to pick its answer)")
	fs.StringVar(&c.normalize, "normalize", "nfc,lower,space", "exact-key normalisation steps, comma-separated subset of nfc,lower,space; 'none' for none")
	intFlag(fs, &c.hnswM, "hnsw-m", 0, "HNSW M: links per node (2*M on layer 0); 0 means the backend's default, 32 in process and 16 for a new Redis index")
	intFlag(fs, &c.hnswEfConstr, "hnsw-ef-construction", 200, "HNSW EF_CONSTRUCTION: candidate list size at insert")
	intFlag(fs, &c.hnswEfRuntime, "hnsw-ef-runtime", 64, "HNSW EF_RUNTIME: candidate list size at query")
	durationFlag(fs, &c.simLatency, "sim-latency", 300*time.Millisecond, "simulated upstream: time to first token")
	durationFlag(fs, &c.simPerToken, "sim-per-token-latency", 10*time.Millisecond, "simulated upstream: time per completion token")
	fs.StringVar(&c.policy, "policy", "static", "semantic-hit policy: static (serve neighbours at or above --threshold) or adaptive (learn from verified answers where it may serve, within --max-error-rate; README \"Error-bounded serving\")")
	floatFlag(fs, &c.maxErrorRate, "max-error-rate", 0.01, "adaptive policy: δ, the largest fraction of requests that may get a wrong cached answer, in (0, 1)")
	floatFlag(fs, &c.floor, "similarity-floor", 0.5, "adaptive policy: cosine similarity in (0, 1] below which a neighbour is never served nor explored")
	fs.StringVar(&c.adaptiveRule, "adaptive-rule", "budget", "adaptive policy: budget (learn from all verdicts, per similarity and what the second neighbour says, and serve the likeliest-right neighbours first) or entry (vCache: per-entry fits and exploration probabilities)")
	floatFlag(fs, &c.auditRate, "audit-rate", 0.01, "--adaptive-rule budget: probability in (0, 1) of verifying a neighbour that would be served, so the learned threshold keeps being checked")
	intFlag(fs, &c.minObs, "min-observations", 4, "--adaptive-rule entry: verified observations an entry needs before it is ever served")
	fs.StringVar(&c.judge, "judge", "exact", "adaptive policy: how explored answers are verified: exact (normalised answers equal) or embedding (then answer similarity >= --judge-threshold, LLM judge in the grey band when --judge-llm-url is set)")
	floatFlag(fs, &c.judgeThreshold, "judge-threshold", 0, "--judge embedding: answer cosine similarity in (0, 1] at or above which two answers mean the same; required, calibrate it (README)")
	floatFlag(fs, &c.judgeGreyBand, "judge-grey-band", 0, "--judge embedding: width below --judge-threshold in which the LLM judge decides")
	fs.StringVar(&c.judgeLLMURL, "judge-llm-url", "", "--judge embedding: OpenAI-compatible chat-completions URL of the LLM judge for the grey band (key from SEMCACHE_JUDGE_LLM_API_KEY)")
	fs.StringVar(&c.judgeLLMModel, "judge-llm-model", "", "model of the LLM judge")
	intFlag(fs, &c.judgeWorkers, "judge-workers", 2, "adaptive policy: goroutines verifying explored answers")
	int64Flag(fs, &c.policySeed, "policy-seed", 0, "adaptive policy: seed of the exploration and audit draws; 0 means random")
	fs.StringVar(&c.guards, "guards", semantic.DefaultGuardKinds, "meaning-flip guards refusing semantic hits: none, or a comma list of "+semantic.GuardKindNames+" (docs/guards.md)")
	fs.StringVar(&c.guardTokens, "guard-tokens", "", "extra guard words, comma-separated, that must be in both prompts or neither (e.g. monthly,yearly)")
	fs.StringVar(&c.guardOpposites, "guard-opposites", "", "extra opposite pairs for the opposites guard, comma-separated word:word (e.g. hot:cold,import:export)")
	fs.StringVar(&c.questionRegexp, "question-pattern", "", "RE2 `regexp` with a group named question: that part of the last user message is embedded and compared, the rest joins the scope")
	fs.StringVar(&c.splitContext, "split-context", "auto", "split a labelled question or a last paragraph from its template or context: auto or off")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(help, "usage: semcache serve [flags]\n\nEvery flag can also be set by the environment variable in brackets; the flag wins.\nSecrets come from the environment only: SEMCACHE_UPSTREAM_API_KEY, SEMCACHE_EMBEDDER_API_KEY,\nSEMCACHE_ADMIN_TOKEN (enables the admin endpoints; at least 16 characters).\n\n")
			fs.VisitAll(func(f *flag.Flag) {
				fmt.Fprintf(help, "  --%s [%s] (default %q)\n    \t%s\n", f.Name, envFlags[f.Name], f.DefValue, f.Usage)
			})
			return c, err
		}
		return c, fmt.Errorf("%s (semcache serve -h lists the flags)", strings.Replace(err.Error(), "flag -", "flag --", 1))
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := envFlags[f.Name]
		if env == "" || set[f.Name] || envErr != nil {
			return
		}
		if v := getenv(env); v != "" {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q (--%s): %v", env, v, f.Name, err)
			}
			set[f.Name] = true
		}
	})
	if envErr != nil {
		return c, envErr
	}
	c.given = set
	c.upstreamKey = getenv("SEMCACHE_UPSTREAM_API_KEY")
	c.embedderKey = getenv("SEMCACHE_EMBEDDER_API_KEY")
	c.adminToken = getenv("SEMCACHE_ADMIN_TOKEN")
	c.judgeLLMKey = getenv("SEMCACHE_JUDGE_LLM_API_KEY")
	c.resolveDataDir(getenv)
	return c, c.validate()
}

// resolveDataDir decides where the memory backend keeps its entries:
// --data-dir when given ("none", or an empty flag value, for memory only),
// else the default for a user's local daemon state, per the XDG Base
// Directory spec: $XDG_STATE_HOME/semcache, or $HOME/.local/state/semcache;
// with neither variable set (as in the tests, which pass an empty
// environment), memory only. The Redis backend has no data directory.
func (c *serveConfig) resolveDataDir(getenv func(string) string) {
	switch {
	case c.backend != "memory":
		c.dataDir = ""
	case c.given["data-dir"]:
		if c.dataDir == "none" {
			c.dataDir = ""
		}
	case getenv("XDG_STATE_HOME") != "":
		c.dataDir, c.dataDirDefault = filepath.Join(getenv("XDG_STATE_HOME"), "semcache"), true
	case getenv("HOME") != "":
		c.dataDir, c.dataDirDefault = filepath.Join(getenv("HOME"), ".local", "state", "semcache"), true
	}
}

func (c *serveConfig) validate() error {
	if err := validListen(c.listen); err != nil {
		return err
	}
	switch c.backend {
	case "memory":
		// A setting of the other backend would silently do nothing.
		for _, f := range redisFlags {
			if c.given[f] {
				return fmt.Errorf("--%s applies only to --backend redis (the backend is memory)", f)
			}
		}
	case "redis":
		for _, f := range memoryFlags {
			if c.given[f] {
				return fmt.Errorf("--%s applies only to --backend memory (the backend is redis)", f)
			}
		}
		switch {
		case strings.HasPrefix(c.redisURL, index.SentinelScheme+"://"):
			if _, err := index.ParseSentinelURL(c.redisURL); err != nil {
				return fmt.Errorf("--redis-url %q: %v", redactURL(c.redisURL), err)
			}
		case strings.HasPrefix(c.redisURL, index.ClusterScheme+"://"):
			if _, err := index.ParseClusterURL(c.redisURL); err != nil {
				return fmt.Errorf("--redis-url %q: %v", redactURL(c.redisURL), err)
			}
		default:
			if !strings.HasPrefix(c.redisURL, "redis://") && !strings.HasPrefix(c.redisURL, "rediss://") {
				return fmt.Errorf("--redis-url %q: want redis://host:port/db, redis-sentinel://host:port,host:port/master/db or redis-cluster://host:port,host:port", redactURL(c.redisURL))
			}
			if _, err := redis.ParseURL(c.redisURL); err != nil {
				return fmt.Errorf("--redis-url %q: want redis://host:port/db", redactURL(c.redisURL))
			}
		}
		if c.redisTimeout <= 0 || c.redisDialTO <= 0 || c.redisPoolSize < 0 || c.redisRetries < 0 {
			return errors.New("--redis-timeout and --redis-dial-timeout must be > 0; --redis-pool-size and --redis-max-retries must not be negative")
		}
	default:
		return fmt.Errorf("--backend %q: want memory or redis", c.backend)
	}
	switch c.embedder {
	case "local":
		if c.embedderURL != "" || c.embedderModel != "" {
			return errors.New("--embedder-url and --embedder-model apply only to --embedder openai or trained (the embedder is local)")
		}
	case "openai":
		if c.embedderURL == "" || c.embedderModel == "" {
			return errors.New("--embedder openai needs --embedder-url and --embedder-model")
		}
		if c.given["embedder-dim"] && c.embedderDim <= 0 {
			return fmt.Errorf("--embedder-dim %d: must be > 0 with --embedder openai (leave it unset for the model's native length)", c.embedderDim)
		}
		if !isHTTPURL(c.embedderURL) {
			return fmt.Errorf("--embedder-url %q: want an absolute http(s) base URL such as https://api.openai.com/v1", redactURL(c.embedderURL))
		}
	case "trained":
		if c.embedderModel == "" || c.embedderURL != "" || c.embedderDim != 0 {
			return errors.New("--embedder trained needs --embedder-model FILE (from `semcache embedder train`) and takes no --embedder-url or --embedder-dim (the file sets the dimension)")
		}
	default:
		return fmt.Errorf("--embedder %q: want local, openai or trained", c.embedder)
	}
	if c.threshold == "" && c.embedder == "trained" && c.policy != "adaptive" {
		// The model file carries the threshold its training measured
		// (precision 0.95 on held-out data); a file of an older semcache
		// has none.
		m, err := embedding.LoadModel(c.embedderModel)
		if err != nil {
			return fmt.Errorf("--embedder-model %s: %w", c.embedderModel, err)
		}
		if m.Threshold == 0 {
			return fmt.Errorf("--threshold is required: the model %s carries no measured threshold (it was trained by an older semcache); retrain it, or measure one with `semcache bench tune --embedder trained`", c.embedderModel)
		}
		c.modelThreshold = float64(m.Threshold)
	}
	if c.threshold == "" {
		if _, ok := defaultThreshold[c.embedder]; !ok && c.policy != "adaptive" && c.modelThreshold == 0 {
			return fmt.Errorf("--threshold is required with --embedder %s: semcache has no measured default for a remote or trained model; measure one with `semcache bench tune` on your data (or use --policy adaptive)", c.embedder)
		}
	} else if t, err := strconv.ParseFloat(c.threshold, 64); err != nil || !(t > 0 && t <= 1) {
		return fmt.Errorf("--threshold %q: want a cosine similarity in (0, 1] (higher is stricter)", c.threshold)
	}
	if c.topK <= 0 {
		return fmt.Errorf("--top-k %d: must be > 0", c.topK)
	}
	if c.ttl <= 0 {
		return fmt.Errorf("--ttl %v: must be > 0", c.ttl)
	}
	switch api.UIAccess(c.ui) {
	case api.UIOff, api.UILoopback:
	case api.UIToken:
		if c.adminToken == "" {
			return errors.New("--ui token: the dashboard's data then needs the admin token; set SEMCACHE_ADMIN_TOKEN, or use --ui loopback")
		}
	default:
		return fmt.Errorf("--ui %q: want off, loopback or token", c.ui)
	}
	if c.adminToken != "" && !api.ValidAdminToken(c.adminToken) {
		return errors.New("SEMCACHE_ADMIN_TOKEN: want at least 16 characters without white space or control characters (the value is not shown)")
	}
	if c.maxTTL <= 0 {
		return fmt.Errorf("--max-ttl %v: must be > 0", c.maxTTL)
	}
	if c.ttl > c.maxTTL {
		return fmt.Errorf("--ttl %v is above --max-ttl %v", c.ttl, c.maxTTL)
	}
	if c.maxEmbedBytes <= 0 {
		return fmt.Errorf("--max-embed-bytes %d: must be > 0", c.maxEmbedBytes)
	}
	if c.maxBytes < 0 {
		return fmt.Errorf("--max-bytes %d: must not be negative", c.maxBytes)
	}
	if c.maxEntries <= 0 {
		return fmt.Errorf("--max-entries %d: must be > 0", c.maxEntries)
	}
	if c.maxStreamBytes <= 0 {
		return fmt.Errorf("--max-stream-bytes %d: must be > 0", c.maxStreamBytes)
	}
	if c.maxBodyBytes <= 0 {
		return fmt.Errorf("--max-body-bytes %d: must be > 0", c.maxBodyBytes)
	}
	if c.upstreamTimeout <= 0 {
		return fmt.Errorf("--upstream-timeout %v: must be > 0", c.upstreamTimeout)
	}
	if c.leaseTTL != 0 && c.leaseTTL < semantic.MinLeaseTTL {
		return fmt.Errorf("--lease-ttl %v: want 0 (off) or at least %v (a shorter lease expires under load before it is renewed)", c.leaseTTL, semantic.MinLeaseTTL)
	}
	if c.leaseWait < 0 {
		return fmt.Errorf("--lease-wait %v: must not be negative", c.leaseWait)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		zero bool // 0 is allowed
	}{{"read-timeout", c.readTimeout, false}, {"write-timeout", c.writeTimeout, true}, {"idle-timeout", c.idleTimeout, false}} {
		if d.v < 0 || (d.v == 0 && !d.zero) {
			return fmt.Errorf("--%s %v: must be > 0", d.name, d.v)
		}
	}
	if c.maxConns < 0 {
		return fmt.Errorf("--max-connections %d: must not be negative", c.maxConns)
	}
	if c.shutdownTimeout < 0 {
		return fmt.Errorf("--shutdown-timeout %v: must not be negative", c.shutdownTimeout)
	}
	if c.embedderDim < 0 {
		return fmt.Errorf("--embedder-dim %d: must not be negative", c.embedderDim)
	}
	if c.indexKind != "hnsw" && c.indexKind != "flat" {
		return fmt.Errorf("--index %q: want hnsw or flat", c.indexKind)
	}
	if c.embedCacheSize < 0 {
		return fmt.Errorf("--embedding-cache-size %d: must not be negative", c.embedCacheSize)
	}
	if (c.hnswM != 0 && c.hnswM < 2) || c.hnswEfConstr <= 0 || c.hnswEfRuntime <= 0 {
		return fmt.Errorf("--hnsw-m %d, --hnsw-ef-construction %d, --hnsw-ef-runtime %d: want M >= 2 (or 0 for the backend's default) and positive EF values", c.hnswM, c.hnswEfConstr, c.hnswEfRuntime)
	}
	if c.simLatency < 0 || c.simPerToken < 0 {
		return errors.New("--sim-latency and --sim-per-token-latency must not be negative")
	}
	if _, err := c.normalization(); err != nil {
		return err
	}
	if _, err := c.rules(); err != nil {
		return err
	}
	if _, err := c.pricingTable(); err != nil {
		return err
	}
	if _, err := c.logger(io.Discard); err != nil {
		return err
	}
	if c.upstream != "" && !isHTTPURL(c.upstream) {
		return fmt.Errorf("--upstream %q: want an http(s) base URL such as https://api.openai.com/v1", redactURL(c.upstream))
	}
	for _, h := range splitList(c.scopeHeaders) {
		if !validHeaderName(h) {
			return fmt.Errorf("--scope-headers %q: %q is not a header name", c.scopeHeaders, h)
		}
	}
	if _, err := c.guardSet(); err != nil {
		return err
	}
	return c.validatePolicy()
}

// validatePolicy checks the policy flags.
func (c *serveConfig) validatePolicy() error {
	switch c.policy {
	case "static":
		// A mistyped or forgotten --policy must not silently ignore the
		// adaptive policy's settings.
		for _, f := range adaptiveFlags {
			if c.given[f] {
				return fmt.Errorf("--%s applies only to --policy adaptive (the policy is static)", f)
			}
		}
	case "adaptive":
		// The policy decides per entry (or per stratum) from verified
		// answers, with --similarity-floor below it; a threshold given
		// with it would be accepted and do nothing.
		if c.given["threshold"] {
			return errors.New("--threshold applies only to --policy static: the adaptive policy decides per entry which neighbours to serve (never below --similarity-floor); use --max-error-rate to bound its wrong answers")
		}
	default:
		return fmt.Errorf("--policy %q: want static or adaptive", c.policy)
	}
	if !(c.maxErrorRate > 0 && c.maxErrorRate < 1) {
		return fmt.Errorf("--max-error-rate %v: want a fraction of requests in (0, 1), e.g. 0.01", c.maxErrorRate)
	}
	if !(c.floor > 0 && c.floor <= 1) {
		return fmt.Errorf("--similarity-floor %v: want a cosine similarity in (0, 1]", c.floor)
	}
	if c.minObs <= 0 {
		return fmt.Errorf("--min-observations %d: must be > 0", c.minObs)
	}
	switch c.adaptiveRule {
	case "budget":
		if c.given["min-observations"] {
			return errors.New("--min-observations is a setting of --adaptive-rule entry")
		}
	case "entry":
		if c.given["audit-rate"] {
			return errors.New("--audit-rate is a setting of --adaptive-rule budget")
		}
	default:
		return fmt.Errorf("--adaptive-rule %q: want budget or entry", c.adaptiveRule)
	}
	if !(c.auditRate > 0 && c.auditRate < 1) {
		return fmt.Errorf("--audit-rate %v: want a probability in (0, 1), e.g. 0.01", c.auditRate)
	}
	if c.judgeWorkers <= 0 {
		return fmt.Errorf("--judge-workers %d: must be > 0", c.judgeWorkers)
	}
	switch c.judge {
	case "exact":
		if c.judgeThreshold != 0 || c.judgeGreyBand != 0 || c.judgeLLMURL != "" || c.judgeLLMModel != "" {
			return errors.New("--judge-threshold, --judge-grey-band, --judge-llm-url and --judge-llm-model need --judge embedding")
		}
	case "embedding":
		if !(c.judgeThreshold > 0 && c.judgeThreshold <= 1) {
			return fmt.Errorf("--judge embedding needs --judge-threshold in (0, 1] (got %v): calibrate it on answer pairs of your own (README)", c.judgeThreshold)
		}
		if c.judgeGreyBand < 0 || c.judgeGreyBand > c.judgeThreshold {
			return fmt.Errorf("--judge-grey-band %v: want 0 to --judge-threshold", c.judgeGreyBand)
		}
		if c.judgeLLMURL != "" && (!strings.HasPrefix(c.judgeLLMURL, "http://") && !strings.HasPrefix(c.judgeLLMURL, "https://") || c.judgeLLMModel == "") {
			return errors.New("--judge-llm-url needs an http(s) chat-completions URL and --judge-llm-model")
		}
	default:
		return fmt.Errorf("--judge %q: want exact or embedding", c.judge)
	}
	return nil
}

// redisFlags are the flags of --backend redis only, memoryFlags those of
// --backend memory only.
var (
	redisFlags  = []string{"redis-url", "redis-prefix", "redis-pool-size", "redis-timeout", "redis-dial-timeout", "redis-max-retries", "lease-ttl", "lease-wait"}
	memoryFlags = []string{"index", "max-entries", "max-bytes", "data-dir"}
)

// validListen checks that addr is a host:port net.Listen can be asked for:
// the host may be empty (every interface) and the port a number in
// [0, 65535] or a service name. Whether the address is free is only known
// when runServe listens.
func validListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:8080 (%v)", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("--listen %q: port %q: want a number in [0, 65535]", addr, port)
	}
	return nil
}

// isHTTPURL reports whether s is an absolute http or https URL with a host.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// adaptiveFlags are the flags of --policy adaptive only.
var adaptiveFlags = []string{"max-error-rate", "similarity-floor", "min-observations", "adaptive-rule", "audit-rate", "judge", "judge-threshold",
	"judge-grey-band", "judge-llm-url", "judge-llm-model", "judge-workers", "policy-seed"}

// guardSet builds the meaning-flip guards of --guards, --guard-tokens and
// --guard-opposites; nil when all are off.
func (c *serveConfig) guardSet() (*semantic.Guards, error) {
	cfg, on, err := semantic.ParseGuardKinds(c.guards)
	if err != nil {
		return nil, fmt.Errorf("--guards %q: want none or a comma list of %s", c.guards, semantic.GuardKindNames)
	}
	if c.guardTokens != "" {
		for _, w := range strings.Split(c.guardTokens, ",") {
			cfg.Extra = append(cfg.Extra, strings.TrimSpace(w))
		}
		on = true
	}
	if c.guardOpposites != "" {
		if !cfg.Opposites {
			return nil, fmt.Errorf("--guard-opposites needs opposites in --guards (now %q)", c.guards)
		}
		for _, p := range strings.Split(c.guardOpposites, ",") {
			a, b, ok := strings.Cut(strings.TrimSpace(p), ":")
			if !ok {
				return nil, fmt.Errorf("--guard-opposites %q: pair %q: want word:word", c.guardOpposites, p)
			}
			cfg.ExtraOpposites = append(cfg.ExtraOpposites, [2]string{a, b})
		}
	}
	if !on {
		return nil, nil
	}
	g, err := semantic.NewGuards(cfg)
	if err != nil {
		return nil, fmt.Errorf("--guards/--guard-tokens/--guard-opposites: %w", err)
	}
	return g, nil
}

// policyConfig returns the cache's policy settings.
func (c *serveConfig) policyConfig(emb semantic.Embedder) (semantic.Policy, semantic.AdaptiveConfig) {
	if c.policy != "adaptive" {
		return semantic.PolicyStatic, semantic.AdaptiveConfig{}
	}
	judge := &semantic.AnswerJudge{}
	if c.judge == "embedding" {
		judge.Embedder, judge.Threshold, judge.GreyBand = emb, c.judgeThreshold, c.judgeGreyBand
		if c.judgeLLMURL != "" {
			judge.LLM = &semantic.LLMJudge{URL: c.judgeLLMURL, Model: c.judgeLLMModel, APIKey: c.judgeLLMKey,
				Client: &http.Client{Timeout: 30 * time.Second}}
		}
	}
	return semantic.PolicyAdaptive, semantic.AdaptiveConfig{
		MaxErrorRate: c.maxErrorRate, MinObservations: c.minObs, Floor: c.floor,
		Seed: uint64(c.policySeed), Judge: judge, JudgeWorkers: c.judgeWorkers,
		Rule: semantic.Allocation(c.adaptiveRule), Audit: c.auditRate,
	}
}

// thresholdValue returns the threshold in force: --threshold or the
// embedder's default under the static policy; under the adaptive policy,
// which takes no --threshold, the --similarity-floor, below which nothing
// is served (the semantic.Config needs a threshold, and this is the one the
// adaptive policy applies).
func (c *serveConfig) thresholdValue() float64 {
	if c.policy == "adaptive" {
		return c.floor
	}
	if c.threshold == "" {
		if c.modelThreshold > 0 {
			return c.modelThreshold
		}
		return defaultThreshold[c.embedder]
	}
	t, _ := strconv.ParseFloat(c.threshold, 64)
	return t
}

// rules returns the TTL rules in force: the built-in set, none (nil), or a
// rules file.
func (c *serveConfig) rules() (*semantic.Rules, error) {
	switch c.ttlRules {
	case "default":
		return semantic.DefaultRules(), nil
	case "none", "":
		return nil, nil
	}
	r, err := semantic.LoadRules(c.ttlRules)
	if err != nil {
		return nil, fmt.Errorf("--ttl-rules: %w", err)
	}
	return r, nil
}

// pricingTable returns the pricing table in force: the built-in one, none
// (nil: no cost accounting), or a pricing file.
func (c *serveConfig) pricingTable() (*semantic.Pricing, error) {
	switch c.pricing {
	case "default":
		return semantic.DefaultPricing(), nil
	case "none", "":
		return nil, nil
	}
	p, err := semantic.LoadPricing(c.pricing)
	if err != nil {
		return nil, fmt.Errorf("--pricing: %w", err)
	}
	return p, nil
}

func (c *serveConfig) normalization() (semantic.Normalization, error) {
	n := semantic.Normalization{SkipNFC: true, KeepCase: true, KeepSpace: true}
	switch c.splitContext {
	case "auto":
	case "off":
		n.WholeMessage = true
	default:
		return n, fmt.Errorf("--split-context %q: want auto or off", c.splitContext)
	}
	if c.questionRegexp != "" {
		re, err := semantic.CompileQuestionPattern(c.questionRegexp)
		if err != nil {
			return n, fmt.Errorf("--question-pattern: %w", err)
		}
		n.Question = re
	}
	if c.normalize == "none" {
		return n, nil
	}
	for _, step := range strings.Split(c.normalize, ",") {
		switch strings.TrimSpace(step) {
		case "nfc":
			n.SkipNFC = false
		case "lower":
			n.KeepCase = false
		case "space":
			n.KeepSpace = false
		default:
			return n, fmt.Errorf("--normalize %q: unknown step %q (want nfc, lower, space or none)", c.normalize, step)
		}
	}
	return n, nil
}

func (c *serveConfig) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", c.logFormat)
	}
}

// newEmbedder builds the configured embedder behind an embedding cache;
// the openai one after a probe request (newOpenAI).
func (c *serveConfig) newEmbedder(ctx context.Context, log *slog.Logger) (*embedding.Cached, error) {
	var e embedding.Embedder
	var err error
	switch c.embedder {
	case "openai":
		e, err = c.newOpenAI(ctx, log)
	case "trained":
		e, err = embedding.LoadTrained(c.embedderModel)
		if err != nil {
			return nil, badSetting("--embedder-model: %w", err) // err names the file
		}
	default:
		e, err = embedding.NewLocal(embedding.LocalConfig{Dim: c.embedderDim})
	}
	if err != nil {
		return nil, err
	}
	return embedding.NewCached(e, c.embedCacheSize)
}

// probeTimeout bounds the openai embedder's start-up probe.
const probeTimeout = 10 * time.Second

// newOpenAI builds the openai embedder after embedding one short text with
// it (bounded by probeTimeout), so that the vector index is created with
// the length the server really returns:
//
//   - --embedder-dim set (flag or SEMCACHE_EMBEDDER_DIM): it is sent as
//     "dimensions" and the probe's length must equal it, else the start
//     stops with a *settingError naming --embedder-dim (the server ignored
//     the field).
//   - --embedder-dim unset: no "dimensions" field is sent (models such as
//     text-embedding-ada-002 and many local servers refuse it) and the
//     probe's length is the dimension.
//   - The server answers the probe with a 4xx error other than 408 and 429
//     (wrong URL, model, key, or a refused dimensions field): a
//     *settingError naming the flags, exit 2.
//   - The server cannot be reached, times out, or answers 5xx or 429: with
//     --embedder-dim set the proxy starts anyway and logs a warning, as it
//     does for a Redis that is down: a gateway must come up when its
//     embedder is briefly away, and until the embedder answers every
//     lookup fails open to the exact tier and upstream. Without
//     --embedder-dim the dimension is unknown, so the start fails (exit 1)
//     with an error naming --embedder-url and saying to set --embedder-dim.
func (c *serveConfig) newOpenAI(ctx context.Context, log *slog.Logger) (*embedding.OpenAI, error) {
	explicit := c.given["embedder-dim"]
	cfg := embedding.OpenAIConfig{BaseURL: c.embedderURL, APIKey: c.embedderKey, Model: c.embedderModel,
		Dim: c.embedderDim, SendDimensions: explicit}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	n, err := embedding.ProbeOpenAIDim(pctx, cfg)
	cancel()
	status := embedding.HTTPStatus(err)
	url := redactURL(c.embedderURL)
	switch {
	case err == nil && explicit && n != c.embedderDim:
		return nil, badSetting("--embedder-dim %d: the embedder at %s returned %d-dimensional vectors for %s (it ignores the dimensions field): set --embedder-dim %d, or leave it unset",
			c.embedderDim, url, n, c.embedderModel, n)
	case err == nil:
		cfg.Dim = n
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return nil, badSetting("SEMCACHE_EMBEDDER_API_KEY: the embedder at %s refused the start-up probe (%d): %w", url, status, err)
	case status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
		flags := "--embedder-url %s, --embedder-model %s"
		args := []any{url, c.embedderModel}
		if explicit {
			flags += ", --embedder-dim %d (sent as dimensions; leave it unset if the model does not take it)"
			args = append(args, c.embedderDim)
		}
		return nil, badSetting(flags+": the embedder refused the start-up probe: %w", append(args, err)...)
	case explicit:
		log.Warn("embedder unreachable at start-up: starting with --embedder-dim; semantic lookups fail open (exact tier only) until it answers",
			"embedder_url", url, "dim", c.embedderDim, "err", err)
	default:
		return nil, fmt.Errorf("--embedder-url %s: the embedder did not answer the start-up probe, so the vector length is unknown (start it, or set --embedder-dim to start without it): %w", url, err)
	}
	return embedding.NewOpenAI(cfg)
}

// store is a semantic.Store that holds resources until Close.
type store interface {
	semantic.Store
	Close() error
}

// newStore builds the configured backend for the embedder's vector space.
//
// On Redis, vector hashes the index fails to index (hash_indexing_failures
// rising) are logged and counted as store errors in stats, the stats set
// into indexFailures once the cache exists.
func (c *serveConfig) newStore(ctx context.Context, emb semantic.Embedder, log *slog.Logger, indexFailures *atomic.Pointer[semantic.Stats]) (store, error) {
	if c.backend == "redis" {
		retries := c.redisRetries
		if retries == 0 {
			retries = -1 // RedisConfig: 0 means the default, negative none
		}
		r, err := index.NewRedis(ctx, index.RedisConfig{
			URL: c.redisURL, Prefix: c.redisPrefix, Dim: emb.Dim(), Fingerprint: emb.Fingerprint(),
			M: c.hnswM, EfConstruction: c.hnswEfConstr, EfRuntime: c.hnswEfRuntime,
			PoolSize: c.redisPoolSize, DialTimeout: c.redisDialTO, ReadTimeout: c.redisTimeout, WriteTimeout: c.redisTimeout,
			MaxRetries: retries,
			OnIndexingFailures: func(rise, total int64) {
				log.Warn("redis: vector hashes failed to index (hash_indexing_failures rose): the semantic tier cannot find them; check the index schema and the vectors", "index_failures", rise, "since_start", total)
				if s := indexFailures.Load(); s != nil {
					s.StoreErrors.Add(rise)
				}
			},
		})
		if errors.Is(err, index.ErrIndexSchema) {
			return nil, badSetting("--redis-prefix %q: %w: it was created with other --embedder or --hnsw-* settings; keep them, or use another --redis-prefix", c.redisPrefix, err)
		}
		if err != nil {
			return nil, fmt.Errorf("redis backend: %w", err)
		}
		if r.ExactOnly() {
			log.Warn("redis cluster: exact tier only; the semantic tier needs a vector index across shards (the RediSearch coordinator or Redis Enterprise), which semcache does not use on a Cluster")
			return r, nil
		}
		if !r.Ready() {
			log.Warn("redis backend not ready (server down or RediSearch module missing): exact tier only until it is, retrying", "index", r.IndexName())
		}
		return r, nil
	}
	mcfg := index.MemoryConfig{
		Dim: emb.Dim(), MaxEntries: c.maxEntries, MaxBytes: c.maxBytes, Index: c.indexKind,
		HNSW: index.HNSWConfig{M: c.hnswM, EfConstruction: c.hnswEfConstr, EfSearch: c.hnswEfRuntime},
		Dir:  c.dataDir, Fingerprint: emb.Fingerprint(),
	}
	start := time.Now()
	m, err := index.NewMemory(mcfg)
	switch {
	case errors.Is(err, index.ErrStoreInUse) && c.dataDirDefault:
		// Only the default: a second instance started without
		// --data-dir (another port, a test run) still starts, without
		// durability, and says so. A directory the operator named is
		// never shared.
		log.Warn("the default data directory is in use by another semcache serve: this one keeps its cache in memory only; give --data-dir for one of its own", "data_dir", c.dataDir)
		mcfg.Dir = ""
		m, err = index.NewMemory(mcfg)
	case errors.Is(err, index.ErrStoreInUse):
		return nil, badSetting("--data-dir %s: %w: another semcache serve uses it; stop it or give another --data-dir", c.dataDir, err)
	case errors.Is(err, index.ErrIncompatibleStore):
		return nil, badSetting("--data-dir %s: %w; start with the settings that wrote it, or give another --data-dir (this one is left as it is)", c.dataDir, err)
	case errors.Is(err, index.ErrCorruptStore):
		return nil, badSetting("--data-dir %s: %w; move the file away to start empty, or give another --data-dir (nothing was deleted)", c.dataDir, err)
	}
	if err != nil && mcfg.Dir != "" { // e.g. a directory it may not create or write
		return nil, badSetting("--data-dir %s: %w", c.dataDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("memory backend: %w", err)
	}
	if mcfg.Dir != "" {
		n, _ := m.Len(ctx)
		log.Info("data directory loaded", "data_dir", mcfg.Dir, "entries", n, "disk_bytes", m.DiskBytes(),
			"ms", time.Since(start).Milliseconds(), "warming_scopes", m.Warming())
	}
	return m, nil
}

// serve runs the proxy until ctx ends.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseServe(args, os.Getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "semcache serve: %v\n", err)
		return 2
	}
	log, _ := cfg.logger(stderr)
	if err := runServe(ctx, cfg, log, nil); err != nil {
		var bad *settingError
		if errors.As(err, &bad) {
			fmt.Fprintf(stderr, "semcache serve: %v\n", err)
			return 2
		}
		if errors.Is(err, errRequestsCut) {
			log.Error("semcache serve stopped, cutting requests in flight", "err", err)
			return exitCut
		}
		log.Error("semcache serve failed", "err", err)
		return 1
	}
	return 0
}

// runServe serves until ctx ends. ready, when not nil, is called with the
// proxy's base URL once it accepts connections. A setting that is well
// formed but cannot be used (an address already in use, a model file that
// cannot be read) is returned as a *settingError naming its flag.
func runServe(ctx context.Context, cfg serveConfig, log *slog.Logger, ready func(baseURL string)) error {
	switch {
	case cfg.backend != "memory":
	case cfg.dataDir != "":
		log.Info("cache kept across restarts in the data directory (--data-dir none: memory only)", "data_dir", cfg.dataDir, "default", cfg.dataDirDefault)
	default:
		log.Info("cache kept in memory only: it is lost when the process ends (--data-dir DIR keeps it)")
	}
	// First, so that a taken address stops the start before anything
	// slower is set up.
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err // "bind: address already in use", without repeating the address
		}
		return badSetting("--listen %s: %w", cfg.listen, err)
	}
	defer ln.Close()
	if cfg.maxConns > 0 {
		ln = netutil.LimitListener(ln, cfg.maxConns)
	}
	emb, err := cfg.newEmbedder(ctx, log)
	if err != nil {
		return err
	}
	upstream := cfg.upstream
	if upstream == "" {
		simLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("start simulated upstream: %w", err)
		}
		simSrv := &http.Server{Handler: sim.New(sim.Config{Latency: cfg.simLatency, PerToken: cfg.simPerToken}), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = simSrv.Serve(simLn) }()
		defer simSrv.Close()
		upstream = "http://" + simLn.Addr().String() + "/v1"
		log.Warn("no --upstream configured: answers come from the built-in SIMULATED upstream, not a real model",
			"simulated_upstream", upstream, "latency", cfg.simLatency, "per_token", cfg.simPerToken)
	}

	if cfg.threshold == "" && cfg.policy == "static" && cfg.embedder == "local" && emb.Dim() != 384 {
		log.Warn("the local embedder's default threshold was measured at 384 dimensions; measure yours with `semcache bench tune`", "dim", emb.Dim(), "threshold", cfg.thresholdValue())
	}
	var indexFailures atomic.Pointer[semantic.Stats]
	store, err := cfg.newStore(ctx, emb, log, &indexFailures)
	if err != nil {
		return err
	}
	defer store.Close()
	norm, _ := cfg.normalization()
	rules, err := cfg.rules() // validated, but the file may have changed since
	if err != nil {
		return &settingError{err}
	}
	pricing, err := cfg.pricingTable() // likewise
	if err != nil {
		return &settingError{err}
	}
	if pricing != nil {
		log.Info("pricing table loaded: check its prices against your provider's", "pricing", cfg.pricing,
			"models", pricing.Len(), "source", pricing.Source(), "as_of", pricing.AsOf())
	}
	guards, _ := cfg.guardSet()
	policy, adaptive := cfg.policyConfig(emb)
	cache, err := semantic.New(semantic.Config{
		Threshold: cfg.thresholdValue(), TopK: cfg.topK, TTL: cfg.ttl,
		UpstreamTimeout: cfg.upstreamTimeout, Normalization: norm, Logger: log, MaxEmbedBytes: cfg.maxEmbedBytes,
		Pricing: pricing, Policy: policy, Adaptive: adaptive, Guards: guards, Lease: cfg.leaseConfig(),
	}, emb, store)
	if err != nil {
		return err
	}
	indexFailures.Store(cache.Stats())
	defer cache.Close() // after the server has stopped: drops unfinished verifications
	srv, err := api.New(api.Config{
		Upstream: upstream, UpstreamAPIKey: cfg.upstreamKey, SharedNamespace: cfg.namespace,
		CacheDisabled: !cfg.enabled, MaxBodyBytes: cfg.maxBodyBytes, MaxStreamBytes: cfg.maxStreamBytes, MaxTTL: cfg.maxTTL, Rules: rules, Logger: log,
		AdminToken: cfg.adminToken, ScopeHeaders: splitList(cfg.scopeHeaders),
		UI: api.UIAccess(cfg.ui), UIPrompts: cfg.uiPrompts,
	}, cache)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: cfg.readTimeout,
		WriteTimeout: cfg.effectiveWriteTimeout(), IdleTimeout: cfg.idleTimeout}
	decisionKey, decisionValue := "threshold", cfg.thresholdValue() // what decides a semantic hit
	if cfg.policy == "adaptive" {
		decisionKey, decisionValue = "similarity_floor", cfg.floor
	}
	log.Info("semcache listening", "addr", "http://"+ln.Addr().String(), "upstream", redactURL(upstream),
		"cache", cfg.enabled, "backend", cfg.backend, "index", cfg.indexKind,
		"embedder", emb.Fingerprint(), decisionKey, decisionValue, "ttl", cfg.ttl,
		"policy", cfg.policy, "max_error_rate", cache.MaxErrorRate(0), "guards", cfg.guards, "guard_tokens", cfg.guardTokens, "split_context", cfg.splitContext, "question_pattern", cfg.questionRegexp != "",
		"upstream_key_set", cfg.upstreamKey != "", "admin_endpoints", cfg.adminToken != "", "ui", cfg.ui)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	if ready != nil {
		ready("http://" + ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", cfg.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("requests still in flight at the end of --shutdown-timeout were cut", "err", err)
		_ = hs.Close()
		return fmt.Errorf("%w: %v", errRequestsCut, err)
	}
	return nil
}

// settingError is runServe's error for a setting that parseServe accepted
// but that cannot be used: an address already in use, a model file that
// cannot be read, a Redis index made by other settings. Its message names
// the flag; serve exits 2 on it, as on parseServe's errors.
type settingError struct{ err error }

func (e *settingError) Error() string { return e.err.Error() }
func (e *settingError) Unwrap() error { return e.err }

// badSetting returns a *settingError with the message fmt.Errorf gives.
func badSetting(format string, args ...any) error {
	return &settingError{fmt.Errorf(format, args...)}
}

// errRequestsCut is runServe's error when a shutdown had to cut requests
// still in flight at the end of --shutdown-timeout; serve exits with
// exitCut then.
var errRequestsCut = errors.New("shutdown cut requests in flight")

// exitCut is the exit code of a shutdown that cut requests in flight.
const exitCut = 3

// leaseConfig maps --lease-ttl 0 to the lease being off.
func (c serveConfig) leaseConfig() semantic.LeaseConfig {
	lc := semantic.LeaseConfig{TTL: c.leaseTTL, Wait: c.leaseWait}
	if lc.TTL == 0 {
		lc.TTL = -1
	}
	return lc
}

// effectiveWriteTimeout is --write-timeout, or --upstream-timeout + 30s
// when it is 0: an answer, streamed or not, may take as long as its
// upstream call plus time to relay it.
func (c serveConfig) effectiveWriteTimeout() time.Duration {
	if c.writeTimeout > 0 {
		return c.writeTimeout
	}
	return c.upstreamTimeout + 30*time.Second
}

// durationFlag, intFlag, int64Flag and boolFlag define flags like the
// flag package's *Var functions, with parse errors that say what they want.
func durationFlag(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	fs.Var(durationValue{p}, name, usage)
}

func floatFlag(fs *flag.FlagSet, p *float64, name string, def float64, usage string) {
	*p = def
	fs.Var(floatValue{p}, name, usage)
}

type floatValue struct{ p *float64 }

func (v floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("want a number, got %q", s)
	}
	*v.p = f
	return nil
}

func (v floatValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func intFlag(fs *flag.FlagSet, p *int, name string, def int, usage string) {
	*p = def
	fs.Var(intValue{p}, name, usage)
}

func int64Flag(fs *flag.FlagSet, p *int64, name string, def int64, usage string) {
	*p = def
	fs.Var(int64Value{p}, name, usage)
}

func boolFlag(fs *flag.FlagSet, p *bool, name string, def bool, usage string) {
	*p = def
	fs.Var(boolValue{p}, name, usage)
}

// Flag values whose parse errors say what they want (the standard ones say
// only "parse error").
type (
	durationValue struct{ p *time.Duration }
	intValue      struct{ p *int }
	int64Value    struct{ p *int64 }
	boolValue     struct{ p *bool }
)

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a Go duration such as 500ms, 30s or 1h")
	}
	*v.p = d
	return nil
}

func (v durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("want a whole number")
	}
	*v.p = n
	return nil
}

func (v intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v int64Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("want a whole number")
	}
	*v.p = n
	return nil
}

func (v int64Value) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatInt(*v.p, 10)
}

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	*v.p = b
	return nil
}

func (v boolValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatBool(*v.p)
}

// IsBoolFlag lets --cache stand alone for --cache=true.
func (boolValue) IsBoolFlag() bool { return true }

// redactURL returns raw with what may be a secret replaced by "REDACTED":
// the user information (user and password) and the values of query
// parameters whose name mentions a key, token, secret, password or
// signature. Text that does not parse as a URL is returned as
// "REDACTED" when it holds an "@", else as is. It is used for every URL
// that reaches a log line or an error message.
func redactURL(raw string) string {
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			// The user information ends at the last "@": a password with
			// an unescaped "?" or "/" would otherwise pass url.Parse as
			// a path or a query.
			raw = scheme + "://REDACTED@" + rest[at+1:]
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return "REDACTED"
		}
		return raw
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			lk := strings.ToLower(k)
			for _, w := range []string{"key", "token", "secret", "pass", "sig", "auth"} {
				if strings.Contains(lk, w) {
					q.Set(k, "REDACTED")
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// splitList splits a comma-separated flag value into its trimmed, non-empty
// items.
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validHeaderName reports whether h is an HTTP field name (RFC 9110 §5.1:
// a token of visible ASCII without separators).
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, r := range h {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}
