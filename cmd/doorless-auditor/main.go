// Command doorless-auditor follows a Doorless server's key-transparency log,
// checks every epoch and cosigns the checkpoints it has checked
// (internal/auditor, docs/auditor.md).
//
//	doorless-auditor --server URL [--state DIR] [--interval 5s] [--max-epoch-age 1h] [--once] [--name NAME]
//	doorless-auditor key [--state DIR] [--name NAME]
//
// The auditor does not cosign a log whose newest epoch is more than
// --max-epoch-age old (or that far in the future): a log frozen for its
// auditors could hide a fork. It warns and tries again next pass.
//
// key prints the auditor's verifier key (making the key pair on first use),
// for the server's operator: doorlessd --kt-auditor VKEY.
//
// Exit status: 0 when stopped by SIGINT or SIGTERM (or, with --once, after
// a pass that cosigned or had nothing to cosign); 1 on an error (with
// --once, a pass that could not finish; without, an error that retrying
// cannot mend, such as a server presenting another log than the pinned
// one); 2 on bad usage; 3 on an audit failure, which is recorded in the
// state directory and makes every later run exit 3 until an operator has
// dealt with it; 4, with --once, when the pass did not cosign because the
// log's newest epoch is too old or in the future (not an audit failure,
// nothing is recorded).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/doorless/doorless/internal/auditor"
)

// Exit codes.
const (
	exitError   = 1
	exitUsage   = 2
	exitFailure = 3
	exitStale   = 4
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "key" {
		return keyCommand(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("doorless-auditor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "the Doorless server's base `URL`")
	state := fs.String("state", "./doorless-auditor-state", "state `directory` (created 0700)")
	interval := fs.Duration("interval", auditor.DefaultInterval, "pause between passes")
	maxEpochAge := fs.Duration("max-epoch-age", auditor.DefaultMaxEpochAge, "do not cosign a log whose newest epoch is older than this (or this far in the future)")
	once := fs.Bool("once", false, "make one pass and exit")
	name := fs.String("name", defaultName(), "the cosigner key's `name`, when the state directory has no key yet")
	logFormat := fs.String("log-format", "text", "log `format` on standard error: text or json")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "doorless-auditor: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *server == "" {
		fmt.Fprintln(stderr, "doorless-auditor: --server is required")
		return exitUsage
	}
	if *interval <= 0 {
		fmt.Fprintln(stderr, "doorless-auditor: --interval must be positive")
		return exitUsage
	}
	if *maxEpochAge <= 0 {
		fmt.Fprintln(stderr, "doorless-auditor: --max-epoch-age must be positive")
		return exitUsage
	}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(stderr, nil)
	case "json":
		h = slog.NewJSONHandler(stderr, nil)
	default:
		fmt.Fprintln(stderr, "doorless-auditor: --log-format must be text or json")
		return exitUsage
	}

	a, err := auditor.New(auditor.Config{
		Server:      *server,
		StateDir:    *state,
		Name:        *name,
		Interval:    *interval,
		MaxEpochAge: *maxEpochAge,
		Logger:      slog.New(h),
	})
	if err == nil {
		if *once {
			var res auditor.Result
			res, err = a.Pass(ctx)
			if err == nil {
				fmt.Fprintf(stdout, "log size %d, cosigned: %t\n", res.Head.Size, res.Cosigned)
			}
		} else {
			err = a.Run(ctx)
		}
	}
	if err == nil {
		return 0
	}
	if fe := (*auditor.FailureError)(nil); errors.As(err, &fe) {
		fmt.Fprintf(stderr, "doorless-auditor: %v\n", fe)
		if fe.Record != "" {
			fmt.Fprintf(stderr, "doorless-auditor: this auditor will not cosign again; the failure is recorded in %s (docs/auditor.md says what to do)\n", fe.Record)
		}
		return exitFailure
	}
	fmt.Fprintf(stderr, "doorless-auditor: %v\n", err)
	if errors.Is(err, auditor.ErrStaleLog) || errors.Is(err, auditor.ErrFutureEpoch) {
		return exitStale
	}
	return exitError
}

func keyCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doorless-auditor key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", "./doorless-auditor-state", "state `directory`")
	name := fs.String("name", defaultName(), "the key's `name`, when it is made")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "doorless-auditor key: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	vkey, created, err := auditor.LoadOrCreateKey(*state, *name, nil)
	if err != nil {
		fmt.Fprintf(stderr, "doorless-auditor key: %v\n", err)
		return exitError
	}
	if created {
		fmt.Fprintf(stderr, "doorless-auditor: made a cosigner key in %s\n", *state)
	}
	fmt.Fprintln(stdout, vkey)
	return 0
}

// defaultName names a new key after the host: HOST/doorless-auditor.
func defaultName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "doorless-auditor"
	}
	return h + "/doorless-auditor"
}
