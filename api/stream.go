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

// streamCompletion answers a "stream": true request to a cached endpoint.
//
// A hit is replayed as server-sent events: the recorded events of a stored
// stream, or events synthesized from a stored JSON answer. For chat and
// legacy completions those are chunks (semantic.StreamChunks,
// semantic.CompletionChunks) ended by data: [DONE]; for the Responses API
// they are "event: <type>" events (semantic.ResponseEvents) ending with
// response.completed.
//
// A miss goes upstream on the client's context: the upstream call is
// cancelled when the client hangs up, and nothing is stored. The body goes
// unchanged but for one field: a chat or legacy completion whose answer may
// be stored and that did not ask for usage gets
// stream_options.include_usage, so the stored answer carries the tokens a
// later hit saves, and the usage chunk is taken out of what the client
// receives (its other chunks then carry "usage": null, as OpenAI sends
// them). The upstream's status, headers and events are relayed
// as they arrive (each read flushed, nothing buffered) and recorded on the
// side up to MaxStreamBytes. The recording is stored only when the stream
// was a 200 event stream that ended with data: [DONE], carried no error
// event and every choice finished with a storable finish_reason (see
// semantic.Cacheable); a Responses stream when it held a response.completed
// event with status completed and no error, response.failed or
// response.incomplete event. A stream cut by the upstream is cut for the client
// too (the connection is aborted, as httputil.ReverseProxy does), so the
// client never takes it for a complete answer.
//
// Streaming misses are not coalesced: the first client's stream cannot be
// shared with others without buffering it or tying them to its connection.
func (s *Server) streamCompletion(c echo.Context, cl call, id semantic.Identity, ctl controls, body []byte, start time.Time) error {
	req := c.Request()
	ctx := req.Context()
	res, vec, hit := s.cache.Lookup(ctx, id, ctl.opts)
	h := c.Response().Header()
	if hit {
		b, err := replayEvents(cl.api, res, includeUsage(body))
		if err != nil {
			return err // a stored answer of another shape: a 500
		}
		s.setCacheHeaders(h, res, ctl)
		h.Set(echo.HeaderContentType, "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		c.Response().WriteHeader(http.StatusOK)
		if _, err := c.Response().Write(b); err != nil {
			return nil // the client went away
		}
		s.observe(id, res, start)
		return nil
	}

	stats := s.cache.Stats()
	upBody, stripUsage := body, false
	if cl.api != semantic.APIResponses && !ctl.opts.NoStore && !includeUsage(body) {
		if b, ok := withIncludeUsage(body); ok {
			upBody, stripUsage = b, true
		}
	}
	resp, err := s.postStream(ctx, req.Header, upBody, cl)
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
		rec = &sseRecorder{max: s.cfg.MaxStreamBytes, responses: cl.api == semantic.APIResponses}
		if !ctl.opts.NoStore {
			// The key the answer is stored under if it completes: the
			// headers go out before anyone knows.
			h.Set(HeaderKey, id.Key)
		}
	}
	c.Response().WriteHeader(resp.StatusCode)
	flush(c.Response())

	// Events go to the client one by one (see eventWriter): the usage chunk
	// the proxy asked for is left out, and the stream's last event
	// ([DONE], response.completed) waits until the answer is stored, so a
	// client that repeats the request as soon as it has read it finds it.
	out := &eventWriter{w: c.Response(), stripUsage: stripUsage, holdFinal: rec != nil && !ctl.opts.NoStore,
		responses: cl.api == semantic.APIResponses}
	if err := relay(out, resp.Body, rec); err != nil {
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
			if a, err := answerFromEvents(cl.api, chunks); err == nil {
				sctx, cancel := context.WithTimeout(semantic.WithEntryTags(context.WithoutCancel(ctx),
					entryTags(ctl.tenant, ctl.namespace, ctl.tags)), streamStoreTimeout)
				stored, _ := s.cache.StoreAnswer(sctx, res, id, ctl.opts, a, vec) // failures are logged and counted there
				cancel()
				s.tagStored(ctx, ctl.tenant, ctl.namespace, ctl.tags, semantic.Result{Key: id.Key, Stored: stored})
			}
		}
	}
	if len(out.held) > 0 {
		if _, err := c.Response().Write(out.held); err == nil {
			flush(c.Response())
		}
	}
	s.observe(id, res, start)
	return nil
}

// postStream POSTs body to the upstream URL of cl on ctx and returns the
// response with its body unread.
func (s *Server) postStream(ctx context.Context, in http.Header, body []byte, cl call) (*http.Response, error) {
	req, err := s.newUpstreamRequest(ctx, in, body, "text/event-stream", cl)
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
func relay(w *eventWriter, body io.Reader, rec *sseRecorder) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return errClientGone
			}
			flush(w.w)
			if rec != nil {
				rec.feed(buf[:n])
			}
		}
		if err == io.EOF {
			if err := w.end(); err != nil {
				return errClientGone
			}
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
	// responses records a Responses API stream: it is done at its
	// response.completed event (it has no [DONE]), and an event typed
	// error, response.failed, response.incomplete or response.cancelled
	// breaks it.
	responses bool
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
	if r.responses {
		typ := eventType(payload)
		switch {
		case event == "error" || responseFailure[typ]:
			r.errorEvent, r.broken = true, true
		case r.done:
			r.broken = true // nothing may follow response.completed
		default:
			r.chunks = append(r.chunks, payload)
			r.done = typ == "response.completed"
		}
		return
	}
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

// responseFailure are the Responses API event types that end a stream
// without a complete answer.
var responseFailure = map[string]bool{"error": true, "response.failed": true, "response.incomplete": true, "response.cancelled": true}

// eventType returns the "type" field of a Responses API event payload.
func eventType(payload string) string {
	var e struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal([]byte(payload), &e)
	return e.Type
}

// replayEvents returns the event stream that replays hit res to a
// streaming request of api (see streamCompletion).
func replayEvents(api semantic.API, res semantic.Result, usage bool) ([]byte, error) {
	var b bytes.Buffer
	if api == semantic.APIResponses {
		events, err := semantic.ResponseEvents(res)
		if err != nil {
			return nil, err
		}
		for _, e := range events {
			b.WriteString("event: " + eventType(e) + "\ndata: " + e + "\n\n")
		}
		return b.Bytes(), nil
	}
	chunks := semantic.StreamChunks
	if api == semantic.APICompletions {
		chunks = semantic.CompletionChunks
	}
	list, err := chunks(res, usage)
	if err != nil {
		return nil, err
	}
	for _, ch := range list {
		b.WriteString("data: " + ch + "\n\n")
	}
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes(), nil
}

// answerFromEvents aggregates the recorded payloads of a complete stream
// of api into the answer to store.
func answerFromEvents(api semantic.API, payloads []string) (semantic.Answer, error) {
	switch api {
	case semantic.APIResponses:
		return semantic.AnswerFromResponseEvents(payloads)
	case semantic.APICompletions:
		return semantic.AnswerFromCompletionStream(payloads)
	}
	return semantic.AnswerFromStream(payloads)
}

// withIncludeUsage returns body with stream_options.include_usage set to
// true (other stream_options kept), and false when body's stream_options
// is not an object.
func withIncludeUsage(body []byte) ([]byte, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return nil, false
	}
	opts := map[string]json.RawMessage{}
	if raw, ok := m["stream_options"]; ok && string(raw) != "null" {
		if json.Unmarshal(raw, &opts) != nil {
			return nil, false
		}
	}
	opts["include_usage"] = json.RawMessage("true")
	enc, err := json.Marshal(opts)
	if err != nil {
		return nil, false
	}
	m["stream_options"] = enc
	out, err := json.Marshal(m)
	return out, err == nil
}

// eventWriter passes a server-sent event stream to w event by event (an
// event is written once its terminating blank line has arrived; end writes
// what is left). With stripUsage it leaves out usage chunks (usage set, no
// choices): the chunk stream_options.include_usage adds when the proxy
// asked for it and the client did not. With holdFinal it keeps the
// stream's last event ([DONE], or response.completed when responses) and
// anything after it in held, for the caller to write once the answer is
// stored. It is not safe for concurrent use.
type eventWriter struct {
	w                     http.ResponseWriter
	stripUsage, holdFinal bool
	responses             bool
	pending, held         []byte
}

func (f *eventWriter) Write(p []byte) (int, error) {
	if !f.stripUsage && !f.holdFinal {
		return f.w.Write(p)
	}
	f.pending = append(f.pending, p...)
	for {
		end := eventEnd(f.pending)
		if end < 0 {
			return len(p), nil
		}
		if err := f.event(f.pending[:end]); err != nil {
			return 0, err
		}
		f.pending = f.pending[end:]
	}
}

// event writes, drops or holds one raw event.
func (f *eventWriter) event(ev []byte) error {
	switch {
	case f.stripUsage && isUsageEvent(ev):
		return nil
	case f.holdFinal && (len(f.held) > 0 || f.isFinal(ev)):
		f.held = append(f.held, ev...)
		return nil
	}
	_, err := f.w.Write(ev)
	return err
}

// end handles the bytes after the last blank line: an event the upstream
// did not end.
func (f *eventWriter) end() error {
	if len(f.pending) == 0 {
		return nil
	}
	ev := f.pending
	f.pending = nil
	return f.event(ev)
}

// isFinal reports whether a raw event ends the stream: data: [DONE], or a
// Responses stream's response.completed event.
func (f *eventWriter) isFinal(ev []byte) bool {
	data := eventData(ev)
	if f.responses {
		return eventType(data) == "response.completed"
	}
	return strings.TrimSpace(data) == "[DONE]"
}

// eventData returns the data of a raw event, its data lines joined by \n.
func eventData(ev []byte) string {
	var data []string
	for _, l := range strings.Split(string(ev), "\n") {
		l = strings.TrimSuffix(l, "\r")
		if v, ok := strings.CutPrefix(l, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		}
	}
	return strings.Join(data, "\n")
}

// eventEnd returns the length of the first complete event in b (through
// its blank line), or -1.
func eventEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		j := i + 1
		if j < len(b) && b[j] == '\r' {
			j++
		}
		if j < len(b) && b[j] == '\n' {
			return j + 1
		}
	}
	return -1
}

// isUsageEvent reports whether a raw event's data is a usage chunk.
func isUsageEvent(ev []byte) bool {
	if !bytes.Contains(ev, []byte(`"usage"`)) {
		return false
	}
	var m struct {
		Usage   json.RawMessage `json:"usage"`
		Choices []any           `json:"choices"`
	}
	if json.Unmarshal([]byte(eventData(ev)), &m) != nil {
		return false
	}
	return len(m.Usage) > 0 && string(m.Usage) != "null" && len(m.Choices) == 0
}
