package semantic

import (
	"fmt"
	"time"
)

// Mode selects which tiers a request may be served from.
type Mode string

// Modes, as sent in the X-Semcache-Mode header. The zero value is
// ModeSemantic.
const (
	// ModeSemantic uses both tiers: exact, then semantic (the default).
	ModeSemantic Mode = "semantic"
	// ModeExact serves exact-tier hits only; the answer is still stored
	// with its vector, so later semantic requests can find it.
	ModeExact Mode = "exact"
	// ModeOff skips the cache entirely; the proxy forwards the request
	// (BYPASS). DoWith never sees it.
	ModeOff Mode = "off"
)

// Options are one request's cache controls. The zero value is the server's
// behaviour. A request can make the cache stricter or keep less, never
// looser: the proxy maps Cache-Control and the X-Semcache-* headers onto it.
type Options struct {
	// SkipLookup goes upstream without looking in the cache, then stores
	// the answer (Cache-Control: no-cache).
	SkipLookup bool
	// NoStore keeps no copy of the answer (Cache-Control: no-store).
	NoStore bool
	// MaxAge, when > 0, serves only entries younger than it
	// (Cache-Control: max-age, seconds on the wire); an older entry is a
	// miss and is replaced by the fresh answer.
	MaxAge time.Duration
	// TTL, when > 0, is the lifetime of the entry this request stores,
	// instead of the configured TTL (X-Semcache-TTL, seconds on the wire,
	// bounded by the server's maximum).
	TTL time.Duration
	// Mode restricts the tiers; "" means ModeSemantic.
	Mode Mode
	// Threshold, when > 0, is a stricter cosine-similarity threshold for
	// this request; a value below the configured one has no effect (see
	// Cache.EffectiveThreshold).
	Threshold float64
	// MaxErrorRate, when > 0, is a stricter error bound δ for this request
	// under PolicyAdaptive (X-Semcache-Max-Error); a value above the
	// configured one has no effect (see Cache.MaxErrorRate).
	MaxErrorRate float64
}

// flightSuffix separates the single flights of requests whose options
// differ, so that one request's no-store or threshold never decides
// another's answer.
func (o Options) flightSuffix() string {
	if o == (Options{}) {
		return ""
	}
	return fmt.Sprintf("|%t|%t|%d|%d|%s|%g|%g", o.SkipLookup, o.NoStore, o.MaxAge, o.TTL, o.Mode, o.Threshold, o.MaxErrorRate)
}
