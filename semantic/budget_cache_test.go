package semantic_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"

	"github.com/semcache/semcache/semantic"
)

// budgetPrompts are at cosine similarity 1 to each other and 0.8 to
// promptBase.
var budgetPrompts []string

func init() {
	for i := range 60 {
		p := fmt.Sprintf("Which city is the capital of France, form %d?", i)
		budgetPrompts = append(budgetPrompts, p)
		fakeVectors[p] = []float32{0.8, 0.6, 0}
	}
}

func budgetCache(t *testing.T, store semantic.Store, delta float64) *semantic.Cache {
	return adaptiveCache(t, store, func(a *semantic.AdaptiveConfig) {
		a.Rule, a.MaxErrorRate, a.Audit, a.MinObservations = semantic.RuleBudget, delta, 1e-9, 0
	})
}

// TestBudgetLearnsToServe: under RuleBudget a neighbour is explored (its
// request answered from upstream and stored with its vector, the
// neighbour verified) until the verdicts bound the error rate within δ;
// then it is served. The verdicts are filed by stratum: the first near
// request has the base entry alone, the next ones two neighbours with the
// same answer. A request asking for a tighter bound is explored again.
func TestBudgetLearnsToServe(t *testing.T) {
	forStateBackends(t, func(t *testing.T, b stateBackend) {
		store := b.open(t)
		c := budgetCache(t, store, 0.05)
		var calls atomic.Int32
		up := answering(answerParis, &calls)
		mustDo(t, c, promptBase, semantic.Options{}, up)
		first := -1
		for i, p := range budgetPrompts {
			r := mustDo(t, c, p, semantic.Options{}, up)
			if r.Outcome == semantic.Hit {
				if r.Tier != semantic.TierSemantic || r.Similarity < 0.999 {
					t.Fatalf("request %d: hit %s at %v, want a semantic hit at 1", i, r.Tier, r.Similarity)
				}
				first = i
				break
			}
			if !r.Explored || !r.Stored {
				t.Fatalf("request %d: %s explored %v stored %v; want an exploration whose answer is stored", i, r.Outcome, r.Explored, r.Stored)
			}
		}
		// By hand: with f near 1 (the prior pseudo-lookups), serving needs
		// ½/(m+1) + √(q(1-q)/(m+1)) <= 0.05, m >= 26 right verdicts.
		if first < 20 || first > 40 {
			t.Fatalf("first semantic hit at request %d, want after 20-40 verdicts", first)
		}
		right, wrong := c.BudgetVerdicts()
		if right[semantic.StratumAlone] != 1 || right[semantic.StratumAgree] != float64(first-1) || wrong != [3]float64{} {
			t.Errorf("verdicts right %v wrong %v; want 1 alone and %d agree, none wrong", right, wrong, first-1)
		}
		s := c.Snapshot(t.Context())
		if s.AdaptiveRule != "budget" || s.LearnedThresholds["agree"] == nil || math.Abs(*s.LearnedThresholds["agree"]-0.98) > 1e-9 {
			t.Errorf("snapshot rule %q, thresholds %v; want agree served from 0.98", s.AdaptiveRule, s.LearnedThresholds)
		}
		if r := mustDo(t, c, budgetPrompts[first+1], semantic.Options{}, up); r.Outcome != semantic.Hit {
			t.Errorf("the next request: %s, want served", r.Outcome)
		}
		if r := mustDo(t, c, budgetPrompts[first+2], semantic.Options{MaxErrorRate: 0.001}, up); r.Outcome != semantic.Miss || !r.Explored {
			t.Errorf("a request with δ 0.001: %s explored %v, want explored", r.Outcome, r.Explored)
		}
	})
}

// TestBudgetStrata: a second neighbour with another answer files the
// verdict under "disagree"; a wrong verdict leaves the request's own entry
// (stored at the miss) in place, findable by its vector.
func TestBudgetStrata(t *testing.T) {
	forStateBackends(t, func(t *testing.T, b stateBackend) {
		store := b.open(t)
		c := budgetCache(t, store, 0.05)
		var calls atomic.Int32
		mustDo(t, c, promptBase, semantic.Options{}, answering(answerParis, &calls)) // [1, 0, 0]
		mustDo(t, c, promptTwo, semantic.Options{}, answering("Two.", &calls))       // [0, 1, 0]
		// [0.8, 0.6, 0]: base at 0.8 first, promptTwo at 0.6 second.
		r := mustDo(t, c, budgetPrompts[0], semantic.Options{}, answering("Lyon.", &calls))
		if !r.Explored || !r.Stored || r.Similarity < 0.799 || r.Similarity > 0.801 {
			t.Fatalf("near request: %+v; want explored against the base at 0.8 and stored", r)
		}
		right, wrong := c.BudgetVerdicts()
		if wrong[semantic.StratumDisagree] != 1 || right != [3]float64{} {
			t.Errorf("verdicts right %v wrong %v; want one wrong under disagree", right, wrong)
		}
		id := ident(t, "", budgetPrompts[1])
		nn, err := store.Search(t.Context(), id.Scope, []float32{0.8, 0.6, 0}, 1)
		if err != nil || len(nn) != 1 || nn[0].ID != r.Key {
			t.Errorf("nearest to the near vector = %+v, %v; want the explored request's entry %s", nn, err, r.Key)
		}
	})
}

// brokenJudge fails every verification.
type brokenJudge struct{}

func (brokenJudge) Judge(context.Context, semantic.JudgeInput) (bool, error) {
	return false, errors.New("judge unreachable")
}

// TestBudgetJudgeFailureIsWrong: under RuleBudget too a failed judge is a
// wrong verdict, never a right one, so a cache whose judge is down never
// learns to serve.
func TestBudgetJudgeFailureIsWrong(t *testing.T) {
	forStateBackends(t, func(t *testing.T, b stateBackend) {
		store := b.open(t)
		c := adaptiveCache(t, store, func(a *semantic.AdaptiveConfig) {
			a.Rule, a.MaxErrorRate, a.Judge = semantic.RuleBudget, 0.05, brokenJudge{}
		})
		var calls atomic.Int32
		up := answering(answerParis, &calls)
		mustDo(t, c, promptBase, semantic.Options{}, up)
		for i, p := range budgetPrompts {
			if r := mustDo(t, c, p, semantic.Options{}, up); r.Outcome == semantic.Hit {
				t.Fatalf("request %d served (%s) with every verdict a judge error", i, r.Tier)
			}
		}
		right, wrong := c.BudgetVerdicts()
		s := c.Snapshot(t.Context())
		if right != [3]float64{} || wrong[semantic.StratumAgree]+wrong[semantic.StratumAlone] != float64(len(budgetPrompts)) ||
			s.JudgeErrors != int64(len(budgetPrompts)) || s.VerifiedWrong != s.JudgeErrors {
			t.Errorf("verdicts right %v wrong %v, judge errors %d, wrong %d; want every one wrong", right, wrong, s.JudgeErrors, s.VerifiedWrong)
		}
	})
}

// TestBudgetSharedVerdicts: on Redis the verdicts are shared, so a second
// cache on the same database (a replica, or the process after a restart)
// serves from its first request what the first cache learned; on the
// memory backend each cache learns for itself. Flush forgets them on both.
func TestBudgetSharedVerdicts(t *testing.T) {
	forStateBackends(t, func(t *testing.T, b stateBackend) {
		first := budgetCache(t, b.open(t), 0.05)
		var calls atomic.Int32
		up := answering(answerParis, &calls)
		mustDo(t, first, promptBase, semantic.Options{}, up)
		served := false
		for _, p := range budgetPrompts[:50] {
			if r := mustDo(t, first, p, semantic.Options{}, up); r.Outcome == semantic.Hit {
				served = true
				break
			}
		}
		if !served {
			t.Fatal("the first cache never learned to serve")
		}
		// A few more verdicts (a stricter bound explores), so that the
		// second cache, whose lookup counts start afresh, is past the
		// edge too.
		for _, p := range budgetPrompts[50:58] {
			if r := mustDo(t, first, p, semantic.Options{MaxErrorRate: 0.001}, up); !r.Explored {
				t.Fatalf("δ 0.001: %s, want explored", r.Outcome)
			}
		}
		second := budgetCache(t, b.reopen(t), 0.05)
		r := mustDo(t, second, budgetPrompts[59], semantic.Options{}, up)
		if shared := b.name == "redis"; (r.Outcome == semantic.Hit) != shared {
			t.Errorf("%s: the second cache's first near request: %s explored %v; want served: %v", b.name, r.Outcome, r.Explored, shared)
		}
		if _, err := second.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if right, wrong := second.BudgetVerdicts(); right != [3]float64{} || wrong != [3]float64{} {
			t.Errorf("after Flush: verdicts right %v wrong %v, want none", right, wrong)
		}
	})
}
