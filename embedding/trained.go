package embedding

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
)

// trainedVersion names the feature extraction and vector construction of
// Trained; change it whenever the vectors for the same model file change.
const trainedVersion = "bag-v1"

// Trained embeds texts with a trained embedding bag (see [Model]): the
// weighted sum of the rows of a text's hashed features ([ModelParams.Features]),
// L2-normalised, optionally concatenated with the lexical vector of [Local]
// as [√α·lexical ; √(1−α)·learned] so one cosine mixes both similarities.
//
// NewTrained expands the model into a dense table of Buckets×Dim float32
// (64 MiB at the defaults). Trained is immutable after construction and is
// safe for concurrent use.
type Trained struct {
	params      ModelParams
	table       []float32 // Buckets×Dim, row b at [b*Dim, (b+1)*Dim)
	lex         *Local    // nil when Alpha == 0
	fingerprint string
}

// NewTrained builds the embedder for m. m is not retained.
func NewTrained(m *Model) (*Trained, error) {
	p := m.Params
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("trained embedder: %w", err)
	}
	sum := m.sum
	if sum == ([sha256.Size]byte{}) {
		// Never written or read: identify it by its float32 encoding.
		mc := *m
		if err := WriteModel(io.Discard, &mc, Float32Rows); err != nil {
			return nil, fmt.Errorf("trained embedder: %w", err)
		}
		sum = mc.sum
	}
	t := &Trained{
		params: p,
		table:  DenseTable(m),
		fingerprint: "trained:" + trainedVersion + "-" + hex.EncodeToString(sum[:8]) + ":" +
			strconv.Itoa(p.Dim+p.LexDim),
	}
	if p.Alpha > 0 {
		lex, err := NewLocal(LocalConfig{Dim: p.LexDim, MinN: p.MinN, MaxN: p.MaxN})
		if err != nil {
			return nil, fmt.Errorf("trained embedder: %w", err)
		}
		t.lex = lex
	}
	return t, nil
}

// LoadTrained reads the model file at path ([LoadModel]) and builds its
// embedder.
func LoadTrained(path string) (*Trained, error) {
	m, err := LoadModel(path)
	if err != nil {
		return nil, err
	}
	return NewTrained(m)
}

// DenseTable returns all Buckets rows of m back to back: the trained rows
// where m has them and the seeded initial rows elsewhere.
func DenseTable(m *Model) []float32 {
	p := m.Params
	table := make([]float32, p.Buckets*p.Dim)
	for b := range p.Buckets {
		row := table[b*p.Dim : (b+1)*p.Dim]
		if r, ok := m.Rows[uint32(b)]; ok {
			copy(row, r)
		} else {
			InitRow(p.Seed, uint32(b), row)
		}
	}
	return table
}

// Dim returns Dim + LexDim of the model: the length of every vector.
func (t *Trained) Dim() int { return t.params.Dim + t.params.LexDim }

// Fingerprint returns "trained:bag-v1-<first 16 hex digits of the model
// file's SHA-256>:<dim>", so a different model file is a different vector
// space.
func (t *Trained) Fingerprint() string { return t.fingerprint }

// Params returns the model's parameters.
func (t *Trained) Params() ModelParams { return t.params }

var featurePool = sync.Pool{New: func() any { s := make([]Feature, 0, 256); return &s }}

// Embed returns one freshly allocated unit vector of length Dim() per text,
// in input order. It fails only when ctx is done, checked every 64 texts.
func (t *Trained) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("trained embed: %w", err)
	}
	var lexVecs [][]float32
	if t.lex != nil {
		var err error
		if lexVecs, err = t.lex.Embed(ctx, texts); err != nil {
			return nil, fmt.Errorf("trained embed: %w", err)
		}
	}
	fp := featurePool.Get().(*[]Feature)
	defer featurePool.Put(fp)
	out := make([][]float32, len(texts))
	d, ld := t.params.Dim, t.params.LexDim
	lexScale := float32(math.Sqrt(float64(t.params.Alpha)))
	learnedScale := float32(math.Sqrt(1 - float64(t.params.Alpha)))
	for i, text := range texts {
		if i%64 == 63 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("trained embed: %w", err)
			}
		}
		v := make([]float32, ld+d)
		*fp = t.params.Features(text, (*fp)[:0])
		learned := v[ld:]
		EmbedBag(t.table, d, *fp, learned)
		if !l2normalise(learned) {
			clear(learned)
			learned[0] = 1
		}
		if t.lex != nil {
			for j, x := range lexVecs[i] {
				v[j] = lexScale * x
			}
			for j := range learned {
				learned[j] *= learnedScale
			}
		}
		out[i] = v
	}
	return out, nil
}

// EmbedBag sets dst (length dim) to the weighted sum of the rows of table
// selected by feats, unnormalised.
func EmbedBag(table []float32, dim int, feats []Feature, dst []float32) {
	clear(dst)
	for _, f := range feats {
		row := table[int(f.Bucket)*dim : int(f.Bucket+1)*dim]
		for j, x := range row {
			dst[j] += f.Weight * x
		}
	}
}
