package main

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/embedding/train"
)

func TestEmbedderTrainWritesModel(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "intents.csv")
	csv := "text,category\n" +
		"my card has not arrived,arrival\nwhen will my card arrive,arrival\nwhere is my new card,arrival\n" +
		"my card was stolen,lost\ni lost my card,lost\nsomeone took my card,lost\n"
	if err := os.WriteFile(data, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "model.sem")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"embedder", "train", "--data", data, "--out", out,
		"--buckets", "4096", "--dim", "16", "--alpha", "0.25", "--epochs", "2", "--batch", "4", "--dev-fraction", "-1"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "fingerprint trained:") {
		t.Errorf("stdout %q does not name the fingerprint", stdout.String())
	}
	emb, err := embedding.LoadTrained(out)
	if err != nil {
		t.Fatal(err)
	}
	if p := emb.Params(); p.Buckets != 4096 || p.Dim != 16 || p.Alpha != 0.25 {
		t.Errorf("params %+v, want 4096 buckets, dim 16, alpha 0.25", p)
	}

	// The model serves: serve's embedder wiring loads it.
	c, err := parseServe([]string{"--embedder", "trained", "--embedder-model", out, "--threshold", "0.8"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cached, err := c.newEmbedder(context.Background(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if cached.Fingerprint() != emb.Fingerprint() || cached.Dim() != 16+embedding.DefaultLocalDim {
		t.Errorf("serve embedder %q dim %d, want %q dim %d", cached.Fingerprint(), cached.Dim(), emb.Fingerprint(), 16+embedding.DefaultLocalDim)
	}
}

// TestServeTakesTheModelThreshold: without --threshold, serve uses the
// threshold stored in the model file, and refuses a model that has none
// with an error naming --threshold; --threshold still wins.
func TestServeTakesTheModelThreshold(t *testing.T) {
	dir := t.TempDir()
	m := &embedding.Model{Params: embedding.ModelParams{Buckets: 64, Dim: 4}.WithDefaults(), Threshold: 0.83}
	with, without := filepath.Join(dir, "with.sem"), filepath.Join(dir, "without.sem")
	if err := embedding.SaveModel(with, m, embedding.Float32Rows); err != nil {
		t.Fatal(err)
	}
	m.Threshold = 0
	if err := embedding.SaveModel(without, m, embedding.Float32Rows); err != nil {
		t.Fatal(err)
	}
	c, err := parseServe([]string{"--embedder", "trained", "--embedder-model", with}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.thresholdValue(); math.Abs(got-0.83) > 1e-6 {
		t.Errorf("threshold %v, want the model's 0.83", got)
	}
	c, err = parseServe([]string{"--embedder", "trained", "--embedder-model", with, "--threshold", "0.9"}, env(nil), &bytes.Buffer{})
	if err != nil || c.thresholdValue() != 0.9 {
		t.Errorf("--threshold 0.9 with a model threshold: %v %v, want 0.9", c.thresholdValue(), err)
	}
	if _, err := parseServe([]string{"--embedder", "trained", "--embedder-model", without}, env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--threshold") {
		t.Errorf("a model without a threshold: %v, want an error naming --threshold", err)
	}
}

// TestEmbedderHelp: -h on "embedder" and on "embedder train" prints, on
// stdout, the subcommand and every flag of train with its value name.
func TestEmbedderHelp(t *testing.T) {
	var flags []string
	trainFlags(&trainOptions{}).VisitAll(func(f *flag.Flag) { flags = append(flags, f.Name) })
	if len(flags) < 10 {
		t.Fatalf("train has %d flags; the test would check nothing", len(flags))
	}
	for _, args := range [][]string{{"embedder", "-h"}, {"embedder", "--help"}, {"embedder", "train", "-h"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
			t.Errorf("%v: exit %d, stderr %q; want 0 and nothing", args, code, stderr.String())
		}
		help := stdout.String()
		if args[1] != "train" && !strings.Contains(help, "\n  train ") {
			t.Errorf("%v: the train subcommand is not listed:\n%s", args, help)
		}
		for _, name := range flags {
			if !strings.Contains(help, "\n  --"+name+" ") && !strings.Contains(help, "\n  --"+name+"\n") {
				t.Errorf("%v: --%s is not listed:\n%s", args, name, help)
			}
		}
		for _, want := range []string{"--data FILE", "--out FILE", "--epochs int (default 5)", "--format FORMAT (default intents)"} {
			if !strings.Contains(help, want) {
				t.Errorf("%v: help lacks %q", args, want)
			}
		}
	}
}

func TestEmbedderTrainUsage(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		code    int
		mention string
	}{
		{"no subcommand", []string{"embedder"}, 2, "usage"},
		{"unknown subcommand", []string{"embedder", "fit"}, 2, `unknown command "fit"`},
		{"unknown flag", []string{"embedder", "train", "--bogus"}, 2, "flag provided but not defined: --bogus"},
		{"bad flag value", []string{"embedder", "train", "--epochs", "many"}, 2, "--epochs"},
		{"no data", []string{"embedder", "train", "--out", "m.sem"}, 2, "--data is required"},
		{"no out", []string{"embedder", "train", "--data", "x.csv"}, 2, "--out is required"},
		{"bad format", []string{"embedder", "train", "--format", "xml", "--data", "x.csv", "--out", "m.sem"}, 2, "--format"},
		{"missing file", []string{"embedder", "train", "--data", "/nonexistent/x.csv", "--out", "m.sem"}, 1, "nonexistent"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, &stdout, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.mention) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tc.mention)
			}
		})
	}
}

func TestLoadTrainingData(t *testing.T) {
	td := filepath.Join("..", "..", "benchmarks", "testdata")
	cases := []struct {
		name string
		src  dataSource
		want []train.Example
	}{
		{"intents tsv", dataSource{path: filepath.Join(td, "labelled.tsv"), format: "intents", textCol: "sentence", labelCol: "label"},
			[]train.Example{{Text: "You guys provide EMI option?", Label: "3:EMI"}, {Text: "What sizes are there", Label: "3:SIZE"}}},
		{"clinc train and val only", dataSource{path: filepath.Join(td, "clinc.json"), format: "clinc"},
			[]train.Example{{Text: "what is my balance", Label: "3:balance"}, {Text: "book a flight to paris", Label: "3:book_flight"}, {Text: "how much money do i have", Label: "3:balance"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadTrainingData(tc.src, 3, "")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("pairs keep duplicates only", func(t *testing.T) {
		got, err := loadTrainingData(dataSource{path: filepath.Join(td, "pairs.csv"), format: "pairs"}, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(got)%2 != 0 || len(got) == 0 {
			t.Fatalf("%d texts, want pairs", len(got))
		}
		for i := 0; i < len(got); i += 2 {
			if got[i].Label != got[i+1].Label {
				t.Errorf("pair %d has labels %q and %q", i/2, got[i].Label, got[i+1].Label)
			}
		}
		for _, ex := range got {
			if ex.Text == "Is Rust a good language?" {
				t.Error("a non-duplicate pair was kept")
			}
		}
	})
	t.Run("oos label left out", func(t *testing.T) {
		got, err := loadTrainingData(dataSource{path: filepath.Join(td, "labelled.tsv"), format: "intents", textCol: "sentence", labelCol: "label"}, 0, "EMI")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Label != "0:SIZE" {
			t.Errorf("got %q, want only the SIZE text", got)
		}
	})
}
