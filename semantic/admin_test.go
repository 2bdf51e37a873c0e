package semantic_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/semantic"
)

// TestInvalidation stores answers of two tenants, tags them as the proxy
// does (a client tag and the namespace tag), and deletes them by tag, by
// namespace and all at once; each time the next request is a miss.
func TestInvalidation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, semantic.Config{Threshold: 0.9}, nil)
	u := &upstream{resp: ok200("Paris")}
	store := func(tenant, prompt string, tags ...string) semantic.Result {
		t.Helper()
		r := do(t, e.cache, ident(t, tenant, prompt), u.fetch)
		if !r.Stored {
			t.Fatalf("%s/%q not stored", tenant, prompt)
		}
		tags = append(tags, semantic.NamespaceTag(tenant, ""))
		if err := e.cache.TagEntry(ctx, r.Key, tags, time.Hour); err != nil {
			t.Fatalf("TagEntry: %v", err)
		}
		return r
	}
	outcome := func(tenant, prompt string) semantic.Outcome {
		t.Helper()
		return do(t, e.cache, ident(t, tenant, prompt), u.fetch).Outcome
	}

	store("t1", promptBase, "doc:1")
	store("t1", promptFar)
	store("t2", promptBase, "doc:1")
	if n, err := e.cache.DeleteTag(ctx, "doc:1"); err != nil || n != 2 {
		t.Fatalf("DeleteTag(doc:1) = %d %v, want 2", n, err)
	}
	// promptTwin would be a semantic hit on promptBase's entry: none left.
	if o := outcome("t1", promptTwin); o != semantic.Miss {
		t.Errorf("after DeleteTag: %s, want MISS", o)
	}
	if o := outcome("t1", promptFar); o != semantic.Hit {
		t.Errorf("untagged entry: %s, want HIT", o)
	}

	// t1 now holds promptFar and promptTwin (stored by the miss above, not
	// tagged: only the proxy tags). Deleting t1's namespace deletes the
	// tagged one and leaves t2 alone.
	store("t2", promptFar)
	if n, err := e.cache.DeleteNamespace(ctx, "t1", ""); err != nil || n != 1 {
		t.Fatalf("DeleteNamespace(t1) = %d %v, want 1", n, err)
	}
	if o := outcome("t1", promptFar); o != semantic.Miss {
		t.Errorf("t1 after DeleteNamespace: %s, want MISS", o)
	}
	if o := outcome("t2", promptFar); o != semantic.Hit {
		t.Errorf("t2 after t1's DeleteNamespace: %s, want HIT", o)
	}

	n, err := e.cache.Flush(ctx)
	if err != nil || n == 0 {
		t.Fatalf("Flush = %d %v", n, err)
	}
	if l, _ := e.cache.Len(ctx); l != 0 {
		t.Errorf("Len after Flush = %d", l)
	}
	if o := outcome("t2", promptFar); o != semantic.Miss {
		t.Errorf("after Flush: %s, want MISS", o)
	}
}

// TestInvalidationUnsupported: a store without tags or flush makes the
// invalidation methods fail with ErrUnsupported, not pretend success.
func TestInvalidationUnsupported(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, semantic.Config{Threshold: 0.9}, func(m *index.Memory) semantic.Store {
		return struct{ semantic.Store }{m} // only the Store methods
	})
	if err := e.cache.TagEntry(ctx, "k", []string{"x"}, time.Hour); !errors.Is(err, semantic.ErrUnsupported) {
		t.Errorf("TagEntry: %v, want ErrUnsupported", err)
	}
	if _, err := e.cache.DeleteTag(ctx, "x"); !errors.Is(err, semantic.ErrUnsupported) {
		t.Errorf("DeleteTag: %v, want ErrUnsupported", err)
	}
	if _, err := e.cache.DeleteNamespace(ctx, "t", ""); !errors.Is(err, semantic.ErrUnsupported) {
		t.Errorf("DeleteNamespace: %v, want ErrUnsupported", err)
	}
	if _, err := e.cache.Flush(ctx); !errors.Is(err, semantic.ErrUnsupported) {
		t.Errorf("Flush: %v, want ErrUnsupported", err)
	}
}

// TestNamespaceTagIsUnambiguous: distinct (tenant, namespace) pairs never
// share a tag, even when their concatenations are equal.
func TestNamespaceTagIsUnambiguous(t *testing.T) {
	if semantic.NamespaceTag("a", "bc") == semantic.NamespaceTag("ab", "c") {
		t.Error("NamespaceTag(a, bc) == NamespaceTag(ab, c)")
	}
	if semantic.NamespaceTag("a", "") == semantic.NamespaceTag("a", " ") {
		t.Error("the default namespace shares a tag with another")
	}
}
