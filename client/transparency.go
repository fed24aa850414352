package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/kt/vrf"
	"github.com/doorless/doorless/protocol/keys"
)

// Key transparency (kt/, docs/key-transparency.md). The server commits,
// under each username (kt.UsernameLabel), the account that holds it, its
// identity key and its signed device list (kt.AccountValue), every version
// of the list in order, to a log whose keys this device pins when it joins
// (Register fetches them from the server; Link takes them, with the head
// and the auditor policy, from the approving device's sealed provisioning
// message). Then:
//
//   - Lookups fail closed. Keys from the server (a prekey bundle, an
//     account looked up for a safety number) are used only with a proof
//     that verifies against the pinned keys, is consistent with the last
//     head this device verified, and opens to exactly those keys; anything
//     else is ErrTransparency and nothing is encrypted. A contact's key that
//     came another way (the first message of someone who wrote first, a
//     sealed sender certificate) is looked up in the log before anything is
//     encrypted to it; the labels table records what was verified. A
//     safety number is over a key the log holds, too.
//   - Logged devices. Only devices on the account's device list in the
//     log, as this device verified it less than an hour ago (listMaxAge),
//     are encrypted to: one-to-one, transcripts to this account's other
//     devices, sender keys, sealed multi-recipient sends. A removed device
//     still holds the identity key; the log, which the account's owner
//     monitors, no longer lists it. A message from a device not on the
//     sender's list makes this device look the sender up once more, and
//     is dropped if the device is still not listed.
//   - Contact monitoring. For each label this device verified it keeps the
//     counter and value; a later proof with a smaller counter, or another
//     value under the same counter, is ErrTransparencyRollback and an
//     alert.
//   - Fresh logs. A lookup whose log's newest epoch is more than
//     Options.MaxEpochAge (an hour) behind this device's clock, or ahead
//     of it, is refused (ErrTransparency wrapping kt.ErrStale): the server
//     makes an epoch every ten minutes even without a change, so a log that
//     old is a server showing this device an old view (a frozen view, from
//     before a key was added to this account, or before a device was
//     removed from a contact's), or a broken one. The owner monitor raises
//     an alert for it.
//   - Owner monitoring. CheckTransparency, which Receive runs every
//     Options.MonitorInterval, checks this account's own entry: its account
//     id and identity key, a device list it signed, at the counter its
//     version puts it at (every version is published once, in order, so
//     the counter is a fixed base plus the version minus one). Right after
//     every device-list change this device makes (registration, linking,
//     approving a link, removing a device) the check also finds exactly the
//     new list in the log. What this account did not do is a persistent
//     alert (TransparencyAlerts, a *TransparencyAlert event, a warning on
//     every CLI command) until ClearTransparencyAlerts. So is a device that
//     another device of the account added (a notice: it may be the user's
//     doing), and a check that cannot be made: the one right after joining
//     (whose counter is the base), or any for three monitoring intervals.

// Key transparency defaults.
const (
	// DefaultMaxAuditLag is how old the newest required auditor
	// cosignature may be. An auditor cosigns within minutes of each epoch;
	// the lag bounds how long a server could show this device a view of
	// the log that no auditor has checked (a split view), and a day lets
	// an auditor be down overnight without every lookup failing closed.
	// It also matches the owner monitor: a device that monitors hourly
	// sees a forged entry within a day at worst.
	DefaultMaxAuditLag = 24 * time.Hour
	// DefaultMonitorInterval is how often Receive checks this account's
	// own entry.
	DefaultMonitorInterval = time.Hour
	// DefaultMaxEpochAge is how old (or how far ahead of this device's
	// clock) the log's newest epoch may be. The server makes one at least
	// every ten minutes (server.DefaultEpochInterval): an hour is six of
	// them, room for a restart, a slow store and clocks a little off.
	DefaultMaxEpochAge = time.Hour
	// ownPublishGrace is how long after pinning the log a device that has
	// never seen its account's entry, and made no change of its own that
	// it waits to find there, may find the entry absent without an alert.
	// Only a profile from before key transparency is in that state (a
	// device that joins finds its entry at once: the server answers a
	// change only once it is published), and its server publishes the
	// accounts it had before the log in its first epochs, which take a
	// while for many accounts.
	ownPublishGrace = 10 * time.Minute
	// ownChangeWait is how long ApproveLink waits for the log to publish
	// the device list the server shows it with the new device: the new
	// device's request was answered once the list was published, but the
	// approving device may see the list in between.
	ownChangeWait = 30 * time.Second
	// maxHeadRetries bounds the lookups repeated because another process
	// using the profile moved the head meanwhile.
	maxHeadRetries = 3
	// uncheckedIntervals is how many monitoring intervals may pass
	// without a successful check of this account's entry before the
	// unchecked alert (three hours by default). A server that wants to
	// hide a key it added to this account from this device alone has
	// only to fail this device's own lookups (a 404, a 500, a bad proof)
	// while serving everything else, and a failed check cannot be told
	// from such a refusal. One or two failed checks in a row are a
	// server restarting or a train going through a tunnel; a third
	// interval without one is not ordinary, and three hours is short
	// beside the day an auditor may lag (DefaultMaxAuditLag), the other
	// bound on how long a change to this account can stay hidden.
	uncheckedIntervals = 3
)

// listMaxAge is how long ago this device may have verified a user's entry
// in the log and still encrypt to the devices on its list without looking
// it up again. Nothing else tells a sender that a device was removed from
// an account but the server (its 409 answer, a fresh bundle), which may be
// the one keeping the removed device (it still holds the identity key)
// on the list; so the list is refreshed from the log, which the account's
// owner monitors, at least this often while the sender writes. An hour,
// like the owner monitor's interval and the log's largest epoch age: a
// removed device reads a sender's messages an hour or two at most.
const listMaxAge = time.Hour

// joinCheckWaits are the pauses between the tries of the check right after
// this device joins (Register, Link): that check takes the base later
// checks hold the entry to, so a server that fails it and lets a later one
// through could slip a change in between. Seconds are enough for a server
// that only stumbled.
var joinCheckWaits = []time.Duration{250 * time.Millisecond, time.Second, 2 * time.Second}

// Errors of key transparency a caller branches on.
var (
	// ErrTransparency: the server's keys for a user are not proven by its
	// log: no proof, a proof that does not verify (errors.Is finds the kt
	// sentinel too: kt.ErrInvalidProof, kt.ErrInconsistent, ...), or one
	// that proves other keys. Nothing was encrypted.
	ErrTransparency = errors.New("client: key transparency: the server's keys are not proven by its log")
	// ErrTransparencyRollback: the log showed an entry older than one this
	// device verified before, or another value for the same version (it
	// comes wrapped in ErrTransparency, and is kept as an alert).
	ErrTransparencyRollback = errors.New("client: key transparency: the log went back on an entry it showed before")
	// ErrTransparencyAlert: CheckTransparency found this account's entry
	// changed in a way it did not change them, and raised an alert.
	ErrTransparencyAlert = errors.New("client: key transparency: the log shows a change to this account that it did not make")
)

// Causes wrapped with ErrTransparency.
var (
	errNoProof       = errors.New("no proof")
	errNotInLog      = errors.New("the entry is not in the log")
	errProofMismatch = errors.New("the keys differ from those the log holds")
	errNoLog         = errors.New("the server offers no key transparency log")
	// errHeadMoved: another process verified a newer head meanwhile; the
	// lookup is made again.
	errHeadMoved = errors.New("client: key transparency: the head moved meanwhile")
)

// transparencyError is ErrTransparency with its cause.
type transparencyError struct{ cause error }

func (e *transparencyError) Error() string   { return ErrTransparency.Error() + ": " + e.cause.Error() }
func (e *transparencyError) Unwrap() []error { return []error{ErrTransparency, e.cause} }

func transparencyErr(cause error) error { return &transparencyError{cause: cause} }

// AlertKind names what an alert found.
type AlertKind string

// Alert kinds.
const (
	// AlertIdentityKey: the log holds another identity key for this
	// account: someone can make the server hand it out.
	AlertIdentityKey AlertKind = "identity_key"
	// AlertDeviceList: the log holds a device list for this account that
	// its identity key did not sign, or one older than seen before.
	AlertDeviceList AlertKind = "device_list"
	// AlertUnexplained: this account's entry is not at the counter its
	// device list's version puts it at: the log holds a change this
	// account did not make (a ghost device, a swapped key, put there and
	// taken back), or left one of its device lists out.
	AlertUnexplained AlertKind = "unexplained_change"
	// AlertOwnChange: a device-list change this device made is not in the
	// log as it made it: the log holds another list, or went past it.
	AlertOwnChange AlertKind = "own_change"
	// AlertUsername: the log maps this account's username to another
	// account.
	AlertUsername AlertKind = "username"
	// AlertMissing: this account's entry is not in the log, or holds it
	// deleted.
	AlertMissing AlertKind = "missing"
	// AlertRollback: an entry went back (ErrTransparencyRollback).
	AlertRollback AlertKind = "rollback"
	// AlertFork: the log is not consistent with the head this device kept:
	// the server shows different devices different logs.
	AlertFork AlertKind = "fork"
	// AlertStale: the log's newest epoch is older than Options.MaxEpochAge
	// (or that far ahead of this device's clock): the server makes an
	// epoch every ten minutes, so it is showing this device an old view of
	// the log (hiding newer changes to this account from it), or it is
	// broken, or this device's clock is far off.
	AlertStale AlertKind = "stale"
	// AlertUnchecked: no check of this account's entry has succeeded for
	// longer than uncheckedIntervals monitoring intervals, or the check
	// right after this device joined did not (and then, once one does,
	// when its base was taken): a server that answers this device
	// otherwise but not these checks may be hiding a change to this
	// account from it. (A device that was offline all that time gets it
	// too: it could not check.)
	AlertUnchecked AlertKind = "unchecked"
	// AlertDeviceAdded: the log holds a device list of this account with
	// a device that this device did not add and had not seen on its list
	// before: another device of the account added it (approving a link),
	// which may be the user's doing, or someone holding the account's
	// identity key (a removed or stolen device) did. Device names it.
	AlertDeviceAdded AlertKind = "device_added"
)

// TransparencyAlert is an alert the key transparency monitors raised: the
// server's log shows something about this account (or went back on what it
// showed of a contact) that is not what it should be. Alerts stay until
// ClearTransparencyAlerts; Receive hands each to its handler once, as an
// event, when it is raised.
type TransparencyAlert struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Kind    AlertKind `json:"kind"`
	Subject string    `json:"subject"` // the username concerned
	Detail  string    `json:"detail"`
	// Device is the device the alert is about (AlertDeviceAdded), 0 for
	// none.
	Device uint32 `json:"device,omitempty"`
}

func (*TransparencyAlert) isEvent() {}

// String describes the alert.
func (a *TransparencyAlert) String() string {
	return fmt.Sprintf("key transparency alert %d (%s, %s): %s", a.ID, a.Kind, a.Subject, a.Detail)
}

// transparencyOptions are the Options of key transparency, kept by the
// Client.
type transparencyOptions struct {
	auditors        []string
	cosignatures    int
	maxAuditLag     time.Duration
	monitorInterval time.Duration
	maxEpochAge     time.Duration
}

// checkTransparencyOptions checks the key transparency options.
func checkTransparencyOptions(o Options) error {
	if o.Cosignatures < 0 || o.MaxAuditLag < 0 || o.MonitorInterval < 0 || o.MaxEpochAge < 0 {
		return errors.New("client: negative key transparency option")
	}
	for _, a := range o.Auditors {
		if _, err := kt.NewCosignatureVerifier(a); err != nil {
			return fmt.Errorf("client: auditor key %q: %v", a, err)
		}
	}
	return nil
}

func transparencyOpts(o Options) transparencyOptions {
	t := transparencyOptions{auditors: slices.Clone(o.Auditors), cosignatures: o.Cosignatures,
		maxAuditLag: o.MaxAuditLag, monitorInterval: o.MonitorInterval, maxEpochAge: o.MaxEpochAge}
	if t.monitorInterval == 0 {
		t.monitorInterval = DefaultMonitorInterval
	}
	if t.maxEpochAge == 0 {
		t.maxEpochAge = DefaultMaxEpochAge
	}
	return t
}

// TransparencyPolicy is what a lookup's proof must carry beyond the log's
// signature: cosignatures of auditors, and a recent epoch.
type TransparencyPolicy struct {
	// Auditors are the note verifier keys of the auditors trusted: the
	// profile's (RequireAuditor) and Options.Auditors.
	Auditors []string
	// Cosignatures is how many of them must have cosigned a checkpoint the
	// lookup's extends: the larger of the profile's and Options', and at
	// least 1 when there are auditors.
	Cosignatures int
	// MaxAuditLag is how old the newest of those cosignatures may be: the
	// smaller of the profile's and Options', DefaultMaxAuditLag when
	// neither says.
	MaxAuditLag time.Duration
	// MaxEpochAge is how far the log's newest epoch may be behind this
	// device's clock or ahead of it: Options.MaxEpochAge, by default
	// DefaultMaxEpochAge.
	MaxEpochAge time.Duration
}

// policy combines the profile's policy with the Options': Options can only
// make it stricter.
func (c *Client) policy(l *profile.TransparencyLog) TransparencyPolicy {
	p := TransparencyPolicy{Cosignatures: max(l.Cosignatures, c.kt.cosignatures), MaxEpochAge: c.kt.maxEpochAge}
	for _, a := range append(slices.Clone(l.Auditors), c.kt.auditors...) {
		if !slices.Contains(p.Auditors, a) {
			p.Auditors = append(p.Auditors, a)
		}
	}
	if p.Cosignatures == 0 && len(p.Auditors) > 0 {
		p.Cosignatures = 1
	}
	for _, lag := range []time.Duration{l.MaxAuditLag, c.kt.maxAuditLag} {
		if lag > 0 && (p.MaxAuditLag == 0 || lag < p.MaxAuditLag) {
			p.MaxAuditLag = lag
		}
	}
	if p.MaxAuditLag == 0 {
		p.MaxAuditLag = DefaultMaxAuditLag
	}
	return p
}

// verifier makes the verifier of the pinned log under the policy.
func (c *Client) verifier(l *profile.TransparencyLog) (*kt.Verifier, error) {
	logKey, err := note.NewVerifier(l.LogKey)
	if err != nil {
		return nil, errors.New("client: the pinned transparency log key is corrupt")
	}
	vrfKey, err := vrf.ParsePublicKey(l.VRFKey)
	if err != nil {
		return nil, errors.New("client: the pinned transparency vrf key is corrupt")
	}
	p := c.policy(l)
	if p.Cosignatures > len(p.Auditors) {
		return nil, fmt.Errorf("client: key transparency: %d cosignatures required of %d auditors", p.Cosignatures, len(p.Auditors))
	}
	v := &kt.Verifier{Origin: l.Origin, LogKey: logKey, VRFKey: vrfKey, NeedCosignatures: p.Cosignatures, MaxAuditLag: p.MaxAuditLag,
		MaxEpochAge: p.MaxEpochAge}
	for _, a := range p.Auditors {
		av, err := kt.NewCosignatureVerifier(a)
		if err != nil {
			return nil, fmt.Errorf("client: auditor key %q: %v", a, err)
		}
		v.Auditors = append(v.Auditors, av)
	}
	return v, nil
}

// fetchTransparencyLog fetches the log's keys from the server and checks
// them, for pinning.
func fetchTransparencyLog(ctx context.Context, hc *http.Client, serverURL string) (*profile.TransparencyLog, error) {
	var resp api.TransparencyKeysResponse
	err := doJSON(ctx, hc, http.MethodGet, serverURL+api.PathTransparencyKeys, "", "", nil, &resp)
	if _, ok := isCode(err, api.CodeNotFound); ok {
		return nil, transparencyErr(errNoLog)
	}
	if err != nil {
		return nil, fmt.Errorf("client: fetching the transparency log's keys: %w", err)
	}
	l := &profile.TransparencyLog{Origin: resp.Origin, LogKey: resp.LogKey, VRFKey: resp.VRFKey}
	if err := checkLog(l); err != nil {
		return nil, errors.New("client: the server's transparency log keys are malformed")
	}
	return l, nil
}

// checkLog checks a log's keys, head and policy (from the server or a
// provisioning message).
func checkLog(l *profile.TransparencyLog) error {
	rootSize := kt.HashSize // a head has a root; no head, none
	if l.HeadSize == 0 {
		rootSize = 0
	}
	if l.Origin == "" || strings.ContainsAny(l.Origin, "\n\r") || len(l.HeadRoot) != rootSize {
		return errors.New("malformed")
	}
	if _, err := note.NewVerifier(l.LogKey); err != nil {
		return err
	}
	if _, err := vrf.ParsePublicKey(l.VRFKey); err != nil {
		return err
	}
	for _, a := range l.Auditors {
		if _, err := kt.NewCosignatureVerifier(a); err != nil {
			return err
		}
	}
	if l.Cosignatures < 0 || l.MaxAuditLag < 0 {
		return errors.New("malformed")
	}
	return nil
}

// pinnedLog returns the pinned log, nil when there is none.
func (c *Client) pinnedLog(ctx context.Context) (*profile.TransparencyLog, error) {
	var l *profile.TransparencyLog
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		var err error
		l, err = tx.TransparencyLog()
		return err
	})
	return l, err
}

// ktLog returns the pinned log. A profile from before key transparency has
// none: it pins the server's now, as it would have when it joined.
func (c *Client) ktLog(ctx context.Context) (*profile.TransparencyLog, error) {
	if l, err := c.pinnedLog(ctx); err != nil || l != nil {
		return l, err
	}
	l, err := fetchTransparencyLog(ctx, c.hc, c.serverURL)
	if err != nil {
		return nil, err
	}
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		_, err := tx.PinTransparencyLog(l, c.now()) // another process's pin stays
		return err
	})
	if err != nil {
		return nil, err
	}
	l, err = c.pinnedLog(ctx)
	if err == nil && l == nil {
		err = errors.New("client: no transparency log pinned")
	}
	return l, err
}

// knownHead is the head a pinned log's row holds, nil for none.
func knownHead(l *profile.TransparencyLog) *kt.Head {
	if l.HeadSize == 0 {
		return nil
	}
	h := &kt.Head{Size: l.HeadSize}
	copy(h.Root[:], l.HeadRoot)
	return h
}

// withKnown adds the head's size to a request path.
func withKnown(path string, size uint64) string {
	return path + "?" + url.Values{api.QueryKnownSize: {strconv.FormatUint(size, 10)}}.Encode()
}

// decodeProof decodes a proof from the server (ErrTransparency).
func decodeProof(b []byte) (*kt.LookupProof, error) {
	if len(b) == 0 {
		return nil, transparencyErr(errNoProof)
	}
	var p kt.LookupProof
	if err := p.UnmarshalBinary(b); err != nil {
		if !errors.Is(err, kt.ErrMalformed) {
			err = fmt.Errorf("%w: %v", kt.ErrMalformed, err)
		}
		return nil, transparencyErr(err)
	}
	return &p, nil
}

// proofFetch asks the server for something that carries a proof, telling
// it the size of the head this device knows, and returns the proof and the
// labels it must answer.
type proofFetch func(ctx context.Context, known uint64) (*kt.LookupProof, [][]byte, error)

// proven runs fetch and verifies its proof (verifyProof); again when
// another process moved the head meanwhile. subject names the user, for
// alerts.
func (c *Client) proven(ctx context.Context, subject string, fetch proofFetch) ([]kt.Result, error) {
	for try := 0; ; try++ {
		l, err := c.ktLog(ctx)
		if err != nil {
			return nil, err
		}
		p, labels, err := fetch(ctx, l.HeadSize)
		if err != nil {
			return nil, err
		}
		res, err := c.verifyProof(ctx, l, labels, p, subject)
		if errors.Is(err, errHeadMoved) && try < maxHeadRetries {
			continue
		}
		return res, err
	}
}

// verifyProof checks a proof for labels against the pinned log and the head
// this device kept (l, as read before the request), then, in one
// transaction, checks each label against what was verified of it before
// (contact monitoring) and records the new head and what the proof shows.
// A log inconsistent with the head, or a label gone back, raises an alert.
func (c *Client) verifyProof(ctx context.Context, l *profile.TransparencyLog, labels [][]byte, p *kt.LookupProof, subject string) ([]kt.Result, error) {
	v, err := c.verifier(l)
	if err != nil {
		return nil, err
	}
	now := c.now()
	known := knownHead(l)
	head, res, err := v.Verify(known, labels, p, now)
	if err != nil {
		if errors.Is(err, kt.ErrInconsistent) {
			c.raiseAlerts(ctx, alert(now, AlertFork, subject, "the log is not consistent with the last head this device verified (size "+
				strconv.FormatUint(l.HeadSize, 10)+"): the server may be showing devices different logs"))
		}
		return nil, transparencyErr(err)
	}
	if len(res) != len(labels) {
		return nil, transparencyErr(kt.ErrInvalidProof)
	}
	var back []int // labels that went back
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		back = nil
		cur, err := tx.TransparencyLog()
		if err != nil {
			return err
		}
		if cur == nil || cur.HeadSize != l.HeadSize || !bytes.Equal(cur.HeadRoot, l.HeadRoot) {
			return errHeadMoved
		}
		for i, r := range res {
			prev, err := tx.TransparencyLabel(labels[i])
			if err != nil {
				return err
			}
			if prev != nil && prev.Present && (!r.Present || r.Counter < prev.Counter ||
				r.Counter == prev.Counter && !bytes.Equal(r.Value, prev.Value)) {
				back = append(back, i)
			}
		}
		if len(back) > 0 {
			return ErrTransparencyRollback // nothing recorded
		}
		for i, r := range res {
			st := &profile.LabelState{Present: r.Present, Counter: r.Counter, Value: r.Value, Verified: now}
			if err := tx.PutTransparencyLabel(labels[i], st); err != nil {
				return err
			}
		}
		return tx.PutTransparencyHead(head.Size, head.Root[:])
	})
	if errors.Is(err, ErrTransparencyRollback) {
		var as []*TransparencyAlert
		for _, i := range back {
			as = append(as, alert(now, AlertRollback, subject, fmt.Sprintf("the log went back on the entry it showed before (now at version %d)",
				res[i].Counter)))
		}
		c.raiseAlerts(ctx, as...)
		return nil, transparencyErr(ErrTransparencyRollback)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// checkEntry checks that the verified result for a username's label holds
// exactly the account id, identity key and signed device list the server
// presented.
func checkEntry(res []kt.Result, accountID string, ik keys.PublicKey, deviceList []byte) error {
	if len(res) != 1 || !res[0].Present || len(res[0].Value) == 0 {
		return transparencyErr(errNotInLog)
	}
	v, err := kt.DecodeAccountValue(res[0].Value)
	if err != nil {
		return transparencyErr(err)
	}
	if v.AccountID != accountID || !bytes.Equal(v.IdentityKey, ik.Bytes()) || !bytes.Equal(v.DeviceList, deviceList) {
		return transparencyErr(errProofMismatch)
	}
	return nil
}

// lookupProof asks the server for the lookup proof of a username's entry
// (PathTransparencyLookup): the proofFetch of lookups and of the owner
// monitor.
func (c *Client) lookupProof(username string) proofFetch {
	return func(ctx context.Context, known uint64) (*kt.LookupProof, [][]byte, error) {
		var resp api.TransparencyLookupResponse
		err := c.do(ctx, http.MethodGet, withKnown(pathFor(api.PathTransparencyLookup, "{username}", username), known), nil, &resp)
		if _, ok := isCode(err, api.CodeNotFound); ok && username != c.username {
			return nil, nil, ErrUnknownUser
		}
		if err != nil {
			return nil, nil, fmt.Errorf("client: key transparency lookup: %w", err)
		}
		p, err := decodeProof(resp.Proof)
		if err != nil {
			return nil, nil, err
		}
		return p, [][]byte{kt.UsernameLabel(username)}, nil
	}
}

// lookup asks the log for a user's entry and returns the account id, its
// identity key and its device list it proves. ErrUnknownUser when the
// server has no such user, or the log shows it absent or deleted.
func (c *Client) lookup(ctx context.Context, username string) (*kt.AccountValue, error) {
	res, err := c.proven(ctx, username, c.lookupProof(username))
	if err != nil {
		return nil, err
	}
	if len(res) != 1 || !res[0].Present || len(res[0].Value) == 0 {
		return nil, ErrUnknownUser
	}
	v, err := kt.DecodeAccountValue(res[0].Value)
	if err != nil {
		return nil, transparencyErr(err)
	}
	if !api.ValidUUID(v.AccountID) {
		return nil, transparencyErr(errProofMismatch)
	}
	return v, nil
}

// loggedList returns the device list the log holds for username's entry,
// as this device last verified it, when the entry maps username to
// accountID with the identity key ik and the list is signed by that key;
// nil otherwise (nothing verified, another account or key, a list the key
// did not sign). Only the devices it names are encrypted to, and taken to
// be the account's: a removed device still holds the identity key, and
// with the server's help could make a session with a sender, but the log
// no longer lists it.
func loggedList(tx *profile.Tx, username, accountID string, ik keys.PublicKey) (*devicelist.List, error) {
	u, err := tx.TransparencyLabel(kt.UsernameLabel(username))
	if err != nil {
		return nil, err
	}
	return listIn(u, accountID, ik), nil
}

// listIn is loggedList of the label state u (nil: nothing verified).
func listIn(u *profile.LabelState, accountID string, ik keys.PublicKey) *devicelist.List {
	if u == nil || !u.Present || len(u.Value) == 0 {
		return nil
	}
	v, err := kt.DecodeAccountValue(u.Value)
	if err != nil || v.AccountID != accountID || !bytes.Equal(v.IdentityKey, ik.Bytes()) {
		return nil
	}
	l, err := devicelist.Verify(ik, v.DeviceList)
	if err != nil {
		return nil
	}
	return l
}

// ktVerified reports whether the log, as this device last verified it,
// maps username to accountID with the identity key ik (and a device list
// that key signed).
func ktVerified(tx *profile.Tx, username, accountID string, ik keys.PublicKey) (bool, error) {
	l, err := loggedList(tx, username, accountID, ik)
	return l != nil, err
}

// freshList is loggedList when this device verified the entry less than
// listMaxAge ago, nil otherwise: what it encrypts to. (For this account's
// own username: its own list.)
func (c *Client) freshList(tx *profile.Tx, username, accountID string, ik keys.PublicKey) (*devicelist.List, error) {
	u, err := tx.TransparencyLabel(kt.UsernameLabel(username))
	if err != nil || u == nil || c.now().Sub(u.Verified) >= listMaxAge {
		return nil, err
	}
	return listIn(u, accountID, ik), nil
}

// ensureVerified makes sure that the key this device trusts for a contact
// is the one the log holds, as verified less than listMaxAge ago: it looks
// the user up when it was not verified that way, and when the log holds
// another account or key, fetches the user's keys anew (fetchSessions:
// with their proof, and the usual trust decisions about a changed key). A
// user this device does not know is fetched the same way. For this
// account's own username it runs the owner monitor's check, which verifies
// its entry.
func (c *Client) ensureVerified(ctx context.Context, username string, res *SendResult) error {
	if username == c.username {
		var fresh bool
		err := c.st.View(ctx, func(tx *profile.Tx) error {
			l, err := c.freshList(tx, c.username, c.accountID, c.identity.Public)
			fresh = l != nil
			return err
		})
		if err != nil || fresh {
			return err
		}
		_, err = c.checkOwn(ctx, false)
		if errors.Is(err, ErrTransparencyAlert) {
			err = nil // checked, and what it found is an alert
		}
		return err
	}
	verified := func() (known, ok bool, err error) {
		err = c.st.View(ctx, func(tx *profile.Tx) error {
			ct, err := tx.Contact(username)
			if err != nil || ct == nil {
				return err
			}
			known = true
			l, err := c.freshList(tx, username, ct.AccountID, ct.IdentityKey)
			ok = l != nil
			return err
		})
		return known, ok, err
	}
	known, ok, err := verified()
	if err != nil || ok {
		return err
	}
	if known {
		if _, err := c.lookup(ctx, username); err != nil {
			return err
		}
		if _, ok, err = verified(); err != nil || ok {
			return err
		}
	}
	local, localAddr := c.local()
	return c.fetchSessions(ctx, username, 0, local, localAddr, res)
}

// alert makes an alert.
func alert(now time.Time, kind AlertKind, subject, detail string) *TransparencyAlert {
	return &TransparencyAlert{At: now, Kind: kind, Subject: subject, Detail: detail}
}

// addAlerts stores alerts and puts each new one in the inbox, for Receive
// to hand over; a repeat of one stored is not stored again.
func addAlerts(tx *profile.Tx, as ...*TransparencyAlert) error {
	for _, a := range as {
		id, err := tx.AddTransparencyAlert(&profile.TransparencyAlert{At: a.At, Kind: string(a.Kind), Subject: a.Subject, Detail: a.Detail,
			Device: a.Device})
		if err != nil {
			return err
		}
		if id == 0 {
			continue
		}
		a.ID = id
		b, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("client: encoding an alert: %v", err)
		}
		err = tx.AddInbox(&profile.InboxItem{EnvelopeID: alertInboxID(id), Kind: kindTransparencyAlert, Data: b})
		if err != nil {
			return err
		}
	}
	return nil
}

// alertInboxID is the inbox's envelope id of an alert.
func alertInboxID(id int64) string { return "kt-alert/" + strconv.FormatInt(id, 10) }

// raiseAlerts stores alerts in a transaction of their own, which the
// caller's context ending does not stop: an alert must not be lost.
func (c *Client) raiseAlerts(ctx context.Context, as ...*TransparencyAlert) {
	if len(as) == 0 {
		return
	}
	// A failure to store is not lost for good: the check that found it
	// finds it again.
	c.st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error { return addAlerts(tx, as...) })
}

// TransparencyAlerts returns the alerts stored, oldest first.
func (c *Client) TransparencyAlerts(ctx context.Context) ([]TransparencyAlert, error) {
	var out []TransparencyAlert
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		as, err := tx.TransparencyAlerts()
		for _, a := range as {
			out = append(out, TransparencyAlert{ID: a.ID, At: a.At, Kind: AlertKind(a.Kind), Subject: a.Subject, Detail: a.Detail,
				Device: a.Device})
		}
		return err
	})
	return out, err
}

// ClearTransparencyAlerts deletes the alerts stored with ids up to upTo
// (the newest the user has read: an alert raised since is kept), and
// returns how many it deleted. Clearing is the only way alerts go: the user
// has looked into them (compared keys with the account's other devices,
// asked the operator, reported it).
func (c *Client) ClearTransparencyAlerts(ctx context.Context, upTo int64) (int, error) {
	var n int64
	err := c.st.Update(ctx, func(tx *profile.Tx) error {
		var err error
		n, err = tx.ClearTransparencyAlerts(upTo)
		return err
	})
	return int(n), err
}

// RequireAuditor adds an auditor (its note verifier key, as the auditor
// publishes it) to those whose cosignatures every lookup must carry, and
// sets how many of the auditors must have cosigned (cosignatures; 0 keeps
// the number, at least 1) and how old their newest cosignature may be
// (maxLag; 0 keeps it). The setting is kept in the profile.
func (c *Client) RequireAuditor(ctx context.Context, vkey string, cosignatures int, maxLag time.Duration) error {
	vkey = strings.TrimSpace(vkey)
	if _, err := kt.NewCosignatureVerifier(vkey); err != nil {
		return fmt.Errorf("client: not an auditor key: %v", err)
	}
	if cosignatures < 0 || maxLag < 0 {
		return errors.New("client: negative cosignatures or lag")
	}
	if _, err := c.ktLog(ctx); err != nil {
		return err
	}
	return c.st.Update(ctx, func(tx *profile.Tx) error {
		l, err := tx.TransparencyLog()
		if err != nil {
			return err
		}
		auditors := l.Auditors
		if !slices.Contains(auditors, vkey) {
			auditors = append(auditors, vkey)
		}
		n := l.Cosignatures
		if cosignatures > 0 {
			n = cosignatures
		}
		n = max(n, 1)
		if n > len(auditors) {
			return fmt.Errorf("client: %d cosignatures required of %d auditors", n, len(auditors))
		}
		lag := l.MaxAuditLag
		if maxLag > 0 {
			lag = maxLag
		}
		return tx.PutTransparencyPolicy(auditors, n, lag)
	})
}

// TransparencyStatus is what this device knows of the log.
type TransparencyStatus struct {
	Origin   string
	HeadSize uint64    // the last head verified: how many epochs (0: none yet)
	Pinned   time.Time // when the log's keys were pinned
	// LastCheck is when a check of this account's entry by the owner
	// monitor last succeeded (zero: never); Monitored whether it has seen
	// the entry.
	LastCheck time.Time
	Monitored bool
	// UncheckedAfter is how long the owner monitor may go without a
	// successful check before it raises an AlertUnchecked.
	UncheckedAfter time.Duration
	Policy         TransparencyPolicy
	Alerts         []TransparencyAlert
}

// TransparencyStatus returns what this device knows of the log, without
// asking the server. A profile that has not pinned a log yet pins it.
func (c *Client) TransparencyStatus(ctx context.Context) (*TransparencyStatus, error) {
	l, err := c.ktLog(ctx)
	if err != nil {
		return nil, err
	}
	s := &TransparencyStatus{Origin: l.Origin, HeadSize: l.HeadSize, Pinned: l.Pinned, Policy: c.policy(l), UncheckedAfter: c.uncheckedAfter()}
	err = c.st.View(ctx, func(tx *profile.Tx) error {
		o, err := tx.OwnerState()
		if err != nil {
			return err
		}
		s.LastCheck, s.Monitored = o.Checked, o.Baseline()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.Alerts, err = c.TransparencyAlerts(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// CheckTransparency is the owner monitor: it looks this account's username
// up in the log and checks its entry. The entry must hold this account's
// id, its identity key and a device list signed by it, no older than the
// newest this device has seen in the log, at counter base + version - 1:
// the server publishes every version of the device list once and in order,
// so a value put there and taken back (a ghost device, a swapped key)
// leaves the counter ahead of the list, and leaving one of the account's
// lists out to hide that leaves it behind. The base is the counter of the
// account's first device list, which the device that registered finds
// right after registering; a linked device derives it from the entry it
// finds when it joins (counter - (version - 1)). The oldest device-list
// change this device made and has not found in the log yet must be there
// exactly: this device checks for it right after making it (Register,
// Link, ApproveLink, RemoveDevice), and, should that check not complete,
// at the next one.
//
// What breaks a rule raises an alert (TransparencyAlerts), and the error is
// ErrTransparencyAlert. A proof that does not verify is ErrTransparency (a
// log inconsistent with the head kept, an entry gone back, or a log whose
// newest epoch is older than Options.MaxEpochAge, kt.ErrStale, raise
// alerts too: a server that keeps this device on an old log could hide a
// key it added to this account since). Receive runs the check every
// Options.MonitorInterval.
//
// A check that fails, for whatever reason (the server's refusal, a proof
// that does not verify, no network), once none has succeeded for
// uncheckedIntervals monitoring intervals, raises an AlertUnchecked: a
// server can hide a change to this account from this device alone by
// failing only its checks. A device list in the log with a device this
// device did not add and had not seen on the account's list before raises
// an AlertDeviceAdded: another device of the account added it, which may
// be the user's doing, or not (a removed device still holds the identity
// key, and can sign a list that names it again).
func (c *Client) CheckTransparency(ctx context.Context) error {
	_, err := c.checkOwn(ctx, false)
	return err
}

// checkOwn runs the owner monitor (CheckTransparency). patient: a log that
// holds an older device list than the change this device waits to find
// there is not an alert yet (behind reports it), as when the change may be
// in the store and not yet published.
func (c *Client) checkOwn(ctx context.Context, patient bool) (behind bool, err error) {
	defer func() {
		// A check that did not complete (stopped by the caller aside).
		if err != nil && !errors.Is(err, ErrTransparencyAlert) && ctx.Err() == nil {
			c.noteFailedCheck(ctx)
		}
	}()
	var epoch int64 // the newest epoch's time, as the last proof fetched has it
	lookup := c.lookupProof(c.username)
	res, err := c.proven(ctx, c.username, func(ctx context.Context, known uint64) (*kt.LookupProof, [][]byte, error) {
		p, labels, err := lookup(ctx, known)
		if p != nil {
			epoch = p.Epoch.Timestamp
		}
		return p, labels, err
	})
	if errors.Is(err, kt.ErrStale) {
		// (The verifier found the epoch to be the signed log's last.)
		c.raiseAlerts(ctx, c.staleAlert(time.UnixMilli(epoch), c.now()))
	}
	if err != nil {
		return false, err
	}
	now := c.now()
	var found []*TransparencyAlert
	err = c.st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error {
		l, err := tx.TransparencyLog()
		if err != nil {
			return err
		}
		st, err := tx.OwnerState()
		if err != nil {
			return err
		}
		var next *profile.OwnerState
		found, next, behind = c.judgeOwn(st, res[0], l.Pinned, now, patient)
		if err := addAlerts(tx, found...); err != nil {
			return err
		}
		return tx.PutOwnerState(next)
	})
	if err != nil {
		return false, err
	}
	if len(found) > 0 {
		return behind, ErrTransparencyAlert
	}
	return behind, nil
}

// uncheckedAfter is how long the owner monitor may go without a successful
// check before the unchecked alert.
func (c *Client) uncheckedAfter() time.Duration {
	return uncheckedIntervals * c.kt.monitorInterval
}

// noteFailedCheck raises the unchecked alert after a failed check when
// none has succeeded for longer than uncheckedAfter (none since this device
// pinned the log, if none ever did). Its detail names the last success, not
// now, so that the failures that follow store one alert.
func (c *Client) noteFailedCheck(ctx context.Context) {
	now := c.now()
	c.st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error {
		st, err := tx.OwnerState()
		if err != nil {
			return err
		}
		since, last := st.Checked, "the last successful check was at %s"
		if since.IsZero() {
			l, err := tx.TransparencyLog()
			if err != nil || l == nil {
				return err
			}
			since, last = l.Pinned, "none has succeeded since this device joined, at %s"
		}
		if now.Sub(since) <= c.uncheckedAfter() {
			return nil
		}
		return addAlerts(tx, alert(now, AlertUnchecked, c.username, fmt.Sprintf("this device could not check your account's entry in the log "+
			"for over %s ("+last+"): the server may be failing these checks alone to hide a key or device it added to your account "+
			"(or this device was offline all that time)", shortDuration(c.uncheckedAfter()), since.UTC().Format(time.RFC3339))))
	})
}

// joinCheck is the owner monitor's first check, right after this device
// joined (Register, Link): it takes the base. It is tried a few times;
// if none succeeds the account stays (it exists on the server), but an
// unchecked alert says at once that the base will come from a later check,
// and judgeOwn raises another, with its time, when one does: a value the
// server published for this account and took back in between would not
// show.
func (c *Client) joinCheck(ctx context.Context) {
	for try := 0; ; try++ {
		_, err := c.checkOwn(ctx, false)
		if err == nil || errors.Is(err, ErrTransparencyAlert) {
			return
		}
		if try == len(joinCheckWaits) || sleepCtx(ctx, joinCheckWaits[try]) != nil {
			break
		}
	}
	now := c.now()
	c.st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error {
		st, err := tx.OwnerState()
		if err != nil || st.Baseline() {
			return err // (another process's check took it meanwhile)
		}
		st.JoinUnchecked = true
		if err := tx.PutOwnerState(st); err != nil {
			return err
		}
		return addAlerts(tx, alert(now, AlertUnchecked, c.username, "the check of your account's entry in the log right after this device "+
			"joined did not succeed: until one does, this device cannot tell whether the server has published a key or device for your "+
			"account that you did not make, and the first check that succeeds takes the entry as it finds it as its base"))
	})
}

// staleAlert is the alert for a log whose newest epoch, made at epoch, is
// too old (or too far ahead) at now. Its detail names the epoch, not now,
// so that checks that find the same frozen log store one alert.
func (c *Client) staleAlert(epoch, now time.Time) *TransparencyAlert {
	at := epoch.UTC().Format(time.RFC3339)
	if epoch.After(now) {
		return alert(now, AlertStale, c.username, fmt.Sprintf("the log's newest epoch is dated %s, more than %s ahead of this device's clock: "+
			"check this device's clock; otherwise the server's log is not to be trusted", at, shortDuration(c.kt.maxEpochAge)))
	}
	return alert(now, AlertStale, c.username, fmt.Sprintf("the log has not moved since %s, more than %s before this device's clock, "+
		"though the server makes an epoch every few minutes: it may be showing this device an old log, hiding newer changes to your account "+
		"from it (or this device's clock is far off)", at, shortDuration(c.kt.maxEpochAge)))
}

// shortDuration prints a duration without its zero minutes and seconds
// (1h, 1h30m, 90s).
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// checkOwnChange runs the owner monitor right after a device-list change
// this device made (recorded, in the change's transaction, with
// tx.PutOwnChange, for the monitor to find in the log). Patiently, for up
// to wait, when the server may have shown the change before publishing it
// (ApproveLink); its failure to complete leaves the change to the next
// check. What it finds is stored as alerts.
func (c *Client) checkOwnChange(ctx context.Context, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for {
		// (A check that raised an alert may still wait for the change.)
		behind, err := c.checkOwn(ctx, time.Now().Before(deadline))
		if err != nil && !errors.Is(err, ErrTransparencyAlert) || !behind {
			return
		}
		if sleepCtx(ctx, linkPoll) != nil {
			return
		}
	}
}

// judgeOwn applies the owner monitor's rules to the verified result for
// this account's username, and returns the alerts, the monitor's next
// state, and whether (patient) the log is behind the change this device
// waits to find there.
func (c *Client) judgeOwn(st *profile.OwnerState, r kt.Result, pinned, now time.Time, patient bool) (as []*TransparencyAlert, next *profile.OwnerState, behind bool) {
	n := *st
	next = &n
	next.Checked = now
	raise := func(kind AlertKind, format string, a ...any) {
		as = append(as, alert(now, kind, c.username, fmt.Sprintf(format, a...)))
	}
	// The change this device waits for is settled by this check, found or
	// not (an alert), unless the log is behind it and the check is
	// patient.
	own := st.OwnVersion
	next.OwnVersion, next.OwnList = 0, nil
	missingOwn := func(holds string) {
		if own != 0 {
			raise(AlertOwnChange, "the log does not hold the device list (version %d) this device made; it holds %s", own, holds)
		}
	}

	if !r.Present || len(r.Value) == 0 {
		if !r.Present && !st.Baseline() && own == 0 && now.Sub(pinned) < ownPublishGrace {
			return nil, next, false // a profile from before the log: not published yet
		}
		raise(AlertMissing, "the log does not hold your username, or holds it deleted")
		missingOwn("none")
		return as, next, false
	}
	v, err := kt.DecodeAccountValue(r.Value)
	if err != nil {
		raise(AlertIdentityKey, "your username's entry does not decode")
		missingOwn("a value that does not decode")
		return as, next, false
	}
	if v.AccountID != c.accountID {
		raise(AlertUsername, "the log maps your username to another account (%s)", printableValue([]byte(v.AccountID)))
		missingOwn("another account's")
		return as, next, false
	}
	if !bytes.Equal(v.IdentityKey, c.identity.Public.Bytes()) {
		raise(AlertIdentityKey, "your username's entry holds another identity key (%s)", shortHex(v.IdentityKey))
	}
	list, err := devicelist.Verify(c.identity.Public, v.DeviceList)
	if err != nil {
		raise(AlertDeviceList, "your username's entry holds a device list your identity key did not sign")
		missingOwn("one your identity key did not sign")
		return as, next, false
	}
	if list.Version < st.ListVersion {
		raise(AlertDeviceList, "your device list in the log went back from version %d to %d", st.ListVersion, list.Version)
	}
	switch {
	case own == 0:
	case list.Version < own && patient:
		next.OwnVersion, next.OwnList = st.OwnVersion, st.OwnList // not yet
		behind = true
	case list.Version != own:
		missingOwn(fmt.Sprintf("version %d", list.Version))
	case !bytes.Equal(v.DeviceList, st.OwnList):
		raise(AlertOwnChange, "the log holds another device list of version %d than the one this device made", own)
	}
	// The counter: base + version - 1 (a uint32 and a version the
	// devicelist package bounds well under 2^62 fit in an int64).
	base := int64(r.Counter) - int64(list.Version) + 1
	if st.Baseline() && base != st.Base {
		extra := base - st.Base
		what := fmt.Sprintf("%d more changes than your device list versions", extra)
		if extra < 0 {
			what = fmt.Sprintf("%d fewer changes than your device list versions", -extra)
		}
		raise(AlertUnexplained, "your username's entry is at version %d with device list version %d, where your account's versions put it at %d: "+
			"the log holds %s (someone had the server publish keys you did not make, and maybe take them back)",
			r.Counter, list.Version, st.Base+int64(list.Version)-1, what)
	}
	// Devices on the list that this device neither added nor saw there
	// before: another device of the account added them.
	if list.Version >= st.ListVersion {
		for _, d := range c.addedElsewhere(st, list) {
			a := alert(now, AlertDeviceAdded, c.username, fmt.Sprintf("device %d was added to your account by another of its devices "+
				"(device list version %d): if that was not you, remove it", d, list.Version))
			a.Device = d
			as = append(as, a)
		}
		next.Devices = slices.Clone(list.Devices)
		next.Added = slices.DeleteFunc(slices.Clone(st.Added), list.Contains)
	}
	// Later checks go on from what was found (alerted, if it broke a
	// rule): an alert the user cleared comes back only for a new change.
	if bytes.Equal(v.IdentityKey, c.identity.Public.Bytes()) {
		if !st.Baseline() && st.JoinUnchecked {
			raise(AlertUnchecked, "the first check of your account's entry that succeeded came at %s, not right after this device joined: "+
				"it took the entry as it found it then (version %d, device list version %d) as its base, so a key or device published for "+
				"your account and taken back before then would not show", now.UTC().Format(time.RFC3339), r.Counter, list.Version)
			next.JoinUnchecked = false
		}
		next.Base = base
		next.ListVersion = max(next.ListVersion, list.Version) // (≥ 1: the baseline is set)
	}
	return as, next, behind
}

// addedElsewhere returns the devices on list other than this one that
// this device neither added nor saw on the account's list before (none
// when that list is not known).
func (c *Client) addedElsewhere(st *profile.OwnerState, list *devicelist.List) []uint32 {
	if st.Devices == nil {
		return nil
	}
	return slices.DeleteFunc(slices.Clone(list.Devices), func(d uint32) bool {
		return d == c.deviceID || slices.Contains(st.Devices, d) || slices.Contains(st.Added, d)
	})
}

// shortHex shows the start of a key.
func shortHex(b []byte) string {
	if len(b) > 8 {
		return hex.EncodeToString(b[:8]) + "…"
	}
	return hex.EncodeToString(b)
}

// printableValue shows a value from the log that should be an account id.
func printableValue(b []byte) string {
	if s := string(b); api.ValidUUID(s) {
		return s
	}
	return shortHex(b)
}

// monitorIfDue runs the owner monitor when the last check is older than the
// monitoring interval. Its failures wait for the next interval; what it
// finds is stored as alerts.
func (c *Client) monitorIfDue(ctx context.Context) {
	var st *profile.OwnerState
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		var err error
		st, err = tx.OwnerState()
		return err
	})
	// (A tenth of slack: a check takes a moment, and the ticker that
	// calls this one fires one interval after the last.)
	if err != nil || !st.Checked.IsZero() && c.now().Sub(st.Checked) < c.kt.monitorInterval*9/10 {
		return
	}
	c.CheckTransparency(ctx)
}
