package embedding

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"sync"
	"testing"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

func newLocal(t testing.TB, cfg LocalConfig) *Local {
	t.Helper()
	l, err := NewLocal(cfg)
	if err != nil {
		t.Fatalf("NewLocal(%+v): %v", cfg, err)
	}
	return l
}

func embedAll(t testing.TB, e Embedder, texts ...string) [][]float32 {
	t.Helper()
	vs, err := e.Embed(context.Background(), texts)
	if err != nil {
		t.Fatalf("Embed(%q): %v", texts, err)
	}
	if len(vs) != len(texts) {
		t.Fatalf("Embed(%q) returned %d vectors, want %d", texts, len(vs), len(texts))
	}
	for i, v := range vs {
		if len(v) != e.Dim() {
			t.Fatalf("Embed(%q)[%d] has length %d, want Dim() = %d", texts, i, len(v), e.Dim())
		}
	}
	return vs
}

func cosine(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func norm2(v []float32) float64 { return math.Sqrt(cosine(v, v)) }

func assertUnit(t *testing.T, v []float32) {
	t.Helper()
	if n := norm2(v); math.Abs(n-1) > 1e-5 {
		t.Errorf("norm = %v, want 1", n)
	}
}

func assertClose(t *testing.T, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > tol {
			t.Fatalf("component %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestNewLocal(t *testing.T) {
	tests := []struct {
		name        string
		cfg         LocalConfig
		wantErr     bool
		dim         int
		fingerprint string
	}{
		{name: "zero value gives defaults", dim: 384, fingerprint: "local:lexical-v1:384"},
		{name: "explicit defaults", cfg: LocalConfig{Dim: 384, MinN: 3, MaxN: 5, WordWeight: 1}, dim: 384, fingerprint: "local:lexical-v1:384"},
		{name: "custom dim", cfg: LocalConfig{Dim: 256}, dim: 256, fingerprint: "local:lexical-v1:256"},
		{name: "custom grams and weight", cfg: LocalConfig{Dim: 256, MinN: 2, MaxN: 4, WordWeight: 1.5}, dim: 256, fingerprint: "local:lexical-v1-n2-4-w1.5:256"},
		{name: "only MaxN set", cfg: LocalConfig{MaxN: 6}, dim: 384, fingerprint: "local:lexical-v1-n3-6-w1:384"},
		{name: "negative dim", cfg: LocalConfig{Dim: -1}, wantErr: true},
		{name: "MinN above MaxN", cfg: LocalConfig{MinN: 4, MaxN: 2}, wantErr: true},
		{name: "MinN above default MaxN", cfg: LocalConfig{MinN: 6}, wantErr: true},
		{name: "negative MinN", cfg: LocalConfig{MinN: -1}, wantErr: true},
		{name: "negative weight", cfg: LocalConfig{WordWeight: -1}, wantErr: true},
		{name: "NaN weight", cfg: LocalConfig{WordWeight: float32(math.NaN())}, wantErr: true},
		{name: "infinite weight", cfg: LocalConfig{WordWeight: float32(math.Inf(1))}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewLocal(tt.cfg)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewLocal(%+v) succeeded, want error", tt.cfg)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewLocal(%+v): %v", tt.cfg, err)
			}
			if l.Dim() != tt.dim {
				t.Errorf("Dim() = %d, want %d", l.Dim(), tt.dim)
			}
			if l.Fingerprint() != tt.fingerprint {
				t.Errorf("Fingerprint() = %q, want %q", l.Fingerprint(), tt.fingerprint)
			}
		})
	}
}

func TestLocalDeterministic(t *testing.T) {
	texts := []string{"How do I reset my password?", "Grüße aus Köln", "东京的天气怎么样", "", "a a a a"}
	a := embedAll(t, newLocal(t, LocalConfig{}), texts...)
	b := embedAll(t, newLocal(t, LocalConfig{}), texts...)
	for i := range texts {
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				t.Fatalf("text %q: component %d differs between instances: %v vs %v", texts[i], j, a[i][j], b[i][j])
			}
		}
	}
	// One at a time gives the same vectors as a batch.
	l := newLocal(t, LocalConfig{})
	for i, text := range texts {
		assertClose(t, embedAll(t, l, text)[0], a[i], 0)
	}
}

func TestLocalUnitNorm(t *testing.T) {
	tests := []struct{ name, text string }{
		{"sentence", "How do I reset my password?"},
		{"single letter", "a"},
		{"repeated word", strings.Repeat("spam ", 1000)},
		{"accents", "Où est la bibliothèque ?"},
		{"cjk", "东京的天气怎么样"},
		{"emoji only", "👍🎉"},
		{"punctuation only", "?!"},
		{"digits", "4242 1337"},
		{"invalid utf8", "\xff\xfe abc"},
		{"empty", ""},
	}
	for _, dim := range []int{8, 384, 1536} {
		l := newLocal(t, LocalConfig{Dim: dim})
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/dim=%d", tt.name, dim), func(t *testing.T) {
				assertUnit(t, embedAll(t, l, tt.text)[0])
			})
		}
	}
}

func TestLocalSimilarity(t *testing.T) {
	tests := []struct {
		name                 string
		query, near, farther string
	}{
		{"paraphrase", "How do I reset my password?", "how can i reset my password", "What is the weather in Paris?"},
		{"inflection", "resetting passwords", "reset password", "weather forecast"},
		{"near-miss question", "What is the capital of France?", "what's the capital city of france", "What is the capital of Germany?"},
		{"typo", "recommend a restaurant", "recomend a restaurent", "recommend a book"},
	}
	l := newLocal(t, LocalConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := embedAll(t, l, tt.query, tt.near, tt.farther)
			near, far := cosine(v[0], v[1]), cosine(v[0], v[2])
			if near <= far {
				t.Errorf("cos(%q, %q) = %.3f, want > cos(%q, %q) = %.3f", tt.query, tt.near, near, tt.query, tt.farther, far)
			}
		})
	}
}

func TestLocalNormalisesText(t *testing.T) {
	tests := []struct{ name, a, b string }{
		{"case", "Reset My Password", "reset my password"},
		{"whitespace", "  reset\tmy\n\npassword  ", "reset my password"},
		{"punctuation", "reset, my password?!", "reset my password"},
		{"unicode case", "ÉCOLE ΣΟΦΊΑ", "école σοφία"},
		{"composed and decomposed", "cafe\u0301", "caf\u00e9"},
		{"full-width letters", "ｈｅｌｌｏ", "hello"},
	}
	l := newLocal(t, LocalConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := embedAll(t, l, tt.a, tt.b)
			if c := cosine(v[0], v[1]); math.Abs(c-1) > 1e-6 {
				t.Errorf("cos(%q, %q) = %v, want 1", tt.a, tt.b, c)
			}
		})
	}
}

func TestLocalNoFeatures(t *testing.T) {
	l := newLocal(t, LocalConfig{})
	unit0 := make([]float32, l.Dim())
	unit0[0] = 1
	for _, text := range []string{"", " ", "\t\n "} {
		t.Run(fmt.Sprintf("%q is the unit vector on bucket 0", text), func(t *testing.T) {
			assertClose(t, embedAll(t, l, text)[0], unit0, 0)
		})
	}
	t.Run("symbol-only texts still differ", func(t *testing.T) {
		v := embedAll(t, l, "???", "!!!")
		if c := cosine(v[0], v[1]); c > 0.5 {
			t.Errorf("cos(???, !!!) = %v, want them unrelated", c)
		}
		if v[0][0] == 1 {
			t.Errorf("??? embedded to the empty-text vector")
		}
	})
}

// referenceEmbed is a slow, allocation-heavy restatement of the algorithm
// documented on Local, using hash/fnv and strings, to pin the fast path.
func referenceEmbed(l *Local, text string) []float32 {
	text = strings.ToLower(norm.NFKC.String(text))
	words := strings.FieldsFunc(text, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r))
	})
	if len(words) == 0 {
		words = strings.Fields(text)
	}
	v := make([]float32, l.dim)
	if len(words) == 0 {
		v[0] = 1
		return v
	}
	tf := map[string]int{}
	for _, w := range words {
		tf[w]++
	}
	add := func(feature string, weight float64) {
		h := fnv.New64a()
		h.Write([]byte(feature))
		m := fmix64(h.Sum64())
		b := int((m & 0xffffffff) * uint64(l.dim) >> 32)
		if m>>63 == 1 {
			weight = -weight
		}
		v[b] += float32(weight)
	}
	for w, n := range tf {
		weight := 1 + math.Log(float64(n))
		padded := []rune("<" + w + ">")
		add("\x01"+string(padded), weight*float64(l.wordWeight))
		for n := l.minN; n <= l.maxN; n++ {
			for i := 0; i+n <= len(padded); i++ {
				add(string(padded[i:i+n]), weight)
			}
		}
	}
	l2normalise(v)
	return v
}

func TestLocalMatchesReference(t *testing.T) {
	texts := []string{
		"How do I reset my password?",
		"the the the cat",
		"Grüße aus Köln, 2024!",
		"东京的天气怎么样",
		"ab",
		"!!!",
	}
	for _, cfg := range []LocalConfig{{}, {Dim: 64, MinN: 1, MaxN: 7, WordWeight: 2.5}} {
		l := newLocal(t, cfg)
		for _, text := range texts {
			t.Run(fmt.Sprintf("%s/%q", l.Fingerprint(), text), func(t *testing.T) {
				assertClose(t, embedAll(t, l, text)[0], referenceEmbed(l, text), 1e-5)
			})
		}
	}
}

func TestLocalConcurrent(t *testing.T) {
	l := newLocal(t, LocalConfig{})
	texts := []string{"How do I reset my password?", "what is the weather", "Grüße", "", "東京"}
	want := embedAll(t, l, texts...)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for range 50 {
				got, err := l.Embed(context.Background(), texts)
				if err != nil {
					errs <- err
					return
				}
				for i := range texts {
					for j := range got[i] {
						if got[i][j] != want[i][j] {
							errs <- fmt.Errorf("goroutine %d: text %q differs at %d", g, texts[i], j)
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLocalCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newLocal(t, LocalConfig{}).Embed(ctx, []string{"hello"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Embed with canceled context: err = %v, want context.Canceled", err)
	}
}

func ExampleLocal() {
	l, err := NewLocal(LocalConfig{})
	if err != nil {
		panic(err)
	}
	v, err := l.Embed(context.Background(), []string{
		"How do I reset my password?",
		"how can i reset my password",
		"What is the weather in Paris?",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(l.Fingerprint(), len(v[0]))
	fmt.Println(cosine(v[0], v[1]) > cosine(v[0], v[2]))
	// Output:
	// local:lexical-v1:384 384
	// true
}

func BenchmarkLocalEmbed(b *testing.B) {
	sizes := []struct {
		name string
		text string
	}{
		{"short", "How do I reset my password?"},
		{"paragraph", strings.Repeat("Explain the difference between a process and a thread in operating systems. ", 4)},
		{"long", strings.Repeat("Summarise the following support ticket and suggest a reply to the customer. ", 32)},
	}
	l := newLocal(b, LocalConfig{})
	for _, s := range sizes {
		b.Run(fmt.Sprintf("%s/%dB", s.name, len(s.text)), func(b *testing.B) {
			texts := []string{s.text}
			ctx := context.Background()
			b.SetBytes(int64(len(s.text)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Embed(ctx, texts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
