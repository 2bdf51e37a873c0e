package semantic

import (
	"bytes"
	_ "embed" // the default pricing table
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
)

// Price is the list price of one model, in US dollars per million tokens.
type Price struct {
	// InputPerMTok is the price of a million prompt (input) tokens.
	InputPerMTok float64 `json:"input_per_mtok"`
	// OutputPerMTok is the price of a million completion (output) tokens.
	OutputPerMTok float64 `json:"output_per_mtok"`
}

// PricingError is the error ParsePricing returns (wrapped) for an invalid
// model entry. Its message names the entry and the field at fault.
type PricingError struct {
	// Model is the entry's key in "models".
	Model string
	// Field is the JSON field at fault ("input_per_mtok"); "" when the
	// entry as a whole is at fault (not an object, an unknown field, a bad
	// or duplicate model name).
	Field string
	// Err says what is wrong.
	Err error
}

func (e *PricingError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("models[%q]: %v", e.Model, e.Err)
	}
	return fmt.Sprintf("models[%q]: field %s: %v", e.Model, e.Field, e.Err)
}

func (e *PricingError) Unwrap() error { return e.Err }

// Pricing is a table of model prices that turns token usage into US
// dollars. It is immutable and safe for concurrent use. A nil *Pricing
// knows no model.
//
// A model is looked up by its exact name first, then by the longest entry
// that is a prefix of the name ending just before a '-': "gpt-4o-2024-08-06"
// is priced as "gpt-4o" unless it has an entry of its own, and
// "gpt-4o-mini-2024-07-18" as "gpt-4o-mini". An entry never matches a
// longer name without the '-' ("gpt-4" does not price "gpt-4o" or
// "gpt-4.1"). Names are compared case-sensitively, as the OpenAI API does.
type Pricing struct {
	source, asOf string
	models       map[string]Price
}

// defaultPricingJSON is the default table; docs/pricing.md lists it with
// its source and date.
//
//go:embed pricing_default.json
var defaultPricingJSON []byte

// defaultPricing is parsed once, at start-up; a default file that does not
// parse panics here and so fails every test of the package.
var defaultPricing = mustParseJSON(defaultPricingJSON, ParsePricing)

// DefaultPricing returns the built-in table of OpenAI list prices (standard
// tier, without cached-input or Batch discounts) for gpt-4o, gpt-4o-mini,
// gpt-4.1, gpt-4.1-mini, gpt-4.1-nano, o3-mini, gpt-3.5-turbo and
// text-embedding-3-small/large. Its Source and AsOf say where and when the
// prices were taken; prices change, so operators should check them and
// load their own file (LoadPricing) when they differ.
func DefaultPricing() *Pricing { return defaultPricing }

// LoadPricing reads and parses a pricing file; see ParsePricing.
func LoadPricing(path string) (*Pricing, error) {
	return loadJSONFile(path, "pricing", parsePricing)
}

// ParsePricing parses a JSON pricing table, documented in docs/pricing.md:
//
//	{"source": "...", "as_of": "2025-06-01",
//	 "models": {"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10}}}
//
// source and as_of are free text, for people and logs. Every entry needs
// both prices, in US dollars per million tokens, >= 0. Unknown fields, a
// duplicate or empty model name, or one containing white space are errors;
// an error for an entry wraps a *PricingError naming the model and the
// field. An empty "models" object is valid and prices nothing.
func ParsePricing(data []byte) (*Pricing, error) {
	return parseJSON(data, "pricing", parsePricing)
}

func parsePricing(data []byte) (*Pricing, error) {
	var doc struct {
		Source string          `json:"source"`
		AsOf   string          `json:"as_of"`
		Models json.RawMessage `json:"models"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, errors.New("trailing data after the JSON object")
	}
	if t := bytes.TrimSpace(doc.Models); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("field models: want an object of model name to price")
	}
	p := &Pricing{source: doc.Source, asOf: doc.AsOf, models: make(map[string]Price)}
	// Walk the object token by token rather than into a map, so that a
	// duplicate name is an error instead of silently taking the last one.
	md := json.NewDecoder(bytes.NewReader(doc.Models))
	if _, err := md.Token(); err != nil { // the '{'
		return nil, fmt.Errorf("field models: %w", err)
	}
	for md.More() {
		tok, err := md.Token()
		if err != nil {
			return nil, fmt.Errorf("field models: %w", err)
		}
		name := tok.(string) // object keys are strings
		var raw json.RawMessage
		if err := md.Decode(&raw); err != nil {
			return nil, &PricingError{Model: name, Err: err}
		}
		price, err := parsePrice(name, raw)
		if err != nil {
			return nil, err
		}
		if _, dup := p.models[name]; dup {
			return nil, &PricingError{Model: name, Err: errors.New("listed twice")}
		}
		p.models[name] = price
	}
	return p, nil
}

// parsePrice decodes and checks the entry of model name.
func parsePrice(name string, raw json.RawMessage) (Price, error) {
	fail := func(field, format string, args ...any) (Price, error) {
		return Price{}, &PricingError{Model: name, Field: field, Err: fmt.Errorf(format, args...)}
	}
	if name == "" {
		return fail("", "the model name must not be empty")
	}
	if strings.IndexFunc(name, unicode.IsSpace) >= 0 {
		return fail("", "the model name must not contain white space")
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return fail("", `want an object {"input_per_mtok": N, "output_per_mtok": N}`)
	}
	var e struct {
		In  *float64 `json:"input_per_mtok"`
		Out *float64 `json:"output_per_mtok"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) {
			return fail(te.Field, "want a number of US dollars per million tokens")
		}
		return fail("", "%v", err)
	}
	for _, f := range []struct {
		field string
		v     *float64
	}{{"input_per_mtok", e.In}, {"output_per_mtok", e.Out}} {
		switch {
		case f.v == nil:
			return fail(f.field, "missing: want US dollars per million tokens (0 for free)")
		case *f.v < 0 || math.IsInf(*f.v, 0) || math.IsNaN(*f.v):
			return fail(f.field, "%v: must be a finite number >= 0", *f.v)
		}
	}
	return Price{InputPerMTok: *e.In, OutputPerMTok: *e.Out}, nil
}

// Source says where the prices come from ("source" in the file).
func (p *Pricing) Source() string {
	if p == nil {
		return ""
	}
	return p.source
}

// AsOf says when the prices were taken ("as_of" in the file).
func (p *Pricing) AsOf() string {
	if p == nil {
		return ""
	}
	return p.asOf
}

// Len returns the number of entries.
func (p *Pricing) Len() int {
	if p == nil {
		return 0
	}
	return len(p.models)
}

// Lookup returns the price of model: its own entry, else the longest entry
// that is a prefix of it ending before a '-' (see Pricing). ok is false when
// no entry matches.
func (p *Pricing) Lookup(model string) (price Price, ok bool) {
	if p == nil || model == "" {
		return Price{}, false
	}
	for name := model; ; {
		if price, ok := p.models[name]; ok {
			return price, true
		}
		i := strings.LastIndexByte(name, '-')
		if i <= 0 {
			return Price{}, false
		}
		name = name[:i]
	}
}

// Cost returns what promptTokens and completionTokens of model cost at its
// price, in US dollars: (prompt × input + completion × output) / 10⁶.
// known is false, and usd 0, when model has no price.
func (p *Pricing) Cost(model string, promptTokens, completionTokens int) (usd float64, known bool) {
	price, ok := p.Lookup(model)
	if !ok {
		return 0, false
	}
	return price.microUSD(promptTokens, completionTokens) / 1e6, true
}

// microUSD is the cost of the tokens in millionths of a US dollar: a price
// per million tokens is a price in micro-dollars per token.
func (pr Price) microUSD(promptTokens, completionTokens int) float64 {
	return float64(promptTokens)*pr.InputPerMTok + float64(completionTokens)*pr.OutputPerMTok
}
