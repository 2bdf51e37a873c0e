package benchmarks

import (
	"fmt"
	"image/color"
	"io"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// generaliseTable renders the rows as a Markdown table: per set, every
// embedder's hit rate at each target precision with its bootstrap 95%
// interval, the trained model's gain over the lexical embedder, and, under
// the left-out rows, the mean gain.
func generaliseTable(rows []GeneraliseRow, targets []float64) string {
	var b strings.Builder
	b.WriteString("| left-out set | trained on | α | embedder |")
	for _, t := range targets {
		fmt.Fprintf(&b, " hit rate at precision ≥ %.2f (95%% CI) |", t)
	}
	b.WriteString("\n|---|---|---:|---|")
	for range targets {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	gains := make([][]float64, len(targets))
	for _, r := range rows {
		set, trainedOn := r.Set, fmt.Sprintf("%d other sets (%d texts)", len(r.Train), r.TrainTexts)
		if r.InDomain {
			set, trainedOn = r.Set+" (in domain)", fmt.Sprintf("its own train split (%d texts)", r.TrainTexts)
		}
		var lexical []float64
		for _, res := range r.Results {
			fmt.Fprintf(&b, "| %s | %s | %.2f | %s |", set, trainedOn, r.Alpha, res.Embedder)
			for i := range targets {
				fmt.Fprintf(&b, " %.3f (%.3f–%.3f) |", res.HitRate[i], res.HitRateCI95[i][0], res.HitRateCI95[i][1])
			}
			b.WriteString("\n")
			switch res.Embedder {
			case "lexical":
				lexical = res.HitRate
			case "trained":
				if !r.InDomain && lexical != nil {
					for i := range targets {
						gains[i] = append(gains[i], res.HitRate[i]-lexical[i])
					}
				}
			}
		}
	}
	b.WriteString("\nAt the threshold stored in the model (serve's default):\n\n| set | stored threshold | hit rate | precision |\n|---|---:|---:|---:|\n")
	for _, r := range rows {
		for _, res := range r.Results {
			if a := res.AtStored; a != nil {
				set := r.Set
				if r.InDomain {
					set += " (in domain)"
				}
				fmt.Fprintf(&b, "| %s | %.2f | %.3f | %s |\n", set, a.Threshold, a.HitRate, optRate(a.Precision, "-"))
			}
		}
	}
	if len(gains[0]) > 0 {
		b.WriteString("\n| trained − lexical over the left-out sets |")
		for i, t := range targets {
			sum, worst := 0.0, gains[i][0]
			for _, g := range gains[i] {
				sum += g
				worst = min(worst, g)
			}
			fmt.Fprintf(&b, " at ≥ %.2f: mean %+.3f, worst %+.3f |", t, sum/float64(len(gains[i])), worst)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// writeGeneralisePlot draws, per left-out set, the lexical and the trained
// embedder's hit rate at precision >= target as points side by side with
// their bootstrap 95% intervals, as a PNG of plotWidthPx × plotHeightPx.
func writeGeneralisePlot(w io.Writer, rows []GeneraliseRow, target float64) error {
	var names []string
	var lex, tr plotter.Values
	var lexErr, trErr plotter.YErrors
	for _, r := range rows {
		if r.InDomain {
			continue
		}
		names = append(names, r.Set)
		for _, res := range r.Results {
			e := struct{ Low, High float64 }{res.HitRate[0] - res.HitRateCI95[0][0], res.HitRateCI95[0][1] - res.HitRate[0]}
			switch res.Embedder {
			case "lexical":
				lex = append(lex, res.HitRate[0])
				lexErr = append(lexErr, e)
			case "trained":
				tr = append(tr, res.HitRate[0])
				trErr = append(trErr, e)
			}
		}
	}
	if len(names) == 0 || len(lex) != len(names) || len(tr) != len(names) {
		return fmt.Errorf("no left-out rows with both embedders to plot")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("semcache bench generalise: hit rate at precision ≥ %.2f on the left-out set", target)
	p.Y.Label.Text = "hit rate"
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	for _, s := range []struct {
		name   string
		vals   plotter.Values
		errs   plotter.YErrors
		colour color.Color
		dx     float64
	}{{"lexical", lex, lexErr, hitRateColour, -0.12}, {"trained (default)", tr, trErr, precisionColour, 0.12}} {
		pts := make(plotter.XYs, len(s.vals))
		for j, v := range s.vals {
			pts[j] = plotter.XY{X: float64(j) + s.dx, Y: v}
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color, sc.GlyphStyle.Radius = s.colour, vg.Points(4)
		eb, err := plotter.NewYErrorBars(struct {
			plotter.XYs
			plotter.YErrors
		}{pts, s.errs})
		if err != nil {
			return err
		}
		eb.LineStyle.Color = s.colour
		p.Add(eb, sc)
		p.Legend.Add(s.name, sc)
	}
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5
	p.Legend.Top = true
	p.NominalX(names...)
	c := vgimg.NewWith(vgimg.UseWH(vg.Length(plotWidthPx)*vg.Inch/plotDPI, vg.Length(plotHeightPx)*vg.Inch/plotDPI),
		vgimg.UseDPI(plotDPI), vgimg.UseBackgroundColor(color.White))
	p.Draw(draw.New(c))
	_, err := vgimg.PngCanvas{Canvas: c}.WriteTo(w)
	return err
}
