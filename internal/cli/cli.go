// Package cli is the doorless command-line client: argument parsing, prompts
// and output over the client SDK. cmd/doorless only wires it to the process
// (arguments, standard streams, signals), so that tests can run every command
// in-process.
//
// Run is safe to call from several goroutines with different profiles; two
// runs on one profile coordinate through the profile's database, as two
// processes would.
package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/doorless/doorless/client"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/requestlog"
	"github.com/doorless/doorless/kt"
)

// Exit statuses.
const (
	ExitOK    = 0
	ExitError = 1 // the command failed; one line on stderr says why
	ExitUsage = 2 // the command line was wrong
)

// PassphraseEnv names the environment variable a profile passphrase is read
// from, when --passphrase-file is not given.
const PassphraseEnv = "DOORLESS_PASSPHRASE"

// MaxStdinMessage bounds a message read from standard input.
const MaxStdinMessage = 64 << 10

// Env is what a run sees of its process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Now is the clock used to print times; nil means time.Now.
	Now func() time.Time
}

const usage = `usage: doorless [--profile DIR] [--passphrase-file FILE] COMMAND [ARGS]

commands:
  register --server URL [--invite CODE] USERNAME
                             create an identity and a device, register USERNAME
  link --server URL          make this profile a new device of your account (prints a code)
  devices                    list your devices
  devices add CODE           approve a new device that printed CODE
  devices remove ID          revoke one of your devices
  send USERNAME|#GROUP [--file PATH [--view-once]] [TEXT...]
                             send TEXT (or standard input), and a file, to USERNAME or a group
  receive [--json]           print every pending message, then exit
  listen [--json]            print messages as they arrive, until interrupted
  safety-number USERNAME     show the safety number with USERNAME, and its QR code
  verify USERNAME NUMBER     mark USERNAME verified after comparing safety numbers
  messages USERNAME|#GROUP [--limit N]
                             show the conversation kept on this device, with each
                             message's id, and mark it read
  report USERNAME MESSAGE-ID [--reason TEXT]
                             report a message USERNAME sent you to the server's operator:
                             it reveals the message, which the server verifies came from
                             USERNAME
  receipts [delivery|read] [on|off]
                             send delivery and read receipts, or not (without on or off:
                             show the settings)
  view MESSAGE-ID            write a view-once file to standard output, once
  timer USERNAME|#GROUP DURATION|off
                             make messages disappear after DURATION (30s, 5m, 1h, 1d, 1w)
  group create NAME MEMBER...   create a group (you are its admin)
  group add|remove GROUP MEMBER...
                             add or remove members (admins only)
  group send GROUP [--file PATH] [TEXT...]
                             send to every member
  group list | show GROUP | leave GROUP
  account sealed-from-anyone [on|off]
                             accept sealed-sender messages from anyone, not only
                             your contacts (without on or off: show the setting)
  account delete [--yes]     delete your account on the server (every device, undelivered
                             messages) and this profile; asks you to type your username
  transparency status [--offline]
                             check your account's entry in the key transparency log now,
                             and show the log's head, the last check that succeeded and
                             any alerts and notices (exit status 3 while any are stored)
  transparency require-auditor VKEY [--cosignatures N] [--max-lag D]
                             accept keys only with cosignatures of the auditor VKEY (N of
                             the auditors required, at most D old; default 1 and 24h)
  transparency clear         clear the alerts shown, once you have looked into them
  legal verify-log URL [--key VKEY] [--state FILE] [--report PERIOD|latest]
                             verify the server's public log of legal requests (no profile
                             needed): its signed checkpoint, every entry, publications and
                             transparency reports; --state keeps the checkpoint to catch a
                             rollback or fork next time (exit status 3 if it does not verify)
  legal notices              list the published legal requests that named your account,
                             checked against the verified log (new ones also show up in
                             receive and listen)

The profile (identity, sessions, keys) lives in DIR, by default %s.
With --passphrase-file, or $DOORLESS_PASSPHRASE, its secrets are encrypted.
`

// usageError is a mistake in the command line: ExitUsage, and the usage text.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// Run runs one doorless command line (without the program name) and returns
// the exit status.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	err := run(ctx, args, &env)
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(env.Stdout, usage, defaultProfile())
		return ExitOK
	case errors.Is(err, errAlerts):
		return ExitAlert // transparency status printed them
	case errors.Is(err, requestlog.ErrInvalidLog):
		fmt.Fprintf(env.Stderr, "doorless: the legal request log does NOT verify: %s\n", oneLine(err.Error()))
		return ExitLogInvalid
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "doorless: %s\n", ue.msg)
		fmt.Fprintf(env.Stderr, usage, defaultProfile())
		return ExitUsage
	default:
		fmt.Fprintf(env.Stderr, "doorless: %s\n", oneLine(describe(err)))
		return ExitError
	}
}

// defaultProfile is the profile directory used without --profile.
func defaultProfile() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "doorless-profile"
	}
	return filepath.Join(dir, "doorless")
}

type globals struct {
	profile        string
	passphraseFile string
}

func run(ctx context.Context, args []string, env *Env) error {
	var g globals
	fs := newFlagSet("doorless")
	fs.StringVar(&g.profile, "profile", defaultProfile(), "profile directory")
	fs.StringVar(&g.passphraseFile, "passphrase-file", "", "file holding the profile passphrase")
	if err := fs.Parse(args); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) == 0 {
		return usagef("no command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "register":
		return g.register(ctx, args, env)
	case "send":
		return g.send(ctx, args, env)
	case "receive":
		return g.receive(ctx, args, env, true)
	case "listen":
		return g.receive(ctx, args, env, false)
	case "safety-number":
		return g.safetyNumber(ctx, args, env)
	case "verify":
		return g.verify(ctx, args, env)
	case "group":
		return g.group(ctx, args, env)
	case "devices":
		return g.devices(ctx, args, env)
	case "link":
		return g.link(ctx, args, env)
	case "timer":
		return g.timer(ctx, args, env)
	case "messages":
		return g.messages(ctx, args, env)
	case "view":
		return g.view(ctx, args, env)
	case "account":
		return g.account(ctx, args, env)
	case "receipts":
		return g.receipts(ctx, args, env)
	case "report":
		return g.report(ctx, args, env)
	case "transparency":
		return g.transparency(ctx, args, env)
	case "legal":
		return g.legal(ctx, args, env)
	case "help":
		return flag.ErrHelp
	default:
		return usagef("unknown command %q", cmd)
	}
}

// newFlagSet makes a flag set that reports errors to the caller instead of
// printing them.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses the flags at the start of args: --help is flag.ErrHelp,
// anything wrong a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return usagef("%s: %v", fs.Name(), err)
	}
	return err
}

// parse parses flags that may come before or after the positional arguments
// ("register alice --server URL" and "register --server URL alice"), and
// checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, names ...string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != len(names) {
		return nil, usagef("%s: want %s", fs.Name(), strings.Join(names, " "))
	}
	return pos, nil
}

func (g *globals) options(env *Env) (client.Options, error) {
	var opt client.Options
	switch {
	case g.passphraseFile != "":
		b, err := os.ReadFile(g.passphraseFile)
		if err != nil {
			return opt, fmt.Errorf("reading the passphrase file: %v", err)
		}
		opt.Passphrase = strings.TrimRight(string(b), "\r\n")
		if opt.Passphrase == "" {
			return opt, errors.New("the passphrase file is empty")
		}
	default:
		opt.Passphrase = env.Getenv(PassphraseEnv)
	}
	return opt, nil
}

// open opens the profile and, while key transparency alerts are stored,
// warns loudly on standard error.
func (g *globals) open(env *Env) (*client.Client, error) {
	c, err := g.openQuiet(env)
	if err != nil {
		return nil, err
	}
	warnAlerts(context.Background(), c, env)
	return c, nil
}

// openQuiet opens the profile without the alert warning, for the commands
// that show the alerts themselves.
func (g *globals) openQuiet(env *Env) (*client.Client, error) {
	opt, err := g.options(env)
	if err != nil {
		return nil, err
	}
	return client.Open(g.profile, opt)
}

func (g *globals) register(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("register")
	server := fs.String("server", "", "server URL, e.g. https://chat.example.org")
	invite := fs.String("invite", "", "invite code, when the server requires one")
	pos, err := parse(fs, args, "USERNAME")
	if err != nil {
		return err
	}
	if *server == "" {
		return usagef("register: --server is required")
	}
	username := strings.ToLower(pos[0])
	if !api.ValidUsername(username) {
		return fmt.Errorf("%q is not a valid username: 3 to 32 letters, digits or underscores, starting with a letter", pos[0])
	}
	opt, err := g.options(env)
	if err != nil {
		return err
	}
	c, err := client.Register(ctx, g.profile, *server, username, *invite, opt)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(env.Stdout, "registered %s on %s (device %d); profile in %s\n", c.Username(), c.ServerURL(), c.DeviceID(), g.profile)
	return nil
}

func (g *globals) send(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("send")
	file := fs.String("file", "", "attach the file at PATH")
	viewOnce := fs.Bool("view-once", false, "the file can be opened once")
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) == 0 || len(pos) > 0 {
			// Flags go before the text: "send bob --file F hi" or
			// "send --file F bob hi"; the text is taken as it is.
			pos = append(pos, args...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) == 0 {
		return usagef("send: want USERNAME|#GROUP [--file PATH] [TEXT...]")
	}
	return g.sendTo(ctx, conversationArg(pos[0]), pos[1:], *file, *viewOnce, env)
}

// conversationArg names a conversation for the SDK: a username (lower-cased),
// or a group as "#" and its title, or a group id.
func conversationArg(s string) string {
	if strings.HasPrefix(s, "#") || isGroupID(s) {
		return s
	}
	return strings.ToLower(s)
}

func (g *globals) sendTo(ctx context.Context, to string, words []string, file string, viewOnce bool, env *Env) error {
	if viewOnce && file == "" {
		return usagef("send: --view-once needs --file")
	}
	text := strings.Join(words, " ")
	if len(words) == 0 && file == "" {
		b, err := io.ReadAll(io.LimitReader(env.Stdin, MaxStdinMessage+1))
		if err != nil {
			return fmt.Errorf("reading standard input: %v", err)
		}
		if len(b) > MaxStdinMessage {
			return fmt.Errorf("the message on standard input is longer than %d bytes", MaxStdinMessage)
		}
		text = strings.TrimRight(string(b), "\n")
	}
	if text == "" && file == "" {
		return errors.New("nothing to send: the message is empty")
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	m := client.Outgoing{Text: text, File: file, ViewOnce: viewOnce}
	if file != "" {
		bar := newProgress(env.Stderr, "uploading "+filepath.Base(file))
		defer bar.done()
		m.Progress = bar.update
	}
	res, err := c.SendMessage(ctx, to, m)
	if res != nil && res.TranscriptErr != nil {
		fmt.Fprintf(env.Stderr, "doorless: warning: sent, but your other devices may not show it: %s\n", oneLine(describe(res.TranscriptErr)))
	}
	if err != nil {
		return err
	}
	if res.IdentityChanged {
		fmt.Fprintf(env.Stderr, "doorless: warning: %s's identity key has changed; compare safety numbers (doorless safety-number %s)\n", to, to)
	}
	return nil
}

// jsonEvent is one line of receive --json and listen --json.
type jsonEvent struct {
	Event           string              `json:"event"` // "message", "identity_changed", "group_update", "receipt", "transparency_alert", "dropped" or "legal_notice"
	ID              string              `json:"id,omitempty"`
	From            string              `json:"from,omitempty"`
	Device          uint32              `json:"device,omitempty"`
	Outgoing        bool                `json:"outgoing,omitempty"`
	To              string              `json:"to,omitempty"`
	Group           *client.GroupRef    `json:"group,omitempty"`
	Sent            string              `json:"sent,omitempty"`     // RFC 3339
	Received        string              `json:"received,omitempty"` // RFC 3339
	Text            string              `json:"text,omitempty"`
	Attachment      *client.Attachment  `json:"attachment,omitempty"`
	ExpiresIn       string              `json:"expires_in,omitempty"`
	TimerUpdate     bool                `json:"timer_update,omitempty"`
	IdentityChanged bool                `json:"identity_changed,omitempty"`
	WasVerified     bool                `json:"was_verified,omitempty"`
	Update          *client.GroupUpdate `json:"update,omitempty"`
	DeliveredTo     []string            `json:"delivered_to,omitempty"` // messages sent: whose devices got it
	ReadBy          []string            `json:"read_by,omitempty"`      // messages sent: who read it
	Read            bool                `json:"read,omitempty"`         // a receipt: read, not only delivered
	Messages        []string            `json:"messages,omitempty"`     // a receipt: the ids of the messages
	Alert           *jsonAlert          `json:"alert,omitempty"`        // a key transparency alert
	Notice          *client.LegalNotice `json:"notice,omitempty"`       // a legal notice
}

// jsonAlert is a key transparency alert in receive --json.
type jsonAlert struct {
	ID      int64  `json:"id"`
	At      string `json:"at"` // RFC 3339
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	Detail  string `json:"detail"`
	Device  uint32 `json:"device,omitempty"` // the device a device_added alert is about
}

func (g *globals) receive(ctx context.Context, args []string, env *Env, untilEmpty bool) error {
	name := "listen"
	if untilEmpty {
		name = "receive"
	}
	fs := newFlagSet(name)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	noticesBeforeReceive(ctx, c, env)
	out := bufio.NewWriter(env.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	var bar *progress
	c.SetDownloadProgress(func(name string, done, total int64) {
		if bar == nil {
			bar = newProgress(env.Stderr, "downloading "+printable(name))
		}
		bar.update(done, total)
		if done == total {
			bar.done()
			bar = nil
		}
	})
	handle := func(ev client.Event) error {
		if *asJSON {
			enc.Encode(toJSON(ev))
		} else {
			printEvent(out, ev, env.Now().Location())
		}
		// Flush before the SDK marks the message delivered: what it counts as
		// handed over must have reached the output.
		return out.Flush()
	}
	err = c.Receive(ctx, client.ReceiveOptions{UntilEmpty: untilEmpty}, handle)
	if !untilEmpty && errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil // listen ends when interrupted
	}
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	return err
}

func toJSON(ev client.Event) jsonEvent {
	switch ev := ev.(type) {
	case *client.Message:
		j := jsonEvent{
			Event: "message", ID: ev.ID, From: ev.From, Device: ev.FromDevice, Outgoing: ev.Outgoing, To: ev.To,
			Group: ev.Group, Sent: ev.Sent.UTC().Format(time.RFC3339Nano), Received: ev.Received.UTC().Format(time.RFC3339Nano),
			Text: ev.Text, Attachment: ev.Attachment, TimerUpdate: ev.TimerUpdate, IdentityChanged: ev.IdentityChanged,
			DeliveredTo: ev.DeliveredTo, ReadBy: ev.ReadBy,
		}
		if ev.ExpiresIn > 0 {
			j.ExpiresIn = formatTimer(ev.ExpiresIn)
		}
		return j
	case *client.IdentityChanged:
		return jsonEvent{Event: "identity_changed", From: ev.Username, WasVerified: ev.Verified}
	case *client.GroupUpdate:
		return jsonEvent{Event: "group_update", Group: &ev.Group, From: ev.By, Update: ev}
	case *client.Receipt:
		return jsonEvent{Event: "receipt", From: ev.From, Read: ev.Read, Messages: ev.Messages}
	case *client.LegalNotice:
		return jsonEvent{Event: "legal_notice", Notice: ev}
	case *client.TransparencyAlert:
		return jsonEvent{Event: "transparency_alert", Alert: &jsonAlert{ID: ev.ID, At: ev.At.UTC().Format(time.RFC3339Nano),
			Kind: string(ev.Kind), Subject: ev.Subject, Detail: ev.Detail, Device: ev.Device}}
	case *client.DroppedMessage:
		return jsonEvent{Event: "dropped", From: ev.From, Device: ev.FromDevice, Received: ev.Received.UTC().Format(time.RFC3339Nano)}
	}
	return jsonEvent{Event: "unknown"}
}

// printEvent prints an event for a person. Everything that came from the
// network goes through printable.
func printEvent(out io.Writer, ev client.Event, loc *time.Location) {
	switch ev := ev.(type) {
	case *client.Message:
		when := ev.Sent.In(loc).Format(time.DateTime)
		who := printable(ev.From)
		if ev.Outgoing {
			who = "you"
			if ev.Group == nil {
				who += " → " + printable(ev.To)
			}
		}
		if ev.Group != nil {
			who = "#" + printable(ev.Group.Title) + " " + who
		}
		marker := ""
		if ev.IdentityChanged {
			marker = " [identity key changed]"
		}
		if ev.TimerUpdate {
			fmt.Fprintf(out, "*** [%s] %s set disappearing messages to %s\n", when, who, formatTimer(ev.ExpiresIn))
			if ev.Text == "" && ev.Attachment == nil {
				return
			}
		}
		if ev.ExpiresIn > 0 {
			marker += " [disappears after " + formatTimer(ev.ExpiresIn) + "]"
		}
		switch {
		case len(ev.ReadBy) > 0:
			marker += " [read by " + printable(strings.Join(ev.ReadBy, ", ")) + "]"
		case len(ev.DeliveredTo) > 0:
			marker += " [delivered to " + printable(strings.Join(ev.DeliveredTo, ", ")) + "]"
		}
		fmt.Fprintf(out, "[%s] %s%s: %s\n", when, who, marker, printable(ev.Text))
		if a := ev.Attachment; a != nil {
			desc := fmt.Sprintf("%s, %s, %s", printable(a.FileName), printable(a.ContentType), formatSize(a.Size))
			switch {
			case a.Err != "":
				fmt.Fprintf(out, "%s[file %s: could not be fetched: %s]\n", continuationIndent, desc, oneLine(a.Err))
			case a.ViewOnce && ev.Outgoing:
				fmt.Fprintf(out, "%s[view-once file %s]\n", continuationIndent, desc)
			case a.ViewOnce:
				fmt.Fprintf(out, "%s[view-once file %s: doorless view %s]\n", continuationIndent, desc, ev.ID)
			case a.Path != "":
				fmt.Fprintf(out, "%s[file %s saved to %s]\n", continuationIndent, desc, printable(a.Path))
			default:
				fmt.Fprintf(out, "%s[file %s]\n", continuationIndent, desc)
			}
		}
	case *client.Receipt:
		what := "got"
		if ev.Read {
			what = "read"
		}
		n := "message"
		if len(ev.Messages) != 1 {
			n = "messages"
		}
		fmt.Fprintf(out, "*** %s %s %d of your %s\n", printable(ev.From), what, len(ev.Messages), n)
	case *client.TransparencyAlert:
		printAlertBanner(out, []client.TransparencyAlert{*ev})
		fmt.Fprintf(out, "!!! [%s] %s (%s): %s\n", ev.At.In(loc).Format(time.DateTime), printable(ev.Subject), ev.Kind, printable(ev.Detail))
		if hint := alertHint(ev); hint != "" {
			fmt.Fprintf(out, "!!! %s\n", hint)
		}
		fmt.Fprintf(out, "!!! See: doorless transparency status\n")
	case *client.DroppedMessage:
		fmt.Fprintln(out, printDropped(ev))
	case *client.LegalNotice:
		printNotice(out, ev, loc)
		fmt.Fprintf(out, "!!! See: doorless legal notices\n")
	case *client.IdentityChanged:
		u := printable(ev.Username)
		fmt.Fprintf(out, "*** %s's identity key has changed: compare safety numbers (doorless safety-number %s)\n", u, u)
	case *client.GroupUpdate:
		name := "#" + printable(ev.Group.Title)
		by := printable(ev.By)
		switch {
		case ev.Joined:
			fmt.Fprintf(out, "*** %s added you to %s\n", by, name)
		case ev.Left:
			fmt.Fprintf(out, "*** you are no longer in %s (%s's change)\n", name, by)
		}
		if len(ev.Added) > 0 {
			fmt.Fprintf(out, "*** %s: %s added %s\n", name, by, printable(strings.Join(ev.Added, ", ")))
		}
		if len(ev.Removed) > 0 && !ev.Left {
			fmt.Fprintf(out, "*** %s: %s removed %s\n", name, by, printable(strings.Join(ev.Removed, ", ")))
		}
		if ev.Title != "" {
			fmt.Fprintf(out, "*** %s: %s renamed the group\n", name, by)
		}
		if ev.TimerChanged {
			fmt.Fprintf(out, "*** %s: %s set disappearing messages to %s\n", name, by, formatTimer(ev.Timer))
		}
	}
}

func (g *globals) safetyNumber(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("safety-number")
	pos, err := parse(fs, args, "USERNAME")
	if err != nil {
		return err
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	sn, err := c.SafetyNumber(ctx, strings.ToLower(pos[0]))
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Safety number with %s:\n\n", sn.Username)
	for _, line := range groupDigits(sn.Displayable) {
		fmt.Fprintf(env.Stdout, "    %s\n", line)
	}
	fmt.Fprintln(env.Stdout)
	if err := drawQR(env.Stdout, sn.Scannable); err != nil {
		return err
	}
	state := "not verified: compare this number with " + sn.Username + " in person or over a trusted channel, then run doorless verify " + sn.Username + " NUMBER"
	if sn.Verified {
		state = "verified"
	}
	fmt.Fprintf(env.Stdout, "\n%s\n", state)
	return nil
}

func (g *globals) verify(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("verify")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) < 2 {
		return usagef("verify: want USERNAME NUMBER")
	}
	// The number may be given as one argument or as its groups of five.
	username, number := strings.ToLower(args[0]), strings.Join(args[1:], "")
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Verify(ctx, username, number); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s is verified\n", username)
	return nil
}

// groupDigits lays out a 60-digit safety number as Signal shows it: twelve
// groups of five, four to a line.
func groupDigits(s string) []string {
	var groups []string
	for len(s) > 5 {
		groups = append(groups, s[:5])
		s = s[5:]
	}
	groups = append(groups, s)
	var lines []string
	for len(groups) > 4 {
		lines = append(lines, strings.Join(groups[:4], " "))
		groups = groups[4:]
	}
	return append(lines, strings.Join(groups, " "))
}

// printable makes received text safe to print on one entry of the terminal:
// control characters (but tab) and the bidirectional overrides that reorder
// what follows become U+FFFD, and each line after the first is indented, so
// that a message cannot drive the terminal or forge a line of its own (a fake
// "[time] bob: ..." or "*** ... identity key has changed").
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0),
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return '\uFFFD'
		}
		return r
	}, s)
	return strings.ReplaceAll(s, "\n", "\n"+continuationIndent)
}

// continuationIndent starts the second and later lines of a message.
const continuationIndent = "    "

// oneLine keeps an error to the single line the CLI promises, and makes it
// safe to print: parts of it (a server's error message) come from the network.
func oneLine(s string) string {
	return strings.Join(strings.Fields(printable(s)), " ")
}

// describe turns an error into what a person needs to read.
func describe(err error) string {
	var ae *api.Error
	switch {
	case errors.Is(err, client.ErrNoProfile):
		return "no profile here: run doorless register first (or pass --profile DIR)"
	case errors.Is(err, client.ErrProfileExists):
		return "this profile is already registered (use another --profile DIR)"
	case errors.Is(err, client.ErrWrongPassphrase):
		return "the passphrase does not open this profile"
	case errors.Is(err, client.ErrUnknownUser):
		return "no such user on this server"
	case errors.Is(err, client.ErrUsernameTaken):
		return "that username is taken"
	case errors.Is(err, client.ErrInvalidInvite):
		return "the invite code is not valid (unknown, used or expired)"
	case errors.Is(err, client.ErrRegistrationClosed):
		return "this server does not accept registrations"
	case errors.Is(err, client.ErrUntrustedIdentity):
		return "not sent: the recipient's identity key changed since you verified it; compare safety numbers again (doorless safety-number USERNAME) and verify"
	case errors.Is(err, client.ErrUnlistedDevice):
		return "not sent: the server offered a device the account's signed device list does not name (someone may have added a device behind the account's back)"
	case errors.Is(err, client.ErrDeviceListRollback):
		return "not sent: the server presented an old or forked device list for the account"
	case errors.Is(err, client.ErrBadLinkCode):
		return "that is not a link code (it starts with doorless-link:)"
	case errors.Is(err, client.ErrLinkExpired):
		return "the link code expired or was used: run doorless link again"
	case errors.Is(err, client.ErrUnknownGroup):
		return "no such group on this device (doorless group list)"
	case errors.Is(err, client.ErrNotGroupAdmin):
		return "only an admin of the group may change it"
	case errors.Is(err, client.ErrTransparencyRollback):
		return "refused: the server's key transparency log went back on what it showed this device before (an alert is kept: doorless transparency status)"
	case errors.Is(err, kt.ErrInconsistent):
		return "refused: the server's key transparency log is not consistent with what this device saw before: it may be showing devices different logs (doorless transparency status)"
	case errors.Is(err, kt.ErrStale):
		return "refused: the server's key transparency log has not moved for over an hour: it may be showing this device an old log " +
			"(or this device's clock is off; doorless transparency status)"
	case errors.Is(err, kt.ErrMissingCosignature):
		return "refused: the server's key transparency proof lacks the auditor cosignatures you require (doorless transparency status)"
	case errors.Is(err, client.ErrTransparency):
		return "refused: the server did not prove the user's keys in its key transparency log; nothing was encrypted to them (" + err.Error() + ")"
	case errors.Is(err, client.ErrTransparencyAlert):
		return "key transparency alert: the log shows changes to your account that this device did not make (doorless transparency status)"
	case errors.Is(err, client.ErrSafetyNumberMismatch):
		return "the safety numbers do not match: do not trust this contact until they do"
	case errors.Is(err, client.ErrUnknownMessage):
		return "no such message from that user on this device (doorless messages USERNAME shows the ids)"
	case errors.Is(err, client.ErrNotReportable):
		return "that message cannot be reported: this device kept nothing to prove it with (it came before message franking)"
	case errors.Is(err, client.ErrAlreadyReported):
		return "you reported that message already"
	case errors.Is(err, client.ErrReportRejected) && errors.As(err, &ae):
		return "the server rejected the report: " + ae.Message
	case errors.As(err, &ae):
		return "server refused: " + ae.Message + " (" + ae.Code + ")"
	}
	return err.Error()
}
