package api_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/embedding"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// wireLog records every byte the proxy writes to its clients, as it
// writes them (before the network), so a test can ask what a client could
// have read at a given moment.
type wireLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *wireLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// loggingWriter is an http.ResponseWriter (and Flusher) that copies what
// it writes into a wireLog.
type loggingWriter struct {
	http.ResponseWriter
	log *wireLog
}

func (w loggingWriter) Write(b []byte) (int, error) {
	w.log.mu.Lock()
	w.log.buf.Write(b)
	w.log.mu.Unlock()
	return w.ResponseWriter.Write(b)
}

func (w loggingWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// seeingStore is a Store that, on every Set, records what the client had
// been sent by then.
type seeingStore struct {
	semantic.Store
	wire *wireLog
	mu   sync.Mutex
	sent []string // wire contents at each Set
}

func (s *seeingStore) Set(ctx context.Context, key, scope string, value []byte, vec []float32, ttl time.Duration) error {
	s.mu.Lock()
	s.sent = append(s.sent, s.wire.String())
	s.mu.Unlock()
	return s.Store.Set(ctx, key, scope, value, vec, ttl)
}

// TestStreamEndWaitsForTheStore checks the rule of a streamed miss that is
// stored: its last event (data: [DONE] for chat and completions,
// response.completed for the Responses API) reaches the client only after
// the answer is in the store, so a client that repeats the request as soon
// as its stream ended gets a hit. The store records what had been written
// to the client when Set was called: everything but the last event, which
// is written afterwards, and nothing else. Deterministic: no timing, only order.
func TestStreamEndWaitsForTheStore(t *testing.T) {
	for _, tc := range []struct{ name, path, body, last string }{
		{"chat", "/v1/chat/completions", chat("m", `"stream":true`, "user", "How do I reset my router?"), "data: [DONE]"},
		{"completions", "/v1/completions", `{"model":"m","stream":true,"prompt":"How do I reset my router?"}`, "data: [DONE]"},
		{"responses", "/v1/responses", `{"model":"m","stream":true,"input":"How do I reset my router?"}`, "event: response.completed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emb, err := embedding.NewLocal(embedding.LocalConfig{})
			if err != nil {
				t.Fatal(err)
			}
			mem, err := index.NewMemory(index.MemoryConfig{Dim: emb.Dim(), SweepInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { mem.Close() })
			wire := &wireLog{}
			st := &seeingStore{Store: mem, wire: wire}
			cache, err := semantic.New(semantic.Config{Threshold: testThreshold}, emb, st)
			if err != nil {
				t.Fatal(err)
			}
			up := newUpstream(t, nil)
			srv, err := api.New(api.Config{Upstream: up.srv.URL + "/v1"}, cache)
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				srv.ServeHTTP(loggingWriter{w, wire}, r)
			}))
			t.Cleanup(hs.Close)

			p := &proxy{url: hs.URL, cache: cache, up: up}
			r := p.postHeaders(t, tc.path, tc.body, map[string]string{"Authorization": "Bearer sk-a"})
			if r.status != 200 || r.semStatus() != "MISS" || !strings.Contains(string(r.body), tc.last) {
				t.Fatalf("%d %s, want a 200 MISS stream ending in %q:\n%s", r.status, r.semStatus(), tc.last, r.body)
			}
			st.mu.Lock()
			sent := append([]string(nil), st.sent...)
			st.mu.Unlock()
			if len(sent) != 1 {
				t.Fatalf("%d Set calls, want 1", len(sent))
			}
			if strings.Contains(sent[0], tc.last) {
				t.Errorf("the client had been sent %q before the answer was stored", tc.last)
			}
			if rest, ok := strings.CutPrefix(string(r.body), sent[0]); !ok || sent[0] == "" || !strings.HasPrefix(rest, tc.last) {
				t.Errorf("when the answer was stored the client had been sent\n%q\nwant all of the stream but its last event:\n%q", sent[0], r.body)
			}
			again := p.postHeaders(t, tc.path, tc.body, map[string]string{"Authorization": "Bearer sk-a"})
			if again.semStatus() != "HIT" {
				t.Errorf("repeat right after the stream ended: %s, want HIT", again.semStatus())
			}
		})
	}
}
