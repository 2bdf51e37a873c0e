package api

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/semcache/semcache/api/dashboard"
	"github.com/semcache/semcache/semantic"
)

// UIAccess says who may open the operator's dashboard at GET /ui (see
// Config.UI).
type UIAccess string

const (
	// UIOff: no dashboard; /ui is 404. The zero value.
	UIOff UIAccess = "off"
	// UILoopback: the dashboard answers only requests whose TCP peer is a
	// loopback address, whose Host names a loopback host (localhost,
	// 127.0.0.0/8, [::1]: a DNS-rebinding page cannot read it) and that
	// carry no Forwarded, X-Forwarded-For or X-Real-IP header (a reverse
	// proxy on the same host would otherwise make every client
	// "loopback"). Others get 403. semcache serve's default.
	UILoopback UIAccess = "loopback"
	// UIToken: the page loads from any address, and its data only with
	// "Authorization: Bearer <AdminToken>" (the page asks for the token);
	// New refuses it without an AdminToken.
	UIToken UIAccess = "token"
)

// nearWindow is how far below the threshold, in cosine similarity, a
// miss's nearest neighbour counts as a near miss on the dashboard: the
// misses a threshold 0.05 lower would have considered (the guards might
// still refuse them).
const nearWindow = 0.05

// uiData is the answer of GET /ui/api/data.
type uiData struct {
	// Stats is what GET /api/v1/cache/stats answers at the same moment.
	Stats semantic.Snapshot `json:"stats"`
	// Threshold is the similarity threshold in force (the adaptive
	// policy's floor under --policy adaptive).
	Threshold float64 `json:"threshold"`
	// NearMisses counts misses since start whose nearest neighbour was
	// within NearWindow below the threshold.
	NearMisses int64   `json:"near_misses"`
	NearWindow float64 `json:"near_window"`
	// Admin says whether the admin endpoints exist (an admin token is
	// set), so that the page offers invalidation.
	Admin bool `json:"admin"`
	// Prompts says whether recent requests carry their prompts.
	Prompts  bool           `json:"prompts"`
	Access   UIAccess       `json:"access"`
	Recorder dashboard.View `json:"recorder"`
}

// routeUI registers the dashboard; New calls it unless Config.UI is off.
func (s *Server) routeUI(e *echo.Echo) {
	page := []echo.MiddlewareFunc{s.uiHeaders}
	data := []echo.MiddlewareFunc{s.uiHeaders}
	switch s.cfg.UI {
	case UILoopback:
		page = append(page, s.loopbackOnly)
		data = append(data, s.loopbackOnly)
	case UIToken:
		data = append(data, s.requireAdmin())
	}
	e.GET("/ui", func(c echo.Context) error { return c.Redirect(http.StatusFound, "/ui/") }, page...)
	e.GET("/ui/", s.uiAsset("index.html"), page...)
	e.GET("/ui/app.js", s.uiAsset("app.js"), page...)
	e.GET("/ui/style.css", s.uiAsset("style.css"), page...)
	e.GET("/ui/api/data", s.uiData, data...)
	e.GET("/ui/api/chart/:name", s.uiChart, data...)
}

// uiHeaders keeps the page to its own server: no scripts, styles or
// connections elsewhere (so it works, and leaks nothing, without network),
// no framing, no caching of figures.
func (s *Server) uiHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		// Inline styles: gonum/plot's SVG carries style attributes.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// loopbackOnly refuses, with 403, a request that is not from this host
// (see UILoopback).
func (s *Server) loopbackOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if why := notLoopback(c.Request()); why != "" {
			return &Error{Status: http.StatusForbidden, Type: "permission_error", Code: "ui_loopback_only",
				Message: "the dashboard answers loopback clients only (--ui loopback): " + why +
					"; for remote access run semcache serve with --ui token and SEMCACHE_ADMIN_TOKEN"}
		}
		return next(c)
	}
}

// notLoopback says why r is not a direct request from this host, or ""
// when it is.
func notLoopback(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return "the client address is not a loopback address"
	}
	for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip"} {
		if r.Header.Get(k) != "" {
			return "the request came through a proxy (" + k + ")"
		}
	}
	if !loopbackHost(r.Host) {
		return "the Host header does not name this host"
	}
	return ""
}

// loopbackHost reports whether a Host header names a loopback host:
// localhost (or a name under .localhost), 127.0.0.0/8 or ::1, with or
// without a port.
func loopbackHost(h string) bool {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) uiAsset(name string) echo.HandlerFunc {
	return func(c echo.Context) error {
		b, ct, ok := dashboard.Asset(name)
		if !ok {
			return echo.ErrNotFound
		}
		return c.Blob(http.StatusOK, ct, b)
	}
}

// uiNow is the dashboard's clock: Config.Now, else time.Now.
func (s *Server) uiNow() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

func (s *Server) uiData(c echo.Context) error {
	st := s.cache.Snapshot(c.Request().Context())
	v := s.recorder.View(s.uiNow())
	th := s.cache.EffectiveThreshold(0)
	d := uiData{Stats: st, Threshold: th, NearWindow: nearWindow, Admin: s.cfg.AdminToken != "",
		Prompts: s.recorder.Prompts(), Access: s.cfg.UI, Recorder: v}
	for i, n := range v.Similarity.Misses {
		lo := float64(i) / float64(v.Similarity.Bins)
		if lo >= th-nearWindow-1e-9 && lo < th {
			d.NearMisses += n
		}
	}
	return c.JSON(http.StatusOK, d)
}

func (s *Server) uiChart(c echo.Context) error {
	name, ok := strings.CutSuffix(c.Param("name"), ".svg")
	if !ok {
		return echo.ErrNotFound
	}
	snapshot := func() semantic.Snapshot { return s.cache.Snapshot(c.Request().Context()) }
	b, err := dashboard.Chart(name, s.recorder.View(s.uiNow()), snapshot, s.cache.EffectiveThreshold(0))
	if errors.Is(err, dashboard.ErrUnknownChart) {
		return echo.ErrNotFound
	}
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "image/svg+xml", b)
}

// observe records one answered cached-path request (or bypass) in the
// metrics and on the dashboard. id is the request's identity, zero for a
// bypass.
func (s *Server) observe(id semantic.Identity, res semantic.Result, start time.Time) {
	elapsed := time.Since(start)
	s.metrics.observe(res, elapsed)
	if s.recorder == nil {
		return
	}
	ev := dashboard.Event{Time: s.uiNow(), Key: res.Key, Similarity: res.Similarity, Nearest: res.Nearest, HasNearest: res.HasNearest,
		Refused: res.Refused, Explored: res.Explored, Age: res.Age, Duration: elapsed, Prompt: id.Prompt}
	switch {
	case res.Outcome == semantic.Hit && res.Tier == semantic.TierExact:
		ev.Class = dashboard.ClassExact
	case res.Outcome == semantic.Hit:
		ev.Class = dashboard.ClassSemantic
	case res.Outcome == semantic.Miss:
		ev.Class = dashboard.ClassMiss
	default:
		ev.Class = dashboard.ClassBypass
	}
	if ev.Key == "" {
		ev.Key = id.Key
	}
	s.recorder.Record(ev)
}
