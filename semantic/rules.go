package semantic

import (
	"bytes"
	_ "embed" // the default TTL rules
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Rule is one TTL rule: prompts it matches are stored for TTL, or not cached
// at all when NoCache is set. A rule matches a prompt when any keyword or
// the pattern matches. The JSON form is documented in docs/ttl-rules.md.
type Rule struct {
	// Name identifies the rule in logs and headers: 1 to 64 characters of
	// ASCII letters, digits, '.', '_' and '-', starting with a letter or
	// digit, unique within a rule set.
	Name string `json:"name"`
	// Keywords are whole words or phrases, matched case-insensitively
	// (Unicode simple case folding after NFKC) on word boundaries: "now"
	// matches "Now?" and "right now." but not "know" or "snowboard". A
	// phrase's words must follow each other in the prompt, separated by
	// anything that is not a word character, so "up to date" matches
	// "up-to-date". Word characters are letters, marks, decimal digits and
	// '_'. In scripts written without spaces (Han, Hiragana, Katakana, Thai,
	// Lao, Khmer, Myanmar) every character is a word of its own, so a
	// keyword there matches as a substring. A keyword may contain only word
	// characters, spaces, and the connectors ' ’ - . between two word
	// characters; for symbols ("c++", "c#") use Pattern.
	Keywords []string `json:"keywords,omitempty"`
	// Pattern is an RE2 regular expression matched against the prompt as
	// sent; it is case-sensitive unless it says (?i), and \b is an ASCII
	// word boundary.
	Pattern string `json:"pattern,omitempty"`
	// TTL is the entry lifetime, a Go duration ("5m", "24h") of at least
	// one second. Exactly one of TTL and NoCache must be set.
	TTL string `json:"ttl,omitempty"`
	// NoCache sends matching prompts upstream without a lookup and keeps
	// no copy of the answer.
	NoCache bool `json:"no_cache,omitempty"`
}

// RuleError is the error ParseRules returns (wrapped) for an invalid rule.
// Its message names the rule's position, its name when known, and the
// field at fault.
type RuleError struct {
	// Index is the rule's 0-based position in the "rules" array.
	Index int
	// Name is the rule's name, "" when it has none or is unreadable.
	Name string
	// Field is the JSON field at fault, with the element index for
	// keywords ("keywords[2]"); "" when the rule as a whole is at fault
	// (not an object, an unknown field).
	Field string
	// Err says what is wrong.
	Err error
}

func (e *RuleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rules[%d]", e.Index)
	if e.Name != "" {
		fmt.Fprintf(&b, " %q", e.Name)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *RuleError) Unwrap() error { return e.Err }

// Rules is a compiled, ordered set of TTL rules. It is immutable and safe
// for concurrent use. A nil *Rules has no rules: it matches nothing.
type Rules struct {
	rules []compiledRule
	// phrases holds every rule's keywords as folded words, indexed by
	// their first word, so that one pass over the prompt's words finds the
	// first rule with a matching keyword. Nil when no rule has keywords.
	phrases map[string][]phrase
}

type compiledRule struct {
	rule Rule
	ttl  time.Duration
	re   *regexp.Regexp // nil when the rule has no pattern
}

// phrase is one keyword of rule number rule, as folded words.
type phrase struct {
	rule  int
	words []string
}

// ruleNameRE is what a rule name may look like: safe in a header value, a
// log field and a metric label.
var ruleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// defaultRulesJSON is the default rule set. It sits with the test fixtures;
// docs/ttl-rules.md holds a copy that TestDefaultRulesDocumented keeps in
// step.
//
//go:embed rules_default.json
var defaultRulesJSON []byte

// defaultRules is compiled once, at start-up; a default file that does not
// parse panics here and so fails every test of the package.
var defaultRules = mustParseJSON(defaultRulesJSON, ParseRules)

// DefaultRules returns the default rule set, documented with its JSON in
// docs/ttl-rules.md: "realtime" (no caching for live data), then
// "time-sensitive" (5m), "code" (24h) and "policy" (24h).
func DefaultRules() *Rules { return defaultRules }

// LoadRules reads and parses a rules file; see ParseRules.
func LoadRules(path string) (*Rules, error) {
	return loadJSONFile(path, "rules", parseRules)
}

// ParseRules compiles a JSON rule set, {"rules": [rule, ...]}, whose rules
// are tried in order. An empty array is valid and matches nothing. Unknown
// fields are errors, and so is any invalid rule: an error for a rule wraps
// a *RuleError naming the rule's index, its name and the field (a bad
// regexp, a bad or too short duration, both or neither of ttl and no_cache,
// neither keywords nor pattern, an empty or unusable keyword, a missing,
// malformed or duplicate name).
func ParseRules(data []byte) (*Rules, error) {
	return parseJSON(data, "rules", parseRules)
}

func parseRules(data []byte) (*Rules, error) {
	var doc struct {
		Rules *[]json.RawMessage `json:"rules"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, errors.New("trailing data after the JSON object")
	}
	if doc.Rules == nil {
		return nil, errors.New(`field rules: want an array of rules`)
	}
	raws := *doc.Rules
	rs := &Rules{rules: make([]compiledRule, 0, len(raws))}
	seen := make(map[string]int, len(raws))
	for i, raw := range raws {
		c, phrases, err := compileRule(i, raw)
		if err != nil {
			return nil, err
		}
		if j, dup := seen[c.rule.Name]; dup {
			return nil, &RuleError{Index: i, Name: c.rule.Name, Field: "name", Err: fmt.Errorf("duplicate of rules[%d]", j)}
		}
		seen[c.rule.Name] = i
		for _, words := range phrases {
			if rs.phrases == nil {
				rs.phrases = make(map[string][]phrase)
			}
			rs.phrases[words[0]] = append(rs.phrases[words[0]], phrase{rule: i, words: words})
		}
		rs.rules = append(rs.rules, c)
	}
	return rs, nil
}

// compileRule decodes and checks rule number i, and returns it with its
// keywords as folded words.
func compileRule(i int, raw json.RawMessage) (compiledRule, [][]string, error) {
	var c compiledRule
	var phrases [][]string
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return c, nil, &RuleError{Index: i, Err: errors.New("want a JSON object")}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.rule); err != nil {
		// Read the name leniently, so the error can say which rule it is.
		var named struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(raw, &named)
		re := &RuleError{Index: i, Name: named.Name, Err: err}
		if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) {
			re.Field = te.Field
		}
		return c, nil, re
	}
	r := &c.rule
	fail := func(field string, format string, args ...any) (compiledRule, [][]string, error) {
		return compiledRule{}, nil, &RuleError{Index: i, Name: r.Name, Field: field, Err: fmt.Errorf(format, args...)}
	}
	if r.Name == "" {
		return fail("name", "must not be empty")
	}
	if !ruleNameRE.MatchString(r.Name) {
		return fail("name", "%q: want 1 to 64 of A-Z a-z 0-9 . _ - starting with a letter or digit", r.Name)
	}
	if len(r.Keywords) == 0 && r.Pattern == "" {
		return fail("keywords", "a rule needs keywords, a pattern or both")
	}
	for k, kw := range r.Keywords {
		words, err := keywordWords(kw)
		if err != nil {
			return fail(fmt.Sprintf("keywords[%d]", k), "%v", err)
		}
		phrases = append(phrases, words)
	}
	if r.Pattern != "" {
		re, err := regexp.Compile(r.Pattern)
		if err != nil {
			return fail("pattern", "%v", err)
		}
		c.re = re
	}
	switch {
	case r.NoCache && r.TTL != "":
		return fail("ttl", "a rule has either ttl or no_cache, not both")
	case r.NoCache:
	case r.TTL == "":
		return fail("ttl", "a rule needs a ttl or no_cache: true")
	default:
		d, err := time.ParseDuration(r.TTL)
		if err != nil {
			return fail("ttl", "%v", err)
		}
		if d < time.Second {
			return fail("ttl", "%q: must be at least 1s", r.TTL)
		}
		c.ttl = d
	}
	r.Keywords = slices.Clone(r.Keywords)
	return c, phrases, nil
}

// keywordWords splits a keyword into its folded words and checks that it
// holds nothing the word matcher would silently ignore.
func keywordWords(kw string) ([]string, error) {
	runes := []rune(kw)
	for j, ch := range runes {
		switch {
		case isWordRune(ch), unicode.IsSpace(ch):
		case strings.ContainsRune(`'’-.`, ch):
			if j == 0 || j == len(runes)-1 || !isWordRune(runes[j-1]) || !isWordRune(runes[j+1]) {
				return nil, fmt.Errorf("%q: %q must be between two word characters", kw, ch)
			}
		default:
			return nil, fmt.Errorf("%q: %q is not matched by keywords (letters, digits, marks, '_' and spaces); use pattern", kw, ch)
		}
	}
	words := splitWords(foldText(kw))
	if len(words) == 0 {
		return nil, fmt.Errorf("%q: no words", kw)
	}
	return words, nil
}

// Match returns the first rule, in file order, that matches prompt, and
// whether there is one. The Rule is a copy.
func (r *Rules) Match(prompt string) (Rule, bool) {
	i := r.match(prompt)
	if i < 0 {
		return Rule{}, false
	}
	rule := r.rules[i].rule
	rule.Keywords = slices.Clone(rule.Keywords)
	return rule, true
}

// Apply returns o with the first matching rule applied, and the rule's name
// ("" when no rule matches, and then o unchanged). A no_cache rule sets
// Mode to ModeOff. A ttl rule sets TTL to the rule's TTL unless o.TTL is
// already shorter (a rule never lengthens the lifetime a request asked
// for), and MaxAge likewise, so that an entry older than the rule's TTL,
// stored by a similar prompt that matched no rule, is not served either.
// When o.TTL is 0 (the server's TTL), the rule's TTL replaces it, which may
// be longer than the server's; bounding it is the caller's job.
func (r *Rules) Apply(prompt string, o Options) (Options, string) {
	i := r.match(prompt)
	if i < 0 {
		return o, ""
	}
	c := &r.rules[i]
	if c.rule.NoCache {
		o.Mode = ModeOff
		return o, c.rule.Name
	}
	if o.TTL <= 0 || c.ttl < o.TTL {
		o.TTL = c.ttl
	}
	// An entry older than the rule's TTL is not served either: a "latest"
	// question must not get a similar prompt's hour-old answer.
	if o.MaxAge <= 0 || c.ttl < o.MaxAge {
		o.MaxAge = c.ttl
	}
	return o, c.rule.Name
}

// match returns the index of the first matching rule, or -1.
func (r *Rules) match(prompt string) int {
	if r == nil {
		return -1
	}
	// The first rule with a matching keyword, then the patterns of the
	// rules before it: regexps are the slow part, so only those that can
	// still change the answer run.
	first := r.matchKeywords(prompt)
	for i := range r.rules[:first] {
		if re := r.rules[i].re; re != nil && re.MatchString(prompt) {
			return i
		}
	}
	if first == len(r.rules) {
		return -1
	}
	return first
}

// matchKeywords returns the index of the first rule with a keyword in
// prompt, or len(r.rules).
func (r *Rules) matchKeywords(prompt string) int {
	first := len(r.rules)
	if r.phrases == nil {
		return first
	}
	words := splitWords(foldText(prompt))
	for i, w := range words {
		for _, p := range r.phrases[w] {
			if p.rule < first && len(p.words) <= len(words)-i && slices.Equal(p.words, words[i:i+len(p.words)]) {
				first = p.rule
				if first == 0 {
					return 0
				}
			}
		}
	}
	return first
}

// isWordRune reports whether ch is part of a word: a letter, a mark, a
// decimal digit or '_'.
func isWordRune(ch rune) bool {
	if ch < utf8.RuneSelf {
		return 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '_'
	}
	return unicode.IsLetter(ch) || unicode.IsLetter(ch) || unicode.IsMark(ch) || unicode.IsDigit(ch)
}

// unspacedScripts are written without spaces between words; each of their
// characters is a word of its own.
var unspacedScripts = []*unicode.RangeTable{
	unicode.Han, unicode.Hiragana, unicode.Katakana,
	unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar,
}

// splitWords splits folded text into words (substrings of s).
func splitWords(s string) []string {
	var words []string
	start := -1 // start of the current word, -1 between words
	for i, ch := range s {
		switch {
		case ch >= utf8.RuneSelf && unicode.In(ch, unspacedScripts...):
			if start >= 0 {
				words = append(words, s[start:i])
			}
			words = append(words, s[i:i+utf8.RuneLen(ch)])
			start = -1
		case isWordRune(ch):
			if start < 0 {
				start = i
			}
		default:
			if start >= 0 {
				words = append(words, s[start:i])
				start = -1
			}
		}
	}
	if start >= 0 {
		words = append(words, s[start:])
	}
	return words
}

// foldText returns s in NFKC with each rune case-folded, so that "ＮＯＷ",
// "Now" and "now", or "ΟΔΟΣ" and "οδος", compare equal.
func foldText(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s) // ASCII is already NFKC
	}
	return strings.Map(foldRune, norm.NFKC.String(s))
}

// foldRune maps every rune of a simple case-folding orbit (K, k and the
// Kelvin sign; Σ, σ and ς) to one of them: the lower case of its smallest
// member.
func foldRune(ch rune) rune {
	if ch < utf8.RuneSelf {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		return ch
	}
	least := ch
	for f := unicode.SimpleFold(ch); f != ch; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return unicode.ToLower(least)
}
