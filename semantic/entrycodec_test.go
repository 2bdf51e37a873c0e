package semantic

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func codecEntries() []Entry {
	return []Entry{
		{},
		{Key: "k", Scope: "s", Prompt: "how do I reset my password?", Model: "gpt-4o-mini",
			Response:    `{"id":"x","choices":[{"message":{"role":"assistant","content":"Open Settings."}}]}`,
			ContentType: "application/json", CreatedAt: 1_765_000_000_123, PromptTokens: 12, CompletionTokens: 40},
		{Key: "ключ", Prompt: "naïve café ☕ \x00 nul", Response: "", CreatedAt: -5,
			Stream: []string{`{"choices":[{"delta":{"content":"a"}}]}`, "", `{"choices":[]}`}},
	}
}

func TestEntryCodecRoundTrip(t *testing.T) {
	for i, e := range codecEntries() {
		raw := encodeEntry(&e)
		got, err := decodeEntry(raw)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if string(got.response) != e.Response {
			t.Errorf("entry %d: response %q, want %q", i, got.response, e.Response)
		}
		want := e
		want.Response = "" // served from response, not copied into the struct
		if len(want.Stream) == 0 {
			want.Stream = nil
		}
		if !reflect.DeepEqual(got.Entry, want) {
			t.Errorf("entry %d: decoded %+v, want %+v", i, got.Entry, want)
		}
		// The answer aliases the stored bytes with its capacity cut, so an
		// append by a reader cannot write into the store's value.
		if cap(got.response) != len(got.response) {
			t.Errorf("entry %d: response capacity %d > length %d", i, cap(got.response), len(got.response))
		}
	}
}

// Entries stored as JSON by earlier versions (data directories, Redis)
// still decode.
func TestEntryCodecReadsJSON(t *testing.T) {
	for i, e := range codecEntries() {
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeEntry(raw)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if string(got.response) != e.Response || got.Key != e.Key || got.Prompt != e.Prompt ||
			got.CreatedAt != e.CreatedAt || !reflect.DeepEqual(got.Stream, e.Stream) {
			t.Errorf("entry %d: decoded %+v (response %q), want %+v", i, got.Entry, got.response, e)
		}
	}
	if _, err := decodeEntry([]byte(`{"key":`)); err == nil {
		t.Error("truncated JSON entry decoded")
	}
}

// Every truncation of a record, and bytes of an unknown format, give an
// error, never a panic or a wrong entry.
func TestEntryCodecRefusesDamage(t *testing.T) {
	e := codecEntries()[2]
	raw := encodeEntry(&e)
	// The response is the tail and may be cut anywhere; every cut before
	// it must fail.
	head := len(raw) - len(e.Response)
	for n := range head {
		if _, err := decodeEntry(raw[:n]); !errors.Is(err, ErrEntryFormat) {
			t.Errorf("record cut to %d of %d bytes: err %v, want ErrEntryFormat", n, len(raw), err)
		}
	}
	for _, b := range [][]byte{nil, []byte("SE\x01"), {0, 'S', 'E', 2, 0}, []byte("plain text")} {
		if _, err := decodeEntry(b); !errors.Is(err, ErrEntryFormat) {
			t.Errorf("decodeEntry(%q): err %v, want ErrEntryFormat", b, err)
		}
	}
	// A stream count larger than the record cannot allocate its way out.
	bad := append([]byte(nil), entryMagic[:]...)
	bad = append(bad, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f)
	if _, err := decodeEntry(bad); !errors.Is(err, ErrEntryFormat) {
		t.Errorf("huge stream count: err %v, want ErrEntryFormat", err)
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, e := range codecEntries() {
		f.Add(encodeEntry(&e))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		se, err := decodeEntry(raw)
		if err != nil || len(raw) == 0 || raw[0] == '{' {
			return
		}
		// What decodes survives a round trip unchanged.
		se.Response = string(se.response)
		again, err := decodeEntry(encodeEntry(&se.Entry))
		if err != nil {
			t.Fatalf("re-encoded %q: %v", raw, err)
		}
		again.Response = string(again.response)
		if !reflect.DeepEqual(again.Entry, se.Entry) {
			t.Errorf("round trip of %q: %+v, want %+v", raw, again.Entry, se.Entry)
		}
	})
}
