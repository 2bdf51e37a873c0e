package benchmarks

import (
	"github.com/semcache/semcache/embedding"
)

// Compile-time guards: the embedders newEmbedder returns satisfy what tune
// needs.
var (
	_ embedder = (*embedding.Local)(nil)
	_ embedder = (*embedding.Cached)(nil)
	_ embedder = (*embedding.Trained)(nil)
)

// embedderAPIKeyEnv names the environment variable holding the API key of
// --embedder openai. The key is never taken from a flag (it would show in
// the process list and shell history) and never printed.
const embedderAPIKeyEnv = "SEMCACHE_EMBEDDER_API_KEY"

// embedderOptions are the --embedder* flags of "bench tune".
type embedderOptions struct {
	// Name is "local" (embedding.NewLocal), "openai" (embedding.NewOpenAI
	// behind embedding.NewCached) or "trained" (embedding.LoadTrained).
	Name string
	// Dim is the vector length, > 0. Ignored for trained: the model file
	// sets it.
	Dim int
	// URL is the API root of an OpenAI-compatible server, e.g.
	// "https://api.openai.com/v1"; requests go to URL + "/embeddings".
	// Required for openai, rejected for local.
	URL string
	// Model is the embedding model name for openai, or the model file
	// written by "semcache embedder train" for trained; required for both,
	// rejected for local.
	Model string
	// APIKey is the bearer token for openai, from SEMCACHE_EMBEDDER_API_KEY;
	// empty sends no Authorization header.
	APIKey string
}

// newEmbedder builds the embedder the options name. The openai embedder
// sits behind an embedding.Cached (DefaultCacheSize texts) so that a text
// that occurs more than once in the data is sent upstream once.
func newEmbedder(o embedderOptions) (embedder, error) {
	if o.Dim <= 0 {
		return nil, usageErrorf("--embedder-dim must be > 0, got %d", o.Dim)
	}
	switch o.Name {
	case "local":
		if o.URL != "" || o.Model != "" {
			return nil, usageErrorf("--embedder-url and --embedder-model apply only to --embedder openai or trained")
		}
		l, err := embedding.NewLocal(embedding.LocalConfig{Dim: o.Dim})
		if err != nil {
			return nil, err
		}
		return l, nil
	case "openai":
		switch {
		case o.URL == "":
			return nil, usageErrorf("--embedder openai needs --embedder-url (e.g. https://api.openai.com/v1)")
		case o.Model == "":
			return nil, usageErrorf("--embedder openai needs --embedder-model (e.g. text-embedding-3-small)")
		}
		oa, err := embedding.NewOpenAI(embedding.OpenAIConfig{BaseURL: o.URL, APIKey: o.APIKey, Model: o.Model, Dim: o.Dim})
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		return embedding.NewCached(oa, 0)
	case "trained":
		switch {
		case o.Model == "":
			return nil, usageErrorf("--embedder trained needs --embedder-model, a model file written by `semcache embedder train`")
		case o.URL != "":
			return nil, usageErrorf("--embedder-url applies only to --embedder openai")
		}
		return embedding.LoadTrained(o.Model)
	default:
		return nil, usageErrorf("--embedder %q is not supported (want local, openai or trained)", o.Name)
	}
}
