package cli

import (
	"context"
	"fmt"
)

// receipts: doorless receipts [delivery|read] [on|off]
func (g *globals) receipts(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("receipts")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	args = fs.Args()
	which := "both"
	if len(args) > 0 && (args[0] == "delivery" || args[0] == "read") {
		which, args = args[0], args[1:]
	}
	set, on, ok := parseOnOff(args)
	if !ok {
		return usagef("usage: doorless receipts [delivery|read] [on|off]")
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	delivery, read, err := c.Receipts(ctx)
	if err != nil {
		return err
	}
	if set {
		if which != "read" {
			delivery = on
		}
		if which != "delivery" {
			read = on
		}
		if err := c.SetReceipts(ctx, delivery, read); err != nil {
			return err
		}
	}
	word := map[bool]string{true: "on", false: "off"}
	fmt.Fprintf(env.Stdout, "delivery receipts: %s\nread receipts: %s\n", word[delivery], word[read])
	return nil
}

// parseOnOff reads the optional "on" or "off" that ends a setting's command
// line: set is false when there is none (show the setting); ok is false for
// anything else.
func parseOnOff(args []string) (set, on, ok bool) {
	switch {
	case len(args) == 0:
		return false, false, true
	case len(args) == 1 && (args[0] == "on" || args[0] == "off"):
		return true, args[0] == "on", true
	}
	return false, false, false
}
