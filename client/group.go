package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/doorless/doorless/client/internal/group"
	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/senderkey"
)

// Groups live only in the members' clients. A group's state (title,
// members with their identity keys, admins, timer, version) changes by
// changes an admin signs with the account's identity key; every change
// travels to every member (and to members removed by it) inside the
// one-to-one sessions, and each client applies it only if it is signed by a
// current admin and builds on the state it holds (client/internal/group).
// The server sees one-to-one messages and sender-key messages; it stores no
// group and cannot add a member.
//
// Group messages are encrypted once with the sending device's sender key
// (protocol/senderkey, libsignal's scheme), and that one ciphertext is
// queued for every device of every member, this account's other devices
// included. A device's sender key reaches a member device in a one-to-one
// message, together with the group's latest signed change, before the first
// group message that needs it. When a member is removed (or a member's
// identity key changes), every remaining member's devices start a new sender
// key, which only the remaining members receive.

// Errors about groups a caller branches on.
var (
	// ErrUnknownGroup: no group of this device has the title or id.
	ErrUnknownGroup = errors.New("client: unknown group")
	// ErrAmbiguousGroup: several groups have the title; name it by id.
	ErrAmbiguousGroup = errors.New("client: several groups have that title; use the group's id")
	// ErrNotGroupAdmin: the change needs an admin of the group.
	ErrNotGroupAdmin = errors.New("client: only an admin of the group may change it")
	// ErrNotGroupMember: this account is no longer a member of the group.
	ErrNotGroupMember = errors.New("client: this account is not a member of the group")
)

// Group describes a group this device knows.
type Group struct {
	ID      string // hex
	Title   string
	Version uint64
	Timer   time.Duration
	Members []GroupMember
}

// GroupMember is a member of a group.
type GroupMember struct {
	Username string
	Admin    bool
}

// localGroup is a group as this device holds it.
type localGroup struct {
	id     group.ID
	state  *group.State
	change []byte // the signed change that made state
	dist   senderkey.DistributionID
}

func (g *localGroup) ref() *GroupRef {
	return &GroupRef{ID: g.id.String(), Title: g.state.Title()}
}

func (g *localGroup) describe() *Group {
	out := &Group{ID: g.id.String(), Title: g.state.Title(), Version: g.state.Version(),
		Timer: time.Duration(g.state.Timer()) * time.Second}
	for _, m := range g.state.Members() {
		out.Members = append(out.Members, GroupMember{Username: m.Username, Admin: m.Admin})
	}
	slices.SortFunc(out.Members, func(a, b GroupMember) int { return strings.Compare(a.Username, b.Username) })
	return out
}

func loadGroup(pg *profile.Group) (*localGroup, error) {
	st, err := group.ParseState(pg.State)
	if err != nil {
		return nil, fmt.Errorf("client: stored group: %v", err)
	}
	g := &localGroup{id: st.ID(), state: st, change: pg.Change}
	copy(g.dist[:], pg.DistributionID)
	return g, nil
}

// putGroup stores a group and keeps the conversation's timer with the
// group's.
func putGroup(tx *profile.Tx, g *localGroup, now time.Time) error {
	err := tx.PutGroup(&profile.Group{ID: g.id[:], State: g.state.Bytes(), Change: g.change, DistributionID: g.dist[:]}, now)
	if err != nil {
		return err
	}
	return tx.SetTimer(profile.GroupConversation(g.id[:]), time.Duration(g.state.Timer())*time.Second, now)
}

// isGroupID reports whether s is a group id in hex.
func isGroupID(s string) bool {
	if len(s) != 2*group.IDSize {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// isGroupName reports whether a conversation name names a group: "#" and
// its title, or its id.
func isGroupName(s string) bool { return strings.HasPrefix(s, "#") || isGroupID(s) }

// findGroup finds a group by "#" and its title, or by its id in hex.
func (c *Client) findGroup(ctx context.Context, name string) (*localGroup, error) {
	var found []*localGroup
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		found = nil
		if isGroupID(name) {
			id, _ := hex.DecodeString(name)
			pg, err := tx.Group(id)
			if err != nil || pg == nil {
				return err
			}
			g, err := loadGroup(pg)
			if err != nil {
				return err
			}
			found = append(found, g)
			return nil
		}
		title, ok := strings.CutPrefix(name, "#")
		if !ok {
			return nil
		}
		gs, err := tx.Groups()
		if err != nil {
			return err
		}
		for i := range gs {
			g, err := loadGroup(&gs[i])
			if err != nil {
				return err
			}
			if g.state.Title() == title {
				found = append(found, g)
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case len(found) == 0:
		return nil, ErrUnknownGroup
	case len(found) > 1:
		return nil, ErrAmbiguousGroup
	}
	return found[0], nil
}

// Groups returns the groups this device knows, in the order it learnt them.
func (c *Client) Groups(ctx context.Context) ([]*Group, error) {
	var out []*Group
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		gs, err := tx.Groups()
		if err != nil {
			return err
		}
		for i := range gs {
			g, err := loadGroup(&gs[i])
			if err != nil {
				return err
			}
			out = append(out, g.describe())
		}
		return nil
	})
	return out, err
}

// Group describes one group ("#" and its title, or its id).
func (c *Client) Group(ctx context.Context, name string) (*Group, error) {
	g, err := c.findGroup(ctx, name)
	if err != nil {
		return nil, err
	}
	return g.describe(), nil
}

// member makes the group member for a user: the contact's account and
// trusted identity key, verified in the key transparency log, fetching the
// user's keys (and so making sessions) if the user is not a contact yet.
func (c *Client) member(ctx context.Context, username string) (group.Member, error) {
	username, err := normalizeUsername(username)
	if err != nil {
		return group.Member{}, err
	}
	if username == c.username {
		return group.Member{AccountID: c.accountID, Username: c.username, Identity: c.identity.Public}, nil
	}
	get := func() (*profile.Contact, error) {
		var ct *profile.Contact
		err := c.st.View(ctx, func(tx *profile.Tx) error {
			var err error
			if ct, err = tx.Contact(username); err != nil || ct == nil {
				return err
			}
			ok, err := ktVerified(tx, username, ct.AccountID, ct.IdentityKey)
			if err == nil && !ok {
				err = transparencyErr(errProofMismatch) // changed meanwhile
			}
			return err
		})
		return ct, err
	}
	// A member joins with the key the transparency log holds for them
	// (a user not known yet is fetched, making sessions).
	if err := c.ensureVerified(ctx, username, new(SendResult)); err != nil {
		return group.Member{}, err
	}
	ct, err := get()
	if err != nil {
		return group.Member{}, err
	}
	if ct == nil {
		return group.Member{}, ErrUnknownUser
	}
	if ct.PendingKey != nil {
		return group.Member{}, ErrUntrustedIdentity
	}
	return group.Member{AccountID: ct.AccountID, Username: username, Identity: ct.IdentityKey}, nil
}

// CreateGroup creates a group with this account as its admin and the users
// as members, and sends it to them.
func (c *Client) CreateGroup(ctx context.Context, title string, usernames ...string) (*Group, error) {
	var members []group.Member
	for _, u := range usernames {
		m, err := c.member(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("client: group member %s: %w", u, err)
		}
		if m.AccountID == c.accountID || slices.ContainsFunc(members, func(o group.Member) bool { return o.AccountID == m.AccountID }) {
			continue
		}
		members = append(members, m)
	}
	id, err := group.NewID(randReader)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	self := group.Member{AccountID: c.accountID, Username: c.username, Identity: c.identity.Public}
	st, ch, err := group.Create(id, title, self, members, 0, c.identity.Private, randReader)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	dist, err := senderkey.NewDistributionID(randReader)
	if err != nil {
		return nil, fmt.Errorf("client: %v", err)
	}
	g := &localGroup{id: id, state: st, change: ch.Bytes(), dist: dist}
	if err := c.st.Update(ctx, func(tx *profile.Tx) error { return putGroup(tx, g, time.Now()) }); err != nil {
		return nil, err
	}
	if err := c.distributeChange(ctx, g, nil); err != nil {
		return g.describe(), err
	}
	return g.describe(), nil
}

// changeGroup makes, stores and sends a change of a group.
func (c *Client) changeGroup(ctx context.Context, name string, adminOnly bool, edit func(*localGroup) (*group.State, *group.SignedChange, error)) error {
	g, err := c.findGroup(ctx, name)
	if err != nil {
		return err
	}
	if _, ok := g.state.Member(c.accountID); !ok {
		return ErrNotGroupMember
	}
	if adminOnly && !g.state.IsAdmin(c.accountID) {
		return ErrNotGroupAdmin
	}
	st, ch, err := edit(g)
	if errors.Is(err, group.ErrNotAdmin) {
		return ErrNotGroupAdmin
	}
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	// Send to the members before and after: the removed learn of it too.
	before := g.state.Members()
	diff := diffMembers(before, st.Members())
	next := &localGroup{id: g.id, state: st, change: ch.Bytes(), dist: g.dist}
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		now := time.Now()
		if _, ok := st.Member(c.accountID); !ok {
			return tx.DeleteGroup(g.id[:])
		}
		if len(diff) > 0 {
			if err := c.rotate(tx, next, diff); err != nil {
				return err
			}
		}
		return putGroup(tx, next, now)
	})
	if err != nil {
		return err
	}
	return c.distributeChange(ctx, next, diff)
}

// diffMembers returns the members of before that are not in after (by
// account and key).
func diffMembers(before, after []group.Member) []group.Member {
	var gone []group.Member
	for _, m := range before {
		if !slices.ContainsFunc(after, func(o group.Member) bool { return o.AccountID == m.AccountID && o.Identity.Equal(m.Identity) }) {
			gone = append(gone, m)
		}
	}
	return gone
}

// rotate starts a new sender key of this device for the group after members
// left: they hold the old one, and never get the new one. The sender keys
// of the departed are forgotten.
func (c *Client) rotate(tx *profile.Tx, g *localGroup, gone []group.Member) error {
	if err := tx.DeleteSenderKey(c.accountID, c.deviceID, g.dist[:]); err != nil {
		return err
	}
	if err := tx.ForgetSenderKeyShared(g.dist[:]); err != nil {
		return err
	}
	dist, err := senderkey.NewDistributionID(randReader)
	if err != nil {
		return fmt.Errorf("client: %v", err)
	}
	g.dist = dist
	for _, m := range gone {
		if m.AccountID == c.accountID {
			continue
		}
		if err := tx.DeleteSenderKeys(g.id[:], m.AccountID); err != nil {
			return err
		}
	}
	return nil
}

// AddGroupMembers adds users to a group (an admin's change).
func (c *Client) AddGroupMembers(ctx context.Context, name string, usernames ...string) error {
	var members []group.Member
	for _, u := range usernames {
		m, err := c.member(ctx, u)
		if err != nil {
			return fmt.Errorf("client: group member %s: %w", u, err)
		}
		members = append(members, m)
	}
	return c.changeGroup(ctx, name, true, func(g *localGroup) (*group.State, *group.SignedChange, error) {
		return g.state.AddMembers(c.identity.Private, randReader, members...)
	})
}

// RemoveGroupMembers removes users from a group (an admin's change). The
// removed members cannot read what is sent to the group afterwards: every
// remaining member starts a new sender key.
func (c *Client) RemoveGroupMembers(ctx context.Context, name string, usernames ...string) error {
	return c.changeGroup(ctx, name, true, func(g *localGroup) (*group.State, *group.SignedChange, error) {
		var ids []string
		for _, u := range usernames {
			u, err := normalizeUsername(u)
			if err != nil {
				return nil, nil, err
			}
			i := slices.IndexFunc(g.state.Members(), func(m group.Member) bool { return m.Username == u })
			if i < 0 {
				return nil, nil, fmt.Errorf("client: %s is not a member of the group", u)
			}
			ids = append(ids, g.state.Members()[i].AccountID)
		}
		return g.state.RemoveMembers(c.identity.Private, randReader, ids...)
	})
}

// LeaveGroup takes this account out of a group.
func (c *Client) LeaveGroup(ctx context.Context, name string) error {
	return c.changeGroup(ctx, name, false, func(g *localGroup) (*group.State, *group.SignedChange, error) {
		return g.state.Leave(c.identity.Private, randReader)
	})
}

// SetGroupTitle renames a group (an admin's change).
func (c *Client) SetGroupTitle(ctx context.Context, name, title string) error {
	return c.changeGroup(ctx, name, true, func(g *localGroup) (*group.State, *group.SignedChange, error) {
		return g.state.SetTitle(c.identity.Private, randReader, title)
	})
}

// SetGroupTimer sets a group's disappearing-message timer (an admin's
// change).
func (c *Client) SetGroupTimer(ctx context.Context, name string, d time.Duration) error {
	if err := checkTimer(d); err != nil {
		return err
	}
	return c.changeGroup(ctx, name, true, func(g *localGroup) (*group.State, *group.SignedChange, error) {
		return g.state.SetTimer(c.identity.Private, randReader, uint32(d/time.Second))
	})
}

// distributeChange sends a group's latest change to every member (this
// account's other devices included) and to the members it removed. It tries
// everyone and returns the failures joined.
func (c *Client) distributeChange(ctx context.Context, g *localGroup, removed []group.Member) error {
	cont := &content.Content{Timestamp: time.Now().UnixMilli(), GroupID: g.id[:], GroupChange: g.change}
	c.addProfileKey(ctx, cont)
	var errs []error
	for _, m := range append(g.state.Members(), removed...) {
		if _, err := c.deliver(ctx, m.Username, cont, nil); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Username, err))
		}
	}
	return groupErrors(errs)
}

// groupErrors joins the failures of a fan-out to a group's members.
func groupErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("client: the group did not reach every member: %w", errors.Join(errs...))
}

// sendGroup encrypts a message with this device's sender key for the group
// and queues it for every device of every member.
func (c *Client) sendGroup(ctx context.Context, name string, m Outgoing) (*SendResult, error) {
	g, err := c.findGroup(ctx, name)
	if err != nil {
		return nil, err
	}
	if _, ok := g.state.Member(c.accountID); !ok {
		return nil, ErrNotGroupMember
	}
	cont, err := c.outgoingContent(ctx, profile.GroupConversation(g.id[:]), m)
	if err != nil {
		return nil, err
	}
	cont.GroupID = g.id[:]
	c.addProfileKey(ctx, cont)
	key, err := c.frankingKey(ctx)
	if err != nil {
		return nil, err
	}
	// One sender-key message for every member: franked once, for the group.
	pt, commitment, err := encodeFranked(cont, key, "")
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	var skm, skdm []byte
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		rec, err := c.ownSenderKey(tx, g)
		if err != nil {
			return err
		}
		dm, err := rec.DistributionMessage(randReader)
		if err != nil {
			return fmt.Errorf("client: %v", err)
		}
		skdm = dm.Bytes()
		if skm, err = rec.Encrypt(pt, randReader); err != nil {
			return fmt.Errorf("client: %v", err)
		}
		return c.putOwnSenderKey(tx, g, rec)
	})
	if err != nil {
		return nil, err
	}
	dcont := &content.Content{Timestamp: cont.Timestamp, GroupID: g.id[:], GroupChange: g.change, SenderKey: skdm, ProfileKey: cont.ProfileKey}
	res := &SendResult{ID: api.NewUUID()}
	// Members this device can reach sealed in one request, first; then
	// the others, one by one.
	n, rest, err := c.sendGroupMulti(ctx, g, g.state.Members(), skm, commitment, cont.Timestamp)
	res.Devices += n
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, mem := range rest {
		if mem.AccountID == c.accountID && !c.hasOtherDevices(ctx) {
			continue // as for transcripts: no other device to reach
		}
		n, err := c.sendSenderKey(ctx, g, mem, skm, commitment, dcont, cont.Timestamp)
		res.Devices += n
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", mem.Username, err))
		}
	}
	if err := c.keepSent(ctx, res.ID, "", g.ref(), cont); err != nil {
		return res, err
	}
	return res, groupErrors(errs)
}

// ownSenderKey returns this device's sender key record for the group's
// current distribution, making it if need be.
func (c *Client) ownSenderKey(tx *profile.Tx, g *localGroup) (*senderkey.Record, error) {
	k, err := tx.SenderKey(c.accountID, c.deviceID, g.dist[:])
	if err != nil {
		return nil, err
	}
	if k == nil {
		return senderkey.NewRecord(g.dist), nil
	}
	defer clear(k.Record)
	rec, err := senderkey.ParseRecord(k.Record)
	if err != nil {
		return nil, fmt.Errorf("client: stored sender key: %v", err)
	}
	return rec, nil
}

func (c *Client) putOwnSenderKey(tx *profile.Tx, g *localGroup, rec *senderkey.Record) error {
	b, err := rec.MarshalBinary()
	if err != nil {
		return fmt.Errorf("client: %v", err)
	}
	defer clear(b)
	return tx.PutSenderKey(&profile.SenderKey{AccountID: c.accountID, DeviceID: c.deviceID, DistributionID: g.dist[:],
		GroupID: g.id[:], Record: b}, time.Now())
}

// sendSenderKey queues a sender-key message (skm, franked with commitment)
// for every device of one member (of this account: its other devices),
// first sending this device's sender key, with the group's latest change
// (skdm), to the devices that do not have it.
func (c *Client) sendSenderKey(ctx context.Context, g *localGroup, mem group.Member, skm, commitment []byte, skdm *content.Content, ts int64) (int, error) {
	// The member's devices as the log lists them, verified within
	// listMaxAge (a lookup, when it is older).
	if err := c.ensureVerified(ctx, mem.Username, new(SendResult)); err != nil {
		return 0, err
	}
	var refresh []uint32
	for range maxSendAttempts {
		// Sessions with the devices the server asked for anew.
		if len(refresh) > 0 {
			local, localAddr := c.local()
			for _, d := range refresh {
				err := c.fetchSessions(ctx, mem.Username, d, local, localAddr, new(SendResult))
				if _, ok := isCode(err, api.CodeNotFound); ok {
					err = nil
				}
				if err != nil {
					return 0, err
				}
				err = c.st.Update(ctx, func(tx *profile.Tx) error { return tx.UnmarkSenderKeyShared(g.dist[:], mem.AccountID, d) })
				if err != nil {
					return 0, err
				}
			}
			refresh = nil
		}
		msgs, unshared, err := c.senderKeyMessages(ctx, g, mem, skm)
		if err != nil {
			return 0, err
		}
		if unshared || len(msgs) == 0 && mem.AccountID != c.accountID {
			// The one-to-one message goes to every device (the server
			// wants them all), and makes the sessions missing.
			if _, err := c.deliver(ctx, mem.Username, skdm, nil); err != nil {
				return 0, err
			}
			err := c.st.Update(ctx, func(tx *profile.Tx) error {
				// (deliver sent the key to the listed devices alone.)
				devices, _, err := c.memberDevices(tx, mem)
				if err != nil {
					return err
				}
				for _, d := range devices {
					if err := tx.MarkSenderKeyShared(g.dist[:], mem.AccountID, d); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return 0, err
			}
			if msgs, _, err = c.senderKeyMessages(ctx, g, mem, skm); err != nil {
				return 0, err
			}
		}
		req := &api.SendRequest{ID: api.NewUUID(), Timestamp: ts, Franking: commitment, Messages: msgs}
		resp, err := c.sendMessages(ctx, mem.Username, req)
		if err == nil {
			return resp.Delivered, nil
		}
		if refresh, err = c.followDevices(ctx, mem.Username, err); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("client: send: the member's devices kept changing; try again")
}

// senderKeyMessages makes the sender-key message for every device of the
// member on the member's device list in the log that this device has a
// current session with, and tells whether one of them lacks this device's
// sender key (or the member's list is not verified yet: the one-to-one
// send of the key verifies it).
func (c *Client) senderKeyMessages(ctx context.Context, g *localGroup, mem group.Member, skm []byte) (msgs []api.OutgoingMessage, unshared bool, err error) {
	err = c.st.View(ctx, func(tx *profile.Tx) error {
		msgs, unshared = nil, false
		devices, listed, err := c.memberDevices(tx, mem)
		if err != nil {
			return err
		}
		if !listed {
			unshared = true // the one-to-one send of the key verifies the list
			return nil
		}
		for _, d := range devices {
			rec, err := tx.Session(mem.AccountID, d)
			if err != nil {
				return err
			}
			if rec == nil || !rec.HasCurrentSession() {
				unshared = true
				continue
			}
			shared, err := tx.SenderKeyShared(g.dist[:], mem.AccountID, d)
			if err != nil {
				return err
			}
			if !shared {
				unshared = true
			}
			reg, _ := rec.RemoteRegistrationID()
			msgs = append(msgs, api.OutgoingMessage{DeviceID: d, RegistrationID: reg, Type: api.EnvelopeSenderKey, Content: skm})
		}
		return nil
	})
	return msgs, unshared, err
}

// memberDevices returns the devices of a group member that this device
// holds sessions with and that the member's device list in the log (this
// account's own for this account), as this device verified it within
// listMaxAge, names: the only ones sender keys and sender-key messages go
// to. listed is false, and devices empty, when it has verified no list for
// the member's account and key in that time.
func (c *Client) memberDevices(tx *profile.Tx, mem group.Member) (devices []uint32, listed bool, err error) {
	username, ik := mem.Username, mem.Identity
	if mem.AccountID == c.accountID {
		username, ik = c.username, c.identity.Public
	}
	l, err := c.freshList(tx, username, mem.AccountID, ik)
	if err != nil || l == nil {
		return nil, false, err
	}
	if devices, err = tx.SessionDevices(mem.AccountID); err != nil {
		return nil, false, err
	}
	return slices.DeleteFunc(devices, func(d uint32) bool { return !l.Contains(d) }), true, nil
}

// groupContent acts on the group part of a one-to-one message: a signed
// change of the group, and a sender key of the sending device. It runs
// inside processEnvelope's transaction.
func (c *Client) groupContent(tx *profile.Tx, env *api.Envelope, from string, identity keys.PublicKey, cont *content.Content, now time.Time) ([]any, error) {
	if cont.Sync {
		return nil, errDropContent // group messages reach own devices by sender key
	}
	var events []any
	pg, err := tx.Group(cont.GroupID)
	if err != nil {
		return nil, err
	}
	var g *localGroup
	if pg != nil {
		if g, err = loadGroup(pg); err != nil {
			return nil, err
		}
	}
	if cont.GroupChange != nil {
		ev, next, err := c.applyChange(tx, g, env, identity, cont, now)
		if err != nil {
			return nil, err
		}
		if ev != nil {
			events = append(events, ev)
		}
		g = next
	}
	if cont.SenderKey != nil {
		if g == nil {
			return nil, errDropContent
		}
		if _, ok := g.state.Member(env.SourceAccount); !ok {
			return nil, errDropContent
		}
		dm, err := senderkey.ParseDistributionMessage(cont.SenderKey)
		if err != nil {
			return nil, errDropContent
		}
		dist := dm.DistributionID()
		k, err := tx.SenderKey(env.SourceAccount, env.SourceDevice, dist[:])
		if err != nil {
			return nil, err
		}
		rec := senderkey.NewRecord(dist)
		if k != nil {
			if !bytes.Equal(k.GroupID, g.id[:]) {
				return nil, errDropContent // one sender key, one group
			}
			defer clear(k.Record)
			if rec, err = senderkey.ParseRecord(k.Record); err != nil {
				return nil, fmt.Errorf("client: stored sender key: %v", err)
			}
		}
		if err := rec.Process(dm); err != nil {
			return nil, errDropContent
		}
		b, err := rec.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("client: %v", err)
		}
		defer clear(b)
		err = tx.PutSenderKey(&profile.SenderKey{AccountID: env.SourceAccount, DeviceID: env.SourceDevice,
			DistributionID: dist[:], GroupID: g.id[:], Record: b}, now)
		if err != nil {
			return nil, err
		}
	}
	return events, nil
}

// applyChange judges a group change that arrived from env's sender and, if
// it applies, stores the new state and returns the event for it and the
// group as it is now (nil when this account is not in it).
func (c *Client) applyChange(tx *profile.Tx, g *localGroup, env *api.Envelope, identity keys.PublicKey, cont *content.Content, now time.Time) (any, *localGroup, error) {
	ch, err := group.ParseSignedChange(cont.GroupChange)
	if err != nil {
		return nil, nil, errDropContent
	}
	if gid := ch.GroupID(); !bytes.Equal(gid[:], cont.GroupID) {
		return nil, nil, errDropContent
	}
	if g != nil && ch.Version() <= g.state.Version() {
		// A change already applied (it travels with every sender key):
		// nothing to do, unless it is a different one for a version held.
		if ch.Version() == g.state.Version() && !bytes.Equal(ch.Bytes(), g.change) {
			return nil, nil, errDropContent
		}
		return nil, g, nil
	}
	sender := group.Sender{AccountID: env.SourceAccount, Identity: identity}
	var cur *group.State
	if g != nil {
		cur = g.state
	}
	st, diff, err := group.Apply(cur, ch.Bytes(), sender)
	if errors.Is(err, group.ErrGap) && cur.IsAdmin(env.SourceAccount) {
		// Changes were missed (this device was offline when they were
		// made, or linked since): a current admin's word for the state,
		// as a joiner takes it.
		st, diff, err = group.Apply(nil, ch.Bytes(), sender)
		if err == nil {
			diff.Joined = false
			diff.Removed = diffMembers(cur.Members(), st.Members())
			diff.Added = diffMembers(st.Members(), cur.Members())
		}
	}
	if err != nil {
		return nil, nil, errDropContent
	}
	_, member := st.Member(c.accountID)
	ev := &storedGroupUpdate{GroupID: st.ID().String(), Title: st.Title(), By: usernameIn(st, cur, diff.Author),
		Joined: diff.Joined && member, Left: !member, Timer: int64(st.Timer()), TimerChanged: diff.TimerChanged && !diff.Joined}
	if diff.TitleChanged && !diff.Joined {
		ev.NewTitle = st.Title()
	}
	for _, m := range diff.Added {
		if !diff.Joined {
			ev.Added = append(ev.Added, m.Username)
		}
	}
	for _, m := range diff.Removed {
		ev.Removed = append(ev.Removed, m.Username)
	}
	if !member {
		if g == nil {
			return nil, nil, errDropContent // a group we are not in
		}
		if err := tx.DeleteGroup(g.id[:]); err != nil {
			return nil, nil, err
		}
		return ev, nil, nil
	}
	next := &localGroup{id: st.ID(), state: st, change: ch.Bytes()}
	if g != nil {
		next.dist = g.dist
		if gone := diffMembers(cur.Members(), st.Members()); len(gone) > 0 {
			if err := c.rotate(tx, next, gone); err != nil {
				return nil, nil, err
			}
		}
	} else if next.dist, err = senderkey.NewDistributionID(randReader); err != nil {
		return nil, nil, fmt.Errorf("client: %v", err)
	}
	if err := putGroup(tx, next, now); err != nil {
		return nil, nil, err
	}
	return ev, next, nil
}

// usernameIn names an account by the group's state (new, else old).
func usernameIn(st, old *group.State, accountID string) string {
	if m, ok := st.Member(accountID); ok {
		return m.Username
	}
	if old != nil {
		if m, ok := old.Member(accountID); ok {
			return m.Username
		}
	}
	return accountID
}

// decryptSenderKey decrypts a group message (an envelope of type 7, env)
// with the sender's sender key, inside processEnvelope's transaction; outer
// is the envelope as delivered (env unless sealed). It returns errDrop for
// an envelope to drop.
func (c *Client) decryptSenderKey(tx *profile.Tx, outer, env *api.Envelope, sealedBy *keys.PublicKey, now time.Time) error {
	msg, err := senderkey.ParseMessage(env.Content)
	if err != nil {
		return errDrop
	}
	dist := msg.DistributionID()
	k, err := tx.SenderKey(env.SourceAccount, env.SourceDevice, dist[:])
	if err != nil {
		return err
	}
	if k == nil {
		return errDrop
	}
	defer clear(k.Record)
	rec, err := senderkey.ParseRecord(k.Record)
	if err != nil {
		return fmt.Errorf("client: stored sender key: %v", err)
	}
	pt, err := rec.Decrypt(msg)
	if err != nil {
		return errDrop
	}
	defer clear(pt)
	pg, err := tx.Group(k.GroupID)
	if err != nil {
		return err
	}
	if pg == nil {
		return errDrop
	}
	g, err := loadGroup(pg)
	if err != nil {
		return err
	}
	mem, ok := g.state.Member(env.SourceAccount)
	if !ok {
		return errDrop // no longer a member
	}
	if sealedBy != nil && !mem.Identity.Equal(*sealedBy) {
		return errDrop // sealed by another key than the member's
	}
	// Nor from a device no longer on the member's list in the log (a
	// removed one keeps the sender key it had).
	username := mem.Username
	if ct, err := tx.ContactByAccount(env.SourceAccount); err != nil {
		return err
	} else if ct != nil {
		username = ct.Username
	}
	if err := c.checkListed(tx, username, env.SourceAccount, env.SourceDevice, mem.Identity); err != nil {
		return err
	}
	b, err := rec.MarshalBinary()
	if err != nil {
		return fmt.Errorf("client: %v", err)
	}
	defer clear(b)
	k.Record = b
	if err := tx.PutSenderKey(k, now); err != nil {
		return err
	}
	if err := tx.MarkProcessed(env.ID, now); err != nil {
		return err
	}
	cont, err := content.Parse(pt)
	if err != nil {
		c.dropped.Add(1)
		return nil // the chain moved on; nothing to show
	}
	if cont, err = c.opened(tx, env, mem.Username, cont, nil, now); err != nil {
		if errors.Is(err, errDropContent) {
			return nil
		}
		return err
	}
	if !bytes.Equal(cont.GroupID, g.id[:]) || cont.Sync || cont.GroupChange != nil || cont.SenderKey != nil || cont.TimerUpdate {
		c.dropped.Add(1)
		return nil
	}
	if err := c.keepProfileKey(tx, env.SourceAccount, cont.ProfileKey, now); err != nil {
		return err
	}
	if cont.Body == "" && cont.Attachment == nil {
		return nil
	}
	m := c.newStoredMessage(env, mem.Username, cont, now)
	m.GroupID, m.GroupTitle = g.id.String(), g.state.Title()
	if env.SourceAccount == c.accountID {
		m.Outgoing = true
	}
	return c.storeEvents(tx, env.ID, []any{m}, c.reportable(outer, env, pt))
}
