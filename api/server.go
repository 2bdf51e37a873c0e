// Package api is semcache's OpenAI-compatible HTTP proxy: it answers
// POST /v1/chat/completions, /v1/responses, /v1/completions and
// /v1/embeddings (and their Azure OpenAI forms under
// /openai/deployments/{deployment}/) from the cache or the upstream LLM
// API, and forwards every other /v1 and /openai request unchanged. It also
// serves the operator's dashboard at GET /ui (see UIAccess and
// api/dashboard).
package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/semcache/semcache/api/dashboard"
	"github.com/semcache/semcache/semantic"
)

// Response headers set on every chat completion that went through the proxy.
const (
	// HeaderStatus is HIT, MISS or BYPASS.
	HeaderStatus = "X-Semcache-Status"
	// HeaderTier is exact or semantic, on hits.
	HeaderTier = "X-Semcache-Tier"
	// HeaderSimilarity is the cosine similarity in [-1, 1] of a semantic
	// hit, or of the neighbour an explored miss verifies (4 decimals).
	HeaderSimilarity = "X-Semcache-Similarity"
	// HeaderKey is the id of the entry that served the hit or that the miss
	// stored.
	HeaderKey = "X-Semcache-Key"
)

// Config configures a Server. New copies it.
type Config struct {
	// Upstream is the base URL of the OpenAI-compatible API, e.g.
	// https://api.openai.com/v1; request paths below /v1 are appended to
	// it. Required.
	Upstream string
	// UpstreamAPIKey, when set, replaces the client's Authorization header
	// on upstream calls (Bearer UpstreamAPIKey). Empty means the client's
	// header is passed through.
	UpstreamAPIKey string
	// SharedNamespace, when set, puts every client in one tenant of that
	// name instead of one tenant per bearer token. Only for deployments
	// whose clients may see each other's answers.
	SharedNamespace string
	// CacheDisabled makes the proxy a pure pass-through (the rollback
	// switch): every chat completion is a BYPASS.
	CacheDisabled bool
	// MaxBodyBytes bounds request bodies; larger ones get 413. 0 means
	// 4 MiB.
	MaxBodyBytes int64
	// MaxTTL bounds the per-request X-Semcache-TTL and the TTL a rule
	// sets. 0 means 24 hours.
	MaxTTL time.Duration
	// Rules map prompts to a TTL or to no caching (see semantic.Rules and
	// docs/ttl-rules.md); the matching rule's name is sent back in
	// X-Semcache-Rule. nil means no rules.
	Rules *semantic.Rules
	// MaxStreamBytes bounds the recording of a streamed answer, in bytes
	// of the upstream's event stream; a longer stream is relayed in full
	// but not stored. 0 means 4 MiB.
	MaxStreamBytes int64
	// HTTPClient calls the upstream. nil means a client with no overall
	// timeout (the cache bounds each call with its UpstreamTimeout, and
	// streams may run long) whose transport keeps up to 256 idle
	// connections per upstream host: net/http's default of 2 makes a busy
	// gateway open and close a connection for most upstream calls.
	HTTPClient *http.Client
	// Logger receives request and error logs. nil means slog.Default().
	Logger *slog.Logger
	// AdminToken, when set, enables the admin endpoints (see admin.go),
	// which require "Authorization: Bearer AdminToken". Empty means they do
	// not exist (404). A secret: at least 16 characters without white
	// space, never logged.
	AdminToken string
	// Now is the clock of the admin authentication limiter; nil means
	// time.Now. Tests set it to move time without waiting.
	Now func() time.Time
	// ScopeHeaders are request headers, besides DefaultScopeHeaders, whose
	// values are part of the scope (`semcache serve --scope-headers`): a
	// header an operator's upstream reads to choose its answer. Names are
	// case-insensitive.
	ScopeHeaders []string
	// UI says who may open the operator's dashboard at GET /ui (see
	// UIAccess): "" or UIOff for none (the library default; semcache serve
	// defaults to UILoopback). UIToken needs AdminToken.
	UI UIAccess
	// UIPrompts shows each recent request's prompt on the dashboard (cut
	// to 200 characters). Off by default: prompts may be private, and the
	// page shows them to whoever may open it.
	UIPrompts bool
}

// Server is the caching proxy. It is safe for concurrent use.
type Server struct {
	cfg      Config
	upstream *url.URL
	cache    *semantic.Cache
	client   *http.Client
	proxy    *httputil.ReverseProxy
	echo     *echo.Echo
	log      *slog.Logger
	metrics  *metrics
	// recorder keeps the dashboard's history; nil when Config.UI is off.
	recorder *dashboard.Recorder
	// scopeHeaders are DefaultScopeHeaders and Config.ScopeHeaders,
	// canonical.
	scopeHeaders []string
}

// New returns a proxy in front of cfg.Upstream answering from cache. It
// serves Prometheus metrics at GET /metrics from a registry of its own, so
// several servers may run in one process. It fails when the upstream URL is
// not an absolute http(s) URL or cache is nil.
func New(cfg Config, cache *semantic.Cache) (*Server, error) {
	if cache == nil {
		return nil, errors.New("api: cache is required")
	}
	u, err := url.Parse(cfg.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api: Upstream %q: want an absolute http(s) URL such as https://api.openai.com/v1", cfg.Upstream)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("api: MaxBodyBytes %d: must not be negative", cfg.MaxBodyBytes)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.MaxTTL < 0 {
		return nil, fmt.Errorf("api: MaxTTL %v: must not be negative", cfg.MaxTTL)
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = 24 * time.Hour
	}
	if cfg.MaxStreamBytes < 0 {
		return nil, fmt.Errorf("api: MaxStreamBytes %d: must not be negative", cfg.MaxStreamBytes)
	}
	if cfg.MaxStreamBytes == 0 {
		cfg.MaxStreamBytes = 4 << 20
	}
	if cfg.AdminToken != "" && !validAdminToken(cfg.AdminToken) {
		return nil, errors.New("api: AdminToken: want at least 16 characters without white space or control characters (the token is not shown)")
	}
	switch cfg.UI {
	case "":
		cfg.UI = UIOff
	case UIOff, UILoopback:
	case UIToken:
		if cfg.AdminToken == "" {
			return nil, errors.New("api: UI token: the dashboard's data then needs the admin token, and AdminToken is empty")
		}
	default:
		return nil, fmt.Errorf("api: UI %q: want off, loopback or token", cfg.UI)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	client := cfg.HTTPClient
	if client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 256
		client = &http.Client{Transport: t}
	}
	s := &Server{cfg: cfg, upstream: u, cache: cache, client: client, log: cfg.Logger}
	for _, k := range append(slices.Clone(DefaultScopeHeaders), cfg.ScopeHeaders...) {
		k = http.CanonicalHeaderKey(strings.TrimSpace(k))
		if k == "" || strings.ContainsAny(k, " \t:") {
			return nil, fmt.Errorf("api: ScopeHeaders: %q is not a header name", k)
		}
		if !slices.Contains(s.scopeHeaders, k) {
			s.scopeHeaders = append(s.scopeHeaders, k)
		}
	}
	s.metrics = newMetrics(cache, cfg.Logger)
	if cfg.UI != UIOff {
		s.recorder = dashboard.NewRecorder(dashboard.Config{Prompts: cfg.UIPrompts})
	}
	s.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = u.Scheme
			pr.Out.URL.Host = u.Host
			pr.Out.URL.Path = s.upstreamPath(pr.In.URL.Path)
			pr.Out.URL.RawPath = ""
			pr.Out.Host = u.Host
			for k := range pr.Out.Header {
				if strings.HasPrefix(http.CanonicalHeaderKey(k), "X-Semcache-") {
					pr.Out.Header.Del(k) // the cache's own controls stay here
				}
			}
			pr.Out.Header.Del("Cache-Control") // a control of this cache too
			s.setAuth(pr.Out.Header, pr.In.Header, strings.HasPrefix(pr.In.URL.Path, "/openai/"))
		},
		FlushInterval: -1, // flush every write: SSE must not be buffered
		Transport:     client.Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("upstream unreachable", "path", r.URL.Path, "err", err)
			writeJSONError(w, &Error{Status: http.StatusBadGateway, Type: "upstream_error", Code: "upstream_unreachable", Message: "upstream unreachable"})
		},
	}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(s.logRequests)
	e.POST("/v1/chat/completions", s.cached(chatEndpoint))
	e.POST("/v1/responses", s.cached(responsesEndpoint))
	e.POST("/v1/completions", s.cached(completionsEndpoint))
	e.POST("/v1/embeddings", s.embeddings)
	e.POST("/openai/deployments/:deployment/chat/completions", s.cached(chatEndpoint))
	e.POST("/openai/deployments/:deployment/completions", s.cached(completionsEndpoint))
	e.POST("/openai/deployments/:deployment/embeddings", s.embeddings)
	e.GET("/healthz", s.healthz)
	e.GET("/api/v1/cache/stats", s.stats)
	e.GET("/metrics", echo.WrapHandler(s.metrics.handler))
	if cfg.AdminToken != "" {
		s.routeAdmin(e)
	}
	if cfg.UI != UIOff {
		s.routeUI(e)
	}
	e.Any("/v1/*", s.passThrough)
	e.Any("/openai/*", s.passThrough)
	s.echo = e
	return s, nil
}

// ServeHTTP serves the proxy's routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// logRequests logs every request at debug level: method, path, status,
// cache outcome and duration. Headers are never logged, so bearer tokens
// cannot leak into logs.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		res := c.Response()
		s.log.Debug("request", "method", c.Request().Method, "path", c.Request().URL.Path,
			"status", res.Status, "cache", res.Header().Get(HeaderStatus),
			"tier", res.Header().Get(HeaderTier), "ms", float64(time.Since(start).Microseconds())/1000)
		return nil
	}
}

// upstreamPath maps a client path below /v1 onto the upstream base path,
// and an Azure OpenAI path (/openai/...) below the base path with its
// trailing /v1 dropped (see newCall).
func (s *Server) upstreamPath(p string) string {
	if strings.HasPrefix(p, "/openai/") {
		return strings.TrimSuffix(s.upstream.Path, "/v1") + p
	}
	return s.upstream.Path + strings.TrimPrefix(p, "/v1")
}

// setAuth sets the upstream credentials on out. With a configured
// UpstreamAPIKey the client's Authorization and api-key are replaced by
// it: as api-key for an Azure request (azure) or a client that sent
// api-key, else as "Authorization: Bearer". Without one the client's
// Authorization and api-key headers go upstream as sent.
func (s *Server) setAuth(out, in http.Header, azure bool) {
	out.Del("Authorization")
	out.Del(HeaderAPIKey)
	if key := s.cfg.UpstreamAPIKey; key != "" {
		if azure || in.Get(HeaderAPIKey) != "" {
			out.Set(HeaderAPIKey, key)
		} else {
			out.Set("Authorization", "Bearer "+key)
		}
		return
	}
	for _, k := range []string{"Authorization", HeaderAPIKey} {
		if v := in.Values(k); len(v) > 0 {
			out[k] = slices.Clone(v)
		}
	}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) stats(c echo.Context) error {
	return c.JSON(http.StatusOK, s.cache.Snapshot(c.Request().Context()))
}

// passThrough forwards any other /v1 request unchanged, once its path is
// known to stay below the upstream base path (checkPassPath).
func (s *Server) passThrough(c echo.Context) error {
	if err := checkPassPath(c.Request().URL); err != nil {
		return err
	}
	s.proxy.ServeHTTP(c.Response(), c.Request())
	return nil
}

// checkPassPath refuses, with 400, a pass-through path that could leave
// the upstream base path (which the operator's key is scoped to) once the
// upstream decodes it: a "." or ".." segment, decoded or not (%2e%2e,
// ..%2f), a percent sign left after one decoding (double encoding such as
// %252e), a backslash, a control character or an empty segment ("//").
// The path must start with /v1/. What passes is mapped below the base
// path as is.
func checkPassPath(u *url.URL) error {
	bad := func(why string) error {
		return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_path",
			Message: "request path " + why + ": pass-through paths must stay below /v1/"}
	}
	p := u.Path // decoded once
	base := "/v1/"
	if strings.HasPrefix(p, "/openai/") {
		base = "/openai/"
	}
	if !strings.HasPrefix(p, base) {
		return bad("is not below /v1/")
	}
	if strings.ContainsAny(p, "\\%") {
		return bad("holds a backslash or an encoded percent sign")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return bad("holds a control character")
		}
	}
	for _, seg := range strings.Split(strings.TrimSuffix(p[len(base):], "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad("holds an empty, . or .. segment")
		}
	}
	return nil
}

// tenant returns the request's tenant: the shared namespace when one is
// configured, else a hash of the bearer token, or of the api-key header
// when there is no Authorization (never the credential itself).
func (s *Server) tenant(h http.Header) string {
	if s.cfg.SharedNamespace != "" {
		return "ns:" + s.cfg.SharedNamespace
	}
	auth := h.Get("Authorization")
	if auth == "" {
		auth = h.Get(HeaderAPIKey)
	}
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		token = auth
	}
	return semantic.TenantFromToken(strings.TrimSpace(token))
}

// cached returns the handler of a cached endpoint (chat completions,
// responses, legacy completions): the exact and semantic tiers, scope,
// controls, TTL rules, tags, stats and metrics are the same for all three.
func (s *Server) cached(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error { return s.complete(c, s.newCall(c, ep)) }
}

func (s *Server) complete(c echo.Context, cl call) error {
	start := time.Now()
	req := c.Request()
	if s.cfg.CacheDisabled {
		// The rollback switch: forward everything untouched, even what
		// the cache would reject.
		return s.bypass(c, nil, start)
	}
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	ctl, err := s.parseControls(req.Header)
	if err != nil {
		return err
	}
	who := s.caller(req.Header, cl, ctl, c.QueryParam)
	id, rq, err := cl.identify(body, who, s.cache.Normalization())
	if err != nil {
		return invalidRequest(err)
	}
	if rq.Cacheable {
		var rule string
		ctl.opts, rule = s.cfg.Rules.Apply(id.Prompt, ctl.opts)
		ctl.opts.TTL = min(ctl.opts.TTL, s.cfg.MaxTTL)
		if rule != "" {
			c.Response().Header().Set(HeaderRule, rule)
		}
	}
	if !rq.Cacheable || ctl.opts.Mode == semantic.ModeOff {
		// A request whose last message is not a user message has no
		// prompt to cache, and one that depends on server-side state
		// (Responses' previous_response_id...) no answer to cache.
		return s.bypass(c, body, start)
	}
	if rq.Stream {
		return s.streamCompletion(c, cl, id, ctl, body, start)
	}

	header := req.Header.Clone()
	// The tags go along, for an entry the cache re-stores off the request
	// path (semantic.WithEntryTags).
	cctx := semantic.WithEntryTags(req.Context(), entryTags(ctl.tenant, ctl.namespace, ctl.tags))
	res, err := s.cache.DoWith(cctx, id, ctl.opts, func(ctx context.Context) (semantic.Upstream, error) {
		return s.postUpstream(ctx, header, body, cl)
	})
	h := c.Response().Header()
	if err != nil {
		if req.Context().Err() != nil {
			return nil // the client went away; nobody to answer
		}
		h.Set(HeaderStatus, string(semantic.Miss))
		return s.upstreamFailure(err)
	}
	for k, v := range res.Header {
		if !skipHeader[http.CanonicalHeaderKey(k)] {
			h[k] = v
		}
	}
	s.setCacheHeaders(h, res, ctl)
	s.tagStored(req.Context(), ctl.tenant, ctl.namespace, ctl.tags, res)
	ct := res.ContentType
	if ct == "" {
		ct = echo.MIMEApplicationJSON
	}
	err = c.Blob(res.Status, ct, res.Body)
	s.observe(id, res, start)
	return err
}

// setCacheHeaders sets the X-Semcache-* headers and Age of a cached-path
// answer: the outcome, the threshold in force when the request asked for
// one, the key of a hit or of a stored answer, and a hit's tier, age and
// similarity.
func (s *Server) setCacheHeaders(h http.Header, res semantic.Result, ctl controls) {
	h.Set(HeaderStatus, string(res.Outcome))
	if ctl.thresholdAsked {
		h.Set(HeaderThreshold, strconv.FormatFloat(s.cache.EffectiveThreshold(ctl.opts.Threshold), 'f', -1, 64))
	}
	if ctl.maxErrorAsked {
		h.Set(HeaderMaxError, strconv.FormatFloat(s.cache.MaxErrorRate(ctl.opts.MaxErrorRate), 'f', -1, 64))
	}
	if res.Outcome == semantic.Miss && res.Refused != "" {
		h.Set(HeaderRefused, res.Refused)
	}
	if res.Explored {
		h.Set(HeaderExplore, "1")
		h.Set(HeaderSimilarity, strconv.FormatFloat(res.Similarity, 'f', 4, 64))
	}
	if res.Outcome == semantic.Hit || res.Stored || res.Leased {
		h.Set(HeaderKey, res.Key) // a leased miss names the entry another replica stored
	}
	if res.Outcome == semantic.Hit {
		h.Set(HeaderTier, string(res.Tier))
		h.Set("Age", strconv.FormatInt(int64(res.Age/time.Second), 10))
		if res.Tier == semantic.TierSemantic {
			h.Set(HeaderSimilarity, strconv.FormatFloat(res.Similarity, 'f', 4, 64))
		}
	}
}

// skipHeader lists upstream response headers not relayed on a cached path:
// hop-by-hop headers, and those the proxy sets itself.
var skipHeader = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Content-Type": true, "Date": true,
}

// bypass forwards the request to the upstream without the cache. body is
// the already-read request body, or nil when it has not been read; start is
// when the request arrived.
func (s *Server) bypass(c echo.Context, body []byte, start time.Time) error {
	s.cache.Stats().Bypasses.Add(1)
	c.Response().Header().Set(HeaderStatus, string(semantic.Bypass))
	req := c.Request()
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	s.proxy.ServeHTTP(c.Response(), req)
	s.observe(semantic.Identity{}, semantic.Result{Outcome: semantic.Bypass}, start)
	return nil
}

// newUpstreamRequest builds a POST of body to the upstream URL of cl,
// carrying every end-to-end header of the client's (see forwardHeaders)
// and the upstream credentials (see setAuth). accept is the Accept header.
func (s *Server) newUpstreamRequest(ctx context.Context, in http.Header, body []byte, accept string, cl call) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cl.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	forwardHeaders(req.Header, in)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", accept)
	s.setAuth(req.Header, in, cl.azure)
	return req, nil
}

// postUpstream POSTs body to the upstream URL of cl and returns the whole
// answer unchanged.
func (s *Server) postUpstream(ctx context.Context, in http.Header, body []byte, cl call) (semantic.Upstream, error) {
	req, err := s.newUpstreamRequest(ctx, in, body, "application/json", cl)
	if err != nil {
		return semantic.Upstream{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return semantic.Upstream{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		// A body cut short is no answer: never stored, reported as 502.
		return semantic.Upstream{}, fmt.Errorf("read upstream body: %w", err)
	}
	return semantic.Upstream{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Header: resp.Header, Body: b}, nil
}

// readBody reads the request body up to MaxBodyBytes: a larger one is a
// 413, an unreadable one a 400.
func (s *Server) readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &Error{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
				Message: fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBodyBytes)}
		}
		return nil, badRequest("unreadable_body", "could not read request body")
	}
	return body, nil
}

// upstreamFailure maps an upstream call that got no answer to 504 (timed
// out) or 502.
func (s *Server) upstreamFailure(err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("upstream timed out", "err", err)
		return &Error{Status: http.StatusGatewayTimeout, Type: "upstream_error", Code: "upstream_timeout", Message: "upstream did not answer within the upstream timeout"}
	}
	s.log.Warn("upstream call failed", "err", err)
	return &Error{Status: http.StatusBadGateway, Type: "upstream_error", Code: "upstream_unreachable", Message: "upstream unreachable"}
}
