package benchmarks

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
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
	t, err := newCSVTable(r, name)
	if err != nil {
		return nil, err
	}
	ti, err := t.column("text", textCol)
	if err != nil {
		return nil, err
	}
	li, err := t.column("label", labelCol)
	if err != nil {
		return nil, err
	}
	var out []Example
	for {
		rec, line, err := t.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
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

// csvTable reads the records of a CSV (or, for a name ending in ".tsv",
// TSV) file with a header row, reporting every fault with the file name
// and line.
type csvTable struct {
	name string
	cr   *csv.Reader
	// tsv, for a .tsv file, reads lines split on tabs instead of cr: TSV
	// has no quoting, so a " is part of the text (SNIPS and SGD hold a
	// few), wherever it stands.
	tsv    *bufio.Scanner
	line   int // lines read by tsv
	header []string
	col    map[string]int // header name -> column index
}

// newCSVTable reads the header row of r. A leading UTF-8 byte-order mark is
// ignored; an empty file and a header naming a column twice are errors.
func newCSVTable(r io.Reader, name string) (*csvTable, error) {
	t := &csvTable{name: name}
	var header []string
	var err error
	if strings.HasSuffix(strings.ToLower(name), ".tsv") {
		t.tsv = bufio.NewScanner(r)
		t.tsv.Buffer(nil, 1<<20)
		header, err = t.tsvRecord()
	} else {
		t.cr = csv.NewReader(r)
		header, err = t.cr.Read()
	}
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file, want a header row", name)
	}
	if err != nil {
		return nil, csvError(name, err)
	}
	t.header = header
	if t.cr != nil {
		t.cr.FieldsPerRecord = len(header)
	}
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
	t.col = col
	return t, nil
}

// tsvRecord reads the next line of a TSV file, split on tabs.
func (t *csvTable) tsvRecord() ([]string, error) {
	if !t.tsv.Scan() {
		if err := t.tsv.Err(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	t.line++
	return strings.Split(strings.TrimSuffix(t.tsv.Text(), "\r"), "\t"), nil
}

// column returns the index of the header column name; what says which
// column it is ("text", "label") in the error when it is missing.
func (t *csvTable) column(what, name string) (int, error) {
	i, ok := t.col[name]
	if !ok {
		return 0, fmt.Errorf("%s:1: no %s column %q in header %q", t.name, what, name, t.header)
	}
	return i, nil
}

// next returns the next record and the line it starts on, or io.EOF after
// the last one. A record with the wrong number of fields or a quoting
// fault is an error naming the file and line.
func (t *csvTable) next() ([]string, int, error) {
	if t.tsv != nil {
		rec, err := t.tsvRecord()
		if err != nil {
			return nil, 0, err
		}
		if len(rec) != len(t.header) {
			return nil, 0, fmt.Errorf("%s:%d: %w: got %d, want %d as in the header", t.name, t.line, csv.ErrFieldCount, len(rec), len(t.header))
		}
		return rec, t.line, nil
	}
	rec, err := t.cr.Read()
	if err == io.EOF {
		return nil, 0, io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
			return nil, 0, fmt.Errorf("%s:%d: %w: got %d, want %d as in the header",
				t.name, pe.StartLine, csv.ErrFieldCount, len(rec), len(t.header))
		}
		return nil, 0, csvError(t.name, err)
	}
	line, _ := t.cr.FieldPos(0)
	return rec, line, nil
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

// Pair is one row of a question-pair file such as the Quora Question Pairs
// (QQP) subset of MeanCache.
type Pair struct {
	// Question1 and Question2 are the two texts exactly as stored in the
	// file (not trimmed).
	Question1, Question2 string
	// Duplicate is the is_duplicate column: whether the two questions ask
	// the same thing (1) or not (0).
	Duplicate bool
	// Line is the 1-based line of the file on which the record starts.
	Line int
}

// LoadPairs reads the question pairs of a CSV file (TSV when path ends in
// ".tsv") whose header has the columns question1, question2 and
// is_duplicate, in any order and among others. A missing column, a record
// with the wrong number of fields, an empty question, an is_duplicate other
// than 0 or 1 and a file with no data rows are errors naming the file and
// line.
func LoadPairs(path string) ([]Pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readPairs(f, path)
}

// readPairs is LoadPairs on an open reader; name is used in errors and to
// choose the separator.
func readPairs(r io.Reader, name string) ([]Pair, error) {
	t, err := newCSVTable(r, name)
	if err != nil {
		return nil, err
	}
	var cols [3]int
	for i, c := range []string{"question1", "question2", "is_duplicate"} {
		if cols[i], err = t.column("pair", c); err != nil {
			return nil, err
		}
	}
	var out []Pair
	for {
		rec, line, err := t.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		q1, q2, dup := rec[cols[0]], rec[cols[1]], strings.TrimSpace(rec[cols[2]])
		switch {
		case strings.TrimSpace(q1) == "":
			return nil, fmt.Errorf("%s:%d: empty question1", name, line)
		case strings.TrimSpace(q2) == "":
			return nil, fmt.Errorf("%s:%d: empty question2", name, line)
		case dup != "0" && dup != "1":
			return nil, fmt.Errorf("%s:%d: is_duplicate is %q, want 0 or 1", name, line, rec[cols[2]])
		}
		out = append(out, Pair{Question1: q1, Question2: q2, Duplicate: dup == "1", Line: line})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no data rows after the header", name)
	}
	return out, nil
}

// CLINC is a data file in the CLINC150 layout (data_full.json and its
// variants): a JSON object whose keys name splits ("train", "val", "test",
// and the out-of-scope "oos_train", "oos_val", "oos_test") and whose values
// are lists of [text, intent] pairs.
type CLINC struct {
	// Path is the file the splits were read from, used in errors.
	Path string
	// Splits maps each split name to its examples, in file order; Line is
	// the line on which the example's [text, intent] pair starts.
	Splits map[string][]Example
}

// LoadCLINC reads a file in the CLINC150 JSON layout. Every key of the top
// object must hold a list of [text, intent] pairs of strings; an entry of
// another shape, an empty text or intent, a key given twice and invalid
// JSON are errors naming the file and line.
func LoadCLINC(path string) (*CLINC, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	splits, err := parseCLINC(data, path)
	if err != nil {
		return nil, err
	}
	return &CLINC{Path: path, Splits: splits}, nil
}

// Examples returns the examples of the named splits, concatenated in the
// order given. A split the file does not have is an error naming the file
// and the splits it has.
func (c *CLINC) Examples(splits ...string) ([]Example, error) {
	var out []Example
	for _, s := range splits {
		exs, ok := c.Splits[s]
		if !ok {
			have := make([]string, 0, len(c.Splits))
			for k := range c.Splits {
				have = append(have, k)
			}
			sort.Strings(have)
			return nil, fmt.Errorf("%s: no split %q (the file has %q)", c.Path, s, have)
		}
		out = append(out, exs...)
	}
	return out, nil
}

// parseCLINC decodes the CLINC150 layout from data, recording the line of
// every entry; name is used in errors.
func parseCLINC(data []byte, name string) (map[string][]Example, error) {
	lineAt := func(off int64) int { return 1 + bytes.Count(data[:min(max(off, 0), int64(len(data)))], []byte{'\n'}) }
	fail := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("%s:%d: invalid JSON: %v", name, lineAt(se.Offset), se)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%s:%d: invalid JSON: unexpected end of file", name, lineAt(int64(len(data))))
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	expectDelim := func(want json.Delim, what string) error {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != want {
			return fmt.Errorf("%s:%d: want %s, got %v", name, lineAt(off), what, tok)
		}
		return nil
	}
	if err := expectDelim('{', "an object of splits"); err != nil {
		return nil, err
	}
	out := make(map[string][]Example)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fail(err)
		}
		split := tok.(string) // object keys are always strings
		if _, dup := out[split]; dup {
			return nil, fmt.Errorf("%s:%d: split %q appears twice", name, lineAt(dec.InputOffset()), split)
		}
		if err := expectDelim('[', fmt.Sprintf("a list of [text, intent] pairs for split %q", split)); err != nil {
			return nil, err
		}
		exs := []Example{}
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, fail(err)
			}
			line := lineAt(dec.InputOffset() - int64(len(raw)))
			var pair []string
			if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
				return nil, fmt.Errorf("%s:%d: split %q: want a [text, intent] pair of strings, got %s", name, line, split, abbreviate(raw))
			}
			if strings.TrimSpace(pair[0]) == "" {
				return nil, fmt.Errorf("%s:%d: split %q: empty text", name, line, split)
			}
			if strings.TrimSpace(pair[1]) == "" {
				return nil, fmt.Errorf("%s:%d: split %q: empty intent", name, line, split)
			}
			exs = append(exs, Example{Text: pair[0], Label: pair[1], Line: line})
		}
		if err := expectDelim(']', "the end of the list"); err != nil {
			return nil, err
		}
		out[split] = exs
	}
	if err := expectDelim('}', "the end of the object"); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s:%d: data after the top-level object", name, lineAt(dec.InputOffset()))
	}
	return out, nil
}

// abbreviate returns raw JSON for an error message, cut to 60 bytes.
func abbreviate(raw []byte) string {
	const n = 60
	if len(raw) <= n {
		return string(raw)
	}
	return string(raw[:n]) + "..."
}

// SplitExamples divides exs into a warm set and queries for a tune run:
// a Fisher-Yates shuffle driven by PCG seeded with seed (so the same seed
// gives the same split on every platform and Go version) chooses round(ratio·len(exs)) examples
// for warm, and the rest are queries. Both keep the order of exs. ratio
// must be in (0, 1) and leave both sides non-empty. The split is not
// stratified: a label may land on one side only.
func SplitExamples(exs []Example, ratio float64, seed uint64) (warm, queries []Example, err error) {
	if !(ratio > 0 && ratio < 1) {
		return nil, nil, fmt.Errorf("split ratio must be in (0, 1), got %v", ratio)
	}
	nWarm := int(math.Round(ratio * float64(len(exs))))
	if nWarm == 0 || nWarm == len(exs) {
		return nil, nil, fmt.Errorf("a split ratio of %v leaves %d of %d examples for the warm set: both sides must be non-empty", ratio, nWarm, len(exs))
	}
	// Fisher-Yates on PCG's specified output (not rand.Perm, whose
	// algorithm Go does not promise to keep); the modulo bias is below
	// 2^-40 for any realistic file.
	pcg := rand.NewPCG(seed, splitStream)
	perm := make([]int, len(exs))
	for i := range perm {
		perm[i] = i
	}
	for i := len(perm) - 1; i > 0; i-- {
		j := int(pcg.Uint64() % uint64(i+1))
		perm[i], perm[j] = perm[j], perm[i]
	}
	chosen := perm[:nWarm]
	slices.Sort(chosen)
	warm = make([]Example, 0, nWarm)
	queries = make([]Example, 0, len(exs)-nWarm)
	next := 0
	for i, e := range exs {
		if next < len(chosen) && chosen[next] == i {
			warm = append(warm, e)
			next++
		} else {
			queries = append(queries, e)
		}
	}
	return warm, queries, nil
}

// splitStream is the second PCG seed word of SplitExamples, fixed so that
// --seed alone determines the split.
const splitStream = 0x5e3c_ac4e_0001_5917
