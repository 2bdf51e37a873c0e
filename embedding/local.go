package embedding

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Defaults for [LocalConfig]; a zero field means the default.
const (
	// DefaultLocalDim is 384: the size of common small sentence-embedding
	// models, so index sizing is familiar, and large enough that the few
	// hundred features of a typical prompt rarely share a bucket.
	DefaultLocalDim = 384
	// DefaultMinN is the shortest n-gram, 3 runes. With DefaultMaxN it
	// gives the range fastText uses: long enough to carry meaning, short
	// enough that inflections ("reset", "resetting") share most grams.
	DefaultMinN = 3
	// DefaultMaxN is the longest n-gram, 5 runes.
	DefaultMaxN = 5
	// DefaultWordWeight is the weight of a whole-word feature relative to
	// one n-gram: 1, as in fastText, so the word is one more feature. A
	// word of length L already yields about 3L n-grams; on sample prompts
	// larger weights narrowed the gap between paraphrases and near-miss
	// questions ("capital of France" vs "capital of Germany").
	DefaultWordWeight = 1
)

// LocalDefaultThreshold is the local embedder's default cosine-similarity
// threshold: the threshold with the highest hit rate whose precision is
// >= 0.95 on BANKING77 (train warms the cache, test queries it, nearest
// neighbour in one scope), measured with
//
//	make tune ARGS="--target-precision 0.95"
//
// (24% hit rate at precision 0.952 there; see the README, "Choosing the
// threshold"). It was measured at DefaultLocalDim dimensions. No threshold
// of the lexical embedder reaches precision 0.99 on that data, so a
// stricter target needs a better embedder. `semcache serve` and the
// in-process proxy of `semcache bench` use it when --threshold is not
// given.
const LocalDefaultThreshold = 0.87

// lexicalVersion names the feature extraction algorithm. Change it whenever
// the vectors Local produces for the same input and config would change, so
// the fingerprint keeps old and new vectors apart.
const lexicalVersion = "lexical-v1"

// LocalConfig configures [NewLocal]. The zero value is valid and gives the
// defaults. NewLocal copies the config; later changes have no effect.
type LocalConfig struct {
	// Dim is the vector length, the number of hash buckets. Zero means
	// DefaultLocalDim (384); negative is an error.
	Dim int
	// MinN and MaxN bound the character n-gram lengths, in runes, counting
	// the "<" and ">" word-boundary markers. Zero means DefaultMinN (3) and
	// DefaultMaxN (5) respectively; after defaults, 1 <= MinN <= MaxN is
	// required. Cost grows linearly with MaxN.
	MinN, MaxN int
	// WordWeight is the weight of each whole-word feature relative to one
	// n-gram. Zero means DefaultWordWeight (1); negative, NaN or infinite
	// is an error. Use a tiny positive value to make words nearly ignored.
	WordWeight float32
}

// Local is a built-in lexical embedder that needs no network or model
// files. It hashes words and their character n-grams into a fixed number of
// signed buckets ("feature hashing") and L2-normalises the result. Texts
// sharing words and word fragments get a high cosine similarity; it does
// not understand synonyms, so it suits near-duplicate prompts (case,
// whitespace, punctuation, small rewordings), not true paraphrase.
//
// The vector for a text is computed as follows:
//   - the text is NFKC-normalised and lowercased rune by rune (Unicode-aware);
//   - words are maximal runs of letters, digits and combining marks; if a
//     text has none, runs of any non-space runes are used instead, so
//     "???" and "!!!" still differ;
//   - each distinct word gets weight 1+ln(tf), tf being its count in the
//     text (sublinear, so repetition does not dominate);
//   - features are the word's character n-grams of "<word>" for n in
//     [MinN, MaxN], each with the word's weight, plus the whole word with
//     the word's weight times WordWeight;
//   - each feature is hashed with 64-bit FNV-1a over its UTF-8 bytes (word
//     features are prefixed with the byte 0x01 so they never coincide with
//     an n-gram), the hash is passed through the murmur3 fmix64 finaliser
//     (FNV-1a's low bits are poorly mixed), the low 32 bits pick a bucket in
//     [0, Dim) and the top bit picks the sign, so collisions cancel on
//     average instead of biasing similarity upwards;
//   - the vector is L2-normalised.
//
// A text with no features at all (empty or only whitespace), or whose
// features cancel out exactly, embeds to the unit vector on bucket 0. All
// such texts are therefore identical to each other, which is the right
// answer for empty prompts.
//
// Local is deterministic across runs, platforms and processes, is
// immutable after construction and is safe for concurrent use.
type Local struct {
	dim         int
	minN, maxN  int
	wordWeight  float32
	fingerprint string
}

// NewLocal validates cfg, applies defaults and returns a Local.
func NewLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Dim < 0 {
		return nil, fmt.Errorf("local embedder: negative Dim %d", cfg.Dim)
	}
	if cfg.Dim == 0 {
		cfg.Dim = DefaultLocalDim
	}
	if cfg.MinN == 0 {
		cfg.MinN = DefaultMinN
	}
	if cfg.MaxN == 0 {
		cfg.MaxN = DefaultMaxN
	}
	if cfg.MinN < 1 || cfg.MaxN < cfg.MinN {
		return nil, fmt.Errorf("local embedder: n-gram range [%d, %d] invalid, need 1 <= MinN <= MaxN", cfg.MinN, cfg.MaxN)
	}
	w := float64(cfg.WordWeight)
	if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
		return nil, fmt.Errorf("local embedder: WordWeight %v invalid, need a finite value >= 0", cfg.WordWeight)
	}
	if cfg.WordWeight == 0 {
		cfg.WordWeight = DefaultWordWeight
	}
	model := lexicalVersion
	if cfg.MinN != DefaultMinN || cfg.MaxN != DefaultMaxN || cfg.WordWeight != DefaultWordWeight {
		model += fmt.Sprintf("-n%d-%d-w%s", cfg.MinN, cfg.MaxN,
			strconv.FormatFloat(float64(cfg.WordWeight), 'g', -1, 32))
	}
	return &Local{
		dim:         cfg.Dim,
		minN:        cfg.MinN,
		maxN:        cfg.MaxN,
		wordWeight:  cfg.WordWeight,
		fingerprint: "local:" + model + ":" + strconv.Itoa(cfg.Dim),
	}, nil
}

// Dim returns the length of every vector Embed returns.
func (l *Local) Dim() int { return l.dim }

// Fingerprint returns "local:lexical-v1:<dim>" for the default n-gram range
// and word weight, and "local:lexical-v1-n<min>-<max>-w<weight>:<dim>"
// otherwise, e.g. "local:lexical-v1:384" or "local:lexical-v1-n2-4-w1.5:256".
func (l *Local) Fingerprint() string { return l.fingerprint }

// Embed returns one freshly allocated unit vector of length Dim() per text,
// in input order; the caller owns them. It never fails except when ctx is
// done, which it checks every 64 texts.
func (l *Local) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local embed: %w", err)
	}
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if i%64 == 63 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("local embed: %w", err)
			}
		}
		out[i] = l.embed(t, sc)
	}
	return out, nil
}

// scratch holds per-call buffers so embedding a text allocates only its
// output vector.
type scratch struct {
	runes []rune // the lowercased words of one text, back to back
	words []span // the words, as ranges into runes
}

// span is one word: runes[start:end], with the hash of its word feature.
type span struct {
	start, end int
	hash       uint64
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// maxPooledRunes bounds the buffer kept in the pool so one huge prompt does
// not pin its memory forever.
const maxPooledRunes = 1 << 16

func (sc *scratch) release() {
	if cap(sc.runes) > maxPooledRunes {
		return
	}
	sc.runes, sc.words = sc.runes[:0], sc.words[:0]
	scratchPool.Put(sc)
}

func (l *Local) embed(text string, sc *scratch) []float32 {
	if !isASCII(text) && !norm.NFKC.IsNormalString(text) {
		text = norm.NFKC.String(text)
	}
	sc.tokenize(text, isWordRune)
	if len(sc.words) == 0 {
		sc.tokenize(text, isNotSpace)
	}
	v := make([]float32, l.dim)
	if len(sc.words) == 0 {
		v[0] = 1
		return v
	}
	// Sort by word hash to count term frequencies without a map. Equal
	// hashes are treated as equal words; a 64-bit collision is negligible.
	slices.SortFunc(sc.words, func(a, b span) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	for i := 0; i < len(sc.words); {
		j := i + 1
		for j < len(sc.words) && sc.words[j].hash == sc.words[i].hash {
			j++
		}
		weight := float32(1 + math.Log(float64(j-i)))
		l.addWord(v, sc.runes[sc.words[i].start:sc.words[i].end], sc.words[i].hash, weight)
		i = j
	}
	if !l2normalise(v) {
		clear(v)
		v[0] = 1
	}
	return v
}

// addWord adds the word feature and the n-gram features of word to v.
func (l *Local) addWord(v []float32, word []rune, wordHash uint64, weight float32) {
	l.add(v, wordHash, weight*l.wordWeight)
	wordNgrams(word, l.minN, l.maxN, func(h uint64) { l.add(v, h, weight) })
}

// wordNgrams calls fn with the FNV-1a hash of every substring of "<" +
// word + ">" whose length in runes is in [minN, maxN], hashed
// incrementally, one step per rune, in order of start then length. The
// local embedder and the trained embedder's features share it.
func wordNgrams(word []rune, minN, maxN int, fn func(h uint64)) {
	padded := len(word) + 2
	at := func(k int) rune {
		switch k {
		case 0:
			return '<'
		case padded - 1:
			return '>'
		}
		return word[k-1]
	}
	for i := 0; i < padded; i++ {
		h := uint64(fnvOffset64)
		for j := i; j < padded && j-i < maxN; j++ {
			h = fnvRune(h, at(j))
			if j-i+1 >= minN {
				fn(h)
			}
		}
	}
}

// add adds ±weight to the bucket of feature hash h.
func (l *Local) add(v []float32, h uint64, weight float32) {
	m := fmix64(h)
	b := (uint64(uint32(m)) * uint64(len(v))) >> 32 // Lemire's range reduction
	if m>>63 != 0 {
		weight = -weight
	}
	v[b] += weight
}

// tokenize lowercases text and stores the runs of runes accepted by in as
// words in sc, each with the hash of its word feature, 0x01 "<" word ">".
func (sc *scratch) tokenize(text string, in func(rune) bool) {
	sc.runes, sc.words = sc.runes[:0], sc.words[:0]
	start := -1
	var h uint64
	for _, r := range text {
		r = lower(r)
		if in(r) {
			if start < 0 {
				start = len(sc.runes)
				h = fnvByte(fnvOffset64, 0x01)
				h = fnvByte(h, '<')
			}
			sc.runes = append(sc.runes, r)
			h = fnvRune(h, r)
			continue
		}
		if start >= 0 {
			sc.words = append(sc.words, span{start, len(sc.runes), fnvByte(h, '>')})
			start = -1
		}
	}
	if start >= 0 {
		sc.words = append(sc.words, span{start, len(sc.runes), fnvByte(h, '>')})
	}
}

// isASCII reports whether s is pure ASCII, which is always NFKC-normal;
// checking it first avoids an allocation in norm for the common case.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func lower(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r
	}
	return unicode.ToLower(r)
}

func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || '0' <= r && r <= '9'
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

func isNotSpace(r rune) bool { return !unicode.IsSpace(r) }

// FNV-1a, 64 bit, identical to hash/fnv.New64a over the UTF-8 bytes but
// inlined so hashing an n-gram allocates nothing.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func fnvByte(h uint64, b byte) uint64 { return (h ^ uint64(b)) * fnvPrime64 }

func fnvRune(h uint64, r rune) uint64 {
	if r < utf8.RuneSelf {
		return fnvByte(h, byte(r))
	}
	var buf [utf8.UTFMax]byte
	n := utf8.EncodeRune(buf[:], r)
	for _, b := range buf[:n] {
		h = fnvByte(h, b)
	}
	return h
}

// fmix64 is the murmur3 64-bit finaliser: a bijection that makes every
// output bit depend on every input bit.
func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}
