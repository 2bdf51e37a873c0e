package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// The admin endpoints invalidate cached answers. They exist only when
// Config.AdminToken is set (otherwise they are 404) and require
// "Authorization: Bearer <AdminToken>" (otherwise 401). Each takes and
// returns JSON; the deleting ones answer {"deleted": n}, the index
// endpoints as their doc comments say.
//
//	DELETE /api/v1/cache/entries/{key}  one entry, by its X-Semcache-Key
//	POST   /api/v1/cache/invalidate     {"tag": "doc:123"}, or
//	                                    {"namespace": "support", "api_key": "sk-..."}
//	POST   /api/v1/cache/flush          every entry of this cache
//	GET    /api/v1/cache/indexes        the store's vector indexes (Redis)
//	POST   /api/v1/cache/indexes/drop-stale  drop other fingerprints' indexes
//
// A namespace belongs to a tenant: the client's API key, given in api_key
// and hashed exactly as the proxy hashes request tokens (it is never stored
// or logged; "" means the clients that send no token). When the server runs
// with a shared namespace (Config.SharedNamespace), every client is one
// tenant and api_key must be left out. "namespace": "" is the tenant's
// default namespace (requests without X-Semcache-Namespace).

// HeaderTags attaches tags to the entry a request stores, so that
// POST /api/v1/cache/invalidate {"tag": ...} can delete it later, e.g. every
// answer derived from a document that was re-indexed: comma-separated, at
// most maxTags tags of 1 to maxTagLen printable characters each.
const HeaderTags = "X-Semcache-Tags"

const (
	// maxTags bounds the tags of one request.
	maxTags = 16
	// maxTagLen bounds a tag's length in bytes; the same bound as a
	// namespace.
	maxTagLen = 128
	// maxAdminBody bounds an admin request body.
	maxAdminBody = 64 << 10
	// minAdminTokenLen is the shortest admin token New accepts.
	minAdminTokenLen = 16
	// tagTimeout bounds tagging a stored entry, which runs detached from
	// the client (see tagStored).
	tagTimeout = 5 * time.Second
)

// validAdminToken reports whether a configured admin token is usable: at
// least minAdminTokenLen bytes, without white space or control characters
// (a header could not carry them).
// ValidAdminToken reports whether t is acceptable as an admin token: at
// least 16 characters without white space or control characters.
func ValidAdminToken(t string) bool { return validAdminToken(t) }

func validAdminToken(t string) bool {
	return len(t) >= minAdminTokenLen && strings.IndexFunc(t, func(r rune) bool {
		return r <= ' ' || r == 0x7f || unicode.IsSpace(r) || unicode.IsControl(r)
	}) < 0
}

// routeAdmin registers the admin endpoints; New calls it only when an admin
// token is configured.
func (s *Server) routeAdmin(e *echo.Echo) {
	auth := s.requireAdmin()
	e.DELETE("/api/v1/cache/entries/:key", s.deleteEntry, auth)
	e.POST("/api/v1/cache/invalidate", s.invalidate, auth)
	e.POST("/api/v1/cache/flush", s.flush, auth)
	e.GET("/api/v1/cache/indexes", s.indexes, auth)
	e.POST("/api/v1/cache/indexes/drop-stale", s.dropStaleIndexes, auth)
}

// indexList is the answer of GET /api/v1/cache/indexes.
type indexList struct {
	Indexes []index.IndexInfo `json:"indexes"`
}

// indexes answers GET /api/v1/cache/indexes: the store's vector indexes
// under its prefix, {"indexes": [{"name", "fingerprint", "docs",
// "memory_mb", "current"}]}; 501 on the memory backend.
func (s *Server) indexes(c echo.Context) error {
	ixs, err := s.cache.Indexes(c.Request().Context())
	if err != nil {
		return s.adminError("indexes", err)
	}
	if ixs == nil {
		ixs = []index.IndexInfo{}
	}
	return c.JSON(http.StatusOK, indexList{ixs})
}

// droppedIndexes is the answer of POST /api/v1/cache/indexes/drop-stale.
type droppedIndexes struct {
	Dropped []index.IndexInfo `json:"dropped"`
	Deleted int               `json:"deleted"`
}

// dropStaleIndexes answers POST /api/v1/cache/indexes/drop-stale: drops
// the indexes of other embedder fingerprints with their vector hashes,
// {"dropped": [...], "deleted": keys}.
func (s *Server) dropStaleIndexes(c echo.Context) error {
	var r struct{}
	if err := decodeAdmin(c, &r); err != nil {
		return err
	}
	ixs, n, err := s.cache.DropStaleIndexes(c.Request().Context())
	if err != nil {
		return s.adminError("drop stale indexes", err)
	}
	if ixs == nil {
		ixs = []index.IndexInfo{}
	}
	s.log.Info("stale indexes dropped", "indexes", len(ixs), "deleted", n)
	return c.JSON(http.StatusOK, droppedIndexes{ixs, n})
}

// requireAdmin refuses requests without "Authorization: Bearer
// <AdminToken>" with 401. The tokens are compared in constant time (as
// SHA-256 digests, so their lengths do not leak either) and never logged.
//
// Failures are limited per client address (see authLimiter): past the
// limit an address gets 429 with Retry-After until it has failures left.
func (s *Server) requireAdmin() echo.MiddlewareFunc {
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	now := s.cfg.Now
	if now == nil {
		now = time.Now
	}
	limit := newAuthLimiter(now, s.log)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			addr := clientAddr(c.Request().RemoteAddr)
			if limit.blocked(addr) {
				limit.fail(addr, c.Request().Method, c.Request().URL.Path)
				c.Response().Header().Set("Retry-After", strconv.Itoa(int(adminFailEvery/time.Second)))
				return &Error{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "admin_auth_rate_limited",
					Message: "too many failed admin authentications from this address; retry later"}
			}
			scheme, token, _ := strings.Cut(c.Request().Header.Get("Authorization"), " ")
			got := sha256.Sum256([]byte(strings.TrimSpace(token)))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !strings.EqualFold(scheme, "Bearer") {
				limit.fail(addr, c.Request().Method, c.Request().URL.Path)
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="semcache admin"`)
				return &Error{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_admin_token",
					Message: "missing or wrong admin token: send Authorization: Bearer <the server's SEMCACHE_ADMIN_TOKEN>"}
			}
			return next(c)
		}
	}
}

// deleted is the answer of every admin endpoint.
type deleted struct {
	Deleted int `json:"deleted"`
}

// deleteEntry answers DELETE /api/v1/cache/entries/{key}: {"deleted": 1}
// when the entry existed, {"deleted": 0} when it did not.
func (s *Server) deleteEntry(c echo.Context) error {
	key := c.Param("key")
	if key == "" {
		return badRequest("invalid_key", "want the entry's X-Semcache-Key in the path")
	}
	ok, err := s.cache.Delete(c.Request().Context(), key)
	if err != nil {
		return s.adminError("delete entry", err)
	}
	n := 0
	if ok {
		n = 1
	}
	s.log.Info("cache entry deleted", "key", key, "deleted", n)
	return c.JSON(http.StatusOK, deleted{n})
}

// invalidateRequest is the body of POST /api/v1/cache/invalidate: Tag, or
// Namespace with APIKey (see the admin endpoints above). Pointers tell a
// field left out from an empty one.
type invalidateRequest struct {
	Tag       *string `json:"tag"`
	Namespace *string `json:"namespace"`
	APIKey    *string `json:"api_key"`
}

// invalidate answers POST /api/v1/cache/invalidate.
func (s *Server) invalidate(c echo.Context) error {
	var r invalidateRequest
	if err := decodeAdmin(c, &r); err != nil {
		return err
	}
	ctx := c.Request().Context()
	switch {
	case r.Tag != nil && r.Namespace == nil:
		if r.APIKey != nil {
			return badRequest("invalid_request", "api_key applies only with namespace: a tag is not scoped to a tenant")
		}
		if !validTag(*r.Tag) {
			return badRequest("invalid_request", "tag: want 1 to 128 printable characters, no comma, no surrounding spaces")
		}
		n, err := s.cache.DeleteTag(ctx, *r.Tag)
		if err != nil {
			return s.adminError("delete tag", err)
		}
		s.log.Info("cache invalidated by tag", "tag", *r.Tag, "deleted", n)
		return c.JSON(http.StatusOK, deleted{n})
	case r.Namespace != nil && r.Tag == nil:
		ns := *r.Namespace
		if len(ns) > maxTagLen || !printable(ns) {
			return badRequest("invalid_request", "namespace: want at most 128 printable characters")
		}
		tenant, err := s.adminTenant(r.APIKey)
		if err != nil {
			return err
		}
		n, err := s.cache.DeleteNamespace(ctx, tenant, ns)
		if err != nil {
			return s.adminError("delete namespace", err)
		}
		s.log.Info("cache invalidated by namespace", "namespace", ns, "deleted", n)
		return c.JSON(http.StatusOK, deleted{n})
	default:
		return badRequest("invalid_request", `want {"tag": "..."} or {"namespace": "...", "api_key": "..."}`)
	}
}

// adminTenant returns the tenant whose namespace an invalidate request
// names. It derives it with s.tenant from the API key presented as a bearer
// token, so that it is the tenant the proxy gave that key's requests.
func (s *Server) adminTenant(apiKey *string) (string, error) {
	if s.cfg.SharedNamespace != "" {
		if apiKey != nil {
			return "", badRequest("invalid_request", "api_key: this server shares one namespace between all clients (--namespace); leave api_key out")
		}
		return s.tenant(nil), nil
	}
	if apiKey == nil {
		return "", badRequest("invalid_request", `api_key: required with namespace: the client API key whose namespace to delete ("" for clients without one)`)
	}
	return s.tenant(http.Header{"Authorization": {"Bearer " + *apiKey}}), nil
}

// flush answers POST /api/v1/cache/flush (an empty body or {}): it deletes
// every entry of this cache and only of this cache (in Redis, the keys
// under its prefix and its index; never FLUSHDB or FLUSHALL). deleted is
// the number of entries (memory backend) or keys (redis backend).
func (s *Server) flush(c echo.Context) error {
	var r struct{}
	if err := decodeAdmin(c, &r); err != nil {
		return err
	}
	n, err := s.cache.Flush(c.Request().Context())
	if err != nil {
		return s.adminError("flush", err)
	}
	s.log.Info("cache flushed", "deleted", n)
	return c.JSON(http.StatusOK, deleted{n})
}

// decodeAdmin decodes an admin request body into v, refusing unknown
// fields and trailing data; an empty body leaves v as it is.
func decodeAdmin(c echo.Context, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxAdminBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
				Message: "admin request body exceeds 64 KiB"}
		}
		return badRequest("unreadable_body", "could not read request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid_json", "admin request body is not the JSON object expected: "+err.Error())
	}
	if dec.More() {
		return badRequest("invalid_json", "admin request body: want one JSON object")
	}
	return nil
}

// adminError maps a cache failure of an admin operation to a response: 501
// when the store cannot do it, else 503 (logged; the operation may have
// deleted some entries before failing, and may be retried).
func (s *Server) adminError(op string, err error) error {
	if errors.Is(err, semantic.ErrUnsupported) {
		return &Error{Status: http.StatusNotImplemented, Type: "invalid_request_error", Code: "unsupported",
			Message: op + ": not supported by this cache's store"}
	}
	s.log.Error("admin "+op+" failed", "err", err)
	return &Error{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "store_unavailable",
		Message: op + " failed: the cache store is unavailable; retry"}
}

// parseTags returns the tags of a request's X-Semcache-Tags headers
// (comma-separated, white space around each trimmed, duplicates dropped).
// A header that is empty or blank means no tags. A malformed tag or more
// than maxTags tags is a 400 naming the header.
func parseTags(h http.Header) ([]string, error) {
	var tags []string
	for _, v := range h.Values(HeaderTags) {
		if strings.TrimSpace(v) == "" {
			continue
		}
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if !validTag(t) {
				return nil, badRequest("invalid_header", HeaderTags+": want comma-separated tags of 1 to 128 printable characters")
			}
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
	}
	if len(tags) > maxTags {
		return nil, badRequest("invalid_header", HeaderTags+": want at most 16 tags")
	}
	return tags, nil
}

// validTag reports whether t can be a client tag: 1 to maxTagLen bytes of
// printable UTF-8, no comma (the header's separator) and no surrounding
// white space (the header trims it). Internal tags (semantic.NamespaceTag)
// contain NUL bytes, so a client tag can never name one.
func validTag(t string) bool {
	return t != "" && len(t) <= maxTagLen && t == strings.TrimSpace(t) &&
		!strings.Contains(t, ",") && printable(t)
}

// printable reports whether s is valid UTF-8 made of printable characters
// (letters, marks, numbers, punctuation, symbols and the ASCII space).
func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// entryTags is the full tag list of an entry a request stores: the
// request's tags and its tenant's namespace tag.
func entryTags(tenant, namespace string, tags []string) []string {
	all := make([]string, 0, len(tags)+1)
	all = append(all, tags...)
	return append(all, semantic.NamespaceTag(tenant, namespace))
}

// tagStored tags the entry a miss stored (res.Stored; nothing otherwise)
// with the request's tags (see parseTags) and the internal tag of its
// tenant and namespace (semantic.NamespaceTag), so that the admin endpoints
// can delete it by tag or by namespace. tenant and namespace must be the
// ones the request's identity was built with (s.tenant and the
// X-Semcache-Namespace control).
//
// It runs detached from the client (a client hanging up must not leave an
// untagged entry) within tagTimeout. When tagging fails the entry is
// deleted, since an entry that a later invalidation cannot find would keep
// serving an answer its source no longer supports; the next request pays
// one upstream call instead. A store without tags (semantic.ErrUnsupported)
// is left alone.
func (s *Server) tagStored(ctx context.Context, tenant, namespace string, tags []string, res semantic.Result) {
	if !res.Stored || res.Key == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tagTimeout)
	defer cancel()
	all := entryTags(tenant, namespace, tags)
	// The longest an entry can live: the default TTL, or a request's
	// X-Semcache-TTL, which MaxTTL bounds.
	ttl := max(s.cfg.MaxTTL, s.cache.TTL())
	err := s.cache.TagEntry(ctx, res.Key, all, ttl)
	if err == nil || errors.Is(err, semantic.ErrUnsupported) {
		return
	}
	s.log.Warn("tagging a stored entry failed; deleting the entry", "key", res.Key, "err", err)
	if _, derr := s.cache.Delete(ctx, res.Key); derr != nil {
		s.log.Warn("deleting an untagged entry failed", "key", res.Key, "err", derr)
	}
}
