package api

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/semcache/semcache/semantic"
)

// Request headers that control the cache for one request. Cache-Control is
// read too (no-cache, no-store, max-age=N); parseControls says how they
// combine.
const (
	// HeaderTTL is the lifetime in whole seconds of the entry this request
	// stores; above the server's MaxTTL (however large, even beyond what
	// a time.Duration holds) it is lowered to MaxTTL.
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
//
// How they combine (each can only make the cache stricter or keep less):
//
//   - X-Semcache-Mode: off forwards the request without the cache
//     (BYPASS), whatever Cache-Control says; exact and semantic choose the
//     tiers, within which the directives below apply.
//   - no-cache skips the lookup and stores the fresh answer, except with
//     Accept: text/event-stream, where it is ignored: SSE clients
//     (go-openai, browsers' EventSource) send it on every stream as a
//     transport hint to proxies, not as a request to skip this cache.
//   - max-age=N (or the quoted form max-age="N", RFC 9111 §5.2) serves
//     only entries younger than N seconds; max-age=0 skips the lookup on
//     streams too. Of several max-age directives the smallest wins; a
//     value above 2^31 seconds (or beyond int64) counts as 2^31 (RFC 9111
//     §1.2.2), about 68 years, which no entry reaches.
//   - no-store keeps no copy of the answer; on its own it does not skip the
//     lookup (a hit is still served, as RFC 9111 §5.2.1.5 allows).
//
// So a client that means "leave the cache out of this stream" sends
// X-Semcache-Mode: off (nothing read or written, BYPASS), or
// Cache-Control: max-age=0 (a fresh answer, stored), or
// max-age=0, no-store (a fresh answer, not stored).
func (s *Server) parseControls(h http.Header) (controls, error) {
	c := controls{tenant: s.tenant(h)}
	tags, err := parseTags(h)
	if err != nil {
		return c, err
	}
	c.tags = tags
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
				arg := strings.TrimPrefix(d, "max-age=")
				if len(arg) >= 2 && arg[0] == '"' && arg[len(arg)-1] == '"' {
					arg = arg[1 : len(arg)-1]
				}
				n, ok := parseSeconds(arg, maxAgeCap)
				if !ok {
					return c, badRequest("invalid_header", "Cache-Control max-age: want whole seconds >= 0")
				}
				age := time.Duration(n) * time.Second
				switch {
				case n == 0:
					c.opts.SkipLookup = true // nothing is younger than 0 s
				case c.opts.MaxAge == 0 || age < c.opts.MaxAge:
					c.opts.MaxAge = age
				}
			}
			// Other directives (private, must-revalidate...) do not apply.
		}
	}
	if v := h.Get(HeaderTTL); v != "" {
		n, ok := parseSeconds(v, math.MaxInt64/int64(time.Second))
		if !ok || n == 0 {
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

// maxAgeCap is the largest Cache-Control max-age honoured, in seconds:
// RFC 9111 §1.2.2 has a cache take any larger delta-seconds as 2^31.
const maxAgeCap = 1 << 31

// parseSeconds parses delta-seconds (RFC 9111 §1.2.2: one or more ASCII
// digits, no sign) into a count no larger than limit: a larger value, even
// one no int64 holds, is limit, so the caller can multiply it by
// time.Second without overflow when limit allows.
func parseSeconds(s string, limit int64) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := s[i]
		if d < '0' || d > '9' {
			return 0, false
		}
		if n > (limit-int64(d-'0'))/10 {
			n = limit // saturated; keep checking the digits
			continue
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}
