package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/protocol/keys"
)

// POST /v1/accounts
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Registration == api.RegistrationClosed {
		return errorf(http.StatusForbidden, api.CodeForbidden, "registration is closed")
	}
	var req api.RegisterRequest
	if err := decode(w, r, min(s.cfg.MaxBody, maxKeysBody), &req); err != nil {
		return err
	}
	if !api.ValidUsername(req.Username) {
		return badRequest("username must be 3 to 32 of a-z, 0-9 and _, starting with a letter")
	}
	identity, err := keys.ParsePublicKey(req.IdentityKey)
	if err != nil {
		return badRequest("identity key: %v", err)
	}
	if req.RegistrationID < 1 || req.RegistrationID > api.MaxRegistrationID {
		return badRequest("registration id out of range 1..%d", api.MaxRegistrationID)
	}
	if req.Keys.SignedPreKey == nil || req.Keys.LastResortKyberPreKey == nil {
		return badRequest("registration needs a signed prekey and a last-resort kyber prekey")
	}
	if err := checkAccessKey(req.UnidentifiedAccessKey); err != nil {
		return err
	}
	upload, err := checkKeys(identity, &req.Keys)
	if err != nil {
		return err
	}
	list, err := checkFirstList(identity, req.DeviceList)
	if err != nil {
		return err
	}
	var inviteHash []byte
	if s.cfg.Registration == api.RegistrationInvite {
		if req.InviteCode == "" {
			return errorf(http.StatusForbidden, api.CodeInvalidInvite, "registration needs an invite code")
		}
		h := sha256.Sum256([]byte(req.InviteCode))
		inviteHash = h[:]
	}

	password, hash := newPassword()
	now := s.now()
	acct := &store.Account{ID: api.NewUUID(), Username: req.Username, IdentityKey: identity.Bytes(), Created: now,
		UnidentifiedAccessKey: req.UnidentifiedAccessKey}
	dev := &store.Device{
		AccountID:      acct.ID,
		ID:             api.PrimaryDeviceID,
		RegistrationID: req.RegistrationID,
		CredentialHash: hash,
		Created:        now,
	}
	switch err := s.st.CreateAccount(r.Context(), acct, dev, upload, list, inviteHash); {
	case errors.Is(err, store.ErrUsernameTaken):
		return errorf(http.StatusConflict, api.CodeUsernameTaken, "username taken")
	case errors.Is(err, store.ErrInvalidInvite):
		return errorf(http.StatusForbidden, api.CodeInvalidInvite, "unknown, used or expired invite code")
	case err != nil:
		return err
	}
	s.names.put(acct.ID, acct.Username)
	// The account is in the transparency log before its owner learns
	// its password: its first lookup finds it.
	if err := s.flush(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.RegisterResponse{AccountID: acct.ID, DeviceID: dev.ID, Password: password})
	return nil
}

// GET /v1/accounts/{username}
func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request, _ *store.Device) error {
	acct, err := s.accountByUsername(r.Context(), r.PathValue("username"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.Account{ID: acct.ID, Username: acct.Username, IdentityKey: acct.IdentityKey,
		UnrestrictedUnidentifiedAccess: acct.UnrestrictedUnidentifiedAccess})
	return nil
}

// checkAccessKey refuses an unidentified access key of the wrong size; nil
// (absent) is fine.
func checkAccessKey(k []byte) error {
	if k != nil && len(k) != api.UnidentifiedAccessKeySize {
		return badRequest("unidentified_access_key must be %d bytes", api.UnidentifiedAccessKeySize)
	}
	return nil
}

// maxAttributesBody bounds the body of PUT /v1/accounts/me/attributes: a
// 16-byte key in base64 and a flag.
const maxAttributesBody = 1 << 10

// PUT /v1/accounts/me/attributes: any device of the account sets its
// unidentified access: a new key (absent: keep it) and whether sealed
// messages from anyone are accepted.
func (s *Server) handleSetAttributes(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	var req api.AccountAttributes
	if err := decode(w, r, maxAttributesBody, &req); err != nil {
		return err
	}
	if err := checkAccessKey(req.UnidentifiedAccessKey); err != nil {
		return err
	}
	switch err := s.st.SetUnidentifiedAccess(r.Context(), dev.AccountID, req.UnidentifiedAccessKey, req.UnrestrictedUnidentifiedAccess); {
	case errors.Is(err, store.ErrNotFound):
		return errUnauthorized // the account is gone
	case err != nil:
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// DELETE /v1/accounts/me: any device of the account may delete it (any
// device may already remove itself, and a lost primary device must not
// keep an account alive). Everything the store holds for the account goes
// in one transaction (store.Accounts.DeleteAccount); then its devices'
// WebSockets are closed as revoked, and the answer waits until the
// deletion is published in the transparency log. The username is free at
// once.
func (s *Server) handleDeleteAccount(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	switch err := s.st.DeleteAccount(r.Context(), dev.AccountID); {
	case errors.Is(err, store.ErrNotFound):
		return errUnauthorized // deleted by a request racing this one
	case err != nil:
		return err
	}
	s.names.drop(dev.AccountID)
	flushErr := s.flush(r.Context())
	// Every device id the account could have had, not only those listed
	// before the deletion: a device linked meanwhile went with the account
	// too. A signal to a device with no connection is dropped.
	for id := uint32(1); id <= api.MaxDevicesPerAccount; id++ {
		s.br.Notify(dev.AccountID, id, broker.Revoked)
	}
	if flushErr != nil {
		return flushErr
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// accountByUsername looks a user up; 404 when there is none.
func (s *Server) accountByUsername(ctx context.Context, username string) (*store.Account, error) {
	if !api.ValidUsername(username) {
		return nil, errorf(http.StatusNotFound, api.CodeNotFound, "no such user")
	}
	acct, err := s.st.AccountByUsername(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, api.CodeNotFound, "no such user")
	}
	if err == nil {
		s.names.put(acct.ID, acct.Username)
	}
	return acct, err
}

// GET /v1/devices
func (s *Server) handleDevices(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	devs, err := s.st.Devices(r.Context(), dev.AccountID)
	if err != nil {
		return err
	}
	resp := api.DevicesResponse{Devices: make([]api.Device, 0, len(devs))}
	for _, d := range devs {
		resp.Devices = append(resp.Devices, api.Device{ID: d.ID, RegistrationID: d.RegistrationID, Created: d.Created.UnixMilli()})
	}
	if resp.DeviceList, err = s.signedList(r.Context(), dev.AccountID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// DELETE /v1/devices/{device}: a device may remove itself, and the primary
// device any device of the account, but not the account's last device. The
// body carries the next device list, without the device. The removed
// device's credentials stop working at once, its queue and keys go, and its
// WebSocket is closed.
func (s *Server) handleRemoveDevice(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	id, ok := parseDeviceID(r.PathValue("device"))
	if !ok {
		return badRequest("device id must be a number 1..%d", api.MaxDevicesPerAccount)
	}
	if id != dev.ID && dev.ID != api.PrimaryDeviceID {
		return errorf(http.StatusForbidden, api.CodeForbidden, "only the primary device may remove another device")
	}
	var req api.RemoveDeviceRequest
	if err := decode(w, r, maxListBody, &req); err != nil {
		return err
	}
	ctx := r.Context()
	identity, err := s.identityKey(ctx, dev.AccountID)
	if err != nil {
		return err
	}
	cur, err := s.currentDevices(ctx, dev.AccountID, identity)
	if err != nil {
		return err
	}
	if !slices.Contains(cur.devices, id) {
		return errorf(http.StatusNotFound, api.CodeNotFound, "no such device")
	}
	if len(cur.devices) == 1 {
		return errorf(http.StatusForbidden, api.CodeForbidden, "the account's last device cannot be removed")
	}
	remaining := slices.DeleteFunc(slices.Clone(cur.devices), func(d uint32) bool { return d == id })
	list, err := checkNextList(identity, req.DeviceList, cur.version+1, remaining)
	if err != nil {
		return err
	}
	switch err := s.st.RemoveDevice(ctx, dev.AccountID, id, list); {
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, api.CodeNotFound, "no such device")
	case errors.Is(err, store.ErrVersionConflict):
		return errListConflict
	case err != nil:
		return err
	}
	s.br.Notify(dev.AccountID, id, broker.Revoked)
	if err := s.flush(ctx); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// nameCache maps account ids to usernames, for the source of envelopes.
// Usernames never change, so entries are never stale; the cache is cleared
// when full.
type nameCache struct {
	mu sync.Mutex
	m  map[string]string
}

const nameCacheSize = 10_000

func (c *nameCache) get(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.m[id]
	return n, ok
}

func (c *nameCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

func (c *nameCache) put(id, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= nameCacheSize {
		c.m = make(map[string]string)
	}
	c.m[id] = name
}

func (s *Server) username(ctx context.Context, accountID string) (string, error) {
	if n, ok := s.names.get(accountID); ok {
		return n, nil
	}
	acct, err := s.st.AccountByID(ctx, accountID)
	if err != nil {
		return "", err
	}
	s.names.put(acct.ID, acct.Username)
	return acct.Username, nil
}

// inviteEncoding spells invite codes: lower-case base32, no padding, so that
// a code survives being read aloud or typed.
var inviteEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// inviteSize is the entropy of an invite code, in bytes (32 characters).
const inviteSize = 20

// CreateInvites makes n single-use invite codes valid for ttl from now,
// stores their SHA-256 hashes, and returns the codes, which exist nowhere
// else.
func CreateInvites(ctx context.Context, st store.Accounts, n int, ttl time.Duration, now time.Time) ([]string, error) {
	if n < 1 || ttl <= 0 {
		return nil, errors.New("server: invites need a positive count and lifetime")
	}
	codes := make([]string, 0, n)
	for range n {
		var b [inviteSize]byte
		rand.Read(b[:]) // never fails (crypto/rand)
		code := inviteEncoding.EncodeToString(b[:])
		h := sha256.Sum256([]byte(code))
		if err := st.CreateInvite(ctx, &store.Invite{CodeHash: h[:], Created: now, Expires: now.Add(ttl)}); err != nil {
			return nil, fmt.Errorf("server: create invite: %w", err)
		}
		codes = append(codes, code)
	}
	return codes, nil
}
