package libsignal_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/doorless/doorless/interop/libsignal"
	"github.com/doorless/doorless/protocol/senderkey"
)

// groupMessages is how many messages each direction exchanges.
const groupMessages = 210

// groupText is the i-th test plaintext: lengths from empty to a few hundred bytes, across
// AES block boundaries.
func groupText(i int) string {
	switch i % 5 {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("group message %d", i)
	case 2:
		return strings.Repeat("0123456789abcdef", i%4) // whole blocks: a full padding block
	case 3:
		return fmt.Sprintf("%d: %s", i, strings.Repeat("é", i))
	}
	return strings.Repeat("x", i)
}

// deliveryOrder is a permutation of 0..n-1 that is mostly in order but holds some
// messages back and swaps neighbours, as a network might deliver them.
func deliveryOrder(n int, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 7))
	order := make([]int, 0, n)
	var held []int
	for i := range n {
		switch {
		case r.IntN(8) == 0:
			held = append(held, i) // delivered at the end
		case len(order) > 0 && r.IntN(5) == 0:
			last := order[len(order)-1]
			order = append(order[:len(order)-1], i, last)
		default:
			order = append(order, i)
		}
	}
	r.Shuffle(len(held), func(a, b int) { held[a], held[b] = held[b], held[a] })
	return append(order, held...)
}

func newDistributionID(t *testing.T) senderkey.DistributionID {
	t.Helper()
	id, err := senderkey.NewDistributionID(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// goReceive makes a Go member's record of a sender from its distribution message.
func goReceive(t *testing.T, skdm []byte) *senderkey.Record {
	t.Helper()
	m, err := senderkey.ParseDistributionMessage(skdm)
	if err != nil {
		t.Fatalf("parse libsignal's distribution message: %v", err)
	}
	r := senderkey.NewRecord(m.DistributionID())
	if err := r.Process(m); err != nil {
		t.Fatal(err)
	}
	return r
}

func goGroupDecrypt(r *senderkey.Record, b []byte) ([]byte, error) {
	m, err := senderkey.ParseMessage(b)
	if err != nil {
		return nil, err
	}
	return r.Decrypt(m)
}

func mustGoGroupDecrypt(t *testing.T, r *senderkey.Record, b []byte, want string) {
	t.Helper()
	got, err := goGroupDecrypt(r, b)
	if err != nil {
		t.Fatalf("Go decrypt (want %q): %v", want, err)
	}
	if !bytes.Equal(got, []byte(want)) {
		t.Fatalf("Go decrypt: got %q, want %q", got, want)
	}
}

func mustLibGroupDecrypt(t *testing.T, p *libsignal.Peer, from libsignal.Address, b []byte, want string) {
	t.Helper()
	got, err := p.GroupDecrypt(from, b)
	if err != nil {
		t.Fatalf("libsignal decrypt (want %q): %v", want, err)
	}
	if !bytes.Equal(got, []byte(want)) {
		t.Fatalf("libsignal decrypt: got %q, want %q", got, want)
	}
}

func goGroupEncrypt(t *testing.T, r *senderkey.Record, text string) []byte {
	t.Helper()
	b, err := r.Encrypt([]byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var goSender = libsignal.Address{Name: goName, DeviceID: 1}

// TestInteropSenderKeyGoToLibsignal: Go makes the sender key and its distribution
// message; libsignal processes it and decrypts Go's messages, some out of order.
func TestInteropSenderKeyGoToLibsignal(t *testing.T) {
	bob, _ := libsignal.StartTest(t, libName, 2)
	id := newDistributionID(t)
	sender := senderkey.NewRecord(id)
	skdm, err := sender.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}

	info, err := bob.ParseSenderKeyDistribution(skdm.Bytes())
	if err != nil {
		t.Fatalf("libsignal does not parse Go's distribution message: %v", err)
	}
	if info.DistributionID != id.String() || info.ChainID != skdm.ChainID() || info.Iteration != 0 || len(info.ChainKey) != 32 {
		t.Fatalf("libsignal reads %+v from %v", info, skdm)
	}
	if err := bob.SenderKeyProcess(goSender, skdm.Bytes()); err != nil {
		t.Fatal(err)
	}

	cts := make([][]byte, groupMessages)
	for i := range cts {
		cts[i] = goGroupEncrypt(t, sender, groupText(i))
	}
	m, err := bob.ParseSenderKeyMessage(cts[3])
	if err != nil {
		t.Fatalf("libsignal does not parse Go's message: %v", err)
	}
	if m.DistributionID != id.String() || m.ChainID != skdm.ChainID() || m.Iteration != 3 || !bytes.Equal(m.Serialized, cts[3]) {
		t.Fatalf("libsignal reads %+v", m)
	}

	order := deliveryOrder(len(cts), 1)
	if order[0] == 0 && order[len(order)-1] == len(order)-1 {
		t.Fatal("the delivery order is not out of order")
	}
	for _, i := range order {
		mustLibGroupDecrypt(t, bob, goSender, cts[i], groupText(i))
	}

	// A replay, a forged signature and an unknown chain are refused by libsignal.
	if _, err := bob.GroupDecrypt(goSender, cts[17]); !errors.Is(err, libsignal.ErrDuplicatedMessage) {
		t.Errorf("replay: %v", err)
	}
	next := goGroupEncrypt(t, sender, "next")
	bad := bytes.Clone(next)
	bad[len(bad)-1] ^= 1
	if _, err := bob.GroupDecrypt(goSender, bad); !errors.Is(err, libsignal.ErrSignatureValidationFailed) {
		t.Errorf("forged signature: %v", err)
	}
	mustLibGroupDecrypt(t, bob, goSender, next, "next")

	// A second distribution message reuses the chain at its current iteration, and
	// libsignal keeps its own further state.
	again, err := sender.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.ChainID() != skdm.ChainID() || again.Iteration() != groupMessages+1 {
		t.Fatalf("second distribution message: %v", again)
	}
	if err := bob.SenderKeyProcess(goSender, again.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.GroupDecrypt(goSender, next); !errors.Is(err, libsignal.ErrDuplicatedMessage) {
		t.Errorf("replay after a repeated distribution message: %v", err)
	}
}

// TestInteropSenderKeyLibsignalToGo: libsignal makes the sender key
// (SenderKeyDistributionMessage.create); Go processes it and decrypts libsignal's
// groupEncrypt output, out of order and across a save and reload of its record.
func TestInteropSenderKeyLibsignalToGo(t *testing.T) {
	alice, _ := libsignal.StartTest(t, libName, 3)
	id := newDistributionID(t)
	d, err := alice.SenderKeyCreate(id.String())
	if err != nil {
		t.Fatal(err)
	}
	if d.ChainID >= 1<<31 || d.Iteration != 0 {
		t.Fatalf("libsignal's distribution message: chain %d iteration %d", d.ChainID, d.Iteration)
	}
	rec := goReceive(t, d.Body)
	if rec.DistributionID() != id || rec.ChainIDs()[0] != d.ChainID {
		t.Fatalf("Go reads distribution %s chains %v; libsignal made %s chain %d", rec.DistributionID(), rec.ChainIDs(), id, d.ChainID)
	}

	cts := make([][]byte, groupMessages)
	for i := range cts {
		if cts[i], err = alice.GroupEncrypt(id.String(), []byte(groupText(i))); err != nil {
			t.Fatal(err)
		}
	}
	for n, i := range deliveryOrder(len(cts), 2) {
		if n == len(cts)/2 {
			b, err := rec.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if rec, err = senderkey.ParseRecord(b); err != nil {
				t.Fatal(err)
			}
		}
		m, err := senderkey.ParseMessage(cts[i])
		if err != nil {
			t.Fatal(err)
		}
		if m.Iteration() != uint32(i) || m.ChainID() != d.ChainID || m.DistributionID() != id {
			t.Fatalf("message %d: iteration %d chain %d", i, m.Iteration(), m.ChainID())
		}
		mustGoGroupDecrypt(t, rec, cts[i], groupText(i))
	}

	if _, err := goGroupDecrypt(rec, cts[42]); !errors.Is(err, senderkey.ErrDuplicateMessage) {
		t.Errorf("replay: %v", err)
	}
	next, err := alice.GroupEncrypt(id.String(), []byte("next"))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(next)
	bad[len(bad)-5] ^= 1 // inside the signature
	if _, err := goGroupDecrypt(rec, bad); !errors.Is(err, senderkey.ErrInvalidSignature) {
		t.Errorf("forged: %v", err)
	}
	mustGoGroupDecrypt(t, rec, next, "next")

	// A resent distribution message (create again) names the chain at its current
	// iteration; processing it keeps Go's state.
	d2, err := alice.SenderKeyCreate(id.String())
	if err != nil {
		t.Fatal(err)
	}
	if d2.ChainID != d.ChainID || d2.Iteration != groupMessages+1 {
		t.Fatalf("libsignal's second distribution message: chain %d iteration %d", d2.ChainID, d2.Iteration)
	}
	m2, err := senderkey.ParseDistributionMessage(d2.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Process(m2); err != nil {
		t.Fatal(err)
	}
	if _, err := goGroupDecrypt(rec, next); !errors.Is(err, senderkey.ErrDuplicateMessage) {
		t.Errorf("replay after a repeated distribution message: %v", err)
	}
}

// TestInteropSenderKeyRotationGoSender: Go sends to two libsignal members; one leaves,
// Go rotates and gives the new chain to the other only.
func TestInteropSenderKeyRotationGoSender(t *testing.T) {
	stays, _ := libsignal.StartTest(t, libName, 4)
	leaves, _ := libsignal.StartTest(t, "c9a5f0e2-7b3d-4f61-a8e4-5d2c1b0a9f8e", 5)
	id := newDistributionID(t)
	sender := senderkey.NewRecord(id)
	skdm, err := sender.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*libsignal.Peer{stays, leaves} {
		if err := p.SenderKeyProcess(goSender, skdm.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	before := goGroupEncrypt(t, sender, "before")
	late := goGroupEncrypt(t, sender, "late on the old chain")
	mustLibGroupDecrypt(t, stays, goSender, before, "before")
	mustLibGroupDecrypt(t, leaves, goSender, before, "before")

	rotated, err := sender.Rotate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ChainID() == skdm.ChainID() {
		t.Fatal("rotation kept the chain id")
	}
	if err := stays.SenderKeyProcess(goSender, rotated.Bytes()); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		text := fmt.Sprint("after rotation ", i)
		ct := goGroupEncrypt(t, sender, text)
		mustLibGroupDecrypt(t, stays, goSender, ct, text)
		if _, err := leaves.GroupDecrypt(goSender, ct); libsignal.KindOf(err) != libsignal.KindNoSenderKeyState {
			t.Fatalf("the member who left decrypts, or fails otherwise: %v", err)
		}
	}
	mustLibGroupDecrypt(t, stays, goSender, late, "late on the old chain")
}

// TestInteropSenderKeyRotationLibsignalSender: libsignal sends to two Go members; one
// leaves, libsignal rotates (deletes its sender key and creates a new one) and gives the
// new chain to the other only.
func TestInteropSenderKeyRotationLibsignalSender(t *testing.T) {
	alice, _ := libsignal.StartTest(t, libName, 6)
	id := newDistributionID(t)
	d, err := alice.SenderKeyCreate(id.String())
	if err != nil {
		t.Fatal(err)
	}
	stays, leaves := goReceive(t, d.Body), goReceive(t, d.Body)
	before, err := alice.GroupEncrypt(id.String(), []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	late, err := alice.GroupEncrypt(id.String(), []byte("late on the old chain"))
	if err != nil {
		t.Fatal(err)
	}
	mustGoGroupDecrypt(t, stays, before, "before")
	mustGoGroupDecrypt(t, leaves, before, "before")

	if err := alice.DeleteSenderKey(id.String()); err != nil {
		t.Fatal(err)
	}
	d2, err := alice.SenderKeyCreate(id.String())
	if err != nil {
		t.Fatal(err)
	}
	if d2.ChainID == d.ChainID || d2.Iteration != 0 {
		t.Fatalf("rotation: chain %d -> %d, iteration %d", d.ChainID, d2.ChainID, d2.Iteration)
	}
	m2, err := senderkey.ParseDistributionMessage(d2.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := stays.Process(m2); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		text := fmt.Sprint("after rotation ", i)
		ct, err := alice.GroupEncrypt(id.String(), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		mustGoGroupDecrypt(t, stays, ct, text)
		if _, err := goGroupDecrypt(leaves, ct); !errors.Is(err, senderkey.ErrNoSenderKeyState) {
			t.Fatalf("the member who left decrypts, or fails otherwise: %v", err)
		}
	}
	mustGoGroupDecrypt(t, stays, late, "late on the old chain")
	if ids := stays.ChainIDs(); len(ids) != 2 || ids[0] != d2.ChainID || ids[1] != d.ChainID {
		t.Fatalf("chains %v", ids)
	}
}

// TestInteropSenderKeyBothWays: a Go device and a libsignal device each send to the
// other in one group, messages interleaved, each side's record of the other kept apart
// from its own.
func TestInteropSenderKeyBothWays(t *testing.T) {
	lib, _ := libsignal.StartTest(t, libName, 7)
	id := newDistributionID(t)
	own := senderkey.NewRecord(id)
	skdm, err := own.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := lib.SenderKeyProcess(goSender, skdm.Bytes()); err != nil {
		t.Fatal(err)
	}
	d, err := lib.SenderKeyCreate(id.String())
	if err != nil {
		t.Fatal(err)
	}
	ofLib := goReceive(t, d.Body)
	for i := range 30 {
		text := groupText(i)
		mustLibGroupDecrypt(t, lib, goSender, goGroupEncrypt(t, own, text), text)
		ct, err := lib.GroupEncrypt(id.String(), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		mustGoGroupDecrypt(t, ofLib, ct, text)
	}
	// Go's own message, given to Go's record of libsignal, is refused: another chain.
	if _, err := goGroupDecrypt(ofLib, goGroupEncrypt(t, own, "mine")); !errors.Is(err, senderkey.ErrNoSenderKeyState) {
		t.Errorf("own message in the record of another sender: %v", err)
	}
}
