package benchmarks

import (
	"path/filepath"
	"reflect"
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
