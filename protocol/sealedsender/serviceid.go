package sealedsender

import (
	"fmt"
	"strings"

	"github.com/doorless/doorless/protocol/internal/uuid"
)

// ServiceID names an account in a multi-recipient message: libsignal's ServiceId in its
// fixed-width binary form, a kind byte (0 for an ACI, 1 for a PNI) and the UUID's 16
// bytes. Doorless accounts are ACIs; PNIs are read because libsignal can write them.
// The zero value is the ACI of the nil UUID.
type ServiceID [serviceIDSize]byte

// Service id kinds, as libsignal's ServiceIdKind numbers them.
const (
	kindACI = 0
	kindPNI = 1
	// serviceIDSize is the fixed-width binary form (ServiceIdFixedWidthBinaryBytes).
	serviceIDSize = 17
	// pniPrefix starts the string form of a PNI (libsignal service_id_string).
	pniPrefix = "PNI:"
)

// NewACI returns the service id of the account with the given UUID (hyphenated, any
// case).
func NewACI(id string) (ServiceID, error) {
	u, ok := uuid.Parse(id)
	if !ok {
		return ServiceID{}, fmt.Errorf("%w: %q is not a hyphenated UUID", ErrInvalidArgument, id)
	}
	return serviceIDOf(kindACI, u), nil
}

// ParseServiceID reads libsignal's string form: a UUID for an ACI, "PNI:" and a UUID for
// a PNI.
func ParseServiceID(s string) (ServiceID, error) {
	kind := byte(kindACI)
	if rest, ok := strings.CutPrefix(s, pniPrefix); ok {
		kind, s = kindPNI, rest
	}
	u, ok := uuid.Parse(s)
	if !ok {
		return ServiceID{}, fmt.Errorf("%w: %q is not a service id", ErrInvalidArgument, s)
	}
	return serviceIDOf(kind, u), nil
}

func serviceIDOf(kind byte, u [16]byte) ServiceID {
	var id ServiceID
	id[0] = kind
	copy(id[1:], u[:])
	return id
}

// parseServiceIDBinary reads the fixed-width binary form; the kind must be known.
func parseServiceIDBinary(b []byte) (ServiceID, bool) {
	if len(b) != serviceIDSize || (b[0] != kindACI && b[0] != kindPNI) {
		return ServiceID{}, false
	}
	return ServiceID(b), true
}

// IsACI reports whether id names an account (an ACI) rather than a phone number
// identity (a PNI).
func (id ServiceID) IsACI() bool { return id[0] == kindACI }

// UUID returns the UUID in lower-case hyphenated form.
func (id ServiceID) UUID() string { return uuid.Format([16]byte(id[1:])) }

// String returns libsignal's string form: the UUID for an ACI, "PNI:" and the UUID for a
// PNI.
func (id ServiceID) String() string {
	if id.IsACI() {
		return id.UUID()
	}
	return pniPrefix + id.UUID()
}
