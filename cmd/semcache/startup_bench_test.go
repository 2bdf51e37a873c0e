package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semcache/semcache/index"
)

// startupWords is the vocabulary of the measurement's questions.
var startupWords = strings.Fields(`account address alarm balance battery bill booking brake browser cable calendar camera card
	cart charger checkout cloud code contract coupon credit delivery deposit device discount display download driver
	email engine export fee filter firmware flight folder garden heater hotel insurance invoice keyboard laptop
	licence loan lock login luggage meter modem monitor mortgage network order package password payment pension
	phone photo plan printer profile receipt refund router salary scanner screen seat server shipment speaker
	storage subscription tablet tax ticket timer transfer update upload voucher wallet warranty watch wifi window`)

// startupQuestion is the i-th question of the measurement: a request of a
// support bot over two random nouns, unique by its number.
func startupQuestion(i int) string {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	a, b := startupWords[r.IntN(len(startupWords))], startupWords[r.IntN(len(startupWords))]
	return fmt.Sprintf("How do I link my %s to the %s with reference %d?", a, b, 100000+i)
}

// percentile returns the p-quantile (0..1) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// fill sends n unique misses (questions from..from+n-1) at the given
// concurrency and returns each one's latency.
func fill(t *testing.T, base string, from, n, conc int) []time.Duration {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	var next atomic.Int64
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				start := time.Now()
				status, _, err := ask(client, base, startupQuestion(from+i))
				lat[i] = time.Since(start)
				if err != nil || status != "MISS" {
					t.Errorf("fill %d: %s %v", from+i, status, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return lat
}

// TestMeasureDurableStartup measures, for benchmarks/RESULTS.md, what the
// data directory costs and gives. It runs only when SEMCACHE_BENCH_STARTUP
// lists entry counts, e.g.
//
//	SEMCACHE_BENCH_STARTUP=10000,100000 go test -run TestMeasureDurableStartup -v -timeout 60m ./cmd/semcache
//
// For each count N it fills a new data directory with N unique misses
// through a real `semcache serve` (local embedder, 384 dimensions, the
// simulated upstream without latency), kills it with SIGKILL, starts it
// again and records the time from exec to the first exact HIT of a stored
// question and to the first semantic HIT of a reworded one ("How can I"
// for "How do I") (polled every
// 10 ms; the semantic probe sends Cache-Control: no-store, so a miss while
// the vectors are still being indexed stores nothing), the store file's bytes per entry, and the miss latency p50/p99 at
// concurrency 1 and 16 with --data-dir and with --data-dir none (the
// latter on the first 2,000 misses of a fresh process, so both are
// measured on small stores).
func TestMeasureDurableStartup(t *testing.T) {
	spec := os.Getenv("SEMCACHE_BENCH_STARTUP")
	if spec == "" {
		t.Skip("SEMCACHE_BENCH_STARTUP is not set (entry counts to measure, e.g. 10000,100000)")
	}
	var counts []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2000 {
			t.Fatalf("SEMCACHE_BENCH_STARTUP %q: want entry counts >= 2000", spec)
		}
		counts = append(counts, n)
	}

	// Miss latency with and without durability, on fresh processes.
	fmt.Println("| data directory | concurrency | miss p50 | miss p99 |")
	fmt.Println("|---|---|---|---|")
	for _, dd := range []string{"none", filepath.Join(t.TempDir(), "d")} {
		p, ok, code := startProcess(t, "--data-dir", dd)
		if !ok {
			t.Fatalf("start exited %d:\n%s", code, p.stderr.String())
		}
		name := "none (memory only)"
		if dd != "none" {
			name = "yes (fsync per commit)"
		}
		for i, conc := range []int{1, 16} {
			lat := fill(t, p.base, 1_000_000+i*2000, 2000, conc)
			fmt.Printf("| %s | %d | %v | %v |\n", name, conc, percentile(lat, 0.5).Round(time.Microsecond), percentile(lat, 0.99).Round(time.Microsecond))
		}
		p.kill(t)
	}

	fmt.Println()
	fmt.Println("| entries | fill time | store file | bytes per entry | start to first exact HIT | start to first semantic HIT |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, n := range counts {
		dir := t.TempDir()
		p, ok, code := startProcess(t, "--data-dir", dir, "--max-entries", strconv.Itoa(n+1000))
		if !ok {
			t.Fatalf("start exited %d:\n%s", code, p.stderr.String())
		}
		start := time.Now()
		fill(t, p.base, 0, n, 16)
		fillTime := time.Since(start)
		p.kill(t)
		st, err := os.Stat(filepath.Join(dir, index.DiskFile))
		if err != nil {
			t.Fatal(err)
		}

		exec := time.Now()
		p, ok, code = startProcess(t, "--data-dir", dir, "--max-entries", strconv.Itoa(n+1000))
		if !ok {
			t.Fatalf("restart exited %d:\n%s", code, p.stderr.String())
		}
		exact, semantic := time.Duration(0), time.Duration(0)
		q := startupQuestion(n / 2)
		reworded := strings.Replace(q, "How do I", "How can I", 1)
		client := &http.Client{Timeout: 30 * time.Second}
		for exact == 0 || semantic == 0 {
			if time.Since(exec) > 5*time.Minute {
				t.Fatalf("%d entries: no hit within 5 minutes (exact %v, semantic %v): if only the semantic one is missing, the rewording %q may be below the threshold", n, exact, semantic, reworded)
			}
			if exact == 0 {
				if s, _, err := ask(client, p.base, q); err == nil && s == "HIT" {
					exact = time.Since(exec)
				}
			}
			if semantic == 0 {
				// no-store: a miss while the part fills keeps nothing, so
				// polling goes on until the loaded entry is found.
				req, _ := http.NewRequest(http.MethodPost, p.base+"/v1/chat/completions",
					strings.NewReader(fmt.Sprintf(`{"model":"sim-1","messages":[{"role":"user","content":%q}]}`, reworded)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Cache-Control", "no-store")
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
					if resp.Header.Get("X-Semcache-Status") == "HIT" && resp.Header.Get("X-Semcache-Tier") == "semantic" {
						semantic = time.Since(exec)
					}
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Printf("| %d | %v | %.1f MB | %d | %v | %v |\n", n, fillTime.Round(time.Second), float64(st.Size())/1e6, st.Size()/int64(n),
			exact.Round(time.Millisecond), semantic.Round(time.Millisecond))
		p.kill(t)
	}
}
