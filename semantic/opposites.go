package semantic

import (
	"slices"
	"strings"
)

// DefaultOpposites is the opposite-word list used when
// GuardsConfig.Opposites is nil: pairs whose swap turns a question into
// another one, chosen from what support, banking, shopping, device and
// coding questions use ("enable 2FA" / "disable 2FA", "turn on" / "turn
// off", "sort ascending" / "sort descending"). Words are matched on their
// stems (see stem): "enabled", "enabling" and "enables" all count as
// "enable". A word may be in several pairs (delete: create, insert, add).
var DefaultOpposites = [][2]string{
	// on/off and state changes
	{"enable", "disable"}, {"activate", "deactivate"}, {"on", "off"}, {"start", "stop"},
	{"open", "close"}, {"lock", "unlock"}, {"block", "unblock"}, {"freeze", "unfreeze"},
	{"subscribe", "unsubscribe"}, {"install", "uninstall"}, {"connect", "disconnect"},
	{"link", "unlink"}, {"follow", "unfollow"}, {"mute", "unmute"}, {"pause", "resume"},
	{"show", "hide"}, {"mount", "unmount"}, {"attach", "detach"}, {"pair", "unpair"},
	{"archive", "unarchive"}, {"pin", "unpin"}, {"register", "deregister"},
	{"login", "logout"}, {"signin", "signout"}, {"in", "out"}, {"join", "leave"},
	{"enter", "exit"}, {"online", "offline"}, {"visible", "invisible"}, {"allow", "deny"},
	{"allow", "block"}, {"accept", "reject"}, {"accept", "decline"}, {"approve", "decline"},
	{"approve", "reject"}, {"approve", "deny"}, {"grant", "revoke"}, {"confirm", "cancel"},
	{"include", "exclude"}, {"add", "remove"}, {"add", "delete"}, {"create", "delete"},
	{"insert", "delete"}, {"add", "subtract"}, {"multiply", "divide"}, {"plus", "minus"},
	{"increase", "decrease"}, {"increase", "reduce"}, {"raise", "lower"},
	{"upgrade", "downgrade"}, {"expand", "collapse"}, {"maximize", "minimize"},
	{"zoom", "unzoom"}, {"pack", "unpack"}, {"load", "unload"}, {"zip", "unzip"},
	{"compress", "decompress"}, {"encrypt", "decrypt"}, {"encode", "decode"},
	{"serialize", "deserialize"}, {"push", "pull"}, {"push", "pop"},
	{"enqueue", "dequeue"}, {"read", "write"}, {"get", "set"}, {"request", "response"},
	{"valid", "invalid"}, {"available", "unavailable"}, {"possible", "impossible"},
	{"correct", "incorrect"}, {"legal", "illegal"}, {"agree", "disagree"},
	{"like", "dislike"}, {"mutable", "immutable"}, {"sync", "async"},
	{"synchronous", "asynchronous"}, {"static", "dynamic"}, {"public", "private"},
	{"internal", "external"}, {"input", "output"}, {"true", "false"},
	// money and shopping
	{"buy", "sell"}, {"bought", "sold"}, {"buyer", "seller"}, {"deposit", "withdraw"},
	{"credit", "debit"}, {"income", "expense"}, {"borrow", "lend"}, {"pay", "refund"},
	{"send", "receive"}, {"sent", "received"}, {"sender", "recipient"}, {"win", "lose"},
	{"gain", "loss"}, {"profit", "loss"}, {"cheap", "expensive"}, {"cheapest", "expensive"},
	{"import", "export"}, {"upload", "download"}, {"incoming", "outgoing"},
	{"inbound", "outbound"}, {"arrive", "depart"}, {"arrival", "departure"},
	// order, direction, position, time
	{"ascending", "descending"}, {"asc", "desc"}, {"before", "after"}, {"above", "below"},
	{"over", "under"}, {"inside", "outside"}, {"up", "down"}, {"top", "bottom"},
	{"left", "right"}, {"north", "south"}, {"east", "west"}, {"forward", "backward"},
	{"forward", "reverse"}, {"first", "last"}, {"next", "previous"}, {"begin", "end"},
	{"start", "end"}, {"early", "late"}, {"earliest", "latest"}, {"oldest", "newest"},
	{"old", "new"}, {"older", "newer"}, {"prefix", "suffix"}, {"head", "tail"},
	{"ceil", "floor"}, {"horizontal", "vertical"}, {"row", "column"},
	{"uppercase", "lowercase"}, {"upper", "lower"}, {"frontend", "backend"},
	{"client", "server"}, {"parent", "child"},
	// comparison and quality
	{"max", "min"}, {"maximum", "minimum"}, {"most", "least"}, {"more", "less"},
	{"more", "fewer"}, {"highest", "lowest"}, {"high", "low"}, {"higher", "lower"},
	{"fast", "slow"}, {"faster", "slower"}, {"best", "worst"}, {"better", "worse"},
	{"good", "bad"}, {"big", "small"}, {"large", "small"}, {"long", "short"},
	{"full", "empty"}, {"hot", "cold"}, {"light", "dark"}, {"day", "night"},
	{"positive", "negative"}, {"even", "odd"}, {"major", "minor"},
	{"male", "female"}, {"men", "women"}, {"inclusive", "exclusive"},
	{"keep", "return"}, {"keep", "remove"}, {"keep", "delete"}, {"keep", "discard"},
	{"rise", "fall"}, {"gain", "lose"}, {"strong", "weak"}, {"strength", "weakness"},
	{"allowed", "forbidden"}, {"mandatory", "optional"}, {"required", "optional"},
	{"always", "never"}, {"everything", "nothing"}, {"all", "none"},
	{"spike", "drop"}, {"rise", "drop"}, {"grow", "shrink"}, {"expand", "shrink"},
	{"increase", "drop"}, {"gain", "drop"}, {"overpaid", "underpaid"},
}

// prefixPairs are prefixes that turn a word into its opposite's pair:
// "overcharged" / "undercharged", "prepaid" / "postpaid", "upload" /
// "download", "inbound" / "outbound".
var prefixPairs = [][2]string{{"over", "under"}, {"pre", "post"}, {"up", "down"}, {"in", "out"}, {"im", "ex"}}

// negPrefixes turn a word into its opposite ("compatible" /
// "incompatible", "lock" / "unlock"); flip checks them on every word of at
// least four letters, besides the listed pairs.
var negPrefixes = []string{"un", "in", "im", "il", "ir", "dis", "non"}

// stem reduces an ASCII lower-case word to a crude stem so that the forms
// of one word meet: "enabled", "enabling", "enables" and "enable" all give
// "enabl"; "stopped" and "stop" give "stop". It strips one of -ing, -ed,
// -es, -s (keeping at least three letters), a doubled final consonant left
// by that, and a final -e. It is not Porter's stemmer; it only has to map
// the opposite words' own forms together.
func stem(w string) string {
	for _, suf := range []string{"ing", "ed", "es", "s"} {
		if len(w)-len(suf) >= 3 && strings.HasSuffix(w, suf) {
			if suf == "s" && strings.HasSuffix(w, "ss") {
				break // "less", "access": not a plural
			}
			w = w[:len(w)-len(suf)]
			if n := len(w); (suf == "ing" || suf == "ed") && n >= 4 && w[n-1] == w[n-2] && !strings.ContainsRune("aeiouls", rune(w[n-1])) {
				w = w[:n-1] // stopp -> stop
			}
			break
		}
	}
	if len(w) >= 4 && strings.HasSuffix(w, "e") {
		w = w[:len(w)-1]
	}
	return w
}

// opposites is the compiled opposite-word list: stem pairs.
type opposites [][2]string

func compileOpposites(pairs [][2]string) (opposites, error) {
	out := make(opposites, 0, len(pairs))
	for _, p := range pairs {
		a, err := oneWord(p[0])
		if err != nil {
			return nil, err
		}
		b, err := oneWord(p[1])
		if err != nil {
			return nil, err
		}
		sa, sb := stem(a), stem(b)
		if sa == sb {
			continue // the stems meet: the pair cannot tell anything apart
		}
		out = append(out, [2]string{sa, sb})
	}
	return out, nil
}

// stems returns the set of stems of words.
func stems(words []string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[stem(w)] = true
	}
	return m
}

// flip returns the first pair one side of which each text uses while the
// two texts use it differently: "enable 2FA" against "disable 2FA" fires
// on enable/disable, "turn on" against "turn off" on on/off. A text that
// uses neither word of a pair ("activate dark mode" against "turn on dark
// mode") does not fire for it: that is a rewording, not an opposite.
//
// It also fires when a stem of one text, of four letters or more, is in the
// other text only with a negating prefix (negPrefixes): "compatible"
// against "incompatible", "available" against "unavailable".
func (o opposites) flip(q, c map[string]bool) (string, bool) {
	for _, p := range o {
		qa, qb, ca, cb := q[p[0]], q[p[1]], c[p[0]], c[p[1]]
		if (qa || qb) && (ca || cb) && (qa != ca || qb != cb) {
			return p[0] + "/" + p[1], true
		}
	}
	for _, pair := range [2][2]map[string]bool{{q, c}, {c, q}} {
		a, b := pair[0], pair[1]
		for w := range a {
			if b[w] {
				continue
			}
			if len(w) >= 4 {
				for _, pre := range negPrefixes {
					if b[pre+w] && !a[pre+w] {
						return pre + w + "/" + w, true
					}
				}
			}
			for _, pp := range prefixPairs {
				if rest, ok := strings.CutPrefix(w, pp[0]); ok && len(rest) >= 4 && b[pp[1]+rest] && !a[pp[1]+rest] {
					return w + "/" + pp[1] + rest, true
				}
			}
		}
	}
	return "", false
}

// roleWords are the connectors around which two texts with the same words
// can ask different questions: "from London to Paris" / "from Paris to
// London", "convert USD into EUR" / "EUR into USD", "Java vs Go" / "Go vs
// Java", "is a bigger than b" / "is b bigger than a", "the dollar against
// the euro" / "the euro against the dollar".
var roleWords = []string{"from", "to", "into", "vs", "versus", "than", "over", "against", "before", "after", "with", "by"}

// roleSkip are the words skipped after a connector to reach the word in
// its role ("from the savings account": savings).
var roleSkip = map[string]bool{
	"a": true, "an": true, "the": true, "my": true, "your": true, "our": true, "their": true,
	"his": true, "her": true, "its": true, "this": true, "that": true, "these": true,
	"those": true, "some": true, "me": true,
}

// roleStems returns the stems of words with possessive "'s" dropped, for
// the roles guard: "the lexer's output" names the lexer.
func roleStems(words []string) []string {
	out := dropPossessive(words)
	for i, w := range out {
		out[i] = stem(w)
	}
	return out
}

// dropPossessive returns words with a possessive "'s" cut off.
func dropPossessive(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = strings.TrimSuffix(w, "'s")
	}
	return out
}

// afterRole returns, per connector, the words that follow it in words
// (skipping roleSkip words and numbers).
func afterRole(words []string) map[string][]string {
	out := map[string][]string{}
	for i, w := range words {
		if !slices.Contains(roleWords, w) {
			continue
		}
		for j := i + 1; j < len(words); j++ {
			if roleSkip[words[j]] || isNumberWord(words[j]) {
				continue
			}
			out[w] = append(out[w], words[j])
			break
		}
	}
	return out
}

// swapped reports whether two texts put the same words in swapped roles:
// some connector is followed by x in q but not in c and by y in c but not
// in q, with y also in q and x also in c. A rewording keeps the word after
// each connector ("flights from London to Paris" / "flying from London to
// Paris"), so it does not fire.
//
// It also fires when the texts' content words (stems, without function
// words such as pronouns and articles) are the same and
//   - one sequence is the other with two words exchanged everywhere,
//     either apart ("can a landlord sue a tenant" / "can a tenant sue a
//     landlord") or used more than once ("does the tenant pay the
//     landlord's fees if the tenant loses"); neighbours swapped ("Visa
//     and Mastercard" / "Mastercard and Visa", "card payment" / "payment
//     card") are word order and do not count; or
//   - a subject pronoun in one is the object pronoun in the other: "can my
//     landlord sue me" / "can I sue my landlord".
func swapped(qw, cw []string) (string, bool) {
	qst, cst := roleStems(qw), roleStems(cw)
	if exchanged(contentWords(qst), contentWords(cst)) {
		return "exchange", true
	}
	if pronounsSwapped(qst, cst) {
		return "pronoun", true
	}
	// The words after a connector are compared as written ("HTTP to
	// HTTPS" must not become "http to http"); whether the other text holds
	// one is asked of its words and of its stems ("before running" and
	// "run the migrations").
	qw, cw = dropPossessive(qw), dropPossessive(cw)
	qa, ca := afterRole(qw), afterRole(cw)
	qs, cs := wordSet(slices.Concat(qw, qst)), wordSet(slices.Concat(cw, cst))
	for _, r := range roleWords {
		qx, cx := qa[r], ca[r]
		if len(qx) == 0 || len(cx) == 0 {
			continue
		}
		var onlyQ, onlyC []string
		for _, x := range qx {
			if !containsInflection(cx, x) {
				onlyQ = append(onlyQ, x)
			}
		}
		for _, y := range cx {
			if !containsInflection(qx, y) {
				onlyC = append(onlyC, y)
			}
		}
		for _, x := range onlyQ {
			for _, y := range onlyC {
				if x != y && (qs[y] || qs[stem(y)]) && (cs[x] || cs[stem(x)]) {
					return r, true
				}
			}
		}
	}
	return "", false
}

func wordSet(ws []string) map[string]bool {
	m := make(map[string]bool, len(ws))
	for _, w := range ws {
		m[w] = true
	}
	return m
}

// functionWords are left out of the exchange check: pronouns, articles,
// auxiliaries, prepositions, question words (stems as stem gives them).
var functionWords = wordSet(strings.Fields(`a an the my your our their his her its me i you we they he she it
	us them this that these those some any can could do doe did is are was were be been am will would
	shall should may might must have has had of for to from in on at by with into than as and or
	if what how why when where which who whom whose there not no so`))

// contentWords returns the stems that are not function words.
func contentWords(stems []string) []string {
	var out []string
	for _, w := range stems {
		if !functionWords[w] {
			out = append(out, w)
		}
	}
	return out
}

// exchanged reports whether b is a with two distinct words exchanged at
// every place (and nothing else changed).
func exchanged(a, b []string) bool {
	if len(a) != len(b) || len(a) < 2 {
		return false
	}
	i := 0
	for i < len(a) && a[i] == b[i] {
		i++
	}
	if i == len(a) {
		return false
	}
	x, y := a[i], b[i]
	if !slices.Contains(a, y) || !slices.Contains(b, x) {
		return false // a word replaced, not two exchanged
	}
	if count(a, x)+count(a, y) < 3 && adjacent(a, x, y) {
		return false // neighbours swapped: word order ("card payment" / "payment card"), not roles
	}
	for j := range a {
		want := a[j]
		switch want {
		case x:
			want = y
		case y:
			want = x
		}
		if b[j] != want {
			return false
		}
	}
	return true
}

// isNumberWord reports whether w is a number written in digits or words.
func isNumberWord(w string) bool {
	if numberWords[w] {
		return true
	}
	for _, r := range w {
		if r < '0' || r > '9' {
			return false
		}
	}
	return w != ""
}

// adjacent reports whether x and y (each once in ws) are next to each
// other in ws.
func adjacent(ws []string, x, y string) bool {
	i, j := slices.Index(ws, x), slices.Index(ws, y)
	return i-j == 1 || j-i == 1
}

func count(ws []string, w string) int {
	n := 0
	for _, x := range ws {
		if x == w {
			n++
		}
	}
	return n
}

// pronounPairs are subject and object pronouns.
var pronounPairs = [][2]string{{"i", "me"}, {"we", "us"}, {"he", "him"}, {"she", "her"}, {"they", "them"}}

// pronounsSwapped reports whether a and b (stems) have the same content
// words, as a multiset, and some subject pronoun of one is only the object
// pronoun in the other.
func pronounsSwapped(a, b []string) bool {
	ca, cb := contentWords(a), contentWords(b)
	if len(ca) == 0 || len(ca) != len(cb) {
		return false
	}
	sa, sb := slices.Clone(ca), slices.Clone(cb)
	slices.Sort(sa)
	slices.Sort(sb)
	if !slices.Equal(sa, sb) {
		return false
	}
	for _, p := range pronounPairs {
		subjA, objA, subjB, objB := slices.Contains(a, p[0]), slices.Contains(a, p[1]), slices.Contains(b, p[0]), slices.Contains(b, p[1])
		if (subjA && !objA && objB && !subjB) || (objA && !subjA && subjB && !objB) {
			return true
		}
	}
	return false
}

// containsInflection reports whether ws holds w or a verb form of it
// ("pay" / "paying", "deploy" / "deployed"); a plural is not one ("http"
// / "https" are two protocols).
func containsInflection(ws []string, w string) bool {
	for _, x := range ws {
		if x == w {
			return true
		}
		verb := strings.HasSuffix(x, "ing") || strings.HasSuffix(x, "ed") || strings.HasSuffix(w, "ing") || strings.HasSuffix(w, "ed")
		if verb && stem(x) == stem(w) {
			return true
		}
	}
	return false
}
