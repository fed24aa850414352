package cli

import (
	"context"
	"fmt"
	"strconv"

	"github.com/doorless/doorless/client"
)

// devices: doorless devices | devices add CODE | devices remove ID
func (g *globals) devices(ctx context.Context, args []string, env *Env) error {
	sub := "list"
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "list":
		if len(args) != 0 {
			return usagef("devices: want no arguments, add CODE or remove ID")
		}
	case "add", "remove":
		if len(args) != 1 {
			return usagef("devices %s: want one argument", sub)
		}
	default:
		return usagef("devices: unknown command %q", sub)
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "add":
		id, err := c.ApproveLink(ctx, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "approved: the new device joins as device %d\n", id)
		return nil
	case "remove":
		id, err := strconv.ParseUint(args[0], 10, 32)
		if err != nil || id < 1 {
			return usagef("devices remove: %q is not a device id", args[0])
		}
		if err := c.RemoveDevice(ctx, uint32(id)); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "device %d removed\n", id)
		return nil
	}
	ds, err := c.Devices(ctx)
	if err != nil {
		return err
	}
	for _, d := range ds {
		this := ""
		if d.ThisDevice {
			this = "  (this device)"
		}
		fmt.Fprintf(env.Stdout, "device %d  linked %s%s\n", d.ID, d.Created.In(env.Now().Location()).Format("2006-01-02 15:04"), this)
	}
	return nil
}

// link: doorless link --server URL — makes this profile a new device of an
// existing account.
func (g *globals) link(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("link")
	server := fs.String("server", "", "server URL")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *server == "" {
		return usagef("link: --server is required")
	}
	opt, err := g.options(env)
	if err != nil {
		return err
	}
	c, err := client.Link(ctx, g.profile, *server, opt, func(code string) error {
		fmt.Fprintf(env.Stdout, "On a device of your account, run:\n\n    doorless devices add %s\n\nor scan:\n\n", code)
		if err := drawQR(env.Stdout, []byte(code)); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "\nwaiting for approval (the code is valid for 10 minutes)...\n")
		if f, ok := env.Stdout.(interface{ Sync() error }); ok {
			f.Sync()
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(env.Stdout, "linked: %s, device %d; profile in %s\n", c.Username(), c.DeviceID(), g.profile)
	return nil
}
