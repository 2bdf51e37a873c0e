package benchmarks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// writeReportFiles writes dir/NAME.csv (by writeCSV), dir/NAME.json (rep,
// indented) and dir/NAME.png (by writePlot), creating dir. It is the output
// step shared by bench tune and bench adaptive.
func writeReportFiles(dir, name string, rep any, writeCSV, writePlot func(io.Writer) error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b bytes.Buffer
	if err := writeCSV(&b); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".csv"), b.Bytes(), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	var png bytes.Buffer
	if err := writePlot(&png); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, name+".png"), png.Bytes(), 0o644)
}
