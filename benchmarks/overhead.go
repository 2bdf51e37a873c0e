package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// "bench overhead" measures what the proxy adds to a request over loopback,
// side by side with a direct call and a bare reverse proxy. Every part runs
// in its own process, started from this executable: the trivial upstream
// (--role upstream), the bare proxy (--role bare-proxy: net/http/httputil's
// ReverseProxy and nothing else), `semcache serve` on the embedded default,
// and the load generator (--role load), so that no part shares a Go runtime
// with another and the CPU time of each server can be read from
// /proc/<pid>/stat.

// overheadAnswer is the trivial upstream's fixed chat.completion: 600
// bytes, the size of a short answer with usage.
var overheadAnswer = func() []byte {
	body := map[string]any{
		"id": "chatcmpl-overhead", "object": "chat.completion", "created": 1735689600, "model": "bench-model",
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop", "logprobs": nil,
			"message": map[string]any{"role": "assistant", "refusal": nil, "content": ""}}},
		"usage":              map[string]any{"prompt_tokens": 24, "completion_tokens": 64, "total_tokens": 88},
		"system_fingerprint": "fp_overhead",
	}
	b, _ := json.Marshal(body)
	msg := strings.Repeat("The answer is a short paragraph of text. ", 20)[:600-len(b)]
	body["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"] = msg
	b, _ = json.Marshal(body)
	return b
}()

// overheadRow is one line of the report: a target and a kind of request.
type overheadRow struct {
	Name   string `json:"name"`
	target string // "direct", "bare" or "semcache"
	bodies string // "fixed", "unique" or "semantic"
}

var overheadRows = []overheadRow{
	{"direct to the upstream", "direct", "fixed"},
	{"bare reverse proxy", "bare", "fixed"},
	{"semcache exact hit", "semcache", "fixed"},
	{"semcache semantic hit", "semcache", "semantic"},
	{"semcache miss (unique prompts)", "semcache", "unique"},
}

// LoadResult is what one load-generator run reports (the --role load
// process writes it as JSON on stdout).
type LoadResult struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	RPS      float64 `json:"rps"`
	// Outcomes counts X-Semcache-Status (with the tier on hits) of the
	// answers: "HIT exact", "HIT semantic", "MISS", "-" when absent.
	Outcomes map[string]int `json:"outcomes"`
	// CPUusPerRequest is the server's user+system CPU time per request,
	// read from /proc by the parent (not by the load generator).
	CPUusPerRequest float64 `json:"cpu_us_per_request"`
}

// OverheadRow is one row of the report: medians over the rounds.
type OverheadRow struct {
	Name       string       `json:"name"`
	Sequential []LoadResult `json:"sequential"` // one per round
	Concurrent []LoadResult `json:"concurrent"` // one per round
	// Medians over the rounds.
	SeqP50us, SeqP99us, RPS, CPUus float64
}

type overheadOptions struct {
	Role          string
	Rounds        int
	Requests      int // sequential requests per round and row
	ConcRequests  int // concurrent requests per round and row
	Conns         int
	Warmup        int
	Out           string
	URL, Bodies   string
	Upstream      string
	Listen        string
	Seed          uint64
	SemanticSet   string // file of prompts known to hit semantically (load role)
	ServeExtraArg string
}

func runOverheadCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o overheadOptions
	fs := flag.NewFlagSet("overhead", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: semcache bench overhead [flags]\n\nMeasures over loopback, in interleaved rounds: direct to a trivial upstream, a bare httputil.ReverseProxy, semcache exact hits, semantic hits and misses; sequential p50/p99, throughput at --conns connections and the server's CPU time per request.\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Role, "role", "", "internal: upstream, bare-proxy or load (the parts the command starts)")
	fs.IntVar(&o.Rounds, "rounds", 5, "interleaved rounds; the report gives the median of each figure")
	fs.IntVar(&o.Requests, "requests", 2000, "sequential requests per row and round (one keep-alive connection)")
	fs.IntVar(&o.ConcRequests, "conc-requests", 20000, "requests per row and round at --conns connections")
	fs.IntVar(&o.Conns, "conns", 32, "connections of the throughput run")
	fs.IntVar(&o.Warmup, "warmup", 200, "requests sent before each measured run")
	fs.StringVar(&o.Out, "out", "", "directory for overhead.md and overhead.json (default: print only)")
	fs.StringVar(&o.URL, "url", "", "internal (load): the chat completions URL")
	fs.StringVar(&o.Bodies, "bodies", "fixed", "internal (load): fixed, unique or semantic")
	fs.StringVar(&o.SemanticSet, "semantic-set", "", "internal (load): file of prompts, one per line")
	fs.StringVar(&o.Upstream, "upstream", "", "internal (bare-proxy): upstream base URL")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:0", "internal (upstream, bare-proxy): address")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the unique prompts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	if o.Rounds < 1 || o.Requests < 1 || o.ConcRequests < 1 || o.Conns < 1 || o.Warmup < 0 {
		return usageErrorf("--rounds, --requests, --conc-requests and --conns must be positive, --warmup not negative")
	}
	switch o.Role {
	case "":
		rows, err := runOverhead(ctx, o, stderr)
		if err != nil {
			return err
		}
		return writeOverhead(stdout, o, rows)
	case "upstream":
		return serveRole(ctx, o.Listen, stdout, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(overheadAnswer)))
			_, _ = w.Write(overheadAnswer)
		}))
	case "bare-proxy":
		u, err := url.Parse(o.Upstream)
		if err != nil || u.Host == "" {
			return usageErrorf("--upstream %q: want a base URL", o.Upstream)
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256}
		return serveRole(ctx, o.Listen, stdout, rp)
	case "load":
		res, err := loadRole(ctx, o)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(res)
	default:
		return usageErrorf("--role %q: want upstream, bare-proxy or load", o.Role)
	}
}

// serveRole serves h on addr, printing "listening <addr>" on stdout, until
// ctx is cancelled or stdin closes (the parent died).
func serveRole(ctx context.Context, addr string, stdout io.Writer, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = srv.Close()
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// chatBody is a chat completion request for one user prompt.
func chatBody(prompt string) []byte {
	b, _ := json.Marshal(map[string]any{"model": "bench-model", "temperature": 0,
		"messages": []any{map[string]any{"role": "system", "content": "You are a helpful support assistant."},
			map[string]any{"role": "user", "content": prompt}}})
	return b
}

// postChat sends one chat completion request with body to chatURL and
// returns the answer's outcome: X-Semcache-Status, then a space and
// X-Semcache-Tier on hits, "-" when the answer has no status (direct,
// bare proxy). The body of the answer is read to its end.
func postChat(ctx context.Context, client *http.Client, chatURL string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, chatURL, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer bench-overhead")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	k := resp.Header.Get("X-Semcache-Status")
	if t := resp.Header.Get("X-Semcache-Tier"); t != "" {
		k += " " + t
	}
	if k == "" {
		k = "-"
	}
	return k, nil
}

// loadRole is the load generator: Warmup requests, then Requests on one
// connection one after the other, or ConcRequests over Conns connections
// when Conns > 1. It reports latencies from send to the last byte read.
func loadRole(ctx context.Context, o overheadOptions) (*LoadResult, error) {
	var prompts []string
	if o.Bodies == "semantic" {
		b, err := os.ReadFile(o.SemanticSet)
		if err != nil {
			return nil, err
		}
		prompts = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	var counter atomic.Int64
	fixed := chatBody(builtinPrompts[0])
	body := func() []byte {
		i := counter.Add(1)
		switch o.Bodies {
		case "unique":
			return chatBody(fmt.Sprintf("Question %d of run %d: how do I set up invoice number %d?", i, o.Seed, i*7919))
		case "semantic":
			return chatBody(prompts[int(i)%len(prompts)])
		}
		return fixed
	}
	tr := &http.Transport{MaxIdleConnsPerHost: o.Conns, MaxIdleConns: o.Conns, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	outcomes := map[string]int{}
	errs := 0
	one := func(b []byte) (time.Duration, bool) {
		start := time.Now()
		k, err := postChat(ctx, client, o.URL, b)
		d := time.Since(start)
		if err != nil {
			return d, false
		}
		mu.Lock()
		outcomes[k]++
		mu.Unlock()
		return d, true
	}
	for range o.Warmup {
		one(body())
	}
	mu.Lock()
	clear(outcomes)
	mu.Unlock()
	n, conns := o.Requests, 1
	if o.Conns > 1 {
		n, conns = o.ConcRequests, o.Conns
	}
	lat := make([]float64, n)
	ok := make([]bool, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				d, good := one(body())
				lat[i], ok[i] = float64(d.Nanoseconds())/1e3, good
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var good []float64
	for i, l := range lat {
		if ok[i] {
			good = append(good, l)
		} else {
			errs++
		}
	}
	slices.Sort(good)
	return &LoadResult{Requests: n, Errors: errs, P50us: percentile(good, 50), P99us: percentile(good, 99),
		RPS: float64(len(good)) / elapsed.Seconds(), Outcomes: outcomes}, nil
}

// overheadProc is a started part: its process and address.
type overheadProc struct {
	cmd  *exec.Cmd
	addr string
}

// startPart starts this executable with args and waits for the address it
// prints: "listening ADDR" on stdout (roles), or serve's JSON "semcache
// listening" line on stderr.
func startPart(ctx context.Context, args []string, serve bool) (*overheadProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = partEnv()
	// The roles stop when their stdin closes, which it does when this
	// process exits, however it exits.
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, err
	}
	var out io.ReadCloser
	if serve {
		out, err = cmd.StderrPipe()
	} else {
		out, err = cmd.StdoutPipe()
	}
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if sent {
				continue
			}
			if a, ok := strings.CutPrefix(line, "listening "); ok && !serve {
				addr <- a
				sent = true
			}
			var l struct{ Msg, Addr string }
			if serve && json.Unmarshal([]byte(line), &l) == nil && l.Msg == "semcache listening" {
				addr <- l.Addr
				sent = true
			}
		}
		if !sent {
			close(addr)
		}
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("%s exited before listening", strings.Join(args, " "))
		}
		return &overheadProc{cmd: cmd, addr: a}, nil
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s did not listen within 60 s", strings.Join(args, " "))
	}
}

// partEnv is the environment of the parts: this process's without the
// SEMCACHE_ settings, so that every part runs on its defaults whatever the
// caller's shell sets, and with SEMCACHE_TEST_AS_MAIN=1, which lets a test
// binary stand in for the semcache executable (cmd/semcache's TestMain).
func partEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SEMCACHE_") {
			env = append(env, kv)
		}
	}
	return append(env, "SEMCACHE_TEST_AS_MAIN=1")
}

func (p *overheadProc) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// cpuTime returns the user+system CPU time of process pid so far, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s: the
// USER_HZ of Linux on every architecture Go supports).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// runOverhead starts the parts, finds the semantic-hit prompts, and runs
// the rows in interleaved rounds.
func runOverhead(ctx context.Context, o overheadOptions, progress io.Writer) ([]OverheadRow, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	up, err := startPart(ctx, []string{"bench", "overhead", "--role", "upstream"}, false)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	defer up.stop()
	upURL := "http://" + up.addr
	bare, err := startPart(ctx, []string{"bench", "overhead", "--role", "bare-proxy", "--upstream", upURL}, false)
	if err != nil {
		return nil, fmt.Errorf("bare proxy: %w", err)
	}
	defer bare.stop()
	// serve on its defaults (the memory backend kept in a data directory),
	// in a directory of its own that is removed afterwards.
	dataDir, err := os.MkdirTemp("", "semcache-overhead-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dataDir)
	sc, err := startPart(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--upstream", upURL + "/v1", "--log-format", "json", "--data-dir", dataDir}, true)
	if err != nil {
		return nil, fmt.Errorf("semcache serve: %w", err)
	}
	defer sc.stop()
	urls := map[string]string{
		"direct":   upURL + "/v1/chat/completions",
		"bare":     "http://" + bare.addr + "/v1/chat/completions",
		"semcache": strings.TrimSuffix(sc.addr, "/") + "/v1/chat/completions",
	}
	pids := map[string]int{"direct": up.cmd.Process.Pid, "bare": bare.cmd.Process.Pid, "semcache": sc.cmd.Process.Pid}

	semFile, nsem, err := semanticPrompts(ctx, urls["semcache"], progress)
	if err != nil {
		return nil, err
	}
	defer os.Remove(semFile)
	fmt.Fprintf(progress, "semantic row: %d paraphrases of %d stored prompts hit the semantic tier\n", nsem, len(builtinPrompts))

	rows := make([]OverheadRow, len(overheadRows))
	for r := range o.Rounds {
		for i, row := range overheadRows {
			rows[i].Name = row.Name
			for _, conns := range []int{1, o.Conns} {
				args := []string{"bench", "overhead", "--role", "load", "--url", urls[row.target], "--bodies", row.bodies,
					"--semantic-set", semFile, "--requests", strconv.Itoa(o.Requests), "--conc-requests", strconv.Itoa(o.ConcRequests),
					"--conns", strconv.Itoa(conns), "--warmup", strconv.Itoa(o.Warmup),
					"--seed", strconv.FormatUint(o.Seed*1000+uint64(r*100+i*2+min(conns, 2)), 10)}
				cpu0, err := cpuTime(pids[row.target])
				if err != nil {
					return nil, err
				}
				res, err := runLoadPart(ctx, args)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", row.Name, err)
				}
				cpu1, err := cpuTime(pids[row.target])
				if err != nil {
					return nil, err
				}
				// The warm-up requests are in the CPU time too.
				res.CPUusPerRequest = float64((cpu1 - cpu0).Microseconds()) / float64(res.Requests+o.Warmup)
				if conns == 1 {
					rows[i].Sequential = append(rows[i].Sequential, *res)
				} else {
					rows[i].Concurrent = append(rows[i].Concurrent, *res)
				}
				fmt.Fprintf(progress, "round %d %-32s conns %2d: p50 %7.1f µs p99 %7.1f µs %8.0f req/s cpu %6.1f µs/req %v errors %d\n",
					r+1, row.Name, conns, res.P50us, res.P99us, res.RPS, res.CPUusPerRequest, res.Outcomes, res.Errors)
			}
		}
	}
	for i := range rows {
		med := func(rs []LoadResult, f func(LoadResult) float64) float64 {
			xs := make([]float64, len(rs))
			for j, r := range rs {
				xs[j] = f(r)
			}
			slices.Sort(xs)
			return percentile(xs, 50)
		}
		rows[i].SeqP50us = med(rows[i].Sequential, func(r LoadResult) float64 { return r.P50us })
		rows[i].SeqP99us = med(rows[i].Sequential, func(r LoadResult) float64 { return r.P99us })
		rows[i].RPS = med(rows[i].Concurrent, func(r LoadResult) float64 { return r.RPS })
		rows[i].CPUus = med(rows[i].Concurrent, func(r LoadResult) float64 { return r.CPUusPerRequest })
	}
	return rows, nil
}

func runLoadPart(ctx context.Context, args []string) (*LoadResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = partEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("load generator: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var res LoadResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("load generator output %q: %v", out, err)
	}
	if res.Errors > 0 {
		return nil, fmt.Errorf("%d of %d requests failed", res.Errors, res.Requests)
	}
	return &res, nil
}

// semanticPrompts stores the built-in prompts through the proxy, then
// sends paraphrases of them (the four variants of paraphrase) and keeps
// those served from the semantic tier, written one per line to a
// temporary file. A paraphrase that missed stored itself and is left out.
func semanticPrompts(ctx context.Context, chatURL string, progress io.Writer) (string, int, error) {
	post := func(prompt string) (string, error) {
		return postChat(ctx, http.DefaultClient, chatURL, chatBody(prompt))
	}
	for _, p := range builtinPrompts {
		if _, err := post(p); err != nil {
			return "", 0, fmt.Errorf("storing the semantic row's prompts: %w", err)
		}
	}
	var keep []string
	for _, p := range builtinPrompts {
		for v := range 4 {
			q := paraphrase(p, v)
			st, err := post(q)
			if err != nil {
				return "", 0, err
			}
			if st == "HIT semantic" {
				keep = append(keep, q)
			}
		}
	}
	if len(keep) == 0 {
		return "", 0, errors.New("no paraphrase of the built-in prompts hit the semantic tier; the semantic row cannot be measured")
	}
	f, err := os.CreateTemp("", "semcache-overhead-*.txt")
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(keep, "\n") + "\n"); err != nil {
		return "", 0, err
	}
	return f.Name(), len(keep), nil
}

// writeOverhead prints the table (and writes overhead.md/json with --out).
func writeOverhead(stdout io.Writer, o overheadOptions, rows []OverheadRow) error {
	var b strings.Builder
	direct, bare := rows[0], rows[1]
	fmt.Fprintf(&b, "%d interleaved rounds; sequential: %d requests on one keep-alive connection; throughput: %d requests at %d connections; medians over the rounds.\n\n",
		o.Rounds, o.Requests, o.ConcRequests, o.Conns)
	b.WriteString("| row | p50 | p99 | p50 ÷ direct | p50 ÷ bare proxy | req/s at " + strconv.Itoa(o.Conns) + " conns | server CPU per request | outcomes (last round) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		var oc []string
		if n := len(r.Concurrent); n > 0 {
			for k, v := range r.Concurrent[n-1].Outcomes {
				oc = append(oc, fmt.Sprintf("%s %d", k, v))
			}
		}
		slices.Sort(oc)
		fmt.Fprintf(&b, "| %s | %.1f µs | %.1f µs | %.2f | %.2f | %.0f | %.1f µs | %s |\n", r.Name, r.SeqP50us, r.SeqP99us,
			r.SeqP50us/direct.SeqP50us, r.SeqP50us/bare.SeqP50us, r.RPS, r.CPUus, strings.Join(oc, ", "))
	}
	if _, err := io.WriteString(stdout, b.String()); err != nil {
		return err
	}
	if o.Out == "" {
		return nil
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.Out+"/overhead.md", []byte(b.String()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(o.Out+"/overhead.json", js, 0o644)
}
