package semantic

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// appendCanonical appends the canonical JSON of v to dst: the bytes
// json.Marshal gives for v with every number rewritten in its one spelling
// (see canonicalJSON), written in one pass over v without copying it or
// going through reflection. v is a tree of what encoding/json decodes into
// an any with UseNumber (map[string]any, []any, string, json.Number, bool,
// nil); any other value is handed to json.Marshal. Object keys are sorted
// bytewise and strings escaped as encoding/json escapes them (HTML
// characters, U+2028 and U+2029 included), so the hashes of existing
// entries do not change (TestAppendCanonicalMatchesMarshal checks this
// against the json.Marshal form).
func appendCanonical(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case string:
		return appendJSONString(dst, x), nil
	case json.Number:
		return appendCanonicalNumber(dst, string(x))
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendCanonical(dst, x[k]); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendCanonical(dst, e); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return appendCanonical(dst, m)
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	default:
		b, err := json.Marshal(v)
		return append(dst, b...), err
	}
}

// appendCanonicalNumber appends a JSON number in its one spelling:
// integers as written (-0 as 0), other numbers in Go's shortest 'g' form,
// integral values below 1e15 as integers.
func appendCanonicalNumber(dst []byte, s string) ([]byte, error) {
	if !strings.ContainsAny(s, ".eE") {
		if s == "-0" {
			s = "0"
		}
		if s == "" {
			s = "0" // as json.Marshal writes an empty json.Number
		}
		return append(dst, s...), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return dst, &json.UnsupportedValueError{Str: "number " + strconv.Quote(s) + ": " + err.Error()}
	}
	if f == float64(int64(f)) && f < 1e15 && f > -1e15 {
		return strconv.AppendInt(dst, int64(f), 10), nil
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string escaped as json.Marshal
// escapes it (HTMLEscape on): ", \ and control characters, <, > and &,
// U+2028 and U+2029, and invalid UTF-8 as \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
