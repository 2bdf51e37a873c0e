package semantic

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// marshalCanonical is the form the scope hash was defined by before
// appendCanonical: a copy of the tree with numbers rewritten, then
// json.Marshal. appendCanonical must give the same bytes, or every stored
// entry's key would change.
func marshalCanonical(v any) ([]byte, error) {
	c, err := rewriteNumbers(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

func rewriteNumbers(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := rewriteNumbers(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := rewriteNumbers(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if s == "-0" {
				s = "0"
			}
			return json.Number(s), nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		if f == float64(int64(f)) && f < 1e15 && f > -1e15 {
			return json.Number(strconv.FormatInt(int64(f), 10)), nil
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	}
	return v, nil
}

var canonicalStrings = []string{
	"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnew\nline\rcr",
	"\b\f\x00\x01\x1f\x7f", "line\u2028sep\u2029par", "héllo wörld 你好 🙂", "bad \xff utf8 \xc3",
	"\u00e9 vs e\u0301", "json: {\"a\":1}",
}

var canonicalNumbers = []string{"0", "-0", "1", "-17", "0.7", "0.70", "1e2", "1E2", "1.5e-7", "123456789012345678",
	"1e15", "9.99e14", "-2.50", "3.141592653589793238", "1e300"}

func randomTree(rng *rand.Rand, depth int) any {
	switch k := rng.IntN(8); {
	case depth <= 0 || k < 2:
		return canonicalStrings[rng.IntN(len(canonicalStrings))]
	case k == 2:
		return json.Number(canonicalNumbers[rng.IntN(len(canonicalNumbers))])
	case k == 3:
		return []any{nil, true, false}[rng.IntN(3)]
	case k < 6:
		m := map[string]any{}
		for range rng.IntN(5) {
			m[canonicalStrings[rng.IntN(len(canonicalStrings))]+strconv.Itoa(rng.IntN(3))] = randomTree(rng, depth-1)
		}
		return m
	default:
		var a []any
		for range rng.IntN(4) {
			a = append(a, randomTree(rng, depth-1))
		}
		if a == nil {
			return []any{}
		}
		return a
	}
}

func TestAppendCanonicalMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 3000 {
		v := randomTree(rng, 4)
		want, err := marshalCanonical(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendCanonical(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("tree %d: appendCanonical\n%s\nwant\n%s", i, got, want)
		}
	}
	extra := map[string]string{"b": "<2>", "a": "1"}
	got, _ := appendCanonical(nil, map[string]any{"extra": extra, "v": 2})
	want, _ := json.Marshal(map[string]any{"extra": extra, "v": 2})
	if !bytes.Equal(got, want) {
		t.Errorf("Caller.Extra: %s, want %s", got, want)
	}
	if _, err := appendCanonical(nil, json.Number("1.5x")); err == nil {
		t.Error("a malformed number gave no error")
	}
}

// FuzzAppendCanonical decodes arbitrary JSON as Identify does and checks
// that appendCanonical agrees with the json.Marshal form.
func FuzzAppendCanonical(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.50,"<x>"],"b":{"z":null,"y":true}}`, `"\u2028\ud83d\ude00"`, `[1e2,-0,0.1e1]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		want, err := marshalCanonical(v)
		if err != nil {
			return
		}
		got, err := appendCanonical(nil, v)
		if err != nil {
			t.Fatalf("appendCanonical: %v (json.Marshal form %s)", err, want)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("appendCanonical\n%s\nwant\n%s", got, want)
		}
	})
}

func TestCanonicalJSONSpelling(t *testing.T) {
	b, err := canonicalJSON(map[string]any{"b": json.Number("0.70"), "a": "<&>", "c": json.Number("-0")})
	if want := `{"a":"\u003c\u0026\u003e","b":0.7,"c":0}`; err != nil || string(b) != want {
		t.Errorf("canonicalJSON = %s, %v; want %s", b, err, want)
	}
}
