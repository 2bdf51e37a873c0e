package semantic

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Settings of RuleBudget (see budget), chosen on the HINT3 CureKart and
// BANKING77 test streams (2-3 orders each) and then measured on every
// stream of benchmarks/RESULTS.md "Adaptive policy". Variables, not
// constants, so that tests can set them.
var (
	// budgetBinWidth is the width of a similarity bin (0.005 and 0.01
	// wide bins, tried on BANKING77 with the local embedder, gave fewer
	// hits: a bin serves only once it has verdicts of its own or below).
	budgetBinWidth = 0.02
	// budgetWindow is the number of lookups over which the lookup counts
	// decay (by 1 - 1/budgetWindow per lookup), so that they follow where
	// requests fall now: as the cache fills, neighbours come closer (300
	// and 1000, tried before budgetPrior existed, let the error run past δ
	// on CureKart).
	budgetWindow = 100.0
	// budgetPrior is the number of pseudo-lookups a new budget starts
	// with, counted in every served region and decaying like the real
	// ones (see budget.served): without it a young cache, whose few
	// neighbours are far, served at its error bound early and exceeded it
	// as neighbours came closer (CureKart, HINT3 PowerPlay11).
	budgetPrior = 50.0
	// budgetZ is the number of standard errors added to a region's mean
	// wrong rate (1.645 kept the error lower still and cost hits).
	budgetZ = 1.0
	// budgetMinSeen is the least number of lookups a served cell counts
	// for (1 halved the budget used on BANKING77).
	budgetMinSeen = 0.25
)

// budget is the running state of RuleBudget. Per stratum (see Stratum) and
// similarity bin of budgetBinWidth from the floor up to 1 (a cell), it
// keeps how many lookups had their neighbour there (decayed, see
// budgetWindow) and how many verified neighbours there were right and
// wrong (never decayed); from these it estimates each cell's wrong rate
// (rates) and serves the cells likeliest to be right as long as the
// estimated error rate stays within δ (served).
//
// It is safe for concurrent use.
type budget struct {
	floor float64
	bins  int

	mu sync.Mutex
	// requests is the decayed count of lookups (with or without a
	// neighbour), pseudo the decayed prior pseudo-lookups.
	requests, pseudo float64
	// Per stratum (see Stratum) and bin: the decayed lookups whose
	// neighbour fell there, and the verdicts.
	seen, right, wrong [strata][]float64
	// q is the estimated wrong rate per stratum and bin, n the verdicts
	// behind it and blk its pooled block (see rates), and order the cells
	// in serving order (see served); all recomputed on every verdict.
	q, n  [strata][]float64
	blk   [strata][]int
	order []cell
	// weights is served's scratch space: lookups taken per stratum and
	// block.
	weights [strata][]float64
}

// Stratum classifies a lookup by what its second-nearest neighbour says
// about the nearest (the one decided on): RuleBudget learns a wrong rate
// per stratum and similarity, since neighbours that agree are more often
// right than one alone at the same similarity.
type Stratum uint8

// Strata.
const (
	// StratumAlone: no second neighbour at or above the floor.
	StratumAlone Stratum = iota
	// StratumAgree: the second neighbour's answer is the nearest's
	// (NormalizeAnswer of AnswerText equal).
	StratumAgree
	// StratumDisagree: the second neighbour's answer differs.
	StratumDisagree
	strata
)

// parseStratum is the inverse of Stratum.String.
func parseStratum(s string) (Stratum, bool) {
	for k := range strata {
		if k.String() == s {
			return k, true
		}
	}
	return 0, false
}

// String returns "alone", "agree" or "disagree".
func (k Stratum) String() string {
	switch k {
	case StratumAlone:
		return "alone"
	case StratumAgree:
		return "agree"
	case StratumDisagree:
		return "disagree"
	}
	return fmt.Sprintf("Stratum(%d)", uint8(k))
}

func newBudget(floor float64) *budget {
	bins := max(1, int(math.Ceil((1-floor)/budgetBinWidth-1e-9)))
	b := &budget{floor: floor, bins: bins, pseudo: budgetPrior}
	for k := range strata {
		b.seen[k], b.right[k], b.wrong[k] = make([]float64, bins), make([]float64, bins), make([]float64, bins)
		b.weights[k] = make([]float64, bins)
	}
	b.refit()
	return b
}

// bin maps a similarity in [floor, 1] to its bin.
func (b *budget) bin(s float64) int {
	return min(max(int(math.Floor((s-b.floor)/budgetBinWidth)), 0), b.bins-1)
}

// count records a lookup, with the stratum k and similarity s of the
// neighbour it was decided on, or s = NaN when it had none at or above the
// floor.
func (b *budget) count(k Stratum, s float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := 1 - 1/budgetWindow
	b.requests = b.requests*keep + 1
	b.pseudo = decay(b.pseudo, keep)
	for _, seen := range b.seen {
		for i := range seen {
			seen[i] = decay(seen[i], keep)
		}
	}
	if !math.IsNaN(s) {
		b.seen[k][b.bin(s)]++
	}
}

// decay returns x·keep, or 0 once that falls below 1e-300: a count nobody
// adds to would otherwise sink into subnormal floats, whose arithmetic is
// far slower, after about 70,000 lookups (BenchmarkBudgetServes, which
// reaches them, took 3.6 µs per lookup before and 0.5 µs after; see
// benchmarks/RESULTS.md). Nothing that small changes a decision: a served
// cell counts at least budgetMinSeen lookups.
func decay(x, keep float64) float64 {
	if x *= keep; x < 1e-300 {
		return 0
	}
	return x
}

// record adds a verdict on a neighbour of stratum k at similarity s.
func (b *budget) record(k Stratum, s float64, right bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if right {
		b.right[k][b.bin(s)]++
	} else {
		b.wrong[k][b.bin(s)]++
	}
	b.refit()
}

// field names the shared count (see verdictStore) of verdicts on a
// neighbour of stratum k at similarity s: "<stratum>/<lowest similarity of
// its bin, 2 decimals>/<r or w>", e.g. "agree/0.86/r".
func (b *budget) field(k Stratum, s float64, right bool) string {
	v := "w"
	if right {
		v = "r"
	}
	return fmt.Sprintf("%s/%.2f/%s", k, b.floor+budgetBinWidth*float64(b.bin(s)), v)
}

// load replaces the verdict counts by the shared ones (fields as made by
// field; a field of another form, or below the floor, is ignored) and
// refits every stratum.
func (b *budget) load(counts map[string]int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range strata {
		clear(b.right[k])
		clear(b.wrong[k])
	}
	for f, n := range counts {
		parts := strings.Split(f, "/")
		if len(parts) != 3 || n <= 0 {
			continue
		}
		k, ok := parseStratum(parts[0])
		lower, err := strconv.ParseFloat(parts[1], 64)
		if !ok || err != nil || lower < b.floor-1e-9 || lower > 1 {
			continue
		}
		i := b.bin(lower + budgetBinWidth/2)
		switch parts[2] {
		case "r":
			b.right[k][i] += float64(n)
		case "w":
			b.wrong[k][i] += float64(n)
		}
	}
	b.refit()
}

// refit recomputes the rates of every stratum and puts b.order in serving
// order. The caller holds b.mu (or owns b).
func (b *budget) refit() {
	for k := range strata {
		b.q[k], b.n[k], b.blk[k] = b.rates(k)
	}
	if b.order == nil {
		for k := range strata {
			for i := range b.bins {
				b.order = append(b.order, cell{k, i})
			}
		}
	}
	// Increasing wrong rate; ties: the closer bin first. Within a
	// stratum, where q does not increase with similarity, this is from
	// the top bin down.
	slices.SortStableFunc(b.order, func(x, y cell) int {
		if c := cmp.Compare(b.q[x.k][x.i], b.q[y.k][y.i]); c != 0 {
			return c
		}
		if c := cmp.Compare(y.i, x.i); c != 0 {
			return c
		}
		return cmp.Compare(x.k, y.k)
	})
}

// cell is one stratum and bin.
type cell struct {
	k Stratum
	i int
}

// served returns, per stratum, the lowest bin served under the bound
// delta (b.bins when none is). Cells are taken in b.order (increasing
// estimated wrong rate), each counted at no fewer than budgetMinSeen
// lookups (a cell nobody asked of lately is not free), as long as serving
// every neighbour in the cells taken is estimated to answer wrongly at
// most a share delta of the lookups: f·r, where f = (S + P)/(N + P) is the
// share of lookups whose neighbour falls in the cells (S and N the decayed
// counts, P the decayed pseudo-lookups, so that a young cache, whose
// neighbours are few and far but come closer as it fills, is judged by r
// alone), and r is the upper confidence bound (mean + budgetZ standard
// errors) of the cells' wrong rates weighted by S, the cells of one pooled
// block (see rates) sharing one estimate: Var r = Σ_blocks W²·q(1-q)/n / S²
// with W the block's lookups taken. A stratum's cells come in from its
// top bin down, so the served bins of a stratum are those from its cut
// up. The caller holds b.mu.
func (b *budget) served(delta float64) [strata]int {
	var cut [strata]int
	for k := range cut {
		cut[k] = b.bins
		clear(b.weights[k])
	}
	total := b.requests + b.pseudo
	seen, wrong, v := 0.0, 0.0, 0.0 // v: Σ_blocks W²·q(1-q)/n
	for _, c := range b.order {
		q, n := b.q[c.k][c.i], b.n[c.k][c.i]
		if n == 0 {
			continue // unknown: never served
		}
		sc := max(b.seen[c.k][c.i], budgetMinSeen)
		j := b.blk[c.k][c.i]
		w := b.weights[c.k][j]
		v2 := v + ((w+sc)*(w+sc)-w*w)*q*(1-q)/n
		s2, w2 := seen+sc, wrong+sc*q
		if (s2+b.pseudo)/total*(w2+budgetZ*math.Sqrt(max(v2, 0)))/s2 > delta {
			break
		}
		b.weights[c.k][j], v, seen, wrong = w+sc, v2, s2, w2
		cut[c.k] = c.i
	}
	return cut
}

// serves reports whether a neighbour of stratum k at similarity s is
// served under the bound delta (see served), and the estimated probability
// that it is wrong.
func (b *budget) serves(k Stratum, s, delta float64) (bool, float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := b.bin(s)
	return i >= b.served(delta)[k], b.q[k][i]
}

// thresholds returns, per stratum, the lowest cosine similarity served
// under delta, or NaN when none is served yet.
func (b *budget) thresholds(delta float64) [strata]float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	cut := b.served(delta)
	var out [strata]float64
	for k, c := range cut {
		out[k] = math.NaN()
		if c < b.bins {
			// Rounded to 10⁻⁶ so that 0.5 + 21·0.02 reads 0.92.
			out[k] = math.Round((b.floor+budgetBinWidth*float64(c))*1e6) / 1e6
		}
	}
	return out
}

// rates returns, per bin, the estimated wrong rate q, the number of
// verdicts n behind it and the index of its pooled block blk (-1 for none). A bin with verdicts starts at (wrong+½)/(verdicts+1)
// (Jeffreys' prior, so that no bin is certain); pool-adjacent-violators,
// weighted by verdicts+1, then makes q non-increasing in similarity (a
// closer neighbour is never more likely wrong), and every bin of a pooled
// block gets the block's q and total weight as n. A bin without verdicts
// takes q and n from the nearest bin below it with some (a farther
// neighbour is never less likely wrong); below the lowest bin with
// verdicts nothing is known, marked q = 1 and n = 0 (never served).
func (b *budget) rates(k Stratum) (q, n []float64, blk []int) {
	type block struct {
		w, v float64
		bins []int
	}
	var blocks []block
	// From the top bin down, the wrong rate must not decrease.
	for i := b.bins - 1; i >= 0; i-- {
		m := b.right[k][i] + b.wrong[k][i]
		if m == 0 {
			continue
		}
		cur := block{w: m + 1, v: (b.wrong[k][i] + 0.5) / (m + 1), bins: []int{i}}
		for len(blocks) > 0 && blocks[len(blocks)-1].v > cur.v {
			top := blocks[len(blocks)-1]
			cur = block{w: top.w + cur.w, v: (top.w*top.v + cur.w*cur.v) / (top.w + cur.w), bins: append(top.bins, cur.bins...)}
			blocks = blocks[:len(blocks)-1]
		}
		blocks = append(blocks, cur)
	}
	q, n, blk = make([]float64, b.bins), make([]float64, b.bins), make([]int, b.bins)
	for i := range q {
		q[i], blk[i] = math.NaN(), -1
	}
	for j, bl := range blocks {
		for _, i := range bl.bins {
			q[i], n[i], blk[i] = bl.v, bl.w, j
		}
	}
	nq, nn, nb := math.NaN(), 0.0, -1 // the nearest bin below with verdicts
	for i := range q {
		if math.IsNaN(q[i]) {
			q[i], n[i], blk[i] = nq, nn, nb
		} else {
			nq, nn, nb = q[i], n[i], blk[i]
		}
	}
	for i := range q {
		if math.IsNaN(q[i]) {
			q[i], n[i], blk[i] = 1, 0, -1 // below every verdict: unknown
		}
	}
	return q, n, blk
}
