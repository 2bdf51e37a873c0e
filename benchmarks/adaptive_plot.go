package benchmarks

import (
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Size of adaptive.png: two panels side by side, adaptivePlotWidthPx ×
// plotHeightPx pixels at plotDPI dots per inch.
const adaptivePlotWidthPx = 1600

// deltaColours are the colours of the δ series, in order (Okabe–Ito, after
// the colours of tune.png); they repeat past the sixth δ.
var deltaColours = []color.Color{
	precisionColour, markerColour, f1Colour,
	color.RGBA{R: 0xcc, G: 0x79, B: 0xa7, A: 0xff}, // reddish purple
	color.RGBA{R: 0x56, G: 0xb4, B: 0xe9, A: 0xff}, // sky blue
	color.RGBA{R: 0xf0, G: 0xe4, B: 0x42, A: 0xff}, // yellow
}

// writeAdaptivePlot draws rep as a PNG of two panels. Left: the cumulative
// error rate (wrong cached answers / requests so far, mean over the
// shuffles) against the number of requests, one line per δ, with a dashed
// horizontal line at each δ in the same colour. Right: hit rate against
// error rate (both means over the shuffles): the static thresholds as one
// curve, and one point per δ for the adaptive policy.
func writeAdaptivePlot(w io.Writer, rep *AdaptiveReport) error {
	if len(rep.Summary) == 0 {
		return fmt.Errorf("no runs to plot")
	}
	left, err := adaptiveErrorPanel(rep)
	if err != nil {
		return err
	}
	right, err := adaptiveFrontierPanel(rep)
	if err != nil {
		return err
	}
	c := vgimg.NewWith(
		vgimg.UseWH(vg.Length(adaptivePlotWidthPx)*vg.Inch/plotDPI, vg.Length(plotHeightPx)*vg.Inch/plotDPI),
		vgimg.UseDPI(plotDPI),
		vgimg.UseBackgroundColor(color.White),
	)
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(12), PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(6)}
	canvases := plot.Align([][]*plot.Plot{{left, right}}, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])
	_, err = vgimg.PngCanvas{Canvas: c}.WriteTo(w)
	return err
}

// adaptiveErrorPanel is the left panel of adaptive.png.
func adaptiveErrorPanel(rep *AdaptiveReport) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("adaptive policy: cumulative error (mean of %d shuffles)", rep.Config.Shuffles)
	p.X.Label.Text = "requests"
	p.Y.Label.Text = "error rate (wrong cached answers / requests)"
	p.X.Min = 0
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	ymax := 0.0
	for i, d := range rep.Config.MaxErrorRates {
		colour := deltaColours[i%len(deltaColours)]
		reqs, errs := meanCurve(rep.Summary, func(r RunSummary) bool { return r.Delta != nil && *r.Delta == d })
		if len(reqs) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(reqs))
		for j := range reqs {
			xys[j] = plotter.XY{X: float64(reqs[j]), Y: errs[j]}
			ymax = max(ymax, errs[j])
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.LineStyle.Color, l.LineStyle.Width = colour, vg.Points(2)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("δ = %v", d), l)
		bound, err := plotter.NewLine(plotter.XYs{{X: 0, Y: d}, {X: float64(rep.Requests), Y: d}})
		if err != nil {
			return nil, err
		}
		bound.LineStyle.Color, bound.LineStyle.Width = colour, vg.Points(1)
		bound.LineStyle.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		p.Add(bound)
		ymax = max(ymax, d)
	}
	p.X.Max = float64(rep.Requests)
	p.Y.Max = ymax * 1.15
	if p.Y.Max == 0 {
		p.Y.Max = 0.01
	}
	p.Legend.Top = true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(-8), vg.Points(-8)
	return p, nil
}

// adaptiveFrontierPanel is the right panel of adaptive.png. Its error
// axis stops at twice the largest δ (or the largest adaptive error, if
// higher): the comparison is at low error rates, and the static curve,
// which goes on to much higher ones, is clipped there.
func adaptiveFrontierPanel(rep *AdaptiveReport) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("hit rate vs error rate, %s", rep.Embedder)
	p.X.Label.Text = "error rate (mean over shuffles)"
	p.Y.Label.Text = "hit rate (mean over shuffles)"
	p.Add(plotter.NewGrid())
	xmax := 0.0
	for _, c := range rep.Comparison {
		xmax = max(xmax, 2*c.Delta, c.MeanErrorRate)
	}
	xmax *= 1.05
	ymax := 0.0
	if len(rep.Static) > 0 {
		all := make(plotter.XYs, len(rep.Static))
		var shown plotter.XYs
		for i, s := range rep.Static {
			all[i] = plotter.XY{X: s.MeanErrorRate, Y: s.MeanHitRate}
			if s.MeanErrorRate <= xmax {
				shown = append(shown, all[i])
				ymax = max(ymax, s.MeanHitRate)
			}
		}
		l, err := plotter.NewLine(all)
		if err != nil {
			return nil, err
		}
		l.LineStyle.Color, l.LineStyle.Width = hitRateColour, vg.Points(1.5)
		p.Add(l)
		lo, hi := rep.Static[0].Threshold, rep.Static[len(rep.Static)-1].Threshold
		label := fmt.Sprintf("static thresholds %s..%s", formatThreshold(lo), formatThreshold(hi))
		if len(shown) > 0 {
			sc, err := plotter.NewScatter(shown)
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle.Color, sc.GlyphStyle.Radius, sc.GlyphStyle.Shape = hitRateColour, vg.Points(2), draw.CircleGlyph{}
			p.Add(sc)
			p.Legend.Add(label, l, sc)
		} else {
			p.Legend.Add(label, l)
		}
	}
	for i, c := range rep.Comparison {
		colour := deltaColours[i%len(deltaColours)]
		sc, err := plotter.NewScatter(plotter.XYs{{X: c.MeanErrorRate, Y: c.MeanHitRate}})
		if err != nil {
			return nil, err
		}
		sc.GlyphStyle.Color, sc.GlyphStyle.Radius, sc.GlyphStyle.Shape = colour, vg.Points(5), draw.PyramidGlyph{}
		p.Add(sc)
		p.Legend.Add(fmt.Sprintf("adaptive δ = %v", c.Delta), sc)
		ymax = max(ymax, c.MeanHitRate)
	}
	p.X.Min, p.X.Max = 0, max(xmax, 0.01)
	p.Y.Min, p.Y.Max = 0, min(1, max(0.05, ymax*1.25))
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), vg.Points(-8)
	return p, nil
}
