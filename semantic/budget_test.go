package semantic

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

// TestBudgetRates: Jeffreys' start per bin, pool-adjacent-violators toward
// a wrong rate that falls as similarity rises, and bins without verdicts
// taking the nearest lower bin's rate; by hand.
func TestBudgetRates(t *testing.T) {
	b := newBudget(0.5)
	if b.bins != 25 {
		t.Fatalf("bins = %d, want 25 (0.02 wide from 0.5)", b.bins)
	}
	set := func(i int, right, wrong float64) { b.right[StratumAgree][i], b.wrong[StratumAgree][i] = right, wrong }
	set(24, 9, 0) // 0.98: (0+½)/10 = 0.05, weight 10
	set(20, 3, 1) // 0.90: 1.5/5 = 0.3, weight 5
	set(15, 9, 0) // 0.80: 0.05 below 0.3: pooled with 0.90 to (5·0.3 + 10·0.05)/15 = 2/15
	set(5, 0, 4)  // 0.60: 4.5/5 = 0.9, weight 5
	q, n, blk := b.rates(StratumAgree)
	want := func(i int, wq, wn float64) {
		t.Helper()
		if !near(q[i], wq) || n[i] != wn {
			t.Errorf("bin %d: q %v n %v, want %v %v", i, q[i], n[i], wq, wn)
		}
	}
	want(24, 0.05, 10)
	if blk[24] == blk[20] || blk[20] != blk[15] || blk[16] != blk[15] || blk[14] != blk[5] || blk[4] != -1 {
		t.Errorf("blocks %v: want 0.98 alone, 0.80 to 0.96 pooled, 0.60 to 0.78 one, below 0.60 none", blk)
	}
	for _, i := range []int{23, 22, 21, 20, 19, 16, 15} {
		want(i, 2.0/15, 15) // pooled, or nearest lower bin with verdicts
	}
	for _, i := range []int{14, 6, 5} {
		want(i, 0.9, 5)
	}
	for _, i := range []int{4, 0} {
		want(i, 1, 0) // below every verdict: unknown
	}
	q, n, _ = b.rates(StratumAlone)
	if q[0] != 1 || n[0] != 0 || q[24] != 1 || n[24] != 0 {
		t.Errorf("stratum without verdicts: q %v n %v, want 1 and 0 everywhere", q, n)
	}
}

// TestBudgetServed: the cells are taken in increasing wrong rate, each
// counted at no fewer than budgetMinSeen lookups, while the bound f·r
// holds; by hand with z = 1.
func TestBudgetServed(t *testing.T) {
	defer func(z, m float64) { budgetZ, budgetMinSeen = z, m }(budgetZ, budgetMinSeen)
	budgetZ, budgetMinSeen = 1, 0.25
	b := newBudget(0.5)
	b.pseudo, b.requests = 0, 100
	// Agree: 0.98 right 99 of 99; 0.80 wrong 9 of 9.
	b.right[StratumAgree][24] = 99
	b.wrong[StratumAgree][15] = 9
	// Disagree: 0.90 right 19 of 19.
	b.right[StratumDisagree][20] = 19
	b.refit()
	b.seen[StratumAgree][24] = 10
	b.seen[StratumDisagree][20] = 10

	// Agree 0.98 and up: q = ½/100 (n 100); agree 0.80 to 0.96: 9.5/10
	// (n 10); disagree 0.90 and up: ½/20 (n 20); below those, unknown
	// (never served). The bound for sa, sd and
	// sx lookups in those three blocks: f = S/100, r = mean + sd.
	bound := func(sa, sd, sx float64) float64 {
		s := sa + sd + sx
		mean := (sa*0.005 + sd*0.025 + sx*0.95) / s
		v := (sa/s)*(sa/s)*0.005*0.995/100 + (sd/s)*(sd/s)*0.025*0.975/20 + (sx/s)*(sx/s)*0.95*0.05/10
		return s / 100 * (mean + math.Sqrt(v))
	}
	// Agree 0.98, then the 5 disagree cells from 0.90 up (10 lookups at
	// 0.90, 4 empty cells at ¼ each), fit; one more agree cell (¼ lookup
	// at 0.95 wrong) does not.
	delta := (bound(10, 11, 0) + bound(10, 11, 0.25)) / 2
	if got := b.served(delta); got != [3]int{StratumAlone: 25, StratumAgree: 24, StratumDisagree: 20} {
		t.Errorf("δ %v: cuts %v, want agree from 0.98 (bin 24), disagree from 0.90 (bin 20), alone none (25)", delta, got)
	}
	// Below the lowest verdict of a stratum nothing is served, however
	// loose δ; a stratum without verdicts is never served.
	if got := b.served(0.99); got[StratumAgree] < 15 || got[StratumDisagree] < 20 || got[StratumAlone] != 25 {
		t.Errorf("δ 0.99: cuts %v; want agree no lower than bin 15, disagree than 20, alone none", got)
	}
	// Below what agree 0.98 alone costs, nothing is served.
	if got := b.served(bound(10, 0, 0) * 0.999); got != [3]int{25, 25, 25} {
		t.Errorf("δ below the top cell's bound: cuts %v, want none", got)
	}
	// Agree 0.98 and disagree 0.98, 0.96, 0.94 (¼ lookup each) fit; 0.92
	// does not.
	delta = (bound(10, 0.75, 0) + bound(10, 1, 0)) / 2
	if got := b.served(delta); got != [3]int{StratumAlone: 25, StratumAgree: 24, StratumDisagree: 22} {
		t.Errorf("δ %v: cuts %v, want agree 24, disagree 22", delta, got)
	}
	th := b.thresholds(delta)
	if !near(th[StratumDisagree], 0.94) || !near(th[StratumAgree], 0.98) || !math.IsNaN(th[StratumAlone]) {
		t.Errorf("thresholds %v, want disagree 0.94, agree 0.98, alone NaN", th)
	}
}

// TestBudgetCountDecays: lookup counts and the prior pseudo-lookups decay
// by 1 - 1/budgetWindow per lookup.
func TestBudgetCountDecays(t *testing.T) {
	b := newBudget(0.5)
	b.count(StratumAgree, 0.91)
	b.count(StratumAlone, math.NaN())
	k := 1 - 1/budgetWindow
	if !near(b.seen[StratumAgree][20], k) || !near(b.requests, k+1) || !near(b.pseudo, budgetPrior*k*k) {
		t.Errorf("after two lookups: seen %v, requests %v, pseudo %v", b.seen[StratumAgree][20], b.requests, b.pseudo)
	}
	// Counts nobody adds to go to 0 instead of into subnormal floats.
	b.seen[StratumAgree][3], b.pseudo = 1e-300, 1e-300
	b.count(StratumAgree, 0.91)
	if b.seen[StratumAgree][3] != 0 || b.pseudo != 0 || !near(b.seen[StratumAgree][20], k*k+1) {
		t.Errorf("tiny counts: seen %v, pseudo %v, want 0 (and bin 20 at %v: %v)", b.seen[StratumAgree][3], b.pseudo, k*k+1, b.seen[StratumAgree][20])
	}
	if got := b.bin(1); got != 24 {
		t.Errorf("bin(1) = %d, want the top bin", got)
	}
	if got := b.bin(0.4); got != 0 {
		t.Errorf("bin(0.4) = %d, want the bottom bin", got)
	}
}

// BenchmarkBudgetServes measures the decision of one lookup under
// RuleBudget with every cell holding verdicts and lookups.
func BenchmarkBudgetServes(b *testing.B) {
	bu := newBudget(0.5)
	for k := range strata {
		for i := range bu.bins {
			bu.right[k][i], bu.wrong[k][i] = float64(i*3), float64(bu.bins-i)
			bu.seen[k][i] = 2
		}
	}
	bu.refit()
	bu.requests = 100
	for b.Loop() {
		bu.count(StratumAgree, 0.81)
		bu.serves(StratumAgree, 0.81, 0.05)
	}
}
