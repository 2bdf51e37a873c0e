package semantic

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

func mustGuards(t testing.TB, cfg GuardsConfig) *Guards {
	t.Helper()
	g, err := NewGuards(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGuardsFlip(t *testing.T) {
	all := GuardsConfig{Numbers: true, Extra: []string{"Monthly", "delete"}}
	tests := []struct {
		name          string
		cfg           GuardsConfig
		query, cached string
		want          string // "" = not flipped
	}{
		{"inserted not", all, "How do I cancel my card?", "How do I not cancel my card?", FlipNegation},
		{"contraction", all, "I can't log in", "I can log in", FlipNegation},
		{"typographic apostrophe", all, "I can\u2019t log in", "I can log in", FlipNegation},
		{"split contraction", all, "I ca n't log in", "I can log in", FlipNegation},
		{"other n't word", all, "Why hasn't my card arrived?", "Why has my card arrived?", FlipNegation},
		{"no apostrophe", all, "i dont get it", "i get it", FlipNegation},
		{"without", all, "pay without a card", "pay with a card", FlipNegation},
		{"upper case", all, "I can NEVER log in", "I can log in", FlipNegation},
		{"both negated", all, "I can't log in", "I cannot log in", ""},
		{"unable is a negation", all, "Why can't I log in?", "Why am I unable to log in?", ""},
		{"unable against plain", all, "I am unable to pay", "I am able to pay", FlipNegation},
		{"double negation is parity", all, "it is not never ok", "it is ok", ""},
		{"not a substring", all, "notice the knot", "the knot", ""},
		{"paraphrase", all, "How do I cancel my card?", "How can I cancel my card?", ""},
		{"amount", all, "transfer 100 dollars", "transfer 200 dollars", FlipNumber},
		{"thousands separator", all, "send 1,000 euros", "send 1000 euros", ""},
		{"decimal digits as written", all, "rate 1.5", "rate 1.50", FlipNumber},
		{"decimal differs", all, "rate 1.5", "rate 15", FlipNumber},
		{"percent space", all, "10% off", "10 % off", ""},
		{"percent word", all, "10 percent off", "10% off", ""},
		{"percent vs plain", all, "10% off", "10 off", FlipNumber},
		{"currency", all, "send $100", "send 100 $", ""},
		{"currency differs", all, "send $100", "send €100", FlipNumber},
		{"multiset", all, "5 and 5", "5", FlipNumber},
		{"order irrelevant", all, "from 3 to 7", "to 7 from 3", ""},
		{"digit in word", all, "4g phone", "5g phone", FlipNumber},
		{"fullwidth digits", all, "pay １００", "pay 100", ""},
		{"numbers off", GuardsConfig{}, "transfer 100 dollars", "transfer 200 dollars", ""},
		{"negative", all, "-5 degrees", "5 degrees", FlipNumber},
		{"hyphen is not a sign", all, "covid-19 rules", "covid 19 rules", ""},
		{"extra token", all, "cancel my monthly plan", "cancel my plan", "token:monthly"},
		{"extra token both", all, "cancel my MONTHLY plan", "cancel my monthly plan", ""},
		{"extra second token", all, "delete my account", "close my account", "token:delete"},
		{"negation checked first", all, "don't delete 5", "delete 6", FlipNegation},
		{"negation off", GuardsConfig{Negations: []string{}}, "I can't log in", "I can log in", ""},
		{"custom negations", GuardsConfig{Negations: []string{"kein"}}, "kein Geld", "Geld", FlipNegation},
		{"custom negations drop defaults", GuardsConfig{Negations: []string{"kein"}}, "not money", "money", ""},
		{"unicode words", all, "Ich kann nicht zahlen", "Ich kann zahlen", ""},
		{"empty", all, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustGuards(t, tt.cfg)
			for _, args := range [][2]string{{tt.query, tt.cached}, {tt.cached, tt.query}} {
				reason, flipped := g.Flip(args[0], args[1])
				if flipped != (tt.want != "") || reason != tt.want {
					t.Errorf("Flip(%q, %q) = %q, %v; want %q", args[0], args[1], reason, flipped, tt.want)
				}
			}
		})
	}
}

func TestGuardNumbers(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"1,000,000 and 007", []string{"1000000", "7"}},
		{"1,5", []string{"1", "5"}},
		{"$ 3.10 or 3%", []string{"$3.10", "3%"}},
		{"-2 - 4", []string{"-2", "4"}},
		{"version 2.0", []string{"2.0"}},
		{"5 kg and 5 lbs, 3 eggs", []string{"3 eggs", "5 kg", "5 lb"}},
		{"no digits", nil},
	}
	for _, tt := range tests {
		if got := guardNumbers(guardNormalize(tt.in)); !slices.Equal(got, tt.want) {
			t.Errorf("guardNumbers(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewGuardsRejectsBadTokens(t *testing.T) {
	for _, cfg := range []GuardsConfig{
		{Extra: []string{"two words"}},
		{Extra: []string{""}},
		{Negations: []string{"!!"}},
	} {
		if _, err := NewGuards(cfg); !errors.Is(err, ErrGuardsConfig) {
			t.Errorf("NewGuards(%+v) error %v, want ErrGuardsConfig", cfg, err)
		}
	}
}

func TestNewGuardsCopiesConfig(t *testing.T) {
	cfg := GuardsConfig{Extra: []string{"monthly"}}
	g := mustGuards(t, cfg)
	cfg.Extra[0] = "yearly"
	if _, flipped := g.Flip("monthly plan", "plan"); !flipped {
		t.Error("changing the config after NewGuards changed the guards")
	}
}

func FuzzGuardsFlip(f *testing.F) {
	for _, s := range [][2]string{
		{"I can't log in", "I can log in"},
		{"send $1,000.50", "send 1000.5 $"},
		{"10 %", "10percent"},
		{"-", "'"},
		{"\u2212\u00a0$", "n't"},
	} {
		f.Add(s[0], s[1])
	}
	g, err := NewGuards(GuardsConfig{Numbers: true, Extra: []string{"monthly"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ra, fa := g.Flip(a, b)
		rb, fb := g.Flip(b, a)
		if fa != fb || ra != rb {
			t.Errorf("Flip(%q, %q) = %q, %v but Flip(%q, %q) = %q, %v", a, b, ra, fa, b, a, rb, fb)
		}
		if r, f := g.Flip(a, a); f {
			t.Errorf("Flip(%q, itself) = %q, true", a, r)
		}
	})
}

func ExampleGuards_Flip() {
	g, _ := NewGuards(GuardsConfig{Numbers: true})
	fmt.Println(g.Flip("I can't log in", "I can log in"))
	fmt.Println(g.Flip("transfer 100 dollars", "transfer 200 dollars"))
	fmt.Println(g.Flip("send 1,000 euros", "send 1000 euros"))
	// Output:
	// negation true
	// number true
	//  false
}
