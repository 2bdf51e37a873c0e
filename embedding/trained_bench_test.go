package embedding

import (
	"context"
	"math/rand/v2"
	"testing"
)

// BenchmarkTrainedEmbed measures one support-style query against a model
// with every row trained (the worst case for memory, not for speed: rows are
// looked up in a dense table either way).
func BenchmarkTrainedEmbed(b *testing.B) {
	ctx := context.Background()
	for _, alpha := range []float32{0, 0.25} {
		p := ModelParams{Alpha: alpha}.WithDefaults()
		m := &Model{Params: p, Rows: map[uint32][]float32{}}
		rng := rand.New(rand.NewPCG(1, 2))
		for range 1000 {
			row := make([]float32, p.Dim)
			for i := range row {
				row[i] = float32(rng.NormFloat64())
			}
			m.Rows[uint32(rng.IntN(p.Buckets))] = row
		}
		tr, err := NewTrained(m)
		if err != nil {
			b.Fatal(err)
		}
		texts := []string{"I am still waiting on my card, it has been two weeks since I ordered it"}
		name := "learned"
		if alpha > 0 {
			name = "mixed"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tr.Embed(ctx, texts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
