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

// embedderUsage is the help of "semcache embedder"; -h prints it followed
// by trainUsage and the train flags.
const embedderUsage = `usage: semcache embedder <command> [flags]

commands:
  train  train the local embedding model on labelled texts (semcache embedder train -h)

`

// trainUsage is the help of "semcache embedder train", before its flags.
const trainUsage = `usage: semcache embedder train --data FILE [--data FILE ...] --out model.sem [flags]

Trains the local embedding-bag model on labelled texts: texts with the same
label (intent, or the two sides of a duplicate pair) are pulled together.
Each --data uses the --format, --text-col and --label-col in force where it
appears, or, when none of them came before it, the last ones given.
  intents  CSV/TSV with a text and a label column
  pairs    CSV/TSV with question1, question2, is_duplicate (duplicates only)
  clinc    CLINC150 JSON; its train and val splits are used (not test, not oos)

flags:
`

// embedder runs "semcache embedder ..." and returns the exit code: 0 on
// success or help (printed to stdout), 1 on a runtime failure, 2 on a
// usage error (one line on stderr naming the flag).
func embedder(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, embedderUsage)
		return 2
	}
	switch args[0] {
	case "train":
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, embedderUsage)
		fmt.Fprint(stdout, trainUsage)
		printFlags(stdout, trainFlags(&trainOptions{}))
		return 0
	default:
		fmt.Fprintf(stderr, "semcache embedder: unknown command %q\n\n%s", args[0], embedderUsage)
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

// trainOptions is what the flags of "semcache embedder train" set.
type trainOptions struct {
	sources                   []dataSource
	format, textCol, labelCol string
	formatSet                 bool
	out                       string
	cfg                       train.Config
	alpha                     string
	float32Rows               bool
	oosLabel                  string
}

// trainFlags defines the flags of "semcache embedder train" on o, which it
// fills with the defaults. The flag set prints nothing itself.
func trainFlags(o *trainOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("semcache embedder train", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by the caller; help by embedderTrain
	o.format, o.textCol, o.labelCol = "intents", "text", "category"
	fs.Var(trackedString{&o.format, &o.formatSet}, "format", "`FORMAT` of the following --data: intents, pairs or clinc")
	fs.Var(trackedString{&o.textCol, &o.formatSet}, "text-col", "text `COLUMN` of the following intents --data")
	fs.Var(trackedString{&o.labelCol, &o.formatSet}, "label-col", "label `COLUMN` of the following intents --data")
	fs.Var(dataFlag{&o.sources, &o.format, &o.textCol, &o.labelCol, &o.formatSet}, "data", "training data `FILE`; repeatable")
	fs.StringVar(&o.oosLabel, "oos-label", "", "label of out-of-scope texts (e.g. NO_NODES_DETECTED) to leave out of training")
	fs.StringVar(&o.out, "out", "", "model `FILE` to write (e.g. model.sem)")
	fs.IntVar(&o.cfg.Params.Buckets, "buckets", embedding.DefaultTrainedBuckets, "number of hashed feature rows")
	fs.IntVar(&o.cfg.Params.Dim, "dim", embedding.DefaultTrainedDim, "length of each learned row")
	fs.Uint64Var(&o.cfg.Params.Seed, "seed", 1, "seed of the initial rows, the dev split and the batch order")
	fs.StringVar(&o.alpha, "alpha", strconv.FormatFloat(train.DefaultAlpha, 'g', -1, 64), "weight in [0, 1) of the lexical similarity mixed into the served vector (0: learned only), or auto: chosen among 0, 0.25, 0.5, 0.75 on held-out labels (trains twice; docs/trained-embedder.md)")
	fs.IntVar(&o.cfg.Epochs, "epochs", train.DefaultEpochs, "passes over the data")
	fs.IntVar(&o.cfg.BatchSize, "batch", train.DefaultBatchSize, "positive pairs per step")
	fs.Float64Var(&o.cfg.Temperature, "temperature", train.DefaultTemperature, "InfoNCE temperature")
	fs.Float64Var(&o.cfg.LearningRate, "lr", train.DefaultLearningRate, "Adam learning rate")
	fs.Float64Var(&o.cfg.DevFraction, "dev-fraction", train.DefaultDevFraction, "share of texts held out to pick the best epoch; negative: none")
	fs.BoolVar(&o.cfg.HardNegatives, "hard-negatives", false, "batch together intents whose centroids are close (re-mined each epoch) instead of random batches")
	fs.BoolVar(&o.float32Rows, "float32", false, "store rows as float32 (bit-exact, 4x larger) instead of int8 with a per-row scale")
	return fs
}

// printFlags writes every flag of fs to w, one "  --name VALUE" line (with
// its default when it has one) and one indented line of usage each, in the
// "--" spelling the rest of semcache's help uses.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			line += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n    \t%s\n", line, usage)
	})
}

// dashes rewrites the flag package's "-name" in a parse error as "--name".
func dashes(msg string) string {
	return strings.NewReplacer("flag -", "flag --", "defined: -", "defined: --").Replace(msg)
}

func embedderTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o trainOptions
	fs := trainFlags(&o)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, trainUsage)
			printFlags(stdout, fs)
			return err
		}
		return &usageErr{fmt.Sprintf("%s (semcache embedder train -h lists the flags)", dashes(err.Error()))}
	}
	sources, format, textCol, labelCol, out, cfg, alpha, float32Rows, oosLabel :=
		o.sources, o.format, o.textCol, o.labelCol, o.out, o.cfg, o.alpha, o.float32Rows, o.oosLabel
	switch {
	case fs.NArg() > 0:
		return &usageErr{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	case len(sources) == 0:
		return &usageErr{"--data is required"}
	case out == "":
		return &usageErr{"--out is required"}
	}
	var cal train.CalibrateConfig
	if alpha != "auto" {
		a, err := strconv.ParseFloat(alpha, 64)
		if err != nil || !(a >= 0 && a < 1) {
			return &usageErr{fmt.Sprintf("--alpha %q: want auto or a number in [0, 1)", alpha)}
		}
		cal.Alphas = []float64{a}
	}
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
	res, err := train.Calibrate(ctx, examples, cfg, cal)
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
	threshold := "none measured (serve needs --threshold)"
	if t := res.Model.Threshold; t > 0 {
		threshold = fmt.Sprintf("%.2f (precision %.2f on held-out data; serve's default)", t, train.DefaultServePrecision)
	}
	fmt.Fprintf(stdout, "wrote %s: %d trained rows, best epoch %d, lexical mix α %.2f, threshold %s, trained in %s\nfingerprint %s\n",
		out, len(res.Model.Rows), res.BestEpoch, res.Model.Params.Alpha, threshold, time.Since(start).Round(time.Millisecond), emb.Fingerprint())
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
