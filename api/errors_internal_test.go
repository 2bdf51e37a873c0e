package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestEchoError(t *testing.T) {
	r := httptest.NewRequest(http.MethodPatch, "/healthz", nil)
	cases := []struct {
		name               string
		he                 *echo.HTTPError
		allow              string
		status             int
		typ, code, message string
	}{
		{"405 with Allow", echo.ErrMethodNotAllowed, "OPTIONS, GET", 405, "invalid_request_error", "method_not_allowed", "method PATCH is not allowed on /healthz; allowed: OPTIONS, GET"},
		{"405 without Allow", echo.ErrMethodNotAllowed, "", 405, "invalid_request_error", "method_not_allowed", "method PATCH is not allowed on /healthz"},
		{"no route", echo.ErrNotFound, "", 404, "invalid_request_error", "not_found", "no such endpoint: PATCH /healthz"},
		{"a handler's own 404 keeps its message", echo.NewHTTPError(404, "no entry abc"), "", 404, "invalid_request_error", "not_found", "no entry abc"},
		{"415", echo.ErrUnsupportedMediaType, "", 415, "invalid_request_error", "unsupported_media_type", "Unsupported Media Type"},
		{"418", echo.NewHTTPError(418, "teapot"), "", 418, "invalid_request_error", "i_m_a_teapot", "teapot"},
		{"503", echo.ErrServiceUnavailable, "", 503, "server_error", "service_unavailable", "Service Unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := echoError(tc.he, r, tc.allow)
			if e.Status != tc.status || e.Type != tc.typ || e.Code != tc.code || e.Message != tc.message {
				t.Errorf("%+v, want {%d %s %s %q}", e, tc.status, tc.typ, tc.code, tc.message)
			}
		})
	}
}
