// Package frontdoor processes legal requests for doorlessd
// (docs/legal-requests.md): it verifies a request (internal/legal),
// records it in the store, commits to it in the public request log
// (internal/requestlog), answers an accepted one with a signed disclosure
// package, publishes requests once their non-disclosure date has passed,
// and makes transparency reports. The server's admin API and `doorlessd
// legal process` both go through Desk.Process, so the two can never differ.
//
// A Desk is safe for concurrent use, and several processes may run one
// over the same data directory (the store and the log serialise their
// writers): a request's nonce is checked and recorded in one store
// transaction, so of two racing requests with one nonce one is refused.
package frontdoor

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/legal"
	"github.com/doorless/doorless/internal/requestlog"
	"github.com/doorless/doorless/internal/store"
)

// Log is the request log as the desk uses it (*requestlog.Log).
type Log interface {
	Append(ctx context.Context, entry []byte) (uint64, error)
	Entries(ctx context.Context) ([][]byte, error)
}

var _ Log = (*requestlog.Log)(nil)

// Store is what the desk keeps and reads.
type Store interface {
	store.Legal
	AccountByUsername(ctx context.Context, username string) (*store.Account, error)
	Devices(ctx context.Context, accountID string) ([]store.Device, error)
}

// Config configures a Desk. Store, Log, Signer and Trust are required.
type Config struct {
	Store Store
	Log   Log
	// Signer is the server's legal key: it signs disclosure packages and
	// reports (and, in the log, checkpoints).
	Signer note.Signer
	// Trust returns the trust configuration; the desk asks for it for each
	// request, so that an operator's edit takes effect at once.
	Trust func() (*legal.Trust, error)
	// Now is the clock (nil: time.Now); Rand the source of salts (nil:
	// crypto/rand).
	Now  func() time.Time
	Rand io.Reader
}

// UnloggedGrace is how long a recorded request may wait for its log entry
// before Publish appends it: a request is recorded, then logged, and a
// crash between the two must not leave it out of the log.
const UnloggedGrace = 10 * time.Minute

// ErrTooLarge: a request bigger than any valid one; it is not processed.
var ErrTooLarge = errors.New("frontdoor: request too large")

// MaxRequest bounds a signed request, in bytes.
const MaxRequest = legal.MaxRequest + 4096

// Desk processes legal requests. See the package documentation.
type Desk struct {
	cfg Config
	mu  sync.Mutex // serialises Publish and Report within the process
}

// New returns a Desk.
func New(cfg Config) (*Desk, error) {
	if cfg.Store == nil || cfg.Log == nil || cfg.Signer == nil || cfg.Trust == nil {
		return nil, errors.New("frontdoor: store, log, signer and trust are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &Desk{cfg: cfg}, nil
}

// Result is what processing a request came to.
type Result struct {
	// Request is the request when its signature verified, nil otherwise.
	Request *legal.Request
	// Refusal is the reason the request was refused; nil when accepted.
	Refusal *legal.RefusalError
	// LogIndex is the index of the request's entry in the log.
	LogIndex uint64
	// Package is the signed disclosure package of an accepted request.
	Package []byte
}

// Outcome is the log's outcome of the result.
func (r *Result) Outcome() string {
	if r.Refusal != nil {
		return r.Refusal.Outcome()
	}
	return legal.OutcomeAccepted
}

// Process verifies a signed request, records it (with its nonce, when its
// signature verified), appends its request entry to the log and, when it
// is accepted, returns the signed disclosure package. A refused request is
// recorded and logged as well: Process then returns a Result with
// Refusal set and a nil error. An error means the request may not be
// logged yet (Publish logs a recorded one later); ErrTooLarge is returned
// for a request over MaxRequest, which is neither recorded nor logged.
func (d *Desk) Process(ctx context.Context, signed []byte) (*Result, error) {
	if len(signed) > MaxRequest {
		return nil, ErrTooLarge
	}
	signed = bytes.Clone(signed)
	now := d.cfg.Now()
	trust, err := d.cfg.Trust()
	if err != nil {
		return nil, fmt.Errorf("frontdoor: %v", err)
	}
	seen := func(authority string, nonce []byte) (bool, error) {
		return d.cfg.Store.LegalNonceSeen(ctx, authority, nonce)
	}
	res := &Result{}
	req, err := legal.Verify(signed, trust, now, seen)
	var refusal *legal.RefusalError
	switch {
	case errors.As(err, &refusal):
		res.Refusal, res.Request = refusal, refusal.Request
	case err != nil:
		return nil, fmt.Errorf("frontdoor: %v", err)
	default:
		res.Request = req
	}

	rec := &store.LegalRequest{
		Received:     now,
		Request:      signed,
		Salt:         make([]byte, 32),
		Jurisdiction: requestlog.Unverified,
		Type:         requestlog.Unverified,
		Outcome:      res.Outcome(),
	}
	if _, err := io.ReadFull(d.cfg.Rand, rec.Salt); err != nil {
		return nil, fmt.Errorf("frontdoor: salt: %v", err)
	}
	if r := res.Request; r != nil {
		rec.Jurisdiction, rec.Type, rec.NondisclosureUntil = r.Jurisdiction, r.Type, r.NondisclosureUntil
		if res.Refusal == nil || res.Refusal.Reason != legal.ReasonReplayedNonce {
			rec.Authority, rec.Nonce = r.Authority, r.Nonce
		}
		if t := r.Target(); api.ValidUsername(t) {
			switch a, err := d.cfg.Store.AccountByUsername(ctx, t); {
			case err == nil:
				rec.TargetAccount = a.ID
			case !errors.Is(err, store.ErrNotFound):
				return nil, fmt.Errorf("frontdoor: %v", err)
			}
		}
	}
	err = d.cfg.Store.AddLegalRequest(ctx, rec)
	if errors.Is(err, store.ErrNonceSeen) {
		// Another request with this nonce was recorded since Verify
		// looked: this one is a replay.
		res.Refusal = &legal.RefusalError{Reason: legal.ReasonReplayedNonce, Request: res.Request}
		rec.Outcome, rec.Authority, rec.Nonce = res.Outcome(), "", nil
		err = d.cfg.Store.AddLegalRequest(ctx, rec)
	}
	if err != nil {
		return nil, fmt.Errorf("frontdoor: recording the request: %v", err)
	}
	// A request a crash left unlogged goes into the log before this one,
	// so that the log's received days keep their order
	// (requestlog.MaxReceivedLag) however long the server was down.
	d.mu.Lock()
	err = d.logUnlogged(ctx, now)
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if res.LogIndex, err = d.logRequest(ctx, rec); err != nil {
		return nil, err
	}
	if res.Refusal != nil {
		return res, nil
	}
	acct, err := d.account(ctx, req.Target())
	if err != nil {
		return nil, err
	}
	if res.Package, err = legal.NewDisclosure(req, res.LogIndex, signed, now, acct).Sign(d.cfg.Signer); err != nil {
		return nil, fmt.Errorf("frontdoor: %v", err)
	}
	return res, nil
}

// requestEntry returns the log entry of a recorded request.
func requestEntry(rec *store.LegalRequest) ([]byte, [32]byte, error) {
	var salt [32]byte
	copy(salt[:], rec.Salt)
	c := requestlog.Commit(salt, rec.Request)
	e := &requestlog.RequestEntry{Commitment: c, Received: rec.Received, Jurisdiction: rec.Jurisdiction, Type: rec.Type, Outcome: rec.Outcome}
	b, err := e.Encode()
	if err != nil {
		return nil, c, fmt.Errorf("frontdoor: %v", err)
	}
	return b, c, nil
}

// logRequest appends a recorded request's entry and records its index.
func (d *Desk) logRequest(ctx context.Context, rec *store.LegalRequest) (uint64, error) {
	entry, _, err := requestEntry(rec)
	if err != nil {
		return 0, err
	}
	idx, err := d.cfg.Log.Append(ctx, entry)
	if err != nil {
		return 0, fmt.Errorf("frontdoor: logging the request: %v", err)
	}
	if err := d.cfg.Store.SetLegalRequestLogged(ctx, rec.ID, idx); err != nil {
		return 0, fmt.Errorf("frontdoor: %v", err)
	}
	return idx, nil
}

// account returns what may be disclosed of the account holding username,
// nil for none.
func (d *Desk) account(ctx context.Context, username string) (*legal.Account, error) {
	a, err := d.cfg.Store.AccountByUsername(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("frontdoor: %v", err)
	}
	devs, err := d.cfg.Store.Devices(ctx, a.ID)
	if err != nil {
		return nil, fmt.Errorf("frontdoor: %v", err)
	}
	acct := &legal.Account{Created: a.Created}
	for _, dev := range devs {
		acct.LastSeenDay = max(acct.LastSeenDay, dev.LastSeenDay)
	}
	return acct, nil
}

// Publish does the desk's periodic work: it logs the requests recorded
// over UnloggedGrace ago whose entry is not in the store's records (a
// crash came between; Process does this too, before it logs a request),
// and publishes every logged request whose non-disclosure date has
// passed, appending its publication entry. It looks in the log first, so
// that an entry a crash left unrecorded is recorded, not appended twice.
// It returns how many requests it published.
func (d *Desk) Publish(ctx context.Context) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.cfg.Now()
	if err := d.logUnlogged(ctx, now); err != nil {
		return 0, err
	}
	due, err := d.cfg.Store.DueLegalRequests(ctx, now)
	if err != nil {
		return 0, fmt.Errorf("frontdoor: %v", err)
	}
	if len(due) == 0 {
		return 0, nil
	}
	entries, err := d.cfg.Log.Entries(ctx)
	if err != nil {
		return 0, fmt.Errorf("frontdoor: %v", err)
	}
	publications := map[uint64]uint64{}
	for i, b := range entries {
		if e, _ := requestlog.ParseEntry(b); e != nil {
			if p, ok := e.(*requestlog.PublicationEntry); ok {
				publications[p.Request] = uint64(i)
			}
		}
	}
	n := 0
	for i := range due {
		rec := &due[i]
		idx, ok := publications[rec.LogIndex]
		if !ok {
			e := &requestlog.PublicationEntry{Request: rec.LogIndex, Published: now, Note: rec.Request}
			copy(e.Salt[:], rec.Salt)
			b, err := e.Encode()
			if err != nil {
				return n, fmt.Errorf("frontdoor: %v", err)
			}
			if idx, err = d.cfg.Log.Append(ctx, b); err != nil {
				return n, fmt.Errorf("frontdoor: publishing request %d: %v", rec.LogIndex, err)
			}
		}
		if err := d.cfg.Store.SetLegalRequestPublished(ctx, rec.ID, idx, now); err != nil {
			return n, fmt.Errorf("frontdoor: %v", err)
		}
		n++
	}
	return n, nil
}

// logUnlogged logs the requests recorded over UnloggedGrace before now
// whose entry is not in the store's records, in the order they were
// recorded; an entry that is in the log (a crash came after the append) is
// recorded, not appended again. d.mu must be held.
//
// Two processes over one data directory could both find the same request
// unlogged and append it twice; it takes a crash between recording and
// logging, then both processes recovering it within the same fraction of
// a second (the log's lock is not held from reading the entries to
// appending).
func (d *Desk) logUnlogged(ctx context.Context, now time.Time) error {
	unlogged, err := d.cfg.Store.UnloggedLegalRequests(ctx, now.Add(-UnloggedGrace))
	if err != nil {
		return fmt.Errorf("frontdoor: %v", err)
	}
	if len(unlogged) == 0 {
		return nil
	}
	entries, err := d.cfg.Log.Entries(ctx)
	if err != nil {
		return fmt.Errorf("frontdoor: %v", err)
	}
	commitments := map[[32]byte]uint64{}
	for i, b := range entries {
		if e, _ := requestlog.ParseEntry(b); e != nil {
			if r, ok := e.(*requestlog.RequestEntry); ok {
				commitments[r.Commitment] = uint64(i)
			}
		}
	}
	for i := range unlogged {
		rec := &unlogged[i]
		_, c, err := requestEntry(rec)
		if err != nil {
			return err
		}
		if idx, ok := commitments[c]; ok {
			if err := d.cfg.Store.SetLegalRequestLogged(ctx, rec.ID, idx); err != nil {
				return fmt.Errorf("frontdoor: %v", err)
			}
			continue
		}
		if _, err := d.logRequest(ctx, rec); err != nil {
			return err
		}
	}
	return nil
}

// Report makes the transparency report of period ("2026-Q4"): the request
// entries of the period in the whole log so far, counted with
// requestlog.CountRequests, signed with the legal key, appended to the
// log and stored (replacing an earlier report of the period).
func (d *Desk) Report(ctx context.Context, period string) (*store.TransparencyReport, error) {
	if _, _, err := requestlog.PeriodBounds(period); err != nil {
		return nil, fmt.Errorf("frontdoor: period %q is not YYYY-QN", period)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	entries, err := d.cfg.Log.Entries(ctx)
	if err != nil {
		return nil, fmt.Errorf("frontdoor: %v", err)
	}
	through := uint64(len(entries))
	counts, err := requestlog.CountRequests(entries, period, through)
	if err != nil {
		return nil, fmt.Errorf("frontdoor: %v", err)
	}
	now := d.cfg.Now().UTC().Truncate(time.Second)
	rep := &requestlog.Report{Period: period, Generated: now, Through: through, Counts: counts}
	signed, err := rep.Sign(d.cfg.Signer)
	if err != nil {
		return nil, fmt.Errorf("frontdoor: %v", err)
	}
	idx, err := d.cfg.Log.Append(ctx, signed)
	if err != nil {
		return nil, fmt.Errorf("frontdoor: logging the report: %v", err)
	}
	tr := &store.TransparencyReport{Period: period, Generated: now, LogIndex: idx, Signed: signed}
	if err := d.cfg.Store.PutTransparencyReport(ctx, tr); err != nil {
		return nil, fmt.Errorf("frontdoor: %v", err)
	}
	return tr, nil
}

// Notices returns the published requests that targeted the account, as
// the API hands them to its devices.
func (d *Desk) Notices(ctx context.Context, accountID string) ([]api.LegalNotice, error) {
	recs, err := d.cfg.Store.PublishedLegalRequests(ctx, accountID)
	if err != nil {
		return nil, fmt.Errorf("frontdoor: %v", err)
	}
	out := make([]api.LegalNotice, 0, len(recs))
	for _, r := range recs {
		out = append(out, api.LegalNotice{
			RequestIndex:     r.LogIndex,
			PublicationIndex: r.PublicationIndex,
			Request:          slices.Clone(r.Request),
			Outcome:          r.Outcome,
			Processed:        r.Received.UnixMilli(),
		})
	}
	return out, nil
}
