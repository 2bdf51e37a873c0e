package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/semcache/semcache/semantic"
)

// Request headers that control the cache for one request. Cache-Control is
// read too (no-cache, no-store, max-age=N).
const (
	// HeaderTTL is the lifetime in whole seconds of the entry this request
	// stores; above the server's MaxTTL it is lowered to MaxTTL.
	HeaderTTL = "X-Semcache-TTL"
	// HeaderNamespace names a partition inside the caller's tenant (at most
	// 128 printable characters).
	HeaderNamespace = "X-Semcache-Namespace"
	// HeaderMode is exact, semantic (the default) or off.
	HeaderMode = "X-Semcache-Mode"
	// HeaderThreshold asks for a stricter cosine-similarity threshold in
	// (0, 1]; a value below the server's has no effect. The response echoes
	// the threshold in force.
	HeaderThreshold = "X-Semcache-Threshold"
	// HeaderMaxError asks, under the adaptive policy, for a stricter
	// maximum error rate δ in (0, 1); a value above the server's
	// --max-error-rate has no effect. The response echoes the δ in force.
	// Under the static policy it is accepted and echoed as 0.
	HeaderMaxError = "X-Semcache-Max-Error"
	// HeaderExplore, on responses, is "1" on a miss of the adaptive policy
	// that had a neighbour it chose to verify instead of serving.
	HeaderExplore = "X-Semcache-Explore"
	// HeaderRefused, on a miss, names why the best neighbour at or above
	// the threshold was not served: a guard (negation, number, literal,
	// opposite, roles, substitution, token:<word>) or the comparison (context,
	// template). Absent when no neighbour reached the threshold.
	HeaderRefused = "X-Semcache-Refused"
	// HeaderRule, on responses, names the TTL rule that matched the prompt
	// (docs/ttl-rules.md).
	HeaderRule = "X-Semcache-Rule"
)

// controls are one request's parsed cache controls.
type controls struct {
	// tenant is the caller's tenant (see Server.tenant).
	tenant    string
	namespace string
	// tags are the X-Semcache-Tags of the request, attached to the entry
	// it stores.
	tags []string
	opts semantic.Options
	// thresholdAsked reports whether the request sent X-Semcache-Threshold.
	thresholdAsked bool
	// maxErrorAsked reports whether the request sent X-Semcache-Max-Error.
	maxErrorAsked bool
}

// parseControls reads the cache-control headers of a request. Malformed
// values are a 400 naming the header: a request that asks for something the
// cache cannot honour must not be answered as if it had not asked.
func (s *Server) parseControls(h http.Header) (controls, error) {
	c := controls{tenant: s.tenant(h)}
	tags, err := parseTags(h)
	if err != nil {
		return c, err
	}
	c.tags = tags
	// SSE clients (go-openai, browsers' EventSource) send "Cache-Control:
	// no-cache" with "Accept: text/event-stream" on every stream, as a
	// transport hint to proxies, not as a request to skip this cache: with
	// that Accept, no-cache is ignored. max-age=0 still skips the lookup.
	sse := strings.Contains(strings.ToLower(strings.Join(h.Values("Accept"), ",")), "text/event-stream")
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-cache" && !sse:
				c.opts.SkipLookup = true
			case d == "no-store":
				c.opts.NoStore = true
			case strings.HasPrefix(d, "max-age="):
				n, err := strconv.ParseInt(strings.TrimPrefix(d, "max-age="), 10, 64)
				if err != nil || n < 0 {
					return c, badRequest("invalid_header", "Cache-Control max-age: want whole seconds >= 0")
				}
				if n == 0 {
					c.opts.SkipLookup = true // nothing is younger than 0 s
				} else {
					c.opts.MaxAge = time.Duration(n) * time.Second
				}
			}
			// Other directives (private, must-revalidate...) do not apply.
		}
	}
	if v := h.Get(HeaderTTL); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return c, badRequest("invalid_header", HeaderTTL+": want whole seconds > 0")
		}
		c.opts.TTL = min(time.Duration(n)*time.Second, s.cfg.MaxTTL)
	}
	if v := h.Get(HeaderNamespace); v != "" {
		if len(v) > 128 || strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return c, badRequest("invalid_header", HeaderNamespace+": want at most 128 printable characters")
		}
		c.namespace = v
	}
	switch m := semantic.Mode(strings.ToLower(h.Get(HeaderMode))); m {
	case "":
	case semantic.ModeExact, semantic.ModeSemantic, semantic.ModeOff:
		c.opts.Mode = m
	default:
		return c, badRequest("invalid_header", HeaderMode+": want exact, semantic or off")
	}
	if v := h.Get(HeaderThreshold); v != "" {
		t, err := strconv.ParseFloat(v, 64)
		if err != nil || !(t > 0 && t <= 1) {
			return c, badRequest("invalid_header", HeaderThreshold+": want a cosine similarity in (0, 1]")
		}
		c.opts.Threshold = t
		c.thresholdAsked = true
	}
	if v := h.Get(HeaderMaxError); v != "" {
		d, err := strconv.ParseFloat(v, 64)
		if err != nil || !(d > 0 && d < 1) {
			return c, badRequest("invalid_header", HeaderMaxError+": want a fraction of requests in (0, 1), e.g. 0.01")
		}
		c.opts.MaxErrorRate = d
		c.maxErrorAsked = true
	}
	return c, nil
}
