package group

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/protocol/keys"
)

// person is a test account: a member record and its identity key.
type person struct {
	m   Member
	key *keys.PrivateKey
}

func newPerson(t testing.TB, name string) person {
	t.Helper()
	k, err := keys.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return person{m: Member{AccountID: api.NewUUID(), Username: name, Identity: k.PublicKey()}, key: k}
}

func (p person) sender() Sender { return Sender{AccountID: p.m.AccountID, Identity: p.m.Identity} }

func newID(t testing.TB) ID {
	t.Helper()
	id, err := NewID(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// fixture: alice (admin) created a group with bob and carol; bob holds it too.
type fixture struct {
	alice, bob, carol, dave person
	st                      *State // alice's state, version 1
	create                  *SignedChange
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{alice: newPerson(t, "alice"), bob: newPerson(t, "bob"), carol: newPerson(t, "carol"), dave: newPerson(t, "dave")}
	var err error
	f.st, f.create, err = Create(newID(t), "Book club", f.alice.m, []Member{f.bob.m, f.carol.m}, 0, f.alice.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustApply(t *testing.T, cur *State, c *SignedChange, from person) (*State, *Diff) {
	t.Helper()
	st, d, err := Apply(cur, c.Bytes(), from.sender())
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return st, d
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

// signRaw signs arbitrary state bytes as a change, bypassing every check of
// the builders, as a hostile or buggy client could.
func signRaw(t *testing.T, previous [32]byte, author string, state []byte, key *keys.PrivateKey) []byte {
	t.Helper()
	body := marshalChange(previous, author, state)
	sig, err := key.Sign(nil, []byte(ChangeLabel), body)
	if err != nil {
		t.Fatal(err)
	}
	return marshalSigned(body, sig)
}

func TestCreateAndJoin(t *testing.T) {
	f := newFixture(t)
	if f.st.Version() != 1 || f.st.Len() != 3 || f.st.Title() != "Book club" || f.st.Timer() != 0 {
		t.Fatalf("created %v %q", f.st, f.st.Title())
	}
	if got := f.st.Admins(); !slices.Equal(got, []string{f.alice.m.AccountID}) {
		t.Fatalf("admins %v", got)
	}
	if f.create.Previous() != [32]byte{} || f.create.Author() != f.alice.m.AccountID || f.create.GroupID() != f.st.ID() {
		t.Fatal("version 1 change fields")
	}
	st, d := mustApply(t, nil, f.create, f.alice)
	if st.Hash() != f.st.Hash() {
		t.Fatal("joiner's state differs from the creator's")
	}
	if !d.Joined || len(d.Added) != 3 || !d.TitleChanged || d.TimerChanged || d.Author != f.alice.m.AccountID || d.Version != 1 {
		t.Fatalf("diff %+v", d)
	}
	again, err := ParseState(st.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), st.Bytes()) || again.Hash() != st.Hash() || !slices.Equal(again.Members(), st.Members()) {
		t.Fatal("state does not round-trip")
	}
	// The creator's Member need not say Admin; members may.
	d2 := newPerson(t, "dora")
	d2.m.Admin = true
	st2, _, err := Create(newID(t), "", f.alice.m, []Member{d2.m}, 60, f.alice.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !st2.IsAdmin(f.alice.m.AccountID) || !st2.IsAdmin(d2.m.AccountID) || st2.Timer() != 60 {
		t.Fatal("admins at creation")
	}
	if _, _, err := Create(newID(t), "", f.alice.m, nil, 0, f.bob.key, nil); err == nil {
		t.Fatal("Create signed with another's key")
	}
}

func TestRoundTrips(t *testing.T) {
	f := newFixture(t)
	alice := f.st
	bob, _ := mustApply(t, nil, f.create, f.alice)

	step := func(name string, st *State, c *SignedChange, err error, check func(*Diff)) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var d *Diff
		bob, d = mustApply(t, bob, c, f.alice)
		if bob.Hash() != st.Hash() || bob.Version() != alice.Version()+1 {
			t.Fatalf("%s: bob's state differs from alice's", name)
		}
		if again, err := ParseState(st.Bytes()); err != nil || again.Hash() != st.Hash() {
			t.Fatalf("%s: state does not round-trip: %v", name, err)
		}
		if again, err := ParseSignedChange(c.Bytes()); err != nil || !bytes.Equal(again.Bytes(), c.Bytes()) {
			t.Fatalf("%s: change does not round-trip: %v", name, err)
		}
		check(d)
		alice = st
	}

	st, c, err := alice.AddMembers(f.alice.key, nil, f.dave.m)
	step("add", st, c, err, func(d *Diff) {
		if len(d.Added) != 1 || d.Added[0] != f.dave.m || len(d.Removed) != 0 || d.Rekey || d.TitleChanged {
			t.Fatalf("add diff %+v", d)
		}
	})
	st, c, err = alice.RemoveMembers(f.alice.key, nil, f.carol.m.AccountID)
	step("remove", st, c, err, func(d *Diff) {
		if len(d.Removed) != 1 || d.Removed[0] != f.carol.m || len(d.Added) != 0 || !d.Rekey {
			t.Fatalf("remove diff %+v", d)
		}
		if _, ok := bob.Member(f.carol.m.AccountID); ok {
			t.Fatal("carol still a member")
		}
	})
	st, c, err = alice.SetTitle(f.alice.key, nil, "Böökclüb ✓")
	step("title", st, c, err, func(d *Diff) {
		if !d.TitleChanged || d.TimerChanged || bob.Title() != "Böökclüb ✓" {
			t.Fatalf("title diff %+v", d)
		}
	})
	st, c, err = alice.SetTimer(f.alice.key, nil, 86400)
	step("timer", st, c, err, func(d *Diff) {
		if !d.TimerChanged || d.TitleChanged || bob.Timer() != 86400 {
			t.Fatalf("timer diff %+v", d)
		}
	})
	st, c, err = alice.Promote(f.alice.key, nil, f.bob.m.AccountID)
	step("promote", st, c, err, func(d *Diff) {
		if !slices.Equal(d.Promoted, []string{f.bob.m.AccountID}) || len(d.Demoted) != 0 || !bob.IsAdmin(f.bob.m.AccountID) {
			t.Fatalf("promote diff %+v", d)
		}
	})
	st, c, err = alice.SetAdmins(f.alice.key, nil, f.dave.m.AccountID)
	step("set admins", st, c, err, func(d *Diff) {
		if !slices.Equal(d.Promoted, []string{f.dave.m.AccountID}) || len(d.Demoted) != 2 {
			t.Fatalf("set admins diff %+v", d)
		}
		if got := bob.Admins(); !slices.Equal(got, []string{f.dave.m.AccountID}) {
			t.Fatalf("admins %v", got)
		}
	})
	// alice is no longer an admin: her builders refuse, as Apply would.
	if _, _, err := alice.SetTitle(f.alice.key, nil, "mine"); !errors.Is(err, ErrNotAdmin) {
		t.Fatalf("former admin's edit: %v", err)
	}
	// dave (now the only admin) makes the next change, which bob accepts from him.
	_, _, err = alice.Demote(f.dave.key, nil, f.dave.m.AccountID)
	wantErr(t, err, ErrNoAdmin)
	st, c, err = alice.Promote(f.dave.key, nil, f.alice.m.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	bob, _ = mustApply(t, bob, c, f.dave)
	if bob.Hash() != st.Hash() || bob.Version() != 8 {
		t.Fatalf("bob at %v", bob)
	}
	if _, _, err := st.SetTitle(f.alice.key, nil, st.Title()); !errors.Is(err, ErrNoChange) {
		t.Fatalf("no-op edit: %v", err)
	}
	if _, _, err := st.AddMembers(f.alice.key, nil, f.bob.m); !errors.Is(err, ErrAlreadyMember) {
		t.Fatalf("adding a member twice: %v", err)
	}
	if _, _, err := st.RemoveMembers(f.alice.key, nil, f.carol.m.AccountID); !errors.Is(err, ErrNotMember) {
		t.Fatalf("removing a non-member: %v", err)
	}
}

func TestUpdatedMember(t *testing.T) {
	f := newFixture(t)
	bob, _ := mustApply(t, nil, f.create, f.alice)
	newKey := newPerson(t, "x").key
	st, c, err := f.st.Edit(f.alice.key, nil, func(d *Draft) error {
		for i := range d.Members {
			if d.Members[i].AccountID == f.carol.m.AccountID {
				d.Members[i].Identity = newKey.PublicKey()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, d := mustApply(t, bob, c, f.alice)
	if len(d.Updated) != 1 || d.Updated[0].Identity != newKey.PublicKey() || !d.Rekey || len(d.Added)+len(d.Removed) != 0 {
		t.Fatalf("diff %+v", d)
	}
	if m, _ := st.Member(f.carol.m.AccountID); m.Identity != newKey.PublicKey() {
		t.Fatal("key not updated")
	}
}

func TestEditLeavesStateAlone(t *testing.T) {
	f := newFixture(t)
	before := f.st.Bytes()
	_, _, err := f.st.Edit(f.alice.key, nil, func(d *Draft) error {
		d.Members[0].Username = "zed"
		d.Members = d.Members[:1]
		d.Title = "x"
		return errors.New("changed my mind")
	})
	if err == nil || err.Error() != "changed my mind" {
		t.Fatalf("edit error %v", err)
	}
	if _, _, err := f.st.SetTitle(f.alice.key, nil, "new"); err != nil {
		t.Fatal(err)
	}
	ms := f.st.Members()
	ms[0].Username = "mutated"
	if !bytes.Equal(f.st.Bytes(), before) || f.st.Title() != "Book club" || f.st.Members()[0].Username == "mutated" {
		t.Fatal("state modified")
	}
}

func TestNonAdminRejected(t *testing.T) {
	f := newFixture(t)
	bob, _ := mustApply(t, nil, f.create, f.alice)
	if _, _, err := bob.SetTitle(f.bob.key, nil, "bob's"); !errors.Is(err, ErrNotAdmin) {
		t.Fatalf("builder: %v", err)
	}
	if _, _, err := bob.AddMembers(f.bob.key, nil, f.dave.m); !errors.Is(err, ErrNotAdmin) {
		t.Fatalf("builder: %v", err)
	}
	// A client that skips the check still gets refused by every member.
	next, err := newState(bob.ID(), 2, bob.Title(), 0, append(bob.Members(), f.dave.m))
	if err != nil {
		t.Fatal(err)
	}
	raw := signRaw(t, bob.Hash(), f.bob.m.AccountID, next.enc, f.bob.key)
	_, _, err = Apply(f.st, raw, f.bob.sender())
	wantErr(t, err, ErrNotAdmin)
	// Removing someone else is not leaving.
	others := slices.DeleteFunc(bob.Members(), func(m Member) bool { return m.AccountID == f.carol.m.AccountID })
	next, _ = newState(bob.ID(), 2, bob.Title(), 0, others)
	_, _, err = Apply(f.st, signRaw(t, bob.Hash(), f.bob.m.AccountID, next.enc, f.bob.key), f.bob.sender())
	wantErr(t, err, ErrNotAdmin)
}

func TestLeave(t *testing.T) {
	f := newFixture(t)
	carol, _ := mustApply(t, nil, f.create, f.alice)
	st, c, err := f.st.Leave(f.bob.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Member(f.bob.m.AccountID); ok || st.Len() != 2 {
		t.Fatal("bob still in the state he made")
	}
	got, d := mustApply(t, carol, c, f.bob)
	if got.Hash() != st.Hash() || len(d.Removed) != 1 || d.Removed[0].AccountID != f.bob.m.AccountID || !d.Rekey || d.Author != f.bob.m.AccountID {
		t.Fatalf("diff %+v", d)
	}
	// Leaving while changing anything else is not leaving.
	for name, edit := range map[string]func(*State) *State{
		"and title": func(s *State) *State { x, _ := newState(s.id, 2, "bye", s.timer, s.members); return x },
		"and timer": func(s *State) *State { x, _ := newState(s.id, 2, s.title, 5, s.members); return x },
		"and promotion": func(s *State) *State {
			ms := s.Members()
			for i := range ms {
				ms[i].Admin = true
			}
			x, _ := newState(s.id, 2, s.title, s.timer, ms)
			return x
		},
	} {
		next := edit(st)
		raw := signRaw(t, carol.Hash(), f.bob.m.AccountID, next.enc, f.bob.key)
		if _, _, err := Apply(carol, raw, f.bob.sender()); !errors.Is(err, ErrNotAdmin) {
			t.Errorf("leave %s: %v", name, err)
		}
	}
	// Once gone, bob cannot leave again or change anything.
	if _, _, err := st.Leave(f.bob.key, nil); !errors.Is(err, ErrNotMember) {
		t.Fatalf("leaving twice: %v", err)
	}
	// The only admin cannot leave others without an admin, but may hand over
	// and leave in one change.
	if _, _, err := st.Leave(f.alice.key, nil); !errors.Is(err, ErrNoAdmin) {
		t.Fatalf("last admin leaving: %v", err)
	}
	st2, c2, err := st.Edit(f.alice.key, nil, func(d *Draft) error {
		d.Members = slices.DeleteFunc(d.Members, func(m Member) bool { return m.AccountID == f.alice.m.AccountID })
		d.Members[0].Admin = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = mustApply(t, got, c2, f.alice)
	if got.Hash() != st2.Hash() || !got.IsAdmin(f.carol.m.AccountID) || got.Len() != 1 {
		t.Fatal("hand-over")
	}
	// A leave is never how a group is joined.
	if _, _, err := Apply(nil, c.Bytes(), f.bob.sender()); !errors.Is(err, ErrNotMember) {
		t.Fatalf("leave applied to an unknown group: %v", err)
	}
}

func TestForgedSignature(t *testing.T) {
	f := newFixture(t)
	bob, _ := mustApply(t, nil, f.create, f.alice)
	_, c, err := f.st.AddMembers(f.alice.key, nil, f.dave.m)
	if err != nil {
		t.Fatal(err)
	}
	raw := c.Bytes()
	// Flip a bit of the signature (the last bytes of the encoding).
	bad := slices.Clone(raw)
	bad[len(bad)-5] ^= 1
	_, _, err = Apply(bob, bad, f.alice.sender())
	wantErr(t, err, ErrBadSignature)
	_, _, err = Apply(nil, bad, f.alice.sender())
	wantErr(t, err, ErrBadSignature)
	// Signed by someone else in alice's name.
	next := c.State()
	forged := signRaw(t, bob.Hash(), f.alice.m.AccountID, next.enc, f.carol.key)
	_, _, err = Apply(bob, forged, f.alice.sender())
	wantErr(t, err, ErrBadSignature)
	// Delivered by someone who is not the author.
	_, _, err = Apply(bob, raw, f.carol.sender())
	wantErr(t, err, ErrNotSender)
	// Delivered in alice's name over a session with another identity key.
	_, _, err = Apply(bob, raw, Sender{AccountID: f.alice.m.AccountID, Identity: f.carol.m.Identity})
	wantErr(t, err, ErrIdentityMismatch)
	// A signature over the change without the label does not verify.
	pc, _ := ParseSignedChange(raw)
	sig, _ := f.alice.key.Sign(nil, pc.body)
	_, _, err = Apply(bob, marshalSigned(pc.body, sig), f.alice.sender())
	wantErr(t, err, ErrBadSignature)
	// None of this changed bob's view: the genuine change still applies.
	mustApply(t, bob, c, f.alice)
}

func TestRemovedAdminRejected(t *testing.T) {
	f := newFixture(t)
	bobSt, _ := mustApply(t, nil, f.create, f.alice)
	st, c, err := f.st.Promote(f.alice.key, nil, f.bob.m.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	carol, _ := mustApply(t, bobSt, c, f.alice)
	// bob removes alice.
	st, c, err = st.RemoveMembers(f.bob.key, nil, f.alice.m.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	carol, _ = mustApply(t, carol, c, f.bob)
	// alice, removed, signs the next version on the state she was removed by.
	ms := append(st.Members(), f.dave.m)
	for i := range ms {
		ms[i].Admin = true
	}
	next, err := newState(st.ID(), st.Version()+1, "alice's now", 0, ms)
	if err != nil {
		t.Fatal(err)
	}
	raw := signRaw(t, st.Hash(), f.alice.m.AccountID, next.enc, f.alice.key)
	_, _, err = Apply(carol, raw, f.alice.sender())
	wantErr(t, err, ErrNotMember)
	// Her builders refuse too.
	if _, _, err := st.SetTitle(f.alice.key, nil, "x"); !errors.Is(err, ErrNotMember) {
		t.Fatalf("removed admin's builder: %v", err)
	}
}

func TestReplay(t *testing.T) {
	f := newFixture(t)
	bob, _ := mustApply(t, nil, f.create, f.alice)
	st2, c2, err := f.st.SetTitle(f.alice.key, nil, "two")
	if err != nil {
		t.Fatal(err)
	}
	_, c3, err := st2.SetTimer(f.alice.key, nil, 30)
	if err != nil {
		t.Fatal(err)
	}
	bob, _ = mustApply(t, bob, c2, f.alice)
	_, _, err = Apply(bob, c2.Bytes(), f.alice.sender())
	wantErr(t, err, ErrStale)
	_, _, err = Apply(bob, f.create.Bytes(), f.alice.sender())
	wantErr(t, err, ErrStale)
	bob, _ = mustApply(t, bob, c3, f.alice)
	for _, c := range []*SignedChange{f.create, c2, c3} {
		_, _, err = Apply(bob, c.Bytes(), f.alice.sender())
		wantErr(t, err, ErrStale)
	}
	if bob.Version() != 3 {
		t.Fatal("replays moved the state")
	}
}

func TestGap(t *testing.T) {
	f := newFixture(t)
	bob, _ := mustApply(t, nil, f.create, f.alice)
	st2, _, _ := f.st.SetTitle(f.alice.key, nil, "two")
	_, c3, err := st2.SetTitle(f.alice.key, nil, "three")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Apply(bob, c3.Bytes(), f.alice.sender())
	wantErr(t, err, ErrGap)
	// A newcomer, on the other hand, takes version 3 on alice's word.
	if st, _, err := Apply(nil, c3.Bytes(), f.alice.sender()); err != nil || st.Version() != 3 {
		t.Fatalf("joining at version 3: %v", err)
	}
}

func TestFork(t *testing.T) {
	f := newFixture(t)
	st, c, err := f.st.Promote(f.alice.key, nil, f.bob.m.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	carol, _ := mustApply(t, nil, c, f.alice)
	// alice and bob both make version 3 from version 2.
	a3, ca, err := st.SetTitle(f.alice.key, nil, "alice's")
	if err != nil {
		t.Fatal(err)
	}
	_, cb, err := st.SetTitle(f.bob.key, nil, "bob's")
	if err != nil {
		t.Fatal(err)
	}
	carol, _ = mustApply(t, carol, ca, f.alice)
	_, _, err = Apply(carol, cb.Bytes(), f.bob.sender())
	wantErr(t, err, ErrFork)
	// A version 4 built on bob's version 3 does not apply on alice's.
	b3, _, _ := Apply(st, cb.Bytes(), f.bob.sender())
	_, cb4, err := b3.SetTimer(f.bob.key, nil, 9)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Apply(carol, cb4.Bytes(), f.bob.sender())
	wantErr(t, err, ErrFork)
	if carol.Hash() != a3.Hash() || carol.Title() != "alice's" {
		t.Fatal("fork moved the state")
	}
}

func TestOutsider(t *testing.T) {
	f := newFixture(t)
	bob, _ := mustApply(t, nil, f.create, f.alice)
	mallory := newPerson(t, "mallory")
	mallory.m.Admin = true
	next, err := newState(bob.ID(), 2, "pwned", 0, append(bob.Members(), mallory.m))
	if err != nil {
		t.Fatal(err)
	}
	raw := signRaw(t, bob.Hash(), mallory.m.AccountID, next.enc, mallory.key)
	_, _, err = Apply(bob, raw, mallory.sender())
	wantErr(t, err, ErrNotMember)
	// Claiming to be alice, over mallory's own session, fails too.
	raw = signRaw(t, bob.Hash(), f.alice.m.AccountID, next.enc, mallory.key)
	_, _, err = Apply(bob, raw, mallory.sender())
	wantErr(t, err, ErrNotSender)
	_, _, err = Apply(bob, raw, Sender{AccountID: f.alice.m.AccountID, Identity: mallory.m.Identity})
	wantErr(t, err, ErrIdentityMismatch)
	// To someone without the group, a change whose author is not an admin
	// of the state it makes is refused.
	notAdmin, _ := newState(bob.ID(), 2, "x", 0, append(bob.Members(), Member{AccountID: mallory.m.AccountID, Username: "mallory", Identity: mallory.m.Identity}))
	raw = signRaw(t, bob.Hash(), mallory.m.AccountID, notAdmin.enc, mallory.key)
	_, _, err = Apply(nil, raw, mallory.sender())
	wantErr(t, err, ErrNotAdmin)
	raw = signRaw(t, bob.Hash(), f.dave.m.AccountID, notAdmin.enc, f.dave.key)
	_, _, err = Apply(nil, raw, f.dave.sender())
	wantErr(t, err, ErrNotMember)
}

func TestWrongGroup(t *testing.T) {
	f := newFixture(t)
	other, oc, err := Create(newID(t), "other", f.alice.m, []Member{f.bob.m}, 0, f.alice.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, c2, _ := other.SetTitle(f.alice.key, nil, "two")
	bob, _ := mustApply(t, nil, f.create, f.alice)
	for _, c := range []*SignedChange{oc, c2} {
		_, _, err = Apply(bob, c.Bytes(), f.alice.sender())
		wantErr(t, err, ErrWrongGroup)
	}
}

func TestInvariants(t *testing.T) {
	f := newFixture(t)
	a := f.alice
	upper := f.bob.m
	upper.AccountID = strings.ToUpper(upper.AccountID)
	v1 := f.bob.m
	v1.AccountID = "123e4567-e89b-12d3-a456-426614174000" // version 1
	badName := f.bob.m
	badName.Username = "Bob!"
	sameName := f.bob.m
	sameName.Username = "alice"
	sameKey := f.bob.m
	sameKey.Identity = a.m.Identity
	zeroKey := f.bob.m
	zeroKey.Identity = keys.PublicKey{}
	for name, tc := range map[string]struct {
		id      ID
		title   string
		members []Member
		want    error
	}{
		"duplicate member":   {members: []Member{f.bob.m, f.bob.m}, want: ErrInvalidState},
		"creator twice":      {members: []Member{a.m}, want: ErrInvalidState},
		"upper-case uuid":    {members: []Member{upper}, want: ErrInvalidState},
		"version-1 uuid":     {members: []Member{v1}, want: ErrInvalidState},
		"bad username":       {members: []Member{badName}, want: ErrInvalidState},
		"duplicate username": {members: []Member{sameName}, want: ErrInvalidState},
		"duplicate key":      {members: []Member{sameKey}, want: ErrInvalidState},
		"zero key":           {members: []Member{zeroKey}, want: ErrInvalidState},
		"title too long":     {title: strings.Repeat("é", MaxTitle/2+1), want: ErrInvalidState},
		"title not utf-8":    {title: "\xff", want: ErrInvalidState},
		"zero id":            {id: ID{}, want: ErrInvalidState},
		"too many":           {members: manyMembers(t, MaxMembers), want: ErrTooManyMembers},
	} {
		id := tc.id
		if name != "zero id" {
			id = newID(t)
		}
		if _, _, err := Create(id, tc.title, a.m, tc.members, 0, a.key, nil); !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidState) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := Create(newID(t), strings.Repeat("é", MaxTitle/2), a.m, manyMembers(t, MaxMembers-1), 0, a.key, nil); err != nil {
		t.Fatalf("largest group: %v", err)
	}
	if _, _, err := f.st.SetAdmins(a.key, nil); !errors.Is(err, ErrNoAdmin) {
		t.Fatalf("no admins: %v", err)
	}
	if _, _, err := f.st.RemoveMembers(a.key, nil, a.m.AccountID, f.bob.m.AccountID, f.carol.m.AccountID); !errors.Is(err, ErrNoAdmin) {
		t.Fatalf("no members: %v", err)
	}

	// States that break invariants, signed by the admin: refused by Apply.
	bob, _ := mustApply(t, nil, f.create, a)
	raw := func(s *State) []byte { return signRaw(t, bob.Hash(), a.m.AccountID, s.marshal(), a.key) }
	bad := func(edit func(s *State)) *State {
		s := *bob
		s.members = bob.Members()
		s.version = 2
		edit(&s)
		return &s
	}
	for name, tc := range map[string]struct {
		s    *State
		want error
	}{
		"duplicate member": {bad(func(s *State) { s.members = append(s.members, s.members[2]) }), ErrInvalidState},
		"no admin": {bad(func(s *State) {
			for i := range s.members {
				s.members[i].Admin = false
			}
		}), ErrNoAdmin},
		"title too long": {bad(func(s *State) { s.title = strings.Repeat("x", MaxTitle+1) }), ErrInvalidState},
		"too many":       {bad(func(s *State) { s.members = sortedMembers(append(s.members, manyMembers(t, MaxMembers-2)...)) }), ErrTooManyMembers},
		"zero key":       {bad(func(s *State) { s.members[1].Identity = keys.PublicKey{} }), ErrInvalidState},
		"bad username":   {bad(func(s *State) { s.members[1].Username = "x" }), ErrInvalidState},
	} {
		if _, _, err := Apply(bob, raw(tc.s), a.sender()); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if b, err := newState(bob.ID(), 2, "", 0, append(bob.Members(), manyMembers(t, MaxMembers-3)...)); err != nil {
		t.Fatal(err)
	} else if _, _, err := Apply(bob, raw(b), a.sender()); err != nil {
		t.Fatalf("exactly MaxMembers: %v", err)
	}
}

func manyMembers(t testing.TB, n int) []Member {
	t.Helper()
	ms := make([]Member, n)
	for i := range ms {
		k, err := keys.GeneratePrivateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = Member{AccountID: api.NewUUID(), Username: fmt.Sprintf("user_%d", i), Identity: k.PublicKey()}
	}
	return ms
}

func sortedMembers(ms []Member) []Member {
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.AccountID, b.AccountID) })
	return ms
}

func TestMaxStateSize(t *testing.T) {
	ms := make([]Member, MaxMembers)
	for i := range ms {
		var k keys.PublicKey
		k[0], k[1], k[2] = byte(i), byte(i>>8), 1
		name := fmt.Sprintf("u%031d", i)
		ms[i] = Member{AccountID: api.NewUUID(), Username: name, Identity: k, Admin: true}
	}
	s := &State{id: ID{1}, version: 1<<64 - 1, title: strings.Repeat("t", MaxTitle), timer: 1<<32 - 1, members: sortedMembers(ms)}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	enc := s.marshal()
	if len(enc) != 91184 || len(enc) > MaxStateSize {
		t.Fatalf("largest state is %d bytes (MaxStateSize %d)", len(enc), MaxStateSize)
	}
	if _, err := ParseState(enc); err != nil {
		t.Fatal(err)
	}
	c := marshalSigned(marshalChange([32]byte{1}, ms[0].AccountID, enc), make([]byte, keys.SignatureSize))
	if len(c) > MaxChangeSize {
		t.Fatalf("largest change is %d bytes", len(c))
	}
	if _, err := ParseSignedChange(c); err != nil {
		t.Fatal(err)
	}
}

func TestParseRefuses(t *testing.T) {
	f := newFixture(t)
	good := f.st.Bytes()
	tag := func(b []byte, num protowire.Number, typ protowire.Type) []byte {
		return protowire.AppendTag(b, num, typ)
	}
	vint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(tag(nil, num, protowire.VarintType), v)
	}
	byts := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(tag(nil, num, protowire.BytesType), v)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	d, err := newDecoder(good, stateMember)
	if err != nil {
		t.Fatal(err)
	}
	format, id, version := vint(1, 1), byts(2, d.fs[1].b), vint(3, 1)
	var members [][]byte
	for _, fl := range d.fs[4:] {
		members = append(members, byts(6, fl.b))
	}
	mem := cat(members...)
	if !bytes.Equal(cat(format, id, version, byts(4, []byte("Book club")), mem), good) {
		t.Fatal("test's encoding differs from the package's")
	}
	m0, _ := newDecoder(d.fs[4].b, 0)
	acct, name, key := byts(1, m0.fs[0].b), byts(2, m0.fs[1].b), byts(3, m0.fs[2].b)
	memberWith := func(parts ...[]byte) []byte {
		return cat(format, id, version, byts(6, cat(parts...)), mem[len(members[0]):])
	}
	nonMinimal := append(tag(nil, 3, protowire.VarintType), 0x81, 0x00)

	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":                {nil, ErrMalformed},
		"no format":            {cat(id, version, mem), ErrMalformed},
		"format 2":             {cat(vint(1, 2), id, version, mem), ErrUnsupportedVersion},
		"no id":                {cat(format, version, mem), ErrMalformed},
		"short id":             {cat(format, byts(2, make([]byte, 31)), version, mem), ErrMalformed},
		"no version":           {cat(format, id, mem), ErrMalformed},
		"version 0":            {cat(format, id, vint(3, 0), mem), ErrInvalidState},
		"non-minimal version":  {cat(format, id, nonMinimal, mem), ErrMalformed},
		"empty title":          {cat(format, id, version, byts(4, nil), mem), ErrMalformed},
		"timer 0":              {cat(format, id, version, vint(5, 0), mem), ErrMalformed},
		"timer too big":        {cat(format, id, version, vint(5, 1<<32), mem), ErrMalformed},
		"out of order":         {cat(format, version, id, mem), ErrMalformed},
		"repeated title":       {cat(format, id, version, byts(4, []byte("a")), byts(4, []byte("b")), mem), ErrMalformed},
		"unknown field":        {cat(good, vint(7, 1)), ErrMalformed},
		"unknown field early":  {cat(format, id, version, vint(4, 1), mem), ErrMalformed},
		"members reversed":     {cat(format, id, version, members[2], members[1], members[0]), ErrMalformed},
		"duplicate member":     {cat(format, id, version, members[0], members[0], members[1]), ErrInvalidState},
		"no members":           {cat(format, id, version), ErrNoAdmin},
		"truncated":            {good[:len(good)-1], ErrMalformed},
		"fixed64 field":        {cat(good, protowire.AppendFixed64(tag(nil, 8, protowire.Fixed64Type), 0)), ErrMalformed},
		"admin 2":              {memberWith(acct, name, key, vint(4, 2)), ErrMalformed},
		"admin 0":              {memberWith(acct, name, key, vint(4, 0)), ErrMalformed},
		"member without name":  {memberWith(acct, key), ErrMalformed},
		"member unknown field": {memberWith(acct, name, key, vint(5, 1)), ErrMalformed},
		"key without type":     {memberWith(acct, name, byts(3, m0.fs[2].b[1:])), ErrMalformed},
		"key of another type":  {memberWith(acct, name, byts(3, append([]byte{0x06}, m0.fs[2].b[1:]...))), ErrInvalidState},
		"short account":        {memberWith(byts(1, m0.fs[0].b[:15]), name, key), ErrMalformed},
		"account not v4":       {memberWith(byts(1, make([]byte, 16)), name, key), ErrInvalidState},
		"too long":             {make([]byte, MaxStateSize+1), ErrMalformed},
	} {
		before := slices.Clone(tc.b)
		if _, err := ParseState(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if !bytes.Equal(before, tc.b) {
			t.Errorf("%s: input modified", name)
		}
	}

	// Changes.
	_, c2, err := f.st.SetTitle(f.alice.key, nil, "two")
	if err != nil {
		t.Fatal(err)
	}
	sig := byts(2, c2.signature)
	author := byts(2, uuidBytes(f.alice.m.AccountID))
	state2 := byts(3, c2.State().enc)
	prev := byts(1, c2.previous[:])
	signed := func(body []byte) []byte { return cat(byts(1, body), sig) }
	if !bytes.Equal(signed(cat(prev, author, state2)), c2.Bytes()) {
		t.Fatal("test's change encoding differs from the package's")
	}
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":                 {nil, ErrMalformed},
		"no signature":          {byts(1, cat(prev, author, state2)), ErrMalformed},
		"short signature":       {cat(byts(1, cat(prev, author, state2)), byts(2, c2.signature[:63])), ErrMalformed},
		"trailing field":        {cat(c2.Bytes(), vint(3, 1)), ErrMalformed},
		"signature first":       {cat(sig, byts(1, cat(prev, author, state2))), ErrMalformed},
		"no previous":           {signed(cat(author, state2)), ErrMalformed},
		"zero previous for v2":  {signed(cat(byts(1, make([]byte, 32)), author, state2)), ErrMalformed},
		"previous for v1":       {signed(cat(prev, author, byts(3, f.st.enc))), ErrMalformed},
		"author not a uuid":     {signed(cat(prev, byts(2, make([]byte, 16)), state2)), ErrMalformed},
		"no state":              {signed(cat(prev, author)), ErrMalformed},
		"bad state":             {signed(cat(prev, author, byts(3, f.st.enc[1:]))), ErrMalformed},
		"unknown body field":    {signed(cat(prev, author, state2, vint(4, 1))), ErrMalformed},
		"state too long":        {make([]byte, MaxChangeSize+1), ErrMalformed},
		"non-minimal length":    {cat([]byte{0x0a, 0x80, 0x00}, sig), ErrMalformed},
		"change wrong wiretype": {cat(vint(1, 5), sig), ErrMalformed},
	} {
		if _, err := ParseSignedChange(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("change %s: %v, want %v", name, err, tc.want)
		}
		if _, _, err := Apply(f.st, tc.b, f.alice.sender()); !errors.Is(err, tc.want) {
			t.Errorf("Apply %s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestStrings(t *testing.T) {
	f := newFixture(t)
	if s := f.st.String(); !strings.Contains(s, "v1 (3 members)") {
		t.Fatalf("String %q", s)
	}
	if s := f.create.String(); !strings.Contains(s, f.alice.m.AccountID) {
		t.Fatalf("String %q", s)
	}
	if len(f.st.ID().String()) != 2*IDSize {
		t.Fatal("ID String")
	}
}

func TestValidUUID(t *testing.T) {
	good := api.NewUUID()
	cases := []string{good, strings.ToUpper(good), "", good[:35], good + "0", "123e4567-e89b-12d3-a456-426614174000",
		"123e4567-e89b-42d3-c456-426614174000", "123e4567-e89b-42d3-8456-42661417400g", "123e4567_e89b-42d3-8456-426614174000",
		"123e4567-e89b-42d3-b456-426614174000", "123e4567-e89b-42d3-9456-426614174000", "123e45670e89b-42d3-9456-426614174000"}
	for i := range 1000 {
		u := []byte(api.NewUUID())
		u[i%36] = "0123456789abcdefABCDEF-_g\x00\xff"[i%25]
		cases = append(cases, string(u))
	}
	for _, s := range cases {
		if validUUID(s) != api.ValidUUID(s) {
			t.Errorf("validUUID(%q) = %v, api.ValidUUID says %v", s, validUUID(s), api.ValidUUID(s))
		}
	}
}
