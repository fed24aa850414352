package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/client"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/fsutil"
	"github.com/doorless/doorless/internal/requestlog"
)

// ExitLogInvalid is the exit status of doorless legal verify-log when the
// log does not verify (a bad signature, entries that do not match the
// checkpoint, a rollback or fork since the state file's checkpoint, a
// publication or report that does not match the log).
const ExitLogInvalid = 3

// verifyLogTimeout bounds a whole verify-log run's network use.
const verifyLogTimeout = 5 * time.Minute

// legal: doorless legal verify-log URL [--key VKEY] [--state FILE] [--report PERIOD] | notices
func (g *globals) legal(ctx context.Context, args []string, env *Env) error {
	if len(args) == 0 {
		return usagef("legal: want verify-log or notices")
	}
	switch args[0] {
	case "verify-log":
		return verifyLog(ctx, args[1:], env)
	case "notices":
		return g.legalNotices(ctx, args[1:], env)
	}
	return usagef("legal: unknown subcommand %q", args[0])
}

// logState is what --state keeps between runs: the key the log was
// verified with, and the last checkpoint verified.
type logState struct {
	Key        string `json:"key"`
	Checkpoint string `json:"checkpoint"`
}

func readLogState(path string) (*logState, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the state file: %v", err)
	}
	var st logState
	if err := json.Unmarshal(b, &st); err != nil || st.Key == "" {
		return nil, errors.New("the state file is not a doorless request log state")
	}
	return &st, nil
}

func verifyLog(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("legal verify-log")
	keyFlag := fs.String("key", "", "the log's verifier key (a note verifier key), pinned out of band")
	statePath := fs.String("state", "", "file keeping the last checkpoint verified, to catch a rollback or fork across runs")
	reportPeriod := fs.String("report", "", "also check that the transparency report the server serves for `PERIOD` (YYYY-QN, "+
		"or \"latest\") is the one its log holds")
	pos, err := parse(fs, args, "URL")
	if err != nil {
		return err
	}
	if p := *reportPeriod; p != "" && p != "latest" {
		if _, _, err := requestlog.PeriodBounds(p); err != nil {
			return usagef("legal verify-log: --report %q is not YYYY-QN or latest", p)
		}
	}
	server := strings.TrimRight(pos[0], "/")
	if u, err := url.Parse(server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("legal verify-log: %q is not a server URL (https://...)", pos[0])
	}
	if *keyFlag != "" {
		if _, err := note.NewVerifier(*keyFlag); err != nil {
			return usagef("legal verify-log: --key is not a note verifier key")
		}
	}
	st, err := readLogState(*statePath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, verifyLogTimeout)
	defer cancel()
	hc := &http.Client{}
	key := *keyFlag
	switch {
	case key != "" && st != nil && st.Key != key:
		return fmt.Errorf("the state file %s is for another key (%s): the log's key changed, or this is another log", *statePath, printable(st.Key))
	case key == "" && st != nil:
		key = st.Key // pinned by an earlier run
	case key == "":
		key, err = requestlog.FetchKey(ctx, hc, server+api.PathLegalKey)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "doorless: WARNING: trusting the log key the server itself gave (trust on first use):\n"+
			"doorless: WARNING:   %s\n"+
			"doorless: WARNING: a server that lies about its log can lie about its key. Compare the key with one published\n"+
			"doorless: WARNING: elsewhere, then pin it with --key (or --state FILE, which keeps it).\n", printable(key))
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		return fmt.Errorf("the log key is not a note verifier key")
	}
	var previous []byte
	if st != nil && st.Checkpoint != "" {
		previous = []byte(st.Checkpoint)
	}
	verified, err := requestlog.Fetch(ctx, hc, server+api.PathLegalLogPrefix, v, previous)
	if err != nil {
		return err
	}
	sum, err := requestlog.Check(verified.Entries, v, requestlog.LegalRequest)
	if err != nil {
		return err
	}
	printLogSummary(env.Stdout, v.Name(), verified, sum)
	if *reportPeriod != "" {
		period := strings.TrimPrefix(*reportPeriod, "latest")
		idx, r, err := checkServedReport(ctx, hc, server, period, verified.Entries)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "report %s as served: entry %d of the log, %d count lines\n", r.Period, idx, len(r.Counts))
	}
	if *statePath != "" {
		b, err := json.MarshalIndent(&logState{Key: key, Checkpoint: string(verified.Checkpoint)}, "", "  ")
		if err != nil {
			return err
		}
		if err := fsutil.WriteAtomic(*statePath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing the state file: %v", err)
		}
	}
	return nil
}

// maxReport bounds a served transparency report.
const maxReport = 1 << 20

// checkServedReport fetches the server's transparency report of period
// ("" for its newest) and checks that it is the report entry at the index
// the server names (api.HeaderLogIndex) of a verified log. A report that
// is not is requestlog.ErrBadReport, which matches ErrInvalidLog.
func checkServedReport(ctx context.Context, hc *http.Client, server, period string, entries [][]byte) (uint64, *requestlog.Report, error) {
	u := server + api.PathTransparencyReport
	if period != "" {
		u += "?period=" + url.QueryEscape(period)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("fetching the transparency report: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReport+1))
	switch {
	case err != nil:
		return 0, nil, fmt.Errorf("fetching the transparency report: %v", err)
	case resp.StatusCode == http.StatusNotFound:
		return 0, nil, errors.New("the server has no transparency report for the period")
	case resp.StatusCode != http.StatusOK:
		return 0, nil, fmt.Errorf("fetching the transparency report: the server answered %s", resp.Status)
	case len(b) > maxReport:
		return 0, nil, errors.New("the transparency report is too large")
	}
	h := resp.Header.Get(api.HeaderLogIndex)
	idx, err := strconv.ParseUint(h, 10, 64)
	if err != nil || strconv.FormatUint(idx, 10) != h {
		return 0, nil, fmt.Errorf("the server did not say where its report is in its log (header %s: %q)", api.HeaderLogIndex, printable(h))
	}
	r, err := requestlog.CheckServedReport(entries, idx, b, period)
	if err != nil {
		return 0, nil, err
	}
	return idx, r, nil
}

func printLogSummary(out io.Writer, origin string, v *requestlog.Verified, sum *requestlog.Summary) {
	fmt.Fprintf(out, "request log %s verified\n", printable(origin))
	fmt.Fprintf(out, "entries:       %d (checkpoint root %x)\n", v.Size, v.Root)
	fmt.Fprintf(out, "requests:      %d\n", sum.Requests)
	outcomes := make([]string, 0, len(sum.Outcomes))
	for o := range sum.Outcomes {
		outcomes = append(outcomes, o)
	}
	slices.Sort(outcomes)
	for _, o := range outcomes {
		fmt.Fprintf(out, "  %-26s %d\n", o, sum.Outcomes[o])
	}
	fmt.Fprintf(out, "publications:  %d\n", sum.Publications)
	if len(sum.Reports) == 0 {
		fmt.Fprintf(out, "reports:       none\n")
	} else {
		fmt.Fprintf(out, "reports:       %s\n", strings.Join(sum.Reports, " "))
	}
}

// legalNotices: doorless legal notices
func (g *globals) legalNotices(ctx context.Context, args []string, env *Env) error {
	fs := newFlagSet("legal notices")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, err := g.open(env)
	if err != nil {
		return err
	}
	defer c.Close()
	ns, err := c.LegalNotices(ctx)
	if err != nil {
		return err
	}
	if len(ns) == 0 {
		fmt.Fprintf(env.Stdout, "no legal request that named your account has been published\n")
		return nil
	}
	loc := env.Now().Location()
	for i := range ns {
		printNotice(env.Stdout, &ns[i], loc)
	}
	return nil
}

// printNotice prints a legal notice loudly. Its fields come from the
// authority's request, via the server: printable.
func printNotice(out io.Writer, n *client.LegalNotice, loc *time.Location) {
	fmt.Fprintf(out, "!!! LEGAL REQUEST about your account, published in the server's request log (entry %d)\n", n.PublicationIndex)
	fmt.Fprintf(out, "!!!   authority:     %s (%s)\n", printable(n.Authority), printable(n.Jurisdiction))
	fmt.Fprintf(out, "!!!   type:          %s\n", printable(n.Type))
	fmt.Fprintf(out, "!!!   legal basis:   %s\n", printable(n.Basis))
	fmt.Fprintf(out, "!!!   case:          %s\n", printable(n.Case))
	fmt.Fprintf(out, "!!!   asked for:     %s\n", printable(strings.Join(n.Categories, ", ")))
	fmt.Fprintf(out, "!!!   issued:        %s\n", n.Issued.In(loc).Format(time.DateTime))
	fmt.Fprintf(out, "!!!   the server:    %s (%s)\n", describeOutcome(n.Outcome), n.Received.Format(time.DateOnly))
	fmt.Fprintf(out, "!!!   secret until:  %s; published %s\n", n.NondisclosureUntil.In(loc).Format(time.DateTime), n.Published.Format(time.DateOnly))
	if n.RegistrationDay {
		fmt.Fprintf(out, "!!!   note:          received the day your account was registered: it may have named an earlier\n"+
			"!!!                  holder of your username (an account deleted that day), or you\n")
	}
}

func describeOutcome(o string) string {
	if o == requestlog.OutcomeAccepted {
		return "accepted it, and disclosed what it holds (at most the account's registration day and last connection day)"
	}
	return "refused it: " + strings.TrimPrefix(o, "refused:")
}

// noticesBeforeReceive checks for legal notices before receive and listen,
// at most once per client.LegalCheckInterval: a new one reaches the
// handler as an event, through the inbox. A log that does not verify is a
// loud warning, and so is a log whose key was pinned and that the server
// no longer serves (requestlog.ErrLogGone, which matches ErrInvalidLog);
// any other failure (no front door before any key was pinned, the
// network, credentials) is left to the receive that follows to report.
func noticesBeforeReceive(ctx context.Context, c *client.Client, env *Env) {
	_, err := c.CheckLegalNotices(ctx)
	if errors.Is(err, requestlog.ErrInvalidLog) || errors.Is(err, client.ErrBadLegalNotice) {
		fmt.Fprintf(env.Stderr, "doorless: WARNING: the server's legal request log does not verify: %s\n", oneLine(err.Error()))
	}
}
