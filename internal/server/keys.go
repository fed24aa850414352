package server

import (
	"errors"
	"net/http"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/protocol/keys"
)

// checkKeys checks an upload against the account's identity key: every
// public key parses, every signature verifies (XEdDSA, as libsignal signs
// prekeys), counts and ids are sane. It returns the upload in the store's
// form, or an *httpError and nothing.
func checkKeys(identity keys.PublicKey, u *api.KeyUpload) (*store.KeyUpload, error) {
	if len(u.PreKeys) > api.MaxPreKeysPerUpload || len(u.KyberPreKeys) > api.MaxPreKeysPerUpload {
		return nil, badRequest("at most %d one-time keys of each kind per upload", api.MaxPreKeysPerUpload)
	}
	out := new(store.KeyUpload)
	if spk := u.SignedPreKey; spk != nil {
		if _, err := keys.ParsePublicKey(spk.PublicKey); err != nil {
			return nil, badRequest("signed prekey %d: %v", spk.ID, err)
		}
		if !identity.Verify(spk.Signature, spk.PublicKey) {
			return nil, errorf(http.StatusBadRequest, api.CodeBadSignature, "signed prekey %d: bad signature", spk.ID)
		}
		out.SignedPreKey = &store.SignedPreKey{ID: spk.ID, PublicKey: spk.PublicKey, Signature: spk.Signature}
	}
	checkKyber := func(k *api.KyberPreKey, what string) error {
		if _, err := keys.ParseKEMPublicKey(k.PublicKey); err != nil {
			return badRequest("%s %d: %v", what, k.ID, err)
		}
		if !identity.Verify(k.Signature, k.PublicKey) {
			return errorf(http.StatusBadRequest, api.CodeBadSignature, "%s %d: bad signature", what, k.ID)
		}
		return nil
	}
	kyberIDs := make(map[uint32]bool, len(u.KyberPreKeys)+1)
	if lr := u.LastResortKyberPreKey; lr != nil {
		if err := checkKyber(lr, "last-resort kyber prekey"); err != nil {
			return nil, err
		}
		kyberIDs[lr.ID] = true
		out.LastResort = &store.KyberPreKey{ID: lr.ID, PublicKey: lr.PublicKey, Signature: lr.Signature}
	}
	for i := range u.KyberPreKeys {
		k := &u.KyberPreKeys[i]
		if kyberIDs[k.ID] {
			return nil, badRequest("kyber prekey id %d repeated", k.ID)
		}
		kyberIDs[k.ID] = true
		if err := checkKyber(k, "kyber prekey"); err != nil {
			return nil, err
		}
		out.KyberPreKeys = append(out.KyberPreKeys, store.KyberPreKey{ID: k.ID, PublicKey: k.PublicKey, Signature: k.Signature})
	}
	preIDs := make(map[uint32]bool, len(u.PreKeys))
	for _, k := range u.PreKeys {
		if preIDs[k.ID] {
			return nil, badRequest("prekey id %d repeated", k.ID)
		}
		preIDs[k.ID] = true
		if _, err := keys.ParsePublicKey(k.PublicKey); err != nil {
			return nil, badRequest("prekey %d: %v", k.ID, err)
		}
		out.PreKeys = append(out.PreKeys, store.PreKey{ID: k.ID, PublicKey: k.PublicKey})
	}
	return out, nil
}

// PUT /v1/keys
func (s *Server) handleUploadKeys(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	var req api.KeyUpload
	if err := decode(w, r, min(s.cfg.MaxBody, maxKeysBody), &req); err != nil {
		return err
	}
	acct, err := s.st.AccountByID(r.Context(), dev.AccountID)
	if err != nil {
		return err
	}
	identity, err := keys.ParsePublicKey(acct.IdentityKey)
	if err != nil {
		return err
	}
	upload, err := checkKeys(identity, &req)
	if err != nil {
		return err
	}
	if len(upload.PreKeys) > 0 || len(upload.KyberPreKeys) > 0 {
		// Every uploaded key counts as new, even one replacing a key with
		// the same id: the bound is what matters, not exactness. Two
		// concurrent uploads may both pass; the account rate limit bounds
		// how far that goes.
		c, err := s.st.KeyCounts(r.Context(), dev.AccountID, dev.ID)
		if err != nil {
			return err
		}
		if c.PreKeys+len(upload.PreKeys) > api.MaxStoredPreKeys || c.KyberPreKeys+len(upload.KyberPreKeys) > api.MaxStoredPreKeys {
			return badRequest("the device would hold over %d one-time keys of a kind: it holds %d prekeys and %d kyber prekeys", api.MaxStoredPreKeys, c.PreKeys, c.KyberPreKeys)
		}
	}
	switch err := s.st.StoreKeys(r.Context(), dev.AccountID, dev.ID, upload); {
	case errors.Is(err, store.ErrNotFound):
		return errUnauthorized // removed since authentication
	case err != nil:
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// GET /v1/keys/status
func (s *Server) handleKeyStatus(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	c, err := s.st.KeyCounts(r.Context(), dev.AccountID, dev.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.KeyStatus{PreKeys: c.PreKeys, KyberPreKeys: c.KyberPreKeys})
	return nil
}

// GET /v1/keys/{username}/{device}: takes one bundle of the device, or of
// every device with "*" (but the caller's own). Each one-time key handed out
// is deleted; a device left short of them is told to refill.
//
// With key transparency the answer carries a lookup proof of the username's
// entry (for the log size the client gives as known=), and the identity key
// and device list are the ones the proof shows, which a change not yet
// published may have overtaken in the store. The proof is
// made before any one-time key is taken, so a refused request takes none.
func (s *Server) handleBundle(w http.ResponseWriter, r *http.Request, caller *store.Device) error {
	ctx := r.Context()
	var known uint64
	if s.kt != nil {
		var err error
		if known, err = parseKnown(r); err != nil {
			return err
		}
	}
	acct, err := s.accountByUsername(ctx, r.PathValue("username"))
	if err != nil {
		return err
	}
	var proven *lookup
	if s.kt != nil {
		if proven, err = s.prove(ctx, acct.Username, known); err != nil {
			return err
		}
	}
	var ids []uint32
	all := r.PathValue("device") == "*"
	if all {
		devs, err := s.st.Devices(ctx, acct.ID)
		if err != nil {
			return err
		}
		for _, d := range devs {
			if acct.ID != caller.AccountID || d.ID != caller.ID {
				ids = append(ids, d.ID)
			}
		}
	} else {
		id, ok := parseDeviceID(r.PathValue("device"))
		if !ok {
			return badRequest(`device must be a number 1..%d or "*"`, api.MaxDevicesPerAccount)
		}
		ids = []uint32{id}
	}

	resp := api.BundleResponse{AccountID: acct.ID, IdentityKey: acct.IdentityKey, Devices: []api.DeviceBundle{},
		UnrestrictedUnidentifiedAccess: acct.UnrestrictedUnidentifiedAccess}
	for _, id := range ids {
		b, err := s.st.TakeBundle(ctx, acct.ID, id)
		switch {
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrNoSignedPreKey), errors.Is(err, store.ErrNoKyberPreKey):
			continue // removed meanwhile, or never finished registering
		case err != nil:
			return err
		}
		db := api.DeviceBundle{
			DeviceID:       b.DeviceID,
			RegistrationID: b.RegistrationID,
			SignedPreKey:   api.SignedPreKey{ID: b.SignedPreKey.ID, PublicKey: b.SignedPreKey.PublicKey, Signature: b.SignedPreKey.Signature},
			KyberPreKey:    api.KyberPreKey{ID: b.KyberPreKey.ID, PublicKey: b.KyberPreKey.PublicKey, Signature: b.KyberPreKey.Signature},
		}
		if b.PreKey != nil {
			db.PreKey = &api.PreKey{ID: b.PreKey.ID, PublicKey: b.PreKey.PublicKey}
		}
		resp.Devices = append(resp.Devices, db)
		s.checkRefill(r, acct.ID, id, b)
	}
	if len(resp.Devices) == 0 {
		return errorf(http.StatusNotFound, api.CodeNotFound, "no such device")
	}
	// The identity key and device list are those the log holds for the
	// account. When the username's entry holds none of this account's
	// (not published yet, or another account's), or without key
	// transparency, the list is the store's (and the client refuses an
	// answer its proof does not match), read after the bundles: it is at
	// least as new as the devices they came from, so a device linked
	// meanwhile is in it.
	var logged *kt.AccountValue
	if proven != nil {
		resp.Transparency = proven.proof
		if v := proven.value; v != nil && v.AccountID == acct.ID {
			logged = v
		}
	}
	if logged != nil {
		resp.IdentityKey, resp.DeviceList = logged.IdentityKey, logged.DeviceList
	} else if resp.DeviceList, err = s.signedList(ctx, acct.ID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// checkRefill signals the device when a fetch left it short of one-time
// keys. Its connection reads the counts itself before sending "refill".
func (s *Server) checkRefill(r *http.Request, accountID string, deviceID uint32, b *store.Bundle) {
	if b.PreKey != nil && !b.KyberLastResort {
		c, err := s.st.KeyCounts(r.Context(), accountID, deviceID)
		if err != nil || !needsRefill(c) {
			return
		}
	}
	s.br.Notify(accountID, deviceID, broker.Keys)
}

func needsRefill(c store.KeyCounts) bool {
	return c.PreKeys < api.RefillThreshold || c.KyberPreKeys < api.RefillThreshold
}
