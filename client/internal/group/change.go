package group

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/doorless/doorless/protocol/keys"
)

// SignedChange is one change of a group, as it travels: the full new state,
// the hash of the state it applies to, its author, and the author's
// signature. Make one with Create or a State's edit methods, or decode one
// with ParseSignedChange.
type SignedChange struct {
	previous  [32]byte
	author    string
	state     *State
	body      []byte // the encoded change, as signed
	signature []byte
	enc       []byte
}

// GroupID returns the id of the group the change is for.
func (c *SignedChange) GroupID() ID { return c.state.id }

// Version returns the version the change makes.
func (c *SignedChange) Version() uint64 { return c.state.version }

// Previous returns the hash of the state the change applies to (zero for version 1).
func (c *SignedChange) Previous() [32]byte { return c.previous }

// Author returns the account id of the change's author.
func (c *SignedChange) Author() string { return c.author }

// State returns the state the change makes. It is not trusted until Apply
// accepts the change.
func (c *SignedChange) State() *State { return c.state }

// Bytes returns the change's encoding, which Apply and ParseSignedChange read.
func (c *SignedChange) Bytes() []byte { return slices.Clone(c.enc) }

// String describes the change.
func (c *SignedChange) String() string {
	return fmt.Sprintf("change to %v by %s", c.state, c.author)
}

// sign makes the change from prev (nil for creation) to next by author.
func sign(prev, next *State, author string, identity *keys.PrivateKey, rand io.Reader) (*SignedChange, error) {
	c := &SignedChange{author: author, state: next}
	if prev != nil {
		c.previous = prev.hash
	}
	c.body = marshalChange(c.previous, author, next.enc)
	sig, err := identity.Sign(rand, []byte(ChangeLabel), c.body)
	if err != nil {
		return nil, fmt.Errorf("group: signing change: %v", err)
	}
	c.signature = sig
	c.enc = marshalSigned(c.body, sig)
	return c, nil
}

// Create makes version 1 of a new group, with creator as its first admin (the
// creator's Admin flag is set whatever it was) and members as the other
// members (those with Admin set are admins too), and the change announcing
// it, signed with identity, which must be the creator's identity key. The
// caller makes id with NewID. rand supplies the signature's randomness
// (crypto/rand when nil).
func Create(id ID, title string, creator Member, members []Member, timer uint32, identity *keys.PrivateKey, rand io.Reader) (*State, *SignedChange, error) {
	if identity == nil || !creator.Identity.Equal(identity.PublicKey()) {
		return nil, nil, errors.New("group: signing key is not the creator's identity key")
	}
	creator.Admin = true
	all := make([]Member, 0, 1+len(members))
	all = append(append(all, creator), members...)
	st, err := newState(id, 1, title, timer, all)
	if err != nil {
		return nil, nil, err
	}
	c, err := sign(nil, st, creator.AccountID, identity, rand)
	if err != nil {
		return nil, nil, err
	}
	// Judge our own change as every member will.
	st, _, err = apply(nil, c, Sender{AccountID: creator.AccountID, Identity: creator.Identity})
	if err != nil {
		return nil, nil, err
	}
	return st, c, nil
}

// Draft is the editable content of a state, which Edit hands to its callback.
type Draft struct {
	Title   string
	Timer   uint32
	Members []Member // in any order; Edit sorts them
}

// Edit makes the next version of the group from what edit does to a draft
// of s, and the change to it signed with identity, whose owner must be a
// member of s (found by identity key). The change is judged as Apply will
// judge it at every member: an author who is not an admin may only remove
// itself (ErrNotAdmin otherwise). An edit that changes nothing is
// ErrNoChange; an edit that breaks an invariant is ErrInvalidState. s itself
// is not modified; the caller stores the new state once the change is sent.
func (s *State) Edit(identity *keys.PrivateKey, rand io.Reader, edit func(*Draft) error) (*State, *SignedChange, error) {
	if identity == nil {
		return nil, nil, errors.New("group: no signing key")
	}
	author, ok := s.byKey(identity.PublicKey())
	if !ok {
		return nil, nil, fmt.Errorf("%w: the signing key is no member's", ErrNotMember)
	}
	if s.version == math.MaxUint64 {
		return nil, nil, errors.New("group: version space exhausted")
	}
	d := &Draft{Title: s.title, Timer: s.timer, Members: s.Members()}
	if err := edit(d); err != nil {
		return nil, nil, err
	}
	next, err := newState(s.id, s.version+1, d.Title, d.Timer, d.Members)
	if err != nil {
		return nil, nil, err
	}
	if sameContent(s, next) {
		return nil, nil, ErrNoChange
	}
	c, err := sign(s, next, author.AccountID, identity, rand)
	if err != nil {
		return nil, nil, err
	}
	st, _, err := apply(s, c, Sender{AccountID: author.AccountID, Identity: author.Identity})
	if err != nil {
		return nil, nil, err
	}
	return st, c, nil
}

// AddMembers adds members (admins if their Admin flag is set). Adding a
// current member is ErrAlreadyMember.
func (s *State) AddMembers(identity *keys.PrivateKey, rand io.Reader, members ...Member) (*State, *SignedChange, error) {
	return s.Edit(identity, rand, func(d *Draft) error {
		for _, m := range members {
			if _, ok := s.Member(m.AccountID); ok {
				return fmt.Errorf("%w: %s", ErrAlreadyMember, m.AccountID)
			}
		}
		d.Members = append(d.Members, members...)
		return nil
	})
}

// RemoveMembers removes the members with the account ids. Naming an account
// that is not a member is ErrNotMember.
func (s *State) RemoveMembers(identity *keys.PrivateKey, rand io.Reader, accountIDs ...string) (*State, *SignedChange, error) {
	return s.Edit(identity, rand, func(d *Draft) error {
		if err := s.allMembers(accountIDs); err != nil {
			return err
		}
		d.Members = slices.DeleteFunc(d.Members, func(m Member) bool { return slices.Contains(accountIDs, m.AccountID) })
		return nil
	})
}

// Leave removes the signer from the group: the one change a member who is
// not an admin may sign. The last admin cannot leave a group that has other
// members (ErrNoAdmin): it promotes someone first, or uses Edit to promote
// and leave in one change.
func (s *State) Leave(identity *keys.PrivateKey, rand io.Reader) (*State, *SignedChange, error) {
	if identity == nil {
		return nil, nil, errors.New("group: no signing key")
	}
	return s.Edit(identity, rand, func(d *Draft) error {
		me := identity.PublicKey()
		d.Members = slices.DeleteFunc(d.Members, func(m Member) bool { return m.Identity.Equal(me) })
		return nil
	})
}

// SetTitle sets the group's title (at most MaxTitle bytes of UTF-8).
func (s *State) SetTitle(identity *keys.PrivateKey, rand io.Reader, title string) (*State, *SignedChange, error) {
	return s.Edit(identity, rand, func(d *Draft) error {
		d.Title = title
		return nil
	})
}

// SetTimer sets the disappearing-message timer, in seconds (0 turns it off).
func (s *State) SetTimer(identity *keys.PrivateKey, rand io.Reader, seconds uint32) (*State, *SignedChange, error) {
	return s.Edit(identity, rand, func(d *Draft) error {
		d.Timer = seconds
		return nil
	})
}

// SetAdmins makes exactly the members with the account ids admins.
func (s *State) SetAdmins(identity *keys.PrivateKey, rand io.Reader, accountIDs ...string) (*State, *SignedChange, error) {
	return s.Edit(identity, rand, func(d *Draft) error {
		if err := s.allMembers(accountIDs); err != nil {
			return err
		}
		for i := range d.Members {
			d.Members[i].Admin = slices.Contains(accountIDs, d.Members[i].AccountID)
		}
		return nil
	})
}

// Promote makes the members with the account ids admins.
func (s *State) Promote(identity *keys.PrivateKey, rand io.Reader, accountIDs ...string) (*State, *SignedChange, error) {
	return s.setAdmin(identity, rand, accountIDs, true)
}

// Demote makes the members with the account ids not admins.
func (s *State) Demote(identity *keys.PrivateKey, rand io.Reader, accountIDs ...string) (*State, *SignedChange, error) {
	return s.setAdmin(identity, rand, accountIDs, false)
}

func (s *State) setAdmin(identity *keys.PrivateKey, rand io.Reader, accountIDs []string, admin bool) (*State, *SignedChange, error) {
	return s.Edit(identity, rand, func(d *Draft) error {
		if err := s.allMembers(accountIDs); err != nil {
			return err
		}
		for i := range d.Members {
			if slices.Contains(accountIDs, d.Members[i].AccountID) {
				d.Members[i].Admin = admin
			}
		}
		return nil
	})
}

func (s *State) allMembers(accountIDs []string) error {
	for _, id := range accountIDs {
		if _, ok := s.Member(id); !ok {
			return fmt.Errorf("%w: %s", ErrNotMember, id)
		}
	}
	return nil
}

// Apply judges a signed change that sender delivered over a pairwise
// authenticated session, and returns the new state and what changed. On any
// error nothing is returned and the caller keeps current.
//
// With current, the state the caller holds for the group, the change must be
// for the same group (ErrWrongGroup), make version current+1 (ErrStale for a
// version at or below the current one — ErrFork instead for a different
// change to the current version —, ErrGap beyond current+1), name current's
// hash as its previous state (ErrFork), be authored by the sender
// (ErrNotSender), by a member of current (ErrNotMember) whose identity key
// there is the sender's (ErrIdentityMismatch) and under which the signature
// verifies (ErrBadSignature), and that member must be an admin of current,
// or the change must only remove the author from current, changing nothing
// else (ErrNotAdmin).
//
// With current nil (a group the caller does not know: it is being created,
// or the caller has just been added), there is no history to check, and the
// change is taken on the word of its author: it must be authored by the
// sender, who must be an admin in the new state with the sender's identity
// key, and the signature must verify under that key. A joiner therefore
// trusts the admin who added it for the group's past; the server cannot
// forge such a change, since the pairwise session authenticates the sender.
// The caller checks that it is itself a member of the new state, and passes
// nil only for a group id it holds no state for.
//
// ErrStale, ErrGap and ErrFork are decided before the change is
// authenticated: they are reasons to drop a change, not evidence against
// anyone. Apply never decides what the caller does with a state that no
// longer lists the caller (it was removed): the Diff says so.
func Apply(current *State, signed []byte, sender Sender) (*State, *Diff, error) {
	c, err := ParseSignedChange(signed)
	if err != nil {
		return nil, nil, err
	}
	return apply(current, c, sender)
}

func apply(current *State, c *SignedChange, sender Sender) (*State, *Diff, error) {
	next := c.state
	authority := next // the state whose member list vouches for the author
	if current != nil {
		if next.id != current.id {
			return nil, nil, ErrWrongGroup
		}
		switch {
		case next.version == current.version && next.hash != current.hash:
			return nil, nil, fmt.Errorf("%w: another change made version %d", ErrFork, next.version)
		case next.version <= current.version:
			return nil, nil, fmt.Errorf("%w: version %d, current %d", ErrStale, next.version, current.version)
		case next.version-current.version > 1:
			return nil, nil, fmt.Errorf("%w: version %d, current %d", ErrGap, next.version, current.version)
		}
		if c.previous != current.hash {
			return nil, nil, fmt.Errorf("%w: change does not build on version %d", ErrFork, current.version)
		}
		authority = current
	}
	if c.author != sender.AccountID {
		return nil, nil, ErrNotSender
	}
	author, ok := authority.Member(c.author)
	if !ok {
		return nil, nil, fmt.Errorf("%w: the author", ErrNotMember)
	}
	if !author.Identity.Equal(sender.Identity) {
		return nil, nil, ErrIdentityMismatch
	}
	if !author.Identity.IsCanonical() || !author.Identity.Verify(c.signature, []byte(ChangeLabel), c.body) {
		return nil, nil, ErrBadSignature
	}
	if !author.Admin && (current == nil || !onlyRemoves(current, next, c.author)) {
		return nil, nil, ErrNotAdmin
	}
	return next, diff(current, next, c.author), nil
}

// onlyRemoves reports whether next is cur without the member accountID and
// otherwise the same.
func onlyRemoves(cur, next *State, accountID string) bool {
	i, ok := cur.find(accountID)
	if !ok || cur.title != next.title || cur.timer != next.timer || len(next.members) != len(cur.members)-1 {
		return false
	}
	return slices.Equal(cur.members[:i], next.members[:i]) && slices.Equal(cur.members[i+1:], next.members[i:])
}
