// Package dashboard keeps what the operator's dashboard (GET /ui) shows
// that the cache's counters do not: the last hour of traffic in 10-second
// steps, recent latencies by outcome, the similarity of semantic hits and
// of misses' nearest neighbours, and the latest requests. It also holds
// the page itself (embedded in the binary) and draws its charts.
//
// Everything is bounded: a Recorder's memory does not grow with traffic.
package dashboard

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Defaults of Config; each is a size bound on memory, not a measured value.
const (
	// DefaultStep is the resolution of the traffic series.
	DefaultStep = 10 * time.Second
	// DefaultSteps is the number of steps kept: one hour at DefaultStep.
	DefaultSteps = 360
	// DefaultRecent is the number of latest requests kept.
	DefaultRecent = 100
	// DefaultLatencies is the number of latest durations kept per outcome
	// class, over which p50 and p99 are computed.
	DefaultLatencies = 1024
	// maxPromptRunes bounds a recorded prompt (Config.Prompts).
	maxPromptRunes = 200
)

// Outcome classes of the latency table and the traffic series, in order.
const (
	ClassExact    = "exact"    // exact-tier hits
	ClassSemantic = "semantic" // semantic-tier hits
	ClassMiss     = "miss"
	ClassBypass   = "bypass"
)

// Classes lists the outcome classes in the order of every per-class array.
var Classes = [...]string{ClassExact, ClassSemantic, ClassMiss, ClassBypass}

// SimilarityBins is the number of bins of the similarity histograms: cosine
// similarity 0 to 1 in steps of 1/SimilarityBins (0.02). A similarity below
// 0 is counted in the first bin, 1 in the last.
const SimilarityBins = 50

// Event is one answered request, as the proxy reports it to Record.
type Event struct {
	// Time is when the request arrived.
	Time time.Time
	// Class is one of Classes.
	Class string
	// Key is the entry that served the hit or the request's exact key.
	Key string
	// Similarity is a semantic hit's cosine similarity in [-1, 1].
	Similarity float64
	// Nearest is, on a miss, the cosine similarity of the best neighbour
	// the semantic search found; HasNearest says whether there was one.
	Nearest    float64
	HasNearest bool
	// Refused is, on a miss, why the best neighbour at or above the
	// threshold was refused (a guard refusal reason); "" otherwise.
	Refused string
	// Explored reports a miss whose neighbour the adaptive policy chose to
	// verify instead of serving.
	Explored bool
	// Age is how old a hit's entry was.
	Age time.Duration
	// Duration is the request's time in the proxy, to the end of its
	// response.
	Duration time.Duration
	// Prompt is the request's prompt. The Recorder keeps it only when
	// Config.Prompts is set, cut to 200 characters.
	Prompt string
}

// Config sizes a Recorder. Zero fields take the defaults above.
type Config struct {
	// Step is the traffic series' resolution; DefaultStep when 0.
	Step time.Duration
	// Steps is how many steps the series keeps; DefaultSteps when 0.
	Steps int
	// Recent is how many latest requests are kept; DefaultRecent when 0.
	Recent int
	// Latencies is how many latest durations are kept per class;
	// DefaultLatencies when 0.
	Latencies int
	// Prompts keeps each request's prompt in the latest requests. Off by
	// default: prompts may be private, and the page shows them to whoever
	// may open it.
	Prompts bool
}

// Recorder keeps the dashboard's bounded history. It is safe for
// concurrent use; Record takes one short lock.
type Recorder struct {
	cfg Config

	mu sync.Mutex // guards every field below
	// slots is a ring of traffic steps indexed by step number mod len.
	slots []slot
	// lat holds the latest durations of each class, a ring each.
	lat [len(Classes)]ring[time.Duration]
	// hits, misses and refused are the similarity histograms since start:
	// semantic hits' similarity, misses' nearest neighbour below the
	// threshold or with no refusal, and refused neighbours'.
	hits, misses, refused [SimilarityBins]int64
	recent                ring[Event]
}

// slot is one step of the traffic series.
type slot struct {
	step    int64 // the step number (Unix time / Step) the counts belong to
	counts  [len(Classes)]int64
	refused int64 // misses whose neighbour a guard refused
}

// ring is a bounded ring buffer of the latest values.
type ring[T any] struct {
	buf  []T
	next int // where the next value goes
	full bool
}

func (r *ring[T]) add(v T) {
	r.buf[r.next] = v
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// latest returns the values, newest first.
func (r *ring[T]) latest() []T {
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]T, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// NewRecorder returns an empty Recorder sized by cfg. Negative sizes are
// taken as their defaults' zero: use Config's zero value for the defaults.
func NewRecorder(cfg Config) *Recorder {
	if cfg.Step <= 0 {
		cfg.Step = DefaultStep
	}
	if cfg.Steps <= 0 {
		cfg.Steps = DefaultSteps
	}
	if cfg.Recent <= 0 {
		cfg.Recent = DefaultRecent
	}
	if cfg.Latencies <= 0 {
		cfg.Latencies = DefaultLatencies
	}
	r := &Recorder{cfg: cfg, slots: make([]slot, cfg.Steps), recent: ring[Event]{buf: make([]Event, cfg.Recent)}}
	for i := range r.slots {
		r.slots[i].step = -1
	}
	for i := range r.lat {
		r.lat[i].buf = make([]time.Duration, cfg.Latencies)
	}
	return r
}

// slotLocked returns the ring slot of step number step (r.mu held).
func (r *Recorder) slotLocked(step int64) *slot {
	n := int64(len(r.slots))
	return &r.slots[int(((step%n)+n)%n)]
}

// Prompts reports whether the Recorder keeps prompts.
func (r *Recorder) Prompts() bool { return r.cfg.Prompts }

// classIndex returns the index of class in Classes, or -1.
func classIndex(class string) int { return slices.Index(Classes[:], class) }

// bin returns the similarity histogram bin of a cosine similarity.
func bin(sim float64) int {
	if math.IsNaN(sim) {
		return 0
	}
	return min(max(int(math.Floor(sim*SimilarityBins)), 0), SimilarityBins-1)
}

// Record adds one answered request. An event of an unknown class is
// ignored.
func (r *Recorder) Record(ev Event) {
	ci := classIndex(ev.Class)
	if ci < 0 {
		return
	}
	if !r.cfg.Prompts {
		ev.Prompt = ""
	} else if p := []rune(ev.Prompt); len(p) > maxPromptRunes {
		ev.Prompt = string(p[:maxPromptRunes]) + "…"
	}
	step := ev.Time.UnixNano() / int64(r.cfg.Step)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.slotLocked(step)
	if s.step != step {
		*s = slot{step: step}
	}
	s.counts[ci]++
	r.lat[ci].add(ev.Duration)
	switch {
	case ev.Class == ClassSemantic:
		r.hits[bin(ev.Similarity)]++
	case ev.Class == ClassMiss && ev.HasNearest && ev.Refused != "":
		s.refused++
		r.refused[bin(ev.Nearest)]++
	case ev.Class == ClassMiss && ev.HasNearest:
		r.misses[bin(ev.Nearest)]++
	}
	r.recent.add(ev)
}

// View is what the Recorder holds at one moment, in the JSON shape of the
// dashboard's data endpoint (GET /ui/api/data, field "recorder").
type View struct {
	// Now is the time of the view, Unix milliseconds.
	Now int64 `json:"now_ms"`
	// Series is the traffic of the last Steps steps, oldest first.
	Series Series `json:"series"`
	// Latency is p50 and p99 by class over the latest durations.
	Latency map[string]Latency `json:"latency"`
	// Similarity holds the histograms.
	Similarity Similarity `json:"similarity"`
	// Recent are the latest requests, newest first.
	Recent []Request `json:"recent"`
}

// Series is the traffic over time: Counts[class][i] requests of that class
// answered in step i, the step starting at Start + i·Step.
type Series struct {
	Start  int64              `json:"start_ms"` // Unix milliseconds
	StepMS int64              `json:"step_ms"`
	Counts map[string][]int64 `json:"counts"`
	// Refused counts, per step, misses whose neighbour at or above the
	// threshold a guard refused.
	Refused []int64 `json:"refused"`
}

// Latency is the p50 and p99, in milliseconds, of the latest Count
// durations of one class (nearest-rank quantiles; 0 when Count is 0).
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
}

// Similarity holds histograms of cosine similarity over SimilarityBins
// equal bins from 0 to 1 (bin i is [i/Bins, (i+1)/Bins)), since start:
// Hits of semantic hits, Misses of misses' nearest neighbours that were
// not refused (mostly below the threshold), Refused of neighbours a guard
// refused.
type Similarity struct {
	Bins    int     `json:"bins"`
	Hits    []int64 `json:"hits"`
	Misses  []int64 `json:"misses"`
	Refused []int64 `json:"refused"`
}

// Request is one of the latest requests.
type Request struct {
	Time  int64  `json:"time_ms"` // Unix milliseconds
	Class string `json:"class"`
	Key   string `json:"key"`
	// Similarity is a semantic hit's, Nearest a miss's best neighbour's
	// (null when there was none or the request was not a miss).
	Similarity *float64 `json:"similarity,omitempty"`
	Nearest    *float64 `json:"nearest,omitempty"`
	Refused    string   `json:"refused,omitempty"`
	Explored   bool     `json:"explored,omitempty"`
	AgeS       float64  `json:"age_s"`
	MS         float64  `json:"ms"`
	Prompt     string   `json:"prompt,omitempty"`
}

// View returns a copy of what the Recorder holds at now (steps after now
// are not shown; steps older than Steps·Step are zero).
func (r *Recorder) View(now time.Time) View {
	step := int64(r.cfg.Step)
	cur := now.UnixNano() / step
	n := int64(len(r.slots))
	v := View{
		Now: now.UnixMilli(),
		Series: Series{
			Start:   (cur - n + 1) * step / int64(time.Millisecond),
			StepMS:  step / int64(time.Millisecond),
			Counts:  map[string][]int64{},
			Refused: make([]int64, n),
		},
		Latency: map[string]Latency{},
		Similarity: Similarity{Bins: SimilarityBins,
			Hits: make([]int64, SimilarityBins), Misses: make([]int64, SimilarityBins), Refused: make([]int64, SimilarityBins)},
	}
	for _, c := range Classes {
		v.Series.Counts[c] = make([]int64, n)
	}
	var lat [len(Classes)][]time.Duration
	r.mu.Lock()
	for i := int64(0); i < n; i++ {
		st := cur - n + 1 + i
		s := r.slotLocked(st)
		if s.step != st {
			continue
		}
		for ci, c := range Classes {
			v.Series.Counts[c][i] = s.counts[ci]
		}
		v.Series.Refused[i] = s.refused
	}
	for ci := range Classes {
		lat[ci] = r.lat[ci].latest()
	}
	copy(v.Similarity.Hits, r.hits[:])
	copy(v.Similarity.Misses, r.misses[:])
	copy(v.Similarity.Refused, r.refused[:])
	recent := r.recent.latest()
	r.mu.Unlock()

	for ci, c := range Classes {
		v.Latency[c] = latency(lat[ci])
	}
	v.Recent = make([]Request, 0, len(recent))
	for _, ev := range recent {
		q := Request{Time: ev.Time.UnixMilli(), Class: ev.Class, Key: ev.Key, Refused: ev.Refused, Explored: ev.Explored,
			AgeS: ev.Age.Seconds(), MS: float64(ev.Duration.Microseconds()) / 1000, Prompt: ev.Prompt}
		if ev.Class == ClassSemantic {
			q.Similarity = &ev.Similarity
		}
		if ev.Class == ClassMiss && ev.HasNearest {
			q.Nearest = &ev.Nearest
		}
		v.Recent = append(v.Recent, q)
	}
	return v
}

// latency returns the nearest-rank p50 and p99 of ds in milliseconds; ds
// is sorted in place.
func latency(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return float64(ds[max(i, 0)].Microseconds()) / 1000
	}
	return Latency{Count: len(ds), P50: q(0.50), P99: q(0.99)}
}
