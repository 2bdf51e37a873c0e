package dashboard

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/semcache/semcache/semantic"
)

// Charts names the charts Chart draws, in the order the page shows them.
var Charts = [...]string{"traffic", "similarity", "refusals", "adaptive"}

// ErrUnknownChart is returned by Chart for a name not in Charts.
var ErrUnknownChart = errors.New("dashboard: unknown chart")

// chart size on the page, in SVG points (the page scales them to fit).
const (
	chartWidth  = 6.4 * vg.Inch
	chartHeight = 2.8 * vg.Inch
)

// Colours of the classes, the same on every chart and on the page.
var classColor = map[string]color.Color{
	ClassExact:    color.RGBA{0x1b, 0x9e, 0x77, 0xff},
	ClassSemantic: color.RGBA{0x75, 0x70, 0xb3, 0xff},
	ClassMiss:     color.RGBA{0xd9, 0x5f, 0x02, 0xff},
	ClassBypass:   color.RGBA{0x66, 0x66, 0x66, 0xff},
}

// refusedColor is the colour of guard refusals.
var refusedColor = color.RGBA{0xe7, 0x29, 0x8a, 0xff}

// Chart draws the named chart (one of Charts) as an SVG document with
// gonum/plot, from a Recorder's View v, the cache's counters (snapshot is
// called only by the charts that need them: counting entries may be a
// network call) and the similarity threshold in force (cosine similarity; 0 or less draws no
// threshold line). It returns ErrUnknownChart for another name and
// gonum/plot's error when drawing fails. It is safe for concurrent use.
func Chart(name string, v View, snapshot func() semantic.Snapshot, threshold float64) ([]byte, error) {
	var p *plot.Plot
	var err error
	switch name {
	case "traffic":
		p, err = trafficChart(v)
	case "similarity":
		p, err = similarityChart(v, threshold)
	case "refusals":
		p, err = refusalsChart(snapshot())
	case "adaptive":
		p, err = adaptiveChart(snapshot())
	default:
		return nil, fmt.Errorf("%w %q (want one of %v)", ErrUnknownChart, name, Charts)
	}
	if err != nil {
		return nil, fmt.Errorf("dashboard: chart %s: %w", name, err)
	}
	wt, err := p.WriterTo(chartWidth, chartHeight, "svg")
	if err != nil {
		return nil, fmt.Errorf("dashboard: chart %s: %w", name, err)
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("dashboard: chart %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// trafficChart: requests per step by class over the series, x in minutes
// before the view's time.
func trafficChart(v View) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "minutes ago"
	p.Y.Label.Text = fmt.Sprintf("requests per %ds", v.Series.StepMS/1000)
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top, p.Legend.Left = true, true
	n := len(v.Series.Refused)
	x := func(i int) float64 {
		end := float64(v.Series.Start + int64(i+1)*v.Series.StepMS) // end of step i
		return (end - float64(v.Now)) / 60000
	}
	for _, c := range Classes {
		xys := make(plotter.XYs, n)
		for i, y := range v.Series.Counts[c] {
			xys[i] = plotter.XY{X: x(i), Y: float64(y)}
			p.Y.Max = max(p.Y.Max, float64(y))
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width = classColor[c], vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(c, l)
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

// similarityChart: histograms of semantic hits' similarity, misses'
// nearest neighbours and refused neighbours, with the threshold marked.
func similarityChart(v View, threshold float64) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "cosine similarity (higher is closer)"
	p.Y.Label.Text = "requests"
	p.X.Min, p.X.Max = 0, 1
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top, p.Legend.Left = true, true
	w := 1 / float64(v.Similarity.Bins)
	series := []struct {
		name   string
		counts []int64
		c      color.Color
	}{
		{"semantic hits", v.Similarity.Hits, classColor[ClassSemantic]},
		{"misses: nearest neighbour", v.Similarity.Misses, classColor[ClassMiss]},
		{"refused by a guard", v.Similarity.Refused, refusedColor},
	}
	for _, sr := range series {
		bins := make([]plotter.HistogramBin, len(sr.counts))
		for i, n := range sr.counts {
			bins[i] = plotter.HistogramBin{Min: float64(i) * w, Max: float64(i+1) * w, Weight: float64(n)}
			p.Y.Max = max(p.Y.Max, float64(n))
		}
		r, g, b, _ := sr.c.RGBA()
		h := &plotter.Histogram{Bins: bins, Width: w,
			FillColor: color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 0x90},
			LineStyle: draw.LineStyle{Color: sr.c, Width: vg.Points(0.5)}}
		p.Add(h)
		p.Legend.Add(sr.name, h)
	}
	if threshold > 0 {
		l, err := plotter.NewLine(plotter.XYs{{X: threshold, Y: 0}, {X: threshold, Y: p.Y.Max}})
		if err != nil {
			return nil, err
		}
		l.Color, l.Width, l.Dashes = color.Black, vg.Points(1.2), []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("threshold %.2f", threshold), l)
	}
	return p, nil
}

// refusalsChart: guard refusals by reason since start.
func refusalsChart(s semantic.Snapshot) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "neighbours refused since start"
	reasons, counts := Refusals(s)
	vals := make(plotter.Values, len(counts))
	for i, n := range counts {
		vals[i] = float64(n)
	}
	b, err := plotter.NewBarChart(vals, vg.Points(9))
	if err != nil {
		return nil, err
	}
	b.Horizontal, b.Color, b.LineStyle.Width = true, refusedColor, 0
	p.Add(b)
	p.NominalY(reasons...)
	p.X.Min, p.X.Max = 0, 1
	for _, v := range vals {
		p.X.Max = max(p.X.Max, v)
	}
	return p, nil
}

// Refusals returns the guard refusal reasons of s and their counts, in
// the order of semantic.RefusalReasons.
func Refusals(s semantic.Snapshot) ([]string, []int64) {
	g := s.GuardRefusals
	byReason := map[string]int64{
		semantic.FlipNegation: g.Negation, semantic.FlipNumber: g.Number, semantic.FlipLiteral: g.Literal,
		semantic.FlipOpposite: g.Opposite, semantic.FlipRoles: g.Roles, semantic.FlipSubstitution: g.Substitution,
		"token": g.Token, semantic.RefusedContext: g.Context, semantic.RefusedTemplate: g.Template,
	}
	reasons := append([]string(nil), semantic.RefusalReasons[:]...)
	counts := make([]int64, len(reasons))
	for i, r := range reasons {
		counts[i] = byReason[r]
	}
	return reasons, counts
}

// adaptiveChart: the adaptive policy's estimated error rate of what it
// served, the wrong share of its verifications, and the bound δ.
func adaptiveChart(s semantic.Snapshot) (*plot.Plot, error) {
	p := plot.New()
	p.Y.Label.Text = "rate"
	measured := 0.0
	if n := s.VerifiedRight + s.VerifiedWrong; n > 0 {
		measured = float64(s.VerifiedWrong) / float64(n)
	}
	vals := plotter.Values{s.EstimatedErrorRate, measured, s.MaxErrorRate}
	b, err := plotter.NewBarChart(vals, vg.Points(40))
	if err != nil {
		return nil, err
	}
	b.Color, b.LineStyle.Width = classColor[ClassSemantic], 0
	p.Add(b)
	p.NominalX("estimated wrong hits / requests", "wrong / verified", "δ (--max-error-rate)")
	p.Y.Min, p.Y.Max = 0, max(0.01, s.EstimatedErrorRate, measured, s.MaxErrorRate)*1.1
	return p, nil
}
