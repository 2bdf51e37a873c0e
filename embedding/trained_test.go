package embedding

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

// refBucket hashes a feature string with the standard library's FNV-1a,
// independently of the incremental hashing in features.go.
func refBucket(s string, buckets int) uint32 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return bucketOf(h.Sum64(), buckets)
}

func TestFeaturesGolden(t *testing.T) {
	hiThere := []string{
		"<hi", "<hi>", "hi>", "\x01<hi>", "\x02hi there",
		"<th", "<the", "<ther", "the", "ther", "there", "her", "here", "here>", "ere", "ere>", "re>", "\x01<there>",
	}
	tests := []struct {
		name, text string
		want       []string
	}{
		{"plain", "hi there", hiThere},
		{"case and punctuation", "  HI, there!", hiThere},
		{"nfkc", "ｈｉ there", hiThere},
		{"one short word", "a", []string{"<a>", "\x01<a>"}},
		{"no words falls back to non-space runs", "??", []string{"<??", "<??>", "??>", "\x01<??>"}},
		{"empty", "", nil},
	}
	p := ModelParams{}.WithDefaults()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Features(tc.text, nil)
			if len(got) != len(tc.want) {
				t.Fatalf("Features(%q) has %d features, want %d", tc.text, len(got), len(tc.want))
			}
			for i, s := range tc.want {
				if want := refBucket(s, p.Buckets); got[i].Bucket != want || got[i].Weight != 1 {
					t.Errorf("feature %d = %+v, want bucket %d (%q) weight 1", i, got[i], want, s)
				}
			}
		})
	}
}

func TestInitRowDeterministic(t *testing.T) {
	a, b, c := make([]float32, 128), make([]float32, 128), make([]float32, 128)
	InitRow(7, 42, a)
	InitRow(7, 42, b)
	InitRow(8, 42, c)
	if !slicesEqualBits(a, b) {
		t.Fatal("InitRow is not deterministic")
	}
	if slicesEqualBits(a, c) {
		t.Fatal("InitRow ignores the seed")
	}
	var sum float64
	for _, x := range a {
		sum += float64(x) * float64(x)
	}
	if sum < 0.5 || sum > 1.5 {
		t.Errorf("initial row squared norm %.3f, want about 1", sum)
	}
}

func slicesEqualBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// smallBagModel returns a small model with a few trained rows.
func smallBagModel(alpha float32) *Model {
	p := ModelParams{Buckets: 1 << 10, Dim: 16, Seed: 3, Alpha: alpha}.WithDefaults()
	m := &Model{Params: p, Rows: map[uint32][]float32{}}
	for _, b := range []uint32{0, 5, 1023} {
		row := make([]float32, p.Dim)
		for i := range row {
			row[i] = float32(math.Sin(float64(int(b)*31+i))) * 0.37
		}
		m.Rows[b] = row
	}
	m.Rows[5][3] = 0 // a zero within a row
	return m
}

func encode(t *testing.T, m *Model, enc RowEncoding) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteModel(&buf, m, enc); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestModelRoundTrip(t *testing.T) {
	m := smallBagModel(0.25)
	for _, enc := range []RowEncoding{Float32Rows, Int8Rows} {
		got, err := ReadModel(bytes.NewReader(encode(t, m, enc)))
		if err != nil {
			t.Fatalf("encoding %d: %v", enc, err)
		}
		if got.Params != m.Params {
			t.Fatalf("params %+v, want %+v", got.Params, m.Params)
		}
		if len(got.Rows) != len(m.Rows) {
			t.Fatalf("%d rows, want %d", len(got.Rows), len(m.Rows))
		}
		for b, want := range m.Rows {
			row := got.Rows[b]
			if enc == Float32Rows {
				if !slicesEqualBits(row, want) {
					t.Errorf("float32 row %d = %v, want bit-exact %v", b, row, want)
				}
				continue
			}
			var maxAbs float64
			for _, x := range want {
				maxAbs = max(maxAbs, math.Abs(float64(x)))
			}
			tol := maxAbs/127/2 + 1e-7
			for i := range want {
				if d := math.Abs(float64(row[i] - want[i])); d > tol {
					t.Errorf("int8 row %d[%d] = %v, want %v within %v", b, i, row[i], want[i], tol)
				}
			}
		}
		if !bytes.Equal(encode(t, got, Float32Rows), encode(t, got, Float32Rows)) {
			t.Error("WriteModel is not deterministic")
		}
	}
}

func TestReadModelRejects(t *testing.T) {
	good := encode(t, smallBagModel(0), Int8Rows)
	mutate := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "bad magic"},
		{"wrong magic", mutate(func(b []byte) []byte { b[0] = 'X'; return b }), "bad magic"},
		{"newer version", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 3); return b }), "version 3"},
		{"version 0", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 0); return b }), "version 0"},
		{"header only", good[:20], "truncated"},
		{"truncated rows", good[:len(good)-1], "truncated"},
		{"trailing bytes", append(bytes.Clone(good), 0), "trailing"},
		{"corrupt row", mutate(func(b []byte) []byte { b[headerSize(modelVersion)+10] ^= 0x40; return b }), "checksum mismatch"},
		{"corrupt checksum", mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), "checksum mismatch"},
		{"bad params", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16:], 0); return b }), "dim 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadModel(bytes.NewReader(tc.data))
			if !errors.Is(err, ErrModelFile) {
				t.Fatalf("err = %v, want ErrModelFile", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestModelThresholdAndVersion1 checks that the threshold survives a write
// and a read, that an out-of-range one is refused both ways, and that a
// version 1 file (no threshold) still loads, with threshold 0.
func TestModelThresholdAndVersion1(t *testing.T) {
	m := smallBagModel(0)
	m.Threshold = 0.83
	got, err := ReadModel(bytes.NewReader(encode(t, m, Float32Rows)))
	if err != nil || got.Threshold != 0.83 {
		t.Fatalf("threshold after a round trip: %v %v, want 0.83", got, err)
	}
	m.Threshold = 1.5
	if err := WriteModel(io.Discard, m, Float32Rows); err == nil {
		t.Error("WriteModel accepted threshold 1.5")
	}
	m.Threshold = 0.83
	v2 := encode(t, m, Float32Rows)
	bad := bytes.Clone(v2)
	binary.LittleEndian.PutUint32(bad[headerSizeV1-5:], math.Float32bits(-0.5)) // the threshold field
	sum := sha256.Sum256(bad[:len(bad)-sha256.Size])
	copy(bad[len(bad)-sha256.Size:], sum[:])
	if _, err := ReadModel(bytes.NewReader(bad)); !errors.Is(err, ErrModelFile) || !strings.Contains(err.Error(), "threshold") {
		t.Errorf("threshold -0.5 in the file: %v, want ErrModelFile naming the threshold", err)
	}
	// Version 1: the same bytes without the threshold field.
	v1 := slices.Concat(v2[:headerSizeV1-5], v2[headerSizeV1-1:len(v2)-sha256.Size])
	binary.LittleEndian.PutUint32(v1[8:], 1)
	sum = sha256.Sum256(v1)
	v1 = append(v1, sum[:]...)
	got, err = ReadModel(bytes.NewReader(v1))
	if err != nil || got.Threshold != 0 || len(got.Rows) != len(m.Rows) {
		t.Fatalf("version 1 file: %v %v, want it read with threshold 0", got, err)
	}
}

func TestTrainedEmbed(t *testing.T) {
	ctx := context.Background()
	texts := []string{"how do I reset my password", "", "Reset my PASSWORD please"}
	for _, alpha := range []float32{0, 0.25} {
		m, err := ReadModel(bytes.NewReader(encode(t, smallBagModel(alpha), Float32Rows)))
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTrained(m)
		if err != nil {
			t.Fatal(err)
		}
		wantDim := 16
		if alpha > 0 {
			wantDim += DefaultLocalDim
		}
		if tr.Dim() != wantDim {
			t.Fatalf("alpha %v: Dim %d, want %d", alpha, tr.Dim(), wantDim)
		}
		vs, err := tr.Embed(ctx, texts)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := tr.Embed(ctx, texts)
		for i, v := range vs {
			if len(v) != wantDim {
				t.Fatalf("vector %d has length %d", i, len(v))
			}
			var sum float64
			for _, x := range v {
				sum += float64(x) * float64(x)
			}
			if math.Abs(sum-1) > 1e-4 {
				t.Errorf("alpha %v: vector %d has squared norm %v, want 1", alpha, i, sum)
			}
			if !slicesEqualBits(v, again[i]) {
				t.Errorf("alpha %v: vector %d differs between calls", alpha, i)
			}
		}
		if alpha > 0 {
			lex, _ := NewLocal(LocalConfig{})
			lv, _ := lex.Embed(ctx, texts[:1])
			a := float32(math.Sqrt(float64(alpha)))
			for j, x := range lv[0] {
				if d := math.Abs(float64(vs[0][j] - a*x)); d > 1e-6 {
					t.Fatalf("lexical part [%d] = %v, want √α·%v", j, vs[0][j], x)
				}
			}
		}
	}
}

func TestTrainedFingerprintFollowsModel(t *testing.T) {
	m1 := smallBagModel(0)
	m2 := smallBagModel(0)
	m2.Rows[5][0] += 0.5
	fp := func(m *Model) string {
		t.Helper()
		got, err := ReadModel(bytes.NewReader(encode(t, m, Float32Rows)))
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTrained(got)
		if err != nil {
			t.Fatal(err)
		}
		return tr.Fingerprint()
	}
	a, b, c := fp(m1), fp(smallBagModel(0)), fp(m2)
	if a != b {
		t.Errorf("same model, fingerprints %q and %q", a, b)
	}
	if a == c {
		t.Errorf("different models share fingerprint %q", a)
	}
	if !strings.HasPrefix(a, "trained:bag-v1-") || !strings.HasSuffix(a, ":16") {
		t.Errorf("fingerprint %q, want trained:bag-v1-<sum>:16", a)
	}
	unsaved, err := NewTrained(smallBagModel(0))
	if err != nil {
		t.Fatal(err)
	}
	if unsaved.Fingerprint() != a {
		t.Errorf("unsaved model fingerprint %q, want the float32 file's %q", unsaved.Fingerprint(), a)
	}
}
