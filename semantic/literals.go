package semantic

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// spanKind names a stretch of a prompt that is not prose: its bytes are
// kept verbatim by Normalization and must be equal between two prompts for
// a semantic hit (the literal guard).
type spanKind uint8

const (
	spanCode   spanKind = iota + 1 // fenced ``` block or inline `code`
	spanURL                        // http(s)/ftp/ws URL, www. host, data: URL
	spanEmail                      // an e-mail address
	spanQuoted                     // "double", “typographic” or 'single' quoted text
	spanToken                      // a case-sensitive token (see isCaseSensitiveToken)
	spanPath                       // a file path: /home/ana/Documents, ~/x, C:\Users\Ana
)

// span is the byte range [start, end) of one literal in a text.
type span struct {
	start, end int
	kind       spanKind
}

// The literal patterns, in precedence order: a later pattern's match that
// overlaps an earlier one's is dropped, so a URL inside code is part of the
// code and a quote inside a URL is part of the URL. All are RE2 (linear
// time), so a 4 MiB prompt costs a few scans, never backtracking.
var (
	reFenced = regexp.MustCompile("(?s)```.*?(?:```|$)")
	reInline = regexp.MustCompile("`[^`\n]+`")
	reURL    = regexp.MustCompile(`(?i)\b(?:(?:https?|ftp|wss?|file)://|www\.)[^\s<>"'` + "`" + `]+|(?i)\bdata:[a-z0-9.+/-]*(?:;[a-z0-9=.+_-]+)*,[^\s"'<>` + "`" + `]*`)
	reEmail  = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`)
	// Single quotes open only after the start, white space or an opening
	// bracket and close only before the end, white space or punctuation,
	// so the apostrophes of "don't" and "users'" never pair up.
	reQuoted = regexp.MustCompile(`"[^"\n]{1,200}"|“[^”\n]{1,200}”|‘[^’\n]{1,200}’|(?:^|[\s(\[{:=,])('[^'\n]{1,200}')(?:$|[\s)\]}.,;:!?])`)
	// rePath is a Unix path of two or more components after the start,
	// white space or an opening bracket or quote (so "and/or" and "24/7"
	// are not paths), or a Windows path with a drive letter.
	rePath = regexp.MustCompile(`(?:^|[\s(\[{"'=])((?:~|\.{1,2})?/[\w.@%+-]+(?:/[\w.@%+-]*)+|[A-Za-z]:\\[^\s"'<>|]+)`)
	// reIdent is a run of letters and digits joined by - _ / or . (a
	// ticket, policy or model id: INC-0012345, POL-77-3391-A, gpt-4o); the
	// literal guard compares those holding a letter and a digit, case-folded.
	reIdent = regexp.MustCompile(`[A-Za-z0-9]+(?:[-_/.][A-Za-z0-9]+)+`)
	// reCall is a function call written without backticks, "foo(a, b)",
	// "x.upper()": code, whose argument order and case matter. A word and
	// a parenthesis apart ("shipping (free)") is prose.
	reCall = regexp.MustCompile(`[A-Za-z_][\w.]*\([^()\n]{0,200}\)`)
)

// literalSpans returns the literal spans of s, sorted by start, never
// overlapping.
func literalSpans(s string) []span {
	var out []span
	overlaps := func(a, b int) bool {
		for _, sp := range out {
			if a < sp.end && sp.start < b {
				return true
			}
		}
		return false
	}
	add := func(a, b int, k spanKind) {
		if a < b && !overlaps(a, b) {
			out = append(out, span{a, b, k})
		}
	}
	// Each pattern runs only when the text holds what it needs (a cheap
	// substring test), so prose pays for the token scan alone.
	has := func(subs ...string) bool {
		for _, x := range subs {
			if strings.Contains(s, x) {
				return true
			}
		}
		return false
	}
	find := func(re *regexp.Regexp, subs ...string) [][]int {
		if !has(subs...) {
			return nil
		}
		return re.FindAllStringSubmatchIndex(s, -1)
	}
	for _, m := range find(reFenced, "```") {
		add(m[0], m[1], spanCode)
	}
	for _, m := range find(reInline, "`") {
		add(m[0], m[1], spanCode)
	}
	for _, m := range find(reURL, "://", "www.", "WWW.", "data:", "DATA:") {
		// Sentence punctuation after a URL is not part of it.
		end := m[1]
		for end > m[0] && strings.ContainsRune(".,;:!?)]}'\"", rune(s[end-1])) {
			end--
		}
		add(m[0], end, spanURL)
	}
	for _, m := range find(reCall, "(") {
		add(m[0], m[1], spanCode)
	}
	for _, m := range find(reEmail, "@") {
		add(m[0], m[1], spanEmail)
	}
	for _, m := range find(rePath, "/", "\\") {
		end := m[3]
		for end > m[2] && strings.ContainsRune(".,;:!?)]}'\"", rune(s[end-1])) {
			end--
		}
		add(m[2], end, spanPath)
	}
	for _, m := range find(reQuoted, "\"", "'", "“", "‘") {
		if m[2] >= 0 { // the single-quote form: its group is the quote
			add(m[2], m[3], spanQuoted)
		} else {
			add(m[0], m[1], spanQuoted)
		}
	}
	for i, j := nextTokenRun(s, 0); i >= 0; i, j = nextTokenRun(s, j) {
		if j-i >= 16 && isCaseSensitiveToken(s[i:j]) {
			add(i, j, spanToken) // base64-like: keep the whole run
			continue
		}
		// Otherwise look at each identifier inside the run: the stretches
		// between its + / = and - characters.
		for a := i; a < j; {
			if isTokenSeparator(s[a]) {
				a++
				continue
			}
			b := a + 1
			for b < j && !isTokenSeparator(s[b]) {
				b++
			}
			if isCaseSensitiveToken(s[a:b]) {
				add(a, b, spanToken)
			}
			a = b
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out
}

// isCaseSensitiveToken reports whether an ASCII token's letter case or
// spelling carries meaning, so that folding it could make two different
// strings equal: it holds an underscore (user_id); or mixes case inside the
// word (camelCase, iPhone, OAuth, XMLHttp: a lower-case letter followed by
// an upper-case one, or two upper-case letters followed by a lower-case
// one); or is at least 6 characters mixing letters and digits (a1b2c3, a
// hex digest, an order id). Shorter letter-digit words (2FA, 4G, x86) and
// capitalised or all-capital words (Hello, PIN) are prose and are folded.
func isCaseSensitiveToken(w string) bool {
	if pluralAcronym(w) {
		return false // SSDs, APIs, URLs: prose
	}
	var letters, digits int
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch {
		case c == '_':
			if len(w) > 1 {
				return true
			}
		case c >= '0' && c <= '9':
			digits++
		case isASCIILetter(c):
			letters++
			if i > 0 && isLower(w[i-1]) && isUpper(c) {
				return true
			}
			if i > 1 && isUpper(w[i-2]) && isUpper(w[i-1]) && isLower(c) {
				return true
			}
		}
	}
	return len(w) >= 6 && letters > 0 && digits > 0
}

// pluralAcronym reports whether w is two or more capitals and an "s".
func pluralAcronym(w string) bool {
	n := len(w)
	if n < 3 || w[n-1] != 's' {
		return false
	}
	for i := 0; i < n-1; i++ {
		if !isUpper(w[i]) {
			return false
		}
	}
	return true
}

// nextTokenRun returns the byte range [start, end) of the first maximal
// run of isTokenRunByte bytes in s at or after from, or -1, -1 when there
// is none: what the regexp [A-Za-z0-9_+/=-]+ finds, without its cost
// (TestNextTokenRunMatchesRegexp).
func nextTokenRun(s string, from int) (start, end int) {
	i := from
	for i < len(s) && !isTokenRunByte(s[i]) {
		i++
	}
	if i == len(s) {
		return -1, -1
	}
	j := i + 1
	for j < len(s) && isTokenRunByte(s[j]) {
		j++
	}
	return i, j
}

// isTokenRunByte reports whether c may be part of a run that may be a
// case-sensitive token: a letter, a digit, an underscore or the base64
// alphabet's + / = and - (literalSpans scans for maximal runs of them).
func isTokenRunByte(c byte) bool {
	return isASCIILetter(c) || c >= '0' && c <= '9' || c == '_' || isTokenSeparator(c)
}

// isTokenSeparator reports whether c separates the identifiers inside a
// token run.
func isTokenSeparator(c byte) bool { return c == '+' || c == '/' || c == '=' || c == '-' }

func isASCIILetter(c byte) bool { return isLower(c) || isUpper(c) }
func isLower(c byte) bool       { return c >= 'a' && c <= 'z' }
func isUpper(c byte) bool       { return c >= 'A' && c <= 'Z' }

// normalizeProse returns s with its prose normalised as n says and its
// literal spans (code, URLs, e-mail addresses, quoted strings,
// case-sensitive tokens) kept byte for byte: case and spacing change the
// meaning there.
func (n Normalization) normalizeProse(s string) string {
	spans := literalSpans(s)
	if len(spans) == 0 {
		return n.prose(s, true, true)
	}
	var b strings.Builder
	b.Grow(len(s))
	at := 0
	for i, sp := range spans {
		b.WriteString(n.prose(s[at:sp.start], i == 0, false))
		b.WriteString(s[sp.start:sp.end])
		at = sp.end
	}
	b.WriteString(n.prose(s[at:], false, true))
	return b.String()
}

// prose normalises one stretch of prose: NFC, lower case, and white-space
// runs made one space, trimmed at the text's start (first) and end (last).
func (n Normalization) prose(s string, first, last bool) string {
	if !n.SkipNFC {
		s = norm.NFC.String(s)
	}
	if !n.KeepCase {
		s = strings.ToLower(s)
	}
	if n.KeepSpace {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && (b.Len() > 0 || !first) {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	if space && !last && (b.Len() > 0 || !first) {
		b.WriteByte(' ')
	}
	return b.String()
}

// maskSpans returns s with spans (literalSpans of s) replaced by spaces.
func maskSpans(s string, spans []span) string {
	if len(spans) == 0 {
		return s
	}
	b := []byte(s)
	for _, sp := range spans {
		for i := sp.start; i < sp.end; i++ {
			b[i] = ' '
		}
	}
	return string(b)
}

// literals is what the literal guard compares: the multiset of a text's
// literal spans (verbatim; e-mail addresses lower-cased, since their
// domain is case-insensitive) and of its numbers and number words.
type literals struct {
	spans   []string // "kind:text", sorted
	numbers []string // canonical numbers (guardNumbers) and number words, sorted
	prose   string   // the text with its literal spans replaced by spaces
}

// textLiterals extracts the literals of s. Numbers are read from the prose
// only (a number inside code or a URL is part of that literal).
func textLiterals(s string) literals {
	var l literals
	spans := literalSpans(s)
	for _, sp := range spans {
		t := s[sp.start:sp.end]
		if sp.kind == spanEmail {
			t = strings.ToLower(t)
		}
		if sp.kind == spanQuoted {
			t = strings.Trim(t, "\"'“”‘’")
		}
		l.spans = append(l.spans, string('0'+rune(sp.kind))+":"+t)
	}
	masked := maskSpans(s, spans)
	l.prose = masked
	for _, id := range reIdent.FindAllString(masked, -1) {
		if strings.ContainsAny(id, "0123456789") && strings.IndexFunc(id, unicode.IsLetter) >= 0 {
			l.spans = append(l.spans, "id:"+strings.ToLower(id))
		}
	}
	p := guardNormalize(masked)
	l.numbers = guardNumbers(p)
	for _, w := range guardWords(p) {
		if numberWords[w] {
			l.numbers = append(l.numbers, w)
		}
	}
	slices.Sort(l.spans)
	slices.Sort(l.numbers)
	return l
}

// numberWords are the spelled-out numbers the number guard compares as
// words ("two eggs" vs "three eggs"). "one" is left out: it is far more
// often a pronoun ("which one", "a new one") than a count.
var numberWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`zero two three four five six seven eight nine ten
		eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen
		twenty thirty forty fifty sixty seventy eighty ninety hundred thousand
		million billion trillion dozen half quarter twice double triple
		first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth
		thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth
		thirtieth fortieth fiftieth hundredth thousandth`) {
		m[w] = true
	}
	return m
}()

// unitWords are the units a number carries when they follow it, with at
// most one space between ("5 kg" == "5kg", "5 kg" != "5 lb"), mapped to one
// spelling.
var unitWords = func() map[string]string {
	m := map[string]string{}
	for _, g := range []string{
		"kg kgs kilogram kilograms kilo kilos", "g gram grams", "mg milligram milligrams",
		"lb lbs pound pounds", "oz ounce ounces", "t ton tons tonne tonnes",
		"km kilometer kilometers kilometre kilometres", "m meter meters metre metres",
		"cm centimeter centimeters", "mm millimeter millimeters", "mi mile miles",
		"ft foot feet", "in inch inches", "yd yard yards",
		"l liter liters litre litres", "ml milliliter milliliters", "gal gallon gallons",
		"b byte bytes", "kb kilobyte kilobytes", "mb megabyte megabytes", "gb gigabyte gigabytes",
		"tb terabyte terabytes", "kib", "mib", "gib", "tib", "bit bits", "mbps", "gbps", "kbps",
		"ms millisecond milliseconds", "s sec secs second seconds", "min mins minute minutes",
		"h hr hrs hour hours", "day days", "week weeks", "month months", "year years yr yrs",
		"hz", "khz", "mhz", "ghz", "w watt watts", "kw", "kwh", "v volt volts", "mah",
		"c celsius", "f fahrenheit", "k kelvin", "mph", "kph", "px", "pt", "em", "rem", "dpi",
		"usd dollar dollars", "eur euro euros", "gbp", "jpy yen", "cents cent",
		"x times", "people person persons", "eggs egg", "cups cup", "items item", "pieces piece",
	} {
		fs := strings.Fields(g)
		for _, w := range fs {
			m[w] = fs[0]
		}
	}
	return m
}()

// followingUnit returns the unit word that starts at rs[k] (after at most
// one space) and how many runes it spans, or "".
// A unit may be squared or cubed: "12 square meters" is "12 sq m".
func followingUnit(rs []rune, k int) string {
	w, j := wordAt(rs, k)
	switch w {
	case "square", "sq", "cubic", "cu":
		pre := map[string]string{"square": "sq", "sq": "sq", "cubic": "cu", "cu": "cu"}[w]
		if u, _ := wordAt(rs, j); unitWords[u] != "" {
			return pre + " " + unitWords[u]
		}
		return ""
	}
	return unitWords[w]
}

// wordAt returns the run of letters starting at rs[k] (after at most one
// space) and the index after it; "" when a digit or underscore follows.
func wordAt(rs []rune, k int) (string, int) {
	if k < len(rs) && rs[k] == ' ' {
		k++
	}
	j := k
	for j < len(rs) && unicode.IsLetter(rs[j]) {
		j++
	}
	if j == k || (j < len(rs) && (unicode.IsDigit(rs[j]) || rs[j] == '_')) {
		return "", j
	}
	return string(rs[k:j]), j
}
