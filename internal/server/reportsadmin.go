package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/doorless/doorless/internal/store"
)

// ReportStore is what reviewing abuse reports reads: the reports, and the
// accounts they name.
type ReportStore interface {
	store.Reports
	AccountByID(ctx context.Context, id string) (*store.Account, error)
}

// ErrNoReport: ShowReport was given an id no stored report has.
var ErrNoReport = errors.New("server: no such report")

// reasonExcerpt bounds the reason ListReports shows, in characters.
const reasonExcerpt = 60

// ListReports writes every stored report to w, newest first, one line each:
// its id, when it was made (UTC), the sender's username (its account id
// when the account is gone), whether the message came under sealed sender,
// whether its delivery to the reporter by this sender is proven ("no" for
// a sealed group message: store.Report.DeliveryUnproven), how many stored
// reports are of the same message, and the start of the reporter's
// reason. What the reporter and sender wrote is written with control and
// bidirectional-formatting characters escaped, so that it cannot drive
// the operator's terminal.
func ListReports(ctx context.Context, st ReportStore, w io.Writer) error {
	rs, err := st.Reports(ctx)
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		_, err := fmt.Fprintln(w, "no reports")
		return err
	}
	// Reports of one message share its commitment hash.
	same := make(map[string]int)
	for _, r := range rs {
		same[string(r.CommitmentHash)]++
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREPORTED\tSENDER\tSEALED\tDELIVERED\tREPORTS\tREASON")
	for _, r := range rs {
		sender, err := accountName(ctx, st, r.Sender)
		if err != nil {
			return err
		}
		reason := []rune(r.Reason)
		excerpt := string(reason)
		if len(reason) > reasonExcerpt {
			excerpt = string(reason[:reasonExcerpt]) + "…"
		}
		delivered := "proven"
		if r.DeliveryUnproven() {
			delivered = "unproven"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.Reported.UTC().Format("2006-01-02 15:04"), sender,
			yesNo(r.Sealed), delivered, same[string(r.CommitmentHash)], escapeText(excerpt, false))
	}
	return tw.Flush()
}

// ShowReport writes everything report id holds to w, with what its proof
// covers (store.Report.DeliveryUnproven) and how many reports, by how many
// accounts, are of the same message, the message's full text last, escaped as ListReports escapes (line breaks and tabs kept).
// ErrNoReport when there is no such report.
func ShowReport(ctx context.Context, st ReportStore, id string, w io.Writer) error {
	r, err := st.Report(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNoReport
	}
	if err != nil {
		return err
	}
	sender, err := accountName(ctx, st, r.Sender)
	if err != nil {
		return err
	}
	reporter, err := accountName(ctx, st, r.Reporter)
	if err != nil {
		return err
	}
	group := "no (a direct message)"
	if r.ToMany {
		group = "yes (which group is not known to the server)"
	}
	delivery := "proven: the server saw the sender's device send it to the reporter"
	switch {
	case r.DeliveryUnproven():
		delivery = "delivery to the reporter by this sender unproven (a sealed group message: the " +
			"sender sent it to a group, and it reached the reporter's device, but a member can pass " +
			"it on to any account)"
	case r.Sealed:
		delivery = "proven: the sender bound it to the reporter's account"
	}
	reports, reporters, err := st.ReportCount(ctx, r.CommitmentHash)
	if err != nil {
		return err
	}
	attachment := "none"
	if a := r.Attachment; a != nil {
		attachment = fmt.Sprintf("type \"%s\", file name \"%s\", %d bytes (its content is not kept)",
			escapeText(a.ContentType, false), escapeText(a.FileName, false), a.Size)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, kv := range [][2]string{
		{"report", r.ID},
		{"reported", r.Reported.UTC().Format(time.RFC3339)},
		{"reporter", reporter},
		{"sender", sender},
		{"sealed sender", yesNo(r.Sealed)},
		{"delivery", delivery},
		{"sent", r.Sent.UTC().Format(time.RFC3339)},
		{"queued", r.Queued.UTC().Format(time.RFC3339) + " (by the server's clock; sent is by the sender's)"},
		{"group", group},
		{"message", hex.EncodeToString(r.CommitmentHash[:8]) + " (a hash: reports of one message share it)"},
		{"reports of it", fmt.Sprintf("%d, by %d %s (this one included)", reports, reporters, plural(reporters, "account"))},
		{"attachment", attachment},
		{"reason", escapeText(r.Reason, false)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "text:\n%s\n", escapeText(r.Body, true))
	return err
}

// accountName is the account's username and id, or its id alone when the
// account is gone.
func accountName(ctx context.Context, st ReportStore, id string) (string, error) {
	a, err := st.AccountByID(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return id + " (account deleted)", nil
	case err != nil:
		return "", err
	}
	return a.Username + " (" + id + ")", nil
}

// plural is noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// escapeText writes control characters (but line breaks and tabs when
// multiline) and bidirectional-formatting characters as Go escapes, and
// invalid UTF-8 as U+FFFD.
func escapeText(s string, multiline bool) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case multiline && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029':
			q := fmt.Sprintf("%+q", string(r))
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
