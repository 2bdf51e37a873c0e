package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/semcache/semcache/index"
)

// TestMain lets a test run this test binary as the semcache command
// (SEMCACHE_TEST_AS_MAIN=1), so that a real `semcache serve` process can be
// killed and restarted.
func TestMain(m *testing.M) {
	if os.Getenv("SEMCACHE_TEST_AS_MAIN") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// serveProcess is a `semcache serve` child process.
type serveProcess struct {
	cmd    *exec.Cmd
	base   string // http://host:port once it listens
	stderr *lockedBuffer
	exited chan struct{}
}

// lockedBuffer is a bytes buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProcess runs `semcache serve args...` as a child with an empty
// environment but for HOME (unset, so that no default data directory is
// used) and waits until it listens or exits. ok is false when it exited
// first; its exit code is then in code.
func startProcess(t *testing.T, args ...string) (p *serveProcess, ok bool, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json",
		"--sim-latency", "0s", "--sim-per-token-latency", "0s"}, args...)...)
	cmd.Env = []string{"SEMCACHE_TEST_AS_MAIN=1", "PATH=" + os.Getenv("PATH")}
	pr, pw := io.Pipe()
	p = &serveProcess{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = io.MultiWriter(p.stderr, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "semcache listening" {
				listening <- line.Addr
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	select {
	case p.base = <-listening:
		return p, true, 0
	case <-p.exited:
		return p, false, cmd.ProcessState.ExitCode()
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *serveProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// ask posts a chat request with a unique question and returns the cache
// status and the answer's content; err is set when no complete answer
// came back (the process was killed meanwhile).
func ask(client *http.Client, base, question string) (status, content string, err error) {
	body := fmt.Sprintf(`{"model":"sim-1","messages":[{"role":"user","content":%q}]}`, question)
	resp, err := client.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil || len(out.Choices) != 1 {
		return "", "", fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	return resp.Header.Get("X-Semcache-Status"), out.Choices[0].Message.Content, nil
}

// TestKillAndRestart kills `semcache serve --data-dir` with SIGKILL while
// four clients store misses, restarts it on the same directory and checks
// the durability rule: it starts, and every question whose answer was
// received before the kill is an exact HIT with that same answer; nothing
// undecodable or foreign is served. It repeats this three times on the same
// directory, so that later rounds also start from a store written by a
// killed process.
func TestKillAndRestart(t *testing.T) {
	dir := t.TempDir()
	var answered sync.Map // question -> answer received before a kill
	for round := range 3 {
		p, ok, code := startProcess(t, "--data-dir", dir)
		if !ok {
			t.Fatalf("round %d: the restart exited %d:\n%s", round, code, p.stderr.String())
		}
		client := &http.Client{Timeout: 10 * time.Second}
		// Everything answered before this start is served again, verbatim.
		n := 0
		answered.Range(func(q, a any) bool {
			n++
			status, content, err := ask(client, p.base, q.(string))
			if err != nil || status != "HIT" || content != a.(string) {
				t.Errorf("round %d: %q after the restart: %s %q %v, want HIT %q", round, q, status, content, err, a)
			}
			return true
		})
		t.Logf("round %d: %d earlier answers checked", round, n)

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		stored := make(chan struct{}, 1000)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					q := fmt.Sprintf("round %d worker %d question %d: how do I reset device %d?", round, w, i, i*7+w)
					status, content, err := ask(client, p.base, q)
					if err != nil {
						return // killed
					}
					if status != "MISS" {
						t.Errorf("unique question %q: %s, want MISS", q, status)
					}
					answered.Store(q, content)
					select {
					case stored <- struct{}{}:
					default:
					}
				}
			}()
		}
		// Kill once at least 40 misses were answered: while the workers
		// keep storing.
		for range 40 {
			<-stored
		}
		p.kill(t)
		cancel()
		wg.Wait()
	}
	// The last round's answers too.
	p, ok, code := startProcess(t, "--data-dir", dir)
	if !ok {
		t.Fatalf("final restart exited %d:\n%s", code, p.stderr.String())
	}
	client := &http.Client{Timeout: 10 * time.Second}
	answered.Range(func(q, a any) bool {
		status, content, err := ask(client, p.base, q.(string))
		if err != nil || status != "HIT" || content != a.(string) {
			t.Errorf("final: %q: %s %q %v, want HIT %q", q, status, content, err, a)
		}
		return true
	})
}

// TestDataDirRefusals runs `semcache serve` on data directories it must
// refuse: one in use by another process, one written with another
// embedder, and a truncated store file. Each exits 2 naming --data-dir,
// without a panic, and leaves the directory's file as it was.
func TestDataDirRefusals(t *testing.T) {
	dir := t.TempDir()
	first, ok, code := startProcess(t, "--data-dir", dir)
	if !ok {
		t.Fatalf("first start exited %d:\n%s", code, first.stderr.String())
	}
	if _, _, err := ask(http.DefaultClient, first.base, "How do I reset my router?"); err != nil {
		t.Fatal(err)
	}
	refused := func(name string, args ...string) {
		t.Helper()
		p, ok, code := startProcess(t, args...)
		out := p.stderr.String()
		if ok || code != 2 || !strings.Contains(out, "--data-dir") || strings.Contains(out, "panic") {
			t.Errorf("%s: started %v, exit %d, want exit 2 naming --data-dir:\n%s", name, ok, code, out)
		}
	}
	refused("in use", "--data-dir", dir)
	first.kill(t)

	path := filepath.Join(dir, index.DiskFile)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	refused("another embedder", "--data-dir", dir, "--embedder-dim", "256")
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("a refused start changed the store file")
	}
	if err := os.Truncate(path, int64(len(before)/2)); err != nil {
		t.Fatal(err)
	}
	refused("truncated", "--data-dir", dir)
}
