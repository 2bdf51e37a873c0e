package semantic

import (
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
}

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
			if len(w) < 4 || b[w] {
				continue
			}
			for _, pre := range negPrefixes {
				if b[pre+w] && !a[pre+w] {
					return pre + w + "/" + w, true
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
var roleWords = []string{"from", "to", "into", "vs", "versus", "than", "over", "against"}

// roleSkip are the words skipped after a connector to reach the word in
// its role ("from the savings account": savings).
var roleSkip = map[string]bool{
	"a": true, "an": true, "the": true, "my": true, "your": true, "our": true, "their": true,
	"his": true, "her": true, "its": true, "this": true, "that": true, "these": true,
	"those": true, "some": true, "me": true,
}

// afterRole returns, per connector, the words that follow it in words.
func afterRole(words []string) map[string][]string {
	out := map[string][]string{}
	for i, w := range words {
		if !isRoleWord(w) {
			continue
		}
		for j := i + 1; j < len(words); j++ {
			if roleSkip[words[j]] {
				continue
			}
			out[w] = append(out[w], words[j])
			break
		}
	}
	return out
}

func isRoleWord(w string) bool {
	for _, r := range roleWords {
		if r == w {
			return true
		}
	}
	return false
}

// swapped reports whether two texts put the same words in swapped roles:
// some connector is followed by x in q but not in c and by y in c but not
// in q, with y also in q and x also in c. A rewording keeps the word after
// each connector ("flights from London to Paris" / "flying from London to
// Paris"), so it does not fire.
func swapped(qw, cw []string) (string, bool) {
	qa, ca := afterRole(qw), afterRole(cw)
	qs, cs := wordSet(qw), wordSet(cw)
	for _, r := range roleWords {
		qx, cx := qa[r], ca[r]
		if len(qx) == 0 || len(cx) == 0 {
			continue
		}
		var onlyQ, onlyC []string
		for _, x := range qx {
			if !contains(cx, x) {
				onlyQ = append(onlyQ, x)
			}
		}
		for _, y := range cx {
			if !contains(qx, y) {
				onlyC = append(onlyC, y)
			}
		}
		for _, x := range onlyQ {
			for _, y := range onlyC {
				if x != y && qs[y] && cs[x] {
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

func contains(ws []string, w string) bool {
	for _, x := range ws {
		if x == w {
			return true
		}
	}
	return false
}
