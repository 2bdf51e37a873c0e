package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/semcache/semcache/semantic"
)

// HeaderCached is set on embeddings responses: "<cached>/<total>", the
// number of the request's inputs served from the cache and the number of
// inputs. X-Semcache-Status is HIT when all were cached, MISS when none
// was and PARTIAL otherwise.
const HeaderCached = "X-Semcache-Cached"

// embeddings answers POST /v1/embeddings from the cache, input by input:
// only the inputs not cached go upstream, in one call (see
// semantic.Cache.DoEmbeddings). Token-array inputs are refused with 400
// (code unsupported_input, the message naming the field input): the cache
// keys embeddings by text. Upstream errors are relayed unchanged; a 200
// answer that does not fit the request is a 502.
//
// The per-request controls apply as to chat completions (parsed by the same
// code, malformed values are a 400): X-Semcache-Mode off bypasses the
// cache; Cache-Control no-cache sends every input upstream and stores the
// answers, no-store keeps none; X-Semcache-TTL sets their lifetime;
// X-Semcache-Namespace scopes them; X-Semcache-Tags tag them (each stored
// input). Cache-Control max-age other than 0 has no effect: an embedding of
// a text by a fixed model does not go stale.
func (s *Server) embeddings(c echo.Context) error {
	start := time.Now()
	if s.cfg.CacheDisabled {
		return s.bypass(c, nil, start)
	}
	req := c.Request()
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	ctl, err := s.parseControls(req.Header)
	if err != nil {
		return err
	}
	if ctl.opts.Mode == semantic.ModeOff {
		return s.bypass(c, body, start)
	}
	cl := s.newCall(c, endpoint{api: "embeddings", path: []string{"embeddings"}})
	er, err := semantic.IdentifyEmbeddingsFor(body, s.caller(req.Header, cl, ctl, c.QueryParam))
	if err != nil {
		if errors.Is(err, semantic.ErrTokenInput) {
			return badRequest("unsupported_input", err.Error())
		}
		return invalidRequest(err)
	}

	header := req.Header.Clone()
	res, err := s.cache.DoEmbeddingsWith(req.Context(), er, ctl.opts, func(ctx context.Context, body []byte) (semantic.Upstream, error) {
		return s.postUpstream(ctx, header, body, cl)
	})
	for _, key := range res.Stored {
		s.tagStored(req.Context(), ctl.tenant, ctl.namespace, ctl.tags, semantic.Result{Key: key, Stored: true})
	}
	h := c.Response().Header()
	h.Set(HeaderStatus, string(res.Outcome))
	h.Set(HeaderCached, strconv.Itoa(res.Cached)+"/"+strconv.Itoa(res.Total))
	if err != nil {
		if req.Context().Err() != nil {
			return nil // the client went away; nobody to answer
		}
		if errors.Is(err, semantic.ErrUpstreamEmbeddings) {
			s.log.Warn("upstream embeddings answer rejected", "err", err)
			return &Error{Status: http.StatusBadGateway, Type: "upstream_error", Code: "upstream_bad_response", Message: "upstream returned an embeddings list that does not match the request"}
		}
		return s.upstreamFailure(err)
	}
	for k, v := range res.Header {
		if !skipHeader[http.CanonicalHeaderKey(k)] {
			h[k] = v
		}
	}
	ct := res.ContentType
	if ct == "" {
		ct = echo.MIMEApplicationJSON
	}
	return c.Blob(res.Status, ct, res.Body)
}
