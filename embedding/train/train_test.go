package train

import (
	"context"
	"math"
	"testing"

	"github.com/semcache/semcache/embedding"
)

// fixture has two intents that share most of their words, so the untrained
// model (a random projection of the lexical bag) confuses them.
var fixture = []Example{
	{"my card has not arrived yet", "arrival"},
	{"when will my new card arrive", "arrival"},
	{"still waiting for the card to be delivered", "arrival"},
	{"the card did not come in the post", "arrival"},
	{"how long does card delivery take", "arrival"},
	{"is my card on its way", "arrival"},
	{"my card was stolen yesterday", "lost"},
	{"i lost my new card", "lost"},
	{"someone took the card from my wallet", "lost"},
	{"the card is missing, please block it", "lost"},
	{"how do i report a stolen card", "lost"},
	{"i cannot find my card anywhere", "lost"},
}

func tinyParams() embedding.ModelParams {
	return embedding.ModelParams{Buckets: 1 << 12, Dim: 16, Seed: 11}
}

func TestLossGradientMatchesFiniteDifferences(t *testing.T) {
	cfg := Config{Params: embedding.ModelParams{Buckets: 64, Dim: 8, Seed: 2}.WithDefaults(), Temperature: 0.2, DevFraction: -1}
	tr := newTrainer(fixture, cfg)
	// Anchors and positives of the same labels in one batch, so the mask
	// matters: (0,1) and (2,3) are arrival, (6,7) and (8,9) lost.
	batch := [][2]int{{0, 1}, {6, 7}, {2, 3}, {8, 9}}
	tr.lossAndGrad(batch, true)
	if len(tr.rows) == 0 {
		t.Fatal("no gradient rows")
	}
	d := cfg.Params.Dim
	grads := map[uint32][]float64{}
	for s, b := range tr.rows {
		grads[b] = append([]float64(nil), tr.grads[s*d:(s+1)*d]...)
	}
	const h = 1e-3
	checked := 0
	for b, g := range grads {
		for k := 0; k < d; k += 3 {
			at := int(b)*d + k
			orig := tr.table[at]
			tr.table[at] = orig + h
			plus := tr.lossAndGrad(batch, false)
			tr.table[at] = orig - h
			minus := tr.lossAndGrad(batch, false)
			tr.table[at] = orig
			num := (plus - minus) / (float64(orig+h) - float64(orig-h))
			if diff := math.Abs(num - g[k]); diff > 1e-3+1e-2*math.Abs(num) {
				t.Errorf("row %d[%d]: analytic %.6g, numeric %.6g", b, k, g[k], num)
			}
			checked++
		}
	}
	var maxG float64
	for _, g := range grads {
		for _, x := range g {
			maxG = max(maxG, math.Abs(x))
		}
	}
	if maxG < 1e-2 {
		t.Fatalf("largest gradient %v is too small for the check to mean anything", maxG)
	}
	t.Logf("checked %d coordinates over %d rows, largest gradient %.3g", checked, len(grads), maxG)
}

// separated reports whether every text's nearest neighbour among the other
// fixture texts has its label, under model m.
func separated(t *testing.T, m *embedding.Model) bool {
	t.Helper()
	emb, err := embedding.NewTrained(m)
	if err != nil {
		t.Fatal(err)
	}
	texts := make([]string, len(fixture))
	for i, ex := range fixture {
		texts[i] = ex.Text
	}
	vs, err := emb.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	ok := true
	for i := range vs {
		best, bestSim := -1, math.Inf(-1)
		for j := range vs {
			if i == j {
				continue
			}
			var s float64
			for k := range vs[i] {
				s += float64(vs[i][k]) * float64(vs[j][k])
			}
			if s > bestSim {
				best, bestSim = j, s
			}
		}
		if fixture[best].Label != fixture[i].Label {
			ok = false
		}
	}
	return ok
}

func TestTrainSeparatesIntents(t *testing.T) {
	p := tinyParams()
	if separated(t, &embedding.Model{Params: p.WithDefaults()}) {
		t.Fatal("fixture is separable untrained; make it harder")
	}
	res, err := Train(context.Background(), fixture, Config{Params: p, Epochs: 30, BatchSize: 8, DevFraction: -1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !separated(t, res.Model) {
		t.Errorf("trained model does not separate the intents; losses %+v", res.Epochs)
	}
	if first, last := res.Epochs[0].Loss, res.Epochs[len(res.Epochs)-1].Loss; !(last < first) {
		t.Errorf("loss went from %v to %v, want a decrease", first, last)
	}
}

func TestTrainDeterministic(t *testing.T) {
	for _, hard := range []bool{false, true} {
		cfg := Config{Params: tinyParams(), Epochs: 3, BatchSize: 4, DevFraction: 0.3, Seed: 5, HardNegatives: hard}
		t.Run(map[bool]string{false: "random batches", true: "hard negatives"}[hard], func(t *testing.T) {
			checkDeterministic(t, cfg)
		})
	}
}

func checkDeterministic(t *testing.T, cfg Config) {
	t.Helper()
	a, err := Train(context.Background(), fixture, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Train(context.Background(), fixture, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Model.Rows) != len(b.Model.Rows) || len(a.Model.Rows) == 0 {
		t.Fatalf("%d and %d rows", len(a.Model.Rows), len(b.Model.Rows))
	}
	for k, ra := range a.Model.Rows {
		rb := b.Model.Rows[k]
		for i := range ra {
			if math.Float32bits(ra[i]) != math.Float32bits(rb[i]) {
				t.Fatalf("row %d differs between runs with the same seed", k)
			}
		}
	}
	for i := range a.Epochs {
		if a.Epochs[i].Loss != b.Epochs[i].Loss || !sameFloat(a.Epochs[i].DevAccuracy, b.Epochs[i].DevAccuracy) {
			t.Errorf("epoch %d: %+v vs %+v", i+1, a.Epochs[i], b.Epochs[i])
		}
	}
}

func sameFloat(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

func TestTrainRejectsNoPairs(t *testing.T) {
	_, err := Train(context.Background(), []Example{{"a", "x"}, {"b", "y"}}, Config{Params: tinyParams(), DevFraction: -1})
	if err != ErrNoPairs {
		t.Fatalf("err = %v, want ErrNoPairs", err)
	}
}
