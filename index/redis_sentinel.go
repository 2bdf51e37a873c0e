package index

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SentinelScheme is the URL scheme of a Sentinel-managed primary.
const SentinelScheme = "redis-sentinel"

// ParseSentinelURL parses
//
//	redis-sentinel://[user:password@]host:port[,host:port...]/master[/db]
//
// into go-redis's FailoverOptions: the sentinels' addresses (at least one;
// list them all so that one down sentinel does not matter), the master
// name the sentinels monitor, and the database (default 0). The user and
// password are the primary's (and its replicas'); the sentinels are
// reached without a password. The client asks the sentinels
// for the current primary and follows a failover (see
// redis.NewFailoverClient). Errors name the part that is wrong and never
// quote the password.
func ParseSentinelURL(s string) (*redis.FailoverOptions, error) {
	rest, ok := strings.CutPrefix(s, SentinelScheme+"://")
	if !ok {
		return nil, fmt.Errorf("sentinel URL: want %s://host:port[,host:port...]/master[/db]", SentinelScheme)
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	o := &redis.FailoverOptions{}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, pass, _ := strings.Cut(rest[:at], ":")
		var err error
		if o.Username, err = url.PathUnescape(user); err != nil {
			return nil, fmt.Errorf("sentinel URL user: %w", err)
		}
		if o.Password, err = url.PathUnescape(pass); err != nil {
			return nil, fmt.Errorf("sentinel URL password: %w", err)
		}
		rest = rest[at+1:]
	}
	hosts, path, _ := strings.Cut(rest, "/")
	for _, h := range strings.Split(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return nil, fmt.Errorf("sentinel URL address %q: want host:port", h)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("sentinel URL address %q: bad port", h)
		}
		o.SentinelAddrs = append(o.SentinelAddrs, h)
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if parts[0] == "" || len(parts) > 2 {
		return nil, fmt.Errorf("sentinel URL: want the master name after the addresses: /master[/db]")
	}
	o.MasterName = parts[0]
	if len(parts) == 2 {
		db, err := strconv.Atoi(parts[1])
		if err != nil || db < 0 {
			return nil, fmt.Errorf("sentinel URL database %q: want a number >= 0", parts[1])
		}
		o.DB = db
	}
	if rawQuery != "" {
		return nil, fmt.Errorf("sentinel URL query %q: no parameters are known", rawQuery)
	}
	return o, nil
}
