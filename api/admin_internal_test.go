package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

func TestParseTags(t *testing.T) {
	cases := []struct {
		name    string
		values  []string
		want    []string
		invalid bool
	}{
		{"none", nil, nil, false},
		{"blank header", []string{"  "}, nil, false},
		{"one", []string{"doc:123"}, []string{"doc:123"}, false},
		{"trimmed and deduplicated", []string{" doc:1 ,doc:2", "doc:1"}, []string{"doc:1", "doc:2"}, false},
		{"spaces inside", []string{"source doc 1"}, []string{"source doc 1"}, false},
		{"unicode", []string{"doc:é"}, []string{"doc:é"}, false},
		{"16 tags", []string{"a,b,c,d,e,f,g,h", "i,j,k,l,m,n,o,p"}, strings.Split("abcdefghijklmnop", ""), false},
		{"16 tags after deduplication", []string{"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,a"}, strings.Split("abcdefghijklmnop", ""), false},
		{"max length", []string{strings.Repeat("x", 128)}, []string{strings.Repeat("x", 128)}, false},
		{"empty element", []string{"a,,b"}, nil, true},
		{"trailing comma", []string{"a,"}, nil, true},
		{"too long", []string{strings.Repeat("x", 129)}, nil, true},
		{"control character", []string{"a\x01b"}, nil, true},
		{"invalid UTF-8", []string{"a\xffb"}, nil, true},
		{"17 tags", []string{"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q"}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.values {
				h.Add(HeaderTags, v)
			}
			got, err := parseTags(h)
			if tc.invalid {
				var ae *Error
				if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, HeaderTags) {
					t.Fatalf("err = %v, want a 400 naming %s", err, HeaderTags)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("parseTags = %q %v, want %q", got, err, tc.want)
			}
		})
	}
}

// failingTagStore is a Memory store whose Tag fails.
type failingTagStore struct{ *index.Memory }

func (failingTagStore) Tag(context.Context, string, []string, time.Duration) error {
	return errors.New("tag store down")
}

func newTagTestServer(t *testing.T, wrap func(*index.Memory) semantic.Store) *Server {
	t.Helper()
	emb, err := embedding.NewLocal(embedding.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := index.NewMemory(index.MemoryConfig{Dim: emb.Dim(), SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	var store semantic.Store = mem
	if wrap != nil {
		store = wrap(mem)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cache, err := semantic.New(semantic.Config{Threshold: 0.85, Logger: log}, emb, store)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Upstream: "http://127.0.0.1:1/v1", Logger: log}, cache)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeAnswer stores one answer through the cache, as a miss of the chat
// handler does, and returns the result.
func storeAnswer(t *testing.T, s *Server, tenant, namespace, prompt string) semantic.Result {
	t.Helper()
	id, _, err := semantic.Identify([]byte(`{"model":"m","messages":[{"role":"user","content":"`+prompt+`"}]}`), tenant, namespace, s.cache.Normalization())
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.cache.Do(t.Context(), id, func(context.Context) (semantic.Upstream, error) {
		return semantic.Upstream{Status: 200, ContentType: "application/json",
			Body: []byte(`{"choices":[{"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{}}`)}, nil
	})
	if err != nil || !res.Stored {
		t.Fatalf("Do: stored %v, err %v", res.Stored, err)
	}
	return res
}

// TestTagStored: a stored miss gets the request's tags and its namespace
// tag; a result that stored nothing is left alone.
func TestTagStored(t *testing.T) {
	ctx := t.Context()
	s := newTagTestServer(t, nil)
	tenant := semantic.TenantFromToken("sk-a")
	res := storeAnswer(t, s, tenant, "support", "first question")
	s.tagStored(ctx, tenant, "support", []string{"doc:1"}, res)
	other := storeAnswer(t, s, tenant, "support", "second question")
	other.Stored = false // e.g. Cache-Control: no-store
	s.tagStored(ctx, tenant, "support", []string{"doc:1"}, other)

	if n, err := s.cache.DeleteTag(ctx, "doc:1"); err != nil || n != 1 {
		t.Errorf("DeleteTag(doc:1) = %d %v, want 1", n, err)
	}
	res = storeAnswer(t, s, tenant, "support", "first question")
	s.tagStored(ctx, tenant, "support", nil, res)
	if n, err := s.cache.DeleteNamespace(ctx, tenant, "support"); err != nil || n != 1 {
		t.Errorf("DeleteNamespace = %d %v, want 1 (the tagged entry)", n, err)
	}
}

// TestTagStoredFailureDeletesTheEntry: an entry that could not be tagged
// would survive its invalidation, so it is deleted.
func TestTagStoredFailureDeletesTheEntry(t *testing.T) {
	s := newTagTestServer(t, func(m *index.Memory) semantic.Store { return failingTagStore{m} })
	res := storeAnswer(t, s, "t", "", "a question")
	s.tagStored(t.Context(), "t", "", []string{"doc:1"}, res)
	if n, _ := s.cache.Len(t.Context()); n != 0 {
		t.Errorf("entries = %d, want 0: the untagged entry was kept", n)
	}
}
