package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/semcache/semcache/semantic"
)

// streamStoreTimeout bounds storing a completed stream. The store runs
// detached from the client, who may hang up as soon as it has read
// [DONE].
const streamStoreTimeout = 10 * time.Second

// streamCompletion answers a "stream": true chat completion.
//
// A hit is replayed as server-sent events (see semantic.StreamChunks): the
// recorded chunks of a stored stream, or chunks synthesized from a stored
// JSON answer, then data: [DONE].
//
// A miss goes upstream with the client's body unchanged, on the client's
// context: the upstream call is cancelled when the client hangs up, and
// nothing is stored. The upstream's status, headers and events are relayed
// as they arrive (each read flushed, nothing buffered) and recorded on the
// side up to MaxStreamBytes. The recording is stored only when the stream
// was a 200 event stream that ended with data: [DONE], carried no error
// event and every choice finished with a storable finish_reason (see
// semantic.Cacheable). A stream cut by the upstream is cut for the client
// too (the connection is aborted, as httputil.ReverseProxy does), so the
// client never takes it for a complete answer.
//
// Streaming misses are not coalesced: the first client's stream cannot be
// shared with others without buffering it or tying them to its connection.
func (s *Server) streamCompletion(c echo.Context, id semantic.Identity, ctl controls, body []byte, start time.Time) error {
	req := c.Request()
	ctx := req.Context()
	res, vec, hit := s.cache.Lookup(ctx, id, ctl.opts)
	h := c.Response().Header()
	if hit {
		chunks, err := semantic.StreamChunks(res, includeUsage(body))
		if err != nil {
			return err // a stored answer that is no chat completion: a 500
		}
		s.setCacheHeaders(h, res, ctl)
		h.Set(echo.HeaderContentType, "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		var b bytes.Buffer
		for _, ch := range chunks {
			b.WriteString("data: ")
			b.WriteString(ch)
			b.WriteString("\n\n")
		}
		b.WriteString("data: [DONE]\n\n")
		c.Response().WriteHeader(http.StatusOK)
		if _, err := c.Response().Write(b.Bytes()); err != nil {
			return nil // the client went away
		}
		s.metrics.observe(res, time.Since(start))
		return nil
	}

	stats := s.cache.Stats()
	resp, err := s.postStream(ctx, req.Header, body)
	if err != nil {
		if ctx.Err() != nil {
			return nil // the client went away; nobody to answer
		}
		stats.UpstreamErrors.Add(1)
		h.Set(HeaderStatus, string(semantic.Miss))
		s.log.Warn("upstream call failed", "err", err)
		return &Error{Status: http.StatusBadGateway, Type: "upstream_error", Code: "upstream_unreachable", Message: "upstream unreachable"}
	}
	defer resp.Body.Close()

	for k, v := range resp.Header {
		if !skipHeader[http.CanonicalHeaderKey(k)] {
			h[k] = v
		}
	}
	if ct := resp.Header.Get(echo.HeaderContentType); ct != "" {
		h.Set(echo.HeaderContentType, ct)
	}
	s.setCacheHeaders(h, res, ctl)
	var rec *sseRecorder
	if resp.StatusCode != http.StatusOK {
		stats.UpstreamErrors.Add(1) // relayed unchanged, never stored
	} else if isEventStream(resp.Header.Get(echo.HeaderContentType)) {
		rec = &sseRecorder{max: s.cfg.MaxStreamBytes}
		if !ctl.opts.NoStore {
			// The key the answer is stored under if it completes: the
			// headers go out before anyone knows.
			h.Set(HeaderKey, id.Key)
		}
	}
	c.Response().WriteHeader(resp.StatusCode)
	flush(c.Response())

	if err := relay(c.Response(), resp.Body, rec); err != nil {
		if errors.Is(err, errClientGone) || ctx.Err() != nil {
			return nil // the upstream call is cancelled with the client; nothing stored
		}
		stats.UpstreamErrors.Add(1)
		s.log.Warn("upstream stream cut", "err", err)
		panic(http.ErrAbortHandler) // let the client see the stream was cut
	}
	if rec != nil {
		chunks, ok := rec.complete()
		if rec.errorEvent {
			stats.UpstreamErrors.Add(1)
		}
		if ok {
			if a, err := semantic.AnswerFromStream(chunks); err == nil {
				sctx, cancel := context.WithTimeout(semantic.WithEntryTags(context.WithoutCancel(ctx),
					entryTags(ctl.tenant, ctl.namespace, ctl.tags)), streamStoreTimeout)
				stored, _ := s.cache.StoreAnswer(sctx, res, id, ctl.opts, a, vec) // failures are logged and counted there
				cancel()
				s.tagStored(ctx, ctl.tenant, ctl.namespace, ctl.tags, semantic.Result{Key: id.Key, Stored: stored})
			}
		}
	}
	s.metrics.observe(res, time.Since(start))
	return nil
}

// postStream POSTs the client's body to the upstream's chat completions
// endpoint on ctx and returns the response with its body unread.
func (s *Server) postStream(ctx context.Context, in http.Header, body []byte) (*http.Response, error) {
	req, err := s.newUpstreamRequest(ctx, in, body, "text/event-stream", "chat", "completions")
	if err != nil {
		return nil, err
	}
	return s.client.Do(req)
}

// errClientGone is relay's error when writing to the client failed.
var errClientGone = errors.New("client went away")

// relay copies the upstream body to the client as it arrives, flushing
// after every read, and to rec when it is not nil. It returns nil at the
// end of the body, errClientGone when the client cannot be written to, and
// the read error when the upstream body failed.
func relay(w http.ResponseWriter, body io.Reader, rec *sseRecorder) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return errClientGone
			}
			flush(w)
			if rec != nil {
				rec.feed(buf[:n])
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// flush sends what has been written to the client; a writer that cannot
// flush fails the next write instead.
func flush(w http.ResponseWriter) { _ = http.NewResponseController(w).Flush() }

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/event-stream"
}

// includeUsage reports whether a chat completion body asks for the usage
// chunk (stream_options.include_usage).
func includeUsage(body []byte) bool {
	var b struct {
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	// Identify has accepted the body, and a stream_options that does not
	// decode asks for nothing.
	_ = json.Unmarshal(body, &b)
	return b.StreamOptions.IncludeUsage
}

// sseRecorder keeps the data payloads of a server-sent event stream as it
// is relayed, up to max bytes of stream. It follows the SSE framing (lines
// ending in \n or \r\n, events ended by a blank line, several data lines
// joined by \n, comment lines ignored). It is not safe for concurrent use.
type sseRecorder struct {
	max int64
	// n is the number of stream bytes seen.
	n int64
	// line is the current line, not yet ended.
	line []byte
	// data and event are the fields of the current event.
	data  []string
	event string

	chunks []string
	// done is set by data: [DONE].
	done bool
	// errorEvent is set by an "event: error" or a payload with an error
	// field.
	errorEvent bool
	// broken is set by an over-size stream, an error event or an event
	// after [DONE]: the recording must not be stored.
	broken bool
}

// feed records the next bytes of the stream.
func (r *sseRecorder) feed(p []byte) {
	if r.broken {
		return
	}
	r.n += int64(len(p))
	if r.n > r.max {
		r.broken = true
		r.chunks, r.line, r.data = nil, nil, nil // free the recording
		return
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			r.line = append(r.line, p...)
			return
		}
		r.line = append(r.line, p[:i]...)
		p = p[i+1:]
		r.endLine(bytes.TrimSuffix(r.line, []byte("\r")))
		r.line = r.line[:0]
	}
}

func (r *sseRecorder) endLine(l []byte) {
	if len(l) == 0 {
		r.dispatch()
		return
	}
	if l[0] == ':' {
		return // a comment (keep-alive)
	}
	field, value, _ := bytes.Cut(l, []byte(":"))
	value = bytes.TrimPrefix(value, []byte(" "))
	switch string(field) {
	case "data":
		r.data = append(r.data, string(value))
	case "event":
		r.event = string(value)
	}
}

// dispatch ends the current event.
func (r *sseRecorder) dispatch() {
	if r.broken || (r.data == nil && r.event == "") {
		return
	}
	payload, event := strings.Join(r.data, "\n"), r.event
	r.data, r.event = nil, ""
	switch {
	case event == "error" || (strings.Contains(payload, `"error"`) && hasErrorField(payload)):
		r.errorEvent, r.broken = true, true
	case r.done:
		r.broken = true // nothing may follow [DONE]
	case payload == "[DONE]":
		r.done = true
	default:
		r.chunks = append(r.chunks, payload)
	}
}

// hasErrorField reports whether an event payload is a JSON object with a
// non-null error field, OpenAI's error event.
func hasErrorField(payload string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(payload), &m) != nil {
		return false
	}
	e, ok := m["error"]
	return ok && string(e) != "null"
}

// complete returns the recorded chunk payloads when the stream ended
// normally: data: [DONE] seen, nothing broken.
func (r *sseRecorder) complete() ([]string, bool) {
	if len(r.line) > 0 {
		r.endLine(bytes.TrimSuffix(r.line, []byte("\r")))
		r.line = nil
	}
	r.dispatch() // an event not ended by a blank line at the end of the body
	if r.broken || !r.done {
		return nil, false
	}
	return r.chunks, true
}
