package embedding

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// Defaults for [OpenAIConfig]; a zero field means the default.
const (
	// DefaultOpenAITimeout bounds each upstream call (one batch). Embedding
	// a batch normally takes well under a second; 30s leaves room for a
	// slow local server without letting a hung connection stall a request
	// forever.
	DefaultOpenAITimeout = 30 * time.Second
	// DefaultBatchSize is the number of texts per upstream call. OpenAI
	// accepts up to 2048 inputs per request; 256 keeps each request well
	// under its token and body-size limits for typical prompts.
	DefaultBatchSize = 256
)

// OpenAIConfig configures [NewOpenAI]. NewOpenAI copies the config; later
// changes have no effect.
type OpenAIConfig struct {
	// BaseURL is the API root, required, e.g. "https://api.openai.com/v1"
	// or "http://localhost:11434/v1" for an OpenAI-compatible local
	// server. Requests go to BaseURL + "/embeddings".
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <APIKey>". Empty sends no
	// Authorization header, for local servers that need none. The key is
	// never logged and never appears in errors or the fingerprint.
	APIKey string
	// Model is the embedding model name, required, e.g.
	// "text-embedding-3-small".
	Model string
	// Dim is the length of the vectors the model returns, required (> 0),
	// e.g. 1536 for text-embedding-3-small. NewOpenAI does not discover it,
	// so that construction needs no network; [ProbeOpenAIDim] asks the
	// server once when the caller does not know it. Every returned vector
	// is checked against it.
	Dim int
	// SendDimensions, when true, sends Dim as the "dimensions" request
	// parameter so the model shortens its output to Dim (supported by
	// text-embedding-3 and later; text-embedding-ada-002 and many local
	// servers reject it). When false the field is left out of the request
	// and the model's native size must equal Dim.
	SendDimensions bool
	// Timeout bounds each upstream call, i.e. each batch, on top of the
	// caller's context. Zero means DefaultOpenAITimeout (30s); negative is
	// an error.
	Timeout time.Duration
	// BatchSize is the maximum number of texts per upstream call. Zero
	// means DefaultBatchSize (256); negative is an error.
	BatchSize int
	// HTTPClient sends the requests. Nil means a new http.Client with no
	// client-level timeout (Timeout above applies per call instead).
	HTTPClient *http.Client
}

// OpenAI embeds texts by calling an OpenAI-compatible /embeddings endpoint.
// Batches are sent one after another, so a call to Embed makes
// ceil(len(texts)/BatchSize) upstream requests. It is safe for concurrent
// use.
type OpenAI struct {
	client      *openai.Client
	model       string
	dim         int
	sendDim     bool
	timeout     time.Duration
	batchSize   int
	fingerprint string
}

// NewOpenAI validates cfg, applies defaults and returns an OpenAI embedder.
// It makes no network call.
func NewOpenAI(cfg OpenAIConfig) (*OpenAI, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("openai embedder: BaseURL is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("openai embedder: BaseURL %q must be an absolute http(s) URL", cfg.BaseURL)
	}
	if cfg.Model == "" {
		return nil, errors.New("openai embedder: Model is required")
	}
	if cfg.Dim <= 0 {
		return nil, fmt.Errorf("openai embedder: Dim must be > 0, got %d", cfg.Dim)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("openai embedder: negative Timeout %v", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultOpenAITimeout
	}
	if cfg.BatchSize < 0 {
		return nil, fmt.Errorf("openai embedder: negative BatchSize %d", cfg.BatchSize)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	cc := openai.DefaultConfig(cfg.APIKey)
	cc.BaseURL = cfg.BaseURL
	if cfg.HTTPClient != nil {
		cc.HTTPClient = cfg.HTTPClient
	}
	return &OpenAI{
		client:      openai.NewClientWithConfig(cc),
		model:       cfg.Model,
		dim:         cfg.Dim,
		sendDim:     cfg.SendDimensions,
		timeout:     cfg.Timeout,
		batchSize:   cfg.BatchSize,
		fingerprint: "openai:" + cfg.Model + ":" + strconv.Itoa(cfg.Dim),
	}, nil
}

// Dim returns the configured vector length.
func (o *OpenAI) Dim() int { return o.dim }

// Fingerprint returns "openai:<model>:<dim>", e.g.
// "openai:text-embedding-3-small:1536".
func (o *OpenAI) Fingerprint() string { return o.fingerprint }

// Embed returns one unit vector of length Dim() per text, in input order;
// the caller owns them. Results are placed by the response's index field,
// not by response order. An upstream failure is returned as
// "embed batch <n>: <err>" wrapping the go-openai error, so callers can use
// errors.As with *openai.APIError (which carries HTTPStatusCode) or
// *openai.RequestError. A vector of the wrong length wraps ErrDimension; a
// response with missing, duplicate or out-of-range indices or an
// unnormalisable vector wraps ErrBadResponse. No partial result is
// returned on error. Note that OpenAI rejects empty input strings.
func (o *OpenAI) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for b, start := 0, 0; start < len(texts); b, start = b+1, start+o.batchSize {
		end := min(start+o.batchSize, len(texts))
		if err := o.embedBatch(ctx, texts[start:end], out[start:end]); err != nil {
			return nil, fmt.Errorf("embed batch %d: %w", b, err)
		}
	}
	return out, nil
}

// ProbeOpenAIDim embeds one short text with cfg and returns the length of
// the vector the server returned, to learn or check the dimension before an
// index is created with it (semcache serve does so at start-up). The
// request is the one [OpenAI.Embed] would send: "dimensions" is cfg.Dim
// when cfg.SendDimensions is set, and left out otherwise, when cfg.Dim is
// not used and may be 0. The length is not checked against cfg.Dim; the
// caller compares. Errors are those of Embed for one batch (use
// [HTTPStatus] to tell a refused request from an unreachable server), and
// ErrBadResponse when the answer does not hold exactly one non-empty
// vector. It makes one request, bounded by ctx and cfg.Timeout.
func ProbeOpenAIDim(ctx context.Context, cfg OpenAIConfig) (int, error) {
	if !cfg.SendDimensions && cfg.Dim == 0 {
		cfg.Dim = 1 // any valid length: the probe reports the length, it does not check it
	}
	o, err := NewOpenAI(cfg)
	if err != nil {
		return 0, err
	}
	resp, err := o.create(ctx, []string{"semcache start-up probe"})
	if err != nil {
		return 0, fmt.Errorf("probe: %w", err)
	}
	if len(resp.Data) != 1 || len(resp.Data[0].Embedding) == 0 {
		return 0, fmt.Errorf("probe: %w: want one non-empty vector, got %d vectors", ErrBadResponse, len(resp.Data))
	}
	return len(resp.Data[0].Embedding), nil
}

// HTTPStatus returns the HTTP status code of the error response an
// upstream embeddings server sent, when err wraps one (an Embed or
// ProbeOpenAIDim error), and 0 otherwise: the server could not be reached,
// timed out, or answered 2xx with a malformed body.
func HTTPStatus(err error) int {
	var apiErr *openai.APIError
	if errors.As(err, &apiErr) {
		return apiErr.HTTPStatusCode
	}
	var reqErr *openai.RequestError
	if errors.As(err, &reqErr) {
		return reqErr.HTTPStatusCode
	}
	return 0
}

// create makes one upstream call for texts, bounded by o.timeout.
func (o *OpenAI) create(ctx context.Context, texts []string) (openai.EmbeddingResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req := openai.EmbeddingRequestStrings{
		Input:          texts,
		Model:          openai.EmbeddingModel(o.model),
		EncodingFormat: openai.EmbeddingEncodingFormatFloat,
	}
	if o.sendDim {
		req.Dimensions = o.dim // else 0, which go-openai leaves out (omitempty)
	}
	return o.client.CreateEmbeddings(ctx, req)
}

// embedBatch makes one upstream call for texts and fills out, which has the
// same length, with normalised vectors.
func (o *OpenAI) embedBatch(ctx context.Context, texts []string, out [][]float32) error {
	resp, err := o.create(ctx, texts)
	if err != nil {
		return err
	}
	if len(resp.Data) != len(texts) {
		return fmt.Errorf("%w: got %d vectors for %d inputs", ErrBadResponse, len(resp.Data), len(texts))
	}
	for _, d := range resp.Data {
		if d.Index < 0 || d.Index >= len(texts) {
			return fmt.Errorf("%w: index %d out of range [0, %d)", ErrBadResponse, d.Index, len(texts))
		}
		if out[d.Index] != nil {
			return fmt.Errorf("%w: duplicate index %d", ErrBadResponse, d.Index)
		}
		if len(d.Embedding) != o.dim {
			return fmt.Errorf("input %d: %w: got %d, want %d", d.Index, ErrDimension, len(d.Embedding), o.dim)
		}
		if !l2normalise(d.Embedding) {
			return fmt.Errorf("%w: input %d: zero or non-finite vector", ErrBadResponse, d.Index)
		}
		out[d.Index] = d.Embedding
	}
	return nil
}
