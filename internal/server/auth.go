package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
)

// passwordSize is the entropy of a device password, in bytes.
const passwordSize = 32

// newPassword returns a fresh device password (base64url of 32 random bytes)
// and the SHA-256 the store keeps in its place.
func newPassword() (password string, hash []byte) {
	var b [passwordSize]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	password = base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(password))
	return password, h[:]
}

// parseLogin splits api.Login's form "accountID.deviceID".
func parseLogin(login string) (accountID string, deviceID uint32, ok bool) {
	i := strings.LastIndexByte(login, '.')
	if i < 0 {
		return "", 0, false
	}
	accountID = login[:i]
	if !api.ValidUUID(accountID) {
		return "", 0, false
	}
	id, ok := parseDeviceID(login[i+1:])
	return accountID, id, ok
}

// parseDeviceID parses a device id in decimal, 1..api.MaxDevicesPerAccount.
func parseDeviceID(s string) (uint32, bool) {
	if s == "" || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > api.MaxDevicesPerAccount {
		return 0, false
	}
	return uint32(n), true
}

// authenticate checks the request's Basic credentials. Whether the login
// names no device or the password is wrong, it compares one hash in constant
// time, so that timing does not tell the two apart.
func (s *Server) authenticate(r *http.Request) (*store.Device, error) {
	login, password, ok := r.BasicAuth()
	if !ok {
		return nil, errUnauthorized
	}
	want := s.dummyHash[:]
	var dev *store.Device
	if accountID, deviceID, ok := parseLogin(login); ok {
		d, err := s.st.Device(r.Context(), accountID, deviceID)
		switch {
		case err == nil:
			dev, want = d, d.CredentialHash
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
	}
	got := sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(got[:], want) != 1 || dev == nil {
		return nil, errUnauthorized
	}
	return dev, nil
}
