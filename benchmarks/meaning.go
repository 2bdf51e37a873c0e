package benchmarks

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// Expectations of a meaning pair.
const (
	expectDiffer = "differ" // b must not be served a's answer
	expectSame   = "same"   // b asks what a asks; a's answer is right for b
)

// imagePrefix marks a pair field that is an image URL: the request is a
// text part plus that image.
const imagePrefix = "image:"

// MeaningPair is one labelled pair of last user messages.
type MeaningPair struct {
	Class  string
	Expect string // expectDiffer or expectSame
	A, B   string
}

// LoadMeaningPairs reads a CSV with the header class,expect,a,b. Errors
// name the file, the line and the field.
func LoadMeaningPairs(path string) ([]MeaningPair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 4
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	if strings.Join(head, ",") != "class,expect,a,b" {
		return nil, fmt.Errorf("%s: header %q: want class,expect,a,b", path, strings.Join(head, ","))
	}
	var out []MeaningPair
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		line, _ := r.FieldPos(0)
		p := MeaningPair{Class: strings.TrimSpace(rec[0]), Expect: strings.TrimSpace(rec[1]), A: rec[2], B: rec[3]}
		switch {
		case p.Class == "":
			return nil, fmt.Errorf("%s:%d: empty class", path, line)
		case p.Expect != expectDiffer && p.Expect != expectSame:
			return nil, fmt.Errorf("%s:%d: expect %q: want differ or same", path, line, p.Expect)
		case strings.TrimSpace(p.A) == "" || strings.TrimSpace(p.B) == "":
			return nil, fmt.Errorf("%s:%d: empty prompt", path, line)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no pairs", path)
	}
	return out, nil
}

// MeaningOptions configure RunMeaning: the cache settings under test.
type MeaningOptions struct {
	// Threshold is the cosine similarity a semantic hit needs.
	Threshold float64
	// Guards is a semantic.ParseGuardKinds list.
	Guards string
	// Normalization is the exact-key normalisation and question split.
	Normalization semantic.Normalization
	// SplitContext and QuestionPattern describe Normalization for the
	// report.
	SplitContext    string
	QuestionPattern string
}

// MeaningReport is the result of `semcache bench meaning`.
type MeaningReport struct {
	Data            string  `json:"data"`
	Embedder        string  `json:"embedder"`
	Threshold       float64 `json:"threshold"`
	Guards          string  `json:"guards"`
	SplitContext    string  `json:"split_context"`
	QuestionPattern string  `json:"question_pattern,omitempty"`
	// Classes are per class, sorted by name.
	Classes []MeaningClass `json:"classes"`
	// Total adds up every class.
	Total MeaningClass `json:"total"`
	// Wrong are the must-differ pairs that were served a's answer, and
	// Lost the same-meaning pairs that missed, in file order.
	Wrong []MeaningOutcome `json:"wrong"`
	Lost  []MeaningOutcome `json:"lost"`
}

// MeaningOutcome is one pair's outcome, for the lists of a report.
type MeaningOutcome struct {
	Line       int     `json:"pair"` // 1-based index in the file
	Class      string  `json:"class"`
	A          string  `json:"a"`
	B          string  `json:"b"`
	Tier       string  `json:"tier,omitempty"`
	Similarity float64 `json:"similarity,omitempty"`
	Refused    string  `json:"refused,omitempty"`
}

// MeaningClass is one class's figures.
type MeaningClass struct {
	Class string `json:"class"`
	// Differ is the number of must-differ pairs, WrongHits how many of
	// them were served a's answer, WrongHitRate their share (null without
	// pairs) with its 95% Wilson interval.
	Differ       int        `json:"differ"`
	WrongHits    int        `json:"wrong_hits"`
	WrongHitRate *float64   `json:"wrong_hit_rate"`
	WrongCI95    [2]float64 `json:"wrong_hit_rate_ci95"`
	// Same is the number of same-meaning pairs, Hits how many were
	// served a's answer, HitRate their share (null without pairs).
	Same    int      `json:"same"`
	Hits    int      `json:"hits"`
	HitRate *float64 `json:"hit_rate"`
	// Refused counts, per reason (X-Semcache-Refused), the must-differ
	// pairs the comparison refused (what each guard saves) and
	// RefusedSame the same-meaning pairs it refused (what it costs).
	Refused     map[string]int `json:"refused,omitempty"`
	RefusedSame map[string]int `json:"refused_same,omitempty"`
	// BelowThreshold counts must-differ pairs that missed because no
	// neighbour reached the threshold; Exact those whose exact keys
	// differ and that cannot use the semantic tier (image requests).
	BelowThreshold int `json:"below_threshold"`
	Exact          int `json:"exact_only"`
}

// RunMeaning stores each pair's a in a fresh in-process cache (memory
// backend, the embedder given, o's settings), then asks b, and counts
// whether b was served a's answer.
func RunMeaning(ctx context.Context, pairs []MeaningPair, emb semantic.Embedder, o MeaningOptions) (*MeaningReport, error) {
	gcfg, on, err := semantic.ParseGuardKinds(o.Guards)
	if err != nil {
		return nil, err
	}
	var guards *semantic.Guards
	if on {
		if guards, err = semantic.NewGuards(gcfg); err != nil {
			return nil, err
		}
	}
	rep := &MeaningReport{Embedder: emb.Fingerprint(), Threshold: o.Threshold, Guards: o.Guards,
		SplitContext: o.SplitContext, QuestionPattern: o.QuestionPattern}
	byClass := map[string]*MeaningClass{}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i, p := range pairs {
		store, err := index.NewMemory(index.MemoryConfig{Dim: emb.Dim()})
		if err != nil {
			return nil, err
		}
		cache, err := semantic.New(semantic.Config{Threshold: o.Threshold, Guards: guards, Normalization: o.Normalization, Logger: quiet}, emb, store)
		if err != nil {
			return nil, err
		}
		first, err := askPair(ctx, cache, p.A, "answer-a")
		if err != nil {
			return nil, fmt.Errorf("pair %d a: %w", i+1, err)
		}
		if !first.Stored {
			return nil, fmt.Errorf("pair %d a: the answer was not stored", i+1)
		}
		r, err := askPair(ctx, cache, p.B, "answer-b")
		if err != nil {
			return nil, fmt.Errorf("pair %d b: %w", i+1, err)
		}
		c := byClass[p.Class]
		if c == nil {
			c = &MeaningClass{Class: p.Class}
			byClass[p.Class] = c
		}
		hit := r.Outcome == semantic.Hit
		oc := MeaningOutcome{Line: i + 1, Class: p.Class, A: p.A, B: p.B, Tier: string(r.Tier), Similarity: r.Similarity, Refused: r.Refused}
		switch {
		case hit && p.Expect == expectDiffer:
			rep.Wrong = append(rep.Wrong, oc)
		case !hit && p.Expect == expectSame:
			rep.Lost = append(rep.Lost, oc)
		}
		for _, m := range []*MeaningClass{c, &rep.Total} {
			m.count(p.Expect, hit, r, isImage(p.B))
		}
		_ = store.Close()
	}
	for _, c := range byClass {
		c.finish()
		rep.Classes = append(rep.Classes, *c)
	}
	sort.Slice(rep.Classes, func(i, j int) bool { return rep.Classes[i].Class < rep.Classes[j].Class })
	rep.Total.Class = "all"
	rep.Total.finish()
	return rep, nil
}

func (m *MeaningClass) count(expect string, hit bool, r semantic.Result, image bool) {
	add := func(mp *map[string]int, k string) {
		if *mp == nil {
			*mp = map[string]int{}
		}
		(*mp)[k]++
	}
	reason := r.Refused
	if strings.HasPrefix(reason, "token:") {
		reason = "token"
	}
	if expect == expectDiffer {
		m.Differ++
		switch {
		case hit:
			m.WrongHits++
		case reason != "":
			add(&m.Refused, reason)
		case image:
			m.Exact++
		default:
			m.BelowThreshold++
		}
		return
	}
	m.Same++
	if hit {
		m.Hits++
	} else if reason != "" {
		add(&m.RefusedSame, reason)
	}
}

func (m *MeaningClass) finish() {
	if m.Differ > 0 {
		r := float64(m.WrongHits) / float64(m.Differ)
		m.WrongHitRate = &r
		lo, hi := wilsonInterval(m.WrongHits, m.Differ, 1.96)
		m.WrongCI95 = [2]float64{lo, hi}
	}
	if m.Same > 0 {
		r := float64(m.Hits) / float64(m.Same)
		m.HitRate = &r
	}
}

func isImage(s string) bool { return strings.HasPrefix(s, imagePrefix) }

// askPair sends one chat request with the last user message text through
// cache; a miss is answered by a fixed upstream answer.
func askPair(ctx context.Context, cache *semantic.Cache, text, answer string) (semantic.Result, error) {
	var content any = text
	if isImage(text) {
		content = []any{
			map[string]any{"type": "text", "text": "Describe this image."},
			map[string]any{"type": "image_url", "image_url": map[string]any{"url": strings.TrimPrefix(text, imagePrefix)}},
		}
	}
	body, err := json.Marshal(map[string]any{"model": "bench", "messages": []any{map[string]any{"role": "user", "content": content}}})
	if err != nil {
		return semantic.Result{}, err
	}
	id, _, err := semantic.Identify(body, "bench", "", cache.Normalization())
	if err != nil {
		return semantic.Result{}, err
	}
	resp := fmt.Sprintf(`{"id":"x","object":"chat.completion","model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`, answer)
	return cache.Do(ctx, id, func(context.Context) (semantic.Upstream, error) {
		return semantic.Upstream{Status: 200, ContentType: "application/json", Body: []byte(resp)}, nil
	})
}

const meaningUsage = `usage: semcache bench meaning [flags]

Measures what the cache serves wrongly and what it still serves, per class
of a labelled pair set (CSV: class,expect,a,b; expect is differ or same).
For each pair a fresh in-process cache (memory backend, local embedder)
stores a's answer, then b is asked: a hit on a differ pair is a wrong hit,
a hit on a same pair a kept rewording. The table gives per class the
wrong-hit rate (with its 95% Wilson interval), the rewording hit rate and
which refusal reasons (X-Semcache-Refused) removed or cost hits. The
defaults are semcache serve's.

flags:
`

func runMeaningCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("semcache bench meaning", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "benchmarks/testdata/meaning_pairs.csv", "labelled pair `FILE` (CSV: class,expect,a,b)")
	threshold := fs.Float64("threshold", embedding.LocalDefaultThreshold, "cosine similarity in (0, 1] a semantic hit needs")
	guards := fs.String("guards", semantic.DefaultGuardKinds, "guards: none, or a comma list of "+semantic.GuardKindNames)
	split := fs.String("split-context", "auto", "question/context split: auto or off")
	pattern := fs.String("question-pattern", "", "RE2 `regexp` with a group named question (as semcache serve --question-pattern)")
	out := fs.String("out", "", "optional `FILE` for the JSON report")
	list := fs.Bool("list", false, "also print every wrong hit and every lost rewording")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), meaningUsage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !(*threshold > 0 && *threshold <= 1) {
		return usageErrorf("--threshold %v: want a cosine similarity in (0, 1]", *threshold)
	}
	if _, _, err := semantic.ParseGuardKinds(*guards); err != nil {
		return usageErrorf("--guards %q: want none or a comma list of %s", *guards, semantic.GuardKindNames)
	}
	var n semantic.Normalization
	switch *split {
	case "auto":
	case "off":
		n.WholeMessage = true
	default:
		return usageErrorf("--split-context %q: want auto or off", *split)
	}
	if *pattern != "" {
		re, err := semantic.CompileQuestionPattern(*pattern)
		if err != nil {
			return usageErrorf("--question-pattern: %v", err)
		}
		n.Question = re
	}
	pairs, err := LoadMeaningPairs(*data)
	if err != nil {
		return err
	}
	emb, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		return err
	}
	rep, err := RunMeaning(ctx, pairs, emb, MeaningOptions{Threshold: *threshold, Guards: *guards, Normalization: n, SplitContext: *split, QuestionPattern: *pattern})
	if err != nil {
		return err
	}
	rep.Data = *data
	if *out != "" {
		js, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out, append(js, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := writeMeaningTable(stdout, rep); err != nil {
		return err
	}
	if *list {
		for _, l := range []struct {
			name string
			os   []MeaningOutcome
		}{{"wrong hits", rep.Wrong}, {"lost rewordings", rep.Lost}} {
			fmt.Fprintf(stdout, "\n%s (%d):\n", l.name, len(l.os))
			for _, o := range l.os {
				fmt.Fprintf(stdout, "  pair %d [%s] tier=%s sim=%.4f refused=%s\n    a: %q\n    b: %q\n", o.Line, o.Class, o.Tier, o.Similarity, o.Refused, o.A, o.B)
			}
		}
	}
	return nil
}

// writeMeaningTable prints rep as a table.
func writeMeaningTable(w io.Writer, rep *MeaningReport) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "data %s; embedder %s, threshold %g, guards %s, split-context %s", rep.Data, rep.Embedder, rep.Threshold, rep.Guards, rep.SplitContext)
	if rep.QuestionPattern != "" {
		fmt.Fprintf(&b, ", question-pattern %q", rep.QuestionPattern)
	}
	b.WriteString("\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "class\tdiffer\twrong\twrong_rate\tci95\tsame\thits\thit_rate\trefused (differ)\trefused (same)\t")
	rate := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.3f", *p)
	}
	for _, c := range append(slices.Clone(rep.Classes), rep.Total) {
		ci := "-"
		if c.Differ > 0 {
			ci = fmt.Sprintf("%.3f-%.3f", c.WrongCI95[0], c.WrongCI95[1])
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t\n", c.Class, c.Differ, c.WrongHits, rate(c.WrongHitRate), ci,
			c.Same, c.Hits, rate(c.HitRate), reasons(c.Refused), reasons(c.RefusedSame))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t := rep.Total
	fmt.Fprintf(&b, "\nmust-differ pairs that missed: %d refused (by reason above), %d below the threshold, %d exact-tier only (images)\n",
		t.Differ-t.WrongHits-t.BelowThreshold-t.Exact, t.BelowThreshold, t.Exact)
	_, err := w.Write(b.Bytes())
	return err
}

// reasons formats a reason count map as "a 3, b 1", most first.
func reasons(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if m[ks[i]] != m[ks[j]] {
			return m[ks[i]] > m[ks[j]]
		}
		return ks[i] < ks[j]
	})
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
