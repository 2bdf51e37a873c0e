package semantic

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// This file holds the adaptive decision policy's statistics, after vCache
// (L. G. Schroeder et al., "vCache: Verified Semantic Prompt Caching",
// arXiv:2502.03771), implemented from the paper's equations:
//
//   - per entry, P(correct | s) = 1 / (1 + exp(-γ (s - t))), s the cosine
//     similarity of a request to the entry's prompt;
//   - t and γ fitted by maximum likelihood on the entry's verified
//     observations plus two anchors, (0, wrong) and (1, right);
//   - the exploration probability τ̂ = min over ε of
//     ((1-δ) - α(ε)) / (1 - α(ε)), α(ε) = (1-ε) P(correct | s; t̂ + z_{1-ε}
//     sd(t̂), γ̂), so that a request is answered wrongly with probability at
//     most δ: it is served from the cache with probability 1-τ̂ and is then
//     wrong with probability at most 1-α(ε), except with probability ε.

// Observation is one verified request whose nearest neighbour an entry was.
type Observation struct {
	// Similarity is the request's cosine similarity to the entry's prompt,
	// in [-1, 1].
	Similarity float64
	// Correct reports whether the entry's answer was right for the request
	// (the judge's verdict; a judge failure is recorded as wrong).
	Correct bool
}

// observationSize is the encoded length of an Observation.
const observationSize = 5

// encodeObservation packs o into 5 bytes: the similarity as a
// little-endian float32, then 1 (correct) or 0.
func encodeObservation(o Observation) []byte {
	b := make([]byte, observationSize)
	binary.LittleEndian.PutUint32(b, math.Float32bits(float32(o.Similarity)))
	if o.Correct {
		b[4] = 1
	}
	return b
}

func decodeObservation(b []byte) (Observation, error) {
	if len(b) != observationSize || b[4] > 1 {
		return Observation{}, fmt.Errorf("observation: %d bytes: want %d", len(b), observationSize)
	}
	s := float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	if math.IsNaN(s) || s < -1.0001 || s > 1.0001 {
		return Observation{}, fmt.Errorf("observation: similarity %v out of [-1, 1]", s)
	}
	return Observation{Similarity: s, Correct: b[4] == 1}, nil
}

// Fit is one entry's fitted model P(correct | s) = 1/(1+exp(-Gamma (s-T))),
// as FitObservations returns it. The cache always explores an entry whose
// fit has fewer than AdaptiveConfig.MinObservations observations.
type Fit struct {
	// T is t̂, the similarity at which the entry's answer is right half the
	// time, in similarity units (it may fall outside [0, 1]).
	T float64 `json:"t"`
	// Gamma is γ̂ >= 0, the steepness per unit of similarity. 0 means the
	// data show no increase of correctness with similarity (the fit is
	// then flat at 0.5 and the entry is rarely served).
	Gamma float64 `json:"gamma"`
	// SDT is the standard deviation of t̂ by the delta method (see
	// FitObservations); +Inf when it cannot be estimated (Gamma 0). Encoded
	// as -1 in JSON for +Inf.
	SDT float64 `json:"sd_t"`
	// N is the number of real observations (anchors not counted).
	N int `json:"n"`
	// Separated reports that the observations were perfectly separated by
	// similarity, so that the fit used the continuity correction (see
	// FitObservations).
	Separated bool `json:"separated,omitempty"`
}

// MarshalJSON encodes +Inf SDT as -1 (JSON has no infinity).
func (f Fit) MarshalJSON() ([]byte, error) {
	type plain Fit
	p := plain(f)
	if math.IsInf(p.SDT, 1) {
		p.SDT = -1
	}
	return json.Marshal(p)
}

// UnmarshalJSON reverses MarshalJSON and rejects non-finite or negative
// values other than the -1 marker.
func (f *Fit) UnmarshalJSON(b []byte) error {
	type plain Fit
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if p.SDT == -1 {
		p.SDT = math.Inf(1)
	}
	if math.IsNaN(p.T) || math.IsInf(p.T, 0) || math.IsNaN(p.Gamma) || p.Gamma < 0 || math.IsInf(p.Gamma, 0) || math.IsNaN(p.SDT) || p.SDT < 0 || p.N < 0 {
		return errors.New("fit: out-of-range field")
	}
	*f = Fit(p)
	return nil
}

// Correct returns the fitted P(correct | s) in [0, 1] for a cosine
// similarity s.
func (f Fit) Correct(s float64) float64 { return logistic(f.Gamma * (s - f.T)) }

func logistic(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// Fitting limits: the iterations and the convergence tolerance bound the
// Newton/IRLS loop (2 parameters: it converges in well under 30 steps);
// the largest step keeps one Newton step from overshooting.
const (
	fitMaxIterations = 100
	fitTolerance     = 1e-9
	fitMaxStep       = 50.0
)

// FitObservations fits the entry model to obs plus the two anchors (0,
// wrong) and (1, right), by 2-parameter Newton/IRLS on the log-likelihood
// of P(correct | s) = σ(a + b s); then γ̂ = b, t̂ = -a/b.
//
// Variance: Var(t̂) = ∇tᵀ I⁻¹ ∇t, with I the Fisher information Σ p(1-p) x xᵀ
// (x = (1, s)) at the estimate and ∇t = (-1/b, a/b²) (the delta method).
//
// Separated data (every wrong observation at a similarity at or below every
// right one; always the case with the anchors alone) have no maximum
// likelihood estimate: γ grows without bound, and t̂ could be anywhere in
// the gap between the highest wrong similarity w and the lowest right one
// r. The fixed rule then adds two half-weight pseudo-observations, a wrong
// one at r and a right one at w (a continuity correction in the spirit of
// Haldane's and Anscombe's adding ½ to each empty cell): the fit exists,
// t̂ falls inside the gap, γ̂ is steep when the gap is narrow and grows as
// real observations accumulate, and sd(t̂) reflects the gap's width. This
// was chosen over Firth's penalised likelihood, which on the fixtures in
// adaptive_test.go gave γ̂ < 3 for a gap of 0.03 between six observations
// (serving almost nothing where the data leave little doubt).
//
// A fit with b <= 0 (right answers no more likely at higher similarity)
// returns Gamma 0 and SDT +Inf, and so does a singular information matrix:
// such an entry is only ever served within the error budget's blind share
// (see ExploreProbability). Observations with a NaN similarity are ignored.
// FitObservations never panics and costs O(len(obs)) per Newton step.
func FitObservations(obs []Observation) Fit {
	s := make([]float64, 0, len(obs)+4)
	y := make([]float64, 0, len(obs)+4)
	w := make([]float64, 0, len(obs)+4)
	s, y, w = append(s, 0, 1), append(y, 0, 1), append(w, 1, 1) // the anchors
	n := 0
	maxWrong, minRight := 0.0, 1.0
	for _, o := range obs {
		if math.IsNaN(o.Similarity) {
			continue
		}
		n++
		s, w = append(s, o.Similarity), append(w, 1)
		if o.Correct {
			y = append(y, 1)
			minRight = min(minRight, o.Similarity)
		} else {
			y = append(y, 0)
			maxWrong = max(maxWrong, o.Similarity)
		}
	}
	separated := maxWrong <= minRight
	if separated {
		s, y, w = append(s, minRight, maxWrong), append(y, 0, 1), append(w, 0.5, 0.5)
	}
	a, b, info := newtonLogistic(s, y, w)
	flat := Fit{T: 1, Gamma: 0, SDT: math.Inf(1), N: n, Separated: separated}
	if !(b > 1e-9) || math.IsNaN(a) || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return flat
	}
	inv, ok := inverse2(info)
	if !ok {
		return flat
	}
	ga, gb := -1/b, a/(b*b)
	v := ga*ga*inv[0] + 2*ga*gb*inv[1] + gb*gb*inv[2]
	if !(v >= 0) || math.IsInf(v, 0) {
		return flat
	}
	return Fit{T: -a / b, Gamma: b, SDT: math.Sqrt(v), N: n, Separated: separated}
}

// newtonLogistic maximises the weighted log-likelihood of σ(a + b s_i) for
// labels y_i in [0, 1] and weights wt_i, and returns a, b and the Fisher
// information [I00, I01, I11] at the estimate. Each Newton step (direction
// I⁻¹ U, U the score) is halved until the log-likelihood does not decrease,
// which keeps the iteration from oscillating on nearly separated data.
func newtonLogistic(s, y, wt []float64) (a, b float64, info [3]float64) {
	obj := logLikelihood(s, y, wt, a, b)
	for it := 0; it < fitMaxIterations; it++ {
		inv, ok := inverse2(fisher(s, wt, a, b))
		if !ok {
			break
		}
		var u0, u1 float64
		for i, si := range s {
			r := wt[i] * (y[i] - logistic(a+b*si))
			u0 += r
			u1 += r * si
		}
		da := inv[0]*u0 + inv[1]*u1
		db := inv[1]*u0 + inv[2]*u1
		if norm := math.Hypot(da, db); norm > fitMaxStep {
			da, db = da*fitMaxStep/norm, db*fitMaxStep/norm
		}
		step := 1.0
		for ; step > 1e-6; step /= 2 {
			if o := logLikelihood(s, y, wt, a+step*da, b+step*db); o >= obj-1e-12 {
				obj = o
				break
			}
		}
		if step <= 1e-6 {
			break // no ascent left: at the optimum up to rounding
		}
		a, b = a+step*da, b+step*db
		if math.Abs(step*da) < fitTolerance*(1+math.Abs(a)) && math.Abs(step*db) < fitTolerance*(1+math.Abs(b)) {
			break
		}
	}
	return a, b, fisher(s, wt, a, b)
}

// fisher returns the Fisher information Σ p(1-p) x xᵀ, x = (1, s_i), of
// σ(a + b s) as [I00, I01, I11].
func fisher(s, wt []float64, a, b float64) [3]float64 {
	var m [3]float64
	for i, si := range s {
		p := logistic(a + b*si)
		w := wt[i] * p * (1 - p)
		m[0] += w
		m[1] += w * si
		m[2] += w * si * si
	}
	return m
}

// logLikelihood is Σ wt (y log p + (1-y) log(1-p)), p = σ(a + b s).
func logLikelihood(s, y, wt []float64, a, b float64) float64 {
	var l float64
	for i, si := range s {
		z := a + b*si
		// log σ(z) = -log(1+e^-z), log(1-σ(z)) = -log(1+e^z), stably.
		l -= wt[i] * (y[i]*softplus(-z) + (1-y[i])*softplus(z))
	}
	return l
}

// softplus is log(1 + e^x) without overflow.
func softplus(x float64) float64 {
	if x > 30 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

// inverse2 inverts the symmetric 2×2 matrix [[m0, m1], [m1, m2]] and
// returns its entries in the same order; ok is false when it is singular.
func inverse2(m [3]float64) ([3]float64, bool) {
	det := m[0]*m[2] - m[1]*m[1]
	if !(math.Abs(det) > 1e-300) || math.IsNaN(det) {
		return [3]float64{}, false
	}
	return [3]float64{m[2] / det, -m[1] / det, m[0] / det}, true
}

// DefaultEpsilons is the grid of ε over which ExploreProbability minimises.
// The paper leaves the grid open; this one spans confidence levels from
// 99.5% to 50%, enough for τ̂ to pick the best trade between the confidence
// in t̂ and the fraction ε it gives away.
var DefaultEpsilons = []float64{0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5}

// ExploreProbability returns τ̂ in [0, 1], the probability with which a
// request at cosine similarity s to the entry of fit f must be explored
// (answered from upstream and used to verify the entry) rather than served,
// for a maximum error rate delta in (0, 1):
//
//	τ̂ = min over ε in eps of ((1-δ) - α(ε)) / (1 - α(ε)), clamped to [0, 1],
//	α(ε) = (1-ε) · σ(γ̂ (s - (t̂ + z_{1-ε} sd(t̂)))),
//
// z_{1-ε} the standard normal quantile. eps nil means DefaultEpsilons;
// values outside (0, 1) are skipped. It does not apply the minimum number of
// observations or the similarity floor: the caller does.
func ExploreProbability(f Fit, s, delta float64, eps []float64) float64 {
	if eps == nil {
		eps = DefaultEpsilons
	}
	tau := 1.0
	for _, e := range eps {
		if !(e > 0 && e < 1) {
			continue
		}
		alpha := 0.0
		if !math.IsInf(f.SDT, 1) {
			t := f.T + normalQuantile(1-e)*f.SDT
			alpha = (1 - e) * logistic(f.Gamma*(s-t))
		}
		v := ((1 - delta) - alpha) / (1 - alpha)
		tau = min(tau, v)
	}
	return max(0, min(1, tau))
}

// normalQuantile is the standard normal quantile z_p for p in (0, 1).
func normalQuantile(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }
