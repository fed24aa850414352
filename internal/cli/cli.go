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
  send USERNAME [TEXT...]    send TEXT (or standard input) to USERNAME
  receive [--json]           print every pending message, then exit
  listen [--json]            print messages as they arrive, until interrupted
  safety-number USERNAME     show the safety number with USERNAME, and its QR code
  verify USERNAME NUMBER     mark USERNAME verified after comparing safety numbers

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

// parse parses flags that may come before or after the positional arguments
// ("register alice --server URL" and "register --server URL alice"), and
// checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, names ...string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
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

func (g *globals) open(env *Env) (*client.Client, error) {
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("send: %v", err)
	}
	args = fs.Args()
	if len(args) == 0 {
		return usagef("send: want USERNAME [TEXT...]")
	}
	to := strings.ToLower(args[0])
	text := strings.Join(args[1:], " ")
	if len(args) == 1 {
		b, err := io.ReadAll(io.LimitReader(env.Stdin, MaxStdinMessage+1))
		if err != nil {
			return fmt.Errorf("reading standard input: %v", err)
		}
		if len(b) > MaxStdinMessage {
			return fmt.Errorf("the message on standard input is longer than %d bytes", MaxStdinMessage)
		}
		text = strings.TrimRight(string(b), "\n")
	}
	if text == "" {
		return errors.New("nothing to send: the message is empty")
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := c.Send(ctx, to, text)
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
	Event           string `json:"event"` // "message" or "identity_changed"
	ID              string `json:"id,omitempty"`
	From            string `json:"from"`
	Device          uint32 `json:"device,omitempty"`
	Sent            string `json:"sent,omitempty"`     // RFC 3339
	Received        string `json:"received,omitempty"` // RFC 3339
	Text            string `json:"text,omitempty"`
	IdentityChanged bool   `json:"identity_changed,omitempty"`
	WasVerified     bool   `json:"was_verified,omitempty"`
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
	out := bufio.NewWriter(env.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	handle := func(ev client.Event) error {
		switch ev := ev.(type) {
		case *client.Message:
			if *asJSON {
				enc.Encode(jsonEvent{
					Event: "message", ID: ev.ID, From: ev.From, Device: ev.FromDevice,
					Sent: ev.Sent.UTC().Format(time.RFC3339Nano), Received: ev.Received.UTC().Format(time.RFC3339Nano),
					Text: ev.Text, IdentityChanged: ev.IdentityChanged,
				})
			} else {
				marker := ""
				if ev.IdentityChanged {
					marker = " [identity key changed]"
				}
				fmt.Fprintf(out, "[%s] %s%s: %s\n", ev.Sent.In(env.Now().Location()).Format(time.DateTime), ev.From, marker, printable(ev.Text))
			}
		case *client.IdentityChanged:
			if *asJSON {
				enc.Encode(jsonEvent{Event: "identity_changed", From: ev.Username, WasVerified: ev.Verified})
			} else {
				fmt.Fprintf(out, "*** %s's identity key has changed: compare safety numbers (doorless safety-number %s)\n", ev.Username, ev.Username)
			}
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("verify: %v", err)
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
	case errors.Is(err, client.ErrSafetyNumberMismatch):
		return "the safety numbers do not match: do not trust this contact until they do"
	case errors.As(err, &ae):
		return "server refused: " + ae.Message + " (" + ae.Code + ")"
	}
	return err.Error()
}
