package embedding_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/semcache/semcache/embedding"
)

// A model file round trip: train (here: hand-set rows), save, load, embed.
func ExampleLoadTrained() {
	m := &embedding.Model{
		Params: embedding.ModelParams{Buckets: 1 << 10, Dim: 32, Seed: 1}.WithDefaults(),
		Rows:   map[uint32][]float32{7: make([]float32, 32)},
	}
	dir, _ := os.MkdirTemp("", "model")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.sem")
	if err := embedding.SaveModel(path, m, embedding.Int8Rows); err != nil {
		fmt.Println(err)
		return
	}
	emb, err := embedding.LoadTrained(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	vs, _ := emb.Embed(context.Background(), []string{"where is my card?"})
	fmt.Println(emb.Dim(), len(vs[0]), strings.HasPrefix(emb.Fingerprint(), "trained:bag-v1-"))
	// Output: 32 32 true
}
