package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// These tests run "bench tune" on the shared public data sets. They skip
// unless SEMCACHE_DATASETS names the data folder (the one holding
// banking77/, clinc150/, hint3/, bitext-customer-support/ and meancache/),
// e.g.
//
//	SEMCACHE_DATASETS=/work/shared/data go test -run TestTune -v ./benchmarks

func TestTuneBanking77(t *testing.T) {
	dir := dataDir(t)
	runTuneOnData(t, "tune",
		"--warm", filepath.Join(dir, "banking77", "train.csv"),
		"--queries", filepath.Join(dir, "banking77", "test.csv"))
}

func TestTuneHINT3(t *testing.T) {
	dir := dataDir(t)
	for _, bot := range []string{"sofmattress", "powerplay11", "curekart"} {
		t.Run(bot, func(t *testing.T) {
			runTuneOnData(t, "tune",
				"--warm", filepath.Join(dir, "hint3", "v2", "train", bot+"_train.csv"),
				"--queries", filepath.Join(dir, "hint3", "v2", "test", bot+"_test.csv"),
				"--text-col", "sentence", "--label-col", "label", "--oos-label", "NO_NODES_DETECTED")
		})
	}
}

func TestTuneBanking77Memory(t *testing.T) {
	dir := dataDir(t)
	runTuneOnData(t, "tune", "--backend", "memory",
		"--warm", filepath.Join(dir, "banking77", "train.csv"),
		"--queries", filepath.Join(dir, "banking77", "test.csv"))
}

func TestTuneCLINC150(t *testing.T) {
	dir := dataDir(t)
	runTuneOnData(t, "tune", "--format", "clinc", "--data", filepath.Join(dir, "clinc150", "data_full.json"))
}

func TestTuneBitext(t *testing.T) {
	dir := dataDir(t)
	runTuneOnData(t, "tune", "--data", filepath.Join(dir, "bitext-customer-support", "bitext_8k_utterances.csv"),
		"--split-ratio", "0.8", "--seed", "1", "--text-col", "utterance", "--label-col", "intent")
}

func TestTuneQQPPairs(t *testing.T) {
	dir := dataDir(t)
	runTuneOnData(t, "tune", "--format", "pairs", "--data", filepath.Join(dir, "meancache", "qqp_subset_val.csv"))
}

func dataDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SEMCACHE_DATASETS")
	if dir == "" {
		t.Skip("SEMCACHE_DATASETS is not set (the folder of labelled data sets, e.g. ../shared/data)")
	}
	return dir
}

// runTuneOnData runs Main with args plus --out, logs the table and the
// recommendation for target precisions 0.99 (from Main), 0.95 and 0.90.
func runTuneOnData(t *testing.T, args ...string) {
	t.Helper()
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), append(args, "--out", out), &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	data, err := os.ReadFile(filepath.Join(out, "tune.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep TuneReport
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	for _, target := range []float64{0.95, 0.90} {
		t.Logf("target %.2f: %s", target, recommend(rep.Rows, target).Message)
	}
}
