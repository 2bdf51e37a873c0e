package index_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/semcache/semcache/index"
	"github.com/semcache/semcache/index/redistest"
)

func TestParseClusterURL(t *testing.T) {
	o, err := index.ParseClusterURL("redis-cluster://u:s%40cret@10.0.0.1:7000,10.0.0.2:7001/0")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.Addrs, ",") != "10.0.0.1:7000,10.0.0.2:7001" || o.Username != "u" || o.Password != "s@cret" {
		t.Errorf("parsed %+v", o)
	}
	for _, bad := range []string{
		"redis-cluster://",
		"redis-cluster://h:1/3",              // a Cluster has database 0 only
		"redis-cluster://h:1,h/0",            // no port
		"redis-cluster://h:99999",            // bad port
		"redis-cluster://h:1?dial_timeout=3", // no parameters are known
		"redis-cluster://u:hunter2zz%zz@h:1", // bad escape, password not quoted
		"redis://h:1",
	} {
		_, err := index.ParseClusterURL(bad)
		if err == nil {
			t.Errorf("%s: accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error quotes the password: %v", bad, err)
		}
	}
}

// TestRedisClusterExactTier runs the Redis store on a three-node Redis
// Cluster (Debian's redis-server, no module): entries spread over every
// shard; Get, Delete, tags, leases, the adaptive policy's state and Flush
// work across slots; the semantic tier is off and says so.
func TestRedisClusterExactTier(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	ctx := t.Context()
	r, err := index.NewRedis(ctx, index.RedisConfig{URL: cl.URL(), Dim: 3, Fingerprint: "fake/3", Prefix: "sc:"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.ExactOnly() {
		t.Fatal("ExactOnly is false on a Cluster")
	}
	raw := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{fmt.Sprintf("127.0.0.1:%d", cl.Servers[0].Port)}})
	defer raw.Close()
	if err := raw.Set(ctx, "other:keep", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}

	const n = 60
	for i := range n {
		key := "k" + strconv.Itoa(i)
		if err := r.Set(ctx, key, "scope", []byte("v"+strconv.Itoa(i)), []float32{1, 0, 0}, time.Minute); err != nil {
			t.Fatalf("Set %s: %v", key, err)
		}
		if err := r.Tag(ctx, key, []string{"even" + strconv.Itoa(i%2), "all"}, time.Minute); err != nil {
			t.Fatalf("Tag %s: %v", key, err)
		}
	}
	// The entries are spread over every shard.
	for i, s := range cl.Servers {
		c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.Port)})
		size, err := c.DBSize(ctx).Result()
		c.Close()
		if err != nil || size == 0 {
			t.Errorf("node %d holds %d keys (%v): want entries on every shard", i, size, err)
		}
	}
	for i := range n {
		v, ok, err := r.Get(ctx, "k"+strconv.Itoa(i))
		if err != nil || !ok || string(v) != "v"+strconv.Itoa(i) {
			t.Fatalf("Get k%d: %q %v %v", i, v, ok, err)
		}
	}
	if _, err := r.Search(ctx, "scope", []float32{1, 0, 0}, 1); !errors.Is(err, index.ErrIndexNotReady) {
		t.Errorf("Search on a Cluster: %v, want ErrIndexNotReady", err)
	}
	if ok, err := r.Delete(ctx, "k0"); !ok || err != nil {
		t.Errorf("Delete k0: %v %v", ok, err)
	}
	if got, err := r.DeleteTag(ctx, "even1"); got != n/2 || err != nil {
		t.Errorf("DeleteTag even1: %d %v, want %d", got, err, n/2)
	}
	if _, ok, _ := r.Get(ctx, "k1"); ok {
		t.Error("k1 (tagged even1) survived DeleteTag")
	}
	if _, ok, _ := r.Get(ctx, "k2"); !ok {
		t.Error("k2 (tagged even0) was deleted by DeleteTag even1")
	}
	// The adaptive policy's state and the lease.
	if _, ok, err := r.AddObservation(ctx, "k2", []byte("o"), 4); !ok || err != nil {
		t.Errorf("AddObservation: %v %v", ok, err)
	}
	if _, err := r.AddVerdict(ctx, "right"); err != nil {
		t.Errorf("AddVerdict: %v", err)
	}
	tok, ok, err := r.AcquireLease(ctx, "k2", time.Minute)
	if !ok || err != nil {
		t.Fatalf("AcquireLease: %v %v", ok, err)
	}
	if held, err := r.RefreshLease(ctx, "k2", tok, time.Minute); !held || err != nil {
		t.Errorf("RefreshLease: %v %v", held, err)
	}
	if err := r.ReleaseLease(ctx, "k2", tok, true, 0); err != nil {
		t.Errorf("ReleaseLease: %v", err)
	}
	if ix, err := r.Indexes(ctx); len(ix) != 0 || err != nil {
		t.Errorf("Indexes on a Cluster: %v %v, want none", ix, err)
	}
	// Flush deletes every key under the prefix on every shard, and
	// nothing else.
	if _, err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	err = raw.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, "sc:*").Result()
		if err != nil {
			return err
		}
		if len(keys) != 0 {
			return fmt.Errorf("%s still holds %v", c.Options().Addr, keys)
		}
		return nil
	})
	if err != nil {
		t.Errorf("after Flush: %v", err)
	}
	if v, err := raw.Get(ctx, "other:keep").Result(); v != "x" || err != nil {
		t.Errorf("a key of another prefix: %q %v, want it kept", v, err)
	}
}
