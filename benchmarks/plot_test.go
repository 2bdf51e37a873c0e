package benchmarks

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteTuneFilesPlot(t *testing.T) {
	for _, tt := range []struct {
		name string
		rows []TuneRow
	}{
		{"recommendation found", fiveQueriesRows},
		{"no threshold reaches the target", fiveQueriesRows[:4]},
		{"a single threshold without hits", fiveQueriesRows[5:]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := &TuneReport{Embedder: "fake:map:3", Backend: backendExact, Format: formatIntents, TargetPrecision: 0.99,
				Rows: tt.rows, Recommendation: recommend(tt.rows, 0.99)}
			dir := filepath.Join(t.TempDir(), "out")
			if err := writeTuneFiles(dir, rep); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(dir, "tune.png"))
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("tune.png does not decode: %v", err)
			}
			if b := img.Bounds(); b.Dx() != plotWidthPx || b.Dy() != plotHeightPx {
				t.Errorf("tune.png is %dx%d, want %dx%d", b.Dx(), b.Dy(), plotWidthPx, plotHeightPx)
			}
		})
	}
}
