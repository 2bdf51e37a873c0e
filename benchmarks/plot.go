package benchmarks

import (
	"fmt"
	"image/color"
	"io"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Size of tune.png: plotWidthPx × plotHeightPx pixels at plotDPI dots per
// inch (10 × 6.25 inches).
const (
	plotWidthPx  = 960
	plotHeightPx = 600
	plotDPI      = 96
)

// Colours of the plot's series (Okabe–Ito, distinguishable with the
// common colour-vision deficiencies).
var (
	precisionColour = color.RGBA{R: 0x00, G: 0x72, B: 0xb2, A: 0xff} // blue
	hitRateColour   = color.RGBA{R: 0xe6, G: 0x9f, B: 0x00, A: 0xff} // orange
	f1Colour        = color.RGBA{R: 0x00, G: 0x9e, B: 0x73, A: 0xff} // green
	markerColour    = color.RGBA{R: 0xd5, G: 0x5e, B: 0x00, A: 0xff} // vermilion
	targetColour    = color.Gray{Y: 0x70}
)

// writeTunePlot draws rep as a PNG of plotWidthPx × plotHeightPx pixels:
// precision, hit rate and F1 (fractions in [0, 1]) against the threshold
// (cosine similarity), with a dotted horizontal line at the target
// precision, a dashed vertical line at the recommended threshold when
// there is one, and a legend. Undefined rates (nil, e.g. precision without
// hits) are left out of their line.
func writeTunePlot(w io.Writer, rep *TuneReport) error {
	if len(rep.Rows) == 0 {
		return fmt.Errorf("no rows to plot")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("semcache bench tune: %s, %s, backend %s", rep.Format, rep.Embedder, rep.Backend)
	p.X.Label.Text = "threshold (minimum cosine similarity)"
	p.Y.Label.Text = "rate"
	lo, hi := rep.Rows[0].Threshold, rep.Rows[len(rep.Rows)-1].Threshold
	if lo == hi {
		lo, hi = lo-0.01, hi+0.01
	}
	p.X.Min, p.X.Max = lo, hi
	p.Y.Min, p.Y.Max = 0, 1
	p.Y.Tick.Marker = rateTicks{}
	p.Add(plotter.NewGrid())

	series := []struct {
		name   string
		colour color.Color
		value  func(TuneRow) *float64
	}{
		{"precision", precisionColour, func(r TuneRow) *float64 { return r.Precision }},
		{"hit rate", hitRateColour, func(r TuneRow) *float64 { return &r.HitRate }},
		{"F1", f1Colour, func(r TuneRow) *float64 { return r.F1 }},
	}
	for _, s := range series {
		var xys plotter.XYs
		for _, r := range rep.Rows {
			if v := s.value(r); v != nil {
				xys = append(xys, plotter.XY{X: r.Threshold, Y: *v})
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.LineStyle.Color, l.LineStyle.Width = s.colour, vg.Points(2)
		p.Add(l)
		p.Legend.Add(s.name, l)
	}

	rec := rep.Recommendation
	target, err := plotter.NewLine(plotter.XYs{{X: lo, Y: rec.TargetPrecision}, {X: hi, Y: rec.TargetPrecision}})
	if err != nil {
		return err
	}
	target.LineStyle.Color, target.LineStyle.Width = targetColour, vg.Points(1)
	target.LineStyle.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
	p.Add(target)
	p.Legend.Add(fmt.Sprintf("target precision %v", rec.TargetPrecision), target)
	if rec.Found && rec.Row != nil {
		t := rec.Row.Threshold
		mark, err := plotter.NewLine(plotter.XYs{{X: t, Y: 0}, {X: t, Y: 1}})
		if err != nil {
			return err
		}
		mark.LineStyle.Color, mark.LineStyle.Width = markerColour, vg.Points(1.5)
		mark.LineStyle.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		p.Add(mark)
		p.Legend.Add(fmt.Sprintf("recommended %s (precision %.3f, hit rate %.3f)",
			formatThreshold(t), *rec.Row.Precision, rec.Row.HitRate), mark)
	} else {
		p.Title.Text += fmt.Sprintf("\nno threshold reaches precision %v", rec.TargetPrecision)
	}
	// Bottom left: at low thresholds the rates are usually high, so the
	// corner is empty.
	p.Legend.Top, p.Legend.Left = false, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), vg.Points(8)

	c := vgimg.NewWith(
		vgimg.UseWH(vg.Length(plotWidthPx)*vg.Inch/plotDPI, vg.Length(plotHeightPx)*vg.Inch/plotDPI),
		vgimg.UseDPI(plotDPI),
		vgimg.UseBackgroundColor(color.White),
	)
	p.Draw(draw.New(c))
	_, err = vgimg.PngCanvas{Canvas: c}.WriteTo(w)
	return err
}

// rateTicks marks the rate axis every 0.1, labelled every 0.2.
type rateTicks struct{}

// Ticks returns the marks that fall in [lo, hi] (plot.Ticker).
func (rateTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for i := 0; i <= 10; i++ {
		v := float64(i) / 10
		if v < lo || v > hi {
			continue
		}
		t := plot.Tick{Value: v}
		if i%2 == 0 {
			t.Label = strconv.FormatFloat(v, 'f', 1, 64)
		}
		ts = append(ts, t)
	}
	return ts
}
