package api_test

import (
	"testing"
	"time"

	"github.com/semcache/semcache/api"
	"github.com/semcache/semcache/semantic"
)

func TestTTLRules(t *testing.T) { forEachBackend(t, testTTLRules) }

func testTTLRules(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	up := newUpstream(t, nil)
	p := newProxyWith(t, up, func(c *api.Config) { c.Rules = semantic.DefaultRules() }, func(c *semantic.Config) { c.Now = clk.Now })

	// realtime: never cached.
	weather := chat("m", "", "user", "What's the weather in Oslo right now?")
	for i := 0; i < 2; i++ {
		r := p.post(t, "sk-a", weather)
		if r.semStatus() != "BYPASS" || r.header.Get(api.HeaderRule) != "realtime" {
			t.Errorf("weather #%d: %s rule %q, want BYPASS realtime", i, r.semStatus(), r.header.Get(api.HeaderRule))
		}
	}

	// time-sensitive: cached for 5 minutes, and not served older than that.
	news := chat("m", "", "user", "What is the latest news about the central bank?")
	if r := p.post(t, "sk-a", news); r.semStatus() != "MISS" || r.header.Get(api.HeaderRule) != "time-sensitive" {
		t.Errorf("news: %s rule %q, want MISS time-sensitive", r.semStatus(), r.header.Get(api.HeaderRule))
	}
	clk.Add(4 * time.Minute)
	if r := p.post(t, "sk-a", news); r.semStatus() != "HIT" {
		t.Errorf("news after 4 min: %s, want HIT", r.semStatus())
	}
	clk.Add(2 * time.Minute)
	if r := p.post(t, "sk-a", news); r.semStatus() != "MISS" {
		t.Errorf("news after 6 min: %s, want MISS (older than the rule's 5 min)", r.semStatus())
	}

	// No rule: the server's TTL, no header.
	if r := p.post(t, "sk-a", chat("m", "", "user", question)); r.header.Get(api.HeaderRule) != "" {
		t.Errorf("no rule expected, got %q", r.header.Get(api.HeaderRule))
	}
}
