package embedding

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// countingEmbedder is a fake Embedder that records every batch it is asked
// to embed and answers with a Local embedder's vectors. With gated set,
// each call announces itself on entered and then waits until the test
// releases that call (or its context ends), so tests can force
// interleavings.
type countingEmbedder struct {
	ref     *Local
	err     error // returned instead of vectors when set
	wrong   int   // when > 0, vectors of this length are returned
	gated   bool
	entered chan gatedCall

	mu      sync.Mutex
	batches [][]string // guarded by mu
}

func newCounting(t *testing.T) *countingEmbedder {
	t.Helper()
	return &countingEmbedder{
		ref:     newLocal(t, LocalConfig{Dim: 32}),
		entered: make(chan gatedCall),
	}
}

func (c *countingEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	c.mu.Lock()
	c.batches = append(c.batches, slices.Clone(texts))
	c.mu.Unlock()
	if c.gated {
		release := make(chan struct{})
		c.entered <- gatedCall{slices.Clone(texts), release}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c.err != nil {
		return nil, c.err
	}
	if c.wrong > 0 {
		return [][]float32{make([]float32, c.wrong)}, nil
	}
	return c.ref.Embed(ctx, texts)
}

// gatedCall is one call to a gated countingEmbedder: its texts, and the
// channel to close to let it finish.
type gatedCall struct {
	texts   []string
	release chan struct{}
}

// nextCall waits for the next gated call and checks its texts.
func (c *countingEmbedder) nextCall(t *testing.T, want ...string) gatedCall {
	t.Helper()
	g := <-c.entered
	if !slices.Equal(g.texts, want) {
		t.Fatalf("wrapped embedder called with %q, want %q", g.texts, want)
	}
	return g
}

func (c *countingEmbedder) Dim() int            { return c.ref.Dim() }
func (c *countingEmbedder) Fingerprint() string { return "fake:" + c.ref.Fingerprint() }

func (c *countingEmbedder) recorded() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.batches)
}

func newCachedT(t *testing.T, e Embedder, size int) *Cached {
	t.Helper()
	c, err := NewCached(e, size)
	if err != nil {
		t.Fatalf("NewCached: %v", err)
	}
	return c
}

func assertBatches(t *testing.T, got, want [][]string) {
	t.Helper()
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("wrapped embedder got batches %q, want %q", got, want)
	}
}

func assertStats(t *testing.T, c *Cached, want Stats) {
	t.Helper()
	if got := c.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestNewCached(t *testing.T) {
	inner := newCounting(t)
	tests := []struct {
		name    string
		e       Embedder
		size    int
		wantErr bool
	}{
		{name: "default size", e: inner, size: 0},
		{name: "explicit size", e: inner, size: 5},
		{name: "negative size", e: inner, size: -1, wantErr: true},
		{name: "nil embedder", e: nil, size: 5, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCached(tt.e, tt.size)
			if tt.wantErr {
				if err == nil {
					t.Fatal("NewCached succeeded, want error")
				}
				return
			}
			if err != nil {
				t.Fatalf("NewCached: %v", err)
			}
			if c.Dim() != inner.Dim() || c.Fingerprint() != inner.Fingerprint() {
				t.Errorf("Dim/Fingerprint = %d/%q, want the wrapped %d/%q", c.Dim(), c.Fingerprint(), inner.Dim(), inner.Fingerprint())
			}
		})
	}
}

func TestCachedEmbed(t *testing.T) {
	tests := []struct {
		name        string
		size        int
		calls       [][]string
		wantBatches [][]string
		wantStats   Stats
	}{
		{
			name:        "second call for the same text is a hit",
			calls:       [][]string{{"a"}, {"a"}},
			wantBatches: [][]string{{"a"}},
			wantStats:   Stats{Hits: 1, Misses: 1},
		},
		{
			name:        "duplicates in a batch are embedded once",
			calls:       [][]string{{"a", "b", "a", "a"}},
			wantBatches: [][]string{{"a", "b"}},
			wantStats:   Stats{Hits: 2, Misses: 2},
		},
		{
			name:        "only misses are sent",
			calls:       [][]string{{"a"}, {"b", "a", "c"}},
			wantBatches: [][]string{{"a"}, {"b", "c"}},
			wantStats:   Stats{Hits: 1, Misses: 3},
		},
		{
			name:        "keys are exact texts",
			calls:       [][]string{{"Hi"}, {"hi"}},
			wantBatches: [][]string{{"Hi"}, {"hi"}},
			wantStats:   Stats{Misses: 2},
		},
		{
			name:        "least recently used is evicted",
			size:        2,
			calls:       [][]string{{"a", "b"}, {"a"}, {"c"}, {"a", "b"}},
			wantBatches: [][]string{{"a", "b"}, {"c"}, {"b"}},
			wantStats:   Stats{Hits: 2, Misses: 4},
		},
		{
			name:      "empty input",
			calls:     [][]string{{}},
			wantStats: Stats{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := newCounting(t)
			c := newCachedT(t, inner, tt.size)
			for _, texts := range tt.calls {
				got := embedAll(t, c, texts...)
				want := embedAll(t, inner.ref, texts...)
				for i := range texts {
					assertClose(t, got[i], want[i], 0)
				}
			}
			assertBatches(t, inner.recorded(), tt.wantBatches)
			assertStats(t, c, tt.wantStats)
		})
	}
}

func TestCachedErrors(t *testing.T) {
	errUpstream := errors.New("upstream down")
	tests := []struct {
		name   string
		inner  func(*countingEmbedder)
		target error
	}{
		{name: "wrapped error is returned", inner: func(e *countingEmbedder) { e.err = errUpstream }, target: errUpstream},
		{name: "wrong length", inner: func(e *countingEmbedder) { e.wrong = 7 }, target: ErrDimension},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := newCounting(t)
			tt.inner(inner)
			c := newCachedT(t, inner, 0)
			if _, err := c.Embed(context.Background(), []string{"a"}); !errors.Is(err, tt.target) {
				t.Fatalf("err = %v, want errors.Is(err, %v)", err, tt.target)
			}
			// Failures are not cached: the next call tries again.
			inner.err, inner.wrong = nil, 0
			embedAll(t, c, "a")
			assertBatches(t, inner.recorded(), [][]string{{"a"}, {"a"}})
		})
	}
}

// TestCachedSingleFlight forces two callers to overlap: the second one
// needs a text the first is embedding and must wait for it rather than
// send it again.
func TestCachedSingleFlight(t *testing.T) {
	inner := newCounting(t)
	inner.gated = true
	c := newCachedT(t, inner, 0)

	results := make(chan error, 2)
	embed := func(texts ...string) {
		got, err := c.Embed(context.Background(), texts)
		if err == nil && len(got) != len(texts) {
			err = fmt.Errorf("%d vectors for %d texts", len(got), len(texts))
		}
		results <- err
	}

	go embed("x")
	first := inner.nextCall(t, "x")
	go embed("y", "x") // claims y, joins the flight for x
	second := inner.nextCall(t, "y")
	close(second.release)
	close(first.release)
	for range 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	assertBatches(t, inner.recorded(), [][]string{{"x"}, {"y"}})
	assertStats(t, c, Stats{Hits: 1, Misses: 2})
}

// TestCachedLeaderCanceled checks that a caller waiting on another's
// flight does not fail when that other caller's context is canceled: it
// embeds the text itself.
func TestCachedLeaderCanceled(t *testing.T) {
	inner := newCounting(t)
	inner.gated = true
	c := newCachedT(t, inner, 0)

	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.Embed(leaderCtx, []string{"x"})
		leaderErr <- err
	}()
	inner.nextCall(t, "x") // the leader is embedding x; never released

	waiterErr := make(chan error, 1)
	go func() {
		_, err := c.Embed(context.Background(), []string{"y", "x"})
		waiterErr <- err
	}()
	// The waiter has joined the flight for x and embeds y itself.
	close(inner.nextCall(t, "y").release)

	cancelLeader()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader err = %v, want context.Canceled", err)
	}
	close(inner.nextCall(t, "x").release) // the waiter retries x itself
	if err := <-waiterErr; err != nil {
		t.Fatalf("waiter err = %v, want success", err)
	}
	assertBatches(t, inner.recorded(), [][]string{{"x"}, {"y"}, {"x"}})
}

func TestCachedConcurrent(t *testing.T) {
	inner := newCounting(t)
	c := newCachedT(t, inner, 8) // small, so eviction races with lookups
	texts := make([]string, 20)
	for i := range texts {
		texts[i] = fmt.Sprintf("prompt %d", i)
	}
	want := embedAll(t, inner.ref, texts...)

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for round := range 50 {
				// Overlapping windows with duplicates.
				var idx []int
				for k := range 6 {
					idx = append(idx, (g+round+k*k)%len(texts))
				}
				batch := make([]string, len(idx))
				for k, i := range idx {
					batch[k] = texts[i]
				}
				got, err := c.Embed(context.Background(), batch)
				if err != nil {
					errs <- err
					return
				}
				for k, i := range idx {
					if !slices.Equal(got[k], want[i]) {
						errs <- fmt.Errorf("goroutine %d: wrong vector for %q", g, texts[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := c.Stats()
	if st.Hits+st.Misses != 16*50*6 {
		t.Errorf("Hits+Misses = %d, want %d (one per text requested)", st.Hits+st.Misses, 16*50*6)
	}
	var sent int
	for _, b := range inner.recorded() {
		sent += len(b)
	}
	if uint64(sent) != st.Misses {
		t.Errorf("wrapped embedder got %d texts, Misses = %d", sent, st.Misses)
	}
}

func ExampleCached() {
	local, err := NewLocal(LocalConfig{})
	if err != nil {
		panic(err)
	}
	c, err := NewCached(local, 1000)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if _, err := c.Embed(ctx, []string{"hello", "hello"}); err != nil { // embeds "hello" once
		panic(err)
	}
	if _, err := c.Embed(ctx, []string{"hello"}); err != nil { // served from the cache
		panic(err)
	}
	fmt.Println(c.Fingerprint())
	fmt.Printf("%+v\n", c.Stats())
	// Output:
	// local:lexical-v1:384
	// {Hits:2 Misses:1}
}
