package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/semcache/semcache/index"
)

const adminUsage = `usage: semcache admin indexes [--url URL] [--drop-stale]

Talks to a running semcache serve over its admin endpoints, with the token
from SEMCACHE_ADMIN_TOKEN (never a flag: it would show in the process list).

  indexes               list the Redis backend's vector indexes under its prefix
                        (name, fingerprint, docs, memory, current)
  indexes --drop-stale  drop the indexes of other embedder fingerprints and
                        their vector hashes (exact entries are kept)
`

// admin runs `semcache admin`: 0 on success, 1 when the server refused or
// could not be reached, 2 on a usage error.
func admin(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "indexes" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, adminUsage)
			return 0
		}
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	fs := flag.NewFlagSet("semcache admin indexes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", cmp.Or(getenv("SEMCACHE_ADMIN_URL"), "http://127.0.0.1:8080"), "base URL of the running proxy [SEMCACHE_ADMIN_URL]")
	dropStale := fs.Bool("drop-stale", false, "drop the indexes of other embedder fingerprints with their vector hashes")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "semcache admin indexes: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	u, err := url.Parse(*base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "semcache admin indexes: --url %q: want http(s)://host:port\n", *base)
		return 2
	}
	token := getenv("SEMCACHE_ADMIN_TOKEN")
	if token == "" {
		fmt.Fprintln(stderr, "semcache admin indexes: SEMCACHE_ADMIN_TOKEN is not set (the server's admin token)")
		return 2
	}
	method, path := http.MethodGet, "/api/v1/cache/indexes"
	if *dropStale {
		method, path = http.MethodPost, "/api/v1/cache/indexes/drop-stale"
	}
	var out struct {
		Indexes []index.IndexInfo `json:"indexes"`
		Dropped []index.IndexInfo `json:"dropped"`
		Deleted int               `json:"deleted"`
	}
	if err := adminCall(ctx, method, strings.TrimRight(*base, "/")+path, token, &out); err != nil {
		fmt.Fprintf(stderr, "semcache admin indexes: %v\n", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	rows := out.Indexes
	if *dropStale {
		rows = out.Dropped
		fmt.Fprintf(stdout, "dropped %d indexes, deleted %d keys\n", len(out.Dropped), out.Deleted)
	}
	fmt.Fprintln(tw, "NAME\tFINGERPRINT\tDOCS\tMEMORY_MB\tCURRENT")
	for _, ix := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%v\n", ix.Name, ix.Fingerprint, ix.Docs, ix.MemoryMB, ix.Current)
	}
	tw.Flush()
	return 0
}

// adminCall sends one admin request with the bearer token and decodes a
// 200 answer into out; another status returns the OpenAI error's message.
func adminCall(ctx context.Context, method, target, token string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s %s: %d: %s", method, target, resp.StatusCode, e.Error.Message)
		}
		return fmt.Errorf("%s %s: %d", method, target, resp.StatusCode)
	}
	return json.Unmarshal(b, out)
}
