package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/semcache/semcache/semantic"
)

// Error is an error with the HTTP status and the OpenAI error type and code
// it is reported with. Handlers return it; errorHandler writes it.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Type is OpenAI's error type, e.g. "invalid_request_error".
	Type string
	// Code is OpenAI's error code, e.g. "invalid_json"; may be empty.
	Code string
	// Message is shown to the client.
	Message string
	// Param names the offending request field, when there is one.
	Param string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message) }

func badRequest(code, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: code, Message: msg}
}

// invalidRequest is the 400 for a request body the cache cannot accept;
// when err names a field (semantic.FieldError), it becomes "param".
func invalidRequest(err error) *Error {
	e := badRequest("invalid_request", err.Error())
	var fe *semantic.FieldError
	if errors.As(err, &fe) {
		e.Param = fe.Field
	}
	return e
}

// errorBody is the OpenAI error shape:
// {"error":{"message","type","param","code"}}.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// errorHandler is the one place that turns handler errors into responses in
// the OpenAI error shape.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ae *Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &he):
		ae = echoError(he, c.Request(), c.Response().Header().Get(echo.HeaderAllow))
	default:
		s.log.Error("request failed", "path", c.Path(), "err", err)
		ae = &Error{Status: http.StatusInternalServerError, Type: "server_error", Message: "internal error"}
	}
	if err := c.JSON(ae.Status, ae.body()); err != nil {
		s.log.Warn("write error response", "err", err)
	}
}

// echoError is the OpenAI-shaped form of an echo.HTTPError: echo's own
// answers (no route: 404; a route that does not take the method: 405, for
// which echo has set the Allow header) and any a handler returns. The
// status is kept; the code is the status text in snake case (not_found,
// method_not_allowed); the type is server_error from 500 up, else
// invalid_request_error. allow is the response's Allow header.
func echoError(he *echo.HTTPError, r *http.Request, allow string) *Error {
	e := &Error{Status: he.Code, Type: "invalid_request_error", Code: snakeCase(http.StatusText(he.Code)), Message: fmt.Sprint(he.Message)}
	switch {
	case he.Code == http.StatusNotFound && he.Message == echo.ErrNotFound.Message:
		e.Message = fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)
	case he.Code == http.StatusMethodNotAllowed:
		e.Message = fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path)
		if allow != "" {
			e.Message += "; allowed: " + allow
		}
	case he.Code >= 500:
		e.Type = "server_error"
	}
	return e
}

// snakeCase turns an HTTP status text into an error code: lower case, each
// run of other characters than letters and digits one underscore
// ("Method Not Allowed" gives "method_not_allowed").
func snakeCase(s string) string {
	var b strings.Builder
	sep := false
	for _, r := range strings.ToLower(s) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			sep = false
			continue
		}
		sep = true
	}
	return b.String()
}

// body returns e in the OpenAI error shape.
func (e *Error) body() errorBody {
	var b errorBody
	b.Error.Message = e.Message
	b.Error.Type = e.Type
	if e.Param != "" {
		param := e.Param
		b.Error.Param = &param
	}
	if e.Code != "" {
		code := e.Code
		b.Error.Code = &code
	}
	return b
}

// writeJSONError writes e in the OpenAI error shape outside echo (the
// reverse proxy's error handler).
func writeJSONError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e.body())
}
