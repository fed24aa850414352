package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// account: doorless account delete [--yes] | account sealed-from-anyone [on|off]
func (g *globals) account(ctx context.Context, args []string, env *Env) error {
	if len(args) == 0 {
		return usagef("account: want delete or sealed-from-anyone")
	}
	switch sub, args := args[0], args[1:]; sub {
	case "delete":
		return g.deleteAccount(ctx, args, env)
	case "sealed-from-anyone":
		return g.sealedFromAnyone(ctx, args, env)
	default:
		return usagef("account: unknown command %q", sub)
	}
}

// maxConfirmation bounds the line read to confirm a deletion.
const maxConfirmation = 256

func (g *globals) deleteAccount(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("account delete")
	yes := fs.Bool("yes", false, "delete without asking")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	if !*yes {
		fmt.Fprintf(env.Stdout, "This deletes the account %s on %s for all its devices, with its undelivered messages,\n"+
			"and removes this device's profile from %s. It cannot be undone.\n"+
			"Type the username to confirm: ", c.Username(), c.ServerURL(), g.profile)
		line, err := bufio.NewReader(io.LimitReader(env.Stdin, maxConfirmation)).ReadString('\n')
		fmt.Fprintln(env.Stdout)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the confirmation: %v", err)
		}
		if strings.TrimSpace(line) != c.Username() {
			return errors.New("not deleted: what you typed is not the username")
		}
	}
	if err := c.DeleteAccount(ctx); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "account %s deleted from %s; profile removed from %s\n", c.Username(), c.ServerURL(), g.profile)
	return nil
}

func (g *globals) sealedFromAnyone(ctx context.Context, args []string, env *Env) error {
	set, on, ok := parseOnOff(args)
	if !ok {
		return usagef("account sealed-from-anyone: want on, off or nothing")
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	if set {
		if err := c.SetUnrestrictedAccess(ctx, on); err != nil {
			return err
		}
	} else if on, err = c.UnrestrictedAccess(ctx); err != nil {
		return err
	}
	if on {
		fmt.Fprintln(env.Stdout, "sealed-sender messages from anyone: on (anyone may send you messages the server cannot attribute)")
	} else {
		fmt.Fprintln(env.Stdout, "sealed-sender messages from anyone: off (only your contacts may send you sealed messages)")
	}
	return nil
}
