package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/doorless/doorless/client"
)

// groupArg names a group for the SDK: "#" and its title, unless it is an id.
func groupArg(s string) string {
	if strings.HasPrefix(s, "#") || isGroupID(s) {
		return s
	}
	return "#" + s
}

// isGroupID reports whether s is a group id: 64 lower-case hex digits.
func isGroupID(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

func (g *globals) group(ctx context.Context, args []string, env *Env) error {
	if len(args) == 0 {
		return usagef("group: want create, add, remove, leave, send, list or show")
	}
	sub, args := args[0], args[1:]
	need := func(n int, want string) error {
		if len(args) < n || strings.HasPrefix(args[0], "-") {
			return usagef("group %s: want %s", sub, want)
		}
		return nil
	}
	switch sub {
	case "create":
		if err := need(2, "NAME MEMBER..."); err != nil {
			return err
		}
	case "add", "remove":
		if err := need(2, "GROUP MEMBER..."); err != nil {
			return err
		}
	case "leave", "show":
		if len(args) != 1 {
			return usagef("group %s: want GROUP", sub)
		}
	case "send":
		if err := need(1, "GROUP [--file PATH] [TEXT...]"); err != nil {
			return err
		}
		return g.send(ctx, append([]string{groupArg(args[0])}, args[1:]...), env)
	case "list":
		if len(args) != 0 {
			return usagef("group list takes no arguments")
		}
	default:
		return usagef("group: unknown command %q", sub)
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "create":
		gr, err := c.CreateGroup(ctx, args[0], lower(args[1:])...)
		if gr != nil {
			fmt.Fprintf(env.Stdout, "created #%s (%s) with %d members\n", printable(gr.Title), gr.ID, len(gr.Members))
		}
		return err
	case "add":
		return c.AddGroupMembers(ctx, groupArg(args[0]), lower(args[1:])...)
	case "remove":
		return c.RemoveGroupMembers(ctx, groupArg(args[0]), lower(args[1:])...)
	case "leave":
		return c.LeaveGroup(ctx, groupArg(args[0]))
	case "show":
		gr, err := c.Group(ctx, groupArg(args[0]))
		if err != nil {
			return err
		}
		printGroup(env.Stdout, gr, true)
		return nil
	default: // list
		gs, err := c.Groups(ctx)
		if err != nil {
			return err
		}
		for _, gr := range gs {
			printGroup(env.Stdout, gr, false)
		}
		return nil
	}
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

func printGroup(w io.Writer, gr *client.Group, members bool) {
	timer := ""
	if gr.Timer > 0 {
		timer = ", messages disappear after " + formatTimer(gr.Timer)
	}
	fmt.Fprintf(w, "#%s  %s  %d members%s\n", printable(gr.Title), gr.ID, len(gr.Members), timer)
	if !members {
		return
	}
	for _, m := range gr.Members {
		admin := ""
		if m.Admin {
			admin = " (admin)"
		}
		fmt.Fprintf(w, "    %s%s\n", m.Username, admin)
	}
}

// timer: doorless timer USERNAME|GROUP DURATION|off
func (g *globals) timer(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("timer")
	pos, err := parse(fs, args, "USERNAME|#GROUP", "DURATION|off")
	if err != nil {
		return err
	}
	d, err := parseTimer(pos[1])
	if err != nil {
		return usagef("timer: %v", err)
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	to := conversationArg(pos[0])
	if err := c.SetTimer(ctx, to, d); err != nil {
		return err
	}
	if d == 0 {
		fmt.Fprintf(env.Stdout, "messages with %s no longer disappear\n", printable(pos[0]))
	} else {
		fmt.Fprintf(env.Stdout, "messages with %s disappear %s after they are sent or received\n", printable(pos[0]), formatTimer(d))
	}
	return nil
}

// parseTimer reads "off", a Go duration ("90s", "1h30m") or a number of days
// or weeks ("1d", "2w").
func parseTimer(s string) (time.Duration, error) {
	if s == "off" || s == "0" {
		return 0, nil
	}
	var d time.Duration
	var err error
	switch {
	case strings.HasSuffix(s, "d") || strings.HasSuffix(s, "w"):
		n, perr := strconv.Atoi(s[:len(s)-1])
		unit := 24 * time.Hour
		if strings.HasSuffix(s, "w") {
			unit *= 7
		}
		d, err = time.Duration(n)*unit, perr
	default:
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 || d > client.MaxTimer || d%time.Second != 0 {
		return 0, fmt.Errorf("%q is not a timer: use off, or whole seconds to a year like 30s, 5m, 1h, 1d, 1w", s)
	}
	return d, nil
}

// formatTimer writes a timer as parseTimer reads it, briefly.
func formatTimer(d time.Duration) string {
	switch {
	case d == 0:
		return "off"
	case d%(7*24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(7*24*time.Hour)), 10) + "w"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	s = strings.TrimSuffix(s, "0m")
	if s == "" {
		return d.String()
	}
	return s
}

func formatSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// messages: doorless messages USERNAME|#GROUP [--limit N]
func (g *globals) messages(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("messages")
	limit := fs.Int("limit", 50, "show the last N messages (0: all)")
	pos, err := parse(fs, args, "USERNAME|#GROUP")
	if err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("messages: --limit must not be negative")
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	ms, err := c.Messages(ctx, conversationArg(pos[0]), *limit)
	if err != nil {
		return err
	}
	for _, m := range ms {
		printEvent(env.Stdout, m, env.Now().Location())
		// The id names the message to report (or a view-once file to view).
		fmt.Fprintf(env.Stdout, "%s[id %s]\n", continuationIndent, m.ID)
	}
	// Shown: read. A failed read receipt is not worth the command.
	if _, err := c.MarkRead(ctx, conversationArg(pos[0])); err != nil {
		fmt.Fprintf(env.Stderr, "doorless: %s\n", oneLine(err.Error()))
	}
	return nil
}

// view: doorless view MESSAGE-ID — writes a view-once file to standard
// output, once. Not to a terminal: the file may be anything, and a terminal
// would interpret it.
func (g *globals) view(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("view")
	pos, err := parse(fs, args, "MESSAGE-ID")
	if err != nil {
		return err
	}
	if isTerminal(env.Stdout) {
		return errors.New("view writes the file to standard output: redirect it to a program or a file (doorless view ID | viewer), it can be opened once")
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.OpenViewOnce(ctx, pos[0], env.Stdout)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressMin is the size from which transfers show a progress bar.
const progressMin = 4 << 20

// progress draws a progress bar on a terminal for transfers of progressMin
// bytes or more; on anything else it stays quiet.
type progress struct {
	w     io.Writer
	label string
	on    bool
	last  int
	shown bool
}

func newProgress(w io.Writer, label string) *progress {
	return &progress{w: w, label: label, on: isTerminal(w), last: -1}
}

func (p *progress) update(done, total int64) {
	if !p.on || total < progressMin {
		return
	}
	pct := int(done * 100 / total)
	if pct == p.last {
		return
	}
	p.last, p.shown = pct, true
	const width = 30
	n := pct * width / 100
	fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% of %s", p.label, strings.Repeat("=", n), strings.Repeat(" ", width-n), pct, formatSize(total))
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}
