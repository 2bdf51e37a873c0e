package benchmarks

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit codes returned by Main.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed (I/O, embedder, network)
	exitUsage = 2 // bad command line
)

const usageText = `usage: semcache bench <command> [flags]

commands:
  tune     sweep the similarity threshold on labelled data (1-nearest-neighbour protocol)
  adaptive replay labelled data under the adaptive policy and static thresholds; error vs requests
  replay   replay a query log through a semcache proxy (running on loopback, or in-process)
  load     bounded load of repeated, paraphrased and new prompts; throughput and latency
  meaning  wrong hits and kept rewordings per class of a labelled pair set, at serve's defaults
  generalise leave-one-domain-out evaluation of the trained embedder beside the lexical one
  overhead what the proxy adds over loopback: direct, bare reverse proxy, exact and semantic hits, misses

Run 'semcache bench <command> -h' for the flags of a command.
`

// usageError is a command-line error: a bad flag value, a missing required
// flag or a flag parse error. Main reports it with exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// Main runs the "semcache bench" subcommand named by args[0] with the flags
// in args[1:], writing results to stdout and diagnostics and progress to
// stderr. It returns the process exit code: 0 on success, 1 when the
// command fails, 2 for a bad command line (including an unknown command).
// Cancelling ctx stops a running command, which then returns 1.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	var run func(context.Context, []string, io.Writer, io.Writer) error
	switch args[0] {
	case "tune":
		run = runTuneCommand
	case "adaptive":
		run = runAdaptiveCommand
	case "replay":
		run = runReplayCommand
	case "load":
		run = runLoadCommand
	case "meaning":
		run = runMeaningCommand
	case "generalise":
		run = runGeneraliseCommand
	case "overhead":
		run = runOverheadCommand
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "semcache bench: unknown command %q\n\n%s", args[0], usageText)
		return exitUsage
	}
	err := run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(*usageError)):
		fmt.Fprintf(stderr, "semcache bench %s: %v\n", args[0], err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "semcache bench %s: %v\n", args[0], err)
		return exitFail
	}
}

// parseFlags parses args into fs and rejects positional arguments. Parse
// errors other than -h become a usageError (the flag package has already
// printed them with the usage to fs.Output()).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q", fs.Args())
	}
	return nil
}

// usageErrorf returns a usageError with a formatted message.
func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Sprintf(format, a...)}
}
