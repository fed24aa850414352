package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/doorless/doorless/client"
)

// report: doorless report USERNAME MESSAGE-ID [--reason TEXT] reports a
// message received from USERNAME to the server's operator. Message ids are
// shown by doorless messages (and receive --json).
func (g *globals) report(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("report")
	reason := fs.String("reason", "", "why you report the message, for the operator")
	pos, err := parse(fs, args, "USERNAME", "MESSAGE-ID")
	if err != nil {
		return err
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	username := strings.ToLower(pos[0])
	id, err := c.Report(ctx, username, pos[1], *reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "reported message %s from %s to the server's operator (report %s)\n", pos[1], username, printable(id))
	return nil
}

// printDropped tells of a message dropped for its franking commitment.
func printDropped(ev *client.DroppedMessage) string {
	return fmt.Sprintf("*** a message from %s (device %d) was dropped unread: it did not match its franking commitment, so it could not have been reported",
		printable(ev.From), ev.FromDevice)
}
