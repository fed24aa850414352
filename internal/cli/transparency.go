package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/doorless/doorless/client"
)

// ExitAlert is the exit status of doorless transparency status while key
// transparency alerts are stored: the server's log shows something about
// the account that it did not do.
const ExitAlert = 3

// errAlerts makes Run exit with ExitAlert, after status printed them.
var errAlerts = errors.New("key transparency alerts are stored")

// transparency: doorless transparency status | require-auditor VKEY
// [--cosignatures N] [--max-lag D] | clear
func (g *globals) transparency(ctx context.Context, args []string, env *Env) error {
	if len(args) == 0 {
		return usagef("transparency: want status, require-auditor or clear")
	}
	switch args[0] {
	case "status":
		return g.transparencyStatus(ctx, args[1:], env)
	case "require-auditor":
		return g.requireAuditor(ctx, args[1:], env)
	case "clear":
		return g.clearAlerts(ctx, args[1:], env)
	}
	return usagef("transparency: unknown subcommand %q", args[0])
}

func (g *globals) transparencyStatus(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("transparency status")
	offline := fs.Bool("offline", false, "show what the profile holds, without checking the log now")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, err := g.openQuiet(env)
	if err != nil {
		return err
	}
	defer c.Close()
	var checkErr error
	if !*offline {
		checkErr = c.CheckTransparency(ctx)
		if errors.Is(checkErr, client.ErrTransparencyAlert) {
			checkErr = nil // printed below, with the others
		}
	}
	st, err := c.TransparencyStatus(ctx)
	if err != nil {
		return err
	}
	loc := env.Now().Location()
	out := env.Stdout
	fmt.Fprintf(out, "log:          %s\n", printable(st.Origin))
	fmt.Fprintf(out, "head:         %d epochs\n", st.HeadSize)
	// The last check that succeeded (this one, unless it failed).
	last := "never"
	if !st.LastCheck.IsZero() {
		last = st.LastCheck.In(loc).Format(time.DateTime)
	}
	switch {
	case checkErr != nil:
		fmt.Fprintf(out, "last check:   failed now; the last that succeeded: %s\n", last)
	case !st.LastCheck.IsZero() && !st.Monitored:
		fmt.Fprintf(out, "last check:   %s (your entry is not in the log yet)\n", last)
	default:
		fmt.Fprintf(out, "last check:   %s\n", last)
	}
	fmt.Fprintf(out, "unchecked:    an alert after %s without a check that succeeds\n", formatLag(st.UncheckedAfter))
	fmt.Fprintf(out, "epoch age:    at most %s (an older log is refused)\n", formatLag(st.Policy.MaxEpochAge))
	if len(st.Policy.Auditors) == 0 {
		fmt.Fprintf(out, "auditors:     none required\n")
	} else {
		fmt.Fprintf(out, "auditors:     %d of %d must have cosigned within %s\n", st.Policy.Cosignatures, len(st.Policy.Auditors), formatLag(st.Policy.MaxAuditLag))
		for _, a := range st.Policy.Auditors {
			fmt.Fprintf(out, "              %s\n", printable(a))
		}
	}
	if checkErr != nil {
		fmt.Fprintf(env.Stderr, "doorless: warning: the check failed: %s\n", oneLine(describe(checkErr)))
	}
	if len(st.Alerts) == 0 {
		fmt.Fprintf(out, "alerts:       none\n")
		return nil
	}
	fmt.Fprintf(out, "\n")
	printAlertBanner(out, st.Alerts)
	for _, a := range st.Alerts {
		fmt.Fprintf(out, "  [%d] %s %s (%s): %s\n", a.ID, a.At.In(loc).Format(time.DateTime), printable(a.Subject), a.Kind, printable(a.Detail))
		if hint := alertHint(&a); hint != "" {
			fmt.Fprintf(out, "      %s\n", hint)
		}
	}
	fmt.Fprintf(out, "\nOnce you have looked into them: doorless transparency clear\n")
	return errAlerts
}

// printAlertBanner prints the loud part of alerts: what each kind among
// them means. A device added by another of the account's devices may well
// be the user's own doing: a notice, said to be one.
func printAlertBanner(w io.Writer, as []client.TransparencyAlert) {
	var alerts, added, unchecked int
	for _, a := range as {
		switch a.Kind {
		case client.AlertDeviceAdded:
			added++
		case client.AlertUnchecked:
			unchecked++
		default:
			alerts++
		}
	}
	if alerts+unchecked > 0 {
		fmt.Fprintf(w, "!!! KEY TRANSPARENCY ALERT: %d alert(s).\n", alerts+unchecked)
	} else {
		fmt.Fprintf(w, "!!! KEY TRANSPARENCY NOTICE: %d notice(s).\n", added)
	}
	if alerts > 0 {
		fmt.Fprintf(w, "!!! The server's log shows keys or devices for your account that you did not create, or went back\n")
		fmt.Fprintf(w, "!!! on what it showed before. Someone may be able to read messages sent to you. Check your devices\n")
		fmt.Fprintf(w, "!!! (doorless devices) and warn your contacts.\n")
	}
	if unchecked > 0 {
		fmt.Fprintf(w, "!!! This device could not check your account's entry in the log (for hours, or right after it\n")
		fmt.Fprintf(w, "!!! joined). If it was online, the server may be hiding from it keys or devices added to your\n")
		fmt.Fprintf(w, "!!! account. Check your devices (doorless devices), and your status from another device.\n")
	}
	if added > 0 {
		fmt.Fprintf(w, "!!! Another of your devices added a device to your account. If you approved that link, all is well.\n")
		fmt.Fprintf(w, "!!! If not, remove the device (doorless devices remove ID): a removed or stolen device can add\n")
		fmt.Fprintf(w, "!!! itself back.\n")
	}
}

// alertHint is what to do about one alert, "" when the banner says it.
func alertHint(a *client.TransparencyAlert) string {
	if a.Kind == client.AlertDeviceAdded && a.Device != 0 {
		return fmt.Sprintf("if you did not add it: doorless devices remove %d", a.Device)
	}
	return ""
}

func formatLag(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return d.String()
}

func (g *globals) requireAuditor(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("transparency require-auditor")
	n := fs.Int("cosignatures", 0, "how many of the auditors must have cosigned (default: as before, at least 1)")
	lag := fs.String("max-lag", "", "how old their newest cosignature may be (e.g. 24h, 2d; default: as before, 24h)")
	pos, err := parse(fs, args, "VKEY")
	if err != nil {
		return err
	}
	if *n < 0 {
		return usagef("transparency require-auditor: --cosignatures must not be negative")
	}
	var maxLag time.Duration
	if *lag != "" {
		if maxLag, err = parseLag(*lag); err != nil {
			return usagef("transparency require-auditor: %v", err)
		}
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.RequireAuditor(ctx, pos[0], *n, maxLag); err != nil {
		return err
	}
	st, err := c.TransparencyStatus(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "lookups now need %d of %d auditors' cosignatures, at most %s old\n",
		st.Policy.Cosignatures, len(st.Policy.Auditors), formatLag(st.Policy.MaxAuditLag))
	return nil
}

// parseLag reads a Go duration or a number of days ("2d").
func parseLag(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration: use e.g. 1h, 24h, 2d", s)
	}
	return d, nil
}

func (g *globals) clearAlerts(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("transparency clear")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, err := g.openQuiet(env)
	if err != nil {
		return err
	}
	defer c.Close()
	as, err := c.TransparencyAlerts(ctx)
	if err != nil {
		return err
	}
	if len(as) == 0 {
		fmt.Fprintf(env.Stdout, "no alerts\n")
		return nil
	}
	// Only those read: an alert raised by another process meanwhile
	// stays.
	n, err := c.ClearTransparencyAlerts(ctx, as[len(as)-1].ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "cleared %d alert(s)\n", n)
	return nil
}

// warnAlerts prints the loud warning every command prints while alerts are
// stored.
func warnAlerts(ctx context.Context, c *client.Client, env *Env) {
	as, err := c.TransparencyAlerts(ctx)
	if err != nil || len(as) == 0 {
		return
	}
	printAlertBanner(env.Stderr, as)
	fmt.Fprintf(env.Stderr, "!!! See: doorless transparency status\n")
}
