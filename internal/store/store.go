// Package store defines what doorlessd keeps, as interfaces that every storage
// backend implements: SQLite (internal/store/sqlite) for one machine, and
// PostgreSQL for many. The conformance suite in internal/store/storetest is the
// executable definition of the contract; a backend is correct when it passes.
//
// Everything stored is listed, with its reason and retention, in
// docs/data-inventory.md. The server stores public keys, credential hashes
// and ciphertext: never a private key, a password or a plaintext.
//
// Implementations are safe for concurrent use. Methods take a context and
// return the sentinel errors below (wrapped or not; callers use errors.Is)
// for outcomes a caller branches on.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/doorless/doorless/kt"
)

// Sentinel errors.
var (
	ErrNotFound       = errors.New("store: not found")
	ErrUsernameTaken  = errors.New("store: username taken")
	ErrInvalidInvite  = errors.New("store: invalid invite")
	ErrDuplicate      = errors.New("store: duplicate send id")
	ErrQueueFull      = errors.New("store: queue full")
	ErrTooManyDevices = errors.New("store: too many devices")
	ErrNoSignedPreKey = errors.New("store: device has no signed prekey")
	ErrNoKyberPreKey  = errors.New("store: device has no kyber prekey")
	ErrClosed         = errors.New("store: closed")
	// ErrVersionConflict: a new device list's version is not the current
	// version + 1 (another change came first).
	ErrVersionConflict = errors.New("store: device list version conflict")
	// ErrInvalidLinkToken: a link token is unknown, used, expired, or for
	// another account.
	ErrInvalidLinkToken = errors.New("store: invalid link token")
	// ErrTooManyLinkTokens: the account holds as many unexpired link
	// tokens as it may.
	ErrTooManyLinkTokens = errors.New("store: too many link tokens")
	// ErrMailboxFull: a provisioning mailbox already holds a message.
	ErrMailboxFull = errors.New("store: provisioning mailbox full")
	// ErrMailboxEmpty: a provisioning mailbox holds no message yet.
	ErrMailboxEmpty = errors.New("store: provisioning mailbox empty")
	// ErrEpochConflict: an epoch's number is not the number of epochs
	// stored (another sequencer appended first, or the caller's log is
	// behind the store's).
	ErrEpochConflict = errors.New("store: transparency epoch conflict")
	// ErrSequencerTaken: another node (or another holder on this one)
	// holds the transparency sequencer's lease.
	ErrSequencerTaken = errors.New("store: transparency sequencer lease held by another")
	// ErrDuplicateReport: the reporter already reported the message (a
	// report with the same reporter and commitment hash is stored).
	ErrDuplicateReport = errors.New("store: duplicate report")
	// ErrNonceSeen: a legal request's authority used its nonce in a
	// request recorded before.
	ErrNonceSeen = errors.New("store: legal request nonce seen before")
)

// Store is everything doorlessd keeps.
type Store interface {
	Accounts
	Keys
	Messages
	Provisioning
	Transparency
	Reports
	Legal
	// Close flushes pending writes and releases the backend. Calls after
	// Close return ErrClosed.
	Close() error
}

// Account is a registered user. IdentityKey is the 33-byte public identity
// key (0x05 and the key).
type Account struct {
	ID          string // UUID
	Username    string
	IdentityKey []byte
	Created     time.Time
	// UnidentifiedAccessKey is the account's unidentified access key (16
	// bytes), nil for none. UnrestrictedUnidentifiedAccess: the account
	// accepts sealed-sender messages whatever key they carry.
	UnidentifiedAccessKey          []byte
	UnrestrictedUnidentifiedAccess bool
}

// Device is one device of an account. CredentialHash is SHA-256 of the
// device's password; the password itself is never stored.
type Device struct {
	AccountID      string
	ID             uint32
	RegistrationID uint32
	CredentialHash []byte
	Created        time.Time
	// LastSeenDay is the last UTC day (Day) the device was seen: the day
	// it was created, then as SetLastSeenDay moves it; 0 for a device
	// from before the store kept it. Never a finer time.
	LastSeenDay int64
}

// Day is the UTC day t falls on, in days since 1970-01-01: the only
// precision at which the store keeps when a device was last seen.
func Day(t time.Time) int64 {
	u := t.Unix()
	d := u / secondsPerDay
	if u%secondsPerDay < 0 {
		d-- // before 1970: round down, not toward zero
	}
	return d
}

const secondsPerDay = 24 * 60 * 60

// Invite is a single-use registration code, stored as SHA-256 of the code.
type Invite struct {
	CodeHash []byte
	Created  time.Time
	Expires  time.Time
}

// DeviceList is an account's current device list as its identity key signed
// it (internal/devicelist): the store keeps the blob as given and the version
// it holds, which the server has read out of the verified blob.
type DeviceList struct {
	Version uint64
	Signed  []byte
}

// Accounts keeps accounts, devices, device lists and invites.
//
// Every method that changes what the key-transparency log publishes of an
// account (its identity key, its device list, its username) records, in
// the same transaction, a PendingUpdate holding the value its username's
// entry must have after the change (Transparency): CreateAccount,
// LinkDevice, RemoveDevice and DeleteAccount.
//
// An account's device list changes only together with its devices: every
// method that adds or removes a device stores the new list in the same
// transaction, and refuses with ErrVersionConflict, changing nothing, unless
// the new list's Version is the current one + 1. An account created before
// device lists existed has none (DeviceList: ErrNotFound); its first list
// then needs Version 1.
type Accounts interface {
	// CreateAccount creates the account, its first device, that device's
	// keys and the account's first device list (list.Version must be 1)
	// atomically. When inviteHash is not nil the invite with that hash
	// is consumed in the same transaction (ErrInvalidInvite when it is
	// unknown, used or expired at a.Created). ErrUsernameTaken when the
	// username exists. The account's unidentified access fields are
	// stored as given; the device's LastSeenDay is the day of its Created.
	CreateAccount(ctx context.Context, a *Account, d *Device, k *KeyUpload, list *DeviceList, inviteHash []byte) error
	// DeviceList returns the account's current device list; ErrNotFound
	// for no account, or an account that has none.
	DeviceList(ctx context.Context, accountID string) (*DeviceList, error)
	// AccountByUsername and AccountByID return ErrNotFound for no account.
	AccountByUsername(ctx context.Context, username string) (*Account, error)
	AccountByID(ctx context.Context, id string) (*Account, error)
	// AccountsByID looks up many accounts in one read: the account of each
	// of ids, in the same order, nil where no account has that id.
	AccountsByID(ctx context.Context, ids []string) ([]*Account, error)
	// Device returns one device, ErrNotFound when it does not exist (or was
	// removed).
	Device(ctx context.Context, accountID string, deviceID uint32) (*Device, error)
	// Devices returns the account's devices ordered by id (none: empty, nil
	// error).
	Devices(ctx context.Context, accountID string) ([]Device, error)
	// DevicesOf is Devices for many accounts in one read: the devices of
	// each of accountIDs, in the same order (an unknown account: none).
	DevicesOf(ctx context.Context, accountIDs []string) ([][]Device, error)
	// RemoveDevice deletes a device with its keys and its queue, and stores
	// list as the account's device list, atomically. Its id is never given
	// to another device of the account. ErrNotFound when the device is
	// absent, ErrVersionConflict as for every list change.
	RemoveDevice(ctx context.Context, accountID string, deviceID uint32, list *DeviceList) error
	// CreateInvite stores a new invite.
	CreateInvite(ctx context.Context, inv *Invite) error
	// SetUnidentifiedAccess sets the account's unrestricted flag and,
	// when key is not nil, replaces its unidentified access key (nil
	// keeps it). ErrNotFound for no account.
	SetUnidentifiedAccess(ctx context.Context, accountID string, key []byte, unrestricted bool) error
	// SetLastSeenDay records that the device was seen on day (Day): it
	// moves the device's LastSeenDay forward to day, never back, and
	// writes nothing when it is there already. ErrNotFound for no device.
	SetLastSeenDay(ctx context.Context, accountID string, deviceID uint32, day int64) error
	// DeleteAccount erases the account atomically: its row, its devices
	// with their credential hashes and keys, its device list, its link
	// tokens, the envelopes queued for it, and the envelopes it sent
	// that name it as their source in other accounts' queues (they can
	// no longer be delivered with a sender). Sealed-sender envelopes it
	// sent name no sender and stay; send ids are hashes no one can tie
	// to the account and expire with the message TTL. The username is
	// free afterwards. It records a PendingUpdate with the username and
	// an empty value, which stays in the store until the deletion is
	// published (Transparency.AppendEpoch deletes it), as the account's
	// earlier pending updates, with their values, do. Abuse reports that
	// name the account, as reporter or sender, stay until they expire
	// (Reports). ErrNotFound for no account.
	DeleteAccount(ctx context.Context, accountID string) error
}

// LinkToken lets a new device join an account: an authenticated device asks
// for one, and the new device presents it once. The token itself is never
// stored, only its SHA-256.
type LinkToken struct {
	TokenHash []byte
	AccountID string
	// DeviceID is the id reserved for the new device, taken from the
	// account's ids when the token is made: it is never given to another
	// device, whether or not the token is used.
	DeviceID uint32
	Expires  time.Time
}

// Mailbox is a provisioning mailbox: a new device makes one and waits at
// its address; one of the account's devices puts one message (ciphertext
// for the new device) in it, and the new device takes it. Stored under
// SHA-256 of its address.
type Mailbox struct {
	AddressHash []byte
	Expires     time.Time
}

// Provisioning keeps what adding a device takes: link tokens and
// provisioning mailboxes. Both are short-lived; expiry is judged at the
// time the caller passes, and ExpireProvisioning deletes what expired.
type Provisioning interface {
	// CreateLinkToken stores t, reserving the account's next device id for
	// it, which it writes to t.DeviceID. ErrTooManyDevices when that id
	// would exceed maxDeviceID; ErrTooManyLinkTokens when the account
	// already holds maxPending tokens unexpired at now; ErrNotFound for no
	// account. Nothing changes on error.
	CreateLinkToken(ctx context.Context, t *LinkToken, now time.Time, maxDeviceID uint32, maxPending int) error
	// LinkToken returns the token with that hash; ErrInvalidLinkToken when
	// it is unknown, used or expired at now.
	LinkToken(ctx context.Context, tokenHash []byte, now time.Time) (*LinkToken, error)
	// LinkDevice consumes the link token with hash tokenHash, creates
	// device d (d.ID must be the id the token reserved; its LastSeenDay
	// the day of its Created) with keys k, stores list as the account's
	// device list and, when accessKey is not nil, replaces the account's
	// unidentified access key with it, atomically: all or nothing.
	// ErrInvalidLinkToken when the token is unknown, used, expired at
	// d.Created, or for another account or device id than d's;
	// ErrVersionConflict as for every list change.
	LinkDevice(ctx context.Context, tokenHash []byte, d *Device, k *KeyUpload, list *DeviceList, accessKey []byte) error
	// CreateMailbox stores an empty mailbox.
	CreateMailbox(ctx context.Context, m *Mailbox) error
	// PutMailbox puts message (not empty) in the mailbox. ErrNotFound when
	// the mailbox is unknown, taken or expired at now; ErrMailboxFull when
	// it already holds a message (which stays).
	PutMailbox(ctx context.Context, addressHash, message []byte, now time.Time) error
	// TakeMailbox returns the mailbox's message and deletes the mailbox,
	// atomically: a message is taken once. ErrMailboxEmpty (and nothing
	// deleted) when no message is there yet; ErrNotFound when the mailbox
	// is unknown, taken or expired at now.
	TakeMailbox(ctx context.Context, addressHash []byte, now time.Time) ([]byte, error)
	// ExpireProvisioning deletes the link tokens and mailboxes expired at
	// now, and returns how many it deleted.
	ExpireProvisioning(ctx context.Context, now time.Time) (int, error)
}

// PreKey, SignedPreKey and KyberPreKey are public prekeys as uploaded, in
// libsignal's encodings. The store does not interpret them.
type PreKey struct {
	ID        uint32
	PublicKey []byte
}

type SignedPreKey struct {
	ID        uint32
	PublicKey []byte
	Signature []byte
}

type KyberPreKey struct {
	ID        uint32
	PublicKey []byte
	Signature []byte
}

// KeyUpload is a set of keys to store for a device. A non-nil SignedPreKey or
// LastResort replaces the one held; one-time keys are added (a one-time key
// with an id the device already has replaces it).
type KeyUpload struct {
	SignedPreKey *SignedPreKey
	LastResort   *KyberPreKey
	PreKeys      []PreKey
	KyberPreKeys []KyberPreKey
}

// Bundle is what TakeBundle hands out for one device. PreKey is nil when the
// device has no one-time prekey left. KyberLastResort tells whether
// KyberPreKey is the last-resort key (no one-time Kyber key was left).
type Bundle struct {
	DeviceID        uint32
	RegistrationID  uint32
	SignedPreKey    SignedPreKey
	PreKey          *PreKey
	KyberPreKey     KyberPreKey
	KyberLastResort bool
}

// KeyCounts is how many one-time keys a device has left.
type KeyCounts struct {
	PreKeys      int
	KyberPreKeys int
}

// Keys keeps the devices' public prekeys.
type Keys interface {
	// StoreKeys stores keys for an existing device (ErrNotFound otherwise).
	StoreKeys(ctx context.Context, accountID string, deviceID uint32, k *KeyUpload) error
	// TakeBundle returns the device's bundle and deletes the one-time keys
	// it hands out, atomically: a one-time key is handed out at most once,
	// whatever the concurrency. ErrNotFound for no device.
	TakeBundle(ctx context.Context, accountID string, deviceID uint32) (*Bundle, error)
	// KeyCounts returns how many one-time keys the device has left.
	KeyCounts(ctx context.Context, accountID string, deviceID uint32) (KeyCounts, error)
}

// Envelope is a queued message for one device. Seq orders a device's queue
// (assigned by the store, increasing in insertion order); ID is the UUID the
// device acknowledges it by. A sealed-sender envelope has no source: empty
// SourceAccount, SourceDevice 0.
type Envelope struct {
	Seq             int64
	ID              string
	AccountID       string // recipient
	DeviceID        uint32 // recipient device
	Type            int
	SourceAccount   string
	SourceDevice    uint32
	ClientTimestamp time.Time
	ServerTimestamp time.Time
	Content         []byte
	// Franking is the send's franking commitment (internal/franking),
	// stored with the envelope so that the server can bind it to the
	// delivery when it hands the envelope out; empty for an envelope
	// queued before commitments were stored.
	Franking []byte
}

// Send is one send request: the envelopes for every device of the recipient,
// and the sender's idempotency key.
//
// A sealed-sender (unidentified) send has no source: empty SourceAccount,
// SourceDevice 0. Its send id is then scoped by Recipient, the recipient
// account (every envelope's AccountID), and recorded as a hash of the
// recipient and the send id alone: nothing in it names or can be tied to
// the sender. A sealed send with an empty Recipient is a multi-recipient
// send (sealed sender v2): its envelopes go to any accounts, and its send
// id is scoped by no account. Recipient is ignored for a send with a
// source.
type Send struct {
	SourceAccount string
	SourceDevice  uint32
	Recipient     string
	SendID        string // the sender's UUID for this request
	Envelopes     []Envelope
}

// Sealed reports whether s is a sealed-sender send: one with no source.
func (s *Send) Sealed() bool { return s.SourceAccount == "" }

// Messages keeps the per-device queues.
type Messages interface {
	// Enqueue stores every envelope of s durably, or none. It returns
	// ErrDuplicate when the sender already used s.SendID (within the
	// message retention; for a sealed-sender send, when s.SendID was
	// already used in a sealed-sender send to s.Recipient), ErrQueueFull when a recipient device already
	// holds maxQueue envelopes, and ErrNotFound when a recipient device no
	// longer exists. Implementations batch concurrent calls into one
	// durable commit (group commit); Enqueue returns after its batch is
	// durable. It fills in each envelope's Seq.
	Enqueue(ctx context.Context, s *Send, maxQueue int) error
	// SendUsed reports whether the source device already used sendID in
	// an Enqueue that succeeded (within the message retention: Expire
	// forgets send ids as it does for Enqueue). It only reads; Enqueue
	// still refuses a duplicate atomically, so a send racing the check is
	// caught there.
	SendUsed(ctx context.Context, sourceAccount string, sourceDevice uint32, sendID string) (bool, error)
	// SealedSendUsed is SendUsed for a sealed-sender send to the
	// recipient account.
	SealedSendUsed(ctx context.Context, recipient, sendID string) (bool, error)
	// Queue returns up to limit envelopes of the device with Seq > after,
	// in Seq order.
	Queue(ctx context.Context, accountID string, deviceID uint32, after int64, limit int) ([]Envelope, error)
	// Ack deletes one envelope of the device by id; ErrNotFound when the
	// device has no such envelope (already acknowledged, or another
	// device's).
	Ack(ctx context.Context, accountID string, deviceID uint32, envelopeID string) error
	// AckMany deletes the envelopes acks name, each only from its own
	// device's queue, in one durable write, and returns how many it
	// deleted; an ack of an envelope its device does not have is skipped.
	AckMany(ctx context.Context, acks []AckRef) (int, error)
	// QueueLen returns how many envelopes the device has queued.
	QueueLen(ctx context.Context, accountID string, deviceID uint32) (int, error)
	// Expire deletes envelopes queued before cutoff, and send ids recorded
	// before cutoff, and returns how many envelopes it deleted.
	Expire(ctx context.Context, cutoff time.Time) (int, error)
}

// AckRef names one envelope a device acknowledges.
type AckRef struct {
	AccountID  string
	DeviceID   uint32
	EnvelopeID string
}

// PendingUpdate is one change to what the key-transparency log publishes:
// the value the entry of Username (kt.UsernameLabel) must hold after the
// change, a snapshot of the store in the transaction that made it: the
// account that holds the username, its identity key and its signed device
// list (kt.AccountValue). A deletion holds only the username: the entry's
// value becomes empty. The log publishes every pending update, in Seq
// order, as its own version of the entry, so that every device list an
// account had is in the log, one counter step each.
type PendingUpdate struct {
	Seq         int64 // assigned by the store, increasing in insertion order
	Username    string
	AccountID   string // "" for a deletion
	IdentityKey []byte // nil for a deletion
	// DeviceList is the signed device list (DeviceList.Signed) stored by
	// the change; empty for a deletion, or for an account from before
	// device lists that has none.
	DeviceList []byte
}

// Deletion reports whether the update deletes the username's entry (an
// empty value).
func (u *PendingUpdate) Deletion() bool { return u.AccountID == "" }

// Epoch is one epoch of the key-transparency log as the store keeps it: a
// kt.Batch with its place in the log. The store does not interpret the
// encodings.
type Epoch struct {
	Number     uint64 // its index in the log, from 0
	Timestamp  int64  // kt.Epoch.Timestamp: Unix milliseconds
	PrefixRoot kt.Hash
	Changes    []byte // the kt.EpochChanges, encoded: what auditors replay
	Checkpoint []byte // the signed checkpoint of the log ending with this epoch
}

// Cosignature is the newest checkpoint one auditor cosigned.
type Cosignature struct {
	Auditor    string // the auditor's note key name and hash ("name+hash", as note keys spell them)
	Size       uint64 // the log size the checkpoint describes
	Checkpoint []byte // the note, with the log's signature and the auditor's cosignature
}

// Transparency keeps the key-transparency log (package kt): its epochs,
// the newest entry of every label that has one, the auditors' newest
// cosignatures, and the pending updates that the account methods record.
//
// An entry is stored by its VRF index, never by its label: the server
// computes a label's index with the log's VRF key. A label's entry is
// replaced when a later epoch changes it and is never deleted (a deleted
// account's username's entry holds an empty value).
type Transparency interface {
	// PendingUpdates returns up to limit pending updates, by Seq.
	PendingUpdates(ctx context.Context, limit int) ([]PendingUpdate, error)
	// AppendEpoch stores e, puts each of entries at its index (replacing
	// the entry held there; Label is not stored), and deletes the pending
	// updates whose Seq is in published (one that is gone already is
	// ignored), atomically. ErrEpochConflict, changing nothing, when
	// e.Number is not the number of epochs stored.
	AppendEpoch(ctx context.Context, e *Epoch, entries []kt.Entry, published []int64) error
	// EpochCount returns how many epochs are stored.
	EpochCount(ctx context.Context) (uint64, error)
	// Epochs returns up to limit stored epochs from number from on, in
	// order (none when from is past the last).
	Epochs(ctx context.Context, from uint64, limit int) ([]Epoch, error)
	// EpochHeads returns every stored epoch's timestamp and prefix root,
	// in order: what kt.Log.Restore takes.
	EpochHeads(ctx context.Context) ([]kt.Epoch, error)
	// TransparencyEntry returns the entry at index (with a nil Label);
	// ErrNotFound when there is none.
	TransparencyEntry(ctx context.Context, index kt.Index) (*kt.Entry, error)
	// TransparencyLeaves yields the leaf of every stored entry, in index
	// order; a read error ends the sequence with that error.
	TransparencyLeaves(ctx context.Context) iter.Seq2[kt.Leaf, error]
	// PutCosignature keeps c as its auditor's newest cosignature, unless
	// the one held describes a larger log. The caller has verified it.
	PutCosignature(ctx context.Context, c *Cosignature) error
	// Cosignatures returns every auditor's newest cosignature, by
	// auditor name.
	Cosignatures(ctx context.Context) ([]Cosignature, error)
	// AcquireSequencer makes the caller the deployment's one sequencer,
	// the node that appends epochs, until it releases the lease, closes
	// the store or dies: ErrSequencerTaken, at once, while another
	// holds it. The lease is a matter of liveness, not of safety:
	// AppendEpoch's epoch numbers keep the log from forking should two
	// nodes believe they hold it (one whose lease was lost unnoticed).
	AcquireSequencer(ctx context.Context) (SequencerLease, error)
	// LastPendingSeq returns the largest Seq of a pending update, 0 when
	// none is pending. An update recorded before the call is published
	// once no pending update with a Seq at most the answer is left.
	LastPendingSeq(ctx context.Context) (int64, error)
}

// LeafFromRow decodes a stored entry's vrf_index, counter and commitment
// columns, as every backend keeps them, into its leaf; an error when a
// column is out of range.
func LeafFromRow(index []byte, counter int64, commitment []byte) (kt.Leaf, error) {
	if len(index) != kt.HashSize || counter < 0 || counter > math.MaxUint32 || len(commitment) != kt.HashSize {
		return kt.Leaf{}, errors.New("store: malformed transparency leaf")
	}
	return kt.Leaf{Index: kt.Index(index), Counter: uint32(counter), Commitment: kt.Hash(commitment)}, nil
}

// SequencerLease is the right to append epochs, held by one node of a
// deployment at a time (Transparency.AcquireSequencer). Its methods are
// safe for concurrent use.
type SequencerLease interface {
	// Check returns nil while the lease is held, and an error once it is
	// lost (the database session that held it ended); a lost lease must
	// still be released.
	Check(ctx context.Context) error
	// Release gives the lease up, so that another can acquire it; a
	// second Release does nothing.
	Release() error
}

// LegalRequest is one processed legal request (docs/legal-requests.md):
// what the server received, the salt of its commitment in the public
// request log, the verdict, and where it stands in the log.
type LegalRequest struct {
	ID       int64 // assigned by AddLegalRequest
	Received time.Time
	// Request is the signed request as received; Salt the 32 random bytes
	// its log commitment hides it under.
	Request []byte
	Salt    []byte
	// Authority and Nonce are the verified authority's name and the
	// request's nonce when the request consumes its nonce; empty and nil
	// otherwise (a request whose signature did not verify, or a replay).
	Authority string
	Nonce     []byte
	// Jurisdiction and Type are the request's, or "-" when its signature
	// did not verify; Outcome is "accepted" or "refused:<reason>".
	Jurisdiction string
	Type         string
	Outcome      string
	// TargetAccount is the id of the account the request's one target
	// named when it was processed, "" for none. It becomes "" when that
	// account is deleted.
	TargetAccount string
	// NondisclosureUntil is when the request is to be published; zero for
	// a request that is never published (its signature did not verify).
	NondisclosureUntil time.Time
	// Logged tells whether LogIndex, the log index of the request's
	// entry, is set.
	Logged   bool
	LogIndex uint64
	// Published tells whether the request was published, by the log entry
	// at PublicationIndex, at PublishedAt.
	Published        bool
	PublicationIndex uint64
	PublishedAt      time.Time
}

// TransparencyReport is a signed transparency report for a period
// ("2026-Q4") and the log index of its entry.
type TransparencyReport struct {
	Period    string
	Generated time.Time
	LogIndex  uint64
	Signed    []byte
}

// Legal keeps the front door's records: every legal request processed,
// the nonces they used, and the transparency reports. Legal requests are
// kept for good: each is committed to in the public request log, and its
// record is what opens the commitment when it is published.
type Legal interface {
	// AddLegalRequest records r and assigns r.ID. When r.Nonce is not nil
	// it records, in the same transaction, that r.Authority used r.Nonce,
	// and refuses with ErrNonceSeen, writing nothing, when it had been
	// recorded before: of two requests racing with one nonce, one is
	// recorded.
	AddLegalRequest(ctx context.Context, r *LegalRequest) error
	// LegalNonceSeen reports whether authority's nonce was recorded.
	LegalNonceSeen(ctx context.Context, authority string, nonce []byte) (bool, error)
	// SetLegalRequestLogged records the log index of the request's entry.
	// ErrNotFound for no such request.
	SetLegalRequestLogged(ctx context.Context, id int64, index uint64) error
	// UnloggedLegalRequests returns the requests received before before
	// whose entry was not logged (a crash came between recording and
	// logging), by ID.
	UnloggedLegalRequests(ctx context.Context, before time.Time) ([]LegalRequest, error)
	// DueLegalRequests returns the logged, unpublished requests whose
	// NondisclosureUntil (not zero) is at or before now, by ID.
	DueLegalRequests(ctx context.Context, now time.Time) ([]LegalRequest, error)
	// SetLegalRequestPublished records that the entry at index published
	// the request, at. ErrNotFound for no such request.
	SetLegalRequestPublished(ctx context.Context, id int64, index uint64, at time.Time) error
	// PublishedLegalRequests returns the published requests that targeted
	// the account, by ID.
	PublishedLegalRequests(ctx context.Context, accountID string) ([]LegalRequest, error)
	// PutTransparencyReport stores a report, replacing the period's.
	PutTransparencyReport(ctx context.Context, r *TransparencyReport) error
	// TransparencyReport returns the period's report, or with period ""
	// the newest period's; ErrNotFound for none.
	TransparencyReport(ctx context.Context, period string) (*TransparencyReport, error)
}

// Dumper is implemented by a backend that can list everything it holds,
// for audits: every row of every table. The conformance suite uses it to
// check that DeleteAccount leaves nothing of the account behind.
type Dumper interface {
	Dump(ctx context.Context) (Dump, error)
}

// Dump is every row of every table of a store, by table name. A row maps
// column names to values: nil, int64, float64, string or []byte.
type Dump map[string][]map[string]any

// Find returns where needle occurs in the dump, as "table.column" (each
// once, sorted): in a text or blob value that contains it. An empty needle
// is found nowhere.
func (d Dump) Find(needle []byte) []string {
	if len(needle) == 0 {
		return nil
	}
	var at []string
	for table, rows := range d {
		for _, row := range rows {
			for col, v := range row {
				var hit bool
				switch v := v.(type) {
				case string:
					hit = strings.Contains(v, string(needle))
				case []byte:
					hit = bytes.Contains(v, needle)
				}
				if where := table + "." + col; hit && !slices.Contains(at, where) {
					at = append(at, where)
				}
			}
		}
	}
	slices.Sort(at)
	return at
}

// Rows returns how many rows the table holds.
func (d Dump) Rows(table string) int { return len(d[table]) }

// String summarises the dump as table names and row counts.
func (d Dump) String() string {
	names := make([]string, 0, len(d))
	for n := range d {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", n, len(d[n]))
	}
	return b.String()
}

// Report is an abuse report the server verified (internal/franking): a
// message the reporter received, the proven sender, and what the message
// said, kept for the operator's review. It holds no key: not the
// message's franking key, not the attachment's key, not the commitment
// itself.
type Report struct {
	ID       string // UUID
	Reporter string // the reporting account's id
	Sender   string // the proven sender's account id
	// Sealed: the message came under sealed sender (the server proved the
	// sender from the sender's binding inside the content).
	Sealed bool
	// CommitmentHash identifies the reported message (a hash of its
	// franking commitment, made by the server): one account reports a
	// message once, and reports of one message by several accounts share
	// it.
	CommitmentHash []byte
	// ToMany: the message was sent to a group. Which group is not kept:
	// the server holds no group ids, and a hash of one would tie reports
	// (and their accounts) to a group.
	ToMany bool
	// Sent is when the sender's client says it sent the message: the
	// content's own timestamp (the sender's clock, inside the committed
	// bytes). Queued is when the server queued the envelope the reporter
	// got (its server timestamp). They differ by the clocks' skew and the
	// time in flight, or, for a sealed group message, because its
	// commitment was delivered again later (DeliveryUnproven).
	Sent     time.Time
	Queued   time.Time
	Reported time.Time // when the report was accepted
	Body     string    // the message's text
	// Attachment describes the message's attachment, nil for none.
	Attachment *ReportAttachment
	Reason     string // the reporter's words
}

// DeliveryUnproven reports whether the report is of a sealed group
// message, whose proof stops short of the reporter: it proves that the
// sender sent the text to a group and that an envelope with its
// commitment reached the reporter's device, not that the sender addressed
// the reporter, who may have had it passed on by a member
// (internal/franking). How many accounts reported the message
// (ReportCount) then weighs less.
func (r *Report) DeliveryUnproven() bool { return r.Sealed && r.ToMany }

// ReportAttachment is what a report keeps of an attachment: what the
// sender's client said it is, never its id or key.
type ReportAttachment struct {
	ContentType string
	FileName    string
	Size        int64 // plaintext bytes
}

// Reports keeps verified abuse reports. Reports are not deleted with the
// accounts they name (they are about one account's conduct towards
// another); they go after the operator's retention (ExpireReports).
type Reports interface {
	// AddReport stores r. ErrDuplicateReport, storing nothing, when a
	// report with r's Reporter and CommitmentHash is stored.
	AddReport(ctx context.Context, r *Report) error
	// Reports returns every stored report, newest (by Reported) first.
	Reports(ctx context.Context) ([]Report, error)
	// Report returns one report by id; ErrNotFound when there is none.
	Report(ctx context.Context, id string) (*Report, error)
	// ReportCount returns how many stored reports have the commitment
	// hash (reports of one message), and by how many distinct reporters;
	// 0, 0 for none.
	ReportCount(ctx context.Context, commitmentHash []byte) (reports, reporters int, err error)
	// ExpireReports deletes the reports made before cutoff, and returns
	// how many it deleted.
	ExpireReports(ctx context.Context, cutoff time.Time) (int, error)
}

// InOrder returns, for each of ids, what byID holds for it (the zero value
// where it holds nothing): a lookup of many keys answered in the order
// asked, as AccountsByID and DevicesOf answer.
func InOrder[T any](ids []string, byID map[string]T) []T {
	out := make([]T, len(ids))
	for i, id := range ids {
		out[i] = byID[id]
	}
	return out
}
