package semantic_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semcache/semcache/semantic"
)

// matchName returns the name of the rule that matches prompt, "" for none.
func matchName(t *testing.T, r *semantic.Rules, prompt string) string {
	t.Helper()
	rule, ok := r.Match(prompt)
	if ok != (rule.Name != "") {
		t.Fatalf("Match(%q) = %+v, %t: ok and name disagree", prompt, rule, ok)
	}
	return rule.Name
}

func TestDefaultRulesMatch(t *testing.T) {
	tests := []struct {
		prompt string
		want   string // "" for no rule
	}{
		// realtime: live data is never cached.
		{"What's the AAPL stock price?", "realtime"},
		{"tesla share price", "realtime"},
		{"USD to EUR exchange rate", "realtime"},
		{"Do I need an umbrella? What's the weather in Paris", "realtime"},
		{"WEATHER!!!", "realtime"},
		{"What's the score of the Lakers game?", "realtime"},
		{"How’s the traffic on I-95?", "realtime"},
		{"what time is it in Tokyo", "realtime"},
		{"What is today’s date?", "realtime"},
		{"What is today's date?", "realtime"},
		{"Is it raining right now?", "realtime"},
		{"price of bitcoin", "realtime"},

		// time-sensitive: five minutes.
		{"What are the latest developments in AI?", "time-sensitive"},
		{"Any news about the merger?", "time-sensitive"},
		{"What's on tonight in Berlin", "time-sensitive"},
		{"Is the store open tomorrow?", "time-sensitive"},
		{"who won yesterday", "time-sensitive"},
		{"concerts this week", "time-sensitive"},
		{"now", "time-sensitive"},
		{"Now?", "time-sensitive"},
		{"(now)", "time-sensitive"},
		{"do it NOW.", "time-sensitive"},
		{"ｎｏｗ", "time-sensitive"}, // full-width, NFKC
		{"¿Qué pasa now?", "time-sensitive"},
		{"iPhone 16 price", "time-sensitive"},
		{"current version of Kubernetes", "time-sensitive"},
		{"breaking:\tstorm\nwarning", "time-sensitive"},

		// code: a day.
		{"```go\nfmt.Println(1)\n```", "code"},
		{"Write a function that reverses a string", "code"},
		{"regex for e-mail addresses", "code"},
		{"How do I join two tables in SQL?", "code"},
		{"fix this:\n```\ndef parse(line):\n    return line.split()\n```", "code"},
		{"Explain templates in cpp", "code"},
		{"Explain templates in C++", ""}, // symbols: no keyword, and the default pattern is only ```
		{"Python list comprehension", "code"},

		// policy: a day.
		{"What is your refund policy?", "policy"},
		{"Terms and Conditions", "policy"},
		{"privacy-policy summary", "policy"},
		{"What are your opening hours?", "policy"},

		// Near misses: whole words only.
		{"I know the answer", ""},
		{"best snowboard for beginners", ""},
		{"nowhere to hide", ""},
		{"acknowledge the request", ""},
		{"let it snow", ""},
		{"how to write a newsletter", ""}, // "news" is not "newsletter"
		{"a weatherproof jacket", ""},
		{"what does get_current_user do", ""}, // '_' is a word character
		{"What is a z-score?", ""},            // "score" only as "the score", "live score"...
		{"the terms are clear", ""},
		{"c is a letter", ""},
		{"Tell me a joke", ""},
		{"", ""},
	}
	r := semantic.DefaultRules()
	for _, tt := range tests {
		t.Run(tt.prompt, func(t *testing.T) {
			if got := matchName(t, r, tt.prompt); got != tt.want {
				t.Errorf("Match(%q) = %q, want %q", tt.prompt, got, tt.want)
			}
		})
	}
}

func TestDefaultRulesPrecedence(t *testing.T) {
	// Each prompt matches two rules; the earlier one in the file wins.
	tests := []struct {
		prompt string
		want   string
		also   string // the later rule that also matches
	}{
		{"what's the weather today", "realtime", "time-sensitive"},
		{"latest stock price of NVDA", "realtime", "time-sensitive"},
		{"latest refund policy", "time-sensitive", "policy"},
		{"opening hours today", "time-sensitive", "policy"},
		{"latest Python release", "time-sensitive", "code"},
		{"write a python function that prints today's date", "realtime", "time-sensitive"},
		{"SQL for our shipping policy table", "code", "policy"},
	}
	r := semantic.DefaultRules()
	for _, tt := range tests {
		t.Run(tt.prompt, func(t *testing.T) {
			if got := matchName(t, r, tt.prompt); got != tt.want {
				t.Errorf("Match(%q) = %q, want %q", tt.prompt, got, tt.want)
			}
			// Without the winning rule, the other one matches: the order,
			// not a missing keyword, decided.
			if got := matchName(t, defaultRulesWithout(t, tt.want), tt.prompt); got != tt.also {
				t.Errorf("without %q: Match(%q) = %q, want %q", tt.want, tt.prompt, got, tt.also)
			}
		})
	}
}

func TestRulesOrder(t *testing.T) {
	a := `{"name": "a", "keywords": ["refund"], "ttl": "1m"}`
	b := `{"name": "b", "pattern": "policy", "ttl": "1h"}`
	for _, tt := range []struct {
		doc  string
		want string
	}{
		{`{"rules": [` + a + `,` + b + `]}`, "a"},
		{`{"rules": [` + b + `,` + a + `]}`, "b"},
	} {
		r := mustParse(t, tt.doc)
		if got := matchName(t, r, "refund policy"); got != tt.want {
			t.Errorf("%s: Match = %q, want %q", tt.doc, got, tt.want)
		}
	}
}

func TestKeywordMatching(t *testing.T) {
	r := mustLoad(t, "custom.json")
	tests := []struct {
		prompt string
		want   string
	}{
		{"Is status.example.com down?", "status-page"},
		{"STATUS.EXAMPLE.COM", "status-page"}, // (?i)
		{"mystatus.example.com", ""},          // \b in the pattern
		{"Quel est le plat du jour ?", "menu"},
		{"PLAT  DU\nJOUR", "menu"}, // any separator between a phrase's words
		{"plat du", ""},            // a phrase needs all its words
		{"du jour plat", ""},       // in order
		{"un CAFÉ, s'il vous plaît", "menu"},
		{"un cafe\u0301 noir", "menu"}, // decomposed é, NFKC
		{"un cafe noir", ""},           // accents count
		{"cafés", ""},                  // whole words
		{"今天天气怎么样", "menu"},            // unspaced script: each character is a word
		{"ΟΔΌΣ", "menu"},               // final sigma folds with capital sigma
		{"ΟΔΟΣ", ""},                   // accents count
		{"Die STRASSE", ""},            // simple folding: ß is not ss
		{"Die Straße", "menu"},
		{"How do I reset it?", "faq"},
		{"how-do-i", "faq"},
		{"FAQ: billing", "faq"},
		{"faq: billing", ""}, // the pattern is case-sensitive
		{"who do I call", ""},
		{"templates in C++", "code-c"}, // the pattern docs/ttl-rules.md suggests
		{"C# or F#?", "code-c"},
		{"c++", ""},
	}
	for _, tt := range tests {
		t.Run(tt.prompt, func(t *testing.T) {
			if got := matchName(t, r, tt.prompt); got != tt.want {
				t.Errorf("Match(%q) = %q, want %q", tt.prompt, got, tt.want)
			}
		})
	}
}

// TestDefaultKeywordsEach checks that every default keyword, alone in a
// sentence, is caught by its rule or an earlier one: no keyword is dead.
func TestDefaultKeywordsEach(t *testing.T) {
	rules := defaultRuleList(t)
	r := semantic.DefaultRules()
	rank := make(map[string]int)
	for i, rule := range rules {
		rank[rule.Name] = i
	}
	for i, rule := range rules {
		for _, kw := range rule.Keywords {
			prompt := "Tell me: " + kw + "?"
			got, ok := r.Match(prompt)
			if !ok || rank[got.Name] > i {
				t.Errorf("keyword %q of %q: Match(%q) = %q, %t", kw, rule.Name, prompt, got.Name, ok)
			}
		}
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		name     string
		prompt   string
		in, want semantic.Options
		rule     string
	}{
		{"no cache", "weather in Oslo", semantic.Options{}, semantic.Options{Mode: semantic.ModeOff}, "realtime"},
		{"no cache overrides mode", "weather in Oslo",
			semantic.Options{Mode: semantic.ModeExact, TTL: time.Hour},
			semantic.Options{Mode: semantic.ModeOff, TTL: time.Hour}, "realtime"},
		{"rule ttl replaces the server's", "latest news", semantic.Options{}, semantic.Options{TTL: 5 * time.Minute, MaxAge: 5 * time.Minute}, "time-sensitive"},
		{"shorter rule ttl wins", "latest news", semantic.Options{TTL: time.Hour}, semantic.Options{TTL: 5 * time.Minute, MaxAge: 5 * time.Minute}, "time-sensitive"},
		{"shorter request ttl wins", "latest news", semantic.Options{TTL: time.Minute}, semantic.Options{TTL: time.Minute, MaxAge: 5 * time.Minute}, "time-sensitive"},
		{"shorter request max-age wins", "latest news", semantic.Options{MaxAge: time.Minute}, semantic.Options{TTL: 5 * time.Minute, MaxAge: time.Minute}, "time-sensitive"},
		{"long rule never lengthens the request", "python regex", semantic.Options{TTL: 10 * time.Minute}, semantic.Options{TTL: 10 * time.Minute, MaxAge: 24 * time.Hour}, "code"},
		{"long rule", "python regex", semantic.Options{}, semantic.Options{TTL: 24 * time.Hour, MaxAge: 24 * time.Hour}, "code"},
		{"other options kept", "refund policy",
			semantic.Options{NoStore: true, SkipLookup: true, MaxAge: time.Minute, Mode: semantic.ModeExact, Threshold: 0.95},
			semantic.Options{NoStore: true, SkipLookup: true, MaxAge: time.Minute, Mode: semantic.ModeExact, Threshold: 0.95, TTL: 24 * time.Hour}, "policy"},
		{"no rule", "tell me a joke", semantic.Options{TTL: 7 * time.Second, Threshold: 0.9}, semantic.Options{TTL: 7 * time.Second, Threshold: 0.9}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rule := semantic.DefaultRules().Apply(tt.prompt, tt.in)
			if got != tt.want || rule != tt.rule {
				t.Errorf("Apply(%q, %+v) = %+v, %q; want %+v, %q", tt.prompt, tt.in, got, rule, tt.want, tt.rule)
			}
		})
	}
}

func TestNilRules(t *testing.T) {
	var r *semantic.Rules
	if rule, ok := r.Match("weather now"); ok {
		t.Errorf("nil Rules: Match = %+v, true", rule)
	}
	o := semantic.Options{TTL: time.Minute}
	if got, name := r.Apply("weather now", o); got != o || name != "" {
		t.Errorf("nil Rules: Apply = %+v, %q", got, name)
	}
}

func TestMatchReturnsCopy(t *testing.T) {
	r := mustParse(t, `{"rules": [{"name": "a", "keywords": ["x"], "ttl": "1m"}]}`)
	rule, _ := r.Match("x")
	rule.Keywords[0] = "changed"
	if again, _ := r.Match("x"); again.Keywords[0] != "x" {
		t.Errorf("Match returned a shared Keywords slice: %q", again.Keywords)
	}
}

func TestParseRulesRuleErrors(t *testing.T) {
	ok := `{"name": "ok", "keywords": ["fine"], "ttl": "1m"}, `
	tests := []struct {
		name  string
		rules string // the elements of the rules array
		index int
		rule  string // the name the error reports
		field string
		msg   string // a fragment of the message
	}{
		{"bad regexp", `{"name": "r", "pattern": "(x", "ttl": "1m"}`, 0, "r", "pattern", "missing closing )"},
		{"bad duration", `{"name": "d", "keywords": ["x"], "ttl": "5 minutes"}`, 0, "d", "ttl", "unknown unit"},
		{"duration without unit", `{"name": "d", "keywords": ["x"], "ttl": "300"}`, 0, "d", "ttl", "missing unit"},
		{"zero duration", `{"name": "d", "keywords": ["x"], "ttl": "0s"}`, 0, "d", "ttl", "at least 1s"},
		{"negative duration", `{"name": "d", "keywords": ["x"], "ttl": "-1m"}`, 0, "d", "ttl", "at least 1s"},
		{"sub-second duration", `{"name": "d", "keywords": ["x"], "ttl": "500ms"}`, 0, "d", "ttl", "at least 1s"},
		{"ttl and no_cache", `{"name": "both", "keywords": ["x"], "ttl": "1m", "no_cache": true}`, 0, "both", "ttl", "not both"},
		{"neither ttl nor no_cache", `{"name": "neither", "keywords": ["x"]}`, 0, "neither", "ttl", "needs a ttl or no_cache"},
		{"no_cache false and no ttl", `{"name": "neither", "keywords": ["x"], "no_cache": false}`, 0, "neither", "ttl", "needs a ttl or no_cache"},
		{"no keywords no pattern", `{"name": "empty", "ttl": "1m"}`, 0, "empty", "keywords", "keywords, a pattern or both"},
		{"empty keywords no pattern", `{"name": "empty", "keywords": [], "ttl": "1m"}`, 0, "empty", "keywords", "keywords, a pattern or both"},
		{"empty keyword", `{"name": "k", "keywords": ["x", ""], "ttl": "1m"}`, 0, "k", "keywords[1]", "no words"},
		{"blank keyword", `{"name": "k", "keywords": ["  "], "ttl": "1m"}`, 0, "k", "keywords[0]", "no words"},
		{"symbol in keyword", `{"name": "k", "keywords": ["go", "c++"], "ttl": "1m"}`, 0, "k", "keywords[1]", "use pattern"},
		{"leading connector", `{"name": "k", "keywords": [".net"], "ttl": "1m"}`, 0, "k", "keywords[0]", "between two word characters"},
		{"trailing connector", `{"name": "k", "keywords": ["rock-"], "ttl": "1m"}`, 0, "k", "keywords[0]", "between two word characters"},
		{"unknown field", `{"name": "typo", "keywords": ["x"], "ttl_seconds": 60}`, 0, "typo", "", `unknown field "ttl_seconds"`},
		{"wrong type", `{"name": "t", "keywords": ["x"], "ttl": 300}`, 0, "t", "ttl", "cannot unmarshal number"},
		{"keywords not an array", `{"name": "t", "keywords": "x", "ttl": "1m"}`, 0, "t", "keywords", "cannot unmarshal string"},
		{"no name", `{"keywords": ["x"], "ttl": "1m"}`, 0, "", "name", "must not be empty"},
		{"bad name", `{"name": "has space", "keywords": ["x"], "ttl": "1m"}`, 0, "has space", "name", "want 1 to 64"},
		{"duplicate name", ok + `{"name": "ok", "keywords": ["y"], "ttl": "1m"}`, 1, "ok", "name", "duplicate of rules[0]"},
		{"null rule", `null`, 0, "", "", "want a JSON object"},
		{"string rule", `"weather"`, 0, "", "", "want a JSON object"},
		{"index counts earlier rules", ok + `{"name": "ok2", "keywords": ["y"], "ttl": "1m"}, {"name": "third", "pattern": "[", "no_cache": true}`, 2, "third", "pattern", "missing closing ]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := `{"rules": [` + tt.rules + `]}`
			r, err := semantic.ParseRules([]byte(doc))
			if err == nil {
				t.Fatalf("ParseRules(%s) = %v, nil; want an error", doc, r)
			}
			if r != nil {
				t.Errorf("ParseRules returned rules with an error")
			}
			var re *semantic.RuleError
			if !errors.As(err, &re) {
				t.Fatalf("error %q is not a *RuleError", err)
			}
			if re.Index != tt.index || re.Name != tt.rule || re.Field != tt.field {
				t.Errorf("RuleError = {Index: %d, Name: %q, Field: %q}, want {%d, %q, %q}", re.Index, re.Name, re.Field, tt.index, tt.rule, tt.field)
			}
			msg := err.Error()
			want := []string{fmt.Sprintf("rules[%d]", tt.index), tt.msg}
			if tt.rule != "" {
				want = append(want, fmt.Sprintf("%q", tt.rule))
			}
			if tt.field != "" {
				want = append(want, "field "+tt.field)
			}
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestParseRulesDocumentErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		msg  string
	}{
		{"not JSON", `rules:`, "invalid character"},
		{"empty input", ``, "EOF"},
		{"trailing data", `{"rules": []} {}`, "trailing data"},
		{"unknown top-level field", `{"rule": []}`, `unknown field "rule"`},
		{"missing rules", `{}`, "field rules"},
		{"null rules", `{"rules": null}`, "field rules"},
		{"null document", `null`, "field rules"},
		{"rules not an array", `{"rules": {}}`, "cannot unmarshal object"},
		{"array document", `[]`, "cannot unmarshal array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := semantic.ParseRules([]byte(tt.doc))
			if err == nil {
				t.Fatalf("ParseRules(%q): no error", tt.doc)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "semantic: parse rules: ") {
				t.Errorf("ParseRules(%q) error %q, want %q in it", tt.doc, err, tt.msg)
			}
		})
	}
}

func TestLoadRules(t *testing.T) {
	t.Run("rules_default.json is DefaultRules", func(t *testing.T) {
		r, err := semantic.LoadRules("rules_default.json")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"weather", "latest", "regex", "refund policy", "hello", "know"} {
			got, _ := r.Match(p)
			want, _ := semantic.DefaultRules().Match(p)
			if got.Name != want.Name {
				t.Errorf("Match(%q) = %q, DefaultRules: %q", p, got.Name, want.Name)
			}
		}
	})
	t.Run("empty matches nothing", func(t *testing.T) {
		r := mustLoad(t, "empty.json")
		if rule, ok := r.Match("weather right now"); ok {
			t.Errorf("Match = %+v", rule)
		}
	})
	t.Run("custom", func(t *testing.T) {
		r := mustLoad(t, "custom.json")
		rule, ok := r.Match("FAQ: how do I pay?")
		want := semantic.Rule{Name: "faq", Keywords: []string{"how do i"}, Pattern: "^FAQ:", TTL: "12h"}
		if !ok || fmt.Sprint(rule) != fmt.Sprint(want) {
			t.Errorf("Match = %+v, %t; want %+v", rule, ok, want)
		}
	})
	for _, tt := range []struct {
		file, msg string
		index     int
		field     string
	}{
		{"bad_regexp.json", `rules[1] "broken": field pattern`, 1, "pattern"},
		{"bad_unknown_field.json", `rules[0] "typo": json: unknown field "ttl_seconds"`, 0, ""},
	} {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "rules", tt.file)
			_, err := semantic.LoadRules(path)
			var re *semantic.RuleError
			if !errors.As(err, &re) || re.Index != tt.index || re.Field != tt.field {
				t.Fatalf("LoadRules(%s) = %v; want a RuleError at %d, field %q", tt.file, err, tt.index, tt.field)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, tt.msg) {
				t.Errorf("error %q: want the path and %q", msg, tt.msg)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := semantic.LoadRules(filepath.Join("testdata", "rules", "missing.json"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("LoadRules: %v; want os.ErrNotExist", err)
		}
	})
}

// TestDefaultRulesDocumented keeps docs/ttl-rules.md's copy of the default
// rules the same as the embedded file.
func TestDefaultRulesDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "ttl-rules.md"))
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- default-rules:begin -->\n```json\n", "```\n<!-- default-rules:end -->"
	_, after, ok1 := bytes.Cut(doc, []byte(begin))
	block, _, ok2 := bytes.Cut(after, []byte(end))
	if !ok1 || !ok2 {
		t.Fatalf("docs/ttl-rules.md: no block between %q and %q", begin, end)
	}
	embedded, err := os.ReadFile("rules_default.json")
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := json.Compact(&a, block); err != nil {
		t.Fatalf("docs/ttl-rules.md default rules: %v", err)
	}
	if err := json.Compact(&b, embedded); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Errorf("docs/ttl-rules.md and rules_default.json differ; copy the file into the doc")
	}
}

func TestRulesConcurrent(t *testing.T) {
	r := semantic.DefaultRules()
	prompts := []string{"weather now", "latest news", "python regex", "refund policy", "hello"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p := prompts[(g+i)%len(prompts)]
				r.Apply(p, semantic.Options{TTL: time.Duration(i) * time.Second})
			}
		})
	}
	wg.Wait()
}

// checkApply checks what holds for any rules and prompt: Match and Apply
// agree, a rule never lengthens the request's TTL or MaxAge, and only TTL,
// MaxAge and Mode change.
func checkApply(t *testing.T, r *semantic.Rules, prompt string, in semantic.Options) {
	t.Helper()
	rule, ok := r.Match(prompt)
	out, name := r.Apply(prompt, in)
	if name != rule.Name || ok != (name != "") {
		t.Fatalf("Match = %q, %t but Apply = %q", rule.Name, ok, name)
	}
	if in.TTL > 0 && out.TTL > in.TTL {
		t.Fatalf("Apply lengthened TTL %v to %v", in.TTL, out.TTL)
	}
	if in.MaxAge > 0 && out.MaxAge > in.MaxAge {
		t.Fatalf("Apply lengthened MaxAge %v to %v", in.MaxAge, out.MaxAge)
	}
	if ok && rule.NoCache && out.Mode != semantic.ModeOff {
		t.Fatalf("no_cache rule %q: mode %q", name, out.Mode)
	}
	if !ok && out != in {
		t.Fatalf("no rule, but Apply changed %+v to %+v", in, out)
	}
	out.TTL, out.MaxAge, out.Mode = in.TTL, in.MaxAge, in.Mode
	if out != in {
		t.Fatalf("Apply changed more than TTL, MaxAge and Mode: %+v to %+v", in, out)
	}
}

func FuzzRules(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "rules", "*.json"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "what's the weather right now?", int64(0))
		f.Add(data, "今天 ΟΔΟΣ ｎｏｗ ``` c++", int64(time.Minute))
	}
	f.Add([]byte(`{"rules":[{"name":"a","keywords":["a b","b"],"pattern":"(?i)x","ttl":"1s"}]}`), "A  b x", int64(time.Hour))
	f.Add([]byte(`{"rules":[{"name":"a","keywords":["\u0301"],"no_cache":true}]}`), "e\u0301\xff", int64(-1))
	f.Fuzz(func(t *testing.T, data []byte, prompt string, ttl int64) {
		in := semantic.Options{TTL: time.Duration(ttl), Threshold: 0.9}
		checkApply(t, semantic.DefaultRules(), prompt, in)
		r, err := semantic.ParseRules(data)
		if err != nil {
			if r != nil {
				t.Fatalf("ParseRules returned rules and %v", err)
			}
			return
		}
		checkApply(t, r, prompt, in)
	})
}

func ExampleRules_Apply() {
	rules := semantic.DefaultRules()
	for _, prompt := range []string{
		"What's the weather in Lisbon?",
		"Latest news on the election",
		"Write a regex for UK postcodes",
		"Do you know a good snowboard shop?",
	} {
		o, rule := rules.Apply(prompt, semantic.Options{})
		fmt.Printf("%-36q rule=%q mode=%q ttl=%v\n", prompt, rule, o.Mode, o.TTL)
	}
	// Output:
	// "What's the weather in Lisbon?"      rule="realtime" mode="off" ttl=0s
	// "Latest news on the election"        rule="time-sensitive" mode="" ttl=5m0s
	// "Write a regex for UK postcodes"     rule="code" mode="" ttl=24h0m0s
	// "Do you know a good snowboard shop?" rule="" mode="" ttl=0s
}

func mustParse(t *testing.T, doc string) *semantic.Rules {
	t.Helper()
	r, err := semantic.ParseRules([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustLoad(t *testing.T, file string) *semantic.Rules {
	t.Helper()
	r, err := semantic.LoadRules(filepath.Join("testdata", "rules", file))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// defaultRuleList reads the default rules as written.
func defaultRuleList(t *testing.T) []semantic.Rule {
	t.Helper()
	data, err := os.ReadFile("rules_default.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Rules []semantic.Rule }
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Rules
}

// defaultRulesWithout returns the default rules minus the named one.
func defaultRulesWithout(t *testing.T, name string) *semantic.Rules {
	t.Helper()
	var kept []semantic.Rule
	for _, rule := range defaultRuleList(t) {
		if rule.Name != name {
			kept = append(kept, rule)
		}
	}
	data, err := json.Marshal(map[string]any{"rules": kept})
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, string(data))
}

func BenchmarkRulesApply(b *testing.B) {
	r := semantic.DefaultRules()
	sentence := "Please summarise the attached meeting notes and list the action items for each team. "
	for _, size := range []struct {
		name   string
		prompt string
	}{
		{"short-miss", "Tell me a joke about cats"},
		{"short-hit", "What's the weather in Lisbon?"},
		{"4KiB-miss", strings.Repeat(sentence, 4096/len(sentence))},
		{"4KiB-unicode-miss", strings.Repeat("Résumé der Besprechung, bitte kürzen. ", 4096/40)},
	} {
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(size.prompt)))
			for b.Loop() {
				r.Apply(size.prompt, semantic.Options{})
			}
		})
	}
}
