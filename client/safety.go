package client

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/protocol/fingerprint"
	"github.com/doorless/doorless/protocol/keys"
)

// SafetyNumber is what two users compare to know that no one sits between
// them: the same 60 digits on both sides exactly when each has the other's
// real identity key.
type SafetyNumber struct {
	Username    string
	Displayable string // 60 digits
	Scannable   []byte // the bytes of a QR code, libsignal's encoding (version 2)
	Verified    bool   // the user marked this contact verified (Verify)
}

// Safety number parameters, as Signal computes them: version 2 over service
// ids (the 16 bytes of the account UUID) and identity keys, 5200 iterations.
const (
	safetyVersion    = fingerprint.VersionServiceID
	safetyIterations = fingerprint.Iterations
)

// SafetyNumber returns the safety number of the conversation with a user,
// over the identity key known for them, which must be the one the key
// transparency log holds: an unknown user's key, or a known one the log was
// not seen to hold (one that came with a message), is looked up in the log
// first (ErrTransparency when its proof fails) and taken with the trust
// decisions a send makes (trust on first use; for a contact not verified,
// the log's key replaces another; for a verified one, it is set aside as
// pending). When Send refused a verified contact's changed key
// (ErrUntrustedIdentity), the number is over the new key, not verified, so
// that the user can compare it and Verify it; a changed key that came
// with a message and that the log does not hold is dropped (the log holds
// the trusted one), and the number is the trusted key's.
func (c *Client) SafetyNumber(ctx context.Context, username string) (*SafetyNumber, error) {
	username, err := normalizeUsername(username)
	if err != nil {
		return nil, err
	}
	accountID, key, verified, err := c.presentedKey(ctx, username)
	if err != nil {
		return nil, err
	}
	fp, err := c.fingerprint(accountID, key)
	if err != nil {
		return nil, err
	}
	return &SafetyNumber{Username: username, Displayable: fp.Displayable(), Scannable: fp.Scannable(), Verified: verified}, nil
}

// presentedKey returns the account and key the safety number is computed
// over: the pending ones when Send set a changed key aside, the trusted ones
// otherwise; either way a key the log holds, as this device last verified
// it. An unknown user, or a known one whose key the log was not seen to
// hold, is looked up, and the log's key taken (takeLogged): an unknown
// user is stored as a contact.
func (c *Client) presentedKey(ctx context.Context, username string) (accountID string, key keys.PublicKey, verified bool, err error) {
	ct, err := c.contact(ctx, username)
	if err == nil && ct == nil {
		ct, err = c.takeLogged(ctx, username)
	}
	if err != nil {
		return "", key, false, err
	}
	for try := 0; ; try++ {
		accountID, key, verified = ct.AccountID, ct.IdentityKey, ct.Verified
		if ct.PendingKey != nil {
			accountID, key, verified = ct.PendingAccount, *ct.PendingKey, false
		}
		var logged bool
		err = c.st.View(ctx, func(tx *profile.Tx) error {
			var err error
			logged, err = ktVerified(tx, username, accountID, key)
			return err
		})
		if err != nil || logged {
			return accountID, key, verified, err
		}
		if try == 1 {
			return "", key, false, transparencyErr(errProofMismatch) // changed meanwhile
		}
		if ct, err = c.takeLogged(ctx, username); err != nil {
			return "", key, false, err
		}
	}
}

// takeLogged looks a user up in the log and takes the key it holds with
// the trust decisions a send makes (trustForSend): an unknown user's is
// trusted on first use; the trusted key confirmed drops a pending one;
// another replaces the trusted key of a contact not verified, and is set
// aside as pending for a verified one. It returns the contact then.
func (c *Client) takeLogged(ctx context.Context, username string) (*profile.Contact, error) {
	v, err := c.lookup(ctx, username)
	if err != nil {
		return nil, err
	}
	ik, err := keys.ParsePublicKey(v.IdentityKey)
	if err != nil {
		return nil, transparencyErr(errors.New("the log holds a malformed identity key"))
	}
	var ct *profile.Contact
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		now := time.Now()
		_, err := trustForSend(tx, username, v.AccountID, ik, now)
		var u *untrusted
		if errors.As(err, &u) {
			if ct, err = tx.Contact(username); err != nil {
				return err
			}
			ct.PendingAccount, ct.PendingKey = u.accountID, &u.key
			err = tx.PutContact(ct, now)
		}
		if err != nil {
			return err
		}
		ct, err = tx.Contact(username)
		if err == nil && ct == nil {
			err = ErrUnknownUser // gone meanwhile
		}
		return err
	})
	return ct, err
}

func (c *Client) contact(ctx context.Context, username string) (ct *profile.Contact, err error) {
	err = c.st.View(ctx, func(tx *profile.Tx) error {
		ct, err = tx.Contact(username)
		return err
	})
	return ct, err
}

func (c *Client) fingerprint(accountID string, key keys.PublicKey) (*fingerprint.Fingerprint, error) {
	local, err := uuidBytes(c.accountID)
	if err != nil {
		return nil, err
	}
	remote, err := uuidBytes(accountID)
	if err != nil {
		return nil, err
	}
	fp, err := fingerprint.New(safetyVersion, safetyIterations, local, c.identity.Public.Bytes(), remote, key.Bytes())
	if err != nil {
		return nil, fmt.Errorf("client: safety number: %v", err)
	}
	return fp, nil
}

// uuidBytes returns the 16 bytes of a hyphenated UUID, the service id bytes
// libsignal's fingerprints are computed over.
func uuidBytes(s string) ([]byte, error) {
	if !api.ValidUUID(s) {
		return nil, errors.New("client: account id is not a uuid")
	}
	return hex.DecodeString(strings.ReplaceAll(s, "-", ""))
}

// Verify compares number (60 digits; spaces allowed) with the safety number
// of the conversation with username, in constant time, and marks the
// contact verified when they are equal: from then on Send refuses a changed
// identity key for them (ErrUntrustedIdentity) until it is verified again.
// If Send had set a changed key aside, a match adopts it. A different number
// is ErrSafetyNumberMismatch, and changes nothing.
func (c *Client) Verify(ctx context.Context, username, number string) error {
	username, err := normalizeUsername(username)
	if err != nil {
		return err
	}
	given := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, number)
	accountID, key, _, err := c.presentedKey(ctx, username)
	if err != nil {
		return err
	}
	fp, err := c.fingerprint(accountID, key)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(given), []byte(fp.Displayable())) != 1 {
		return ErrSafetyNumberMismatch
	}
	return c.st.Update(ctx, func(tx *profile.Tx) error {
		ct, err := tx.Contact(username)
		if err != nil {
			return err
		}
		switch {
		case ct == nil:
			return ErrSafetyNumberMismatch // gone meanwhile
		case ct.PendingKey != nil && ct.PendingAccount == accountID && ct.PendingKey.Equal(key):
			if ct.AccountID != accountID {
				if err := forgetSessions(tx, ct.AccountID); err != nil {
					return err
				}
			}
			ct.AccountID, ct.IdentityKey = accountID, key
		case ct.PendingKey == nil && ct.AccountID == accountID && ct.IdentityKey.Equal(key):
		default:
			return ErrSafetyNumberMismatch // the key changed meanwhile
		}
		ct.PendingKey, ct.PendingAccount, ct.Verified = nil, "", true
		return tx.PutContact(ct, time.Now())
	})
}
