// Package group is the state machine of a Doorless group. Groups live only in
// clients: the server stores no group object and relays group changes as it
// relays any message, inside pairwise end-to-end encrypted sessions, so it
// can neither add nor remove a member; it can only withhold changes, which
// the next change then shows as a gap (ErrGap).
//
// A group's State (id, title, disappearing-message timer, members with their
// identity keys and admin flags) advances one version at a time through
// signed changes. A SignedChange carries the full new state, the SHA-256 hash
// of the encoding of the state it applies to, and the account id of its
// author, signed by the author's identity key (XEdDSA) over ChangeLabel and
// the change's encoding. Apply accepts a change only from a current admin of
// the group, or from a member removing itself and changing nothing else, and
// only for the version after the current one, built on the current state.
//
// Transitions, for one client's view of one group:
//
//	unknown  --Create (we make it)---------------> version 1
//	unknown  --Apply(nil, change v1 or later)----> version n   (see Apply: joining)
//	version n --Apply(state n, change n+1)-------> version n+1
//	version n --Apply(state n, change <= n)------> ErrStale or ErrFork, unchanged
//	version n --Apply(state n, change > n+1)-----> ErrGap, unchanged
//
// The package is pure: no I/O, no clock, randomness from an io.Reader. States
// and signed changes are immutable once made and safe for concurrent use; the
// functions are safe for concurrent use. The zero values of State and
// SignedChange are not valid; make them with Create, Apply, ParseState and
// ParseSignedChange.
package group

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/protocol/keys"
)

// Limits and labels of the format.
const (
	// MaxMembers bounds a group's members (the creator included).
	MaxMembers = 1000
	// MaxTitle bounds a group's title, in bytes of UTF-8.
	MaxTitle = 128
	// IDSize is the size of a group id: 32 random bytes.
	IDSize = 32
	// ChangeLabel is the domain-separation label before the encoded change in
	// the bytes an author signs. Ours; no other Doorless signature uses it.
	ChangeLabel = "Doorless group change v1"
	// FormatVersion is the version of the state encoding, its field 1.
	FormatVersion = 1
)

// Errors callers branch on. Every error for bad input or a refused change
// wraps one of these (invariant errors wrap ErrInvalidState and, where named,
// ErrNoAdmin or ErrTooManyMembers as well); misuse (a nil or wrong signing
// key, failing randomness) and an Edit callback's own errors do not.
var (
	// ErrMalformed: bytes that are not a canonical encoding.
	ErrMalformed = errors.New("group: malformed encoding")
	// ErrUnsupportedVersion: a state encoded in a format this package does not read.
	ErrUnsupportedVersion = errors.New("group: unsupported format version")
	// ErrInvalidState: a state that breaks an invariant (duplicate members, a
	// bad account id, username or key, a title too long, ...).
	ErrInvalidState = errors.New("group: invalid group state")
	// ErrNoAdmin: a state without an admin (wraps ErrInvalidState too).
	ErrNoAdmin = errors.New("group: no admin left")
	// ErrTooManyMembers: a state with more than MaxMembers members (wraps
	// ErrInvalidState too).
	ErrTooManyMembers = errors.New("group: too many members")
	// ErrWrongGroup: a change for another group than the current state's.
	ErrWrongGroup = errors.New("group: change for another group")
	// ErrStale: a change for a version we already have or passed (a replay,
	// or a change that lost a race).
	ErrStale = errors.New("group: stale or replayed change")
	// ErrGap: a change for a version beyond the next: changes were missed.
	ErrGap = errors.New("group: change from the future (missed changes)")
	// ErrFork: a change for the next version that does not build on the
	// current state, or a different change for the current version.
	ErrFork = errors.New("group: change forks the group history")
	// ErrNotSender: the change's author is not the account that delivered it.
	ErrNotSender = errors.New("group: change not authored by its sender")
	// ErrIdentityMismatch: the sender's identity key is not the author's key
	// as the authoritative state lists it.
	ErrIdentityMismatch = errors.New("group: sender identity key differs from the group's")
	// ErrBadSignature: the signature does not verify under the author's key.
	ErrBadSignature = errors.New("group: bad change signature")
	// ErrNotMember: the author (or an account a change names) is not a member.
	ErrNotMember = errors.New("group: not a member")
	// ErrNotAdmin: a change by a member who is not an admin and that is not
	// that member leaving.
	ErrNotAdmin = errors.New("group: author is not an admin")
	// ErrAlreadyMember: adding an account that is already a member.
	ErrAlreadyMember = errors.New("group: already a member")
	// ErrNoChange: an edit that changes nothing.
	ErrNoChange = errors.New("group: change changes nothing")
)

// ID is a group id, 32 random bytes.
type ID [IDSize]byte

// NewID makes a random group id with randomness from r (crypto/rand when nil).
func NewID(r io.Reader) (ID, error) {
	if r == nil {
		r = rand.Reader
	}
	var id ID
	if _, err := io.ReadFull(r, id[:]); err != nil {
		return ID{}, fmt.Errorf("group: reading randomness: %v", err)
	}
	if id == (ID{}) {
		return ID{}, errors.New("group: randomness gave a zero id")
	}
	return id, nil
}

// String returns the id in hex.
func (id ID) String() string { return fmt.Sprintf("%x", id[:]) }

// Member is one member of a group.
// Admins are the members whose Admin flag is set, so an admin who is not a
// member cannot be expressed.
type Member struct {
	AccountID string         // lower-case hyphenated version-4 UUID
	Username  string         // api.ValidUsername
	Identity  keys.PublicKey // the account's identity key
	Admin     bool
}

// Sender is who delivered a change: the account and identity key of the
// pairwise authenticated session the change arrived in.
type Sender struct {
	AccountID string
	Identity  keys.PublicKey
}

// State is one version of a group. It always satisfies the invariants: 1 to
// MaxMembers members, distinct in account id, username and identity key,
// every one valid; at least one admin; a UTF-8 title of at most MaxTitle
// bytes; a non-zero id; a version of at least 1.
type State struct {
	id      ID
	version uint64
	title   string
	timer   uint32
	members []Member // sorted by AccountID
	enc     []byte   // the canonical encoding
	hash    [32]byte // SHA-256 of enc
}

// ID returns the group id.
func (s *State) ID() ID { return s.id }

// Version returns the state's version, 1 at creation.
func (s *State) Version() uint64 { return s.version }

// Title returns the group's title.
func (s *State) Title() string { return s.title }

// Timer returns the disappearing-message timer in seconds, 0 when off.
func (s *State) Timer() uint32 { return s.timer }

// Len returns the number of members.
func (s *State) Len() int { return len(s.members) }

// Members returns a copy of the members, sorted by account id.
func (s *State) Members() []Member { return slices.Clone(s.members) }

// Admins returns the account ids of the admins, sorted.
func (s *State) Admins() []string {
	var a []string
	for _, m := range s.members {
		if m.Admin {
			a = append(a, m.AccountID)
		}
	}
	return a
}

// Member returns the member with the account id, if there is one.
func (s *State) Member(accountID string) (Member, bool) {
	i, ok := s.find(accountID)
	if !ok {
		return Member{}, false
	}
	return s.members[i], true
}

// IsAdmin reports whether the account is an admin of the group.
func (s *State) IsAdmin(accountID string) bool {
	m, ok := s.Member(accountID)
	return ok && m.Admin
}

// Hash returns the SHA-256 hash of the state's encoding, which the next
// change names as its previous state.
func (s *State) Hash() [32]byte { return s.hash }

// Bytes returns the state's canonical encoding, for storage; ParseState reads it.
func (s *State) Bytes() []byte { return slices.Clone(s.enc) }

// String describes the state without its members.
func (s *State) String() string {
	return fmt.Sprintf("group %x… v%d (%d members)", s.id[:4], s.version, len(s.members))
}

func (s *State) find(accountID string) (int, bool) {
	return slices.BinarySearchFunc(s.members, accountID, func(m Member, id string) int {
		return strings.Compare(m.AccountID, id)
	})
}

// byKey returns the member whose identity key is k.
func (s *State) byKey(k keys.PublicKey) (Member, bool) {
	for _, m := range s.members {
		if m.Identity.Equal(k) {
			return m, true
		}
	}
	return Member{}, false
}

// newState sorts members (a copy is made), checks the invariants and
// computes the encoding and hash.
func newState(id ID, version uint64, title string, timer uint32, members []Member) (*State, error) {
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.AccountID, b.AccountID) })
	s := &State{id: id, version: version, title: title, timer: timer, members: ms}
	if err := s.check(); err != nil {
		return nil, err
	}
	s.enc = s.marshal()
	s.hash = sha256.Sum256(s.enc)
	return s, nil
}

// check verifies the invariants; members must already be sorted.
func (s *State) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidState}, args...)...)
	}
	if s.id == (ID{}) {
		return bad("zero group id")
	}
	if s.version == 0 {
		return bad("version 0")
	}
	if len(s.title) > MaxTitle {
		return bad("title longer than %d bytes", MaxTitle)
	}
	if !utf8.ValidString(s.title) {
		return bad("title is not utf-8")
	}
	if len(s.members) == 0 {
		return fmt.Errorf("%w: %w: no members", ErrInvalidState, ErrNoAdmin)
	}
	if len(s.members) > MaxMembers {
		return fmt.Errorf("%w: %w: %d members", ErrInvalidState, ErrTooManyMembers, len(s.members))
	}
	names := make(map[string]bool, len(s.members))
	ids := make(map[keys.PublicKey]bool, len(s.members))
	admins := 0
	for i, m := range s.members {
		if !validUUID(m.AccountID) {
			return bad("member account id is not a lower-case version-4 uuid")
		}
		if i > 0 && s.members[i-1].AccountID == m.AccountID {
			return bad("duplicate member")
		}
		if !api.ValidUsername(m.Username) {
			return bad("invalid username")
		}
		if names[m.Username] {
			return bad("duplicate username")
		}
		names[m.Username] = true
		if m.Identity == (keys.PublicKey{}) {
			return bad("zero identity key")
		}
		if ids[m.Identity] {
			return bad("duplicate identity key")
		}
		ids[m.Identity] = true
		if m.Admin {
			admins++
		}
	}
	if admins == 0 {
		return fmt.Errorf("%w: %w", ErrInvalidState, ErrNoAdmin)
	}
	return nil
}

// sameContent reports whether two states differ at most in their version.
func sameContent(a, b *State) bool {
	return a.id == b.id && a.title == b.title && a.timer == b.timer &&
		slices.Equal(a.members, b.members)
}

// Diff is what a change changed, for showing it and for deciding to rotate
// sender keys (rotate when Removed or Updated with a new identity key is not
// empty).
type Diff struct {
	Author  string // account id of the change's author
	Version uint64 // the new version
	// Joined is true when there was no current state (Apply with nil): the
	// group is new to us, and Added lists every member.
	Joined   bool
	Added    []Member // members new in this version
	Removed  []Member // members gone in this version, as they were
	Updated  []Member // members whose username or identity key changed, as they are now
	Promoted []string // account ids of remaining members who became admins
	Demoted  []string // account ids of remaining members who stopped being admins
	// TitleChanged and TimerChanged say whether the title or the timer
	// differ from the previous version; the new values are in the state.
	TitleChanged bool
	TimerChanged bool
	// Rekey is true when a member was removed or a member's identity key
	// changed: the caller rotates its sender key before its next message.
	Rekey bool
}

// diff compares two states; old is nil for a group we did not know.
func diff(old, now *State, author string) *Diff {
	d := &Diff{Author: author, Version: now.version}
	if old == nil {
		d.Joined = true
		d.Added = slices.Clone(now.members)
		d.TitleChanged = now.title != ""
		d.TimerChanged = now.timer != 0
		return d
	}
	d.TitleChanged = old.title != now.title
	d.TimerChanged = old.timer != now.timer
	// Both member lists are sorted: merge them.
	i, j := 0, 0
	for i < len(old.members) || j < len(now.members) {
		switch {
		case j == len(now.members) || i < len(old.members) && old.members[i].AccountID < now.members[j].AccountID:
			d.Removed = append(d.Removed, old.members[i])
			d.Rekey = true
			i++
		case i == len(old.members) || now.members[j].AccountID < old.members[i].AccountID:
			d.Added = append(d.Added, now.members[j])
			j++
		default:
			o, n := old.members[i], now.members[j]
			if o.Username != n.Username || !o.Identity.Equal(n.Identity) {
				d.Updated = append(d.Updated, n)
			}
			if !o.Identity.Equal(n.Identity) {
				d.Rekey = true
			}
			if !o.Admin && n.Admin {
				d.Promoted = append(d.Promoted, n.AccountID)
			}
			if o.Admin && !n.Admin {
				d.Demoted = append(d.Demoted, n.AccountID)
			}
			i++
			j++
		}
	}
	return d
}

// validUUID is api.ValidUUID (a lower-case hyphenated version-4 UUID)
// without a regular expression, which took a third of the time of parsing a
// large state. TestValidUUID holds the two equal.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		case 14:
			if c != '4' {
				return false
			}
		case 19:
			if c != '8' && c != '9' && c != 'a' && c != 'b' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}
