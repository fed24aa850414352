package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/protocol/keys"
)

// Linked devices. An account has one identity key and several devices. The
// identity key signs the account's device list (internal/devicelist), a
// new version at every change; the server keeps the newest and hands it out
// with the account's prekey bundles, and a sender encrypts only to devices
// the list names. The server cannot add a device to the list: it would have
// to sign with the identity key, which only the account's devices hold.
//
// Linking: the new device (Link) opens a provisioning mailbox on the server
// and shows a link code: the mailbox's address and an X25519 public key of
// its own. An existing device (ApproveLink) asks the server for a link token
// (which reserves the new device's id), and puts in the mailbox, sealed with
// HPKE to that public key, the account's identity key pair, the token and
// the current signed device list. The new device opens it, makes its keys,
// signs the next device list (the current one with its own id) and joins.
// The server relays the sealed message and never sees the identity key.

// Errors about devices a caller branches on.
var (
	// ErrUnlistedDevice: the server offered a device that the user's signed
	// device list does not name (a device added behind the account's back,
	// or one removed); nothing was sent to it.
	ErrUnlistedDevice = errors.New("client: the server offered a device that is not on the user's signed device list")
	// ErrDeviceListRollback: the server presented an older device list for
	// an account than this device has seen, or a different list of the same
	// version.
	ErrDeviceListRollback = errors.New("client: the server presented an old or forked device list")
	// ErrBadLinkCode: the link code is not one Link printed.
	ErrBadLinkCode = errors.New("client: not a valid link code")
	// ErrLinkExpired: the link code's mailbox is gone (used, or older than
	// ten minutes): start again with a new code.
	ErrLinkExpired = errors.New("client: the link code expired or was used")
)

// Labels of linking.
const (
	// linkCodePrefix starts a link code.
	linkCodePrefix = "doorless-link:"
	// provisionInfo is HPKE's info for the provisioning message, followed
	// by the mailbox address.
	provisionInfo = "Doorless provisioning v1\x00"
	// provisionVersion is the version of the provisioning message.
	provisionVersion = 1
)

// verifiedList checks an account's signed device list from the server
// against its identity key and against the newest this device has seen, and
// returns it. It is stored by keepList, in the caller's transaction.
func verifiedList(tx *profile.Tx, accountID string, identity keys.PublicKey, blob []byte) (*devicelist.List, error) {
	if len(blob) == 0 {
		return nil, errors.New("client: the server sent no device list")
	}
	l, err := devicelist.Verify(identity, blob)
	if err != nil {
		return nil, fmt.Errorf("client: the server's device list does not verify: %v", err)
	}
	seen, version, err := tx.DeviceList(accountID)
	if err != nil {
		return nil, err
	}
	if seen != nil {
		// A list seen under another identity key (a key change) does not
		// bind the new key's lists.
		if old, err := devicelist.Verify(identity, seen); err == nil {
			if l.Version < version || l.Version == version && !old.Equal(l) {
				return nil, ErrDeviceListRollback
			}
		}
	}
	return l, nil
}

// keepList stores a verified device list and forgets the sessions of
// devices no longer on it.
func keepList(tx *profile.Tx, accountID string, l *devicelist.List, blob []byte) error {
	if err := tx.PutDeviceList(accountID, l.Version, blob); err != nil {
		return err
	}
	devices, err := tx.SessionDevices(accountID)
	if err != nil {
		return err
	}
	for _, d := range devices {
		if !l.Contains(d) {
			if err := tx.DeleteSession(accountID, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// Device is one device of this account.
type Device struct {
	ID         uint32
	Created    time.Time
	ThisDevice bool
}

// Devices returns this account's devices, checked against the account's
// signed device list: a device the server lists that the list does not is
// ErrUnlistedDevice (report it: someone added a device without the
// account's identity key).
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	resp, l, err := c.ownDevices(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Device, 0, len(resp.Devices))
	for _, d := range resp.Devices {
		if !l.Contains(d.ID) {
			return nil, ErrUnlistedDevice
		}
		out = append(out, Device{ID: d.ID, Created: time.UnixMilli(d.Created), ThisDevice: d.ID == c.deviceID})
	}
	return out, nil
}

// ownDevices fetches this account's devices and verified device list.
func (c *Client) ownDevices(ctx context.Context) (*api.DevicesResponse, *devicelist.List, error) {
	var resp api.DevicesResponse
	if err := c.do(ctx, http.MethodGet, api.PathDevices, nil, &resp); err != nil {
		return nil, nil, fmt.Errorf("client: devices: %w", err)
	}
	var l *devicelist.List
	err := c.st.Update(ctx, func(tx *profile.Tx) error {
		var err error
		if l, err = verifiedList(tx, c.accountID, c.identity.Public, resp.DeviceList); err != nil {
			return err
		}
		return keepList(tx, c.accountID, l, resp.DeviceList)
	})
	if err != nil {
		return nil, nil, err
	}
	return &resp, l, nil
}

// hasOtherDevices reports whether this account's newest device list that
// this device has seen names another device. It is refreshed when Receive
// starts, when a device is approved or removed, and when a message comes
// from a device of this account it does not know.
func (c *Client) hasOtherDevices(ctx context.Context) bool {
	l := c.storedOwnList(ctx)
	return l == nil || len(l.Devices) > 1 || !l.Contains(c.deviceID) // not known: try, the server will say
}

// learnOwnDevice refreshes this account's device list when a message came
// from a device of it that the list this device holds does not name.
func (c *Client) learnOwnDevice(ctx context.Context, id uint32) {
	if l := c.storedOwnList(ctx); l == nil || !l.Contains(id) {
		c.ownDevices(ctx)
	}
}

// storedOwnList is this account's device list as this device last verified
// it, or nil if it has none (or cannot read it).
func (c *Client) storedOwnList(ctx context.Context) *devicelist.List {
	var l *devicelist.List
	c.st.View(ctx, func(tx *profile.Tx) error {
		blob, _, err := tx.DeviceList(c.accountID)
		if err != nil || blob == nil {
			return err
		}
		l, _ = devicelist.Verify(c.identity.Public, blob)
		return nil
	})
	return l
}

// maxListRetries bounds the retries of a device list change that lost a
// race with another change.
const maxListRetries = 3

// RemoveDevice revokes one of this account's devices: it signs the next
// device list without it and has the server delete it. The device can no
// longer connect or fetch anything, and senders stop encrypting to it.
func (c *Client) RemoveDevice(ctx context.Context, id uint32) error {
	for try := 0; ; try++ {
		_, l, err := c.ownDevices(ctx)
		if err != nil {
			return err
		}
		if !l.Contains(id) {
			return fmt.Errorf("client: this account has no device %d", id)
		}
		next, err := l.Without(id, time.Now())
		if err != nil {
			return fmt.Errorf("client: %v", err)
		}
		blob, err := devicelist.Sign(c.identity.Private, next, randReader)
		if err != nil {
			return fmt.Errorf("client: %v", err)
		}
		err = c.do(ctx, http.MethodDelete, pathFor(api.PathDevice, "{device}", fmt.Sprint(id)), &api.RemoveDeviceRequest{DeviceList: blob}, nil)
		if _, ok := isCode(err, api.CodeDeviceListConflict); ok && try < maxListRetries {
			continue
		}
		if err != nil {
			return fmt.Errorf("client: removing device %d: %w", id, err)
		}
		if id == c.deviceID {
			return nil
		}
		err = c.st.Update(ctx, func(tx *profile.Tx) error {
			if err := tx.DeleteSession(c.accountID, id); err != nil {
				return err
			}
			if err := tx.PutOwnChange(next.Version, blob); err != nil {
				return err
			}
			return tx.PutDeviceList(c.accountID, next.Version, blob)
		})
		if err != nil {
			return err
		}
		// The server answered once the new list was published: the log
		// holds exactly it, now. (What the check finds is an alert.)
		c.checkOwnChange(ctx, 0)
		return nil
	}
}

// provision is what an existing device sends a new one, sealed.
type provision struct {
	Version         int    `json:"version"`
	AccountID       string `json:"account_id"`
	Username        string `json:"username"`
	IdentityPublic  []byte `json:"identity_public"`
	IdentityPrivate []byte `json:"identity_private"`
	LinkToken       string `json:"link_token"`
	DeviceID        uint32 `json:"device_id"`
	DeviceList      []byte `json:"device_list"`
	// ProfileKey is the account's profile key, absent when the approving
	// device has none yet.
	ProfileKey []byte `json:"profile_key,omitempty"`
	// Transparency is the key transparency log the approving device
	// follows, for the new device to pin: it then trusts the same log keys,
	// continues from the same head and requires the same auditors, and the
	// server cannot show it another log. Absent from an approving device
	// that has pinned none; the new device then takes the server's.
	Transparency *provisionLog `json:"transparency,omitempty"`
	// Registered is when the account was registered (Unix ms), for the
	// new device to match legal notices to this account only (LegalNotices);
	// absent from an approving device that does not know it.
	Registered int64 `json:"registered,omitempty"`
}

// provisionLog is the key transparency log in a provisioning message.
type provisionLog struct {
	Origin       string   `json:"origin"`
	LogKey       string   `json:"log_key"`
	VRFKey       []byte   `json:"vrf_key"`
	HeadSize     uint64   `json:"head_size,omitempty"`
	HeadRoot     []byte   `json:"head_root,omitempty"`
	Auditors     []string `json:"auditors,omitempty"`
	Cosignatures int      `json:"cosignatures,omitempty"`
	MaxAuditLag  int64    `json:"max_audit_lag_ms,omitempty"`
}

func (p *provisionLog) log() *profile.TransparencyLog {
	return &profile.TransparencyLog{Origin: p.Origin, LogKey: p.LogKey, VRFKey: p.VRFKey, HeadSize: p.HeadSize, HeadRoot: p.HeadRoot,
		Auditors: p.Auditors, Cosignatures: p.Cosignatures, MaxAuditLag: time.Duration(p.MaxAuditLag) * time.Millisecond}
}

// parseProvision decodes and checks a provisioning message.
func parseProvision(b []byte) (*provision, keys.KeyPair, *devicelist.List, error) {
	var p provision
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	bad := errors.New("client: link: malformed provisioning message")
	if err := d.Decode(&p); err != nil || d.More() {
		return nil, keys.KeyPair{}, nil, bad
	}
	if p.Version != provisionVersion || !api.ValidUUID(p.AccountID) || !api.ValidUsername(p.Username) || p.LinkToken == "" ||
		len(p.LinkToken) > 128 || p.DeviceID < 2 || p.DeviceID > api.MaxDevicesPerAccount {
		return nil, keys.KeyPair{}, nil, bad
	}
	if p.ProfileKey != nil && len(p.ProfileKey) != profile.ProfileKeySize || p.Registered < 0 {
		return nil, keys.KeyPair{}, nil, bad
	}
	if t := p.Transparency; t != nil {
		l := t.log()
		if checkLog(l) != nil || t.MaxAuditLag < 0 {
			return nil, keys.KeyPair{}, nil, bad
		}
	}
	pub, err := keys.ParsePublicKey(p.IdentityPublic)
	if err != nil {
		return nil, keys.KeyPair{}, nil, bad
	}
	priv, err := keys.NewPrivateKey(p.IdentityPrivate)
	if err != nil || !priv.PublicKey().Equal(pub) {
		return nil, keys.KeyPair{}, nil, bad
	}
	l, err := devicelist.Verify(pub, p.DeviceList)
	if err != nil || l.Contains(p.DeviceID) {
		return nil, keys.KeyPair{}, nil, bad
	}
	return &p, keys.KeyPair{Public: pub, Private: priv}, l, nil
}

// linkCode encodes a mailbox address and a public key.
func linkCode(address string, pub []byte) (string, error) {
	a, err := base64.RawURLEncoding.DecodeString(address)
	if err != nil || len(a) != 16 {
		return "", errors.New("client: link: the server's mailbox address is malformed")
	}
	return linkCodePrefix + base64.RawURLEncoding.EncodeToString(append(a, pub...)), nil
}

// parseLinkCode is the inverse of linkCode.
func parseLinkCode(code string) (address string, pub *ecdh.PublicKey, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(code), linkCodePrefix)
	if !ok {
		return "", nil, ErrBadLinkCode
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) != 16+32 {
		return "", nil, ErrBadLinkCode
	}
	pub, err = ecdh.X25519().NewPublicKey(b[16:])
	if err != nil {
		return "", nil, ErrBadLinkCode
	}
	return base64.RawURLEncoding.EncodeToString(b[:16]), pub, nil
}

// ApproveLink lets the device that showed code join this account: it sends
// the new device, sealed to the key in the code, this account's identity
// key and a link token for it, waits until the new device has joined (or
// the token expired: ErrLinkExpired) and returns its id. Only approve a code
// you read off your own new device.
func (c *Client) ApproveLink(ctx context.Context, code string) (id uint32, err error) {
	address, pub, err := parseLinkCode(code)
	if err != nil {
		return 0, err
	}
	var tok api.LinkTokenResponse
	if err := c.do(ctx, http.MethodPost, api.PathLinkTokens, nil, &tok); err != nil {
		return 0, fmt.Errorf("client: link: %w", err)
	}
	if tok.Token == "" || tok.DeviceID < 2 || tok.DeviceID > api.MaxDevicesPerAccount {
		return 0, errors.New("client: link: the server's link token is malformed")
	}
	// The device this approves is this device's doing: the owner monitor
	// is not to take it for one another device added.
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		st, err := tx.OwnerState()
		if err != nil || slices.Contains(st.Added, tok.DeviceID) {
			return err
		}
		st.Added = append(st.Added, tok.DeviceID)
		return tx.PutOwnerState(st)
	})
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			// Not added after all: the id is news again if a list
			// names it (the server could hand another device it).
			c.st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error {
				st, err := tx.OwnerState()
				if err != nil {
					return err
				}
				st.Added = slices.DeleteFunc(st.Added, func(d uint32) bool { return d == tok.DeviceID })
				return tx.PutOwnerState(st)
			})
		}
	}()
	resp, _, err := c.ownDevices(ctx)
	if err != nil {
		return 0, err
	}
	profileKey, err := c.ownProfileKey(ctx)
	if err != nil {
		return 0, err
	}
	var registered time.Time
	if err := c.st.View(ctx, func(tx *profile.Tx) (err error) { registered, err = tx.Registered(); return err }); err != nil {
		return 0, err
	}
	p := &provision{
		Version: provisionVersion, AccountID: c.accountID, Username: c.username, ProfileKey: profileKey,
		IdentityPublic: c.identity.Public.Bytes(), IdentityPrivate: c.identity.Private.Bytes(),
		LinkToken: tok.Token, DeviceID: tok.DeviceID, DeviceList: resp.DeviceList,
	}
	if !registered.IsZero() {
		p.Registered = registered.UnixMilli()
	}
	if l, err := c.ktLog(ctx); err == nil {
		p.Transparency = &provisionLog{Origin: l.Origin, LogKey: l.LogKey, VRFKey: l.VRFKey, HeadSize: l.HeadSize, HeadRoot: l.HeadRoot,
			Auditors: l.Auditors, Cosignatures: l.Cosignatures, MaxAuditLag: l.MaxAuditLag.Milliseconds()}
	}
	pt, err := json.Marshal(p)
	clear(p.IdentityPrivate)
	if err != nil {
		return 0, fmt.Errorf("client: link: %v", err)
	}
	defer clear(pt)
	hpub, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return 0, fmt.Errorf("client: link: %v", err)
	}
	sealed, err := hpke.Seal(hpub, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(provisionInfo+address), pt)
	if err != nil {
		return 0, fmt.Errorf("client: link: %v", err)
	}
	err = c.do(ctx, http.MethodPut, pathFor(api.PathProvisioningMailbox, "{address}", address), &api.ProvisioningMessage{Message: sealed}, nil)
	if _, ok := isCode(err, api.CodeNotFound); ok {
		return 0, ErrLinkExpired
	}
	if err != nil {
		return 0, fmt.Errorf("client: link: %w", err)
	}
	// Wait for the new device to join, so that what this device sends
	// from now on reaches it too.
	deadline := time.UnixMilli(tok.Expires)
	for {
		resp, l, err := c.ownDevices(ctx)
		if err != nil {
			return 0, err
		}
		if l.Contains(tok.DeviceID) {
			// The list with the new device is this account's change:
			// the log must hold exactly it. The new device's request
			// was answered once it was published, but this device may
			// have read it from the store just before: it waits a
			// little for the log to catch up.
			err := c.st.Update(ctx, func(tx *profile.Tx) error { return tx.PutOwnChange(l.Version, resp.DeviceList) })
			if err == nil {
				c.checkOwnChange(ctx, ownChangeWait)
			}
			return tok.DeviceID, nil
		}
		if time.Now().After(deadline) {
			return 0, ErrLinkExpired
		}
		if err := sleepCtx(ctx, linkPoll); err != nil {
			return 0, err
		}
	}
}

// linkPoll is how often ApproveLink looks for the new device.
var linkPoll = 250 * time.Millisecond

// Link makes this a new device of an existing account: it opens a
// provisioning mailbox on the server, calls show with the link code (to
// print, and to show as a QR code), waits until a device of the account
// approves it (ApproveLink) or ctx ends, then creates the profile in dir and
// joins the account. The identity key reaches this device only inside the
// sealed provisioning message.
func Link(ctx context.Context, dir, serverURL string, opt Options, show func(code string) error) (c *Client, err error) {
	if serverURL, err = normalizeServerURL(serverURL); err != nil {
		return nil, err
	}
	if err := checkTransparencyOptions(opt); err != nil {
		return nil, err
	}
	if opt.HTTPClient == nil {
		opt.HTTPClient = defaultHTTPClient()
	}
	hc := opt.HTTPClient
	eph, err := ecdh.X25519().GenerateKey(randReader)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	var addr api.ProvisioningAddress
	if err := doJSON(ctx, hc, http.MethodPost, serverURL+api.PathProvisioning, "", "", nil, &addr); err != nil {
		return nil, fmt.Errorf("client: link: %w", err)
	}
	code, err := linkCode(addr.Address, eph.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	if err := show(code); err != nil {
		return nil, err
	}
	// Wait for the sealed message: each poll is held by the server until a
	// message arrives or its own timeout (204).
	mailbox := serverURL + pathFor(api.PathProvisioningMailbox, "{address}", addr.Address)
	var msg api.ProvisioningMessage
	for {
		msg = api.ProvisioningMessage{}
		err := doJSON(ctx, hc, http.MethodGet, mailbox, "", "", nil, &msg)
		if _, ok := isCode(err, api.CodeNotFound); ok {
			return nil, ErrLinkExpired
		}
		var te *transportError
		if errors.As(err, &te) {
			if err := sleepCtx(ctx, time.Second); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("client: link: %w", err)
		}
		if len(msg.Message) > 0 {
			break
		}
	}
	hpriv, err := hpke.NewDHKEMPrivateKey(eph)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	pt, err := hpke.Open(hpriv, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(provisionInfo+addr.Address), msg.Message)
	if err != nil {
		return nil, errors.New("client: link: the provisioning message does not open")
	}
	defer clear(pt)
	p, identity, list, err := parseProvision(pt)
	if err != nil {
		return nil, err
	}
	clear(p.IdentityPrivate)
	var ktLog *profile.TransparencyLog
	if p.Transparency != nil {
		ktLog = p.Transparency.log()
	} else if ktLog, err = fetchTransparencyLog(ctx, hc, serverURL); err != nil {
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
	next, err := list.With(p.DeviceID, now)
	if err != nil {
		return nil, fmt.Errorf("client: link: %v", err)
	}
	nextBlob, err := devicelist.Sign(identity.Private, next, randReader)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	regID, up, err := newDeviceKeys(ctx, st, identity, now)
	if err != nil {
		return nil, err
	}
	if p.Registered > 0 {
		if err := st.Update(ctx, func(tx *profile.Tx) error { return tx.SetRegistered(time.UnixMilli(p.Registered)) }); err != nil {
			return nil, err
		}
	}
	req := &api.LinkDeviceRequest{AccountID: p.AccountID, LinkToken: p.LinkToken, RegistrationID: regID, Keys: *up, DeviceList: nextBlob}
	var resp api.RegisterResponse
	if err := doJSON(ctx, hc, http.MethodPost, serverURL+api.PathDevices, "", "", req, &resp); err != nil {
		return nil, fmt.Errorf("client: link: %w", err)
	}
	if resp.AccountID != p.AccountID || resp.DeviceID != p.DeviceID || resp.Password == "" {
		return nil, errors.New("client: link: the server's answer is malformed")
	}
	if c, err = joined(ctx, dir, st, opt, serverURL, p.Username, &resp, regID, identity, next, nextBlob, p.ProfileKey, ktLog); err != nil {
		return nil, err
	}
	// Say hello to the account's other devices, so that they learn of this
	// one and send it the transcripts of what they send. A failure here
	// leaves that to their next Receive.
	c.deliver(ctx, c.username, &content.Content{Timestamp: now.UnixMilli()}, nil)
	return c, nil
}
