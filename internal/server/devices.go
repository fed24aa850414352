package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/protocol/keys"
)

const (
	// linkTokenSize is the entropy of a link token, in bytes.
	linkTokenSize = 32
	// linkTokenTTL is how long a link token stays valid.
	linkTokenTTL = api.LinkTokenTTL * time.Millisecond
	// maxPendingLinkTokens bounds the unexpired link tokens of an account.
	// Each token spends a device id (ids are never reused, and there are
	// 127), so a device asking in a loop is stopped well before it could
	// spend them; a person links one device at a time.
	maxPendingLinkTokens = 3
	// maxListBody bounds a body that carries only a device list: a signed
	// list is at most a few hundred bytes (devicelist's 512), in base64.
	maxListBody = 4 << 10
)

var errListConflict = errorf(http.StatusConflict, api.CodeDeviceListConflict,
	"the device list is not the next version of the account's current one: fetch it and sign the next version again")

// checkFirstList verifies a registration's device list: version 1 listing
// device 1 alone, signed by the identity key in the request.
func checkFirstList(identity keys.PublicKey, blob []byte) (*store.DeviceList, error) {
	l, err := verifyList(identity, blob)
	if err != nil {
		return nil, err
	}
	if l.Version != devicelist.FirstVersion || !slices.Equal(l.Devices, []uint32{api.PrimaryDeviceID}) {
		return nil, badRequest("the first device list must be version %d listing device %d alone", devicelist.FirstVersion, api.PrimaryDeviceID)
	}
	return &store.DeviceList{Version: l.Version, Signed: blob}, nil
}

// checkNextList verifies a device list that changes the account's devices:
// signed by the identity key, at version, listing exactly devices. A wrong
// version is a conflict (the client's view is stale); a right version with
// other devices is the client's mistake.
func checkNextList(identity keys.PublicKey, blob []byte, version uint64, devices []uint32) (*store.DeviceList, error) {
	l, err := verifyList(identity, blob)
	if err != nil {
		return nil, err
	}
	if l.Version != version {
		return nil, errListConflict
	}
	if !slices.Equal(l.Devices, devices) {
		return nil, badRequest("the device list must list exactly devices %v", devices)
	}
	return &store.DeviceList{Version: l.Version, Signed: blob}, nil
}

func verifyList(identity keys.PublicKey, blob []byte) (*devicelist.List, error) {
	if len(blob) == 0 {
		return nil, badRequest("a device_list is required")
	}
	l, err := devicelist.Verify(identity, blob)
	switch {
	case errors.Is(err, devicelist.ErrBadSignature):
		return nil, errorf(http.StatusBadRequest, api.CodeBadSignature, "device list: bad signature")
	case err != nil:
		return nil, badRequest("device list: %v", err)
	}
	return l, nil
}

// deviceSet is an account's current devices as its stored list says, and the
// list's version.
type deviceSet struct {
	version uint64
	devices []uint32
}

// currentDevices returns the account's current device list. An account from
// before device lists has none: then its devices, at version 0.
func (s *Server) currentDevices(ctx context.Context, accountID string, identity keys.PublicKey) (deviceSet, error) {
	stored, err := s.st.DeviceList(ctx, accountID)
	if errors.Is(err, store.ErrNotFound) {
		devs, err := s.st.Devices(ctx, accountID)
		if err != nil {
			return deviceSet{}, err
		}
		var ids []uint32
		for _, d := range devs {
			ids = append(ids, d.ID)
		}
		return deviceSet{devices: ids}, nil
	}
	if err != nil {
		return deviceSet{}, err
	}
	l, err := devicelist.Verify(identity, stored.Signed)
	if err != nil {
		// The server verified it before storing it.
		return deviceSet{}, errors.New("server: the stored device list does not verify")
	}
	return deviceSet{version: l.Version, devices: l.Devices}, nil
}

// signedList returns the account's signed device list, nil for none.
func (s *Server) signedList(ctx context.Context, accountID string) ([]byte, error) {
	l, err := s.st.DeviceList(ctx, accountID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return l.Signed, nil
}

// identityKey returns the account's identity key.
func (s *Server) identityKey(ctx context.Context, accountID string) (keys.PublicKey, error) {
	acct, err := s.st.AccountByID(ctx, accountID)
	if err != nil {
		return keys.PublicKey{}, err
	}
	return keys.ParsePublicKey(acct.IdentityKey)
}

// POST /v1/devices/link-tokens: a token for a new device to join the
// caller's account, with the device id reserved for it.
func (s *Server) handleLinkToken(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	var b [linkTokenSize]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	token := base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(token))
	now := s.now()
	t := &store.LinkToken{TokenHash: h[:], AccountID: dev.AccountID, Expires: now.Add(linkTokenTTL)}
	switch err := s.st.CreateLinkToken(r.Context(), t, now, api.MaxDevicesPerAccount, maxPendingLinkTokens); {
	case errors.Is(err, store.ErrTooManyDevices):
		return errorf(http.StatusConflict, api.CodeTooManyDevices, "the account has used all %d device ids", api.MaxDevicesPerAccount)
	case errors.Is(err, store.ErrTooManyLinkTokens):
		e := errorf(http.StatusTooManyRequests, api.CodeRateLimited, "the account has %d unused link tokens; wait until one expires", maxPendingLinkTokens)
		e.retryAfter = linkTokenTTL
		return e
	case errors.Is(err, store.ErrNotFound):
		return errUnauthorized // the account is gone
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, api.LinkTokenResponse{Token: token, DeviceID: t.DeviceID, Expires: t.Expires.UnixMilli()})
	return nil
}

var errInvalidLinkToken = errorf(http.StatusForbidden, api.CodeInvalidLinkToken, "unknown, used or expired link token")

// POST /v1/devices: a new device joins an account with a link token. Every
// check (token, keys, device list) passes before anything changes; then the
// token is consumed, the device created with its keys and the list stored,
// in one transaction; the answer waits until the new list is published in
// the transparency log.
func (s *Server) handleLinkDevice(w http.ResponseWriter, r *http.Request) error {
	var req api.LinkDeviceRequest
	if err := decode(w, r, min(s.cfg.MaxBody, maxKeysBody), &req); err != nil {
		return err
	}
	if !api.ValidUUID(req.AccountID) {
		return badRequest("account_id must be a UUID")
	}
	if req.RegistrationID < 1 || req.RegistrationID > api.MaxRegistrationID {
		return badRequest("registration id out of range 1..%d", api.MaxRegistrationID)
	}
	if req.Keys.SignedPreKey == nil || req.Keys.LastResortKyberPreKey == nil {
		return badRequest("a new device needs a signed prekey and a last-resort kyber prekey")
	}
	if err := checkAccessKey(req.UnidentifiedAccessKey); err != nil {
		return err
	}
	if req.LinkToken == "" {
		return errInvalidLinkToken
	}
	ctx := r.Context()
	now := s.now()
	h := sha256.Sum256([]byte(req.LinkToken))
	tok, err := s.st.LinkToken(ctx, h[:], now)
	switch {
	case errors.Is(err, store.ErrInvalidLinkToken):
		return errInvalidLinkToken
	case err != nil:
		return err
	case tok.AccountID != req.AccountID:
		return errInvalidLinkToken
	}
	identity, err := s.identityKey(ctx, tok.AccountID)
	if err != nil {
		return err
	}
	upload, err := checkKeys(identity, &req.Keys)
	if err != nil {
		return err
	}
	cur, err := s.currentDevices(ctx, tok.AccountID, identity)
	if err != nil {
		return err
	}
	want := append(slices.Clone(cur.devices), tok.DeviceID)
	slices.Sort(want)
	list, err := checkNextList(identity, req.DeviceList, cur.version+1, slices.Compact(want))
	if err != nil {
		return err
	}

	password, hash := newPassword()
	dev := &store.Device{
		AccountID:      tok.AccountID,
		ID:             tok.DeviceID,
		RegistrationID: req.RegistrationID,
		CredentialHash: hash,
		Created:        now,
	}
	switch err := s.st.LinkDevice(ctx, h[:], dev, upload, list, req.UnidentifiedAccessKey); {
	case errors.Is(err, store.ErrInvalidLinkToken):
		return errInvalidLinkToken // used by a request racing this one
	case errors.Is(err, store.ErrVersionConflict):
		return errListConflict
	case err != nil:
		return err
	}
	if err := s.flush(ctx); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.RegisterResponse{AccountID: dev.AccountID, DeviceID: dev.ID, Password: password})
	return nil
}
