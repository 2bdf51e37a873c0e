package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/semcache/semcache/benchmarks"
	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/embedding/train"
)

const embedderUsage = `usage: semcache embedder train --data FILE [--data FILE ...] --out model.sem [flags]

Trains the local embedding-bag model on labelled texts: texts with the same
label (intent, or the two sides of a duplicate pair) are pulled together.
Each --data uses the --format, --text-col and --label-col in force where it
appears, or, when none of them came before it, the last ones given.
  intents  CSV/TSV with a text and a label column
  pairs    CSV/TSV with question1, question2, is_duplicate (duplicates only)
  clinc    CLINC150 JSON; its train and val splits are used (not test, not oos)

flags:
`

// embedder runs "semcache embedder ...".
func embedder(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "train" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, embedderUsage)
			return 0
		}
		fmt.Fprint(stderr, embedderUsage)
		return 2
	}
	err := embedderTrain(ctx, args[1:], stdout, stderr)
	var ue *usageErr
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "semcache embedder train: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "semcache embedder train: %v\n", err)
		return 1
	}
}

// usageErr marks a command-line mistake (exit status 2).
type usageErr struct{ msg string }

func (e *usageErr) Error() string { return e.msg }

// dataSource is one --data file with the format and columns in force.
type dataSource struct {
	path, format, textCol, labelCol string
	explicit                        bool // a --format, --text-col or --label-col preceded it
}

// dataFlag collects --data in order, capturing the current format options.
type dataFlag struct {
	list              *[]dataSource
	format, text, lbl *string
	formatSet         *bool
}

func (d dataFlag) String() string { return "" }

func (d dataFlag) Set(path string) error {
	*d.list = append(*d.list, dataSource{path: path, format: *d.format, textCol: *d.text, labelCol: *d.lbl, explicit: *d.formatSet})
	return nil
}

// trackedString is a string flag that records that it was set.
type trackedString struct {
	v   *string
	set *bool
}

func (s trackedString) String() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}
func (s trackedString) Set(v string) error { *s.v, *s.set = v, true; return nil }

func embedderTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("semcache embedder train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		sources                   []dataSource
		format, textCol, labelCol = "intents", "text", "category"
		formatSet                 bool
		out                       string
		cfg                       train.Config
		alpha                     float64
		float32Rows               bool
		oosLabel                  string
	)
	fs.Var(trackedString{&format, &formatSet}, "format", "format of the following --data: intents, pairs or clinc (default intents)")
	fs.Var(trackedString{&textCol, &formatSet}, "text-col", "text column of the following intents --data (default text)")
	fs.Var(trackedString{&labelCol, &formatSet}, "label-col", "label column of the following intents --data (default category)")
	fs.Var(dataFlag{&sources, &format, &textCol, &labelCol, &formatSet}, "data", "training data `FILE`; repeatable")
	fs.StringVar(&oosLabel, "oos-label", "", "label of out-of-scope texts (e.g. NO_NODES_DETECTED) to leave out of training")
	fs.StringVar(&out, "out", "", "model `FILE` to write (e.g. model.sem)")
	fs.IntVar(&cfg.Params.Buckets, "buckets", embedding.DefaultTrainedBuckets, "number of hashed feature rows")
	fs.IntVar(&cfg.Params.Dim, "dim", embedding.DefaultTrainedDim, "length of each learned row")
	fs.Uint64Var(&cfg.Params.Seed, "seed", 1, "seed of the initial rows, the dev split and the batch order")
	fs.Float64Var(&alpha, "alpha", 0, "weight in [0, 1) of the lexical similarity mixed into the served vector; 0: learned only")
	fs.IntVar(&cfg.Epochs, "epochs", train.DefaultEpochs, "passes over the data")
	fs.IntVar(&cfg.BatchSize, "batch", train.DefaultBatchSize, "positive pairs per step")
	fs.Float64Var(&cfg.Temperature, "temperature", train.DefaultTemperature, "InfoNCE temperature")
	fs.Float64Var(&cfg.LearningRate, "lr", train.DefaultLearningRate, "Adam learning rate")
	fs.Float64Var(&cfg.DevFraction, "dev-fraction", train.DefaultDevFraction, "share of texts held out to pick the best epoch; negative: none")
	fs.BoolVar(&cfg.HardNegatives, "hard-negatives", false, "batch together intents whose centroids are close (re-mined each epoch) instead of random batches")
	fs.BoolVar(&float32Rows, "float32", false, "store rows as float32 (bit-exact, 4x larger) instead of int8 with a per-row scale")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), embedderUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageErr{err.Error()}
	}
	switch {
	case fs.NArg() > 0:
		return &usageErr{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	case len(sources) == 0:
		return &usageErr{"--data is required"}
	case out == "":
		return &usageErr{"--out is required"}
	}
	cfg.Params.Alpha = float32(alpha)
	cfg.Seed = cfg.Params.Seed
	cfg.Progress = stderr
	var examples []train.Example
	for i, src := range sources {
		if !src.explicit {
			src.format, src.textCol, src.labelCol = format, textCol, labelCol
		}
		exs, err := loadTrainingData(src, i, oosLabel)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "%s: %d texts (%s)\n", src.path, len(exs), src.format)
		examples = append(examples, exs...)
	}
	start := time.Now()
	res, err := train.Train(ctx, examples, cfg)
	if err != nil {
		return err
	}
	enc := embedding.Int8Rows
	if float32Rows {
		enc = embedding.Float32Rows
	}
	if err := embedding.SaveModel(out, res.Model, enc); err != nil {
		return err
	}
	emb, err := embedding.LoadTrained(out)
	if err != nil {
		return fmt.Errorf("re-read %s: %w", out, err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d trained rows, best epoch %d, trained in %s\nfingerprint %s\n",
		out, len(res.Model.Rows), res.BestEpoch, time.Since(start).Round(time.Millisecond), emb.Fingerprint())
	return nil
}

// loadTrainingData reads one --data source, leaving out texts labelled
// oosLabel (when not empty) and empty texts. Labels are prefixed with the
// source's position so that equal label names in different files are not
// taken for the same intent.
func loadTrainingData(src dataSource, i int, oosLabel string) ([]train.Example, error) {
	prefix := strconv.Itoa(i) + ":"
	var labelled []benchmarks.Example
	switch src.format {
	case "intents":
		exs, err := benchmarks.LoadLabelled(src.path, src.textCol, src.labelCol)
		if err != nil {
			return nil, err
		}
		labelled = exs
	case "clinc":
		c, err := benchmarks.LoadCLINC(src.path)
		if err != nil {
			return nil, err
		}
		exs, err := c.Examples("train", "val")
		if err != nil {
			return nil, err
		}
		labelled = exs
	case "pairs":
		pairs, err := benchmarks.LoadPairs(src.path)
		if err != nil {
			return nil, err
		}
		var out []train.Example
		for _, p := range pairs {
			if p.Duplicate {
				label := prefix + "pair:" + strconv.Itoa(p.Line)
				out = append(out, train.Example{Text: p.Question1, Label: label}, train.Example{Text: p.Question2, Label: label})
			}
		}
		return out, nil
	default:
		return nil, &usageErr{fmt.Sprintf("--format %q: want intents, pairs or clinc", src.format)}
	}
	out := make([]train.Example, 0, len(labelled))
	for _, ex := range labelled {
		if strings.TrimSpace(ex.Text) == "" || oosLabel != "" && ex.Label == oosLabel {
			continue
		}
		out = append(out, train.Example{Text: ex.Text, Label: prefix + ex.Label})
	}
	return out, nil
}
