package benchmarks

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Example is one labelled text from a data file.
type Example struct {
	// Text is the query text exactly as stored in the file (not trimmed).
	Text string
	// Label is the intent or category of Text.
	Label string
	// Line is the 1-based line of the file on which the record starts; the
	// header is line 1, so the first example is usually on line 2.
	Line int
}

// LoadLabelled reads the labelled examples of a CSV file with a header row,
// or of a TSV file when path ends in ".tsv", taking the text from column
// textCol and the label from column labelCol (matched exactly against the
// header; a leading UTF-8 byte-order mark is ignored).
//
// Nothing is silently dropped: a record with the wrong number of fields, a
// badly quoted field, an empty (or all-space) text or an empty label is an
// error naming the file and line, as are a header without one of the
// columns, a header naming a column twice and a file with no data rows.
func LoadLabelled(path, textCol, labelCol string) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLabelled(f, path, textCol, labelCol)
}

// readLabelled is LoadLabelled on an open reader; name is used in errors
// and to choose the separator.
func readLabelled(r io.Reader, name, textCol, labelCol string) ([]Example, error) {
	cr := csv.NewReader(r)
	if strings.HasSuffix(strings.ToLower(name), ".tsv") {
		cr.Comma = '\t'
	}
	cr.LazyQuotes = false

	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file, want a header row", name)
	}
	if err != nil {
		return nil, csvError(name, err)
	}
	cr.FieldsPerRecord = len(header)
	col := make(map[string]int, len(header))
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		if _, dup := col[h]; dup {
			return nil, fmt.Errorf("%s:1: column %q appears twice in the header", name, h)
		}
		col[h] = i
	}
	ti, ok := col[textCol]
	if !ok {
		return nil, fmt.Errorf("%s:1: no text column %q in header %q", name, textCol, header)
	}
	li, ok := col[labelCol]
	if !ok {
		return nil, fmt.Errorf("%s:1: no label column %q in header %q", name, labelCol, header)
	}

	var out []Example
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
				return nil, fmt.Errorf("%s:%d: %w: got %d, want %d as in the header",
					name, pe.StartLine, csv.ErrFieldCount, len(rec), len(header))
			}
			return nil, csvError(name, err)
		}
		line, _ := cr.FieldPos(0)
		text, label := rec[ti], rec[li]
		if strings.TrimSpace(text) == "" {
			return nil, fmt.Errorf("%s:%d: empty text in column %q", name, line, textCol)
		}
		if strings.TrimSpace(label) == "" {
			return nil, fmt.Errorf("%s:%d: empty label in column %q", name, line, labelCol)
		}
		out = append(out, Example{Text: text, Label: label, Line: line})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no data rows after the header", name)
	}
	return out, nil
}

// csvError prefixes a csv.ParseError with the file name and the line and
// column of the fault.
func csvError(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d:%d: %w", name, pe.Line, pe.Column, pe.Err)
	}
	return fmt.Errorf("%s: %w", name, err)
}
