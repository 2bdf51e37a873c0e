package benchmarks

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/semantic"
)

// TestRunMeaning runs a small pair set through the in-process cache at
// serve's defaults and without guards: the guards turn the number and
// opposite pairs' wrong hits into refusals, the rewording still hits, and
// the image pair is an exact-tier miss either way.
func TestRunMeaning(t *testing.T) {
	pairs, err := LoadMeaningPairs(filepath.Join("testdata", "meaning_small.csv"))
	if err != nil {
		t.Fatal(err)
	}
	emb, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	run := func(guards string) *MeaningReport {
		rep, err := RunMeaning(context.Background(), pairs, emb, MeaningOptions{Threshold: embedding.LocalDefaultThreshold, Guards: guards, SplitContext: "auto"})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	on, off := run(semantic.DefaultGuardKinds), run("none")
	if on.Total.Differ != 4 || on.Total.Same != 1 {
		t.Fatalf("counted %d differ, %d same pairs, want 4 and 1", on.Total.Differ, on.Total.Same)
	}
	if on.Total.WrongHits != 0 || on.Total.Hits != 1 || on.Total.Refused["number"] != 1 || on.Total.Refused["opposite"] != 1 || on.Total.Exact != 1 {
		t.Errorf("with guards: %+v", on.Total)
	}
	if off.Total.WrongHits != 2 || len(off.Wrong) != 2 || off.Total.Hits != 1 {
		t.Errorf("without guards: %+v, wrong %v", off.Total, off.Wrong)
	}
	var out bytes.Buffer
	if err := writeMeaningTable(&out, on); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "numbers") || !strings.Contains(out.String(), "number 1") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestLoadMeaningPairsRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"header":  "class,label,a,b\nx,same,a,b\n",
		"expect":  "class,expect,a,b\nx,maybe,a,b\n",
		"empty":   "class,expect,a,b\nx,same, ,b\n",
		"fields":  "class,expect,a,b\nx,same,a\n",
		"nopairs": "class,expect,a,b\n",
	} {
		path := filepath.Join(dir, name+".csv")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadMeaningPairs(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
	if code := Main(context.Background(), []string{"meaning", "--guards", "colour"}, &bytes.Buffer{}, &bytes.Buffer{}); code != exitUsage {
		t.Errorf("bad --guards: exit %d, want %d", code, exitUsage)
	}
}
