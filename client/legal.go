package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/legal"
	"github.com/doorless/doorless/internal/requestlog"
)

// Legal notices (docs/legal-requests.md, docs/protocol.md "The legal
// request log"): once a legal request's non-disclosure date has passed,
// the server publishes it in its public request log, and the accounts it
// named are told. The client does not take the server's word for it: it
// verifies the whole log (signed checkpoint, every entry, consistency with
// the checkpoint it verified last, every publication and report) under a
// key pinned at the first check, finds there every published request that
// names this account, and checks the server's list of notices against
// them. A notice the log holds is reported even if the server leaves it
// out of its list; one the log does not hold is an error.
//
// Once the log's key is pinned the server's list is optional: it cannot
// hide a notice by failing to answer for it (the log is read and searched
// all the same), nor by answering 404 for the log itself
// (requestlog.ErrLogGone, a verification failure).
//
// A request names a username, and a username may have had an earlier
// holder (an account deleted, the name registered again). The log says on
// which UTC day a request was received, and the profile when this account
// was registered: a publication the server does not list as this
// account's is skipped when its request was received before the day of
// registration, and reported with RegistrationDay set when it was
// received that very day (it may be either holder's: shown, not hidden).

var (
	// ErrNoLegalLog: the server keeps no legal request log (it answered
	// 404 for the log's key before any was pinned).
	ErrNoLegalLog = errors.New("client: the server keeps no legal request log")
	// ErrBadLegalNotice: the server listed a notice that its verified
	// request log does not hold (a wrong index, another request, another
	// outcome, or a request that does not name this account).
	ErrBadLegalNotice = errors.New("client: a legal notice does not match the server's request log")
)

// LegalNotice is a published legal request that named this account, as
// the verified request log holds it.
type LegalNotice struct {
	// RequestIndex is the log index of the request's commitment,
	// PublicationIndex that of its publication.
	RequestIndex     uint64 `json:"request_index"`
	PublicationIndex uint64 `json:"publication_index"`
	// Request is the authority's signed request, as published.
	Request []byte `json:"request"`
	// What the request says.
	Authority          string    `json:"authority"`
	Jurisdiction       string    `json:"jurisdiction"`
	Type               string    `json:"type"`
	Basis              string    `json:"basis"`
	Case               string    `json:"case"`
	Categories         []string  `json:"categories"`
	Issued             time.Time `json:"issued"`
	NondisclosureUntil time.Time `json:"nondisclosure_until"`
	// Outcome is "accepted" or "refused:<reason>"; Received the UTC day
	// the server processed the request and Published the day it published
	// it, as the log says.
	Outcome   string    `json:"outcome"`
	Received  time.Time `json:"received"`
	Published time.Time `json:"published"`
	// RegistrationDay: the request was received on the UTC day this
	// account was registered and the server did not list it as this
	// account's, so it may have named the username's previous holder,
	// deleted that day; the log's day cannot tell.
	RegistrationDay bool `json:"registration_day,omitempty"`
	// New: this device had not reported the notice before.
	New bool `json:"new,omitempty"`
}

func (*LegalNotice) isEvent() {}

// String describes the notice without its content.
func (n *LegalNotice) String() string {
	return "legal notice " + strconv.FormatUint(n.PublicationIndex, 10)
}

// legalNoticeInboxID is the inbox's envelope id of a notice.
func legalNoticeInboxID(publication uint64) string {
	return "legal-notice/" + strconv.FormatUint(publication, 10)
}

// registrationSlack widens the day of registration back: the time kept is
// the registering device's clock, the received days the server's, and a
// device clock ahead of the server's must not hide a request received just
// after registration.
const registrationSlack = time.Hour

// LegalNotices verifies the request log, finds there the published
// requests that named this account, checks the server's list of notices
// against them, and returns them, oldest first. A notice reported for the
// first time is marked New and also handed to the next Receive as an
// event. Failures of the log's verification match
// requestlog.ErrInvalidLog, among them requestlog.ErrLogGone for a log
// the server no longer serves once its key is pinned; ErrNoLegalLog is
// only for a server that never served a key.
func (c *Client) LegalNotices(ctx context.Context) ([]LegalNotice, error) {
	pinned, err := c.legalLog(ctx)
	if err != nil {
		return nil, err
	}
	// The server's list only cross-checks the log, and tells which
	// requests of the registration day named this account: without it
	// (404, a failure) the log is searched all the same.
	var listed api.LegalNoticesResponse
	if err := c.do(ctx, http.MethodGet, api.PathLegalNotices, nil, &listed); err != nil {
		listed.Notices = nil
	}
	v, err := note.NewVerifier(pinned.Key)
	if err != nil {
		return nil, errors.New("client: the pinned request log key is corrupt")
	}
	verified, err := requestlog.Fetch(ctx, c.hc, c.serverURL+api.PathLegalLogPrefix, v, pinned.Checkpoint)
	if errors.Is(err, requestlog.ErrNotFound) {
		// Not verified yet, but its key is pinned: the server served the
		// log then, and cannot withdraw it from this account now.
		err = fmt.Errorf("%w: %v", requestlog.ErrLogGone, err)
	}
	if err != nil {
		return nil, fmt.Errorf("client: verifying the request log: %w", err)
	}
	if _, err := requestlog.Check(verified.Entries, v, requestlog.LegalRequest); err != nil {
		return nil, fmt.Errorf("client: verifying the request log: %w", err)
	}
	mine, err := noticesFor(verified.Entries, c.username)
	if err != nil {
		return nil, err
	}
	isListed := map[uint64]bool{}
	for _, n := range listed.Notices {
		m := mine[n.PublicationIndex]
		if m == nil || m.RequestIndex != n.RequestIndex || !bytes.Equal(m.Request, n.Request) || m.Outcome != n.Outcome {
			return nil, fmt.Errorf("%w: entry %d", ErrBadLegalNotice, n.PublicationIndex)
		}
		isListed[n.PublicationIndex] = true
	}
	var registered time.Time
	if err := c.st.View(ctx, func(tx *profile.Tx) (err error) { registered, err = tx.Registered(); return err }); err != nil {
		return nil, err
	}
	out := make([]LegalNotice, 0, len(mine))
	for idx, n := range mine {
		if !isListed[idx] && !registered.IsZero() {
			regDay := utcDay(registered.Add(-registrationSlack))
			if n.Received.Before(regDay) {
				continue // the username's previous holder's
			}
			n.RegistrationDay = n.Received.Equal(regDay)
		}
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b LegalNotice) int { return cmp.Compare(a.PublicationIndex, b.PublicationIndex) })
	now := c.now()
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		if err := tx.SetLegalCheckpoint(verified.Checkpoint, verified.Size); err != nil {
			return err
		}
		for i := range out {
			n := &out[i]
			added, err := tx.AddLegalNotice(&profile.LegalNotice{PublicationIndex: n.PublicationIndex, RequestIndex: n.RequestIndex,
				Request: n.Request, Outcome: n.Outcome, Received: n.Received, Published: n.Published, Seen: now})
			if err != nil {
				return err
			}
			if !added {
				continue
			}
			n.New = true
			b, err := json.Marshal(n)
			if err != nil {
				return fmt.Errorf("client: encoding a legal notice: %v", err)
			}
			if err := tx.AddInbox(&profile.InboxItem{EnvelopeID: legalNoticeInboxID(n.PublicationIndex), Kind: kindLegalNotice, Data: b}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// LegalCheckInterval is how often CheckLegalNotices looks for notices:
// they are rare, and each look fetches the request log.
const LegalCheckInterval = time.Hour

// CheckLegalNotices is LegalNotices when the last time it ran is more than
// LegalCheckInterval ago (or it never ran), for a client to call before it
// receives: a new notice then reaches Receive as an event. It reports
// whether it checked. The interval is kept in the profile, so that short
// runs of the command-line client do not each fetch the log (an explicit
// LegalNotices does not move it).
func (c *Client) CheckLegalNotices(ctx context.Context) (bool, error) {
	var l *profile.LegalLog
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		var err error
		l, err = tx.LegalLog()
		return err
	})
	if err != nil {
		return false, err
	}
	now := c.now()
	if l != nil && !l.Checked.IsZero() && now.Sub(l.Checked) < LegalCheckInterval && !now.Before(l.Checked) {
		return false, nil
	}
	_, err = c.LegalNotices(ctx)
	// A check that failed counts too: the next is an interval away, not
	// at the next receive (the failure is the caller's to report).
	if uerr := c.st.Update(ctx, func(tx *profile.Tx) error { return tx.SetLegalChecked(now) }); err == nil {
		err = uerr
	}
	return true, err
}

// legalLog returns the pinned request log, pinning the server's key at
// the first check (trust on first use, as for the key transparency log).
func (c *Client) legalLog(ctx context.Context) (*profile.LegalLog, error) {
	var l *profile.LegalLog
	view := func() error {
		return c.st.View(ctx, func(tx *profile.Tx) error {
			var err error
			l, err = tx.LegalLog()
			return err
		})
	}
	if err := view(); err != nil || l != nil {
		return l, err
	}
	key, err := requestlog.FetchKey(ctx, c.hc, c.serverURL+api.PathLegalKey)
	if errors.Is(err, requestlog.ErrNotFound) {
		return nil, ErrNoLegalLog
	}
	if err != nil {
		return nil, fmt.Errorf("client: fetching the request log's key: %w", err)
	}
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		_, err := tx.PinLegalLog(key, c.now()) // another process's pin stays
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := view(); err != nil {
		return nil, err
	}
	if l == nil {
		return nil, errors.New("client: no request log pinned")
	}
	return l, nil
}

// noticesFor returns the publications in a checked log (requestlog.Check)
// of requests that name username among their targets, by publication
// index.
func noticesFor(entries [][]byte, username string) (map[uint64]*LegalNotice, error) {
	out := map[uint64]*LegalNotice{}
	for i, b := range entries {
		e, err := requestlog.ParseEntry(b)
		if err != nil {
			return nil, err
		}
		p, ok := e.(*requestlog.PublicationEntry)
		if !ok {
			continue
		}
		re, err := requestlog.ParseRequestEntry(entries[p.Request])
		if err != nil {
			return nil, err
		}
		text, err := requestlog.NoteText(p.Note)
		if err != nil {
			return nil, err
		}
		r, err := legal.ParseRequest(text)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(r.Targets, username) {
			continue
		}
		out[uint64(i)] = &LegalNotice{
			RequestIndex: p.Request, PublicationIndex: uint64(i), Request: p.Note,
			Authority: r.Authority, Jurisdiction: r.Jurisdiction, Type: r.Type, Basis: r.Basis, Case: r.Case,
			Categories: r.Categories, Issued: r.Issued, NondisclosureUntil: r.NondisclosureUntil,
			Outcome: re.Outcome, Received: re.Received, Published: p.Published,
		}
	}
	return out, nil
}

// utcDay returns midnight UTC of t's UTC day, as the log's days are
// parsed.
func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
