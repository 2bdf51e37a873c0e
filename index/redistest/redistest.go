// Package redistest starts real redis-server processes on free loopback
// ports for tests, optionally with the RediSearch module loaded.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ModuleEnv names the environment variable holding the path of a RediSearch
// module (redisearch.so, 2.6.x for Debian's Redis 7.0).
const ModuleEnv = "SEMCACHE_TEST_REDISEARCH_MODULE"

// Server is a redis-server process owned by one test. It listens on
// 127.0.0.1 only, persists nothing, and is killed when the test ends.
type Server struct {
	t      testing.TB
	Port   int
	Module string // path of the loaded module, "" for none
	cmd    *exec.Cmd
	log    bytes.Buffer
	extra  []string // further redis-server arguments (e.g. --replicaof)
	// sentinelConf, when set, makes this a sentinel: redis-server CONF
	// --sentinel (the file must be writable: sentinels rewrite it).
	sentinelConf string
}

// Start starts redis-server without modules. It skips the test when
// redis-server is not installed (.ci/run installs it).
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, "")
}

// StartSearch starts redis-server with the RediSearch module named by
// SEMCACHE_TEST_REDISEARCH_MODULE, and skips the test with one line saying
// so when the variable is not set.
func StartSearch(t testing.TB) *Server {
	t.Helper()
	mod := os.Getenv(ModuleEnv)
	if mod == "" {
		t.Skipf("skipped: needs the RediSearch module; set %s to the path of redisearch.so (2.6.x)", ModuleEnv)
	}
	if _, err := os.Stat(mod); err != nil {
		t.Fatalf("%s=%s: %v", ModuleEnv, mod, err)
	}
	return start(t, mod)
}

func start(t testing.TB, module string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("skipped: redis-server is not installed (apt-get install redis-server; .ci/run does it)")
	}
	s := &Server{t: t, Port: freePort(t), Module: module}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// URL returns redis://127.0.0.1:PORT/0.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Stop kills the server (SIGKILL: no shutdown save) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port, empty, and waits
// until it answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	args := []string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"}
	if s.sentinelConf != "" {
		args = []string{s.sentinelConf, "--sentinel"}
	}
	if s.Module != "" {
		args = append(args, "--loadmodule", s.Module)
	}
	args = append(args, s.extra...)
	s.log.Reset()
	cmd := exec.Command("redis-server", args...)
	cmd.Stdout, cmd.Stderr = &s.log, &s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.Port), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second) // only stops a hung start; asserts nothing about speed
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on port %d did not answer: %v\n%s", s.Port, err, s.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StartReplica starts a redis-server that replicates primary and waits
// until the replication link is up.
func StartReplica(t testing.TB, primary *Server) *Server {
	t.Helper()
	s := &Server{t: t, Port: freePort(t), Module: primary.Module,
		extra: []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port)}}
	s.Restart()
	t.Cleanup(s.Stop)
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.Port), MaxRetries: -1})
	defer c.Close()
	waitFor(t, 20*time.Second, func() bool {
		info, err := c.Info(context.Background(), "replication").Result()
		return err == nil && bytes.Contains([]byte(info), []byte("master_link_status:up"))
	}, "the replica's link to its primary")
	return s
}

// Sentinels are redis-sentinel processes (redis-server --sentinel, the
// same binary as Debian's redis-sentinel package) watching one primary
// under MasterName, with quorum 2 and a down-after of 1 s.
type Sentinels struct {
	MasterName string
	Servers    []*Server
}

// StartSentinels starts n sentinels monitoring primary as master and waits
// until each has found the primary's replicas (want of them).
func StartSentinels(t testing.TB, primary *Server, master string, n, replicas int) *Sentinels {
	t.Helper()
	out := &Sentinels{MasterName: master}
	for range n {
		port := freePort(t)
		conf := fmt.Sprintf("%s/sentinel-%d.conf", t.TempDir(), port)
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 10000\nsentinel parallel-syncs %s 1\n",
			port, master, primary.Port, master, master, master)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s := &Server{t: t, Port: port, sentinelConf: conf}
		s.Restart()
		t.Cleanup(s.Stop)
		out.Servers = append(out.Servers, s)
	}
	for _, s := range out.Servers {
		c := redis.NewSentinelClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.Port)})
		waitFor(t, 30*time.Second, func() bool {
			r, err := c.Replicas(context.Background(), master).Result()
			return err == nil && len(r) >= replicas
		}, "a sentinel to find the replicas")
		c.Close()
	}
	return out
}

// URL returns the sentinel URL semcache accepts:
// redis-sentinel://127.0.0.1:P1,127.0.0.1:P2,.../MASTER/0.
func (s *Sentinels) URL() string {
	var addrs []string
	for _, srv := range s.Servers {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", srv.Port))
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/" + s.MasterName + "/0"
}

// Cluster is a Redis Cluster of primaries only, each a redis-server with
// cluster-enabled on a free loopback port, holding an equal share of the
// 16384 hash slots.
type Cluster struct {
	Servers []*Server
}

// StartCluster starts n (>= 1) cluster nodes, assigns the slots (CLUSTER
// ADDSLOTSRANGE), joins them (CLUSTER MEET) and waits until every node
// reports cluster_state:ok and knows the others.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	out := &Cluster{}
	for range n {
		dir := t.TempDir()
		s := &Server{t: t, Port: freePort(t), extra: []string{"--cluster-enabled", "yes",
			"--cluster-config-file", dir + "/nodes.conf", "--dir", dir, "--cluster-node-timeout", "5000"}}
		s.Restart()
		t.Cleanup(s.Stop)
		out.Servers = append(out.Servers, s)
	}
	ctx := context.Background()
	clients := make([]*redis.Client, n)
	for i, s := range out.Servers {
		clients[i] = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.Port), MaxRetries: -1})
		defer clients[i].Close()
		lo, hi := i*16384/n, (i+1)*16384/n-1
		if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE %d %d on node %d: %v", lo, hi, i, err)
		}
	}
	for _, s := range out.Servers[1:] {
		if err := clients[0].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(s.Port)).Err(); err != nil {
			t.Fatalf("CLUSTER MEET: %v", err)
		}
	}
	for _, c := range clients {
		waitFor(t, 30*time.Second, func() bool {
			info, err := c.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", n))
		}, "the cluster to form")
	}
	return out
}

// URL returns the cluster URL semcache accepts:
// redis-cluster://127.0.0.1:P1,127.0.0.1:P2,....
func (c *Cluster) URL() string {
	var addrs []string
	for _, s := range c.Servers {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", s.Port))
	}
	return "redis-cluster://" + strings.Join(addrs, ",")
}

// waitFor polls ok every 20 ms until it holds; the deadline only stops a
// hung test and asserts nothing about speed.
func waitFor(t testing.TB, deadline time.Duration, ok func() bool, what string) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort asks the kernel for a free loopback port.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
