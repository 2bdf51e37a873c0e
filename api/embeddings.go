package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
		return badRequest("invalid_request", err.Error())
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

// readBody reads the request body up to MaxBodyBytes; a larger body is a
// 413.
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

// postUpstream POSTs body to the upstream endpoint at path (segments below
// the upstream base URL) with the same headers and authorisation as fetch,
// and returns the answer unchanged.
func (s *Server) postUpstream(ctx context.Context, in http.Header, body []byte, path ...string) (semantic.Upstream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.upstream.JoinPath(path...).String(), bytes.NewReader(body))
	if err != nil {
		return semantic.Upstream{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	for _, k := range []string{"OpenAI-Organization", "OpenAI-Project", "User-Agent"} {
		if v := in.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	s.setAuth(req.Header, in)
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
