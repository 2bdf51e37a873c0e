package semantic

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// decodeObjectStd is decodeObject on encoding/json, the behaviour the
// faster decoder must keep: the same tree for every body it accepts and an
// error for every body it refuses.
func decodeObjectStd(body []byte) (map[string]any, error) {
	var fields map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		return nil, err
	}
	if len(bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, errors.New("trailing data")
	}
	if fields == nil {
		return nil, errors.New("not an object")
	}
	return fields, nil
}

var decodeCases = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	` {"a":1} `, "{\"a\":1}\n", `{"a":1}{"b":2}`, `{"a":1} x`, `{"a":1},`, `null`, `[]`, `"s"`, `1`, ``, ` `,
	`{"a":1,}`, `{'a':1}`, `{"a":NaN}`, `{"a":Infinity}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":+1}`,
	`{"a":1e}`, `{"a":0x10}`, "{\"a\":\"tab\there\"}", `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\ud83d\ude00"}`,
	`{"a":1,"a":2}`, `{"a":{"b":1},"a":[3]}`, `{"a":123456789012345678901234567890}`, `{"a":1e400}`, `{"a":-0.0}`,
	`{"a":true,"b":false,"c":null}`, `{"a":tru}`, `{"a":nul}`, `{"a" 1}`, `{"a":1 "b":2}`, `{a:1}`,
	"\ufeff{\"a\":1}", `{"a":1}/*c*/`, `{"a":[1,2,]}`, `{"a":[,1]}`, `{"":""}`, `{"a":"\/\b\f\n\r\t\"\\"}`,
	`{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`,
	`{"a":"` + strings.Repeat("x", 5000) + `"}`,
}

func TestDecodeObjectMatchesEncodingJSON(t *testing.T) {
	for _, c := range decodeCases {
		got, gerr := decodeObject([]byte(c))
		want, werr := decodeObjectStd([]byte(c))
		if (gerr == nil) != (werr == nil) {
			t.Errorf("%.60q: decodeObject error %v, encoding/json error %v", c, gerr, werr)
			continue
		}
		if gerr != nil && !errors.Is(gerr, ErrBadRequest) {
			t.Errorf("%.60q: error %v does not wrap ErrBadRequest", c, gerr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%.60q: decodeObject = %#v, want %#v", c, got, want)
		}
	}
}

func FuzzDecodeObject(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, gerr := decodeObject(body)
		want, werr := decodeObjectStd(body)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("decodeObject error %v, encoding/json error %v", gerr, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeObject = %#v, want %#v", got, want)
		}
	})
}
