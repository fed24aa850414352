// Package auditor is Doorless's key-transparency auditor (witness): it
// follows a server's log over HTTP, replays every epoch with kt.Auditor, and
// cosigns the server's checkpoints it has checked (C2SP cosignature/v1), so
// that clients which require its cosignature know that an independent party
// saw the same log and found that it keeps its rules.
//
// Its state lives in a directory: the cosigner key pair (made on the first
// run), the log's identity pinned on the first run, the last head it
// cosigned, and, once the log has broken a rule, the failure. A failure is
// final: the auditor records it, stops cosigning and refuses to run again
// until an operator has looked (docs/auditor.md). That refusal is its alarm.
//
// It vouches only for a live log: it refuses to cosign a log whose newest
// epoch is older than Config.MaxEpochAge (ErrStaleLog) or dated that far in
// the future (ErrFutureEpoch). Clients bound only the age of a cosignature,
// not of the checkpoint it covers, so an auditor that kept cosigning an old
// checkpoint afresh would let a server that froze it there serve forks
// that extend it, each with a fresh cosignature. The server makes an epoch
// at least every ten minutes, changes or not, so a live log is never
// older than that.
//
// Each run replays the log from epoch 0 (the replayed trees live in
// memory only); the last cosigned head, which it keeps, ties the runs
// together: the replay must pass through it.
//
// An Auditor is not safe for concurrent use: one goroutine calls Pass or
// Run.
package auditor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/kt"
)

// DefaultInterval is how long the auditor waits between passes.
const DefaultInterval = 5 * time.Second

// DefaultMaxEpochAge is how old the log's newest epoch may be for the
// auditor to cosign: the server makes an epoch at least every ten minutes,
// so an hour leaves room for a restart, a slow sequencer and clock skew.
const DefaultMaxEpochAge = time.Hour

// Bounds on what the auditor reads from the server.
const (
	maxKeysResponse  = 1 << 20
	maxAuditResponse = 256 << 20 // MaxAuditEpochs epochs of changed leaves
	maxErrorBody     = 4 << 10
)

// Sentinel errors.
var (
	// ErrAuditFailure: the log broke one of its rules. The auditor has
	// recorded it and will not cosign again; the error is a
	// *FailureError.
	ErrAuditFailure = errors.New("auditor: audit failure")
	// ErrPinMismatch: the server presents another log (origin, checkpoint
	// key or VRF key) than the one pinned on the first run.
	ErrPinMismatch = errors.New("auditor: the server's log is not the pinned one")
	// ErrStaleLog: the log's newest epoch is older than MaxEpochAge, so
	// the auditor does not cosign it. Not an audit failure: the server
	// may just be stuck. But a log frozen for its auditors can hide a
	// fork from them, so it is logged as a warning on every pass.
	ErrStaleLog = errors.New("auditor: not cosigning: the log's newest epoch is too old")
	// ErrFutureEpoch: the log's newest epoch is dated more than
	// MaxEpochAge ahead of the auditor's clock, so the auditor does not
	// cosign it (one clock or the other is wrong). Not an audit failure.
	ErrFutureEpoch = errors.New("auditor: not cosigning: the log's newest epoch is dated in the future")
)

// FailureError is an audit failure: what broke, and where it is recorded.
type FailureError struct {
	At     time.Time
	Server string
	// Epoch is the log index of the epoch that broke a rule; HasEpoch is
	// false when no single epoch did (a checkpoint, a rollback).
	Epoch    uint64
	HasEpoch bool
	Reason   string
	// Record is the file that holds the failure.
	Record string
	// Earlier is true when the failure was recorded by an earlier run.
	Earlier bool
	// Err is the cause, when there is one (kt.ErrAuditFailed and the
	// like).
	Err error
}

func (e *FailureError) Error() string {
	var b strings.Builder
	b.WriteString("auditor: AUDIT FAILURE")
	if e.Earlier {
		b.WriteString(" (recorded by an earlier run)")
	}
	if e.HasEpoch {
		fmt.Fprintf(&b, " at epoch %d", e.Epoch)
	}
	fmt.Fprintf(&b, " of %s: %s", e.Server, e.Reason)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Is makes every FailureError match ErrAuditFailure.
func (e *FailureError) Is(target error) bool { return target == ErrAuditFailure }

// Unwrap returns the cause.
func (e *FailureError) Unwrap() error { return e.Err }

// Config configures an Auditor.
type Config struct {
	// Server is the Doorless server's base URL (http or https).
	Server string
	// StateDir holds the auditor's key and state (created 0700).
	StateDir string
	// Name names the cosigner key when StateDir has none yet.
	Name string
	// Interval is Run's pause between passes (DefaultInterval when 0).
	Interval time.Duration
	// MaxEpochAge is how far the log's newest epoch may be from Now, in
	// the past or the future, for the auditor to cosign
	// (DefaultMaxEpochAge when 0). It must exceed the server's longest
	// pause between epochs (ten minutes) with room for clock skew.
	MaxEpochAge time.Duration
	// Client makes the HTTP requests (nil: one with a minute's timeout).
	Client *http.Client
	// Logger receives progress and transient errors (nil: none).
	Logger *slog.Logger
	// Now is the clock for cosignatures, records and the age of epochs
	// (nil: time.Now).
	Now func() time.Time
	// Rand makes the key (nil: crypto/rand).
	Rand io.Reader
}

// Auditor follows one server's log. Make it with New.
type Auditor struct {
	server      *url.URL
	dir         string
	interval    time.Duration
	maxEpochAge time.Duration
	client      *http.Client
	log         *slog.Logger
	now         func() time.Time

	signer note.Signer
	vkey   string

	pin      *pin          // nil until pinned
	logKey   note.Verifier // from pin
	cosigned *cosignedHead // nil before the first cosignature
	// checkedKeys is set once this run has compared the server's keys
	// with the pin.
	checkedKeys bool
	replay      *kt.Auditor
	// newestEpoch is the timestamp (Unix ms) of the newest epoch
	// replayed; meaningful once the replay is not empty.
	newestEpoch int64
	// failed is set once the log failed the audit: the auditor then
	// does nothing more.
	failed *FailureError
}

// Result is what a pass did.
type Result struct {
	// Head is the log as replayed after the pass.
	Head kt.Head
	// Cosigned is set when the pass cosigned a checkpoint (of Head) and
	// the server took it.
	Cosigned bool
}

// New opens the state directory, making the cosigner key if there is none.
// A failure recorded by an earlier run is returned as a *FailureError.
func New(cfg Config) (*Auditor, error) {
	u, err := url.Parse(cfg.Server)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("auditor: server %q is not an http or https URL", cfg.Server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if cfg.StateDir == "" {
		return nil, errors.New("auditor: no state directory")
	}
	if cfg.MaxEpochAge < 0 {
		return nil, errors.New("auditor: negative MaxEpochAge")
	}
	a := &Auditor{
		server:      u,
		dir:         cfg.StateDir,
		interval:    cfg.Interval,
		maxEpochAge: cfg.MaxEpochAge,
		client:      cfg.Client,
		log:         cfg.Logger,
		now:         cfg.Now,
	}
	if a.interval <= 0 {
		a.interval = DefaultInterval
	}
	if a.maxEpochAge == 0 {
		a.maxEpochAge = DefaultMaxEpochAge
	}
	if a.client == nil {
		a.client = &http.Client{Timeout: time.Minute}
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	r := cfg.Rand
	if r == nil {
		r = rand.Reader
	}

	signer, vkey, created, err := loadOrCreateKey(a.dir, cfg.Name, r, a.now)
	if err != nil {
		return nil, err
	}
	if created {
		a.log.Info("auditor: made a cosigner key", "dir", a.dir)
	}
	var rec failureRecord
	if found, err := readJSON(a.dir, failureFile, &rec); err != nil {
		return nil, err
	} else if found {
		return nil, &FailureError{
			At: rec.At, Server: rec.Server, Epoch: derefOr(rec.Epoch), HasEpoch: rec.Epoch != nil,
			Reason: rec.Reason, Record: filepath.Join(a.dir, failureFile), Earlier: true,
		}
	}
	a.signer, a.vkey = signer, vkey

	var p pin
	if found, err := readJSON(a.dir, pinFile, &p); err != nil {
		return nil, err
	} else if found {
		if err := a.usePin(&p); err != nil {
			return nil, err
		}
	}
	var c cosignedHead
	if found, err := readJSON(a.dir, cosignedFile, &c); err != nil {
		return nil, err
	} else if found {
		if len(c.Root) != kt.HashSize {
			return nil, fmt.Errorf("auditor: %s: root is not %d bytes", cosignedFile, kt.HashSize)
		}
		a.cosigned = &c
	}
	return a, nil
}

func derefOr(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// VerifierKey returns the cosigner's verifier key, which the server's
// operator configures (doorlessd --kt-auditor VKEY) and clients may
// require.
func (a *Auditor) VerifierKey() string { return a.vkey }

func (a *Auditor) usePin(p *pin) error {
	v, err := note.NewVerifier(p.LogKey)
	if err != nil {
		return fmt.Errorf("auditor: %s: log key: %v", pinFile, err)
	}
	a.pin, a.logKey = p, v
	a.replay = kt.NewAuditor(p.Origin, v)
	return nil
}

// Run makes a pass every interval until ctx is done (nil) or the log
// fails the audit (a *FailureError) or is not the pinned one
// (ErrPinMismatch). Other errors are logged and the pass retried; a log
// too old or too new to cosign (ErrStaleLog, ErrFutureEpoch) too, since
// the server may recover.
func (a *Auditor) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if _, err := a.Pass(ctx); err != nil {
			if errors.Is(err, ErrAuditFailure) || errors.Is(err, ErrPinMismatch) {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, ErrStaleLog) && !errors.Is(err, ErrFutureEpoch) { // Pass warned
				a.log.Warn("auditor: pass failed, will retry", "err", err)
			}
		}
		timer.Reset(a.interval)
	}
}

// Pass checks the server's keys (on a run's first pass), replays the
// epochs up to the server's newest checkpoint, cosigns that checkpoint and
// hands the cosignature to the server. An audit failure is recorded and
// returned as a *FailureError; other errors leave the state as it was. A
// log whose newest epoch is more than MaxEpochAge old (or ahead) is not
// cosigned: the pass logs a warning and returns ErrStaleLog
// (ErrFutureEpoch), and cosigns again once the log has a fresh epoch.
func (a *Auditor) Pass(ctx context.Context) (Result, error) {
	if a.failed != nil {
		return Result{}, a.failed
	}
	if !a.checkedKeys {
		if err := a.checkKeys(ctx); err != nil {
			return Result{}, err
		}
		a.checkedKeys = true
	}
	res := Result{Head: a.replay.Head()}

	cpBytes, err := a.fetchCheckpoint(ctx)
	if errors.Is(err, errNoCheckpoint) {
		a.log.Info("auditor: the log has no checkpoint yet")
		return res, nil
	}
	if err != nil {
		return res, err
	}
	cp, err := openCheckpoint(cpBytes, a.logKey, a.pin.Origin)
	if errors.Is(err, errBadCheckpoint) {
		return res, a.fail(nil, "the server's newest checkpoint is not a checkpoint the log signed", err)
	}
	if err != nil {
		return res, err
	}
	if cp.Size < res.Head.Size || a.cosigned != nil && cp.Size < a.cosigned.Size {
		// Nothing signed contradicts anything yet; a server behind a
		// lagging cache or replica can answer so. Clients' consistency
		// checks catch a real rollback.
		return res, fmt.Errorf("auditor: the server's newest checkpoint (size %d) is older than the log already checked (size %d); not cosigning",
			cp.Size, max(res.Head.Size, a.cosignedSize()))
	}

	if err := a.replayTo(ctx, cp.Size); err != nil {
		return Result{Head: a.replay.Head()}, err
	}
	res.Head = a.replay.Head()
	if res.Head.Size == 0 {
		return res, nil // an empty log: nothing to vouch for
	}
	if res.Head.Root != cp.Root {
		return res, a.fail(nil, fmt.Sprintf("the log signed a checkpoint of size %d whose root is not the root of the epochs it published (a split view)", cp.Size), nil)
	}
	if err := a.checkFresh(res.Head.Size); err != nil {
		return res, err
	}

	cosigned, err := a.replay.Cosign(cpBytes, a.signer, a.now())
	if err != nil {
		if errors.Is(err, kt.ErrAuditFailed) || errors.Is(err, kt.ErrBadCheckpoint) || errors.Is(err, kt.ErrInconsistent) {
			return res, a.fail(nil, "the checkpoint could not be cosigned", err)
		}
		return res, fmt.Errorf("auditor: cosign: %v", err)
	}
	if err := a.postCosignature(ctx, cosigned); err != nil {
		return res, err
	}
	// An idle pass cosigns the same head again: nothing to write.
	if a.cosigned == nil || a.cosigned.Size != res.Head.Size || !bytes.Equal(a.cosigned.Root, res.Head.Root[:]) {
		c := &cosignedHead{Size: res.Head.Size, Root: bytes.Clone(res.Head.Root[:]), At: a.now().UTC()}
		if err := writeJSON(a.dir, cosignedFile, c); err != nil {
			return res, err
		}
		a.cosigned = c
	}
	res.Cosigned = true
	a.log.Info("auditor: cosigned", "size", res.Head.Size)
	return res, nil
}

// checkFresh refuses, with a warning, to vouch for a replayed log of size
// (> 0) whose newest epoch is more than maxEpochAge from now. The replay
// (kt.Auditor.Apply) keeps epoch times from going back, so the newest
// epoch is the latest.
func (a *Auditor) checkFresh(size uint64) error {
	now := a.now()
	newest := time.UnixMilli(a.newestEpoch)
	var sentinel error
	var reason string
	switch age := now.Sub(newest); {
	case age > a.maxEpochAge:
		sentinel = ErrStaleLog
		reason = fmt.Sprintf("epoch %d, the newest of %s, is from %s, %s ago (the limit is %s); the server is stuck, or frozen for its auditors, which could hide a fork",
			size-1, a.server, newest.UTC().Format(time.RFC3339), age.Round(time.Second), a.maxEpochAge)
	case -age > a.maxEpochAge:
		sentinel = ErrFutureEpoch
		reason = fmt.Sprintf("epoch %d, the newest of %s, is dated %s, %s ahead of this auditor's clock (the limit is %s); check both clocks",
			size-1, a.server, newest.UTC().Format(time.RFC3339), (-age).Round(time.Second), a.maxEpochAge)
	default:
		return nil
	}
	a.log.Warn("auditor: NOT COSIGNING: " + reason)
	return fmt.Errorf("%w: %s", sentinel, reason)
}

func (a *Auditor) cosignedSize() uint64 {
	if a.cosigned == nil {
		return 0
	}
	return a.cosigned.Size
}

// checkKeys fetches the server's keys and pins them, or compares them
// with the pin.
func (a *Auditor) checkKeys(ctx context.Context) error {
	body, err := a.get(ctx, api.PathTransparencyKeys, nil, maxKeysResponse)
	if err != nil {
		return err
	}
	var keys api.TransparencyKeysResponse
	if err := json.Unmarshal(body, &keys); err != nil {
		return fmt.Errorf("auditor: %s: %v", api.PathTransparencyKeys, err)
	}
	if !slices.Contains(keys.Auditors, a.vkey) {
		a.log.Warn("auditor: the server does not collect this auditor's cosignatures; its operator must run doorlessd --kt-auditor " + a.vkey)
	}
	if a.pin != nil {
		var diff []string
		if keys.Origin != a.pin.Origin {
			diff = append(diff, fmt.Sprintf("origin %q, pinned %q", keys.Origin, a.pin.Origin))
		}
		if keys.LogKey != a.pin.LogKey {
			diff = append(diff, fmt.Sprintf("log key %q, pinned %q", keys.LogKey, a.pin.LogKey))
		}
		if !bytes.Equal(keys.VRFKey, a.pin.VRFKey) {
			diff = append(diff, fmt.Sprintf("VRF key %x, pinned %x", keys.VRFKey, a.pin.VRFKey))
		}
		if diff != nil {
			return fmt.Errorf("%w (%s, pinned in %s): %s", ErrPinMismatch, a.server, filepath.Join(a.dir, pinFile), strings.Join(diff, "; "))
		}
		return nil
	}
	if keys.Origin == "" || strings.ContainsAny(keys.Origin, "\n") {
		return fmt.Errorf("auditor: the server's log origin %q is not a line", keys.Origin)
	}
	p := &pin{Server: a.server.String(), Origin: keys.Origin, LogKey: keys.LogKey, VRFKey: keys.VRFKey, PinnedAt: a.now().UTC()}
	if err := a.usePin(p); err != nil {
		return fmt.Errorf("auditor: the server's log key: %v", err)
	}
	if err := writeJSON(a.dir, pinFile, p); err != nil {
		a.pin, a.logKey, a.replay = nil, nil, nil
		return err
	}
	a.log.Info("auditor: pinned the log", "origin", p.Origin, "log_key", p.LogKey)
	return nil
}

// replayTo fetches and applies epochs until the replayed log has size
// epochs.
func (a *Auditor) replayTo(ctx context.Context, size uint64) error {
	head := a.replay.Head()
	for head.Size < size {
		q := url.Values{api.QueryFrom: {strconv.FormatUint(head.Size, 10)}}
		body, err := a.get(ctx, api.PathTransparencyAudit, q, maxAuditResponse)
		if err != nil {
			return err
		}
		var page api.TransparencyAuditResponse
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("auditor: %s: %v", api.PathTransparencyAudit, err)
		}
		if page.From != head.Size {
			return fmt.Errorf("auditor: asked for epochs from %d, the server sent them from %d", head.Size, page.From)
		}
		if len(page.Epochs) > api.MaxAuditEpochs {
			return fmt.Errorf("auditor: the server sent %d epochs, more than %d", len(page.Epochs), api.MaxAuditEpochs)
		}
		if len(page.Epochs) == 0 {
			return fmt.Errorf("auditor: the log signed a checkpoint of size %d but serves epochs only up to %d; not cosigning", size, head.Size)
		}
		for _, b := range page.Epochs {
			if head, err = a.applyEpoch(head.Size, b); err != nil {
				return err
			}
			if head.Size == size {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// applyEpoch replays epoch index (the replayed log's size) and checks that
// the replay passes through the head the auditor cosigned before. It
// returns the replayed log's new head.
func (a *Auditor) applyEpoch(index uint64, b []byte) (kt.Head, error) {
	var c kt.EpochChanges
	if err := c.UnmarshalBinary(b); err != nil {
		return kt.Head{}, a.fail(&index, "the epoch's changes do not decode", err)
	}
	if err := a.replay.Apply(&c); err != nil {
		return kt.Head{}, a.fail(&index, "the epoch breaks the log's rules", err)
	}
	a.newestEpoch = c.Epoch.Timestamp
	head := a.replay.Head()
	if a.cosigned != nil && head.Size == a.cosigned.Size && !bytes.Equal(head.Root[:], a.cosigned.Root) {
		return kt.Head{}, a.fail(&index, fmt.Sprintf("the log of size %d is not the one this auditor cosigned on %s (a fork)",
			head.Size, a.cosigned.At.Format(time.RFC3339)), nil)
	}
	return head, nil
}

// fail records an audit failure and returns it. If the record cannot be
// written the auditor still stops: the error says so.
func (a *Auditor) fail(epoch *uint64, reason string, cause error) error {
	now := a.now().UTC()
	rec := failureRecord{At: now, Server: a.server.String(), Epoch: epoch, Reason: reason}
	if a.pin != nil {
		rec.Origin = a.pin.Origin
	}
	if cause != nil {
		rec.Reason += ": " + cause.Error()
	}
	fe := &FailureError{At: now, Server: a.server.String(), Epoch: derefOr(epoch), HasEpoch: epoch != nil,
		Reason: reason, Record: filepath.Join(a.dir, failureFile), Err: cause}
	if err := writeJSON(a.dir, failureFile, &rec); err != nil {
		fe.Record = ""
		fe.Reason += fmt.Sprintf(" (and the failure could not be recorded: %v)", err)
	}
	// Never cosign again in this process either.
	a.failed = fe
	a.log.Error(fe.Error())
	return fe
}

// errNoCheckpoint: the server has no checkpoint to give (404).
var errNoCheckpoint = errors.New("auditor: no checkpoint")

func (a *Auditor) fetchCheckpoint(ctx context.Context) ([]byte, error) {
	b, err := a.get(ctx, api.PathTransparencyCheckpoint, nil, kt.MaxCheckpointSize)
	var he *httpError
	if errors.As(err, &he) && he.status == http.StatusNotFound || err == nil && len(b) == 0 {
		return nil, errNoCheckpoint
	}
	return b, err
}

func (a *Auditor) postCosignature(ctx context.Context, cosigned []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.endpoint(api.PathTransparencyCosign, nil), bytes.NewReader(cosigned))
	if err != nil {
		return fmt.Errorf("auditor: %v", err)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	_, err = a.do(req, maxErrorBody)
	if err != nil {
		return fmt.Errorf("auditor: the server refused the cosignature: %w", err)
	}
	return nil
}

func (a *Auditor) endpoint(path string, q url.Values) string {
	u := *a.server
	u.Path += path
	u.RawQuery = q.Encode()
	return u.String()
}

func (a *Auditor) get(ctx context.Context, path string, q url.Values, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.endpoint(path, q), nil)
	if err != nil {
		return nil, fmt.Errorf("auditor: %v", err)
	}
	return a.do(req, limit)
}

// httpError is an answer other than 2xx.
type httpError struct {
	method, path string
	status       int
	message      string
}

func (e *httpError) Error() string {
	s := fmt.Sprintf("auditor: %s %s: %s", e.method, e.path, http.StatusText(e.status))
	if e.message != "" {
		s += ": " + e.message
	}
	return s
}

// do sends req and returns the body of a 2xx answer, at most limit bytes.
func (a *Auditor) do(req *http.Request, limit int64) ([]byte, error) {
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("auditor: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		he := &httpError{method: req.Method, path: req.URL.Path, status: resp.StatusCode}
		var eb api.ErrorBody
		if json.Unmarshal(body, &eb) == nil && eb.Error != nil {
			he.message = eb.Error.Code + ": " + eb.Error.Message
		}
		return nil, he
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("auditor: %s %s: %v", req.Method, req.URL.Path, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("auditor: %s %s: answer over %d bytes", req.Method, req.URL.Path, limit)
	}
	return body, nil
}
