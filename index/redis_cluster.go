package index

import (
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ClusterScheme is the URL scheme of a Redis Cluster.
const ClusterScheme = "redis-cluster"

// ParseClusterURL parses
//
//	redis-cluster://[user:password@]host:port[,host:port...][/0]
//
// into go-redis's ClusterOptions: seed nodes (at least one; the client
// learns the others and the slot map from CLUSTER SLOTS and follows
// MOVED/ASK redirects and failovers), and the user and password of every
// node. A Cluster has database 0 only, so any other database is an error.
// Errors name the part that is wrong and never quote the password.
//
// On a Cluster the Redis store keeps the exact tier only: open-source
// RediSearch does not index vectors across shards (that needs the
// RediSearch coordinator or Redis Enterprise), so no index is created and
// the cache embeds nothing (see Redis.ExactOnly).
func ParseClusterURL(s string) (*redis.ClusterOptions, error) {
	u, err := parseAddrList("cluster", ClusterScheme, s)
	if err != nil {
		return nil, err
	}
	if p := strings.Trim(u.path, "/"); p != "" && p != "0" {
		return nil, fmt.Errorf("cluster URL database %q: a Redis Cluster has database 0 only", p)
	}
	return &redis.ClusterOptions{Addrs: u.addrs, Username: u.user, Password: u.password}, nil
}
