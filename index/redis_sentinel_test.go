package index_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/semcache/semcache/index"
)

// TestParseSentinelURL: the addresses, master, database and credentials
// are parsed; a malformed URL is an error naming the part, never quoting
// the password.
func TestParseSentinelURL(t *testing.T) {
	o, err := index.ParseSentinelURL("redis-sentinel://app:p%40ss@10.0.0.1:26379,10.0.0.2:26380/mymaster/3")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.SentinelAddrs, []string{"10.0.0.1:26379", "10.0.0.2:26380"}) || o.MasterName != "mymaster" || o.DB != 3 || o.Username != "app" || o.Password != "p@ss" {
		t.Errorf("parsed %+v", o)
	}
	if o, err := index.ParseSentinelURL("redis-sentinel://127.0.0.1:26379/m"); err != nil || o.DB != 0 {
		t.Errorf("without a database: %+v %v", o, err)
	}
	for _, bad := range []string{
		"redis://127.0.0.1:6379/0",
		"redis-sentinel://127.0.0.1:26379",
		"redis-sentinel://127.0.0.1:26379/",
		"redis-sentinel://127.0.0.1/m",
		"redis-sentinel://u:topsecret@127.0.0.1:x/m",
		"redis-sentinel://127.0.0.1:26379/m/-1",
		"redis-sentinel://127.0.0.1:26379/m/0/extra",
		"redis-sentinel://u:topsecret@127.0.0.1:26379/m?x=1",
	} {
		_, err := index.ParseSentinelURL(bad)
		if err == nil {
			t.Errorf("%s: accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%s: the error quotes the password: %v", bad, err)
		}
	}
}
