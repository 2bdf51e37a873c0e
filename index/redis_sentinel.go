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
	u, err := parseAddrList("sentinel", SentinelScheme, s)
	if err != nil {
		return nil, err
	}
	o := &redis.FailoverOptions{Username: u.user, Password: u.password, SentinelAddrs: u.addrs}
	parts := strings.Split(strings.Trim(u.path, "/"), "/")
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
	return o, nil
}

// addrList is a parsed scheme://[user:password@]host:port[,host:port...]/path
// URL (see parseAddrList).
type addrList struct {
	user, password string
	addrs          []string
	path           string // after the addresses, without the first "/"
}

// parseAddrList parses a URL of scheme listing several addresses; kind
// names it in errors, which never quote the password. Query parameters
// are refused: none is known.
func parseAddrList(kind, scheme, s string) (addrList, error) {
	var u addrList
	rest, ok := strings.CutPrefix(s, scheme+"://")
	if !ok {
		return u, fmt.Errorf("%s URL: want %s://host:port[,host:port...]/...", kind, scheme)
	}
	// The user information ends at the last "@" (a password may hold an
	// unescaped "?" or "/"); the query is cut from what follows it, and
	// neither is ever quoted in an error.
	var rawQuery string
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, pass, _ := strings.Cut(rest[:at], ":")
		var err error
		if u.user, err = url.PathUnescape(user); err != nil {
			return u, fmt.Errorf("%s URL user: %w", kind, err)
		}
		if u.password, err = url.PathUnescape(pass); err != nil {
			return u, fmt.Errorf("%s URL password: not escaped correctly", kind)
		}
		rest = rest[at+1:]
	}
	rest, rawQuery, _ = strings.Cut(rest, "?")
	hosts, path, _ := strings.Cut(rest, "/")
	u.path = path
	for _, h := range strings.Split(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return u, fmt.Errorf("%s URL address %q: want host:port", kind, h)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return u, fmt.Errorf("%s URL address %q: bad port", kind, h)
		}
		u.addrs = append(u.addrs, h)
	}
	if rawQuery != "" {
		return u, fmt.Errorf("%s URL: query parameters are not accepted (give the password in the user information)", kind)
	}
	return u, nil
}
