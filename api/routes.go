package api

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/semcache/semcache/semantic"
)

// HeaderAPIKey is Azure OpenAI's credential header. On requests it is the
// caller's credential when there is no Authorization header (the tenant is
// a hash of it, never the key itself); it is forwarded upstream like
// Authorization and never stored or logged.
const HeaderAPIKey = "Api-Key"

// DefaultScopeHeaders are the request headers that can change an answer
// and so are part of the scope: a request that sends another value (or
// none) never shares an entry. OpenAI-Beta switches API behaviour;
// OpenAI-Organization and OpenAI-Project select the account whose models,
// fine-tunes and policies answer. Config.ScopeHeaders adds to the list.
var DefaultScopeHeaders = []string{"OpenAI-Beta", "OpenAI-Organization", "OpenAI-Project"}

// endpoint is one cached OpenAI endpoint: how its requests are identified
// and where they go upstream.
type endpoint struct {
	api semantic.API
	// path is the endpoint below the upstream base URL, e.g.
	// ["chat", "completions"].
	path     []string
	identify func(body []byte, who semantic.Caller, n semantic.Normalization) (semantic.Identity, semantic.Request, error)
}

var (
	chatEndpoint        = endpoint{semantic.APIChat, []string{"chat", "completions"}, semantic.IdentifyChat}
	responsesEndpoint   = endpoint{semantic.APIResponses, []string{"responses"}, semantic.IdentifyResponses}
	completionsEndpoint = endpoint{semantic.APICompletions, []string{"completions"}, semantic.IdentifyCompletion}
)

// call is one cached-path request: its endpoint, the upstream URL it goes
// to and the facts outside its body that join its scope.
type call struct {
	endpoint
	// url is the upstream URL, query included.
	url string
	// azure is set for /openai/deployments/{deployment}/... requests.
	azure bool
	// deployment is the Azure deployment, the model of a body without one.
	deployment string
}

// newCall returns the call for a request to ep: for a /v1 path the
// endpoint below the upstream base URL; for an Azure OpenAI path
// (/openai/deployments/{deployment}/...) the same path and query below the
// upstream's origin and base path, its trailing /v1 dropped, so that
// --upstream https://RESOURCE.openai.azure.com serves Azure clients.
func (s *Server) newCall(c echo.Context, ep endpoint) call {
	r := c.Request()
	cl := call{endpoint: ep}
	if strings.HasPrefix(r.URL.Path, "/openai/") {
		cl.azure = true
		cl.deployment = c.Param("deployment")
		cl.url = s.azureURL(r.URL.Path, r.URL.RawQuery)
		return cl
	}
	u := s.upstream.JoinPath(ep.path...)
	u.RawQuery = r.URL.RawQuery
	cl.url = u.String()
	return cl
}

// azureURL maps an Azure OpenAI path and query onto the upstream.
func (s *Server) azureURL(path, query string) string {
	u := *s.upstream
	u.Path = strings.TrimSuffix(u.Path, "/v1") + path
	u.RawPath = ""
	u.RawQuery = query
	return u.String()
}

// caller returns the scope facts of a request besides its body: the tenant
// and namespace of its controls, the Azure deployment as the model of a
// body without one, and as Extra the deployment and api-version of an Azure
// request and the values of the scope headers the request sent.
func (s *Server) caller(h http.Header, cl call, ctl controls, query func(string) string) semantic.Caller {
	who := semantic.Caller{Tenant: ctl.tenant, Namespace: ctl.namespace, Model: cl.deployment}
	extra := map[string]string{}
	if cl.azure {
		extra["azure-deployment"] = cl.deployment
		extra["azure-api-version"] = query("api-version")
	}
	for _, k := range s.scopeHeaders {
		if v := strings.Join(h.Values(k), ","); v != "" {
			extra["header:"+strings.ToLower(k)] = v
		}
	}
	if len(extra) > 0 {
		who.Extra = extra
	}
	return who
}

// notForwarded are the request headers a cached-path upstream call does
// not copy from the client: hop-by-hop headers (RFC 9110 §7.6.1), those
// the proxy sets itself (Host, Content-Length, Content-Type, Accept, and
// Accept-Encoding, which Go's transport negotiates so that what is stored
// is the decoded body), the credentials (see setAuth), and the cache's own
// controls (Cache-Control and every X-Semcache-* header).
var notForwarded = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Host": true, "Content-Length": true, "Content-Type": true, "Accept": true, "Accept-Encoding": true,
	"Authorization": true, HeaderAPIKey: true, "Cache-Control": true,
}

// forwardHeaders copies the client's end-to-end request headers to out:
// all but notForwarded, the headers the client's Connection header names,
// and X-Semcache-* controls.
func forwardHeaders(out, in http.Header) {
	hop := map[string]bool{}
	for _, v := range in.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			hop[textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(f))] = true
		}
	}
	for k, vs := range in {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if notForwarded[ck] || hop[ck] || strings.HasPrefix(ck, "X-Semcache-") {
			continue
		}
		out[ck] = append([]string(nil), vs...)
	}
}
