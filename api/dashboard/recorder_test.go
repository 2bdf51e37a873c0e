package dashboard

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func TestRecorderSeriesKeepsTheLastSteps(t *testing.T) {
	r := NewRecorder(Config{Step: 10 * time.Second, Steps: 6})
	r.Record(Event{Time: t0, Class: ClassMiss})
	r.Record(Event{Time: t0.Add(5 * time.Second), Class: ClassExact})
	r.Record(Event{Time: t0.Add(20 * time.Second), Class: ClassExact})
	v := r.View(t0.Add(25 * time.Second))
	if got := v.Series.Counts[ClassExact]; len(got) != 6 || got[3] != 1 || got[5] != 1 || got[4] != 0 {
		t.Errorf("exact series %v, want [.. 1 0 1]", got)
	}
	if v.Series.Start != t0.Add(-30*time.Second).UnixMilli() || v.Series.StepMS != 10000 {
		t.Errorf("series start %d step %d", v.Series.Start, v.Series.StepMS)
	}
	// A minute later the first steps have left the window, and the ring
	// slot they held is reused for the new step only.
	r.Record(Event{Time: t0.Add(65 * time.Second), Class: ClassBypass})
	v = r.View(t0.Add(65 * time.Second))
	var total int64
	for _, c := range Classes {
		for _, n := range v.Series.Counts[c] {
			total += n
		}
	}
	if total != 2 || v.Series.Counts[ClassBypass][5] != 1 || v.Series.Counts[ClassExact][1] != 1 {
		t.Errorf("after a minute: %v, want the 20 s exact hit and the bypass only", v.Series.Counts)
	}
}

func TestRecorderBoundsAndOrder(t *testing.T) {
	r := NewRecorder(Config{Recent: 3, Latencies: 4})
	for i := range 10 {
		r.Record(Event{Time: t0, Class: ClassMiss, Key: string(rune('a' + i)), Duration: time.Duration(i+1) * time.Millisecond, Prompt: "secret"})
	}
	r.Record(Event{Time: t0, Class: "nonsense"})
	v := r.View(t0)
	if len(v.Recent) != 3 || v.Recent[0].Key != "j" || v.Recent[2].Key != "h" {
		t.Errorf("recent %+v, want j, i, h", v.Recent)
	}
	if v.Recent[0].Prompt != "" {
		t.Error("a prompt was kept with Config.Prompts off")
	}
	// The latest 4 durations are 7..10 ms: p50 by nearest rank is 8 ms.
	if l := v.Latency[ClassMiss]; l.Count != 4 || l.P50 != 8 || l.P99 != 10 {
		t.Errorf("latency %+v, want 4 requests, p50 8, p99 10", l)
	}
	if l := v.Latency[ClassExact]; l.Count != 0 || l.P50 != 0 {
		t.Errorf("exact latency %+v with no requests", l)
	}
}

func TestRecorderSimilarityBins(t *testing.T) {
	r := NewRecorder(Config{Prompts: true})
	r.Record(Event{Time: t0, Class: ClassSemantic, Similarity: 1})
	r.Record(Event{Time: t0, Class: ClassSemantic, Similarity: 0.9})
	r.Record(Event{Time: t0, Class: ClassMiss, Nearest: -0.3, HasNearest: true})
	r.Record(Event{Time: t0, Class: ClassMiss, Nearest: 0.95, HasNearest: true, Refused: "number", Prompt: "x"})
	r.Record(Event{Time: t0, Class: ClassMiss}) // no neighbour: not in a histogram
	v := r.View(t0)
	s := v.Similarity
	if s.Hits[SimilarityBins-1] != 1 || s.Hits[45] != 1 || s.Misses[0] != 1 || s.Refused[47] != 1 {
		t.Errorf("bins: hits %v misses %v refused %v", s.Hits, s.Misses, s.Refused)
	}
	var n int64
	for i := range SimilarityBins {
		n += s.Hits[i] + s.Misses[i] + s.Refused[i]
	}
	if n != 4 {
		t.Errorf("%d values in the histograms, want 4", n)
	}
	if v.Series.Refused[len(v.Series.Refused)-1] != 1 || v.Recent[1].Prompt != "x" {
		t.Errorf("refused series %v, prompt %q", v.Series.Refused[len(v.Series.Refused)-3:], v.Recent[1].Prompt)
	}
}
