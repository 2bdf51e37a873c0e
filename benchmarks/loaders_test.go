package benchmarks

import (
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestLoadLabelled(t *testing.T) {
	tests := []struct {
		name, file, textCol, labelCol string
		want                          []Example
	}{
		{"csv with quotes and a multi-line field", "labelled.csv", "text", "category", []Example{
			{Text: "I am still waiting on my card?", Label: "card_arrival", Line: 2},
			{Text: "Where is my card, please?", Label: "card_arrival", Line: 3},
			{Text: "A text with\na newline", Label: "other", Line: 4},
		}},
		{"tsv by extension", "labelled.tsv", "sentence", "label", []Example{
			{Text: "You guys provide EMI option?", Label: "EMI", Line: 2},
			{Text: "What sizes are there", Label: "SIZE", Line: 3},
		}},
		{"byte-order mark before the header", "bom.csv", "text", "category", []Example{
			{Text: "hello", Label: "greet", Line: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadLabelled(filepath.Join("testdata", tt.file), tt.textCol, tt.labelCol)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLoadLabelledRejectsMalformed(t *testing.T) {
	tests := []struct {
		file string
		// wantIn are substrings the message must contain: the file and
		// line, and what is wrong.
		wantIn []string
	}{
		{"bad_fieldcount.csv", []string{"bad_fieldcount.csv:4:", "wrong number of fields", "got 3, want 2"}},
		{"bad_emptytext.csv", []string{"bad_emptytext.csv:3:", "empty text"}},
		{"bad_emptylabel.csv", []string{"bad_emptylabel.csv:3:", "empty label"}},
		{"bad_missingcol.csv", []string{"bad_missingcol.csv:1:", `no text column "text"`}},
		{"bad_quote.csv", []string{"bad_quote.csv:3:", `bare "`}},
		{"bad_headeronly.csv", []string{"bad_headeronly.csv", "no data rows"}},
		{"bad_empty.csv", []string{"bad_empty.csv", "empty file"}},
		{"bad_dupcol.csv", []string{"bad_dupcol.csv:1:", "appears twice"}},
		{"does_not_exist.csv", []string{"does_not_exist.csv", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := LoadLabelled(filepath.Join("testdata", tt.file), "text", "category")
			if err == nil {
				t.Fatalf("got %d examples and no error, want an error", len(got))
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestLoadLabelledMissingLabelColumn(t *testing.T) {
	_, err := LoadLabelled(filepath.Join("testdata", "labelled.csv"), "text", "intent")
	if err == nil || !strings.Contains(err.Error(), `no label column "intent"`) {
		t.Fatalf("got %v, want a missing label column error", err)
	}
}

func TestLoadPairs(t *testing.T) {
	got, err := LoadPairs(filepath.Join("testdata", "pairs.csv"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Pair{
		{Question1: "How do I reset my password?", Question2: "How can I reset my password?", Duplicate: true, Line: 2},
		{Question1: "What is the capital of France, really?", Question2: "What is France's capital?", Duplicate: true, Line: 3},
		{Question1: "How do I reset my password?", Question2: "I forgot my password", Duplicate: true, Line: 4},
		{Question1: "Is Go a good language?", Question2: "Is Rust a good language?", Duplicate: false, Line: 5},
		{Question1: "Where is my card?", Question2: "Card not arrived", Duplicate: true, Line: 6},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestLoadPairsRejectsMalformed(t *testing.T) {
	tests := []struct {
		file   string
		wantIn []string
	}{
		{"bad_pairs_label.csv", []string{"bad_pairs_label.csv:3:", `is_duplicate is "yes", want 0 or 1`}},
		{"bad_pairs_missingcol.csv", []string{"bad_pairs_missingcol.csv:1:", `"is_duplicate"`}},
		{"bad_pairs_fieldcount.csv", []string{"bad_pairs_fieldcount.csv:3:", "wrong number of fields"}},
		{"bad_pairs_emptyquestion.csv", []string{"bad_pairs_emptyquestion.csv:3:", "empty question2"}},
		{"bad_headeronly.csv", []string{"bad_headeronly.csv:1:", `"question1"`}},
		{"does_not_exist.csv", []string{"does_not_exist.csv", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := LoadPairs(filepath.Join("testdata", tt.file))
			if err == nil {
				t.Fatalf("got %d pairs and no error, want an error", len(got))
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestLoadCLINC(t *testing.T) {
	c, err := LoadCLINC(filepath.Join("testdata", "clinc.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Examples("test", "oos_test")
	if err != nil {
		t.Fatal(err)
	}
	want := []Example{
		{Text: "tell me my balance", Label: "balance", Line: 10},
		{Text: "fly me to rome", Label: "book_flight", Line: 11},
		{Text: "who won the game", Label: "oos", Line: 20},
		{Text: "play jazz", Label: "oos", Line: 21},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("test + oos_test:\n got %+v\nwant %+v", got, want)
	}
	if n := len(c.Splits); n != 6 {
		t.Errorf("got %d splits, want 6", n)
	}
	_, err = c.Examples("train", "oos_dev")
	if err == nil || !strings.Contains(err.Error(), `clinc.json: no split "oos_dev"`) {
		t.Errorf("got %v, want an error naming the missing split", err)
	}
}

func TestLoadCLINCRejectsMalformed(t *testing.T) {
	tests := []struct {
		file   string
		wantIn []string
	}{
		{"bad_clinc_entry.json", []string{"bad_clinc_entry.json:4:", `split "train"`, "[text, intent] pair"}},
		{"bad_clinc_syntax.json", []string{"bad_clinc_syntax.json:4:", "invalid JSON"}},
		{"bad_clinc_emptyintent.json", []string{"bad_clinc_emptyintent.json:2:", "empty intent"}},
		{"bad_clinc_notlist.json", []string{"bad_clinc_notlist.json:2:", "list of [text, intent] pairs"}},
		{"labelled.csv", []string{"labelled.csv:1:", "invalid JSON"}},
		{"bad_empty.csv", []string{"bad_empty.csv:1:", "invalid JSON"}},
		{"does_not_exist.json", []string{"does_not_exist.json", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := LoadCLINC(filepath.Join("testdata", tt.file))
			if err == nil {
				t.Fatal("no error, want one")
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestSplitExamples(t *testing.T) {
	var exs []Example
	for i := range 10 {
		exs = append(exs, Example{Text: strconv.Itoa(i), Label: "L", Line: i + 2})
	}
	warm, queries, err := SplitExamples(exs, 0.7, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(warm) != 7 || len(queries) != 3 {
		t.Fatalf("got %d warm and %d queries, want 7 and 3", len(warm), len(queries))
	}
	// Together they are exs, each side in file order.
	seen := map[int]bool{}
	for _, side := range [][]Example{warm, queries} {
		for i, e := range side {
			if i > 0 && e.Line <= side[i-1].Line {
				t.Errorf("not in file order: %v", side)
			}
			seen[e.Line] = true
		}
	}
	if len(seen) != 10 {
		t.Errorf("warm %v and queries %v do not partition the examples", warm, queries)
	}
	// Deterministic given the seed; another seed gives another split.
	again, _, _ := SplitExamples(exs, 0.7, 1)
	if !reflect.DeepEqual(warm, again) {
		t.Errorf("seed 1 gave %v, then %v", warm, again)
	}
	other, _, _ := SplitExamples(exs, 0.7, 2)
	if reflect.DeepEqual(warm, other) {
		t.Errorf("seeds 1 and 2 gave the same split %v", warm)
	}
	for _, bad := range []float64{0, 1, -0.5, 1.5, math.NaN(), 0.01, 0.99} {
		if _, _, err := SplitExamples(exs, bad, 1); err == nil {
			t.Errorf("ratio %v: no error", bad)
		}
	}
}
