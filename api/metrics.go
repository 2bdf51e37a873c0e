package api

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/semcache/semcache/semantic"
)

// namespace prefixes every metric the proxy exports.
const namespace = "semcache"

// durationBuckets are the upper bounds, in seconds, of
// semcache_request_duration_seconds: 0.1 ms (an in-process exact hit) to
// 60 s (a long upstream answer or stream).
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

// similarityBuckets are the upper bounds of semcache_semantic_similarity:
// cosine similarity 0.5 to 1.0 in steps of 0.05. Written out rather than
// computed so that the le labels carry no float rounding.
var similarityBuckets = []float64{0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1}

// nearestBuckets are the upper bounds of semcache_miss_nearest_similarity:
// cosine similarity 0 to 1 in steps of 0.05 (misses' nearest neighbours
// are mostly far below the threshold).
var nearestBuckets = []float64{0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1}

// entriesTimeout bounds counting the cache's entries during a scrape (a
// network call for Redis).
const entriesTimeout = 3 * time.Second

// metrics is the proxy's Prometheus instrumentation. Each Server has its
// own registry, so several servers in one process never collide. It is safe
// for concurrent use.
type metrics struct {
	reg        *prometheus.Registry
	duration   *prometheus.HistogramVec
	similarity prometheus.Histogram
	nearest    *prometheus.HistogramVec
	handler    http.Handler
}

// newMetrics returns a registry holding the cache's counters (read at
// scrape time), the request histograms and the Go runtime and process
// collectors, and the handler that serves it. Gathering errors are logged
// to log, and the metrics that could be gathered are still served.
func newMetrics(cache *semantic.Cache, log *slog.Logger) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "request_duration_seconds",
			Help: "Time in seconds from receiving a chat completion request to the end of its response " +
				"(the whole stream for bypasses), by outcome (hit, miss, bypass) and tier of hits (exact, semantic; empty otherwise). " +
				"Like semcache_requests_total, it leaves out cached-path requests that failed (upstream error, client gone) and counts every bypass.",
			Buckets: durationBuckets,
		}, []string{"outcome", "tier"}),
		similarity: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "semantic_similarity",
			Help:      "Cosine similarity, in [-1, 1], of each semantic hit's prompt to the stored prompt that served it; higher is closer.",
			Buckets:   similarityBuckets,
		}),
		nearest: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "miss_nearest_similarity",
			Help: "Cosine similarity, in [-1, 1], of each miss's nearest neighbour in scope (misses with none are left out), " +
				"by whether a guard refused it (refused: true, false): the near misses a lower threshold would have considered.",
			Buckets: nearestBuckets,
		}, []string{"refused"}),
	}
	// Create every series up front so that dashboards see zeros, not gaps.
	for _, l := range requestLabels {
		m.duration.WithLabelValues(l.outcome, l.tier)
	}
	m.nearest.WithLabelValues("true")
	m.nearest.WithLabelValues("false")
	m.reg.MustRegister(
		newCacheCollector(cache),
		m.duration,
		m.similarity,
		m.nearest,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "similarity_threshold",
			Help: "The cosine similarity a semantic neighbour needs to be served (the adaptive policy's floor under --policy adaptive)."},
			func() float64 { return cache.EffectiveThreshold(0) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "max_error_rate",
			Help: "Adaptive policy: the configured bound δ on the rate of wrong semantic hits (--max-error-rate); 0 under static."},
			func() float64 { return cache.MaxErrorRate(0) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // counts its own errors: promhttp_metric_handler_errors_total
	})
	return m
}

// observe records one answered chat completion: its duration by outcome and
// tier, and the similarity of a semantic hit.
func (m *metrics) observe(r semantic.Result, elapsed time.Duration) {
	m.duration.WithLabelValues(outcomeLabel(r.Outcome), string(r.Tier)).Observe(elapsed.Seconds())
	if r.Outcome == semantic.Hit && r.Tier == semantic.TierSemantic {
		m.similarity.Observe(r.Similarity)
	}
	if r.Outcome == semantic.Miss && r.HasNearest {
		m.nearest.WithLabelValues(strconv.FormatBool(r.Refused != "")).Observe(r.Nearest)
	}
}

// outcomeLabel is the outcome label value: hit, miss or bypass.
func outcomeLabel(o semantic.Outcome) string { return strings.ToLower(string(o)) }

// requestLabels are the outcome and tier label pairs of the request
// metrics, the only ones they take (cacheCollector.Collect sends the same).
var requestLabels = []struct{ outcome, tier string }{
	{outcomeLabel(semantic.Hit), string(semantic.TierExact)},
	{outcomeLabel(semantic.Hit), string(semantic.TierSemantic)},
	{outcomeLabel(semantic.Miss), ""},
	{outcomeLabel(semantic.Bypass), ""},
}

// cacheCollector exports semantic.Cache's Stats as constant metrics built at
// scrape time, so the cache keeps its dependency-free counters and nothing
// is counted twice. It is safe for concurrent use.
type cacheCollector struct {
	cache *semantic.Cache

	requests, upstreamCalls, upstreamErrors, lookupErrors, storeErrors, unstored, tokensSaved, costSaved, unpricedHits,
	leaseWaits, evictions, expired, entries *prometheus.Desc
	guardRefusals, explorations, verdicts, judgeErrors, judgeDropped, estimatedErrors, learnedThreshold *prometheus.Desc
}

var _ prometheus.Collector = (*cacheCollector)(nil)

func newCacheCollector(cache *semantic.Cache) *cacheCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &cacheCollector{
		cache: cache,
		requests: desc("requests_total",
			"Chat completion and embeddings requests answered, by outcome (hit, miss, bypass) and tier of hits (exact, semantic; empty otherwise). An embeddings request is a hit only when every input was cached.",
			"outcome", "tier"),
		upstreamCalls: desc("upstream_calls_total",
			"Upstream chat completion calls made by the cache; concurrent identical misses share one, bypasses are not counted."),
		upstreamErrors: desc("upstream_errors_total",
			"Upstream calls made by the cache that failed or answered with a status other than 200."),
		lookupErrors: desc("lookup_errors_total",
			"Embedder and store failures on the read path; each one sent its request upstream (fail open)."),
		storeErrors: desc("store_errors_total",
			"Upstream answers that could not be stored."),
		unstored: desc("unstored_answers_total",
			"200 answers relayed but not stored: incomplete or not a well-formed chat completion."),
		leaseWaits: desc("lease_waits_total",
			"Misses that found another replica's lease on their key (Redis backend) and waited, by result: served (the holder's stored answer, no upstream call here) or fallback (own upstream call: the holder died, its answer was not stored, the wait bound passed, or Redis failed).",
			"result"),
		tokensSaved: desc("tokens_saved_total",
			"Tokens of the stored answers that served hits, by kind (prompt, completion): usage not spent upstream.",
			"kind"),
		costSaved: desc("cost_saved_usd_total",
			"US dollars the tokens saved by hits would have cost upstream, at the list price of each entry's model in the pricing table (--pricing); 0 without one."),
		unpricedHits: desc("unpriced_hits_total",
			"Hits whose entry's model has no price in the pricing table: their tokens are in semcache_tokens_saved_total but not in semcache_cost_saved_usd_total."),
		evictions: desc("evictions_total",
			"Entries the memory backend's LRU evicted to stay within --max-entries (deletions and expiry excluded). Always 0 on Redis, which evicts under its own maxmemory policy: see its INFO stats evicted_keys."),
		expired: desc("expired_total",
			"Expired entries the memory backend deleted (by its sweep or when read). Always 0 on Redis, which expires keys itself: see its INFO stats expired_keys."),
		entries: desc("entries",
			"Live cache entries, counted at scrape time."),
		guardRefusals: desc("guard_refusals_total",
			"Semantic neighbours at or above the threshold that were refused, by reason (negation, number, literal, opposite, roles, substitution, token, context, template).",
			"reason"),
		explorations: desc("explorations_total",
			"Adaptive policy: misses that had a neighbour the policy chose to verify instead of serving."),
		verdicts: desc("verifications_total",
			"Adaptive policy: verifications of explored neighbours, by verdict (right, wrong; judge errors count as wrong).",
			"verdict"),
		judgeErrors: desc("judge_errors_total",
			"Adaptive policy: verifications whose judge failed (counted as wrong)."),
		judgeDropped: desc("judge_dropped_total",
			"Adaptive policy: verifications dropped because the judge queue was full."),
		estimatedErrors: desc("estimated_wrong_hits_total",
			"Adaptive policy: expected number of wrong semantic hits served, the sum of 1 - P(correct | similarity) by the policy's estimate (the similarity bin's wrong rate under --adaptive-rule budget, the entry's fit under entry); divide by requests for the estimated error rate."),
		learnedThreshold: desc("learned_threshold",
			"Adaptive policy, --adaptive-rule budget: the lowest cosine similarity served at --max-error-rate, by stratum (agree, disagree, alone: what the second neighbour's answer says); absent where nothing is served yet.",
			"stratum"),
	}
}

// Describe sends the descriptors of every metric Collect sends.
func (cc *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		cc.requests, cc.upstreamCalls, cc.upstreamErrors, cc.lookupErrors, cc.storeErrors, cc.unstored, cc.leaseWaits, cc.tokensSaved,
		cc.costSaved, cc.unpricedHits, cc.evictions, cc.expired, cc.entries,
		cc.guardRefusals, cc.explorations, cc.verdicts, cc.judgeErrors, cc.judgeDropped, cc.estimatedErrors,
		cc.learnedThreshold,
	} {
		ch <- d
	}
}

// Collect reads the cache's counters and counts its entries. When the
// entries cannot be counted, semcache_entries is left out of the scrape.
func (cc *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := cc.cache.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	hit := outcomeLabel(semantic.Hit)
	counter(cc.requests, s.ExactHits.Load(), hit, string(semantic.TierExact))
	counter(cc.requests, s.SemanticHits.Load(), hit, string(semantic.TierSemantic))
	counter(cc.requests, s.Misses.Load(), outcomeLabel(semantic.Miss), "")
	counter(cc.requests, s.Bypasses.Load(), outcomeLabel(semantic.Bypass), "")
	counter(cc.upstreamCalls, s.UpstreamCalls.Load())
	counter(cc.upstreamErrors, s.UpstreamErrors.Load())
	counter(cc.lookupErrors, s.LookupErrors.Load())
	counter(cc.storeErrors, s.StoreErrors.Load())
	counter(cc.unstored, s.Unstored.Load())
	counter(cc.leaseWaits, s.LeaseServed.Load(), "served")
	counter(cc.leaseWaits, s.LeaseFallbacks.Load(), "fallback")
	counter(cc.tokensSaved, s.PromptTokensSaved.Load(), "prompt")
	counter(cc.tokensSaved, s.CompletionTokensSaved.Load(), "completion")
	ch <- prometheus.MustNewConstMetric(cc.costSaved, prometheus.CounterValue, float64(s.CostSavedMicroUSD.Load())/1e6)
	counter(cc.unpricedHits, s.UnpricedHits.Load())
	evictions, _ := cc.cache.Evictions() // 0 when the store does not count them
	counter(cc.evictions, evictions)
	expired, _ := cc.cache.Expired()
	counter(cc.expired, expired)
	for _, reason := range semantic.RefusalReasons {
		counter(cc.guardRefusals, s.Refused(reason), reason)
	}
	counter(cc.explorations, s.Explorations.Load())
	counter(cc.verdicts, s.VerifiedRight.Load(), "right")
	counter(cc.verdicts, s.VerifiedWrong.Load(), "wrong")
	counter(cc.judgeErrors, s.JudgeErrors.Load())
	counter(cc.judgeDropped, s.JudgeDropped.Load())
	ch <- prometheus.MustNewConstMetric(cc.estimatedErrors, prometheus.CounterValue, float64(s.EstimatedErrorMicros.Load())/1e6)
	if th, ok := cc.cache.LearnedThresholds(); ok {
		for k, t := range th {
			if !math.IsNaN(t) {
				ch <- prometheus.MustNewConstMetric(cc.learnedThreshold, prometheus.GaugeValue, t, semantic.Stratum(k).String())
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), entriesTimeout)
	defer cancel()
	n, err := cc.cache.Len(ctx)
	if err != nil {
		// Absent, not an invalid metric: the handler logged a warning per
		// scrape for a store that cannot count at all (Redis Cluster, Redis
		// without RediSearch). The stats endpoint says -1.
		return
	}
	ch <- prometheus.MustNewConstMetric(cc.entries, prometheus.GaugeValue, float64(n))
}
