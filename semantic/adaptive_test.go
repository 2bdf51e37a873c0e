package semantic

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// sample draws n observations with similarities uniform in [lo, hi] and
// labels from the logistic model with threshold t and steepness g.
func sample(rng *rand.Rand, n int, lo, hi, t, g float64) []Observation {
	obs := make([]Observation, n)
	for i := range obs {
		s := lo + (hi-lo)*rng.Float64()
		obs[i] = Observation{Similarity: s, Correct: rng.Float64() < logistic(g*(s-t))}
	}
	return obs
}

// TestFitRecoversKnownModel: on data drawn from a known model the fit
// recovers t and γ, the score (the log-likelihood's gradient, anchors
// included) is zero at the estimate, and the delta-method sd(t̂) matches the
// spread of t̂ over independent replicates.
func TestFitRecoversKnownModel(t *testing.T) {
	const trueT, trueG = 0.8, 25.0
	rng := rand.New(rand.NewPCG(1, 2))
	f := FitObservations(sample(rng, 5000, 0.5, 1, trueT, trueG))
	if f.Separated || f.N != 5000 {
		t.Fatalf("fit = %+v, want not separated, N 5000", f)
	}
	if math.Abs(f.T-trueT) > 0.01 || math.Abs(f.Gamma-trueG)/trueG > 0.15 {
		t.Errorf("fit t=%.4f γ=%.2f, want t≈%.2f γ≈%.0f", f.T, f.Gamma, trueT, trueG)
	}

	// The MLE condition on a smaller set, anchors included.
	obs := sample(rng, 300, 0.5, 1, trueT, trueG)
	f = FitObservations(obs)
	a, b := -f.Gamma*f.T, f.Gamma
	// The anchors: (1, right) adds (1-p(1))·(1, 1), (0, wrong) adds -p(0)·(1, 0).
	u0, u1 := 1-logistic(a+b)-logistic(a), 1-logistic(a+b)
	for _, o := range obs {
		y := 0.0
		if o.Correct {
			y = 1
		}
		r := y - logistic(a+b*o.Similarity)
		u0 += r
		u1 += r * o.Similarity
	}
	if math.Abs(u0) > 1e-6 || math.Abs(u1) > 1e-6 {
		t.Errorf("score at the estimate = (%g, %g), want 0", u0, u1)
	}

	// Delta method vs the replicates' spread.
	const reps, n = 300, 200
	var sum, sumSq, sdSum float64
	for range reps {
		f := FitObservations(sample(rng, n, 0.5, 1, trueT, trueG))
		sum += f.T
		sumSq += f.T * f.T
		sdSum += f.SDT
	}
	mean := sum / reps
	empirical := math.Sqrt(sumSq/reps - mean*mean)
	predicted := sdSum / reps
	if r := predicted / empirical; r < 0.75 || r > 1.33 {
		t.Errorf("delta-method sd(t̂) %.4f vs replicates' sd %.4f (ratio %.2f)", predicted, empirical, r)
	}
}

func TestFitSeparated(t *testing.T) {
	// Anchors alone: a wrong half at 1 and a right half at 0 give
	// p(0) = 1/3 and p(1) = 2/3, so t̂ = 0.5 and γ̂ = 2 ln 2 by hand.
	f := FitObservations(nil)
	if !f.Separated || f.N != 0 || math.Abs(f.T-0.5) > 1e-9 || math.Abs(f.Gamma-2*math.Ln2) > 1e-9 {
		t.Errorf("anchors only: %+v, want t 0.5, γ %.6f, separated", f, 2*math.Ln2)
	}

	// Wrong answers at 0.8, right ones at 0.9: the estimate is finite,
	// inside the gap, steeper and surer with more observations.
	gap := func(k int) Fit {
		var obs []Observation
		for range k {
			obs = append(obs, Observation{0.8, false}, Observation{0.9, true})
		}
		return FitObservations(obs)
	}
	prev := Fit{SDT: math.Inf(1)}
	for _, k := range []int{1, 4, 16, 64} {
		f := gap(k)
		if !f.Separated || f.T <= 0.8 || f.T >= 0.9 || math.IsInf(f.SDT, 0) || f.Gamma <= prev.Gamma || f.SDT >= prev.SDT {
			t.Errorf("k=%d: %+v (previous %+v): want separated, t̂ in (0.8, 0.9), γ̂ up, sd down", k, f, prev)
		}
		prev = f
	}

	// Right answers below wrong ones: only the anchors keep γ̂ above 0,
	// and the entry is almost never served.
	f = FitObservations([]Observation{{0.9, false}, {0.9, false}, {0.6, true}, {0.6, true}, {0.6, true}, {0.9, false}})
	if f.Separated || f.Gamma > 1 {
		t.Errorf("inverted data: %+v, want not separated, γ̂ < 1", f)
	}
	if tau := ExploreProbability(f, 0.95, 0.01, nil); tau < 0.98 {
		t.Errorf("inverted data: τ̂(0.95) = %v, want >= 0.98", tau)
	}
	// Without any increase at all (γ̂ 0, sd +Inf), τ̂ is 1-δ everywhere.
	if tau := ExploreProbability(Fit{T: 1, SDT: math.Inf(1)}, 0.95, 0.01, nil); math.Abs(tau-0.99) > 1e-12 {
		t.Errorf("τ̂ of an unusable fit = %v, want 1-δ = 0.99", tau)
	}

	// NaN similarities are ignored, never propagated.
	f = FitObservations([]Observation{{math.NaN(), true}, {0.9, true}})
	if f.N != 1 || math.IsNaN(f.T) || math.IsNaN(f.SDT) {
		t.Errorf("NaN observation: %+v", f)
	}
}

// TestExploreProbabilityHandComputed checks τ̂ against values computed by
// hand (Python's statistics.NormalDist for z).
func TestExploreProbabilityHandComputed(t *testing.T) {
	for _, c := range []struct {
		name     string
		f        Fit
		s, delta float64
		eps      []float64
		want     float64
	}{
		// α = 0.9 σ(20·0.1) = 0.792717; τ̂ = (0.95-α)/(1-α).
		{"sd 0, one ε", Fit{T: 0.8, Gamma: 20, SDT: 0}, 0.9, 0.05, []float64{0.1}, 0.758783454052847},
		// t' = 0.8 + 1.959964·0.05; α = 0.975 σ(20 (0.95 - t')).
		{"z at 97.5%", Fit{T: 0.8, Gamma: 20, SDT: 0.05}, 0.95, 0.01, []float64{0.025}, 0.9642364715663128},
		// The minimum over {0.025, 0.5}: ε = 0.5 gives z = 0 and
		// α = 0.5 σ(3) = 0.476287, τ̂ 0.980906 > 0.964236.
		{"min over the grid", Fit{T: 0.8, Gamma: 20, SDT: 0.05}, 0.95, 0.01, []float64{0.025, 0.5}, 0.9642364715663128},
		// α >= 1-δ: serve always.
		{"clamped at 0", Fit{T: 0.5, Gamma: 100, SDT: 0.001}, 0.99, 0.05, []float64{0.01}, 0},
		// Far below t̂: α ≈ 0, τ̂ = 1-δ (the blind share δ is served).
		{"far below", Fit{T: 0.9, Gamma: 200, SDT: 0.01}, 0.5, 0.02, []float64{0.1}, 0.98},
	} {
		got := ExploreProbability(c.f, c.s, c.delta, c.eps)
		if math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: τ̂ = %.12f, want %.12f", c.name, got, c.want)
		}
	}
	// The default grid is used for nil, and τ̂ never increases with s.
	f := Fit{T: 0.8, Gamma: 30, SDT: 0.03}
	prev := 2.0
	for s := 0.5; s <= 1; s += 0.01 {
		tau := ExploreProbability(f, s, 0.01, nil)
		if tau < 0 || tau > 1 || tau > prev+1e-12 {
			t.Fatalf("τ̂(%.2f) = %v after %v: want in [0, 1], non-increasing", s, tau, prev)
		}
		prev = tau
	}
}

func TestObservationAndFitEncoding(t *testing.T) {
	for _, o := range []Observation{{0.875, true}, {-0.25, false}, {1, true}} {
		got, err := decodeObservation(encodeObservation(o))
		if err != nil || got != o {
			t.Errorf("round trip %+v = %+v, %v", o, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, {0, 0, 0xc0, 0x7f, 1}, {0, 0, 0x80, 0x3f, 2}} {
		if _, err := decodeObservation(bad); err == nil {
			t.Errorf("decodeObservation(%v): no error", bad)
		}
	}
	for _, f := range []Fit{{T: 0.81, Gamma: 12.5, SDT: 0.02, N: 7, Separated: true}, {T: 1, SDT: math.Inf(1), N: 3}} {
		raw, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		var back Fit
		if err := json.Unmarshal(raw, &back); err != nil || back != f {
			t.Errorf("fit round trip %+v -> %s -> %+v, %v", f, raw, back, err)
		}
	}
	var f Fit
	for _, bad := range []string{`{"t":0.5,"gamma":-1,"sd_t":0.1,"n":1}`, `{"t":0.5,"gamma":1,"sd_t":-2,"n":1}`, `{"t":0.5,"gamma":1,"sd_t":0.1,"n":-1}`} {
		if err := json.Unmarshal([]byte(bad), &f); err == nil {
			t.Errorf("Unmarshal(%s): no error", bad)
		}
	}
}
