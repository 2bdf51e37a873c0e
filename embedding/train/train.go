// Package train fits the rows of a trained embedding bag (embedding.Model) to labelled texts with a contrastive loss.
package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/semcache/semcache/embedding"
)

// Example is one training text and its label. Texts with the same label
// are positives for each other (same intent, or the two sides of a
// duplicate pair); all others are negatives.
type Example struct {
	Text, Label string
}

// Defaults for [Config]; a zero field means the default.
const (
	DefaultEpochs       = 5
	DefaultBatchSize    = 256
	DefaultTemperature  = 0.05
	DefaultLearningRate = 0.01
	DefaultDevFraction  = 0.1
)

// Config configures [Train]. The zero value is valid and gives the
// defaults; Train copies it.
type Config struct {
	// Params are the model's feature and hashing parameters; zero fields
	// take the embedding package's defaults (2^17 buckets, 128 dims,
	// n-grams 3–5). Params.Seed seeds the initial rows, Alpha is stored
	// for serving and does not affect training.
	Params embedding.ModelParams
	// Epochs is the number of passes; each pairs every training text with
	// one random other text of its label. Zero means DefaultEpochs (5).
	Epochs int
	// BatchSize is the number of positive pairs per step. Zero means
	// DefaultBatchSize (256); it must be >= 2.
	BatchSize int
	// Temperature divides the cosine similarities in the loss. Zero means
	// DefaultTemperature (0.05).
	Temperature float64
	// LearningRate is Adam's step size. Zero means DefaultLearningRate.
	LearningRate float64
	// DevFraction in [0, 1) is the share of examples held out for the dev
	// score. Zero means DefaultDevFraction (0.1); negative means no dev
	// split (the last epoch's model is returned).
	DevFraction float64
	// HardNegatives builds each batch from a window of labels whose
	// centroids are close under the current model (re-mined every epoch),
	// so in-batch negatives are similar intents of the same domain, instead
	// of from a random shuffle.
	HardNegatives bool
	// Seed drives the dev split, pairing and batch order; the same data,
	// config and seed give the same model.
	Seed uint64
	// Progress, if not nil, receives one line per epoch.
	Progress io.Writer
}

// EpochReport summarises one epoch.
type EpochReport struct {
	Epoch int
	// Loss is the mean symmetric InfoNCE loss over the epoch's batches.
	Loss float64
	// DevAccuracy is the share of dev texts whose nearest neighbour among
	// all other texts has the same label; NaN without a dev split.
	DevAccuracy float64
	Duration    time.Duration
}

// Result is a trained model and how it got there.
type Result struct {
	// Model holds the rows of the best epoch (by dev accuracy, or the last
	// without a dev split).
	Model     *embedding.Model
	Epochs    []EpochReport
	BestEpoch int
	// UntrainedDevAccuracy is the dev accuracy of the initial model.
	UntrainedDevAccuracy float64
	// Train and Dev are the indices of the examples trained on and held
	// out (the dev split), in increasing order.
	Train, Dev []int
}

// ErrNoPairs is returned when the examples contain no two training texts
// with the same label, so there is nothing to learn from.
var ErrNoPairs = errors.New("no positive pairs: every label has a single training text")

// Train fits a model to examples. It checks ctx between batches.
func Train(ctx context.Context, examples []Example, cfg Config) (*Result, error) {
	if cfg.Epochs == 0 {
		cfg.Epochs = DefaultEpochs
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Temperature == 0 {
		cfg.Temperature = DefaultTemperature
	}
	if cfg.LearningRate == 0 {
		cfg.LearningRate = DefaultLearningRate
	}
	if cfg.DevFraction == 0 {
		cfg.DevFraction = DefaultDevFraction
	}
	switch {
	case cfg.Epochs < 0 || cfg.BatchSize < 2 || !(cfg.Temperature > 0) || !(cfg.LearningRate > 0) || cfg.DevFraction >= 1:
		return nil, fmt.Errorf("train: invalid config (epochs %d, batch %d, temperature %v, learning rate %v, dev fraction %v)",
			cfg.Epochs, cfg.BatchSize, cfg.Temperature, cfg.LearningRate, cfg.DevFraction)
	}
	cfg.Params = cfg.Params.WithDefaults()
	if err := cfg.Params.Validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	t := newTrainer(examples, cfg)
	if len(t.pairsOf) == 0 {
		return nil, ErrNoPairs
	}
	res := &Result{UntrainedDevAccuracy: t.devAccuracy(), BestEpoch: 0, Train: slices.Clone(t.train), Dev: slices.Clone(t.dev)}
	best := res.UntrainedDevAccuracy
	if t.progress != nil && len(t.dev) > 0 {
		fmt.Fprintf(t.progress, "train %d texts, dev %d texts, %d labels; untrained dev nn-accuracy %.4f\n",
			len(t.train), len(t.dev), t.numLabels, best)
	}
	var snapshot map[uint32][]float32
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		start := time.Now()
		loss, err := t.epoch(ctx)
		if err != nil {
			return nil, err
		}
		rep := EpochReport{Epoch: epoch, Loss: loss, DevAccuracy: t.devAccuracy(), Duration: time.Since(start)}
		res.Epochs = append(res.Epochs, rep)
		mark := ""
		if len(t.dev) == 0 || rep.DevAccuracy > best || snapshot == nil {
			best, res.BestEpoch, snapshot = rep.DevAccuracy, epoch, t.trainedRows()
			mark = " (best)"
		}
		if t.progress != nil {
			fmt.Fprintf(t.progress, "epoch %d/%d loss %.4f dev nn-accuracy %.4f%s %.1fs\n",
				epoch, cfg.Epochs, loss, rep.DevAccuracy, mark, rep.Duration.Seconds())
		}
	}
	if snapshot == nil {
		snapshot = t.trainedRows()
	}
	res.Model = &embedding.Model{Params: cfg.Params, Rows: snapshot}
	return res, nil
}

// trainer holds the dense parameters and Adam state. It is not safe for
// concurrent use.
type trainer struct {
	cfg      Config
	p        embedding.ModelParams
	rng      *rand.Rand
	progress io.Writer

	table   []float32 // Buckets×Dim rows
	m, v    []float32 // Adam moments, same layout
	touched []bool    // rows ever updated
	step    int       // Adam step, for bias correction

	feats     [][]embedding.Feature // per example
	labels    []int                 // per example, dense label ids
	numLabels int
	train     []int         // example indices used for training pairs
	dev       []int         // held-out example indices
	pairsOf   map[int][]int // label → training examples, labels with >= 2 only

	// Per-batch sparse gradient: slot[b] is the index of bucket b's
	// gradient row in grad, or -1.
	slot  []int32
	grads []float64
	rows  []uint32
}

func newTrainer(examples []Example, cfg Config) *trainer {
	p := cfg.Params
	t := &trainer{
		cfg: cfg, p: p, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), progress: cfg.Progress,
		table: embedding.DenseTable(&embedding.Model{Params: p}),
		m:     make([]float32, p.Buckets*p.Dim), v: make([]float32, p.Buckets*p.Dim),
		touched: make([]bool, p.Buckets), slot: make([]int32, p.Buckets),
		feats: make([][]embedding.Feature, len(examples)), labels: make([]int, len(examples)),
	}
	for i := range t.slot {
		t.slot[i] = -1
	}
	ids := map[string]int{}
	byLabel := map[int][]int{}
	for i, ex := range examples {
		t.feats[i] = p.Features(ex.Text, nil)
		id, ok := ids[ex.Label]
		if !ok {
			id = len(ids)
			ids[ex.Label] = id
		}
		t.labels[i] = id
		byLabel[id] = append(byLabel[id], i)
	}
	t.numLabels = len(ids)
	// Dev split: labels with >= 3 texts give up single texts but keep >= 2
	// for training; smaller groups (duplicate pairs) go to dev whole.
	for id := range t.numLabels {
		group := byLabel[id]
		t.rng.Shuffle(len(group), func(i, j int) { group[i], group[j] = group[j], group[i] })
		if cfg.DevFraction <= 0 {
			t.train = append(t.train, group...)
			continue
		}
		if len(group) < 3 {
			if t.rng.Float64() < cfg.DevFraction {
				t.dev = append(t.dev, group...)
			} else {
				t.train = append(t.train, group...)
			}
			continue
		}
		nDev := min(int(math.Round(cfg.DevFraction*float64(len(group)))), len(group)-2)
		t.dev = append(t.dev, group[:nDev]...)
		t.train = append(t.train, group[nDev:]...)
	}
	slices.Sort(t.train)
	slices.Sort(t.dev)
	t.pairsOf = map[int][]int{}
	for _, i := range t.train {
		t.pairsOf[t.labels[i]] = append(t.pairsOf[t.labels[i]], i)
	}
	for id, g := range t.pairsOf {
		if len(g) < 2 {
			delete(t.pairsOf, id)
		}
	}
	return t
}

// epoch runs one pass and returns the mean batch loss.
func (t *trainer) epoch(ctx context.Context) (float64, error) {
	var pairs [][2]int
	for _, i := range t.train {
		g := t.pairsOf[t.labels[i]]
		if g == nil {
			continue
		}
		j := i
		for j == i {
			j = g[t.rng.IntN(len(g))]
		}
		pairs = append(pairs, [2]int{i, j})
	}
	t.rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
	var batches [][][2]int
	if t.cfg.HardNegatives {
		batches = t.hardBatches(pairs)
	} else {
		for start := 0; start < len(pairs); start += t.cfg.BatchSize {
			batches = append(batches, pairs[start:min(start+t.cfg.BatchSize, len(pairs))])
		}
	}
	var sum float64
	var n int
	for _, batch := range batches {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("train: %w", err)
		}
		if len(batch) < 2 {
			continue
		}
		sum += t.lossAndGrad(batch, true)
		t.adam()
		n++
	}
	if n == 0 {
		return math.NaN(), nil
	}
	return sum / float64(n), nil
}

// lossAndGrad returns the symmetric in-batch InfoNCE loss of batch and, if
// grad, accumulates its gradient with respect to the rows into the sparse
// gradient buffers.
//
// With e the unit vectors, S[i][j] = e(a_i)·e(p_j)/τ; entries whose
// anchor and positive share a label (other than the diagonal) are masked
// out. The loss is the mean of the row-wise and column-wise cross-entropies
// with the diagonal as the target.
func (t *trainer) lossAndGrad(batch [][2]int, grad bool) float64 {
	B, d := len(batch), t.p.Dim
	ea, ua := make([]float64, B*d), make([]float64, B) // unit vectors, norms
	ep, up := make([]float64, B*d), make([]float64, B)
	for i, pr := range batch {
		ua[i] = t.unit(t.feats[pr[0]], ea[i*d:(i+1)*d])
		up[i] = t.unit(t.feats[pr[1]], ep[i*d:(i+1)*d])
	}
	tau := t.cfg.Temperature
	S := make([]float64, B*B)
	mask := make([]bool, B*B) // true: excluded
	for i := range B {
		for j := range B {
			if i != j && t.labels[batch[i][0]] == t.labels[batch[j][1]] {
				mask[i*B+j] = true
				continue
			}
			S[i*B+j] = dot(ea[i*d:(i+1)*d], ep[j*d:(j+1)*d]) / tau
		}
	}
	G := make([]float64, B*B) // dLoss/dS
	var loss float64
	scale := 1 / (2 * float64(B))
	softmax := func(idx func(k int) int) {
		mx := math.Inf(-1)
		for k := range B {
			if !mask[idx(k)] {
				mx = max(mx, S[idx(k)])
			}
		}
		var z float64
		for k := range B {
			if !mask[idx(k)] {
				z += math.Exp(S[idx(k)] - mx)
			}
		}
		for k := range B {
			if !mask[idx(k)] {
				G[idx(k)] += scale * math.Exp(S[idx(k)]-mx) / z
			}
		}
		loss += scale * (math.Log(z) + mx)
	}
	for i := range B {
		softmax(func(k int) int { return i*B + k })
		softmax(func(k int) int { return k*B + i })
		loss -= 2 * scale * S[i*B+i]
		G[i*B+i] -= 2 * scale
	}
	if !grad {
		return loss
	}
	ga, gp := make([]float64, d), make([]float64, d)
	for i := range B {
		clear(ga)
		for j := range B {
			if g := G[i*B+j]; g != 0 {
				axpy(g/tau, ep[j*d:(j+1)*d], ga)
			}
		}
		t.backward(batch[i][0], ea[i*d:(i+1)*d], ua[i], ga)
	}
	for j := range B {
		clear(gp)
		for i := range B {
			if g := G[i*B+j]; g != 0 {
				axpy(g/tau, ea[i*d:(i+1)*d], gp)
			}
		}
		t.backward(batch[j][1], ep[j*d:(j+1)*d], up[j], gp)
	}
	return loss
}

// unit sets e to the normalised bag vector of feats and returns its norm
// before normalisation (0 for an empty bag, leaving e zero).
func (t *trainer) unit(feats []embedding.Feature, e []float64) float64 {
	d := t.p.Dim
	clear(e)
	for _, f := range feats {
		row := t.table[int(f.Bucket)*d : int(f.Bucket+1)*d]
		for k, x := range row {
			e[k] += float64(f.Weight) * float64(x)
		}
	}
	n := math.Sqrt(dot(e, e))
	if n == 0 {
		return 0
	}
	for k := range e {
		e[k] /= n
	}
	return n
}

// backward adds to the sparse gradient the contribution of g = dLoss/de for
// example ex with unit vector e and norm n: dLoss/du = (g − e(e·g))/n, and
// each feature row gets weight·dLoss/du.
func (t *trainer) backward(ex int, e []float64, n float64, g []float64) {
	if n == 0 {
		return
	}
	d := t.p.Dim
	eg := dot(e, g)
	du := make([]float64, d)
	for k := range du {
		du[k] = (g[k] - e[k]*eg) / n
	}
	for _, f := range t.feats[ex] {
		s := t.slot[f.Bucket]
		if s < 0 {
			s = int32(len(t.rows))
			t.slot[f.Bucket] = s
			t.rows = append(t.rows, f.Bucket)
			t.grads = append(t.grads, make([]float64, d)...)
		}
		axpy(float64(f.Weight), du, t.grads[int(s)*d:int(s+1)*d])
	}
}

// Adam hyperparameters (Kingma and Ba's defaults).
const (
	beta1, beta2, adamEps = 0.9, 0.999, 1e-8
)

// adam applies one lazy Adam step to the rows with a gradient and resets
// the sparse gradient. Rows without a gradient keep their moments as they
// are ("lazy"), so a step costs O(touched rows), not O(table).
func (t *trainer) adam() {
	t.step++
	d := t.p.Dim
	c1 := 1 - math.Pow(beta1, float64(t.step))
	c2 := 1 - math.Pow(beta2, float64(t.step))
	lr := t.cfg.LearningRate * math.Sqrt(c2) / c1
	for s, b := range t.rows {
		g := t.grads[s*d : (s+1)*d]
		off := int(b) * d
		for k, gk := range g {
			m := beta1*float64(t.m[off+k]) + (1-beta1)*gk
			v := beta2*float64(t.v[off+k]) + (1-beta2)*gk*gk
			t.m[off+k], t.v[off+k] = float32(m), float32(v)
			t.table[off+k] -= float32(lr * m / (math.Sqrt(v) + adamEps))
		}
		t.touched[b] = true
		t.slot[b] = -1
	}
	t.rows, t.grads = t.rows[:0], t.grads[:0]
}

// trainedRows copies the rows updated so far.
func (t *trainer) trainedRows() map[uint32][]float32 {
	d := t.p.Dim
	rows := map[uint32][]float32{}
	for b, ok := range t.touched {
		if ok {
			rows[uint32(b)] = slices.Clone(t.table[b*d : (b+1)*d])
		}
	}
	return rows
}

// maxDevRefs bounds the reference set of the dev score so it stays cheap
// on large data.
const maxDevRefs = 20000

// devAccuracy returns the share of dev texts whose nearest neighbour
// (cosine) among the other texts — training texts and dev texts — has the
// same label, counting only dev texts whose label occurs elsewhere. It is
// NaN without a dev split.
func (t *trainer) devAccuracy() float64 {
	if len(t.dev) == 0 {
		return math.NaN()
	}
	refs := append(slices.Clone(t.dev), t.train...)
	if len(refs) > maxDevRefs {
		refs = refs[:maxDevRefs]
	}
	return t.nnAccuracy(t.dev, refs)
}

// nnAccuracy returns the share of queries whose nearest neighbour in refs
// (excluding themselves) has their label, over queries whose label occurs
// in refs other than themselves.
func (t *trainer) nnAccuracy(queries, refs []int) float64 {
	d := t.p.Dim
	vecs := make(map[int][]float64, len(refs))
	vec := func(i int) []float64 {
		if v, ok := vecs[i]; ok {
			return v
		}
		v := make([]float64, d)
		t.unit(t.feats[i], v)
		vecs[i] = v
		return v
	}
	count := map[int]int{}
	for _, r := range refs {
		count[t.labels[r]]++
	}
	var hits, total int
	for _, q := range queries {
		c := count[t.labels[q]]
		if slices.Contains(refs, q) {
			c--
		}
		if c == 0 {
			continue
		}
		total++
		qv := vec(q)
		best, bestSim := -1, math.Inf(-1)
		for _, r := range refs {
			if r == q {
				continue
			}
			if s := dot(qv, vec(r)); s > bestSim {
				best, bestSim = r, s
			}
		}
		if best >= 0 && t.labels[best] == t.labels[q] {
			hits++
		}
	}
	if total == 0 {
		return math.NaN()
	}
	return float64(hits) / float64(total)
}

func dot(a, b []float64) float64 {
	var s float64
	for i, x := range a {
		s += x * b[i]
	}
	return s
}

func axpy(alpha float64, x, y []float64) {
	for i, v := range x {
		y[i] += alpha * v
	}
}

// hardWindow is the number of neighbouring labels whose pairs are
// interleaved into the same batches by hardOrder.
const hardWindow = 32

// hardBatches cuts the (shuffled) pairs into batches that each hold pairs of
// about hardWindow labels that are close to each other: labels are chained
// greedily by nearest centroid under the current rows, the chain is cut
// into windows, the pairs of a window are interleaved label by label and
// cut into batches, and the batches are shuffled.
func (t *trainer) hardBatches(pairs [][2]int) [][][2]int {
	d := t.p.Dim
	byLabel := map[int][][2]int{}
	var labels []int
	for _, pr := range pairs {
		l := t.labels[pr[0]]
		if _, ok := byLabel[l]; !ok {
			labels = append(labels, l)
		}
		byLabel[l] = append(byLabel[l], pr)
	}
	slices.Sort(labels)
	cent := make(map[int][]float64, len(labels))
	e := make([]float64, d)
	for _, l := range labels {
		c := make([]float64, d)
		for _, i := range t.pairsOf[l] {
			t.unit(t.feats[i], e)
			axpy(1, e, c)
		}
		if n := math.Sqrt(dot(c, c)); n > 0 {
			for k := range c {
				c[k] /= n
			}
		}
		cent[l] = c
	}
	// Greedy nearest-neighbour chain from a random label.
	chain := make([]int, 0, len(labels))
	used := map[int]bool{}
	cur := labels[t.rng.IntN(len(labels))]
	for {
		chain = append(chain, cur)
		used[cur] = true
		next, best := -1, math.Inf(-1)
		for _, l := range labels {
			if !used[l] {
				if s := dot(cent[cur], cent[l]); s > best {
					next, best = l, s
				}
			}
		}
		if next < 0 {
			break
		}
		cur = next
	}
	var batches [][][2]int
	for w := 0; w < len(chain); w += hardWindow {
		window := chain[w:min(w+hardWindow, len(chain))]
		var inter [][2]int
		for k := 0; ; k++ {
			added := false
			for _, l := range window {
				if k < len(byLabel[l]) {
					inter = append(inter, byLabel[l][k])
					added = true
				}
			}
			if !added {
				break
			}
		}
		for s := 0; s < len(inter); s += t.cfg.BatchSize {
			batches = append(batches, inter[s:min(s+t.cfg.BatchSize, len(inter))])
		}
	}
	t.rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
	return batches
}
