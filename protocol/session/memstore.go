package session

import (
	"fmt"

	"github.com/doorless/doorless/protocol/keys"
)

// MemoryPreKeyStore is a PreKeyStore over maps, for tests and for callers that load the
// prekeys a message needs into memory first. The zero value is not ready; use
// NewMemoryPreKeyStore. It is not safe for concurrent use.
type MemoryPreKeyStore struct {
	preKeys map[uint32]*keys.PreKey
	signed  map[uint32]*keys.SignedPreKey
	kyber   map[uint32]*keys.KyberPreKey
}

var _ PreKeyStore = (*MemoryPreKeyStore)(nil)

// NewMemoryPreKeyStore returns an empty store.
func NewMemoryPreKeyStore() *MemoryPreKeyStore {
	return &MemoryPreKeyStore{
		preKeys: map[uint32]*keys.PreKey{},
		signed:  map[uint32]*keys.SignedPreKey{},
		kyber:   map[uint32]*keys.KyberPreKey{},
	}
}

// AddPreKey stores a one-time prekey.
func (s *MemoryPreKeyStore) AddPreKey(k *keys.PreKey) { s.preKeys[k.ID] = k }

// AddSignedPreKey stores a signed prekey.
func (s *MemoryPreKeyStore) AddSignedPreKey(k *keys.SignedPreKey) { s.signed[k.ID] = k }

// AddKyberPreKey stores a Kyber prekey.
func (s *MemoryPreKeyStore) AddKyberPreKey(k *keys.KyberPreKey) { s.kyber[k.ID] = k }

// RemovePreKey deletes a one-time prekey, as a client does after a session used it.
func (s *MemoryPreKeyStore) RemovePreKey(id uint32) { delete(s.preKeys, id) }

// PreKeys returns how many one-time prekeys are stored.
func (s *MemoryPreKeyStore) PreKeys() int { return len(s.preKeys) }

// PreKey implements PreKeyStore.
func (s *MemoryPreKeyStore) PreKey(id uint32) (*keys.PreKey, error) {
	if k, ok := s.preKeys[id]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: one-time prekey %d", ErrMissingPreKey, id)
}

// SignedPreKey implements PreKeyStore.
func (s *MemoryPreKeyStore) SignedPreKey(id uint32) (*keys.SignedPreKey, error) {
	if k, ok := s.signed[id]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: signed prekey %d", ErrMissingPreKey, id)
}

// KyberPreKey implements PreKeyStore.
func (s *MemoryPreKeyStore) KyberPreKey(id uint32) (*keys.KyberPreKey, error) {
	if k, ok := s.kyber[id]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: Kyber prekey %d", ErrMissingPreKey, id)
}
