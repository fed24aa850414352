package senderkey

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/internal/cbc"
	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
)

var testID = DistributionID{0xd1, 0xd1, 0xd1, 0xd1, 0xd1, 0xd1, 0x41, 0xd1, 0x81, 0xd1, 0xd1, 0xd1, 0xd1, 0xd1, 0xd1, 0x01}

// group is one sender and the members that processed its distribution message.
type group struct {
	sender  *Record
	members []*Record
}

func newGroup(t testing.TB, members int) *group {
	t.Helper()
	g := &group{sender: NewRecord(testID)}
	skdm, err := g.sender.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	for range members {
		g.members = append(g.members, receive(t, skdm.Bytes()))
	}
	return g
}

// receive makes a member's record from a serialized distribution message.
func receive(t testing.TB, skdm []byte) *Record {
	t.Helper()
	m, err := ParseDistributionMessage(skdm)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRecord(m.DistributionID())
	if err := r.Process(m); err != nil {
		t.Fatal(err)
	}
	return r
}

func encrypt(t testing.TB, r *Record, text string) []byte {
	t.Helper()
	ct, err := r.Encrypt([]byte(text), nil)
	if err != nil {
		t.Fatalf("encrypt %q: %v", text, err)
	}
	return ct
}

func decrypt(r *Record, b []byte) ([]byte, error) {
	m, err := ParseMessage(b)
	if err != nil {
		return nil, err
	}
	return r.Decrypt(m)
}

func mustDecrypt(t testing.TB, r *Record, b []byte, want string) {
	t.Helper()
	got, err := decrypt(r, b)
	if err != nil {
		t.Fatalf("decrypt (want %q): %v", want, err)
	}
	if string(got) != want {
		t.Fatalf("decrypt: got %q, want %q", got, want)
	}
}

func marshal(t testing.TB, r *Record) []byte {
	t.Helper()
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// failUnchanged decrypts b expecting an error matching want, and checks that the record
// is unchanged by the failure.
func failUnchanged(t *testing.T, r *Record, b []byte, want error) {
	t.Helper()
	before := marshal(t, r)
	_, err := decrypt(r, b)
	if !errors.Is(err, want) {
		t.Fatalf("decrypt: %v, want %v", err, want)
	}
	if !bytes.Equal(marshal(t, r), before) {
		t.Fatal("a failed decryption changed the record")
	}
}

func TestRoundTrip(t *testing.T) {
	g := newGroup(t, 3)
	for i := range 50 {
		text := fmt.Sprintf("message %d", i)
		if i%7 == 0 {
			text = strings.Repeat("x", i*3) // lengths around block boundaries, and empty
		}
		ct := encrypt(t, g.sender, text)
		for _, m := range g.members {
			mustDecrypt(t, m, ct, text)
		}
	}
}

func TestMessageLayout(t *testing.T) {
	sender := NewRecord(testID)
	skdm, err := sender.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := skdm.Bytes()
	if b[0] != 0x33 {
		t.Errorf("distribution message version byte %#x, want 0x33", b[0])
	}
	// Fields 1..5 in order, as libsignal's prost encoding writes them.
	rest, wantNum := b[1:], protowire.Number(1)
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 || num != wantNum {
			t.Fatalf("field %d where %d expected", num, wantNum)
		}
		rest = rest[n:]
		n = protowire.ConsumeFieldValue(num, typ, rest)
		rest = rest[n:]
		wantNum++
	}
	if wantNum != 6 {
		t.Fatalf("%d fields, want 5", wantNum-1)
	}
	if skdm.ChainID() >= 1<<31 {
		t.Errorf("chain id %d is not 31-bit", skdm.ChainID())
	}
	if skdm.Iteration() != 0 {
		t.Errorf("first iteration %d", skdm.Iteration())
	}

	ct := encrypt(t, sender, "hi")
	m, err := ParseMessage(ct)
	if err != nil {
		t.Fatal(err)
	}
	if ct[0] != 0x33 || m.ChainID() != skdm.ChainID() || m.Iteration() != 0 || m.DistributionID() != testID {
		t.Errorf("message: version %#x chain %d iteration %d distribution %s", ct[0], m.ChainID(), m.Iteration(), m.DistributionID())
	}
	// A one-byte plaintext pads to one AES block: version, 18-byte id field, chain id
	// field, iteration field, 18-byte ciphertext field, signature.
	if want := 1 + 18 + 1 + protowire.SizeVarint(uint64(m.ChainID())) + 2 + 18 + 64; len(ct) != want {
		t.Errorf("message of %d bytes, want %d", len(ct), want)
	}
	again, err := sender.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.ChainID() != skdm.ChainID() || again.Iteration() != 1 || again.SigningKey() != skdm.SigningKey() {
		t.Error("a second distribution message does not reuse the chain at its current iteration")
	}
}

func TestOutOfOrder(t *testing.T) {
	g := newGroup(t, 1)
	r := g.members[0]
	const n = 40
	cts := make([][]byte, n)
	for i := range cts {
		cts[i] = encrypt(t, g.sender, fmt.Sprint("m", i))
	}
	order := rand.New(rand.NewPCG(1, 2)).Perm(n)
	for _, i := range order {
		mustDecrypt(t, r, cts[i], fmt.Sprint("m", i))
	}
	if s := r.states[0]; len(s.skipped) != 0 || s.chain.iteration != n {
		t.Fatalf("after all messages: %d skipped keys, iteration %d", len(s.skipped), s.chain.iteration)
	}
	for _, ct := range cts {
		failUnchanged(t, r, ct, ErrDuplicateMessage)
	}
}

func TestDuplicate(t *testing.T) {
	g := newGroup(t, 1)
	r := g.members[0]
	a, b := encrypt(t, g.sender, "a"), encrypt(t, g.sender, "b")
	mustDecrypt(t, r, b, "b") // a's key is now a skipped key
	mustDecrypt(t, r, a, "a")
	failUnchanged(t, r, a, ErrDuplicateMessage) // a skipped key, used up
	failUnchanged(t, r, b, ErrDuplicateMessage) // the chain has passed it
}

func TestForgedSignature(t *testing.T) {
	g := newGroup(t, 1)
	r := g.members[0]
	ct := encrypt(t, g.sender, "genuine")

	flipped := bytes.Clone(ct)
	flipped[len(flipped)-10] ^= 1
	failUnchanged(t, r, flipped, ErrInvalidSignature)

	// The same content signed by someone who knows the chain key but not the signing
	// key (a member impersonating the sender).
	impostor, err := keys.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	body := ct[:len(ct)-signatureSize]
	sig, err := impostor.Sign(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	failUnchanged(t, r, append(bytes.Clone(body), sig...), ErrInvalidSignature)

	mustDecrypt(t, r, ct, "genuine")
}

func TestTamperedCiphertext(t *testing.T) {
	g := newGroup(t, 1)
	r := g.members[0]
	ct := encrypt(t, g.sender, "sixteen bytes!!!")
	m, err := ParseMessage(ct)
	if err != nil {
		t.Fatal(err)
	}
	at := len(ct) - signatureSize - len(m.ciphertext)
	for _, i := range []int{at, at + 15, len(ct) - signatureSize - 1} {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x80
		failUnchanged(t, r, bad, ErrInvalidSignature)
	}
	// Headers too: the iteration is signed.
	bad := bytes.Clone(ct)
	bad[at-3] ^= 1 // inside the iteration varint or its tag
	if _, err := decrypt(r, bad); err == nil {
		t.Fatal("a message with a changed header decrypted")
	}

	// A sender who signs a ciphertext that does not decrypt: the signature holds, the
	// padding does not.
	s := g.sender.states[0]
	junk := appendMessagePrefix(nil, testID, s.chainID, s.chain.iteration, 32)
	junk = append(junk, bytes.Repeat([]byte{0x5a}, 32)...)
	sig, err := s.signing.Sign(nil, junk)
	if err != nil {
		t.Fatal(err)
	}
	failUnchanged(t, r, append(junk, sig...), ErrInvalidMessage)
	mustDecrypt(t, r, ct, "sixteen bytes!!!")
}

func TestWrongDistribution(t *testing.T) {
	other := testID
	other[15] ^= 0xff
	g := newGroup(t, 1)
	ct := encrypt(t, g.sender, "for the first group")

	// The member's record of the same sender in another distribution.
	wrong := NewRecord(other)
	failUnchanged(t, wrong, ct, ErrDistributionMismatch)
	skdm, err := g.sender.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := wrong.Process(skdm); !errors.Is(err, ErrDistributionMismatch) {
		t.Fatalf("process into another distribution's record: %v", err)
	}
	if len(wrong.states) != 0 {
		t.Fatal("a refused distribution message changed the record")
	}

	// A message re-labelled with the other distribution id fails the signature.
	relabelled := bytes.Replace(ct, testID[:], other[:], 1)
	r2 := receive(t, bytes.Replace(skdm.Bytes(), testID[:], other[:], 1))
	failUnchanged(t, r2, relabelled, ErrInvalidSignature)
}

func TestNoState(t *testing.T) {
	g := newGroup(t, 1)
	ct := encrypt(t, g.sender, "x")

	empty := NewRecord(testID)
	failUnchanged(t, empty, ct, ErrNoSenderKeyState)
	if _, err := empty.Encrypt([]byte("x"), nil); !errors.Is(err, ErrNoSenderKeyState) {
		t.Errorf("encrypt on an empty record: %v", err)
	}

	member := g.members[0]
	if member.CanEncrypt() {
		t.Error("a member's record says it can encrypt")
	}
	if _, err := member.Encrypt([]byte("x"), nil); !errors.Is(err, ErrNotSender) {
		t.Errorf("encrypt on a member's record: %v", err)
	}
	if _, err := member.DistributionMessage(nil); !errors.Is(err, ErrNotSender) {
		t.Errorf("distribution message from a member's record: %v", err)
	}
	if _, err := member.Rotate(nil); !errors.Is(err, ErrNotSender) {
		t.Errorf("rotate a member's record: %v", err)
	}
}

// chainAt returns the chain of ck stepped to iteration i.
func chainAt(ck chainKey, i uint32) chainKey {
	for ck.iteration < i {
		ck, _ = ck.next()
	}
	return ck
}

// encryptAt encrypts text at iteration i of the sender's chain, whose iteration-0 chain
// is start (a test reaching far iterations without encrypting every message).
func encryptAt(t *testing.T, sender *Record, start chainKey, i uint32, text string) []byte {
	t.Helper()
	sender.states[0].chain = chainAt(start, i)
	return encrypt(t, sender, text)
}

func TestForwardJumpLimits(t *testing.T) {
	g := newGroup(t, 1)
	r := g.members[0]
	start := g.sender.states[0].chain

	far := encryptAt(t, g.sender, start, MaxForwardJumps+1, "too far")
	failUnchanged(t, r, far, ErrTooFarAhead)

	edge := encryptAt(t, g.sender, start, MaxForwardJumps, "at the limit")
	mustDecrypt(t, r, edge, "at the limit")
	s := r.states[0]
	if len(s.skipped) != MaxMessageKeys {
		t.Fatalf("%d skipped keys kept, want %d", len(s.skipped), MaxMessageKeys)
	}
	if s.skipped[0].iteration != MaxForwardJumps-MaxMessageKeys {
		t.Fatalf("oldest kept key is for iteration %d", s.skipped[0].iteration)
	}

	// Within the kept window: decrypts; before it: dropped, so refused as a duplicate.
	late := encryptAt(t, g.sender, start, MaxForwardJumps-MaxMessageKeys, "oldest kept")
	mustDecrypt(t, r, late, "oldest kept")
	tooLate := encryptAt(t, g.sender, start, MaxForwardJumps-MaxMessageKeys-1, "dropped")
	failUnchanged(t, r, tooLate, ErrDuplicateMessage)

	// Skipped keys accumulate over several jumps and are trimmed oldest first.
	next := encryptAt(t, g.sender, start, MaxForwardJumps+11, "ten more skipped")
	mustDecrypt(t, r, next, "ten more skipped")
	if len(s.skipped) != MaxMessageKeys || s.skipped[len(s.skipped)-1].iteration != MaxForwardJumps+10 {
		t.Fatalf("%d skipped keys, newest for %d", len(s.skipped), s.skipped[len(s.skipped)-1].iteration)
	}
}

func TestChainExhausted(t *testing.T) {
	g := newGroup(t, 1)
	s, m := g.sender.states[0], g.members[0].states[0]
	s.chain.iteration = math.MaxUint32 - 1
	m.chain = s.chain
	mustDecrypt(t, g.members[0], encrypt(t, g.sender, "second to last"), "second to last")

	// The last iteration has a key but no successor: libsignal refuses to use it.
	seed := s.chain.seed()
	mk := deriveMessageKeys(&seed)
	last := appendMessagePrefix(nil, testID, s.chainID, s.chain.iteration, 16)
	last = cbc.Encrypt(last, &mk.key, &mk.iv, []byte("last"))
	sig, err := s.signing.Sign(nil, last)
	if err != nil {
		t.Fatal(err)
	}
	failUnchanged(t, g.members[0], append(last, sig...), ErrChainExhausted)

	if _, err := g.sender.Encrypt([]byte("x"), nil); !errors.Is(err, ErrChainExhausted) {
		t.Fatalf("encrypt at the last iteration: %v", err)
	}
	if _, err := g.sender.Rotate(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := g.sender.Encrypt([]byte("x"), nil); err != nil {
		t.Fatalf("encrypt after rotation: %v", err)
	}
}

func TestRotation(t *testing.T) {
	g := newGroup(t, 2)
	stays, leaves := g.members[0], g.members[1]
	before := encrypt(t, g.sender, "before")
	mustDecrypt(t, stays, before, "before")
	mustDecrypt(t, leaves, before, "before")
	lateOld := encrypt(t, g.sender, "sent before the rotation, delivered after")
	oldChain := g.sender.states[0].chainID

	skdm, err := g.sender.Rotate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if skdm.ChainID() == oldChain || g.sender.ChainIDs()[0] != skdm.ChainID() || len(g.sender.ChainIDs()) != 1 {
		t.Fatalf("rotation: chains %v, old %d", g.sender.ChainIDs(), oldChain)
	}
	if err := stays.Process(skdm); err != nil {
		t.Fatal(err)
	}
	after := encrypt(t, g.sender, "after")
	mustDecrypt(t, stays, after, "after")
	// The member who left knows only the old chain.
	failUnchanged(t, leaves, after, ErrNoSenderKeyState)
	// The remaining member keeps the old chain for late messages.
	mustDecrypt(t, stays, lateOld, "sent before the rotation, delivered after")
	if ids := stays.ChainIDs(); len(ids) != 2 || ids[0] != skdm.ChainID() || ids[1] != oldChain {
		t.Fatalf("member chains %v", ids)
	}

	// The old chain key, stepped as far as anyone likes, never yields the new keys: a
	// forged message for the new chain made from the old state fails.
	forged := NewRecord(testID)
	old := *leaves.states[0]
	old.chainID = skdm.ChainID()
	forged.states = []*state{&old}
	failUnchanged(t, forged, after, ErrInvalidSignature)
}

func TestProcessKnownChain(t *testing.T) {
	g := newGroup(t, 1)
	r := g.members[0]
	skdm0, err := g.sender.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	first := encrypt(t, g.sender, "first")
	mustDecrypt(t, r, first, "first")

	// The same chain again (a resent distribution message): the state is kept, not
	// reset, so the message already read stays a duplicate.
	if err := r.Process(skdm0); err != nil {
		t.Fatal(err)
	}
	failUnchanged(t, r, first, ErrDuplicateMessage)

	// The same chain id with another signing key replaces the chain.
	other := NewRecord(testID)
	if _, err := other.DistributionMessage(nil); err != nil {
		t.Fatal(err)
	}
	other.states[0].chainID = skdm0.ChainID()
	imposter, err := other.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Process(imposter); err != nil {
		t.Fatal(err)
	}
	if len(r.states) != 1 || r.states[0].signingKey != imposter.SigningKey() {
		t.Fatal("a chain with a new signing key did not replace the old one")
	}
	failUnchanged(t, r, encrypt(t, g.sender, "second"), ErrInvalidSignature)
}

func TestMaxStates(t *testing.T) {
	r := NewRecord(testID)
	var ids []uint32
	for range MaxStates + 2 {
		s := NewRecord(testID)
		skdm, err := s.DistributionMessage(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Process(skdm); err != nil {
			t.Fatal(err)
		}
		ids = append([]uint32{skdm.ChainID()}, ids...)
	}
	got := r.ChainIDs()
	if fmt.Sprint(got) != fmt.Sprint(ids[:MaxStates]) {
		t.Fatalf("chains %v, want the newest %d of %v", got, MaxStates, ids)
	}
}

func TestRecordSerialization(t *testing.T) {
	g := newGroup(t, 1)
	cts := make([][]byte, 5)
	for i := range cts {
		cts[i] = encrypt(t, g.sender, fmt.Sprint("m", i))
	}
	mustDecrypt(t, g.members[0], cts[4], "m4") // leaves four skipped keys

	reload := func(r *Record) *Record {
		t.Helper()
		b := marshal(t, r)
		p, err := ParseRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(marshal(t, p), b) {
			t.Fatal("a parsed record does not marshal to the same bytes")
		}
		return p
	}
	sender, member := reload(g.sender), reload(g.members[0])
	if !sender.CanEncrypt() || member.CanEncrypt() || sender.DistributionID() != testID {
		t.Fatal("reloaded records lost their role or distribution")
	}
	mustDecrypt(t, member, cts[1], "m1")
	failUnchanged(t, member, cts[4], ErrDuplicateMessage)
	mustDecrypt(t, member, encrypt(t, sender, "after reload"), "after reload")

	if _, err := ParseRecord(marshal(t, NewRecord(testID))); err != nil {
		t.Fatalf("an empty record does not parse: %v", err)
	}
}

func TestParseRecordStrict(t *testing.T) {
	g := newGroup(t, 1)
	mustDecrypt(t, g.members[0], encrypt(t, g.sender, "skip"), "skip")
	ct := encrypt(t, g.sender, "a")
	encrypt(t, g.sender, "b")
	mustDecrypt(t, g.members[0], ct, "a") // not of iteration 0: one skipped key
	good := marshal(t, g.sender)

	st := g.sender.states[0].marshal()
	rec := func(states ...[]byte) []byte {
		b := wire.AppendBytesField([]byte{recordFormatV1}, recDistributionID, testID[:])
		for _, s := range states {
			b = wire.AppendBytesField(b, recState, s)
		}
		return b
	}
	otherPriv, _ := keys.GeneratePrivateKey(nil)
	skippedAhead := wire.AppendBytesField(bytes.Clone(st), stSkipped, make([]byte, skippedEntrySize))
	skippedAhead[len(skippedAhead)-skippedEntrySize] = 0xff // iteration 255, beyond the chain

	cases := map[string][]byte{
		"empty":               nil,
		"format 2":            append([]byte{2}, good[1:]...),
		"no distribution id":  wire.AppendBytesField([]byte{recordFormatV1}, recState, st),
		"short id":            wire.AppendBytesField([]byte{recordFormatV1}, recDistributionID, testID[:15]),
		"two ids":             wire.AppendBytesField(bytes.Clone(good), recDistributionID, testID[:]),
		"unknown field":       wire.AppendVarintField(bytes.Clone(good), 9, 1),
		"varint state":        wire.AppendVarintField(rec(), recState, 1),
		"truncated":           good[:len(good)-1],
		"same chain twice":    rec(st, st),
		"too many chains":     rec(st, st, st, st, st, st),
		"state unknown field": rec(wire.AppendVarintField(bytes.Clone(st), 9, 1)),
		"state repeated key":  rec(wire.AppendBytesField(bytes.Clone(st), stChainKey, make([]byte, 32))),
		"private mismatch":    rec(wire.AppendBytesField(g.members[0].states[0].marshal(), stPrivate, otherPriv.Bytes())),
		"no chain key":        rec(wire.AppendVarintField(wire.AppendVarintField(nil, stChainID, 1), stIteration, 0)),
		"skipped ahead":       rec(skippedAhead),
		"iteration too big":   rec(wire.AppendVarintField(nil, stIteration, 1<<32)),
	}
	for name, b := range cases {
		if _, err := ParseRecord(b); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ParseRecord(good); err != nil {
		t.Fatalf("the good record: %v", err)
	}
}

func TestParseMessageErrors(t *testing.T) {
	g := newGroup(t, 1)
	ct := encrypt(t, g.sender, "x")
	skdm, _ := g.sender.DistributionMessage(nil)
	sig := make([]byte, signatureSize)
	body := func(fields ...[]byte) []byte {
		b := []byte{0x33}
		for _, f := range fields {
			b = append(b, f...)
		}
		return append(b, sig...)
	}
	id := wire.AppendBytesField(nil, skmDistributionID, testID[:])
	chain := wire.AppendVarintField(nil, skmChainID, 7)
	iter := wire.AppendVarintField(nil, skmIteration, 0)
	cipher := wire.AppendBytesField(nil, skmCiphertext, make([]byte, 16))

	cases := map[string]struct {
		b    []byte
		want error
	}{
		"short":            {ct[:64], ErrInvalidMessage},
		"version 2":        {append([]byte{0x23}, ct[1:]...), ErrUnsupportedVersion},
		"version 4":        {append([]byte{0x43}, ct[1:]...), ErrUnsupportedVersion},
		"no ciphertext":    {body(id, chain, iter), ErrInvalidMessage},
		"no id":            {body(chain, iter, cipher), ErrInvalidMessage},
		"short id":         {body(wire.AppendBytesField(nil, skmDistributionID, testID[:15]), chain, iter, cipher), ErrInvalidMessage},
		"varint id":        {body(wire.AppendVarintField(nil, skmDistributionID, 1), chain, iter, cipher), ErrInvalidMessage},
		"bad protobuf":     {body([]byte{0x0a, 0x20}), ErrInvalidMessage},
		"skdm as message":  {skdm.Bytes(), ErrInvalidMessage},
		"too big":          {make([]byte, MaxMessageSize+1), ErrInvalidMessage},
		"ok despite extra": {body(id, chain, iter, cipher, wire.AppendVarintField(nil, 9, 1)), nil},
	}
	for name, c := range cases {
		_, err := ParseMessage(c.b)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// The low nibble of the version byte is ignored, as by libsignal.
	if _, err := ParseMessage(append([]byte{0x30}, ct[1:]...)); err != nil {
		t.Errorf("version byte 0x30: %v", err)
	}
}

func TestParseDistributionMessageErrors(t *testing.T) {
	sender := NewRecord(testID)
	skdm, err := sender.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	good := skdm.Bytes()
	p, err := ParseDistributionMessage(good)
	if err != nil {
		t.Fatal(err)
	}
	if p.DistributionID() != testID || p.ChainID() != skdm.ChainID() || p.Iteration() != 0 ||
		p.SigningKey() != skdm.SigningKey() || p.chainKey != sender.states[0].chain.key {
		t.Fatal("parsed distribution message differs")
	}
	field := func(num protowire.Number, v []byte) []byte {
		return wire.AppendBytesField([]byte{0x33}, num, v)
	}
	key := skdm.SigningKey().Bytes()
	badKey := append([]byte{0x06}, key[1:]...)
	cases := map[string][]byte{
		"short":       good[:64],
		"version 2":   append([]byte{0x23}, good[1:]...),
		"no key":      bytes.TrimSuffix(good, wire.AppendBytesField(nil, skdmSigningKey, key)),
		"bad key":     append(bytes.TrimSuffix(good, wire.AppendBytesField(nil, skdmSigningKey, key)), wire.AppendBytesField(nil, skdmSigningKey, badKey)...),
		"short chain": append(bytes.Clone(good), wire.AppendBytesField(nil, skdmChainKey, make([]byte, 31))...),
		"only a key":  field(skdmSigningKey, append(key, make([]byte, 40)...)),
	}
	for name, b := range cases {
		if _, err := ParseDistributionMessage(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestDistributionMessageRedacted(t *testing.T) {
	sender := NewRecord(testID)
	skdm, err := sender.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := hex.EncodeToString(sender.states[0].chain.key[:])
	for _, s := range []string{fmt.Sprint(skdm), fmt.Sprintf("%v %+v %#v", skdm, skdm, skdm), fmt.Sprintf("%v %+v %#v", sender, sender, sender), fmt.Sprintf("%x", skdm.String())} {
		if strings.Contains(s, secret) || strings.Contains(s, secret[:16]) {
			t.Fatalf("the chain key is printed: %s", s)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestRandomnessFailure(t *testing.T) {
	r := NewRecord(testID)
	if _, err := r.DistributionMessage(failingReader{}); err == nil {
		t.Fatal("no error without randomness")
	}
	if len(r.states) != 0 {
		t.Fatal("a failed creation left a chain")
	}
	if _, err := r.DistributionMessage(nil); err != nil {
		t.Fatal(err)
	}
	before := marshal(t, r)
	if _, err := r.Encrypt([]byte("x"), failingReader{}); err == nil {
		t.Fatal("encrypt signed without randomness")
	}
	if _, err := r.Rotate(failingReader{}); err == nil {
		t.Fatal("rotate without randomness")
	}
	if !bytes.Equal(before, marshal(t, r)) {
		t.Fatal("failed operations changed the record")
	}
}

func TestEncryptTooLarge(t *testing.T) {
	g := newGroup(t, 1)
	if _, err := g.sender.Encrypt(make([]byte, MaxPlaintextSize+1), nil); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("encrypt over the limit: %v", err)
	}
	big := make([]byte, MaxPlaintextSize)
	ct, err := g.sender.Encrypt(big, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decrypt(g.members[0], ct)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("largest message: %v", err)
	}
}

func TestDistributionID(t *testing.T) {
	const s = "d1d1d1d1-d1d1-41d1-81d1-d1d1d1d1d101"
	id, err := ParseDistributionID(strings.ToUpper(s))
	if err != nil || id != testID || id.String() != s {
		t.Fatalf("parse %s: %v %s", s, err, id)
	}
	for _, bad := range []string{"", s[:35], strings.ReplaceAll(s, "-", ""), s[:8] + "_" + s[9:], "g" + s[1:]} {
		if _, err := ParseDistributionID(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	r, err := NewDistributionID(nil)
	if err != nil {
		t.Fatal(err)
	}
	if r[6]>>4 != 4 || r[8]>>6 != 2 {
		t.Fatalf("%s is not a version 4 UUID", r)
	}
}
