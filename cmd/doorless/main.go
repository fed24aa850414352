// Command doorless is the Doorless command-line client. Run "doorless help"
// for its commands; internal/cli holds everything it does.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/doorless/doorless/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal asks the command to finish (listen acknowledges what
	// it printed and exits); a second one kills the process as usual.
	context.AfterFunc(ctx, stop)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
