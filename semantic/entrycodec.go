package semantic

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// The stored form of an Entry. An exact hit decodes the entry it serves,
// so the form is chosen for that: a binary record whose answer is its
// last field, served as a sub-slice of the stored bytes with no copy and no
// JSON decoding (issue 17: "store what is served in the form it is
// served"). Layout, version 1:
//
//	magic   4 bytes  0x00 'S' 'E' 0x01
//	key, scope, prompt, model, content type:
//	        each a uvarint length and that many bytes
//	created_at_ms   zigzag varint
//	prompt_tokens, completion_tokens   uvarint each
//	stream  uvarint count, then per chunk a uvarint length and its bytes
//	response  the rest of the record, byte for byte
//
// Entries written before this format are JSON objects (first byte '{'),
// which decodeEntry still reads, so a data directory or Redis database of
// an earlier version keeps serving. A record that starts with neither is
// refused (ErrEntryFormat), and the lookup counts as a miss.
var entryMagic = [4]byte{0, 'S', 'E', 1}

// ErrEntryFormat is returned by decodeEntry for bytes that are no entry
// this build can read (a later format version, or damage).
var ErrEntryFormat = errors.New("semantic: stored entry in an unknown format")

// encodeEntry returns e in the stored form.
func encodeEntry(e *Entry) []byte {
	n := len(entryMagic) + 6*binary.MaxVarintLen64 + len(e.Key) + len(e.Scope) + len(e.Prompt) +
		len(e.Model) + len(e.ContentType) + len(e.Response) + 3*binary.MaxVarintLen64
	for _, s := range e.Stream {
		n += binary.MaxVarintLen64 + len(s)
	}
	b := make([]byte, 0, n)
	b = append(b, entryMagic[:]...)
	for _, s := range [...]string{e.Key, e.Scope, e.Prompt, e.Model, e.ContentType} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, e.CreatedAt)
	b = binary.AppendUvarint(b, uint64(max(e.PromptTokens, 0)))
	b = binary.AppendUvarint(b, uint64(max(e.CompletionTokens, 0)))
	b = binary.AppendUvarint(b, uint64(len(e.Stream)))
	for _, s := range e.Stream {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return append(b, e.Response...)
}

// storedEntry is a decoded entry. Response aliases the stored bytes: it
// must not be modified (the stores hand out immutable values).
type storedEntry struct {
	Entry
	response []byte
}

// decodeEntry decodes raw, written by encodeEntry or, before it, as JSON.
// The error names the field that could not be read.
func decodeEntry(raw []byte) (storedEntry, error) {
	var se storedEntry
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &se.Entry); err != nil {
			return se, err
		}
		se.response = []byte(se.Response)
		return se, nil
	}
	if len(raw) < len(entryMagic) || [4]byte(raw[:4]) != entryMagic {
		return se, ErrEntryFormat
	}
	r := entryReader{b: raw[len(entryMagic):]}
	e := &se.Entry
	e.Key = r.str("key")
	e.Scope = r.str("scope")
	e.Prompt = r.str("prompt")
	e.Model = r.str("model")
	e.ContentType = r.str("content_type")
	e.CreatedAt = r.varint("created_at_ms")
	e.PromptTokens = int(r.uvarint("prompt_tokens"))
	e.CompletionTokens = int(r.uvarint("completion_tokens"))
	if n := r.uvarint("stream"); n > 0 && r.err == nil {
		if n > uint64(len(r.b)) { // every chunk takes at least its length byte
			r.fail("stream")
		} else {
			e.Stream = make([]string, n)
			for i := range e.Stream {
				e.Stream[i] = r.str("stream")
			}
		}
	}
	if r.err != nil {
		return storedEntry{}, r.err
	}
	se.response = r.b[:len(r.b):len(r.b)]
	return se, nil
}

// entryReader reads the length-prefixed fields of a stored entry; the first
// failure sticks in err.
type entryReader struct {
	b   []byte
	err error
}

func (r *entryReader) fail(field string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: field %s truncated or damaged", ErrEntryFormat, field)
	}
	r.b = nil
}

func (r *entryReader) uvarint(field string) uint64 { return readNumber(r, field, binary.Uvarint) }

func (r *entryReader) varint(field string) int64 { return readNumber(r, field, binary.Varint) }

// readNumber reads one varint of field with decode (binary.Uvarint or
// binary.Varint).
func readNumber[T uint64 | int64](r *entryReader, field string, decode func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := decode(r.b)
	if n <= 0 {
		r.fail(field)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *entryReader) str(field string) string {
	n := r.uvarint(field)
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail(field)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
