package index

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestNewFlat(t *testing.T) {
	for _, dim := range []int{0, -3} {
		if _, err := NewFlat(dim); err == nil {
			t.Errorf("NewFlat(%d) error = nil, want one", dim)
		}
	}
	f := newTestFlat(t, 5)
	if f.Dim() != 5 || f.Len() != 0 {
		t.Errorf("Dim, Len = %d, %d, want 5, 0", f.Dim(), f.Len())
	}
}

// TestFlatExact checks Flat against a float64 brute force over every stored
// vector, including after replacements and swap-deletes.
func TestFlatExact(t *testing.T) {
	const dim, n, k = 24, 400, 15
	rng := newRand(11)
	f := newTestFlat(t, dim)
	stored := map[string][]float32{}
	for i, v := range randomVectors(rng, n, dim) {
		mustAdd(t, f, vecID(i), v)
		stored[vecID(i)] = v
	}
	for i := 0; i < n; i += 7 {
		v := randomUnit(rng, dim)
		mustAdd(t, f, vecID(i), v) // replace
		stored[vecID(i)] = v
	}
	for i := 3; i < n; i += 5 {
		if !f.Delete(vecID(i)) {
			t.Fatalf("Delete(%s) = false", vecID(i))
		}
		delete(stored, vecID(i))
	}
	if f.Len() != len(stored) {
		t.Fatalf("Len() = %d, want %d", f.Len(), len(stored))
	}

	type scored struct {
		id  string
		sim float64
	}
	for qi := range 50 {
		q := randomUnit(rng, dim)
		var all []scored
		for id, v := range stored {
			var s float64
			for i := range v {
				s += float64(v[i]) * float64(q[i])
			}
			all = append(all, scored{id, s})
		}
		slices.SortFunc(all, func(a, b scored) int {
			if a.sim > b.sim {
				return -1
			}
			return 1
		})
		got := mustSearch(t, f, q, k)
		if len(got) != k {
			t.Fatalf("query %d: got %d results, want %d", qi, len(got), k)
		}
		for i, nb := range got {
			if nb.ID != all[i].id || math.Abs(float64(nb.Similarity)-all[i].sim) > 1e-5 {
				t.Fatalf("query %d rank %d: got %s (%v), want %s (%v)", qi, i, nb.ID, nb.Similarity, all[i].id, all[i].sim)
			}
		}
	}
}

func TestFlatBasics(t *testing.T) {
	f := newTestFlat(t, 4)
	a, b, c := []float32{1, 0, 0, 0}, []float32{0, 2, 0, 0}, []float32{1, 1, 0, 0}

	if got, err := f.Search(a, 1); got != nil || err != nil {
		t.Fatalf("Search on empty index = %v, %v, want nil, nil", got, err)
	}
	mustAdd(t, f, "a", a)
	mustAdd(t, f, "b", b)
	mustAdd(t, f, "c", c)

	tests := []struct {
		name  string
		query []float32
		k     int
		want  []string
	}{
		{"nearest", a, 1, []string{"a"}},
		{"ordered", a, 3, []string{"a", "c", "b"}},
		{"k beyond Len", b, 10, []string{"b", "c", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustSearch(t, f, tt.query, tt.k)
			var ids []string
			for _, n := range got {
				ids = append(ids, n.ID)
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("Search = %v, want %v", ids, tt.want)
			}
		})
	}
	t.Run("similarities", func(t *testing.T) {
		got := mustSearch(t, f, a, 3)
		want := []float32{1, float32(1 / math.Sqrt2), 0}
		for i := range got {
			if math.Abs(float64(got[i].Similarity-want[i])) > 1e-6 {
				t.Errorf("rank %d similarity %v, want %v", i, got[i].Similarity, want[i])
			}
		}
	})
	t.Run("non-positive k", func(t *testing.T) {
		if _, err := f.Search(a, 0); err == nil {
			t.Error("Search(k=0) error = nil, want one")
		}
	})
	t.Run("invalid vectors", func(t *testing.T) {
		for _, tt := range invalidVectors {
			if err := f.Add("a", tt.vec); !errors.Is(err, tt.want) {
				t.Errorf("%s: Add error = %v, want %v", tt.name, err, tt.want)
			}
			if _, err := f.Search(tt.vec, 1); !errors.Is(err, tt.want) {
				t.Errorf("%s: Search error = %v, want %v", tt.name, err, tt.want)
			}
		}
		if got := mustSearch(t, f, a, 1); f.Len() != 3 || got[0].ID != "a" || got[0].Similarity < 0.99999 {
			t.Errorf("index changed by invalid Add: Len %d, Search(a) %v", f.Len(), got)
		}
	})
	t.Run("replace and delete", func(t *testing.T) {
		mustAdd(t, f, "a", []float32{0, 0, 0, 5})
		if f.Len() != 3 {
			t.Fatalf("Len() = %d after replace, want 3", f.Len())
		}
		if got := mustSearch(t, f, []float32{0, 0, 0, 1}, 1); got[0].ID != "a" {
			t.Errorf("Search after replace = %v, want a", got)
		}
		if !f.Delete("a") || f.Delete("a") {
			t.Fatal("Delete(a) twice, want true then false")
		}
		got := mustSearch(t, f, []float32{0, 0, 0, 1}, 5)
		if len(got) != 2 {
			t.Fatalf("got %v after delete, want b and c", got)
		}
		for _, n := range got {
			if n.ID == "a" {
				t.Fatal("deleted id returned")
			}
		}
	})
}
