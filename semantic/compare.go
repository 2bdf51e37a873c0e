package semantic

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Refusal reasons of the comparison itself (the guards' own are the Flip*
// constants).
const (
	// RefusedContext: the two prompts share their question and differ
	// elsewhere, or differ in more than one place: the text around the
	// question (a template, a retrieved context) changed.
	RefusedContext = "context"
	// RefusedTemplate: the prompts share a template, and the part that
	// differs is not similar enough on its own.
	RefusedTemplate = "template"
)

// Comparer decides whether a stored neighbour may answer a request: the
// one decision the semantic tier delegates, under the static and the
// adaptive policy alike. query is the request's normalised prompt
// (Identity.Normalized), cached the neighbour's (Entry.Prompt), sim the
// cosine similarity of their vectors (in [-1, 1]) and threshold the
// similarity a hit needs (the static threshold, or the adaptive policy's
// floor). Implementations must be safe for concurrent use.
type Comparer interface {
	Compare(ctx context.Context, query, cached string, sim, threshold float64) (Verdict, error)
}

// Verdict is a Comparer's answer.
type Verdict struct {
	// Similarity is the cosine similarity the decision was made on: sim,
	// or the similarity of the parts that differ when the prompts share
	// a template (see Comparator). The adaptive policy learns from it.
	Similarity float64
	// Refused is why the neighbour must not answer ("" when it may): a
	// Flip* reason of the guards, RefusedContext or RefusedTemplate.
	Refused string
}

// Comparator is the default Comparer. It looks at what differs between the
// two prompts before it looks at what they share:
//
//  1. Both prompts are cut into segments (lines, sentences, and "Label:"
//     heads such as "Question:"), and the segments they share at the start
//     and at the end are set aside as their common template.
//  2. When the prompts share segments, they must differ in one place
//     only, and the shared part must not hold the question (a segment
//     ending in "?"): otherwise the text around the question changed and
//     the neighbour is refused with RefusedContext. A prompt that is the
//     other with text added is refused (RefusedContext when the shared
//     part holds the question, else RefusedTemplate). Segments of
//     pleasantries only ("Hi!", "Thanks.") do not count as a difference.
//  3. The differing parts, with what they still share at their start and
//     end up to a structural boundary (a quote, a colon, a bracket, a line
//     break) trimmed off, are embedded on their own with the same
//     embedder, and their cosine similarity must reach the threshold
//     (else RefusedTemplate); the guards then compare the differing parts.
//  4. When no segment is shared but the prompts share at least 60 bytes
//     and half of the shorter one up to such boundaries (a JSON or
//     one-line template), step 3 applies to what is left.
//  5. Otherwise sim itself must reach the threshold and the guards
//     compare the whole prompts.
//  6. The guards compare what was compared in step 3 or 5.
//
// A Comparator is immutable and safe for concurrent use.
type Comparator struct {
	guards *Guards
	emb    textEmbedder
}

// textEmbedder is the part of Embedder a Comparator uses.
type textEmbedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// NewComparator returns a Comparator that compares with emb (which should
// be the cache's embedder, so that similarities share one scale) and
// refuses what guards flag. guards may be nil (no guards); emb must not be.
func NewComparator(guards *Guards, emb interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}) (*Comparator, error) {
	if emb == nil {
		return nil, fmt.Errorf("semantic: NewComparator: embedder is required")
	}
	return &Comparator{guards: guards, emb: emb}, nil
}

var _ Comparer = (*Comparator)(nil)

// Compare implements Comparer. Its error is the embedder's, when the
// differing parts could not be embedded.
func (c *Comparator) Compare(ctx context.Context, query, cached string, sim, threshold float64) (Verdict, error) {
	v := Verdict{Similarity: sim}
	d := diffSegments(query, cached)
	q, k := query, cached
	differing := false
	if d.shared {
		switch {
		case d.regions > 1 || d.questionShared:
			v.Refused = RefusedContext
			return v, nil
		case d.inserted:
			// Text was added around a shared part that is not a question:
			// nothing to compare the addition with.
			v.Refused = RefusedTemplate
			return v, nil
		}
		q, k, differing = d.query, d.cached, true
		if rq, rk, n := trimShared(q, k); n >= minTrimInSegment {
			q, k = rq, rk
		}
	} else if rq, rk, n := trimShared(q, k); n >= minTrimWhole && 2*n >= min(len(q), len(k)) {
		// One long segment shared around the question (a JSON or
		// one-line template): compare what is left.
		q, k, differing = rq, rk, true
	}
	if differing {
		vecs, err := c.emb.Embed(ctx, []string{q, k})
		if err == nil && len(vecs) != 2 {
			err = fmt.Errorf("embedder returned %d vectors for 2 texts", len(vecs))
		}
		if err != nil {
			return v, fmt.Errorf("embed differing parts: %w", err)
		}
		v.Similarity = cosine(vecs[0], vecs[1])
	}
	if !accept(v.Similarity, threshold) {
		v.Refused = RefusedTemplate
		return v, nil
	}
	if c.guards != nil {
		if reason, flipped := c.guards.Flip(q, k); flipped {
			v.Refused = reason
		}
	}
	return v, nil
}

// maxSubstituted is the most content words substitutedWords looks at:
// more than that is a different text, which the similarity judges.
const maxSubstituted = 2

// substitutedWords reports whether a and b have the same content words
// (see contentWords) in the same order but for one or two positions whose
// words are not spellings of one another (see spellingVariant). A lexical
// embedder scores such texts by what they share, so a long sentence with
// "quiet" for "loud" or "exchange" for "return" stays above any
// threshold. Spelling variants and typos ("canceled" / "cancelled",
// "acount" / "account") pass; synonyms do not ("change" / "update"): a
// miss is the safe side.
func substitutedWords(a, b string) bool {
	ca := contentWords(roleStems(guardWords(guardNormalize(a))))
	cb := contentWords(roleStems(guardWords(guardNormalize(b))))
	if len(ca) != len(cb) {
		return false
	}
	var xs, ys []string
	for i := range ca {
		if ca[i] != cb[i] {
			xs, ys = append(xs, ca[i]), append(ys, cb[i])
		}
	}
	if len(xs) == 0 || len(xs) > maxSubstituted || slices.Equal(sortedCopy(xs), sortedCopy(ys)) {
		return false // the same, another text, or the same words reordered (the roles guard's)
	}
	for i := range xs {
		if !spellingVariant(xs[i], ys[i]) {
			return true
		}
	}
	return false
}

// spellingVariant reports whether two words are within the edit distance
// of a spelling variant or a typo: one edit per five letters of the
// shorter word (none below five letters: "shop" / "stop" differ).
func spellingVariant(x, y string) bool {
	rx, ry := []rune(x), []rune(y)
	return levenshtein(rx, ry) <= min(len(rx), len(ry))/5
}

// levenshtein is the edit distance (insertions, deletions, substitutions)
// of a and b.
func levenshtein(a, b []rune) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Shared stretches trimShared must find before the comparison looks at
// what is left, in bytes: inside the differing segments of a template,
// and in prompts that share no whole segment (a JSON or one-line
// template, which must then also share at least half of the shorter).
const (
	minTrimInSegment = 20
	minTrimWhole     = 60
)

// trimShared removes the longest common prefix and suffix of a and b that
// end and start at a structural boundary (a line break, a quote, a colon,
// a bracket or brace, a sentence's end), so that what is left are whole
// values such as a JSON field's string or a tag's content. It returns the
// remainders and how many bytes were removed from each; 0 when either
// remainder would be empty.
//
// A cut never falls inside a literal (code, a quoted string, a URL): the
// literal stays whole on both sides, for the guards to compare.
func trimShared(a, b string) (ra, rb string, n int) {
	sa, sb := literalSpans(a), literalSpans(b)
	cp := 0
	for cp < len(a) && cp < len(b) && a[cp] == b[cp] {
		cp++
	}
	for cp > 0 && (!boundaryBefore(a, cp) || inSpan(sa, cp) || inSpan(sb, cp)) {
		cp--
	}
	cs := 0
	for cs < len(a)-cp && cs < len(b)-cp && a[len(a)-1-cs] == b[len(b)-1-cs] {
		cs++
	}
	for cs > 0 && (!boundaryAt(a, len(a)-cs) || inSpan(sa, len(a)-cs) || inSpan(sb, len(b)-cs)) {
		cs--
	}
	ra, rb = strings.TrimSpace(a[cp:len(a)-cs]), strings.TrimSpace(b[cp:len(b)-cs])
	if ra == "" || rb == "" {
		return a, b, 0
	}
	return ra, rb, cp + cs
}

// inSpan reports whether a cut at byte i falls strictly inside a span.
func inSpan(spans []span, i int) bool {
	for _, sp := range spans {
		if sp.start < i && i < sp.end {
			return true
		}
	}
	return false
}

// isBoundary reports whether c ends or starts a structural unit.
func isBoundary(c byte) bool { return strings.IndexByte("\n\"{}[]<>|:", c) >= 0 }

// boundaryBefore reports whether a prefix of s of length i ends at a
// boundary: after a boundary byte, or after a sentence's end and a space.
func boundaryBefore(s string, i int) bool {
	return isBoundary(s[i-1]) || (i >= 2 && s[i-1] == ' ' && strings.IndexByte(".?!:", s[i-2]) >= 0)
}

// boundaryAt reports whether a suffix of s starting at i starts at a
// boundary byte.
func boundaryAt(s string, i int) bool { return isBoundary(s[i]) }

// cosine is the cosine similarity of a and b, in [-1, 1]; 0 when either is
// zero or their lengths differ.
func cosine(a, b []float32) float64 {
	if len(a) != len(b) {
		return 0
	}
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

// segmentDiff is what diffSegments finds.
type segmentDiff struct {
	// shared reports that the prompts share segments (a template, a
	// context) besides pleasantries.
	shared bool
	// query and cached are the differing segments, when shared.
	query, cached string
	// regions > 1 when the prompts differ in more than one place: the
	// differing middles still share a segment.
	regions int
	// inserted reports that one prompt is the other with segments added
	// (one middle is empty).
	inserted bool
	// questionShared reports that a shared segment is a question (ends
	// in "?"), so what differs is not the question.
	questionShared bool
}

// diffSegments compares two prompts segment by segment (see Comparator).
// Segments made of pleasantries only ("Hi!", "Thanks in advance.") are
// left out of the comparison when they are all that differs.
func diffSegments(a, b string) segmentDiff {
	as, ak := segmentsWithKeys(a)
	bs, bk := segmentsWithKeys(b)
	p := 0
	for p < len(ak) && p < len(bk) && ak[p] == bk[p] {
		p++
	}
	s := 0
	for s < len(ak)-p && s < len(bk)-p && ak[len(ak)-1-s] == bk[len(bk)-1-s] {
		s++
	}
	am, bm := ak[p:len(ak)-s], bk[p:len(bk)-s]
	var d segmentDiff
	common := false
	for _, x := range am {
		if slices.Contains(bm, x) {
			common = true
			break
		}
	}
	if p+s == 0 && !common || len(am) == 0 && len(bm) == 0 {
		return d // nothing shared, or only pleasantries differ: compare the whole prompts
	}
	d.shared, d.regions = true, 1
	if common {
		d.regions = 2
	}
	d.inserted = len(am) == 0 || len(bm) == 0
	for _, x := range slices.Concat(ak[:p], ak[len(ak)-s:]) {
		if strings.HasSuffix(x, "?") {
			d.questionShared = true
		}
	}
	d.query = strings.Join(as[p:len(as)-s], " ")
	d.cached = strings.Join(bs[p:len(bs)-s], " ")
	return d
}

// pleasantryWords make up the segments diffSegments may ignore.
var pleasantryWords = wordSet(strings.Fields(`hi hello hey hiya greetings dear thanks thank thx ty you
	please pls cheers regards kind best good morning afternoon evening day team support sir madam
	ok okay so much a lot in advance and all there everyone folks`))

// pleasantry reports whether a segment key holds pleasantry words only.
func pleasantry(key string) bool {
	ws := guardWords(key)
	for _, w := range ws {
		if !pleasantryWords[w] {
			return false
		}
	}
	return len(ws) > 0
}

// segments cuts a text into segments: at line breaks, after a sentence's
// end (". ", "? ", "! ") and after a short label ("Customer question: ",
// at most three words before a colon at a segment's start). Empty
// segments are dropped; each is trimmed.
func segments(s string) []string {
	var out []string
	start := 0
	fences := reFenced.FindAllStringIndex(s, -1) // a fenced block is one segment
	emit := func(end int) {
		if t := strings.TrimSpace(s[start:end]); t != "" {
			out = append(out, t)
		}
		start = end
	}
	for i := 0; i < len(s); i++ {
		if len(fences) > 0 && i == fences[0][0] {
			emit(i)
			i = fences[0][1] - 1
			emit(fences[0][1])
			fences = fences[1:]
			continue
		}
		switch c := s[i]; {
		case c == '\n':
			emit(i + 1)
		case (c == '.' || c == '?' || c == '!') && i+1 < len(s) && (s[i+1] == ' ' || s[i+1] == '\t'):
			emit(i + 1)
		case c == ':' && i+1 < len(s) && (s[i+1] == ' ' || s[i+1] == '\t'):
			if head := strings.TrimSpace(s[start:i]); head != "" && len(strings.Fields(head)) <= 3 {
				emit(i + 1)
			}
		}
	}
	emit(len(s))
	return out
}

// segmentsWithKeys returns the segments of s that are not pleasantries
// and their comparison keys: guard-normalised, white space collapsed.
func segmentsWithKeys(s string) (segs, keys []string) {
	for _, seg := range segments(s) {
		k := strings.Join(strings.Fields(guardNormalize(seg)), " ")
		if !pleasantry(k) {
			segs, keys = append(segs, seg), append(keys, k)
		}
	}
	return segs, keys
}
