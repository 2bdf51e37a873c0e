package semantic_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semcache/semcache/semantic"
)

// testPricing is a small table with prices chosen so that every cost is
// easy to work out by hand.
const testPricing = `{
  "source": "test", "as_of": "2025-01-01",
  "models": {
    "m": {"input_per_mtok": 2, "output_per_mtok": 10},
    "m-mini": {"input_per_mtok": 0.5, "output_per_mtok": 1},
    "m-2024-05-13": {"input_per_mtok": 4, "output_per_mtok": 20},
    "free": {"input_per_mtok": 0, "output_per_mtok": 0}
  }
}`

func mustParsePricing(t *testing.T, data string) *semantic.Pricing {
	t.Helper()
	p, err := semantic.ParsePricing([]byte(data))
	if err != nil {
		t.Fatalf("ParsePricing: %v", err)
	}
	return p
}

func TestPricingLookup(t *testing.T) {
	p := mustParsePricing(t, testPricing)
	if p.Len() != 4 || p.Source() != "test" || p.AsOf() != "2025-01-01" {
		t.Errorf("Len %d, Source %q, AsOf %q", p.Len(), p.Source(), p.AsOf())
	}
	m, mini, old := semantic.Price{InputPerMTok: 2, OutputPerMTok: 10}, semantic.Price{InputPerMTok: 0.5, OutputPerMTok: 1}, semantic.Price{InputPerMTok: 4, OutputPerMTok: 20}
	tests := []struct {
		model string
		want  semantic.Price
		ok    bool
	}{
		{"m", m, true},
		{"m-2024-08-06", m, true},         // a dated snapshot: longest prefix
		{"m-2024-05-13", old, true},       // exact wins over the prefix
		{"m-mini", mini, true},            // exact wins over "m"
		{"m-mini-2024-07-18", mini, true}, // the longest prefix, not "m"
		{"m-mini-audio-preview", mini, true},
		{"free", semantic.Price{}, true},   // known, at zero
		{"mx", semantic.Price{}, false},    // a prefix only counts up to a '-'
		{"m.1", semantic.Price{}, false},   // likewise
		{"M", semantic.Price{}, false},     // case-sensitive
		{"other", semantic.Price{}, false}, // unknown
		{"", semantic.Price{}, false},
		{"-m", semantic.Price{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			got, ok := p.Lookup(tc.model)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Lookup(%q) = %+v, %t; want %+v, %t", tc.model, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestPricingCost(t *testing.T) {
	p := mustParsePricing(t, testPricing)
	tests := []struct {
		model              string
		prompt, completion int
		usd                float64
		known              bool
	}{
		{"m", 1_000_000, 0, 2, true},
		{"m", 0, 1_000_000, 10, true},
		{"m-2024-08-06", 1234, 567, (1234*2 + 567*10) / 1e6, true}, // 0.008138
		{"m-mini", 3, 2, (3*0.5 + 2*1) / 1e6, true},
		{"free", 1000, 1000, 0, true},
		{"other", 1000, 1000, 0, false},
	}
	for _, tc := range tests {
		usd, known := p.Cost(tc.model, tc.prompt, tc.completion)
		if known != tc.known || !closeTo(usd, tc.usd) {
			t.Errorf("Cost(%q, %d, %d) = %v, %t; want %v, %t", tc.model, tc.prompt, tc.completion, usd, known, tc.usd, tc.known)
		}
	}
	var none *semantic.Pricing
	if usd, known := none.Cost("m", 10, 10); usd != 0 || known {
		t.Errorf("nil Pricing: Cost = %v, %t; want 0, false", usd, known)
	}
}

func closeTo(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 }

func TestParsePricingRejects(t *testing.T) {
	tests := []struct {
		name, data string
		// mention is in the message; model and field are the
		// *PricingError's, when one is expected.
		mention, model, field string
	}{
		{"not JSON", `{"models":`, "unexpected EOF", "", ""},
		{"no models", `{"source":"x"}`, "field models", "", ""},
		{"models not an object", `{"models":[]}`, "field models", "", ""},
		{"unknown top-level field", `{"models":{},"currency":"EUR"}`, `unknown field "currency"`, "", ""},
		{"trailing data", `{"models":{}} {}`, "trailing data", "", ""},
		{"entry not an object", `{"models":{"gpt-4o":2.5}}`, `models["gpt-4o"]: want an object`, "gpt-4o", ""},
		{"missing input", `{"models":{"gpt-4o":{"output_per_mtok":10}}}`, `models["gpt-4o"]: field input_per_mtok: missing`, "gpt-4o", "input_per_mtok"},
		{"missing output", `{"models":{"gpt-4o":{"input_per_mtok":2.5}}}`, `models["gpt-4o"]: field output_per_mtok: missing`, "gpt-4o", "output_per_mtok"},
		{"negative", `{"models":{"o3-mini":{"input_per_mtok":-1,"output_per_mtok":4.4}}}`, `models["o3-mini"]: field input_per_mtok: -1: must be a finite number >= 0`, "o3-mini", "input_per_mtok"},
		{"string price", `{"models":{"gpt-4o":{"input_per_mtok":2.5,"output_per_mtok":"10"}}}`, `models["gpt-4o"]: field output_per_mtok: want a number`, "gpt-4o", "output_per_mtok"},
		{"unknown entry field", `{"models":{"gpt-4o":{"input_per_mtok":2.5,"output_per_mtok":10,"cached_per_mtok":1}}}`, `models["gpt-4o"]: json: unknown field "cached_per_mtok"`, "gpt-4o", ""},
		{"duplicate", `{"models":{"gpt-4o":{"input_per_mtok":2.5,"output_per_mtok":10},"gpt-4o":{"input_per_mtok":5,"output_per_mtok":15}}}`, `models["gpt-4o"]: listed twice`, "gpt-4o", ""},
		{"empty name", `{"models":{"":{"input_per_mtok":1,"output_per_mtok":1}}}`, `models[""]: the model name must not be empty`, "", ""},
		{"white space in name", `{"models":{"gpt 4o":{"input_per_mtok":1,"output_per_mtok":1}}}`, `models["gpt 4o"]: the model name must not contain white space`, "gpt 4o", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := semantic.ParsePricing([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.mention)
			}
			var pe *semantic.PricingError
			isEntry := errors.As(err, &pe)
			if wantEntry := strings.Contains(tc.mention, "models["); isEntry != wantEntry {
				t.Fatalf("err = %v: *PricingError %t, want %t", err, isEntry, wantEntry)
			}
			if isEntry && (pe.Model != tc.model || pe.Field != tc.field) {
				t.Errorf("PricingError model %q field %q, want %q %q", pe.Model, pe.Field, tc.model, tc.field)
			}
		})
	}
	if p, err := semantic.ParsePricing([]byte(`{"models":{}}`)); err != nil || p.Len() != 0 {
		t.Errorf("empty table: %v, %v; want a valid table of 0 entries", p, err)
	}
}

func TestLoadPricing(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "pricing.json")
	if err := os.WriteFile(good, []byte(testPricing), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := semantic.LoadPricing(good)
	if err != nil || p.Len() != 4 {
		t.Fatalf("LoadPricing: %v, %v", p, err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"models":{"m":{"input_per_mtok":1}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := semantic.LoadPricing(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `models["m"]: field output_per_mtok`) {
		t.Errorf("bad file: %v, want an error naming the file, the entry and the field", err)
	}
	if _, err := semantic.LoadPricing(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
}

func TestDefaultPricing(t *testing.T) {
	p := semantic.DefaultPricing()
	if p.Source() == "" || p.AsOf() == "" {
		t.Errorf("default table: source %q, as_of %q; both must say where and when the prices come from", p.Source(), p.AsOf())
	}
	for _, model := range []string{
		"gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-mini", "gpt-4o-mini-2024-07-18",
		"gpt-4.1", "gpt-4.1-2025-04-14", "gpt-4.1-mini", "gpt-4.1-nano",
		"o3-mini", "o3-mini-2025-01-31", "gpt-3.5-turbo", "gpt-3.5-turbo-0125",
		"text-embedding-3-small", "text-embedding-3-large",
	} {
		if price, ok := p.Lookup(model); !ok || price.InputPerMTok <= 0 {
			t.Errorf("Lookup(%q) = %+v, %t; want a price", model, price, ok)
		}
	}
	// Snapshots of one name with another price have entries of their own.
	current, _ := p.Lookup("gpt-4o")
	if first, _ := p.Lookup("gpt-4o-2024-05-13"); first == current {
		t.Error("gpt-4o-2024-05-13 is priced as gpt-4o")
	}
	if _, ok := p.Lookup("gpt-4"); ok {
		t.Error(`"gpt-4" is priced: no entry should match it`)
	}
}

// TestDefaultPricingDocumented keeps the table in docs/pricing.md in step
// with pricing_default.json.
func TestDefaultPricingDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "pricing.md"))
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- default-pricing:begin -->\n```json\n", "```\n<!-- default-pricing:end -->"
	_, after, ok1 := bytes.Cut(doc, []byte(begin))
	block, _, ok2 := bytes.Cut(after, []byte(end))
	if !ok1 || !ok2 {
		t.Fatalf("docs/pricing.md: no block between %q and %q", begin, end)
	}
	embedded, err := os.ReadFile("pricing_default.json")
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := json.Compact(&a, block); err != nil {
		t.Fatalf("docs/pricing.md default table: %v", err)
	}
	if err := json.Compact(&b, embedded); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Errorf("docs/pricing.md and pricing_default.json differ; copy the file into the doc")
	}
}

// TestCostSavedOnHits checks that every hit adds the cost of the serving
// entry's usage at its model's price, hand-computed in micro-dollars, and
// that hits of an unpriced model are counted as such.
func TestCostSavedOnHits(t *testing.T) {
	pricing := mustParsePricing(t, `{"models":{"gpt-4o-mini":{"input_per_mtok":0.15,"output_per_mtok":0.6}}}`)
	e := newEnv(t, semantic.Config{Threshold: 0.8, Pricing: pricing}, nil)
	// ident's requests are for gpt-4o-mini: 1200 prompt and 350 completion
	// tokens cost 1200 × 0.15 + 350 × 0.6 = 180 + 210 = 390 micro-dollars.
	paris := &upstream{resp: semantic.Upstream{Status: 200, Body: completion("Paris.", 1200, 350, reason("stop"))}}
	// 7 × 0.15 + 3 × 0.6 = 1.05 + 1.8 = 2.85, rounded to 3 per hit.
	small := &upstream{resp: semantic.Upstream{Status: 200, Body: completion("Knead.", 7, 3, reason("stop"))}}
	for _, s := range []struct {
		prompt string
		up     *upstream
	}{
		{promptBase, paris}, // miss: nothing saved
		{promptBase, paris}, // exact hit: 390
		{promptNear, paris}, // semantic hit: 390
		{promptFar, small},  // miss
		{promptFar, small},  // exact hit: 3
		{promptFar, small},  // exact hit: 3
	} {
		do(t, e.cache, ident(t, "t", s.prompt), s.up.fetch)
	}
	if got, want := e.cache.Stats().CostSavedMicroUSD.Load(), int64(390+390+3+3); got != want {
		t.Errorf("CostSavedMicroUSD = %d, want %d", got, want)
	}
	snap := e.cache.Snapshot(context.Background())
	if snap.CostSavedUSD != 786e-6 || snap.UnpricedHits != 0 {
		t.Errorf("Snapshot cost_saved_usd %v, unpriced_hits %d; want 0.000786, 0", snap.CostSavedUSD, snap.UnpricedHits)
	}

	// Another model, not in the table: its hits are counted, not priced.
	other := identFor(t, "t", "gpt-9", promptBase)
	do(t, e.cache, other, paris.fetch)
	do(t, e.cache, other, paris.fetch)
	if got := e.cache.Stats().UnpricedHits.Load(); got != 1 {
		t.Errorf("UnpricedHits = %d, want 1", got)
	}
	if got := e.cache.Stats().CostSavedMicroUSD.Load(); got != 786 {
		t.Errorf("CostSavedMicroUSD = %d after an unpriced hit, want 786", got)
	}

	// An answer stored by StoreAnswer (the streaming path) records its
	// model too, so its hits through Lookup are priced.
	id := ident(t, "another tenant", promptBase)
	if _, vec, hit := e.cache.Lookup(context.Background(), id, semantic.Options{}); hit {
		t.Fatal("Lookup hit an empty scope")
	} else if ok, err := e.cache.StoreAnswer(context.Background(), semantic.Result{}, id, semantic.Options{}, semantic.Answer{Upstream: paris.resp}, vec); !ok || err != nil {
		t.Fatalf("StoreAnswer = %t, %v", ok, err)
	}
	if _, _, hit := e.cache.Lookup(context.Background(), id, semantic.Options{}); !hit {
		t.Fatal("Lookup missed the stored answer")
	}
	if got := e.cache.Stats().CostSavedMicroUSD.Load(); got != 786+390 {
		t.Errorf("CostSavedMicroUSD = %d after a Lookup hit, want %d", got, 786+390)
	}

	// Without a pricing table, no cost accounting at all.
	off := newEnv(t, semantic.Config{Threshold: 0.8}, nil)
	do(t, off.cache, ident(t, "t", promptBase), paris.fetch)
	do(t, off.cache, ident(t, "t", promptBase), paris.fetch)
	if s := off.cache.Stats(); s.CostSavedMicroUSD.Load() != 0 || s.UnpricedHits.Load() != 0 || s.PromptTokensSaved.Load() != 1200 {
		t.Errorf("no pricing: cost %d, unpriced %d, prompt tokens %d; want 0, 0, 1200",
			s.CostSavedMicroUSD.Load(), s.UnpricedHits.Load(), s.PromptTokensSaved.Load())
	}
}

// identFor is ident for another model.
func identFor(t *testing.T, tenant, model, prompt string) semantic.Identity {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}]}`, model, prompt)
	id, _, err := semantic.Identify([]byte(body), tenant, "", semantic.Normalization{})
	if err != nil {
		t.Fatalf("Identify: %v", err)
	}
	return id
}

func ExamplePricing_Cost() {
	p, err := semantic.ParsePricing([]byte(`{"models":{"gpt-4o":{"input_per_mtok":2.5,"output_per_mtok":10}}}`))
	if err != nil {
		panic(err)
	}
	usd, known := p.Cost("gpt-4o-2024-08-06", 1000, 500) // a dated snapshot of gpt-4o
	fmt.Printf("$%.4f %t\n", usd, known)
	_, known = p.Cost("claude-3", 1000, 500)
	fmt.Println(known)
	// Output:
	// $0.0075 true
	// false
}
