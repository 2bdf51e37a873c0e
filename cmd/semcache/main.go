// Command semcache is a semantic cache for OpenAI-compatible LLM APIs.
//
//	semcache serve [flags]   run the caching proxy
//	semcache bench ...       threshold tuning, adaptive-policy replay, query-log replay, load
//	semcache embedder train  train the local embedding model
//	semcache admin indexes   list or drop the Redis backend's indexes
//	semcache version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/semcache/semcache/benchmarks"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: semcache <command> [flags]

commands:
  serve     run the caching proxy (semcache serve -h for flags)
  bench     measure: bench tune, bench adaptive, bench replay, bench load
  embedder  train the local embedding model: embedder train
  admin     talk to a running proxy: admin indexes [--drop-stale]
  version   print the version
`

// run executes one command line and returns the process exit code: 0 on
// success, 1 on a runtime failure, 2 on a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "bench":
		return benchmarks.Main(ctx, args[1:], stdout, stderr)
	case "embedder":
		return embedder(ctx, args[1:], stdout, stderr)
	case "admin":
		return admin(ctx, args[1:], os.Getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "semcache", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "semcache: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
