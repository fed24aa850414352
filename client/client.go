// Package client is the Doorless client SDK: it registers a device with a
// doorlessd server (Register) or links it to an existing account (Link),
// keeps the device's keys, sessions, groups and message history in a local
// profile, sends end-to-end encrypted messages (the Signal protocol: PQXDH
// and the Double Ratchet with SPQR, from protocol/session; sender keys for
// groups, from protocol/senderkey) with encrypted files, and receives them
// over the delivery WebSocket. Messages disappear after their conversation's
// timer on every device. Every message is franked (internal/franking), and
// one received that does not open its franking commitment is dropped, so
// every message shown can be reported to the server's operator (Report).
//
// A profile is a directory holding one SQLite database, profile.db, created
// with mode 0600 in a directory created with mode 0700, and the files
// received (downloads/) and view-once files not yet opened, still encrypted
// (viewonce/). With Options.Passphrase set, every secret in the database
// (private keys, the device password, session and sender-key records,
// groups, the message history and what reporting a message takes, the
// account's franking key) is sealed with AES-256-GCM under a key derived
// from the passphrase with argon2id. Without a passphrase those secrets are
// stored in the clear and protected only by the file's mode: anyone who can
// read the file can read them.
//
// Several processes may use one profile at the same time (a receiver in one
// terminal, a sender in another): every change to a session record is a
// read-modify-write inside one SQLite write transaction, and nothing is
// cached across operations. Only one connection per device receives: a
// second process's Receive displaces the first's, which returns
// ErrDisplaced.
//
// Usernames are lower-cased before use; a name that is not a valid username
// is ErrInvalidUsername.
//
// A *Client is safe for concurrent use by multiple goroutines; calls to
// Receive on one Client run one at a time. The zero Client is not usable:
// make one with Register or Open.
//
// The package never logs or prints. Its errors start with "client: " and
// never contain keys, passwords or message text.
package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/internal/franking"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"
)

// Options configure Register and Open.
type Options struct {
	// Passphrase, when set, seals the secrets in the profile under an
	// argon2id-derived key. A profile made with a passphrase needs the same
	// one to open; a profile made without one refuses a passphrase.
	Passphrase string
	// HTTPClient makes the requests to the server. nil: a default with
	// sensible timeouts. Its Timeout, if any, bounds the WebSocket's opening
	// handshake only, not the long-lived connection.
	HTTPClient *http.Client

	// Key transparency (see CheckTransparency and RequireAuditor). These
	// add to the policy the profile keeps and can only make it stricter.
	//
	// Auditors are the note verifier keys of auditors whose cosignatures
	// every lookup must carry.
	Auditors []string
	// Cosignatures is how many of the auditors must have cosigned a
	// checkpoint the lookup's log extends: 0 means the profile's setting,
	// which is none without auditors and 1 with them.
	Cosignatures int
	// MaxAuditLag is how old the newest of those cosignatures may be; 0
	// means the profile's setting, by default DefaultMaxAuditLag.
	MaxAuditLag time.Duration
	// MonitorInterval is how often Receive checks this account's own
	// entries in the log; 0 means DefaultMonitorInterval.
	MonitorInterval time.Duration
	// MaxEpochAge is how far the log's newest epoch may be behind this
	// device's clock, or ahead of it, for a lookup to be accepted; 0 means
	// DefaultMaxEpochAge. Unlike Auditors, Cosignatures and MaxAuditLag it
	// is not kept in the profile, and may loosen the check as well as
	// tighten it: a looser bound tolerates a server slow to make epochs,
	// or a clock far off, and gives a server longer to show this device
	// an old view of the log unnoticed.
	MaxEpochAge time.Duration
}

// String hides the passphrase.
func (o Options) String() string { return "client.Options{[redacted]}" }

// GoString hides the passphrase from %#v.
func (o Options) GoString() string { return o.String() }

// LogValue hides the passphrase from slog.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.String()) }

// Errors a caller branches on (errors.Is). Other errors from the server come
// back as *api.Error (errors.As).
var (
	// ErrNoProfile: Open found no profile in the directory.
	ErrNoProfile = profile.ErrNoProfile
	// ErrProfileExists: Register found a profile in the directory already.
	ErrProfileExists = profile.ErrProfileExists
	// ErrWrongPassphrase: the passphrase does not open the profile, or one is
	// needed and none was given, or one was given for a profile without one.
	ErrWrongPassphrase = profile.ErrWrongPassphrase
	// ErrVerifiedContact: the server gave a username the account id of a
	// verified contact known under another username; nothing was changed.
	ErrVerifiedContact = profile.ErrVerifiedContact
	// ErrUnknownUser: the server has no such username.
	ErrUnknownUser = errors.New("client: unknown user")
	// ErrUsernameTaken: registration found the username in use.
	ErrUsernameTaken = errors.New("client: username taken")
	// ErrInvalidInvite: the server's policy is invite-only and the invite code
	// is missing, unknown or used.
	ErrInvalidInvite = errors.New("client: invalid invite")
	// ErrRegistrationClosed: the server accepts no registrations.
	ErrRegistrationClosed = errors.New("client: registration closed")
	// ErrUntrustedIdentity: Send found that a verified contact's identity key
	// changed; nothing was sent. Compare the new safety number
	// (SafetyNumber) and Verify it first.
	ErrUntrustedIdentity = errors.New("client: untrusted identity: a verified contact's identity key changed")
	// ErrSafetyNumberMismatch: the number given to Verify is not the safety
	// number.
	ErrSafetyNumberMismatch = errors.New("client: safety number mismatch")
	// ErrServerIdentity: the server presented an identity key for this
	// device's own account other than the account's: nothing was sent.
	ErrServerIdentity = errors.New("client: the server presented a false identity key for this account")
	// ErrInvalidUsername: the name is not a valid username (3 to 32
	// lower-case letters, digits and underscores, starting with a letter).
	ErrInvalidUsername = errors.New("client: invalid username")
)

// ProfileFile is the name of the database inside a profile directory.
const ProfileFile = profile.FileName

// kdfParams is what new profiles use; tests make it cheap.
var kdfParams = profile.DefaultKDF

// Client is one registered device, its profile open.
type Client struct {
	dir       string // the profile directory: attachments are encrypted to temporary files there
	st        *profile.Store
	hc        *http.Client
	serverURL string
	accountID string
	username  string
	deviceID  uint32
	regID     uint32
	password  string
	identity  keys.KeyPair

	recvMu chan struct{} // one Receive at a time

	now func() time.Time // the clock messages disappear by

	progressMu       sync.Mutex
	downloadProgress func(name string, done, total int64)
	dropped          atomic.Int64
	redelivered      atomic.Int64
	lastRefill       atomic.Int64 // when refill last generated keys, Unix nanoseconds
	receipts         pendingReceipts
	kt               transparencyOptions
	frankKey         atomic.Pointer[[franking.KeySize]byte] // frankingKey's, once read

	closeOnce sync.Once
	closeErr  error

	// Test hooks.
	noAck bool // do not acknowledge envelopes (simulates lost acks)
}

// String hides the device's secrets.
func (c *Client) String() string { return "client.Client{[redacted]}" }

// GoString hides the device's secrets from %#v.
func (c *Client) GoString() string { return c.String() }

// LogValue hides the device's secrets from slog.
func (c *Client) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Username returns the device's username.
func (c *Client) Username() string { return c.username }

// AccountID returns the device's account id, a UUID.
func (c *Client) AccountID() string { return c.accountID }

// DeviceID returns the device's id within its account.
func (c *Client) DeviceID() uint32 { return c.deviceID }

// ServerURL returns the server the device is registered with.
func (c *Client) ServerURL() string { return c.serverURL }

// Stats are counters since the Client was opened.
type Stats struct {
	// Dropped counts envelopes that did not decrypt (forged, corrupt,
	// replayed, from an unknown session) and were acknowledged and dropped.
	Dropped int64
	// Redelivered counts envelopes the server sent again (their
	// acknowledgement lost) that had been processed already: acknowledged
	// again and not handed over again.
	Redelivered int64
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Dropped: c.dropped.Load(), Redelivered: c.redelivered.Load()}
}

// Close closes the profile. Operations under way fail.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.st.Close()
	})
	return c.closeErr
}

func defaultHTTPClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           d.DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          10,
			ExpectContinueTimeout: time.Second,
		},
	}
}

func newClient(dir string, st *profile.Store, a *profile.Account, opt Options) *Client {
	hc := opt.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	return &Client{
		dir:       dir,
		st:        st,
		hc:        hc,
		serverURL: a.ServerURL,
		accountID: a.AccountID,
		username:  a.Username,
		deviceID:  a.DeviceID,
		regID:     a.RegistrationID,
		password:  a.Password,
		identity:  a.Identity,
		recvMu:    make(chan struct{}, 1),
		now:       time.Now,
		kt:        transparencyOpts(opt),
	}
}

// Open opens the profile in dir. ErrNoProfile when there is none;
// ErrWrongPassphrase when opt.Passphrase does not open it.
func Open(dir string, opt Options) (*Client, error) {
	if err := checkTransparencyOptions(opt); err != nil {
		return nil, err
	}
	st, err := profile.Open(filepath.Join(dir, profile.FileName), opt.Passphrase)
	if err != nil {
		return nil, err
	}
	var a *profile.Account
	err = st.View(context.Background(), func(tx *profile.Tx) error {
		var err error
		a, err = tx.Account()
		return err
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return newClient(dir, st, a, opt), nil
}

// normalizeServerURL checks the server URL and drops a trailing slash.
func normalizeServerURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("client: server url %q is not an http or https url", s)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

func normalizeUsername(name string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if !api.ValidUsername(name) {
		return "", ErrInvalidUsername
	}
	return name, nil
}

// Register creates an account on the server at serverURL and a profile for
// its first device in dir (created with mode 0700 if missing). invite is
// the invite code, for a server whose registration is invite-only, or "".
//
// It generates the identity key pair, a registration id, a signed prekey, a
// last-resort Kyber prekey and 100 one-time prekeys of each kind, stores
// them, and uploads the public halves. ErrProfileExists when dir already
// holds a profile; ErrUsernameTaken, ErrInvalidInvite and
// ErrRegistrationClosed for the server's refusals. A registration that fails
// leaves no profile behind.
func Register(ctx context.Context, dir, serverURL, username, invite string, opt Options) (c *Client, err error) {
	serverURL, err = normalizeServerURL(serverURL)
	if err != nil {
		return nil, err
	}
	if username, err = normalizeUsername(username); err != nil {
		return nil, err
	}
	if err := checkTransparencyOptions(opt); err != nil {
		return nil, err
	}
	if opt.HTTPClient == nil {
		opt.HTTPClient = defaultHTTPClient()
	}
	// The log's keys are pinned now, before the account exists: every key
	// this device will trust is checked against them.
	ktLog, err := fetchTransparencyLog(ctx, opt.HTTPClient, serverURL)
	if err != nil {
		return nil, err
	}
	st, discard, err := newProfile(dir, opt)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			discard()
		}
	}()

	now := time.Now()
	identity, err := keys.GenerateKeyPair(nil)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	list := &devicelist.List{Version: devicelist.FirstVersion, Timestamp: now.UnixMilli(), Devices: []uint32{api.PrimaryDeviceID}}
	deviceList, err := devicelist.Sign(identity.Private, list, nil)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	regID, up, err := newDeviceKeys(ctx, st, identity, now)
	if err != nil {
		return nil, err
	}
	profileKey := newProfileKey()
	accessKey := accessKeyFrom(profileKey)
	req := &api.RegisterRequest{
		UnidentifiedAccessKey: accessKey[:],
		Username:              username,
		InviteCode:            invite,
		IdentityKey:           identity.Public.Bytes(),
		RegistrationID:        regID,
		Keys:                  *up,
		DeviceList:            deviceList,
	}

	hc := opt.HTTPClient
	var resp api.RegisterResponse
	err = doJSON(ctx, hc, http.MethodPost, serverURL+api.PathAccounts, "", "", req, &resp)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			switch ae.Code {
			case api.CodeUsernameTaken:
				return nil, ErrUsernameTaken
			case api.CodeInvalidInvite:
				return nil, ErrInvalidInvite
			case api.CodeForbidden:
				return nil, ErrRegistrationClosed
			}
		}
		return nil, fmt.Errorf("client: register: %w", err)
	}
	if !api.ValidUUID(resp.AccountID) || resp.DeviceID < 1 || resp.DeviceID > api.MaxDevicesPerAccount || resp.Password == "" {
		return nil, errors.New("client: register: the server's answer is malformed")
	}
	return joined(ctx, dir, st, opt, serverURL, username, &resp, regID, identity, list, deviceList, profileKey, ktLog)
}

// newDeviceKeys makes a new device's registration id and keys (see
// initDevice) in its profile.
func newDeviceKeys(ctx context.Context, st *profile.Store, identity keys.KeyPair, now time.Time) (uint32, *api.KeyUpload, error) {
	regID, err := keys.GenerateRegistrationID(nil)
	if err != nil {
		return 0, nil, fmt.Errorf("client: %v", err)
	}
	var up *api.KeyUpload
	err = st.Update(ctx, func(tx *profile.Tx) error {
		up, err = initDevice(tx, identity, regID, now)
		return err
	})
	return regID, up, err
}

// joined completes a new device's profile once the server has answered:
// the device exists on the server now, so its credentials and the device
// list it joined under are stored even if the caller has given up waiting.
func joined(ctx context.Context, dir string, st *profile.Store, opt Options, serverURL, username string, resp *api.RegisterResponse,
	regID uint32, identity keys.KeyPair, list *devicelist.List, signedList []byte, profileKey []byte, ktLog *profile.TransparencyLog) (*Client, error) {
	err := st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error {
		if err := tx.SetCredentials(serverURL, resp.AccountID, username, resp.DeviceID, resp.Password); err != nil {
			return err
		}
		if _, err := tx.PinTransparencyLog(ktLog, time.Now()); err != nil {
			return err
		}
		if profileKey != nil {
			if err := tx.PutProfileKey(resp.AccountID, &profile.ProfileKey{Key: profileKey}, time.Now()); err != nil {
				return err
			}
		}
		if err := tx.PutOwnChange(list.Version, signedList); err != nil {
			return err
		}
		// The devices already on the account when this one joined are
		// no news to it; a device added later by another one is.
		st, err := tx.OwnerState()
		if err != nil {
			return err
		}
		st.Devices = slices.Clone(list.Devices)
		if err := tx.PutOwnerState(st); err != nil {
			return err
		}
		return tx.PutDeviceList(resp.AccountID, list.Version, signedList)
	})
	if err != nil {
		return nil, err
	}
	c := newClient(dir, st, &profile.Account{
		ServerURL:      serverURL,
		AccountID:      resp.AccountID,
		Username:       username,
		DeviceID:       resp.DeviceID,
		Password:       resp.Password,
		RegistrationID: regID,
		Identity:       identity,
	}, opt)
	// Pin the server's sealed-sender trust root now, at the moment the
	// account is made; a failure leaves it to the first sealed message.
	c.trustRoot(ctx)
	// The owner monitor's first look at this account's entry: the server
	// answered once it was published, so it holds exactly the device list
	// this device joined under, and its counter is the base later checks
	// hold the entry to. It must succeed: if it does not, after a few
	// tries, an alert says so (joinCheck).
	c.joinCheck(ctx)
	return c, nil
}

// initDevice stores a new device's identity and registration id in tx, and
// makes its signed prekey, last-resort Kyber prekey and one-time prekeys,
// returning the public halves to upload.
func initDevice(tx *profile.Tx, identity keys.KeyPair, regID uint32, now time.Time) (*api.KeyUpload, error) {
	if err := tx.InitAccount(identity, regID, now); err != nil {
		return nil, err
	}
	ids, err := tx.AllocKeyIDs("signed", 1)
	if err != nil {
		return nil, err
	}
	spk, err := keys.GenerateSignedPreKey(identity.Private, ids[0], now, nil)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	if err := tx.AddSignedPreKey(spk); err != nil {
		return nil, err
	}
	if ids, err = tx.AllocKeyIDs("kyber", 1); err != nil {
		return nil, err
	}
	lr, err := keys.GenerateKyberPreKey(identity.Private, ids[0], keys.KEMKyber1024, true, now, nil)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	if err := tx.AddKyberPreKey(lr); err != nil {
		return nil, err
	}
	up, err := genOneTime(tx, identity.Private, targetPreKeys, targetPreKeys, now)
	if err != nil {
		return nil, err
	}
	up.SignedPreKey = &api.SignedPreKey{ID: spk.ID, PublicKey: spk.KeyPair.Public.Bytes(), Signature: spk.Signature}
	up.LastResortKyberPreKey = &api.KyberPreKey{ID: lr.ID, PublicKey: lr.KeyPair.Public.Bytes(), Signature: lr.Signature}
	return up, nil
}

// newProfile creates the profile database of a new device in dir (made with
// mode 0700 if missing), replacing one that a registration stopped before
// the server answered left behind. discard removes what it made.
func newProfile(dir string, opt Options) (st *profile.Store, discard func(), err error) {
	createdDir := false
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		createdDir = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("client: profile directory: %v", err)
	}
	path := filepath.Join(dir, profile.FileName)
	if _, err := os.Stat(path); err == nil {
		// A profile left by a registration that stopped before the server
		// answered is replaced; a complete one is not.
		complete, err := profile.Complete(path)
		if err != nil || complete {
			return nil, nil, ErrProfileExists
		}
		if err := profile.Remove(path); err != nil {
			return nil, nil, fmt.Errorf("client: removing an incomplete profile: %v", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("client: profile: %v", err)
	}
	st, err = profile.Create(path, opt.Passphrase, kdfParams)
	if err != nil {
		return nil, nil, err
	}
	return st, func() {
		st.Close()
		profile.Remove(path)
		if createdDir {
			os.Remove(dir) // only if empty
		}
	}, nil
}

// targetPreKeys is how many one-time prekeys (and one-time Kyber prekeys)
// a device keeps on the server.
const targetPreKeys = 100

// genOneTime makes nPre one-time prekeys and nKyber one-time Kyber prekeys,
// stores their private halves in tx and returns the public halves to upload.
func genOneTime(tx *profile.Tx, identity *keys.PrivateKey, nPre, nKyber int, now time.Time) (*api.KeyUpload, error) {
	var up api.KeyUpload
	ids, err := tx.AllocKeyIDs("prekey", nPre)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		k, err := keys.GeneratePreKey(id, nil)
		if err != nil {
			return nil, fmt.Errorf("client: %v", err)
		}
		if err := tx.AddPreKey(k, now); err != nil {
			return nil, err
		}
		up.PreKeys = append(up.PreKeys, api.PreKey{ID: id, PublicKey: k.KeyPair.Public.Bytes()})
	}
	if ids, err = tx.AllocKeyIDs("kyber", nKyber); err != nil {
		return nil, err
	}
	for _, id := range ids {
		k, err := keys.GenerateKyberPreKey(identity, id, keys.KEMKyber1024, false, now, nil)
		if err != nil {
			return nil, fmt.Errorf("client: %v", err)
		}
		if err := tx.AddKyberPreKey(k); err != nil {
			return nil, err
		}
		up.KyberPreKeys = append(up.KyberPreKeys, api.KyberPreKey{ID: id, PublicKey: k.KeyPair.Public.Bytes(), Signature: k.Signature})
	}
	return &up, nil
}

// local returns the device's session identity and address.
func (c *Client) local() (*session.Identity, session.Address) {
	return &session.Identity{KeyPair: c.identity, RegistrationID: c.regID},
		session.Address{Name: c.accountID, DeviceID: c.deviceID}
}

// randReader is the randomness for the protocol; crypto/rand.
var randReader = rand.Reader
