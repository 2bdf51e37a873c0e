package semantic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	fastjson "github.com/segmentio/encoding/json"
	"strconv"

	"golang.org/x/sync/errgroup"
)

// Partial is the outcome of an embeddings request whose inputs were partly
// served from the cache and partly embedded upstream (X-Semcache-Status:
// PARTIAL). Chat completions are never partial.
const Partial Outcome = "PARTIAL"

// ErrTokenInput is wrapped (together with ErrBadRequest) by the error
// IdentifyEmbeddings returns for an input given as tokens (an array of
// integers, or an array of arrays of integers). The cache keys embeddings by
// text, and a token array's text depends on the model's tokenizer, which the
// proxy does not have; such requests are refused rather than passed through
// uncached, so that a client learns at once that it would bypass the cache.
var ErrTokenInput = errors.New("token-array input is not supported")

// ErrUpstreamEmbeddings is wrapped by the error DoEmbeddings returns when the
// upstream answered 200 with a body that is not a valid embeddings list for
// the inputs it was sent: not JSON, a wrong number of data items, an index
// missing, out of range or repeated, or an embedding that is neither an
// array nor a string. Nothing of such an answer is stored or served.
var ErrUpstreamEmbeddings = errors.New("invalid upstream embeddings response")

// embeddingsParallelism bounds the concurrent store calls of one embeddings
// request (a batch may hold thousands of inputs, each a Redis round trip).
const embeddingsParallelism = 16

// EmbeddingsRequest is a POST /v1/embeddings request body with its cache
// identity; IdentifyEmbeddings builds it. Like Identity for chat
// completions, it is the one place that decides who may see an embeddings
// entry.
type EmbeddingsRequest struct {
	// Model is the request's model field.
	Model string
	// Inputs are the texts to embed in request order; a string input is one
	// text. Texts are cached exactly, without normalisation: "Hello" and
	// "hello " have different embeddings.
	Inputs []string
	// Scope is a hex SHA-256 over the canonical JSON of the tenant and every
	// field of the body except input: model, dimensions, encoding_format,
	// user, and any field the cache does not know (it might change the
	// vectors, and a wrong vector is worse than a miss).
	Scope string
	// Keys[i] is the entry key of Inputs[i]: a hex SHA-256 of Scope and the
	// text. Equal texts of one request share a key.
	Keys []string

	// fields is the decoded body, for the upstream request.
	fields map[string]any
}

// embeddingsParamKinds are the JSON kinds of the embeddings parameters that
// IdentifyEmbeddings checks (null is allowed). The value of encoding_format
// is left to the upstream to judge: it is part of the scope either way.
var embeddingsParamKinds = map[string]jsonKinds{
	"dimensions":      kindInteger,
	"encoding_format": kindString,
	"user":            kindString,
}

// embeddingsParamNames are embeddingsParamKinds' keys in a fixed order, so
// that the first bad field reported is always the same one.
var embeddingsParamNames = []string{"dimensions", "encoding_format", "user"}

// IdentifyEmbeddings parses an embeddings request body and builds its cache
// identity for the tenant (an opaque string chosen by the caller, as for
// Identify).
//
// Errors wrap ErrBadRequest and name the offending field: malformed JSON, a
// missing or non-string model, a missing, null or empty input, an empty
// string among the inputs, an input that is neither a string nor an array of
// strings, a dimensions that is not a positive integer, an encoding_format or
// user that is not a string. Token-array inputs also wrap ErrTokenInput.
// IdentifyEmbeddings is a pure function, safe for concurrent use.
func IdentifyEmbeddings(body []byte, tenant string) (EmbeddingsRequest, error) {
	return IdentifyEmbeddingsIn(body, tenant, "")
}

// IdentifyEmbeddingsIn is IdentifyEmbeddings within a namespace of the
// tenant (X-Semcache-Namespace): inputs of different namespaces never share
// an entry. The empty namespace gives IdentifyEmbeddings' keys.
func IdentifyEmbeddingsIn(body []byte, tenant, namespace string) (EmbeddingsRequest, error) {
	return IdentifyEmbeddingsFor(body, Caller{Tenant: tenant, Namespace: namespace})
}

// IdentifyEmbeddingsFor is IdentifyEmbeddingsIn for a caller with request
// facts outside the body (see Caller): its Model stands in for a body
// without one, and its Extra joins the scope.
func IdentifyEmbeddingsFor(body []byte, who Caller) (EmbeddingsRequest, error) {
	tenant, namespace := who.Tenant, who.Namespace
	var r EmbeddingsRequest
	fields, err := decodeObject(body)
	if err != nil {
		return r, err
	}
	if r.Model, err = who.model(fields); err != nil {
		return r, err
	}
	for _, name := range embeddingsParamNames {
		v, present := fields[name]
		if !present || v == nil {
			continue
		}
		if kinds := embeddingsParamKinds[name]; !kinds.matches(v) {
			return r, badField("%s: want %s", name, kinds)
		}
	}
	if d, ok := fields["dimensions"].(json.Number); ok {
		if f, err := d.Float64(); err != nil || f < 1 {
			return r, badField("dimensions: want a positive integer")
		}
	}
	if r.Inputs, err = embeddingsInputs(fields["input"]); err != nil {
		return r, err
	}

	params := make(map[string]any, len(fields))
	for k, v := range fields {
		if k != "input" {
			params[k] = v
		}
	}
	scope := map[string]any{
		"v":      1, // bump when the scope layout changes
		"kind":   "embeddings",
		"tenant": tenant,
		"params": params,
	}
	if namespace != "" {
		scope["namespace"] = namespace // absent when empty: the keys stored before namespaces stay valid
	}
	if len(who.Extra) > 0 {
		scope["extra"] = who.Extra
	}
	canon, err := canonicalJSON(scope)
	if err != nil {
		return r, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	r.Scope = hashHex(canon)
	r.Keys = make([]string, len(r.Inputs))
	for i, in := range r.Inputs {
		r.Keys[i] = hashHex([]byte("embeddings\x00" + r.Scope + "\x00" + in))
	}
	r.fields = fields
	return r, nil
}

// decodeObject decodes a JSON object body with numbers kept as json.Number,
// refusing trailing data.
func decodeObject(body []byte) (map[string]any, error) {
	var fields map[string]any
	rest, err := fastjson.Parse(body, &fields, fastjson.UseNumber)
	if err != nil {
		return nil, fmt.Errorf("%w: body is not a JSON object: %v", ErrBadRequest, err)
	}
	if len(bytes.TrimLeft(rest, " \t\r\n")) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrBadRequest)
	}
	if fields == nil {
		return nil, fmt.Errorf("%w: body is not a JSON object", ErrBadRequest)
	}
	return fields, nil
}

// embeddingsInputs returns the texts of an input field: a non-empty string,
// or a non-empty array of non-empty strings.
func embeddingsInputs(v any) ([]string, error) {
	switch in := v.(type) {
	case nil:
		return nil, badField("input: required: a string or an array of strings")
	case string:
		if in == "" {
			return nil, badField("input: must not be an empty string")
		}
		return []string{in}, nil
	case []any:
		if len(in) == 0 {
			return nil, badField("input: must not be an empty array")
		}
		if isTokenInput(in) {
			return nil, fmt.Errorf("%w: %w: field input: send text, not tokens (the cache keys embeddings by their text)", ErrBadRequest, ErrTokenInput)
		}
		texts := make([]string, len(in))
		for i, e := range in {
			s, ok := e.(string)
			if !ok {
				return nil, badField("input[%d]: want a string", i)
			}
			if s == "" {
				return nil, badField("input[%d]: must not be an empty string", i)
			}
			texts[i] = s
		}
		return texts, nil
	default:
		return nil, badField("input: want a string or an array of strings")
	}
}

// isTokenInput reports whether a non-empty input array is OpenAI's token
// form: every element a number, or every element an array of numbers.
func isTokenInput(in []any) bool {
	numbers := func(vs []any) bool {
		for _, v := range vs {
			if _, ok := v.(json.Number); !ok {
				return false
			}
		}
		return true
	}
	if numbers(in) {
		return true
	}
	for _, v := range in {
		a, ok := v.([]any)
		if !ok || !numbers(a) {
			return false
		}
	}
	return true
}

// upstreamBody returns the request body to send upstream for texts: the
// client's body with input replaced by the texts, as an array.
func (r EmbeddingsRequest) upstreamBody(texts []string) ([]byte, error) {
	out := make(map[string]any, len(r.fields))
	for k, v := range r.fields {
		out[k] = v
	}
	out["input"] = texts
	return json.Marshal(out)
}

// EmbeddingsFetchFunc calls the upstream embeddings endpoint with body, the
// client's request with input replaced by the texts that were not cached.
// A non-nil error means no answer at all; an HTTP error status is an answer
// and is returned in Upstream.
type EmbeddingsFetchFunc func(ctx context.Context, body []byte) (Upstream, error)

// EmbeddingsResult is the answer to one embeddings request.
type EmbeddingsResult struct {
	// Outcome is Hit when every input was served from the cache, Miss when
	// none was, Partial otherwise.
	Outcome Outcome
	// Cached is the number of inputs served from the cache, Total the number
	// of inputs; an input repeated in the request counts each time.
	Cached, Total int
	// Upstream is the response to relay. On success it is a 200 embeddings
	// list in request order, with the upstream's headers when it was called
	// (nil on a hit). When the upstream answered with a status other than
	// 200 it is that answer, unchanged, and nothing was stored.
	Upstream
	// Stored lists the keys of the embeddings stored by this request, in
	// the order of their inputs' first appearance.
	Stored []string
}

// DoEmbeddings answers an embeddings request: it looks every distinct input
// up in the exact tier, sends the ones not found to fetch in one call, in
// the order of their first appearance, stores each new embedding under its
// input's key for the cache's TTL (exact tier only, no vector) and
// assembles the response in request order, indices 0..n-1, each input with
// its own embedding.
//
// Each stored value is the upstream's "embedding" JSON value byte for byte
// (an array of floats, or a base64 string when encoding_format is base64),
// and the response carries it unchanged. The response's model is the
// upstream's when it was called and named one, else the request's; its
// usage is the upstream's prompt_tokens and total_tokens, 0 when every input
// was cached.
//
// Lookup and store failures are logged and counted, and the inputs
// concerned are embedded upstream: the cache fails open. The upstream call
// is bounded by the cache's UpstreamTimeout and by ctx: unlike chat
// completions, embeddings requests are not coalesced, so a client that goes
// away cancels its own call. An answer received is stored even if the
// client has gone away meanwhile. DoEmbeddings returns an error when fetch
// does, or one wrapping ErrUpstreamEmbeddings for a 200 answer that does not
// fit the request; the result then still reports Outcome, Cached and Total.
//
// In the stats a request counts once: as an exact hit when every input was
// cached, else as a miss. No tokens are counted as saved, since the
// upstream reports usage per batch, not per input.
func (c *Cache) DoEmbeddings(ctx context.Context, req EmbeddingsRequest, fetch EmbeddingsFetchFunc) (EmbeddingsResult, error) {
	return c.DoEmbeddingsWith(ctx, req, Options{}, fetch)
}

// DoEmbeddingsWith is DoEmbeddings with per-request options: SkipLookup
// sends every input upstream and stores the answers, NoStore stores
// nothing, TTL sets the stored embeddings' lifetime. MaxAge has no effect
// (an embedding of a text by a fixed model does not go stale; max-age=0
// arrives as SkipLookup), nor have Mode, Threshold and MaxErrorRate (the
// embeddings cache is exact only; ModeOff is the caller's bypass).
func (c *Cache) DoEmbeddingsWith(ctx context.Context, req EmbeddingsRequest, o Options, fetch EmbeddingsFetchFunc) (EmbeddingsResult, error) {
	c.stats.Requests.Add(1)
	// The distinct texts in order of first appearance; slot[i] is the
	// distinct text of input i.
	var texts, keys []string
	first := make(map[string]int, len(req.Inputs))
	slot := make([]int, len(req.Inputs))
	for i, in := range req.Inputs {
		j, ok := first[in]
		if !ok {
			j = len(texts)
			first[in] = j
			texts = append(texts, in)
			keys = append(keys, req.Keys[i])
		}
		slot[i] = j
	}
	vals := make([]json.RawMessage, len(keys))
	if !o.SkipLookup {
		vals = c.getEmbeddings(ctx, keys)
	}

	res := EmbeddingsResult{Total: len(req.Inputs)}
	for _, j := range slot {
		if vals[j] != nil {
			res.Cached++
		}
	}
	switch res.Cached {
	case res.Total:
		res.Outcome = Hit
		c.stats.ExactHits.Add(1)
	case 0:
		res.Outcome = Miss
		c.stats.Misses.Add(1)
	default:
		res.Outcome = Partial
		c.stats.Misses.Add(1)
	}

	model := req.Model
	var promptTokens, totalTokens int
	var missing []int // indices into texts, in order
	for j, v := range vals {
		if v == nil {
			missing = append(missing, j)
		}
	}
	if len(missing) > 0 {
		embs, f, err := c.fetchEmbeddings(ctx, req, o, texts, keys, missing, fetch)
		if err != nil {
			return res, err
		}
		if f.Status != 200 {
			res.Upstream = f.Upstream
			return res, nil
		}
		for m, j := range missing {
			vals[j] = embs[m]
		}
		res.Header = f.Header
		res.Stored = f.stored
		model, promptTokens, totalTokens = f.model, f.promptTokens, f.totalTokens
	}

	var b bytes.Buffer
	b.WriteString(`{"object":"list","data":[`)
	for i, j := range slot {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"object":"embedding","index":`)
		b.WriteString(strconv.Itoa(i))
		b.WriteString(`,"embedding":`)
		b.Write(vals[j])
		b.WriteByte('}')
	}
	b.WriteString(`],"model":`)
	m, _ := json.Marshal(model) // a string always marshals
	b.Write(m)
	fmt.Fprintf(&b, `,"usage":{"prompt_tokens":%d,"total_tokens":%d}}`, promptTokens, totalTokens)
	res.Status = 200
	res.ContentType = "application/json"
	res.Body = b.Bytes()
	return res, nil
}

// fetchedEmbeddings is an upstream embeddings answer: the Upstream as
// received, and what DoEmbeddings takes from a 200 answer.
type fetchedEmbeddings struct {
	Upstream
	model                     string
	promptTokens, totalTokens int
	// stored are the keys stored, in the order of missing.
	stored []string
}

// embeddingsAnswer is the part of an upstream embeddings response the cache
// reads.
type embeddingsAnswer struct {
	Data []struct {
		Index     *int            `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Model string `json:"model"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// fetchEmbeddings calls fetch for texts[missing] and, on a valid 200
// answer, stores each embedding under its key. It returns the embeddings in
// the order of missing; on an answer with a status other than 200 it
// returns that answer alone, and nothing is stored.
func (c *Cache) fetchEmbeddings(ctx context.Context, req EmbeddingsRequest, o Options, texts, keys []string, missing []int, fetch EmbeddingsFetchFunc) ([]json.RawMessage, fetchedEmbeddings, error) {
	send := make([]string, len(missing))
	for m, j := range missing {
		send[m] = texts[j]
	}
	body, err := req.upstreamBody(send)
	if err != nil {
		return nil, fetchedEmbeddings{}, fmt.Errorf("encode upstream request: %w", err)
	}
	fctx, cancel := context.WithTimeout(ctx, c.cfg.UpstreamTimeout)
	defer cancel()
	c.stats.UpstreamCalls.Add(1)
	up, err := fetch(fctx, body)
	if err != nil {
		c.stats.UpstreamErrors.Add(1)
		return nil, fetchedEmbeddings{}, err
	}
	f := fetchedEmbeddings{Upstream: up, model: req.Model}
	if up.Status != 200 {
		c.stats.UpstreamErrors.Add(1)
		return nil, f, nil
	}
	embs, ans, err := parseEmbeddingsAnswer(up.Body, len(missing))
	if err != nil {
		c.stats.UpstreamErrors.Add(1)
		return nil, fetchedEmbeddings{}, err
	}
	if ans.Model != "" {
		f.model = ans.Model
	}
	f.promptTokens, f.totalTokens = ans.Usage.PromptTokens, ans.Usage.TotalTokens

	if o.NoStore {
		return embs, f, nil
	}
	ttl := c.cfg.TTL
	if o.TTL > 0 {
		ttl = o.TTL
	}
	// The answer is paid for: store it even when the client has gone away
	// meanwhile, within a bound of its own.
	sctx, cancelStore := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.UpstreamTimeout)
	defer cancelStore()
	var g errgroup.Group
	g.SetLimit(embeddingsParallelism)
	ok := make([]bool, len(missing))
	for m, j := range missing {
		g.Go(func() error {
			if err := c.store.Set(sctx, keys[j], req.Scope, embs[m], nil, ttl); err != nil {
				c.stats.StoreErrors.Add(1)
				c.faults.warn("cache store failed", "key", keys[j], "err", err)
				return nil // the answer is served even when it could not be stored
			}
			ok[m] = true
			return nil
		})
	}
	_ = g.Wait()
	for m, j := range missing {
		if ok[m] {
			f.stored = append(f.stored, keys[j])
		}
	}
	return embs, f, nil
}

// parseEmbeddingsAnswer checks a 200 upstream body against the n texts it
// was sent and returns their embeddings in the order they were sent (by
// each item's index, not its position in data).
func parseEmbeddingsAnswer(body []byte, n int) ([]json.RawMessage, embeddingsAnswer, error) {
	var ans embeddingsAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, ans, fmt.Errorf("%w: %v", ErrUpstreamEmbeddings, err)
	}
	if len(ans.Data) != n {
		return nil, ans, fmt.Errorf("%w: %d data items for %d inputs", ErrUpstreamEmbeddings, len(ans.Data), n)
	}
	embs := make([]json.RawMessage, n)
	for p, d := range ans.Data {
		if d.Index == nil || *d.Index < 0 || *d.Index >= n {
			return nil, ans, fmt.Errorf("%w: data[%d]: index missing or not in [0, %d)", ErrUpstreamEmbeddings, p, n)
		}
		if embs[*d.Index] != nil {
			return nil, ans, fmt.Errorf("%w: data[%d]: index %d repeated", ErrUpstreamEmbeddings, p, *d.Index)
		}
		if !isEmbeddingValue(d.Embedding) {
			return nil, ans, fmt.Errorf("%w: data[%d]: embedding is neither an array nor a string", ErrUpstreamEmbeddings, p)
		}
		embs[*d.Index] = d.Embedding
	}
	return embs, ans, nil
}

// isEmbeddingValue reports whether raw is a JSON array or string, the two
// forms of an embedding (float, base64).
func isEmbeddingValue(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == '[' || raw[0] == '"') && json.Valid(raw)
}

// getEmbeddings looks keys up in the store; vals[i] is nil on a miss. A
// store failure or a value that is not an embedding is logged, counted and
// reported as a miss.
func (c *Cache) getEmbeddings(ctx context.Context, keys []string) []json.RawMessage {
	vals := make([]json.RawMessage, len(keys))
	var g errgroup.Group
	g.SetLimit(embeddingsParallelism)
	for i, key := range keys {
		g.Go(func() error {
			raw, ok, err := c.store.Get(ctx, key)
			switch {
			case err != nil:
				c.stats.LookupErrors.Add(1)
				c.faults.warn("cache lookup failed", "key", key, "err", err)
			case ok && !isEmbeddingValue(raw):
				c.stats.LookupErrors.Add(1)
				c.faults.warn("cache entry undecodable", "key", key, "err", "not an embedding")
			case ok:
				vals[i] = raw
			}
			return nil // a failed lookup is a miss
		})
	}
	_ = g.Wait()
	return vals
}
