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
	er, err := semantic.IdentifyEmbeddings(body, s.tenant(req.Header))
	if err != nil {
		if errors.Is(err, semantic.ErrTokenInput) {
			return badRequest("unsupported_input", err.Error())
		}
		return invalidRequest(err)
	}

	header := req.Header.Clone()
	res, err := s.cache.DoEmbeddings(req.Context(), er, func(ctx context.Context, body []byte) (semantic.Upstream, error) {
		return s.postUpstream(ctx, header, body, "embeddings")
	})
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
