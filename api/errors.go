package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/semcache/semcache/semantic"
	"net/http"

	"github.com/labstack/echo/v4"
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

// errorBody is the OpenAI error shape: {"error":{"message","type","code"}}.
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
		ae = &Error{Status: he.Code, Type: "invalid_request_error", Message: fmt.Sprint(he.Message)}
		if he.Code == http.StatusNotFound {
			ae.Code = "not_found"
		}
		if he.Code >= 500 {
			ae.Type = "server_error"
		}
	default:
		s.log.Error("request failed", "path", c.Path(), "err", err)
		ae = &Error{Status: http.StatusInternalServerError, Type: "server_error", Message: "internal error"}
	}
	if err := c.JSON(ae.Status, ae.body()); err != nil {
		s.log.Warn("write error response", "err", err)
	}
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
