package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semcache/semcache/semantic"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestParseServeDefaults(t *testing.T) {
	c, err := parseServe(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:8080" || c.upstream != "" || !c.enabled || c.backend != "memory" ||
		c.embedder != "local" || c.topK != 4 || c.ttl != time.Hour {
		t.Errorf("defaults: %+v", c)
	}
	if got := c.thresholdValue(); got != localDefaultThreshold {
		t.Errorf("threshold %v, want the local default %v", got, localDefaultThreshold)
	}
	n, err := c.normalization()
	if err != nil || n.SkipNFC || n.KeepCase || n.KeepSpace {
		t.Errorf("normalization %+v %v, want all steps", n, err)
	}
}

func TestParseServeFlagsAndEnv(t *testing.T) {
	e := env(map[string]string{
		"SEMCACHE_LISTEN":           "127.0.0.1:9999",
		"SEMCACHE_TTL":              "5m",
		"SEMCACHE_THRESHOLD":        "0.95",
		"SEMCACHE_ENABLED":          "false",
		"SEMCACHE_UPSTREAM_API_KEY": "sk-secret",
	})
	// The scripts' spelling must keep working, and a flag beats the env.
	c, err := parseServe([]string{"--listen", "127.0.0.1:8081", "--upstream", "http://127.0.0.1:1/v1"}, e, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:8081" {
		t.Errorf("listen %q: the flag must win over SEMCACHE_LISTEN", c.listen)
	}
	if c.upstream != "http://127.0.0.1:1/v1" || c.ttl != 5*time.Minute || c.thresholdValue() != 0.95 || c.enabled || c.upstreamKey != "sk-secret" {
		t.Errorf("env not applied: %+v", c)
	}
}

func TestParseServeRejects(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		mention string
	}{
		{"threshold zero", []string{"--threshold", "0"}, nil, "--threshold"},
		{"threshold above one", []string{"--threshold", "1.5"}, nil, "--threshold"},
		{"threshold not a number", []string{"--threshold", "high"}, nil, "--threshold"},
		{"threshold from env", nil, map[string]string{"SEMCACHE_THRESHOLD": "-0.2"}, "--threshold"},
		{"bad env duration", nil, map[string]string{"SEMCACHE_TTL": "soon"}, `SEMCACHE_TTL="soon" (--ttl): want a Go duration`},
		{"bad env bool", nil, map[string]string{"SEMCACHE_ENABLED": "maybe"}, "want true or false"},
		{"bad flag number", []string{"--top-k", "four"}, nil, "want a whole number"},
		{"unknown index", []string{"--index", "ivf"}, nil, "--index"},
		{"unknown ui access", []string{"--ui", "public"}, nil, "--ui"},
		{"ui token without admin token", []string{"--ui", "token"}, nil, "--ui token"},
		{"ui from env", nil, map[string]string{"SEMCACHE_UI": "everyone"}, "--ui"},
		{"negative dim", []string{"--embedder-dim", "-1"}, nil, "--embedder-dim"},
		{"ttl zero", []string{"--ttl", "0s"}, nil, "--ttl"},
		{"top-k zero", []string{"--top-k", "0"}, nil, "--top-k"},
		{"unknown backend", []string{"--backend", "mongo"}, nil, "--backend"},
		{"cluster database", []string{"--backend", "redis", "--redis-url", "redis-cluster://127.0.0.1:7000/2"}, nil, "--redis-url"},
		{"sentinel without master", []string{"--backend", "redis", "--redis-url", "redis-sentinel://127.0.0.1:26379"}, nil, "--redis-url"},
		{"lease ttl too short", []string{"--backend", "redis", "--lease-ttl", "100ms"}, nil, "--lease-ttl"},
		{"lease flag on memory", []string{"--lease-ttl", "3s"}, nil, "--lease-ttl applies only to --backend redis"},
		{"lease wait negative", []string{"--backend", "redis", "--lease-wait", "-1s"}, nil, "--lease-wait"},
		{"unknown embedder", []string{"--embedder", "bert"}, nil, "--embedder"},
		{"openai without model", []string{"--embedder", "openai", "--embedder-url", "http://127.0.0.1:1/v1"}, nil, "--embedder-model"},
		{"openai without threshold", []string{"--embedder", "openai", "--embedder-url", "http://127.0.0.1:1/v1", "--embedder-model", "m", "--embedder-dim", "8"}, nil, "--threshold is required"},
		{"trained without model", []string{"--embedder", "trained", "--threshold", "0.8"}, nil, "--embedder-model"},
		{"trained with dim", []string{"--embedder", "trained", "--embedder-model", "m.sem", "--embedder-dim", "8", "--threshold", "0.8"}, nil, "--embedder-dim"},
		{"trained model missing", []string{"--embedder", "trained", "--embedder-model", "m.sem"}, nil, "--embedder-model m.sem"},
		{"bad normalize", []string{"--normalize", "nfc,stem"}, nil, "stem"},
		{"bad upstream", []string{"--upstream", "api.openai.com"}, nil, "--upstream"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"hnsw m", []string{"--hnsw-m", "1"}, nil, "--hnsw-m"},
		{"hnsw m negative", []string{"--hnsw-m", "-2"}, nil, "--hnsw-m"},
		{"stray argument", []string{"now"}, nil, "unexpected argument"},
		{"short admin token", nil, map[string]string{"SEMCACHE_ADMIN_TOKEN": "short"}, "SEMCACHE_ADMIN_TOKEN"},
		{"ttl above max-ttl", []string{"--ttl", "48h"}, nil, "--max-ttl"},
		{"missing pricing file", []string{"--pricing", "/nonexistent/pricing.json"}, nil, "--pricing: semantic: load pricing"},
		{"pricing from env", nil, map[string]string{"SEMCACHE_PRICING": "/nonexistent/pricing.json"}, "--pricing"},
		{"unknown policy", []string{"--policy", "sometimes"}, nil, "--policy"},
		{"max error rate 1", []string{"--policy", "adaptive", "--max-error-rate", "1"}, nil, "--max-error-rate"},
		{"max error rate from env", nil, map[string]string{"SEMCACHE_POLICY": "adaptive", "SEMCACHE_MAX_ERROR_RATE": "-0.1"}, "--max-error-rate"},
		{"max error rate not a number", []string{"--policy", "adaptive", "--max-error-rate", "low"}, nil, "want a number"},
		{"floor zero", []string{"--policy", "adaptive", "--similarity-floor", "0"}, nil, "--similarity-floor"},
		{"min observations zero", []string{"--policy", "adaptive", "--min-observations", "0"}, nil, "--min-observations"},
		{"unknown judge", []string{"--policy", "adaptive", "--judge", "vibes"}, nil, "--judge"},
		{"unknown adaptive rule", []string{"--policy", "adaptive", "--adaptive-rule", "global"}, nil, "--adaptive-rule"},
		{"min observations under budget", []string{"--policy", "adaptive", "--min-observations", "3"}, nil, "--min-observations is a setting of --adaptive-rule entry"},
		{"audit rate under entry", []string{"--policy", "adaptive", "--adaptive-rule", "entry", "--audit-rate", "0.1"}, nil, "--audit-rate is a setting of --adaptive-rule budget"},
		{"audit rate 1", []string{"--policy", "adaptive", "--audit-rate", "1"}, nil, "--audit-rate"},
		{"adaptive rule under static", []string{"--adaptive-rule", "budget"}, nil, "--adaptive-rule applies only to --policy adaptive"},
		{"embedding judge without threshold", []string{"--policy", "adaptive", "--judge", "embedding"}, nil, "--judge-threshold"},
		{"llm judge with exact judge", []string{"--policy", "adaptive", "--judge-llm-url", "http://127.0.0.1:1/v1/chat/completions"}, nil, "--judge embedding"},
		{"grey band with exact judge", []string{"--policy", "adaptive", "--judge-grey-band", "0.1"}, nil, "--judge embedding"},
		{"llm model with exact judge", []string{"--policy", "adaptive", "--judge-llm-model", "gpt-4o-mini"}, nil, "--judge embedding"},
		{"llm judge without model", []string{"--policy", "adaptive", "--judge", "embedding", "--judge-threshold", "0.9", "--judge-llm-url", "http://127.0.0.1:1/v1/chat/completions"}, nil, "--judge-llm-model"},
		{"grey band above threshold", []string{"--policy", "adaptive", "--judge", "embedding", "--judge-threshold", "0.3", "--judge-grey-band", "0.5"}, nil, "--judge-grey-band"},
		{"adaptive flag under static", []string{"--max-error-rate", "0.02"}, nil, "--max-error-rate applies only to --policy adaptive"},
		{"adaptive env under static", nil, map[string]string{"SEMCACHE_SIMILARITY_FLOOR": "0.6"}, "--similarity-floor applies only to --policy adaptive"},
		{"judge under explicit static", []string{"--policy", "static", "--judge", "exact"}, nil, "--judge applies only"},
		{"listen without port", []string{"--listen", "nonsense"}, nil, `--listen "nonsense": want host:port`},
		{"listen port out of range", []string{"--listen", "127.0.0.1:99999"}, nil, `--listen "127.0.0.1:99999": port "99999"`},
		{"listen from env", nil, map[string]string{"SEMCACHE_LISTEN": "8080"}, `--listen "8080"`},
		{"embedder url with local", []string{"--embedder-url", "http://127.0.0.1:1/v1"}, nil, "--embedder-url and --embedder-model apply only"},
		{"embedder model with local", nil, map[string]string{"SEMCACHE_EMBEDDER_MODEL": "m"}, "--embedder-url and --embedder-model apply only"},
		{"embedder url not a url", []string{"--embedder", "openai", "--embedder-url", "localhost:11434", "--embedder-model", "m", "--embedder-dim", "8", "--threshold", "0.9"}, nil, "--embedder-url"},
		{"upstream without host", []string{"--upstream", "http://"}, nil, "--upstream"},
		{"redis url under memory", []string{"--redis-url", "redis://127.0.0.1:6379/0"}, nil, "--redis-url applies only to --backend redis"},
		{"redis timeout env under memory", nil, map[string]string{"SEMCACHE_REDIS_TIMEOUT": "1s"}, "--redis-timeout applies only to --backend redis"},
		{"max entries under redis", []string{"--backend", "redis", "--max-entries", "10"}, nil, "--max-entries applies only to --backend memory"},
		{"index under redis", []string{"--backend", "redis", "--index", "flat"}, nil, "--index applies only to --backend memory"},
		{"redis url bad db", []string{"--backend", "redis", "--redis-url", "redis://127.0.0.1:6379/zero"}, nil, "--redis-url"},
		{"threshold under adaptive", []string{"--policy", "adaptive", "--threshold", "0.9"}, nil, "--threshold applies only to --policy static: the adaptive policy decides per entry"},
		{"threshold env under adaptive", nil, map[string]string{"SEMCACHE_POLICY": "adaptive", "SEMCACHE_THRESHOLD": "0.9"}, "use --max-error-rate"},
		{"unknown guard", []string{"--guards", "negation,sarcasm"}, nil, "--guards"},
		{"two-word guard token", []string{"--guard-tokens", "per month"}, nil, "--guard-tokens"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServe(tc.args, env(tc.env), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.mention)
			}
		})
	}
}

// TestAdaptiveRuleFlags: the adaptive policy's rule and its settings reach
// the cache configuration; budget is the default.
func TestAdaptiveRuleFlags(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		rule  semantic.Allocation
		audit float64
		minOb int
	}{
		{[]string{"--policy", "adaptive"}, semantic.RuleBudget, 0.01, 4},
		{[]string{"--policy", "adaptive", "--audit-rate", "0.05"}, semantic.RuleBudget, 0.05, 4},
		{[]string{"--policy", "adaptive", "--adaptive-rule", "entry", "--min-observations", "2"}, semantic.RuleEntry, 0.01, 2},
	} {
		c, err := parseServe(tc.args, env(nil), &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		policy, a := c.policyConfig(nil)
		if policy != semantic.PolicyAdaptive || a.Rule != tc.rule || a.Audit != tc.audit || a.MinObservations != tc.minOb {
			t.Errorf("%v: policy %s, rule %s, audit %v, min observations %d", tc.args, policy, a.Rule, a.Audit, a.MinObservations)
		}
	}
}

// TestAdaptivePolicyNeedsNoThreshold: under --policy adaptive no threshold
// is given, even with an embedder that has no default one, and the
// threshold handed to the cache is the similarity floor the policy applies.
func TestAdaptivePolicyNeedsNoThreshold(t *testing.T) {
	for _, args := range [][]string{
		{"--policy", "adaptive", "--similarity-floor", "0.6"},
		{"--policy", "adaptive", "--similarity-floor", "0.6", "--embedder", "openai", "--embedder-url", "http://127.0.0.1:1/v1", "--embedder-model", "m", "--embedder-dim", "8"},
	} {
		c, err := parseServe(args, env(nil), &bytes.Buffer{})
		if err != nil {
			t.Errorf("%v: %v", args, err)
			continue
		}
		if got := c.thresholdValue(); got != 0.6 {
			t.Errorf("%v: threshold %v, want the similarity floor 0.6", args, got)
		}
	}
}

// TestEveryFlagHasAnEnvironmentVariable keeps the README's promise that
// every flag can be set from the environment.
func TestEveryFlagHasAnEnvironmentVariable(t *testing.T) {
	var help bytes.Buffer
	if _, err := parseServe([]string{"-h"}, env(nil), &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, line := range strings.Split(help.String(), "\n") {
		if strings.HasPrefix(line, "  --") && strings.Contains(line, "[]") {
			t.Errorf("flag without an environment variable: %s", line)
		}
	}
	for flagName, envName := range envFlags {
		if !strings.Contains(help.String(), "--"+flagName+" ["+envName+"]") {
			t.Errorf("envFlags names %s -> %s, but -h does not list it", flagName, envName)
		}
	}
	c, err := parseServe(nil, env(map[string]string{"SEMCACHE_SHUTDOWN_TIMEOUT": "1s"}), &bytes.Buffer{})
	if err != nil || c.shutdownTimeout != time.Second {
		t.Errorf("SEMCACHE_SHUTDOWN_TIMEOUT=1s: %v %v", c.shutdownTimeout, err)
	}
}

func TestRunUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), nil, &out, &errb); code != 2 {
		t.Errorf("no command: exit %d, want 2", code)
	}
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("unknown command: exit %d, stderr %q", code, errb.String())
	}
	if code := run(context.Background(), []string{"serve", "--threshold", "2"}, &out, &errb); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
	errb.Reset()
	if code := run(context.Background(), []string{"serve", "--top-k", "four"}, &out, &errb); code != 2 ||
		strings.Count(errb.String(), "\n") != 1 || !strings.Contains(errb.String(), "--top-k: want a whole number") {
		t.Errorf("flag parse error: exit %d, stderr %q; want one line naming --top-k", code, errb.String())
	}
}

// startServe runs `semcache serve` with cfg in the background and returns
// its base URL, its log (read it after stop) and stop, which shuts it down
// and returns runServe's error.
func startServe(t *testing.T, cfg serveConfig) (base string, logs *bytes.Buffer, stop func() error) {
	t.Helper()
	logs = &bytes.Buffer{}
	log, _ := cfg.logger(logs)
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, log, func(u string) { urls <- u }) }()
	select {
	case base = <-urls:
	case err := <-done:
		cancel()
		t.Fatalf("serve ended early: %v", err)
	}
	return base, logs, func() error { cancel(); return <-done }
}

// TestServeWithSimulatedUpstream runs the main job as `semcache serve` does
// with no upstream configured: the simulated upstream, the local embedder,
// the in-process store; a repeat is an exact hit. It runs once on the
// defaults and once with the adaptive policy.
func TestServeWithSimulatedUpstream(t *testing.T) {
	for _, extra := range [][]string{nil, {"--policy", "adaptive", "--max-error-rate", "0.02", "--guards", "negation,numbers"}} {
		args := append([]string{"--listen", "127.0.0.1:0", "--sim-latency", "0s", "--sim-per-token-latency", "0s"}, extra...)
		cfg, err := parseServe(args, env(nil), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		base, logs, stop := startServe(t, cfg)
		body := `{"model":"sim-1","messages":[{"role":"user","content":"What are your opening hours?"}]}`
		for i, want := range []string{"MISS", "HIT"} {
			resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Semcache-Status") != want || !strings.Contains(string(b), "Simulated answer to: What are your opening hours?") {
				t.Errorf("%v: request %d: %d %s %s, want 200 %s with the simulated answer", extra, i, resp.StatusCode, resp.Header.Get("X-Semcache-Status"), b, want)
			}
		}
		if err := stop(); err != nil {
			t.Errorf("%v: shutdown: %v", extra, err)
		}
		if !strings.Contains(logs.String(), "SIMULATED upstream") {
			t.Errorf("the simulated upstream is not announced in the log:\n%s", logs.String())
		}
		if extra != nil && (!strings.Contains(logs.String(), "policy=adaptive") || !strings.Contains(logs.String(), "max_error_rate=0.02")) {
			t.Errorf("the adaptive policy is not announced in the log:\n%s", logs.String())
		}
	}
}

func TestParseServePricing(t *testing.T) {
	c, err := parseServe(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.pricingTable(); err != nil || p != semantic.DefaultPricing() {
		t.Errorf("default: pricing %v, %v; want the built-in table", p, err)
	}
	c, err = parseServe([]string{"--pricing", "none"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.pricingTable(); err != nil || p != nil {
		t.Errorf("none: pricing %v, %v; want nil", p, err)
	}

	dir := t.TempDir()
	good := filepath.Join(dir, "pricing.json")
	if err := os.WriteFile(good, []byte(`{"models":{"m":{"input_per_mtok":1,"output_per_mtok":2}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = parseServe(nil, env(map[string]string{"SEMCACHE_PRICING": good}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.pricingTable(); err != nil || p.Len() != 1 {
		t.Errorf("SEMCACHE_PRICING=%s: pricing %v, %v; want its one model", good, p, err)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"models":{"gpt-4o":{"input_per_mtok":-2.5,"output_per_mtok":10}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = parseServe([]string{"--pricing", bad}, env(nil), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--pricing") || !strings.Contains(err.Error(), bad) ||
		!strings.Contains(err.Error(), `models["gpt-4o"]: field input_per_mtok`) {
		t.Errorf("bad file: %v, want an error naming --pricing, the file, the model and the field", err)
	}
}
