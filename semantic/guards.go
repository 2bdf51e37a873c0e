package semantic

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// ErrGuardsConfig is returned by NewGuards for an unusable GuardsConfig.
var ErrGuardsConfig = errors.New("invalid guards config")

// DefaultNegations is the negation list used when GuardsConfig.Negations is
// nil. Any word ending in "n't" (didn't, hasn't, mustn't ...) also counts
// while "n't" is in the list. The apostrophe-less spellings common in user
// text (dont, cant, isnt ...) are included; "wont" is not, being an English
// word of its own. "unable" is, so that "Why can't I" and "Why am I unable
// to" agree (a rewording the load generator makes).
var DefaultNegations = []string{
	"not", "no", "never", "n't", "without", "cannot",
	"can't", "don't", "doesn't", "isn't", "aren't", "wasn't", "weren't",
	"won't", "wouldn't", "shouldn't", "couldn't",
	"nothing", "none", "nobody", "neither", "nor", "unable",
	"cant", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent",
	"wouldnt", "shouldnt", "couldnt",
}

// Reasons returned by Guards.Flip; an extra token gives "token:" + the token.
const (
	FlipNegation = "negation"
	FlipNumber   = "number"
	FlipLiteral  = "literal"
	FlipOpposite = "opposite"
	FlipRoles    = "roles"
	// FlipSubstitution: the texts are the same but for one or two content
	// words that are not spellings of one another ("set the sound to
	// loud" / "to quiet" in an otherwise long shared sentence).
	FlipSubstitution = "substitution"
	flipToken        = "token:"
)

// GuardsConfig configures NewGuards. The zero value guards negation with
// DefaultNegations only.
type GuardsConfig struct {
	// Negations are the words that negate a sentence, compared after the
	// same normalisation as the texts (NFKC, lower case, typographic
	// apostrophes made ASCII). Nil means DefaultNegations; an empty,
	// non-nil slice turns the negation guard off. The entry "n't" matches
	// every word ending in "n't".
	Negations []string
	// Numbers turns on the number guard: the multisets of numbers of the
	// two texts must be equal. A number keeps its sign, an adjacent
	// currency symbol (before or after: "$100" == "100$" == "$ 100") and a
	// following "%" or "percent"; thousands separators ("1,000" == "1000"),
	// leading zeros and trailing decimal zeros ("1.50" == "1.5") are
	// dropped. Digit runs inside words count ("4g" has the number 4).
	Numbers bool
	// Literals turns on the literal guard, which includes the number
	// guard: besides numbers (and spelled-out numbers: "two", "dozen"),
	// the multisets of the texts' literals must be equal, compared byte
	// for byte: fenced and inline code, URLs (data: URLs included),
	// e-mail addresses (case-folded), quoted strings and case-sensitive
	// tokens (identifiers with underscores or mixed case, letter-digit
	// strings of 6 or more characters, base64-like runs). See docs/guards.md.
	Literals bool
	// Opposites turns on the opposite-word guard: for each pair of
	// OppositePairs and ExtraOpposites, two texts that both use a word of
	// the pair must use the same words of it ("enable 2FA" vs "disable
	// 2FA" is refused; "turn on" vs "activate" is not). Words match on
	// their stems ("enabled" is "enable").
	Opposites bool
	// OppositePairs is the opposite list; nil means DefaultOpposites.
	OppositePairs [][2]string
	// ExtraOpposites are pairs added to OppositePairs (--guard-opposites).
	// Each word must be exactly one word.
	ExtraOpposites [][2]string
	// Roles turns on the swapped-roles guard: texts whose connectors
	// (from, to, into, vs, versus, than, over) are followed by each
	// other's words ("from London to Paris" vs "from Paris to London")
	// are refused.
	Roles bool
	// Substitution turns on the substitution guard: texts whose content
	// words (pronouns, articles, auxiliaries and prepositions left out)
	// are the same in the same order but for one or two positions must
	// have spellings of one another there (one edit per five letters:
	// "canceled" / "cancelled", "acount" / "account"), else they are
	// refused. A lexical embedder scores a long sentence with "quiet" for
	// "loud" by all it shares; synonyms ("change" / "update") are refused
	// too, the safe side.
	Substitution bool
	// Extra are single words that change the answer (e.g. "monthly",
	// "yearly", "delete"): each must be present in both texts or in
	// neither. Normalised like Negations; an entry that is not exactly one
	// word is an error.
	Extra []string
}

// DefaultGuardsConfig is the configuration `semcache serve` uses unless
// told otherwise: every guard on (negation with DefaultNegations,
// literals including numbers, opposites with DefaultOpposites, swapped
// roles). Its cost on BANKING77 and CLINC150 and what it removes on the
// labelled pair set are in benchmarks/RESULTS.md ("Guards at the default
// settings").
func DefaultGuardsConfig() GuardsConfig {
	return GuardsConfig{Numbers: true, Literals: true, Opposites: true, Roles: true, Substitution: true}
}

// DefaultGuardKinds is DefaultGuardsConfig as a ParseGuardKinds list: the
// default of `semcache serve --guards`.
const DefaultGuardKinds = "negation,literals,opposites,roles,substitution"

// GuardKindNames lists the kinds ParseGuardKinds accepts, for messages.
const GuardKindNames = "negation, numbers, literals, opposites, roles and substitution"

// ParseGuardKinds returns the GuardsConfig of a comma list of guard kinds
// (negation, numbers, literals, opposites, roles; "none" for none) and
// whether any guard is on. An unknown kind is an error wrapping
// ErrGuardsConfig.
func ParseGuardKinds(list string) (GuardsConfig, bool, error) {
	cfg := GuardsConfig{Negations: []string{}}
	if list == "none" {
		return cfg, false, nil
	}
	for _, k := range strings.Split(list, ",") {
		switch strings.TrimSpace(k) {
		case "negation":
			cfg.Negations = nil // the default list
		case "numbers":
			cfg.Numbers = true
		case "literals":
			cfg.Literals = true
		case "opposites":
			cfg.Opposites = true
		case "roles":
			cfg.Roles = true
		case "substitution":
			cfg.Substitution = true
		default:
			return cfg, false, fmt.Errorf("%w: guard kind %q: want none or a comma list of %s", ErrGuardsConfig, k, GuardKindNames)
		}
	}
	return cfg, true, nil
}

// Guards refuses semantic hits whose query and cached prompt differ in a
// way embeddings are blind to: negation, numbers and configured tokens. It
// is immutable after NewGuards and safe for concurrent use.
type Guards struct {
	negations map[string]bool
	suffixNT  bool // "n't" is a negation: every word ending in n't counts
	numbers   bool
	literals  bool
	opposites opposites // nil when the opposite guard is off
	roles     bool
	subst     bool
	extra     []string // normalised, in config order, without duplicates
}

// NewGuards returns the guards cfg describes. It copies cfg.
func NewGuards(cfg GuardsConfig) (*Guards, error) {
	negs := cfg.Negations
	if negs == nil {
		negs = DefaultNegations
	}
	g := &Guards{negations: make(map[string]bool, len(negs)), numbers: cfg.Numbers || cfg.Literals,
		literals: cfg.Literals, roles: cfg.Roles, subst: cfg.Substitution}
	if cfg.Opposites {
		pairs := cfg.OppositePairs
		if pairs == nil {
			pairs = DefaultOpposites
		}
		o, err := compileOpposites(append(slices.Clip(pairs), cfg.ExtraOpposites...))
		if err != nil {
			return nil, fmt.Errorf("%w: opposite pair: %v", ErrGuardsConfig, err)
		}
		g.opposites = o
	} else if len(cfg.ExtraOpposites) > 0 {
		return nil, fmt.Errorf("%w: ExtraOpposites need Opposites on", ErrGuardsConfig)
	}
	for _, n := range negs {
		w, err := oneWord(n)
		if err != nil {
			return nil, fmt.Errorf("%w: negation %q: %v", ErrGuardsConfig, n, err)
		}
		g.negations[w] = true
	}
	g.suffixNT = g.negations["n't"]
	for _, e := range cfg.Extra {
		w, err := oneWord(e)
		if err != nil {
			return nil, fmt.Errorf("%w: extra token %q: %v", ErrGuardsConfig, e, err)
		}
		if !slices.Contains(g.extra, w) {
			g.extra = append(g.extra, w)
		}
	}
	return g, nil
}

// oneWord normalises a configured entry, which must be exactly one word.
func oneWord(s string) (string, error) {
	ws := guardWords(guardNormalize(s))
	if len(ws) != 1 {
		return "", fmt.Errorf("want exactly one word, got %d", len(ws))
	}
	return ws[0], nil
}

// Flip reports whether serving cached's answer to query could give the
// opposite or a different answer, and why: FlipNegation when exactly one
// side is negated, FlipNumber when their number multisets differ, or
// "token:" + the first configured extra token (in config order) present in
// one text only. Checks run in that order; the first that fires is the
// reason. A text is negated when it holds an odd number of negation words
// (count parity: "not unhappy" is negated, "not never" is not), so
// "I can't log in" flips against "I can log in" but "no, I can't" does not
// flip against "I can". Flip is symmetric in its arguments.
func (g *Guards) Flip(query, cached string) (reason string, flipped bool) {
	q, c := guardNormalize(query), guardNormalize(cached)
	// The roles guard reads every word (identifiers such as MySQL are
	// what gets swapped); negation and opposites read the prose only when
	// the literal guard covers the rest ("file not found" in quotes).
	allQ, allC := guardWords(q), guardWords(c)
	qw, cw := allQ, allC
	var ql, cl literals
	if g.literals {
		ql, cl = textLiterals(query), textLiterals(cached)
		qw, cw = guardWords(guardNormalize(ql.prose)), guardWords(guardNormalize(cl.prose))
	}
	if len(g.negations) > 0 && g.negated(qw) != g.negated(cw) {
		return FlipNegation, true
	}
	if g.literals {
		if !slices.Equal(ql.numbers, cl.numbers) {
			return FlipNumber, true
		}
		if !slices.Equal(ql.spans, cl.spans) {
			return FlipLiteral, true
		}
	} else if g.numbers && !slices.Equal(guardNumbers(q), guardNumbers(c)) {
		return FlipNumber, true
	}
	if g.opposites != nil {
		if _, ok := g.opposites.flip(stems(qw), stems(cw)); ok {
			return FlipOpposite, true
		}
	}
	if g.roles {
		if _, ok := swapped(allQ, allC); ok {
			return FlipRoles, true
		}
		// The same numbers in another order: "subtract 5 from 10" /
		// "subtract 10 from 5", "is 7 greater than 3" / "is 3 greater than 7".
		if qn, cn := numbersInOrder(q), numbersInOrder(c); !slices.Equal(qn, cn) && slices.Equal(sortedCopy(qn), sortedCopy(cn)) {
			return FlipRoles, true
		}
	}
	if g.subst && substitutedWords(query, cached) {
		return FlipSubstitution, true
	}
	for _, e := range g.extra {
		if slices.Contains(qw, e) != slices.Contains(cw, e) {
			return flipToken + e, true
		}
	}
	return "", false
}

// negated reports whether words hold an odd number of negation words.
func (g *Guards) negated(words []string) bool {
	n := 0
	for _, w := range words {
		if g.negations[w] || (g.suffixNT && strings.HasSuffix(w, "n't")) {
			n++
		}
	}
	return n%2 == 1
}

// guardNormalize applies NFKC, lower-cases and makes typographic
// apostrophes and the minus sign ASCII.
func guardNormalize(s string) string {
	s = strings.ToLower(norm.NFKC.String(s))
	return strings.Map(func(r rune) rune {
		switch r {
		case '\u2019', '\u2018', '\u02bc', '\u0060', '\u00b4':
			return '\''
		case '\u2212':
			return '-'
		}
		return r
	}, s)
}

// isGuardWordRune reports whether r belongs to a word: a letter, mark or digit.
func isGuardWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r)
}

// guardWords splits normalised text into words: runs of letters, marks and
// digits, with apostrophes kept between word runes ("can't", "o'clock")
// and dropped elsewhere. A word ending in "n" followed by "'t" keeps it.
func guardWords(s string) []string {
	rs := []rune(s)
	var out []string
	start := -1
	for i := 0; i <= len(rs); i++ {
		in := i < len(rs) && (isGuardWordRune(rs[i]) ||
			(rs[i] == '\'' && start >= 0 && i+1 < len(rs) && isGuardWordRune(rs[i+1])))
		switch {
		case in && start < 0:
			start = i
		case !in && start >= 0:
			out = append(out, string(rs[start:i]))
			start = -1
		}
	}
	return out
}

// guardNumbers returns the canonical numbers of normalised text s (see
// GuardsConfig.Numbers), sorted.
func guardNumbers(s string) []string {
	out := numbersInOrder(s)
	slices.Sort(out)
	return out
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// numbersInOrder returns the canonical numbers of normalised text s in
// the order they appear.
func numbersInOrder(s string) []string {
	rs := []rune(s)
	var out []string
	isDigit := func(i int) bool { return i >= 0 && i < len(rs) && rs[i] >= '0' && rs[i] <= '9' }
	for i := 0; i < len(rs); {
		if !isDigit(i) {
			i++
			continue
		}
		start := i
		var intPart, frac strings.Builder
		for ; isDigit(i); i++ {
			intPart.WriteRune(rs[i])
		}
		// Thousands groups: ",ddd" not followed by another digit.
		for i < len(rs) && rs[i] == ',' && isDigit(i+1) && isDigit(i+2) && isDigit(i+3) && !isDigit(i+4) {
			intPart.WriteString(string(rs[i+1 : i+4]))
			i += 4
		}
		if i < len(rs) && rs[i] == '.' && isDigit(i+1) {
			for i++; isDigit(i); i++ {
				frac.WriteRune(rs[i])
			}
		}
		end := i
		// Leading currency symbol (optionally one space away) and sign.
		cur, sign := "", ""
		j := start - 1
		if j >= 0 && rs[j] == ' ' && j-1 >= 0 && unicode.Is(unicode.Sc, rs[j-1]) {
			j--
		}
		if j >= 0 && unicode.Is(unicode.Sc, rs[j]) {
			cur = string(rs[j])
			j--
		} else {
			j = start - 1
		}
		if j >= 0 && rs[j] == '-' && (j == 0 || unicode.IsSpace(rs[j-1])) {
			sign = "-"
		}
		// Trailing currency symbol, "%" or "percent", optionally one space away.
		k := end
		if k < len(rs) && rs[k] == ' ' {
			k++
		}
		suffix := ""
		switch {
		case k < len(rs) && rs[k] == '%':
			suffix = "%"
		case k < len(rs) && cur == "" && unicode.Is(unicode.Sc, rs[k]):
			cur = string(rs[k])
		case strings.HasPrefix(string(rs[k:min(len(rs), k+7)]), "percent") && (k+7 == len(rs) || !isGuardWordRune(rs[k+7])):
			suffix = "%"
		}
		n := strings.TrimLeft(intPart.String(), "0")
		if n == "" {
			n = "0"
		}
		// Decimal digits are kept as written: "3.10" and "3.1" are
		// different versions, and a miss is the safe side.
		if f := frac.String(); f != "" {
			n += "." + f
		}
		if cur == "" && suffix == "" {
			if u := followingUnit(rs, end); u != "" {
				suffix = " " + u
			}
		}
		out = append(out, sign+cur+n+suffix)
	}
	return out
}
