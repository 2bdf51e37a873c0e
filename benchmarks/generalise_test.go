package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/embedding/train"
)

// writeTinySets writes a banking77/ and a snips/ set of six intents each
// under dir, in the layout and formats of ../shared/data.
func writeTinySets(t *testing.T, dir string) {
	t.Helper()
	write := func(rel, header, sep string, rows [][2]string) {
		var b strings.Builder
		b.WriteString(header + "\n")
		for _, r := range rows {
			b.WriteString(r[0] + sep + r[1] + "\n")
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rows := func(objects []string, templates []string, first, n int) [][2]string {
		var out [][2]string
		for _, o := range objects {
			for i := first; i < first+n; i++ {
				out = append(out, [2]string{fmt.Sprintf(templates[i%len(templates)], o), "about_" + strings.ReplaceAll(o, " ", "_")})
			}
		}
		return out
	}
	bank := []string{"card", "loan", "pin", "transfer", "refund", "statement"}
	bankT := []string{"my %s is not working", "help with my %s", "question about the %s", "i need my %s today", "what happened to my %s", "the %s please"}
	write("banking77/train.csv", "text,category", ",", rows(bank, bankT, 0, 5))
	write("banking77/test.csv", "text,category", ",", rows(bank, bankT, 5, 1))
	music := []string{"jazz", "rock", "weather", "film", "book", "restaurant"}
	musicT := []string{"play some %s", "find me a %s", "i want %s now", "show the %s", "what %s is on", "\"%s\" tonight"}
	write("snips/train.tsv", "text\tlabel", "\t", rows(music, musicT, 0, 5))
	write("snips/test.tsv", "text\tlabel", "\t", rows(music, musicT, 5, 1))
}

func TestGeneraliseWritesTableAndPlot(t *testing.T) {
	data, out := t.TempDir(), t.TempDir()
	writeTinySets(t, data)
	o := generaliseOptions{DataDir: data, Targets: []float64{0.9, 0.95}, Epochs: 3, Seed: 1, InDomain: []string{"banking77"},
		calibrate: train.CalibrateConfig{Alphas: []float64{train.DefaultAlpha}},
		params:    embedding.ModelParams{Buckets: 1 << 12, Dim: 16}}
	var progress bytes.Buffer
	rows, err := runGeneralise(context.Background(), o, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(rows) != 3 || rows[0].Set != "banking77" || rows[1].Set != "snips" || !rows[2].InDomain {
		t.Fatalf("rows %+v: want banking77 and snips left out, then banking77 in domain", rows)
	}
	if got := strings.Join(rows[0].Train, ","); got != "snips" {
		t.Errorf("banking77 left out, trained on %q, want snips", got)
	}
	for _, r := range rows {
		if len(r.Results) != 2 || r.Results[0].Embedder != "lexical" || r.Results[1].Embedder != "trained" {
			t.Fatalf("%s: results %+v, want lexical then trained", r.Set, r.Results)
		}
		for _, res := range r.Results {
			for i, hr := range res.HitRate {
				if ci := res.HitRateCI95[i]; hr > 0 && !(ci[0] <= hr && hr <= ci[1]) {
					t.Errorf("%s %s: hit rate %v outside its interval %v", r.Set, res.Embedder, hr, ci)
				}
			}
		}
	}
	table := generaliseTable(rows, o.Targets)
	if !strings.Contains(table, "banking77 (in domain)") || !strings.Contains(table, "trained − lexical over the left-out sets") {
		t.Errorf("table:\n%s", table)
	}
	// The command writes the three files.
	var stdout, stderr bytes.Buffer
	err = runGeneraliseCommand(context.Background(), []string{"--data-dir", data, "--out", out, "--epochs", "1", "--in-domain", "none"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	var got []GeneraliseRow
	b, err := os.ReadFile(filepath.Join(out, "generalise.json"))
	if err != nil || json.Unmarshal(b, &got) != nil || len(got) != 2 {
		t.Fatalf("generalise.json: %d rows, %v", len(got), err)
	}
	f, err := os.Open(filepath.Join(out, "generalise.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() != plotWidthPx {
		t.Errorf("generalise.png: %v, width %d", err, img.Bounds().Dx())
	}
	if !strings.Contains(stderr.String(), "not present") {
		t.Errorf("the sets missing from the data directory are not reported:\n%s", stderr.String())
	}
}

func TestGeneraliseRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--targets", "1.5"}, {"--alphas", "1"}, {"--max-train", "-1"}, {"--sets", "nope"}} {
		err := runGeneraliseCommand(context.Background(), append([]string{"--data-dir", t.TempDir()}, args...), &bytes.Buffer{}, &bytes.Buffer{})
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestGeneraliseTrainsAsEmbedderTrain: --seed seeds the model's rows too,
// as embedder train --seed does, so the in-domain row is the model the
// operator's `embedder train` makes.
func TestGeneraliseTrainsAsEmbedderTrain(t *testing.T) {
	for _, seed := range []uint64{1, 7} {
		o := generaliseOptions{Seed: seed, Epochs: 3}
		c := o.trainConfig(io.Discard)
		if c.Params.Seed != seed || c.Seed != seed || c.Epochs != 3 {
			t.Errorf("--seed %d: rows seeded %d, split/order seed %d, epochs %d", seed, c.Params.Seed, c.Seed, c.Epochs)
		}
	}
}
