package api

import (
	"log/slog"
	"net"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Admin authentication failures are limited per client address: a burst
// of adminFailBurst wrong tokens, then one more per adminFailEvery. While
// an address has none left, its admin requests get 429 without the token
// being looked at. Failures are logged once per address per
// adminLogEvery, with their count, not once each.
const (
	adminFailBurst = 10
	adminFailEvery = 6 * time.Second // 10 per minute once the burst is spent
	adminLogEvery  = time.Minute
	// adminTrackedAddrs bounds the addresses tracked (least recently
	// failing ones are forgotten first).
	adminTrackedAddrs = 10000
)

// authLimiter tracks admin authentication failures per client address. It
// is safe for concurrent use.
type authLimiter struct {
	now   func() time.Time
	log   *slog.Logger
	addrs *lru.Cache[string, *authState]
}

// authState is one address's limiter and unlogged failure count.
type authState struct {
	mu       sync.Mutex // guards the fields below
	lim      *rate.Limiter
	unlogged int
	lastLog  time.Time
}

func newAuthLimiter(now func() time.Time, log *slog.Logger) *authLimiter {
	c, _ := lru.New[string, *authState](adminTrackedAddrs) // the size is a positive constant
	return &authLimiter{now: now, log: log, addrs: c}
}

// clientAddr returns the client address of remote ("host:port") without the port.
func clientAddr(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// blocked reports whether addr has used up its failures.
func (a *authLimiter) blocked(addr string) bool {
	st, ok := a.addrs.Get(addr)
	if !ok {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lim.TokensAt(a.now()) < 1
}

// fail records one failure of addr and logs the failures of addr at most
// once per adminLogEvery.
func (a *authLimiter) fail(addr, method, path string) {
	now := a.now()
	fresh := &authState{lim: rate.NewLimiter(rate.Every(adminFailEvery), adminFailBurst)}
	st := fresh
	if prev, found, _ := a.addrs.PeekOrAdd(addr, fresh); found {
		st = prev
	}
	st.mu.Lock()
	st.lim.AllowN(now, 1)
	st.unlogged++
	n := 0
	if st.lastLog.IsZero() || now.Sub(st.lastLog) >= adminLogEvery {
		n, st.unlogged, st.lastLog = st.unlogged, 0, now
	}
	st.mu.Unlock()
	if n > 0 {
		a.log.Warn("admin request refused: missing or wrong admin token", "remote", addr, "failures", n,
			"method", method, "path", path, "next_log_after", adminLogEvery)
	}
}
