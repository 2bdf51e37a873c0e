package train

import (
	"context"
	"fmt"
	"testing"
)

func TestAtPrecision(t *testing.T) {
	outs := []nnOutcome{{0.95, true}, {0.5, false}, {0.9, true}, {0.85, false}, {0.8, true}}
	// Every threshold up to 0.50 serves all five (precision 0.6); from 0.51
	// to 0.80 four (0.75); the lowest reaching 0.75 is 0.51.
	th, hr, ok := atPrecision(outs, 0.75)
	if !ok || th != 0.51 || hr != 0.8 {
		t.Errorf("atPrecision 0.75: %v %v %v, want 0.51 0.8 true", th, hr, ok)
	}
	if th, hr, ok := atPrecision(outs, 1); !ok || th != 0.86 || hr != 0.4 {
		t.Errorf("atPrecision 1: %v %v %v, want 0.86 0.4 true", th, hr, ok)
	}
	if _, _, ok := atPrecision([]nnOutcome{{0.9, false}}, 0.5); ok {
		t.Error("a set with no correct hit reached precision 0.5")
	}
}

func TestSplitLabels(t *testing.T) {
	var exs []Example
	for l := range 10 {
		for i := range 3 {
			exs = append(exs, Example{fmt.Sprintf("text %d of %d", i, l), fmt.Sprint(l)})
		}
	}
	seen, unseen := splitLabels(exs, 0.2, 7)
	if len(seen)+len(unseen) != len(exs) || len(unseen) != 6 {
		t.Fatalf("%d seen, %d unseen texts; want 24 and 6 (2 of 10 labels)", len(seen), len(unseen))
	}
	held := map[string]bool{}
	for _, i := range unseen {
		held[exs[i].Label] = true
	}
	for _, i := range seen {
		if held[exs[i].Label] {
			t.Errorf("label %s is both seen and held out", exs[i].Label)
		}
	}
	if s, u := splitLabels(exs[:3], 0.2, 7); len(u) != 0 || len(s) != 3 {
		t.Errorf("one label: %d seen %d unseen, want all seen", len(s), len(u))
	}
}

// calibrationData has twelve intents of six phrasings each, built from
// templates that share their words across intents.
func calibrationData() []Example {
	objects := []string{"card", "account", "loan", "transfer", "pin", "statement"}
	actions := []struct{ label, a, b string }{{"lost", "i lost my %s", "my %s is missing"}, {"open", "how do i open a %s", "i want a new %s"}}
	var out []Example
	for _, o := range objects {
		for _, a := range actions {
			for _, p := range []string{a.a, a.b, a.a + " please", a.b + " today", "help: " + a.a, a.b + ", what now"} {
				out = append(out, Example{fmt.Sprintf(p, o), a.label + " " + o})
			}
		}
	}
	return out
}

func TestChooseAlpha(t *testing.T) {
	for _, tc := range []struct {
		scores []AlphaScore
		want   float64
	}{
		// The best worst gain wins outright.
		{[]AlphaScore{{Alpha: 0, Worst: -0.3, Mean: 0.5}, {Alpha: 0.5, Worst: 0.02, Mean: 0.1}}, 0.5},
		// Worst gains within alphaTie: the mean decides (BANKING77).
		{[]AlphaScore{{Alpha: 0, Worst: -0.371, Mean: 0.164}, {Alpha: 0.25, Worst: -0.064, Mean: 0.279},
			{Alpha: 0.5, Worst: -0.065, Mean: 0.253}, {Alpha: 0.75, Worst: -0.065, Mean: 0.186}}, 0.25},
		// Equal in both: the larger α.
		{[]AlphaScore{{Alpha: 0.25, Worst: 0.1, Mean: 0.2}, {Alpha: 0.5, Worst: 0.1, Mean: 0.2}}, 0.5},
	} {
		if got := chooseAlpha(tc.scores); got != tc.want {
			t.Errorf("chooseAlpha(%+v) = %v, want %v", tc.scores, got, tc.want)
		}
	}
}

func TestCalibrateChoosesAlphaAndStoresThreshold(t *testing.T) {
	exs := calibrationData()
	cfg := Config{Params: tinyParams(), Epochs: 8, BatchSize: 16, DevFraction: 0.34, Seed: 3}
	res, err := Calibrate(context.Background(), exs, cfg, CalibrateConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Scores) != len(DefaultAlphas) {
		t.Fatalf("%d scores, want one per candidate α", len(res.Scores))
	}
	if got, alpha := float64(res.Model.Params.Alpha), chooseAlpha(res.Scores); got != alpha {
		t.Errorf("model α %v, want %v, the candidate with the best worst gain (%+v)", got, alpha, res.Scores)
	}
	if want := float32(res.DevThreshold); res.Model.Threshold != want {
		t.Errorf("stored threshold %v, want the dev split's %v", res.Model.Threshold, res.DevThreshold)
	}
	if !(res.Model.Threshold > 0 && res.Model.Threshold <= 1) {
		t.Errorf("stored threshold %v: want one measured", res.Model.Threshold)
	}
	fixed, err := Calibrate(context.Background(), exs, cfg, CalibrateConfig{Alphas: []float64{0.3}})
	if err != nil {
		t.Fatal(err)
	}
	if len(fixed.Scores) != 0 || fixed.Model.Params.Alpha != 0.3 || fixed.UnseenThreshold != 0 {
		t.Errorf("fixed α 0.3: scores %d, α %v, unseen threshold %v; want no calibration run", len(fixed.Scores), fixed.Model.Params.Alpha, fixed.UnseenThreshold)
	}
	if _, err := Calibrate(context.Background(), exs, cfg, CalibrateConfig{Alphas: []float64{1}}); err == nil {
		t.Error("α 1 accepted")
	}
}
