package embedding

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
)

// Defaults for [ModelParams]; a zero field means the default.
const (
	// DefaultTrainedBuckets is the number of hashed feature rows, 2^17.
	DefaultTrainedBuckets = 1 << 17
	// DefaultTrainedDim is the length of each learned row, 128.
	DefaultTrainedDim = 128
)

// ErrModelFile is returned (wrapped) when a model file cannot be used: wrong
// magic, unsupported version, truncated, trailing bytes, bad parameters or a
// checksum mismatch. The message says which.
var ErrModelFile = errors.New("invalid embedder model file")

// ModelParams are the feature, hashing and mixing parameters of a trained
// model. They are stored in the model file.
type ModelParams struct {
	// Buckets is the number of hashed feature rows. Zero means
	// DefaultTrainedBuckets (2^17).
	Buckets int
	// Dim is the length of each learned row. Zero means DefaultTrainedDim.
	Dim int
	// MinN and MaxN bound the character n-gram lengths in runes, counting
	// the boundary markers. Zero means DefaultMinN (3) and DefaultMaxN (5).
	MinN, MaxN int
	// Seed seeds the Gaussian initial rows (see [InitRow]). Zero is a valid
	// seed.
	Seed uint64
	// Alpha in [0, 1) is the weight of the lexical similarity mixed into the
	// vector: [√α·lexical ; √(1−α)·learned]. Zero means no lexical part.
	Alpha float32
	// LexDim is the dimension of the lexical part ([Local]) when Alpha > 0.
	// Zero means DefaultLocalDim (384); ignored when Alpha is 0.
	LexDim int
}

// WithDefaults returns p with zero fields replaced by their defaults.
func (p ModelParams) WithDefaults() ModelParams {
	if p.Buckets == 0 {
		p.Buckets = DefaultTrainedBuckets
	}
	if p.Dim == 0 {
		p.Dim = DefaultTrainedDim
	}
	if p.MinN == 0 {
		p.MinN = DefaultMinN
	}
	if p.MaxN == 0 {
		p.MaxN = DefaultMaxN
	}
	if p.Alpha > 0 && p.LexDim == 0 {
		p.LexDim = DefaultLocalDim
	}
	if p.Alpha == 0 {
		p.LexDim = 0
	}
	return p
}

// Validate reports whether p, after defaults, is usable.
func (p ModelParams) Validate() error {
	switch {
	case p.Buckets < 1 || p.Buckets > 1<<24:
		return fmt.Errorf("buckets %d: want 1..2^24", p.Buckets)
	case p.Dim < 1 || p.Dim > 4096:
		return fmt.Errorf("dim %d: want 1..4096", p.Dim)
	case p.MinN < 1 || p.MaxN < p.MinN || p.MaxN > 16:
		return fmt.Errorf("n-gram range [%d, %d]: want 1 <= min <= max <= 16", p.MinN, p.MaxN)
	case !(p.Alpha >= 0 && p.Alpha < 1):
		return fmt.Errorf("alpha %v: want [0, 1)", p.Alpha)
	case p.Alpha > 0 && (p.LexDim < 1 || p.LexDim > 4096):
		return fmt.Errorf("lexical dim %d: want 1..4096", p.LexDim)
	}
	return nil
}

// Model is a trained embedding bag: its parameters and the rows that differ
// from their seeded initial value. A Model is plain data; the caller owns
// concurrency.
type Model struct {
	Params ModelParams
	// Rows maps a bucket to its trained row of length Params.Dim. Buckets
	// not in Rows have their initial value, [InitRow](Params.Seed, bucket).
	Rows map[uint32][]float32
	// Threshold is the cosine similarity at which training measured
	// precision 0.95 on held-out data (see train.Result), the default
	// threshold of a cache serving with this model; 0 when none was
	// measured.
	Threshold float32

	// sum is the SHA-256 checksum of the file the model was read from or
	// last written to; zero until then.
	sum [sha256.Size]byte
}

// RowEncoding selects how a model file stores rows.
type RowEncoding uint8

const (
	// Int8Rows stores each row as a float32 scale and Dim int8 values,
	// value = scale·q; the error per value is at most scale/2.
	Int8Rows RowEncoding = 1
	// Float32Rows stores each row as Dim little-endian float32, bit-exact.
	Float32Rows RowEncoding = 2
)

// Model file layout, all little-endian:
//
//	magic    [8]byte "SEMCEMB\x00"
//	version  uint32  (modelVersion)
//	buckets, dim, minN, maxN, lexDim uint32
//	seed     uint64
//	alpha    float32
//	threshold float32 (version 2 and later; Model.Threshold)
//	encoding uint8   (RowEncoding)
//	count    uint32  number of stored rows
//	count ×  { bucket uint32; row }  row: Dim float32, or float32 scale + Dim int8
//	sha256   [32]byte of everything above
//
// Version 1 has no threshold; this build reads versions 1 and 2 and writes
// 2, and refuses a later version, which it cannot know how to read.
const (
	modelMagic   = "SEMCEMB\x00"
	modelVersion = 2
	headerSizeV1 = 8 + 4 + 5*4 + 8 + 4 + 1 + 4
)

// headerSize is the header length of a file of version v.
func headerSize(v uint32) int {
	if v >= 2 {
		return headerSizeV1 + 4
	}
	return headerSizeV1
}

// WriteModel writes m to w with rows in enc, in increasing bucket order, so
// the same model always gives the same bytes.
func WriteModel(w io.Writer, m *Model, enc RowEncoding) error {
	p := m.Params
	if err := p.Validate(); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	if enc != Int8Rows && enc != Float32Rows {
		return fmt.Errorf("write model: unknown row encoding %d", enc)
	}
	var buf bytes.Buffer
	buf.WriteString(modelMagic)
	le := binary.LittleEndian
	put32 := func(v uint32) { buf.Write(le.AppendUint32(nil, v)) }
	put32(modelVersion)
	for _, v := range []int{p.Buckets, p.Dim, p.MinN, p.MaxN, p.LexDim} {
		put32(uint32(v))
	}
	buf.Write(le.AppendUint64(nil, p.Seed))
	put32(math.Float32bits(p.Alpha))
	if th := m.Threshold; th != 0 && !(th > 0 && th <= 1) {
		return fmt.Errorf("write model: threshold %v: want a cosine similarity in (0, 1], or 0 for none", th)
	}
	put32(math.Float32bits(m.Threshold))
	buf.WriteByte(byte(enc))
	keys := make([]uint32, 0, len(m.Rows))
	for k := range m.Rows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	put32(uint32(len(keys)))
	for _, k := range keys {
		row := m.Rows[k]
		if int(k) >= p.Buckets || len(row) != p.Dim {
			return fmt.Errorf("write model: row %d has length %d, want bucket < %d and length %d", k, len(row), p.Buckets, p.Dim)
		}
		put32(k)
		switch enc {
		case Float32Rows:
			for _, x := range row {
				put32(math.Float32bits(x))
			}
		case Int8Rows:
			var maxAbs float32
			for _, x := range row {
				maxAbs = max(maxAbs, float32(math.Abs(float64(x))))
			}
			scale := maxAbs / 127
			put32(math.Float32bits(scale))
			for _, x := range row {
				var q float64
				if scale > 0 {
					q = math.Round(float64(x / scale))
				}
				buf.WriteByte(byte(int8(max(-127, min(127, q)))))
			}
		}
	}
	m.sum = sha256.Sum256(buf.Bytes())
	buf.Write(m.sum[:])
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	return nil
}

// SaveModel writes m to the file path with [WriteModel].
func SaveModel(path string, m *Model, enc RowEncoding) error {
	var buf bytes.Buffer
	if err := WriteModel(&buf, m, enc); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// maxModelBytes bounds what ReadModel accepts: 2^24 rows of 4096 float32 is
// far beyond any sensible model, so a larger input is rejected early.
const maxModelBytes = 1 << 32

// ReadModel reads a model written by [WriteModel]. It returns an error
// wrapping [ErrModelFile] for a wrong magic or version, a truncated or
// over-long file, invalid parameters, bad rows or a checksum mismatch.
func ReadModel(r io.Reader) (*Model, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxModelBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	return parseModel(data)
}

// LoadModel reads the model file at path with [ReadModel].
func LoadModel(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	defer f.Close()
	m, err := ReadModel(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func parseModel(data []byte) (*Model, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrModelFile, fmt.Sprintf(format, a...))
	}
	if len(data) < len(modelMagic) || string(data[:len(modelMagic)]) != modelMagic {
		return nil, bad("not a semcache embedder model (bad magic)")
	}
	if len(data) < headerSizeV1+sha256.Size {
		return nil, bad("truncated: %d bytes, header alone needs %d", len(data), headerSizeV1+sha256.Size)
	}
	le := binary.LittleEndian
	off := len(modelMagic)
	get32 := func() uint32 { v := le.Uint32(data[off:]); off += 4; return v }
	version := get32()
	if version < 1 || version > modelVersion {
		return nil, bad("version %d, this semcache reads versions 1 to %d (a newer semcache wrote it?)", version, modelVersion)
	}
	headerSize := headerSize(version)
	if len(data) < headerSize+sha256.Size {
		return nil, bad("truncated: %d bytes, header alone needs %d", len(data), headerSize+sha256.Size)
	}
	var p ModelParams
	for _, f := range []*int{&p.Buckets, &p.Dim, &p.MinN, &p.MaxN, &p.LexDim} {
		*f = int(get32())
	}
	p.Seed = le.Uint64(data[off:])
	off += 8
	p.Alpha = math.Float32frombits(get32())
	var threshold float32
	if version >= 2 {
		threshold = math.Float32frombits(get32())
		if threshold != 0 && !(threshold > 0 && threshold <= 1) {
			return nil, bad("threshold %v: want a cosine similarity in (0, 1], or 0 for none", threshold)
		}
	}
	enc := RowEncoding(data[off])
	off++
	count := int(get32())
	if err := p.Validate(); err != nil {
		return nil, bad("%v", err)
	}
	if p.Alpha == 0 && p.LexDim != 0 {
		return nil, bad("lexical dim %d with alpha 0", p.LexDim)
	}
	var rowSize int
	switch enc {
	case Float32Rows:
		rowSize = 4 + 4*p.Dim
	case Int8Rows:
		rowSize = 4 + 4 + p.Dim
	default:
		return nil, bad("unknown row encoding %d", enc)
	}
	if count > p.Buckets {
		return nil, bad("%d rows for %d buckets", count, p.Buckets)
	}
	want := headerSize + count*rowSize + sha256.Size
	switch {
	case len(data) < want:
		return nil, bad("truncated: %d bytes, want %d", len(data), want)
	case len(data) > want:
		return nil, bad("%d trailing bytes", len(data)-want)
	}
	sum := sha256.Sum256(data[:want-sha256.Size])
	if !bytes.Equal(sum[:], data[want-sha256.Size:]) {
		return nil, bad("checksum mismatch (file corrupt)")
	}
	m := &Model{Params: p, Rows: make(map[uint32][]float32, count), Threshold: threshold, sum: sum}
	for range count {
		k := get32()
		if int(k) >= p.Buckets {
			return nil, bad("row bucket %d out of range", k)
		}
		if _, dup := m.Rows[k]; dup {
			return nil, bad("row bucket %d stored twice", k)
		}
		row := make([]float32, p.Dim)
		switch enc {
		case Float32Rows:
			for i := range row {
				row[i] = math.Float32frombits(get32())
			}
		case Int8Rows:
			scale := math.Float32frombits(get32())
			for i := range row {
				row[i] = scale * float32(int8(data[off+i]))
			}
			off += p.Dim
		}
		for _, x := range row {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, bad("row bucket %d holds a non-finite value", k)
			}
		}
		m.Rows[k] = row
	}
	return m, nil
}
