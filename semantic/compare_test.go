package semantic

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestLiteralSpans(t *testing.T) {
	tests := []struct {
		in   string
		want []string // the spans' texts, in order
	}{
		{"plain prose, nothing here", nil},
		{"see https://Example.com/A/b?x=Y.", []string{"https://Example.com/A/b?x=Y"}},
		{"img data:image/png;base64,iVBORw0KGgo= ok", []string{"data:image/png;base64,iVBORw0KGgo="}},
		{"mail Ann.Lee@Example.org now", []string{"Ann.Lee@Example.org"}},
		{`the "File Not Found" error`, []string{`"File Not Found"`}},
		{"the 'Permission Denied' error, don't worry", []string{"'Permission Denied'"}},
		{"users' and admins' rights", nil},
		{"call `getUser()` then ```\nX = 1\n```", []string{"`getUser()`", "```\nX = 1\n```"}},
		{"ids user_id, getUserById, OAuth, a1b2c3 and SGVsbG8gV29ybGQh", []string{"user_id", "getUserById", "OAuth", "a1b2c3", "SGVsbG8gV29ybGQh"}},
		{"prose words Hello PIN 2FA x86 SSDs stay prose", nil},
		{"list /home/ana/Documents and C:\\Users\\Ana\\x.txt, not and/or or 24/7", []string{"/home/ana/Documents", "C:\\Users\\Ana\\x.txt"}},
	}
	for _, tt := range tests {
		var got []string
		for _, sp := range literalSpans(tt.in) {
			got = append(got, tt.in[sp.start:sp.end])
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("literalSpans(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNormalizeKeepsLiterals(t *testing.T) {
	var n Normalization
	tests := []struct{ in, want string }{
		{"  What ARE   your Opening hours? ", "what are your opening hours?"},
		{"Open https://Ex.com/Img/A.PNG Now", "open https://Ex.com/Img/A.PNG now"},
		{"Decode  SGVsbG8gV29ybGQh  Please", "decode SGVsbG8gV29ybGQh please"},
		{"Run `Make Test` NOW", "run `Make Test` now"},
		{"Code:\n```py\nif X:\n    print('A')\n```\nWhy?", "code: ```py\nif X:\n    print('A')\n``` why?"},
		{`Say "Hello World" Twice`, `say "Hello World" twice`},
	}
	for _, tt := range tests {
		if got := n.Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestStem(t *testing.T) {
	for _, group := range [][]string{
		{"enable", "enabled", "enabling", "enables"},
		{"close", "closed", "closing", "closes"},
		{"stop", "stopped", "stopping", "stops"},
		{"upload", "uploaded", "uploading", "uploads"},
		{"add", "added", "adding", "adds"},
	} {
		for _, w := range group[1:] {
			if stem(w) != stem(group[0]) {
				t.Errorf("stem(%q) = %q, stem(%q) = %q: want equal", w, stem(w), group[0], stem(group[0]))
			}
		}
	}
	if stem("less") == stem("le") || stem("settings") == stem("set") {
		t.Error("stem over-strips")
	}
}

func TestDefaultOpposites(t *testing.T) {
	o, err := compileOpposites(DefaultOpposites)
	if err != nil {
		t.Fatal(err)
	}
	if len(o) < 60 {
		t.Fatalf("%d usable opposite pairs, want at least 60", len(o))
	}
}

func TestGuardsDefault(t *testing.T) {
	g, err := NewGuards(DefaultGuardsConfig())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ a, b, want string }{
		{"How do I enable 2FA?", "How do I disable 2FA?", FlipOpposite},
		{"I enabled dark mode, now what?", "I am disabling dark mode, now what?", FlipOpposite},
		{"How do I turn on dark mode?", "How do I turn off dark mode?", FlipOpposite},
		{"sort the list ascending", "sort the list descending", FlipOpposite},
		{"How do I turn on dark mode?", "How do I activate dark mode?", FlipSubstitution}, // a synonym: refused, the safe side
		{"Set the notification sound to loud for all of my group chats", "Set the notification sound to quiet for all of my group chats", FlipSubstitution},
		{"Why did my order get cancelled?", "Why did my order get canceled?", ""},
		{"Subtract 5 from 10", "Subtract 10 from 5", FlipRoles},
		{"Move 3 items from shelf 1 to shelf 2", "Move 3 items from shelf 2 to shelf 1", FlipRoles},
		{"Is 7 greater than 3?", "Is 3 greater than 7?", FlipRoles},
		{"Does Alice owe Bob money?", "Does Bob owe Alice money?", FlipRoles},
		{"Can a landlord sue a tenant?", "Can a tenant sue a landlord?", FlipRoles},
		{"Replace tabs with spaces in my file", "Replace spaces with tabs in my file", FlipRoles},
		{"Fix this code: x = foo(a, b)", "Fix this code: x = foo(b, a)", FlipLiteral},
		{"Why was my card payment declined?", "Why was the payment on my card declined?", ""},
		{"I ordered a shirt and would like to know whether I can return it at a shop", "I ordered a shirt and would like to know whether I can exchange it at a shop", FlipSubstitution},
		{"how do I add a user to my team account", "how do I add a user to my team acount", ""},
		{"transfer money from savings to checking", "transfer money from checking to savings", FlipRoles},
		{"convert USD into EUR", "convert EUR into USD", FlipRoles},
		{"Is Python faster than Go?", "Is Go faster than Python?", FlipRoles},
		{"React vs Vue", "Vue vs React", FlipRoles},
		{"flights from London to Paris", "cheap flights from London to Paris", ""},
		{"How to convert dollars to euros", "How do I convert dollars to euros", ""},
		{"Is 17 prime?", "Is 21 prime?", FlipNumber},
		{"World War 1", "World War 2", FlipNumber},
		{"I need two tickets", "I need three tickets", FlipNumber},
		{"ship 5 kg", "ship 5 lb", FlipNumber},
		{"Python 3.10 features", "Python 3.1 features", FlipNumber},
		{"what does 'file not found' mean", "what does 'permission denied' mean", FlipLiteral},
		{"what does `userId` hold", "what does `userid` hold", FlipLiteral},
		{"open https://x.example.com/A", "open https://x.example.com/a", FlipLiteral},
		{"decode SGVsbG8gV29ybGQh", "decode sgvsbg8gv29ybgqh", FlipLiteral},
		{"mail ann@example.com", "mail bob@example.com", FlipLiteral},
		{"mail Ann@Example.com", "mail ann@example.com", ""},
		{"claim for policy POL-77-3391-A", "claim for policy POL-77-3391-B", FlipLiteral},
		{"claim for policy POL-77-3391-A", "claim for policy pol-77-3391-a", ""},
		{"deliver on the twenty-first", "deliver on the twenty-second", FlipNumber},
		{"Is the router compatible with fiber?", "Is the router incompatible with fiber?", FlipOpposite},
		{"I was overcharged", "I was undercharged", FlipOpposite},
		{"Can my landlord sue me?", "Can I sue my landlord?", FlipRoles},
		{"Is the employee liable for damage to the company car?", "Is the company liable for damage to the employee's car?", FlipRoles},
		{"Does the tenant pay the landlord's fees if the tenant loses?", "Does the landlord pay the tenant's fees if the landlord loses?", FlipRoles},
		{"May I choose between Visa and Mastercard?", "May I choose between Mastercard and Visa?", ""},
		{"looking forward to pay with my card", "looking forward to paying with my card", ""},
		{"redirect HTTP to HTTPS", "redirect HTTPS to HTTP", FlipRoles},
		{"deploy the code before running the migrations", "run the migrations before deploying the code", FlipRoles},
		{"Is 2 GB bigger than 2 GiB?", "Is 2 GiB bigger than 2 GB?", FlipRoles},
		{"WHAT ARE YOUR HOURS", "what are your hours", ""},
	}
	for _, tt := range tests {
		for _, order := range [][2]string{{tt.a, tt.b}, {tt.b, tt.a}} {
			if got, _ := g.Flip(order[0], order[1]); got != tt.want {
				t.Errorf("Flip(%q, %q) = %q, want %q", order[0], order[1], got, tt.want)
			}
		}
	}
}

func TestParseGuardKinds(t *testing.T) {
	cfg, on, err := ParseGuardKinds(DefaultGuardKinds)
	if err != nil || !on || cfg.Negations != nil || !cfg.Literals || !cfg.Opposites || !cfg.Roles {
		t.Errorf("default kinds: %+v %v %v", cfg, on, err)
	}
	if _, on, err := ParseGuardKinds("none"); err != nil || on {
		t.Errorf("none: on %v, err %v", on, err)
	}
	if _, _, err := ParseGuardKinds("negation,colour"); err == nil {
		t.Error("an unknown kind is accepted")
	}
	if _, err := NewGuards(GuardsConfig{ExtraOpposites: [][2]string{{"hot", "cold"}}}); err == nil {
		t.Error("ExtraOpposites without Opposites is accepted")
	}
	g, err := NewGuards(GuardsConfig{Opposites: true, OppositePairs: [][2]string{}, ExtraOpposites: [][2]string{{"Alpha", "Beta"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := g.Flip("plan alpha price", "plan beta price"); r != FlipOpposite {
		t.Errorf("an extra pair does not fire: %q", r)
	}
	if r, _ := g.Flip("enable it", "disable it"); r != "" {
		t.Errorf("an empty OppositePairs still holds the defaults: %q", r)
	}
}

func TestSplit(t *testing.T) {
	var n Normalization
	long := strings.Repeat("Our refund policy allows returns of unused items. ", 3)
	tests := []struct {
		name, in, question string
		context            bool
	}{
		{"plain", "How do I reset my password?", "How do I reset my password?", false},
		{"label", "You are a bot. Be brief. Customer question: How do I delete my account?", "How do I delete my account?", true},
		{"last label wins", "Q: example?\nA: example.\nQ: How do I pay?", "How do I pay?", true},
		{"label then answer line", "Context: x.\n\nQuestion: Is shipping free?\nAnswer:", "Is shipping free?", true},
		{"paragraph", long + "\n\nCan I return a gift?", "Can I return a gift?", true},
		{"paragraph with trailing instruction", long + "\n\nCan I return a gift?\n\nAnswer in one sentence.", "Can I return a gift?", true},
		{"short greeting is no context", "Hi,\n\nhow do I pay?", "Hi,\n\nhow do I pay?", false},
		{"blank lines in code are not paragraphs", "Why?\n```\n" + long + "\n\nx\n```", "Why?\n```\n" + long + "\n\nx\n```", false},
	}
	for _, tt := range tests {
		q, c := n.split(tt.in)
		if q != tt.question || (c != "") != tt.context {
			t.Errorf("%s: split = %q, %q; want question %q, context %v", tt.name, q, c, tt.question, tt.context)
		}
	}
	re, err := CompileQuestionPattern(`(?s)^Ticket: (?P<question>.+?) \[end\]`)
	if err != nil {
		t.Fatal(err)
	}
	n.Question = re
	if q, c := n.split("Ticket: My card is lost [end] sent from app 1.2"); q != "My card is lost" || !strings.Contains(c, "sent from app 1.2") {
		t.Errorf("question pattern: %q, %q", q, c)
	}
	if _, err := CompileQuestionPattern(`Ticket: (.+)`); err == nil {
		t.Error("a pattern without a question group is accepted")
	}
	if _, err := CompileQuestionPattern(`(`); err == nil {
		t.Error("a bad pattern is accepted")
	}
	n = Normalization{WholeMessage: true}
	if q, c := n.split("Question: x?"); q != "Question: x?" || c != "" {
		t.Errorf("WholeMessage splits: %q, %q", q, c)
	}
}

func TestIdentifyContextAndLiterals(t *testing.T) {
	id := func(content string) Identity {
		t.Helper()
		i, _, err := Identify([]byte(`{"model":"m","messages":[{"role":"user","content":`+content+`}]}`), "t", "", Normalization{})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	ctx := `"Context: refunds within 30 days.\n\nQuestion: `
	a, b := id(ctx+`How long do I have?"`), id(ctx+`How much time do I have?"`)
	if a.Scope != b.Scope || a.Prompt != "How long do I have?" {
		t.Errorf("one context, two questions: scopes %s %s, prompt %q", a.Scope, b.Scope, a.Prompt)
	}
	if c := id(strings.Replace(ctx, "30", "14", 1) + `How long do I have?"`); c.Scope == a.Scope {
		t.Error("an edited context shares the scope")
	}
	if c := id(strings.ToUpper(ctx[:9]) + ctx[9:] + `HOW LONG DO I HAVE?"`); c.Key != a.Key {
		t.Error("prose differing in case only gets another key")
	}
	img := func(url string) string {
		return `[{"type":"text","text":"What Is This?"},{"type":"image_url","image_url":{"url":"` + url + `"}}]`
	}
	if x, y := id(img("https://e.com/A.png")), id(img("https://e.com/a.png")); x.Key == y.Key {
		t.Error("image URLs differing in case share a key")
	}
	if x, y := id(img("https://e.com/A.png")), id(strings.Replace(img("https://e.com/A.png"), "What Is", "what is", 1)); x.Key != y.Key {
		t.Error("the text part of an image request is not normalised")
	}
	if x, y := id(`"decode SGVsbG8h"`), id(`"decode sgvsbg8h"`); x.Key == y.Key {
		t.Error("base64 differing in case shares a key")
	}
	if x, y := id(`null`), id(`"null"`); x.Key == y.Key {
		t.Error("null content and the text null share a key")
	}
}

func TestComparator(t *testing.T) {
	emb := wordEmbedder{}
	g, err := NewGuards(DefaultGuardsConfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewComparator(g, emb)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := "You are a bot. Answer briefly. "
	tests := []struct {
		name, q, k string
		want       string
	}{
		{"no shared segment", "reset my password", "reset my password please", ""},
		{"template, same question", tmpl + "reset my password", tmpl + "reset my password please", ""},
		{"template, another question", tmpl + "reset my password", tmpl + "delete my account", RefusedTemplate},
		{"question shared, context changed", "Refunds take 30 days. Where do I ask?", "Refunds take 14 days. Where do I ask?", RefusedContext},
		{"two places differ", "A is red. Shared sentence here. Q alpha", "A is blue. Shared sentence here. Q beta", RefusedContext},
		{"a sentence added to the context", "Refunds take days. Where do I ask?", "Refunds take days. Gifts are final. Where do I ask?", RefusedContext},
		{"pleasantries only", "Hi! Where do I ask?", "Hello team. Where do I ask? Thanks!", ""},
		{"guards on the differing part", tmpl + "enable the alarm now", tmpl + "disable the alarm now", FlipOpposite},
		{"one-line JSON template", `{"system": "` + strings.Repeat("be kind ", 10) + `", "question": "store insulin pens"}`,
			`{"system": "` + strings.Repeat("be kind ", 10) + `", "question": "dispose of used needles"}`, RefusedTemplate},
		{"code stays whole", "What does this print?\n```\nif x:\n    print(1)\n```", "What does this print?\n```\nif x:\nprint(1)\n```", FlipLiteral},
	}
	for _, tt := range tests {
		v, err := c.Compare(context.Background(), tt.q, tt.k, 0.95, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		if v.Refused != tt.want {
			t.Errorf("%s: refused %q (similarity %.3f), want %q", tt.name, v.Refused, v.Similarity, tt.want)
		}
	}
}

// wordEmbedder embeds a text as its bag of lower-case words hashed into 64
// dimensions: texts sharing most words are close.
type wordEmbedder struct{}

func (wordEmbedder) Dim() int            { return 64 }
func (wordEmbedder) Fingerprint() string { return "test:words:64" }
func (wordEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		v := make([]float32, 64)
		for _, w := range regexp.MustCompile(`\w+`).FindAllString(strings.ToLower(t), -1) {
			h := 0
			for _, r := range w {
				h = h*31 + int(r)
			}
			v[(h%64+64)%64]++
		}
		out[i] = v
	}
	return out, nil
}

func TestCacheableNeedsAWellFormedMessage(t *testing.T) {
	body := func(msg string) Upstream {
		return Upstream{Status: 200, Body: []byte(`{"object":"chat.completion","choices":[{"index":0,"message":` + msg + `,"finish_reason":"stop"}]}`)}
	}
	for msg, want := range map[string]bool{
		`{"role":"assistant","content":"Hi"}`: true,
		`{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}`: true,
		`{"role":"assistant","content":null,"refusal":"no"}`:                                                                       true,
		`"just a string"`:                     false,
		`{"content":"no role"}`:               false,
		`{"role":"assistant","content":5}`:    false,
		`{"role":"assistant","content":null}`: false,
		`{"role":"assistant"}`:                false,
		`null`:                                false,
		`["role","assistant"]`:                false,
	} {
		if _, ok := Cacheable(body(msg)); ok != want {
			t.Errorf("message %s: cacheable %v, want %v", msg, ok, want)
		}
	}
	if _, ok := Cacheable(Upstream{Status: 200, Body: []byte(`{"choices":[{"finish_reason":"stop"}]}`)}); ok {
		t.Error("a choice without a message is cacheable")
	}
}

func TestIdentifyRefusesWhatWouldCollapse(t *testing.T) {
	for name, body := range map[string]string{
		"invalid UTF-8":       "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\xff\"}]}",
		"lone high surrogate": `{"model":"m","messages":[{"role":"user","content":"a\ud800b"}]}`,
		"lone low surrogate":  `{"model":"m","messages":[{"role":"user","content":"a\udc00"}]}`,
		"reversed pair":       `{"model":"m","messages":[{"role":"user","content":"\udc00\ud800"}]}`,
	} {
		if _, _, err := Identify([]byte(body), "t", "", Normalization{}); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: err %v, want ErrBadRequest", name, err)
		}
	}
	for name, body := range map[string]string{
		"pair":              `{"model":"m","messages":[{"role":"user","content":"\ud83d\ude00"}]}`,
		"escaped backslash": `{"model":"m","messages":[{"role":"user","content":"\\ud800"}]}`,
		"replacement char":  `{"model":"m","messages":[{"role":"user","content":"\ufffd"}]}`,
	} {
		if _, _, err := Identify([]byte(body), "t", "", Normalization{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
