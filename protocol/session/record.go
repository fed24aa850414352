package session

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/doorless/doorless/protocol/keys"
)

// Record holds the sessions of the local device with one remote device: the current
// session and archived ones, newest first. The zero value is an empty record.
type Record struct {
	current  *state
	previous []*state // newest first, at most MaxArchivedStates
}

// HasCurrentSession reports whether the record has a session to encrypt with.
func (r *Record) HasCurrentSession() bool { return r.current != nil }

// RemoteIdentity returns the remote identity key of the current session.
func (r *Record) RemoteIdentity() (keys.PublicKey, bool) {
	if r.current == nil {
		return keys.PublicKey{}, false
	}
	return r.current.remoteIdentity, true
}

// RemoteRegistrationID returns the remote registration id of the current session.
func (r *Record) RemoteRegistrationID() (uint32, bool) {
	if r.current == nil {
		return 0, false
	}
	return r.current.remoteRegID, true
}

// ArchiveCurrent moves the current session to the archive, so that the next message
// needs a new session (as after an identity change); archived sessions still decrypt.
func (r *Record) ArchiveCurrent() {
	if r.current == nil {
		return
	}
	r.current.pending = nil
	if len(r.previous) >= MaxArchivedStates {
		r.previous = r.previous[:MaxArchivedStates-1]
	}
	r.previous = append([]*state{r.current}, r.previous...)
	r.current = nil
}

// promote makes s the current session, archiving the current one.
func (r *Record) promote(s *state) {
	r.ArchiveCurrent()
	r.current = s
}

// promoteArchived makes the archived session at index i current.
func (r *Record) promoteArchived(i int) {
	s := r.previous[i]
	r.previous = append(r.previous[:i], r.previous[i+1:]...)
	r.promote(s)
}

// Encrypt seals plaintext for the remote device under the current session. It returns
// TypePreKey while the session is unacknowledged and TypeWhisper afterwards; the
// prekey messages bind the addresses given to InitiateSession into their MAC.
func (r *Record) Encrypt(plaintext []byte, now time.Time, rnd io.Reader) (MessageType, []byte, error) {
	if r.current == nil {
		return 0, nil, ErrNoSession
	}
	return r.current.encrypt(plaintext, now, randReader(rnd))
}

// Decrypt opens a SignalMessage. It tries the current session and then the archived
// ones; one that succeeds becomes current. A replay returns *DuplicateMessageError; any
// failure leaves the record unchanged.
func (r *Record) Decrypt(m *SignalMessage, rnd io.Reader) ([]byte, error) {
	rnd = randReader(rnd)
	var firstErr error
	if r.current != nil {
		pt, err := r.current.decrypt(m, nil, rnd)
		if err == nil {
			return pt, nil
		}
		var dup *DuplicateMessageError
		if errors.As(err, &dup) {
			return nil, err
		}
		firstErr = err
	}
	for i, s := range r.previous {
		pt, err := s.decrypt(m, nil, rnd)
		if err == nil {
			r.promoteArchived(i)
			return pt, nil
		}
		var dup *DuplicateMessageError
		if errors.As(err, &dup) {
			return nil, err
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		return nil, ErrNoSession
	}
	return nil, firstErr
}

// DecryptPreKey opens a PreKeySignalMessage, creating the responder's session with
// PQXDH unless the record already has the session this message belongs to (a repeated
// first message). The caller must have decided to trust m.IdentityKey(). It returns the
// prekeys consumed (nil when no new session was made), which the caller then deletes;
// any failure leaves the record unchanged.
func (r *Record) DecryptPreKey(m *PreKeySignalMessage, local *Identity, localAddr, remoteAddr Address, store PreKeyStore, rnd io.Reader) ([]byte, *PreKeysUsed, error) {
	rnd = randReader(rnd)
	addrs := &addressPair{sender: remoteAddr, recipient: localAddr}

	matches := func(s *state) bool {
		return s.version == m.version && s.aliceBaseKey.Equal(m.baseKey)
	}
	if r.current != nil && matches(r.current) {
		pt, err := r.current.decrypt(&m.message, addrs, rnd)
		return pt, nil, err
	}
	for i, s := range r.previous {
		if matches(s) {
			pt, err := s.decrypt(&m.message, addrs, rnd)
			if err != nil {
				return nil, nil, err
			}
			r.promoteArchived(i)
			return pt, nil, nil
		}
	}

	s, err := respond(local, localAddr, remoteAddr, m, store)
	if err != nil {
		return nil, nil, err
	}
	pt, err := s.decrypt(&m.message, addrs, rnd)
	if err != nil {
		return nil, nil, err
	}
	r.promote(s)
	used := &PreKeysUsed{
		PreKeyID:       m.body.PreKeyID,
		HasPreKeyID:    m.body.HasPreKeyID,
		SignedPreKeyID: m.body.SignedPreKeyID,
		KyberPreKeyID:  m.body.KyberPreKeyID,
		BaseKey:        m.baseKey,
	}
	return pt, used, nil
}

// String describes the record without any key material.
func (r *Record) String() string {
	return fmt.Sprintf("session.Record{current: %t, archived: %d}", r.current != nil, len(r.previous))
}
