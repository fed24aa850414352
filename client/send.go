package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"
)

// MaxTextSize is the largest message text Send accepts, in bytes.
const MaxTextSize = content.MaxBody

// SendResult tells how a message went out.
type SendResult struct {
	// IdentityChanged: the recipient's identity key differed from the one
	// known before. The contact was not verified, so the new key was accepted
	// (trust on first use) and the message sent; show the user.
	IdentityChanged bool
	// Devices is how many of the recipient's devices (for a group: of the
	// members' devices) the message was queued for.
	Devices int
	// ID identifies the message in this device's history.
	ID string
	// TranscriptErr: the message was sent, but its transcript to this
	// account's other devices failed; they may not show it.
	TranscriptErr error
}

// Retry bounds.
const (
	// maxSendAttempts bounds the rounds of 409/410 answers one Send handles.
	maxSendAttempts = 5
	// maxTransportRetries bounds the repeats of one request whose answer
	// was lost.
	maxTransportRetries = 2
	// maxSessionRounds bounds the rounds of bundle fetching before one
	// encryption: a server that keeps changing its answer is refused.
	maxSessionRounds = 4
)

// Send sends a text message to a user; see SendMessage.
func (c *Client) Send(ctx context.Context, username, text string) (*SendResult, error) {
	return c.SendMessage(ctx, username, Outgoing{Text: text})
}

// Outgoing is a message to send.
type Outgoing struct {
	Text string
	// File, when set, is the path of a file to attach: it is encrypted on
	// this device, uploaded to the server's blob store, and the key that
	// decrypts it travels inside the end-to-end encrypted message.
	File string
	// ViewOnce: the recipient's devices let the file be opened once.
	ViewOnce bool
	// Progress, when set, is called as the file uploads.
	Progress func(done, total int64)
}

// SendMessage encrypts a message for every device of the user (to: a
// username) or of every member of a group (to: "#" and the group's title, or
// its id in hex; see Groups), queues it on the server, and sends a transcript
// to this account's other devices, which show it as sent. The message
// disappears after the conversation's timer (SetTimer), on every device.
//
// For one-to-one messages it fetches prekey bundles for devices it has no
// session with, checked against the user's signed device list: a device not
// on the list is refused (ErrUnlistedDevice). It encrypts only to devices on
// the list the key transparency log holds for the user, as this device
// verified it within the last hour (it looks the user up when it is older). If the server presents an
// identity key for the user other than the one known: for a verified contact
// it sends nothing and returns ErrUntrustedIdentity (the new key is kept
// aside, for SafetyNumber and Verify); otherwise it accepts the new key and
// reports IdentityChanged. It follows the server's answers about missing,
// extra and stale devices, a bounded number of times. ErrUnknownUser when
// the server has no such user.
func (c *Client) SendMessage(ctx context.Context, to string, m Outgoing) (*SendResult, error) {
	if isGroupName(to) {
		return c.sendGroup(ctx, to, m)
	}
	username, err := normalizeUsername(to)
	if err != nil {
		return nil, err
	}
	if username == c.username {
		return nil, errors.New("client: sending to oneself is not supported")
	}
	conv := profile.UserConversation(username)
	cont, err := c.outgoingContent(ctx, conv, m)
	if err != nil {
		return nil, err
	}
	return c.sendContent(ctx, username, conv, cont)
}

// sendContent sends content to a user and its transcript to this account's
// other devices, and keeps it in the history.
func (c *Client) sendContent(ctx context.Context, username, conv string, cont *content.Content) (*SendResult, error) {
	c.addProfileKey(ctx, cont)
	res := &SendResult{ID: api.NewUUID()}
	var err error
	if res.Devices, err = c.deliver(ctx, username, cont, res); err != nil {
		return nil, err
	}
	c.transcript(ctx, cont, username, res)
	if err := c.keepSent(ctx, res.ID, username, nil, cont); err != nil {
		return res, err
	}
	return res, nil
}

// transcript sends this account's other devices a copy of content sent to a
// user (destination) or a group (destination ""). Its failure does not undo
// the send; it is reported in res.
func (c *Client) transcript(ctx context.Context, cont *content.Content, destination string, res *SendResult) {
	if !c.hasOtherDevices(ctx) {
		return
	}
	t := *cont
	t.Sync, t.Destination = true, destination
	t.SenderKey, t.GroupChange = nil, nil
	if _, err := c.deliver(ctx, c.username, &t, nil); err != nil {
		res.TranscriptErr = err
	}
}

// deliver encrypts cont, franked, for every device of the user (for this
// account's own username: every other device of this account) and queues
// it, following the server's answers about devices. It returns how many
// devices it was queued for. res, when not nil, learns of identity changes.
func (c *Client) deliver(ctx context.Context, username string, cont *content.Content, res *SendResult) (int, error) {
	if res == nil {
		res = new(SendResult)
	}
	now := time.Now()
	var refresh []uint32 // devices whose sessions the server called stale
	for range maxSendAttempts {
		msgs, commitment, err := c.encryptFor(ctx, username, cont, refresh, res)
		if err != nil {
			return 0, err
		}
		refresh = nil
		req := &api.SendRequest{ID: api.NewUUID(), Timestamp: now.UnixMilli(), Franking: commitment, Messages: msgs}
		resp, err := c.sendMessages(ctx, username, req)
		if err == nil {
			return resp.Delivered, nil
		}
		if refresh, err = c.followDevices(ctx, username, err); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("client: send: the recipient's devices kept changing; try again")
}

// followDevices acts on the server's refusal of a send: it forgets the
// sessions of devices that are gone, and returns the devices whose sessions
// must be made anew. Any other refusal is returned as an error.
func (c *Client) followDevices(ctx context.Context, username string, err error) ([]uint32, error) {
	if _, ok := isCode(err, api.CodeNotFound); ok {
		return nil, ErrUnknownUser
	}
	if ae, ok := isCode(err, api.CodeMismatchedDevices); ok {
		missing, err1 := deviceList(ae.MissingDevices)
		extra, err2 := deviceList(ae.ExtraDevices)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		// Extra devices are gone: forget their sessions. Missing ones
		// get a session from a fresh bundle on the next round.
		err := c.st.Update(ctx, func(tx *profile.Tx) error {
			ct, err := c.contactFor(tx, username)
			if err != nil || ct == nil {
				return err
			}
			for _, d := range extra {
				if err := tx.DeleteSession(ct.AccountID, d); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(missing) == 0 && len(extra) == 0 {
			return nil, fmt.Errorf("client: send: %w", ae)
		}
		return missing, nil
	}
	if ae, ok := isCode(err, api.CodeStaleDevices); ok {
		stale, err := deviceList(ae.StaleDevices)
		if err != nil {
			return nil, err
		}
		if len(stale) == 0 {
			return nil, fmt.Errorf("client: send: %w", ae)
		}
		return stale, nil
	}
	return nil, fmt.Errorf("client: send: %w", err)
}

// contactFor is the contact for a username inside a transaction, or nil.
// This account's own username gives this account, with its own identity
// key: sessions with the account's other devices are kept like any other.
func (c *Client) contactFor(tx *profile.Tx, username string) (*profile.Contact, error) {
	if username == c.username {
		return &profile.Contact{Username: c.username, AccountID: c.accountID, IdentityKey: c.identity.Public, Verified: true}, nil
	}
	return tx.Contact(username)
}

// errBadDeviceList: the server listed more devices than a user may have, or
// device ids out of range.
var errBadDeviceList = errors.New("client: send: the server's list of devices is malformed")

// deviceList checks a list of device ids from the server and returns it
// without duplicates. A hostile server must not make Send fetch bundles
// without limit.
func deviceList(ds []uint32) ([]uint32, error) {
	if len(ds) > api.MaxDevicesPerAccount {
		return nil, errBadDeviceList
	}
	out := make([]uint32, 0, len(ds))
	for _, d := range ds {
		if d < 1 || d > api.MaxDevicesPerAccount {
			return nil, errBadDeviceList
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// putMessages sends one request, repeating it (the same bytes, the same id)
// when its answer is lost. A "duplicate" answer to a repeat means the first
// attempt landed. With an access key it is an unidentified send: no
// credentials, the recipient's access key instead.
func (c *Client) putMessages(ctx context.Context, username string, req *api.SendRequest, accessKey *[api.UnidentifiedAccessKeySize]byte) (*api.SendResponse, error) {
	path := pathFor(api.PathMessages, "{username}", username)
	var lost bool
	for try := 0; ; try++ {
		var resp api.SendResponse
		var err error
		if accessKey != nil {
			err = doRequest(ctx, c.hc, http.MethodPut, c.serverURL+path, func(r *http.Request) {
				r.Header.Set(api.HeaderUnidentifiedAccessKey, api.FormatUnidentifiedAccessKey(*accessKey))
			}, req, &resp)
		} else {
			err = c.do(ctx, http.MethodPut, path, req, &resp)
		}
		if err == nil {
			return &resp, nil
		}
		if _, ok := isCode(err, api.CodeDuplicate); ok && lost {
			return &api.SendResponse{Delivered: len(req.Messages)}, nil
		}
		var te *transportError
		if !errors.As(err, &te) || try == maxTransportRetries {
			return nil, err
		}
		lost = true
		if err := sleepCtx(ctx, time.Duration(250<<try)*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// needBundles is what a round of encryptFor could not do without the server.
type needBundles struct {
	all     bool     // fetch every device's bundle
	devices []uint32 // fetch these devices' bundles
	lookup  bool     // verify the contact's key in the transparency log
}

func (n *needBundles) Error() string { return "client: sessions needed" }

// encryptFor franks the content for the user's account (encodeFranked)
// and encrypts it for every device of the user with a session, in one write
// transaction, after making the sessions it lacks. It returns the messages
// and the franking commitment they go with. refresh names devices whose
// sessions must be replaced first.
func (c *Client) encryptFor(ctx context.Context, username string, cont *content.Content, refresh []uint32, res *SendResult) ([]api.OutgoingMessage, []byte, error) {
	local, localAddr := c.local()
	key, err := c.frankingKey(ctx)
	if err != nil {
		return nil, nil, err
	}
	for round := 0; ; round++ {
		if round == maxSessionRounds {
			return nil, nil, errors.New("client: send: could not establish sessions with the recipient")
		}
		var (
			msgs       []api.OutgoingMessage
			commitment []byte
		)
		now := time.Now()
		err := c.st.Update(ctx, func(tx *profile.Tx) error {
			msgs = nil
			ct, err := c.contactFor(tx, username)
			if err != nil {
				return err
			}
			if ct == nil {
				return &needBundles{all: true}
			}
			pt, cm, err := encodeFranked(cont, key, ct.AccountID)
			if err != nil {
				return err
			}
			defer clear(pt)
			commitment = cm
			devices, err := tx.SessionDevices(ct.AccountID)
			if err != nil {
				return err
			}
			if len(devices) == 0 && username != c.username {
				// (This account's other devices, if any, are named by
				// the server's answer: most accounts have none.)
				return &needBundles{all: true}
			}
			// Nothing goes to a key the log was not seen to hold (one
			// that came with a message, say), nor to a device the
			// account's list in the log, verified within listMaxAge,
			// does not name: a session with one (a removed device, which
			// still holds the identity key, could have started it with
			// the server's help) is not used. A device the server names
			// that the list does not gets a bundle, with a proof, anew.
			listed, err := c.freshList(tx, username, ct.AccountID, ct.IdentityKey)
			if err != nil {
				return err
			}
			if listed == nil && (username != c.username || len(devices) > 0) {
				return &needBundles{lookup: true}
			}
			need := new(needBundles)
			for _, d := range refresh {
				if d >= 1 && d <= api.MaxDevicesPerAccount {
					need.devices = append(need.devices, d)
				}
			}
			for _, d := range devices {
				if slices.Contains(need.devices, d) {
					continue
				}
				if listed == nil || !listed.Contains(d) {
					// Not one of the account's devices, as the log has
					// it: its session goes.
					if err := tx.DeleteSession(ct.AccountID, d); err != nil {
						return err
					}
					continue
				}
				rec, err := tx.Session(ct.AccountID, d)
				if err != nil {
					return err
				}
				// A session with another identity than the one trusted
				// now is replaced, as is one too old to send.
				if rik, ok := rec.RemoteIdentity(); !ok || !rik.Equal(ct.IdentityKey) || !rec.HasCurrentSession() {
					need.devices = append(need.devices, d)
					continue
				}
				regID, _ := rec.RemoteRegistrationID()
				typ, ctext, err := rec.Encrypt(pt, now, randReader)
				if errors.Is(err, session.ErrStaleSession) {
					need.devices = append(need.devices, d)
					continue
				}
				if err != nil {
					return fmt.Errorf("client: encrypt: %v", err)
				}
				if err := tx.PutSession(ct.AccountID, d, rec, now); err != nil {
					return err
				}
				msgs = append(msgs, api.OutgoingMessage{DeviceID: d, RegistrationID: regID, Type: int(typ), Content: ctext})
			}
			if len(need.devices) > 0 {
				return need // rolls back the encryptions of this round
			}
			return nil
		})
		var need *needBundles
		if !errors.As(err, &need) {
			if err != nil {
				return nil, nil, err
			}
			return msgs, commitment, nil
		}
		if need.lookup {
			if err := c.ensureVerified(ctx, username, res); err != nil {
				return nil, nil, err
			}
			continue
		}
		refresh = nil
		if need.all {
			if err := c.fetchSessions(ctx, username, 0, local, localAddr, res); err != nil {
				return nil, nil, err
			}
			continue
		}
		for _, d := range need.devices {
			err := c.fetchSessions(ctx, username, d, local, localAddr, res)
			if _, ok := isCode(err, api.CodeNotFound); ok {
				// The device is gone; the server will say so if it
				// still expects it.
				err = c.st.Update(ctx, func(tx *profile.Tx) error {
					ct, err := c.contactFor(tx, username)
					if err != nil || ct == nil {
						return err
					}
					return tx.DeleteSession(ct.AccountID, d)
				})
			}
			if err != nil {
				return nil, nil, err
			}
		}
	}
}

// fetchSessions fetches the bundles of one device of the user (device 0:
// every device), decides whether to trust the identity key they carry, and
// starts a session with each device.
//
// The answer must carry a key transparency proof that the log maps the
// username to exactly the account, identity key and signed device list of
// the answer; otherwise (ErrTransparency) no session is made.
func (c *Client) fetchSessions(ctx context.Context, username string, device uint32, local *session.Identity, localAddr session.Address, res *SendResult) error {
	var (
		br api.BundleResponse
		ik keys.PublicKey
	)
	results, err := c.proven(ctx, username, func(ctx context.Context, known uint64) (*kt.LookupProof, [][]byte, error) {
		br = api.BundleResponse{}
		if err := c.do(ctx, http.MethodGet, withKnown(bundlePath(username, device), known), nil, &br); err != nil {
			if _, ok := isCode(err, api.CodeNotFound); ok && device == 0 {
				return nil, nil, ErrUnknownUser
			}
			return nil, nil, fmt.Errorf("client: fetching keys: %w", err)
		}
		if !api.ValidUUID(br.AccountID) {
			return nil, nil, errors.New("client: fetching keys: the server's answer has no valid account id")
		}
		var err error
		if ik, err = keys.ParsePublicKey(br.IdentityKey); err != nil {
			return nil, nil, errors.New("client: fetching keys: the server's answer has no valid identity key")
		}
		p, err := decodeProof(br.Transparency)
		if err != nil {
			return nil, nil, err
		}
		return p, [][]byte{kt.UsernameLabel(username)}, nil
	})
	if err != nil {
		return err
	}
	if err := checkEntry(results, br.AccountID, ik, br.DeviceList); err != nil {
		return err
	}
	if len(br.Devices) > api.MaxDevicesPerAccount || device != 0 && len(br.Devices) > 1 {
		return errors.New("client: fetching keys: the server's answer lists too many devices")
	}
	self := username == c.username
	if self && (br.AccountID != c.accountID || !ik.Equal(c.identity.Public)) {
		// The account's identity key lives on its devices; a server that
		// presents another for it is lying.
		return ErrServerIdentity
	}
	bundles := make([]*session.Bundle, 0, len(br.Devices))
	for _, d := range br.Devices {
		if self && d.DeviceID == c.deviceID {
			continue
		}
		if device != 0 && d.DeviceID != device {
			return errors.New("client: fetching keys: the server answered for another device")
		}
		if slices.ContainsFunc(bundles, func(b *session.Bundle) bool { return b.DeviceID == d.DeviceID }) {
			return errors.New("client: fetching keys: the server's answer lists a device twice")
		}
		b, err := toBundle(ik, &d)
		if err != nil {
			return err
		}
		bundles = append(bundles, b)
	}
	if device == 0 && len(bundles) == 0 && !self {
		return errors.New("client: fetching keys: the user has no devices")
	}
	now := time.Now()
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		if !self {
			changed, err := trustForSend(tx, username, br.AccountID, ik, now)
			if err != nil {
				return err
			}
			if changed {
				res.IdentityChanged = true
			}
		}
		// Only devices the account's identity key listed get a session.
		l, err := verifiedList(tx, br.AccountID, ik, br.DeviceList)
		if err != nil {
			return err
		}
		for _, b := range bundles {
			if !l.Contains(b.DeviceID) {
				return ErrUnlistedDevice
			}
		}
		if err := keepList(tx, br.AccountID, l, br.DeviceList); err != nil {
			return err
		}
		if !self {
			if err := keepUnrestricted(tx, br.AccountID, br.UnrestrictedUnidentifiedAccess, now); err != nil {
				return err
			}
		}
		if device == 0 {
			// The server listed every current device: forget the others.
			have, err := tx.SessionDevices(br.AccountID)
			if err != nil {
				return err
			}
			for _, d := range have {
				if !slices.ContainsFunc(bundles, func(b *session.Bundle) bool { return b.DeviceID == d }) {
					if err := tx.DeleteSession(br.AccountID, d); err != nil {
						return err
					}
				}
			}
		}
		for _, b := range bundles {
			rec, err := tx.Session(br.AccountID, b.DeviceID)
			if err != nil {
				return err
			}
			if rec == nil {
				rec = new(session.Record)
			}
			remote := session.Address{Name: br.AccountID, DeviceID: b.DeviceID}
			if err := rec.InitiateSession(local, localAddr, remote, b, now, randReader); err != nil {
				return fmt.Errorf("client: starting a session: %v", err)
			}
			if err := tx.PutSession(br.AccountID, b.DeviceID, rec, now); err != nil {
				return err
			}
		}
		return nil
	})
	var u *untrusted
	if !errors.As(err, &u) {
		return err
	}
	// Keep the key aside, for SafetyNumber and Verify.
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		ct, err := tx.Contact(u.username)
		if err != nil || ct == nil || !ct.Verified {
			return err
		}
		ct.PendingAccount, ct.PendingKey = u.accountID, &u.key
		return tx.PutContact(ct, now)
	})
	if err != nil {
		return err
	}
	return ErrUntrustedIdentity
}

// toBundle checks one device's bundle from the server and converts it.
func toBundle(ik keys.PublicKey, d *api.DeviceBundle) (*session.Bundle, error) {
	bad := func(what string) error {
		return fmt.Errorf("client: fetching keys: device %d: %s", d.DeviceID, what)
	}
	if d.DeviceID < 1 || d.DeviceID > api.MaxDevicesPerAccount {
		return nil, bad("device id out of range")
	}
	b := &session.Bundle{
		RegistrationID:        d.RegistrationID,
		DeviceID:              d.DeviceID,
		SignedPreKeyID:        d.SignedPreKey.ID,
		SignedPreKeySignature: d.SignedPreKey.Signature,
		KyberPreKeyID:         d.KyberPreKey.ID,
		KyberPreKeySignature:  d.KyberPreKey.Signature,
		IdentityKey:           ik,
	}
	var err error
	if b.SignedPreKey, err = keys.ParsePublicKey(d.SignedPreKey.PublicKey); err != nil {
		return nil, bad("malformed signed prekey")
	}
	if b.KyberPreKey, err = keys.ParseKEMPublicKey(d.KyberPreKey.PublicKey); err != nil {
		return nil, bad("malformed kyber prekey")
	}
	if d.PreKey != nil {
		b.HasPreKey = true
		b.PreKeyID = d.PreKey.ID
		if b.PreKey, err = keys.ParsePublicKey(d.PreKey.PublicKey); err != nil {
			return nil, bad("malformed prekey")
		}
	}
	if err := b.Verify(); err != nil {
		return nil, bad("prekey signatures do not verify")
	}
	return b, nil
}

// trustForSend decides about the identity key the server presents for a user
// we are about to send to. A new contact is trusted on first use. A changed
// key is accepted for an unverified contact (changed is true); for a
// verified one an *untrusted error is returned, and the caller keeps the key
// aside as pending in a transaction of its own (this one rolls back).
func trustForSend(tx *profile.Tx, username, accountID string, ik keys.PublicKey, now time.Time) (changed bool, err error) {
	ct, err := tx.Contact(username)
	if err != nil {
		return false, err
	}
	switch {
	case ct == nil:
		return false, tx.PutContact(&profile.Contact{Username: username, AccountID: accountID, IdentityKey: ik}, now)
	case ct.AccountID == accountID && ct.IdentityKey.Equal(ik):
		if ct.PendingKey != nil {
			ct.PendingKey, ct.PendingAccount = nil, ""
			return false, tx.PutContact(ct, now)
		}
		return false, nil
	case ct.Verified:
		return false, &untrusted{username: username, accountID: accountID, key: ik}
	default:
		if ct.AccountID != accountID {
			// The server's word: archived, so that the old account's
			// messages in flight still decrypt.
			if err := archiveSessions(tx, ct.AccountID, now); err != nil {
				return false, err
			}
		}
		ct.AccountID, ct.IdentityKey, ct.PendingKey, ct.PendingAccount = accountID, ik, nil, ""
		return true, tx.PutContact(ct, now)
	}
}

func forgetSessions(tx *profile.Tx, accountID string) error {
	devices, err := tx.SessionDevices(accountID)
	if err != nil {
		return err
	}
	for _, d := range devices {
		if err := tx.DeleteSession(accountID, d); err != nil {
			return err
		}
	}
	return nil
}

// archiveSessions archives the current session with every device of an
// account: nothing is sent under them any more, but messages already sent
// under them still decrypt.
func archiveSessions(tx *profile.Tx, accountID string, now time.Time) error {
	devices, err := tx.SessionDevices(accountID)
	if err != nil {
		return err
	}
	for _, d := range devices {
		rec, err := tx.Session(accountID, d)
		if err != nil || rec == nil {
			return err
		}
		rec.ArchiveCurrent()
		if err := tx.PutSession(accountID, d, rec, now); err != nil {
			return err
		}
	}
	return nil
}

// untrusted carries a changed key for a verified contact out of the
// transaction that found it, so that it can be stored as pending.
type untrusted struct {
	username, accountID string
	key                 keys.PublicKey
}

func (u *untrusted) Error() string { return ErrUntrustedIdentity.Error() }
func (u *untrusted) Unwrap() error { return ErrUntrustedIdentity }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
