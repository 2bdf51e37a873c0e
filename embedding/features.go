package embedding

import (
	"math"

	"golang.org/x/text/unicode/norm"
)

// Feature is one hashed feature of a text for the trained embedder: the
// bucket (row) it selects and its weight in the text's bag.
type Feature struct {
	Bucket uint32
	Weight float32
}

// Features appends the features of text under p to dst and returns the
// extended slice. A text is NFKC-normalised, lowercased and split into words
// exactly as [Local] does; each word occurrence contributes, with weight 1:
//   - its character n-grams of "<word>" for n in [MinN, MaxN], hashed as
//     Local hashes them;
//   - the whole word, hashed as 0x01 "<" word ">" (as Local's word feature);
//   - the bigram with the next word, hashed as 0x02 word1 " " word2.
//
// Every hash is 64-bit FNV-1a over the UTF-8 bytes passed through fmix64;
// the low 32 bits pick a bucket in [0, Buckets) by Lemire's range reduction.
// Features are not merged: a repeated feature appears once per occurrence.
// p must be valid (see [ModelParams.Validate]).
func (p ModelParams) Features(text string, dst []Feature) []Feature {
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	forEachFeature(text, p.MinN, p.MaxN, sc, func(h uint64) {
		dst = append(dst, Feature{Bucket: bucketOf(h, p.Buckets), Weight: 1})
	})
	return dst
}

// bucketOf maps the raw FNV-1a hash h to a bucket in [0, n).
func bucketOf(h uint64, n int) uint32 {
	return uint32((uint64(uint32(fmix64(h))) * uint64(n)) >> 32)
}

// forEachFeature calls fn with the raw FNV-1a hash of every feature of
// text, in text order: per word its n-grams, then the word, then the bigram
// it starts.
func forEachFeature(text string, minN, maxN int, sc *scratch, fn func(h uint64)) {
	if !isASCII(text) && !norm.NFKC.IsNormalString(text) {
		text = norm.NFKC.String(text)
	}
	sc.tokenize(text, isWordRune)
	if len(sc.words) == 0 {
		sc.tokenize(text, isNotSpace)
	}
	for i, w := range sc.words {
		word := sc.runes[w.start:w.end]
		wordNgrams(word, minN, maxN, fn)
		fn(w.hash)
		if i+1 < len(sc.words) {
			next := sc.words[i+1]
			h := fnvByte(fnvOffset64, 0x02)
			for _, r := range word {
				h = fnvRune(h, r)
			}
			h = fnvByte(h, ' ')
			for _, r := range sc.runes[next.start:next.end] {
				h = fnvRune(h, r)
			}
			fn(h)
		}
	}
}

// InitRow fills dst (length Dim) with the initial, untrained value of row
// bucket: independent Gaussians of mean 0 and standard deviation
// 1/sqrt(Dim), drawn with Box-Muller from a SplitMix64 stream seeded by
// (seed, bucket). It depends on nothing but its arguments, so an untrained
// row is regenerated, never stored, and is the same on every platform.
func InitRow(seed uint64, bucket uint32, dst []float32) {
	state := seed ^ (uint64(bucket)+1)*0x9e3779b97f4a7c15
	next := func() float64 {
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		return (float64(z>>11) + 0.5) / (1 << 53) // in (0, 1)
	}
	std := 1 / math.Sqrt(float64(len(dst)))
	for i := 0; i < len(dst); i += 2 {
		r := math.Sqrt(-2 * math.Log(next()))
		theta := 2 * math.Pi * next()
		dst[i] = float32(std * r * math.Cos(theta))
		if i+1 < len(dst) {
			dst[i+1] = float32(std * r * math.Sin(theta))
		}
	}
}
