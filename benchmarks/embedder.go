package benchmarks

import "github.com/semcache/semcache/embedding"

// Compile-time guard: the local embedder satisfies what tune needs.
var _ embedder = (*embedding.Local)(nil)

// newEmbedder builds the embedder named by --embedder with vectors of
// length dim (> 0). Only "local" exists for now; "openai" will follow.
func newEmbedder(name string, dim int) (embedder, error) {
	switch name {
	case "local":
		l, err := embedding.NewLocal(embedding.LocalConfig{Dim: dim})
		if err != nil {
			return nil, err
		}
		return l, nil
	default:
		return nil, usageErrorf("--embedder %q is not yet supported (only \"local\")", name)
	}
}
