package spqr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/doorless/doorless/protocol/spqr/internal/erasure"
)

var testAuthKey = bytes.Repeat([]byte{41}, AuthKeySize)

// testRand returns a deterministic randomness source.
func testRand(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return rand.NewChaCha8(s)
}

func newPair(t testing.TB, maxJump uint32) (a, b *State) {
	t.Helper()
	a, err := NewState(Params{AuthKey: testAuthKey, Direction: A2B, MaxJump: maxJump})
	if err != nil {
		t.Fatal(err)
	}
	b, err = NewState(Params{AuthKey: testAuthKey, Direction: B2A, MaxJump: maxJump})
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func mustSend(t testing.TB, s *State, r io.Reader) (*State, []byte, []byte) {
	t.Helper()
	next, key, msg, err := s.Send(r)
	if err != nil {
		t.Fatalf("send from %v: %v", s, err)
	}
	if len(key) != keySize {
		t.Fatalf("send key of %d bytes", len(key))
	}
	return next, key, msg
}

func mustRecv(t testing.TB, s *State, msg, wantKey []byte) *State {
	t.Helper()
	next, key, err := s.Recv(msg)
	if err != nil {
		t.Fatalf("recv at %v: %v", s, err)
	}
	if !bytes.Equal(key, wantKey) {
		t.Fatalf("recv at %v: key differs from sender's", s)
	}
	return next
}

func roundTrip(t testing.TB, s *State) *State {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseState(b)
	if err != nil {
		t.Fatalf("ParseState(MarshalBinary(%v)): %v", s, err)
	}
	b2, _ := p.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatalf("%v: serialization is not stable", s)
	}
	return p
}

// TestLockstep mirrors the crate's lockstep_run_with_logging: strictly
// alternating messages. Every epoch needs 3 header chunks and 36 key chunks
// (the ciphertext chunks go the other way in parallel), so 300 rounds run
// several epochs.
func TestLockstep(t *testing.T) {
	a, b := newPair(t, 0)
	r := testRand(1)
	for range 300 {
		var ka, kb, msg []byte
		a, ka, msg = mustSend(t, a, r)
		b = mustRecv(t, b, msg, ka)
		b, kb, msg = mustSend(t, b, r)
		a = mustRecv(t, a, msg, kb)
	}
	if a.scka.epoch < 5 || b.scka.epoch < 5 {
		t.Fatalf("epochs did not advance: %v, %v", a, b)
	}
	if a.chain.currentEpoch < 4 || len(a.chain.links) > 3 {
		t.Fatalf("chain: epoch %d, %d links", a.chain.currentEpoch, len(a.chain.links))
	}
}

// inFlight is a message on its way, with the key its sender got.
type inFlight struct {
	msg, key []byte
}

// TestRandomConversation exchanges thousands of messages with random
// interleaving, reordering within a window and drops, checks that the keys
// agree, that the key agreement keeps completing epochs despite lost chunks,
// and that states survive serialization at random points.
func TestRandomConversation(t *testing.T) {
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 99))
		r := testRand(seed)
		a, b := newPair(t, 0)
		states := [2]*State{a, b}
		var queues [2][]inFlight // queues[i]: messages to party i
		delivered, dropped := 0, 0
		for step := range 6000 {
			i := rng.IntN(2)
			switch {
			case rng.IntN(2) == 0:
				var m inFlight
				states[i], m.key, m.msg = mustSend(t, states[i], r)
				if rng.IntN(10) == 0 {
					dropped++
				} else {
					queues[1-i] = append(queues[1-i], m)
				}
			case len(queues[i]) > 0:
				// Deliver one of the oldest few messages: reordering
				// without starving any message.
				j := rng.IntN(min(len(queues[i]), 4))
				m := queues[i][j]
				queues[i] = append(queues[i][:j], queues[i][j+1:]...)
				states[i] = mustRecv(t, states[i], m.msg, m.key)
				delivered++
			}
			if step%997 == 0 {
				states[i] = roundTrip(t, states[i])
			}
		}
		if states[0].scka.epoch < 10 {
			t.Errorf("seed %d: only reached %v and %v (%d delivered, %d dropped)", seed, states[0], states[1], delivered, dropped)
		}
	}
}

// TestLongOneWayStream sends many messages in one direction only: the
// sender keeps producing redundancy chunks, and no epoch can complete.
func TestLongOneWayStream(t *testing.T) {
	a, b := newPair(t, 0)
	r := testRand(2)
	for range 3000 {
		var k, msg []byte
		a, k, msg = mustSend(t, a, r)
		b = mustRecv(t, b, msg, k)
	}
	// Now B answers and the exchange completes as usual.
	for range 200 {
		var k, msg []byte
		a, k, msg = mustSend(t, a, r)
		b = mustRecv(t, b, msg, k)
		b, k, msg = mustSend(t, b, r)
		a = mustRecv(t, a, msg, k)
	}
	if a.scka.epoch < 3 {
		t.Fatalf("epochs did not advance: %v", a)
	}
}

// TestOutOfOrderAcrossEpochs delivers a message of the previous epoch
// after the receiver moved on: its key is still available.
func TestOutOfOrderAcrossEpochs(t *testing.T) {
	a, b := newPair(t, 0)
	r := testRand(3)
	var held []inFlight
	for round := 0; a.scka.epoch < 4; round++ {
		var k, msg []byte
		a, k, msg = mustSend(t, a, r)
		if round%25 == 0 {
			held = append(held, inFlight{msg, k})
		} else {
			b = mustRecv(t, b, msg, k)
		}
		b, k, msg = mustSend(t, b, r)
		a = mustRecv(t, a, msg, k)
		if round > 1000 {
			t.Fatal("no progress")
		}
		// Deliver held messages that are at most one epoch old.
		for len(held) > 0 {
			m, _, _ := parseMessage(held[0].msg)
			if m.epoch+1 < b.scka.epoch {
				break
			}
			b = mustRecv(t, b, held[0].msg, held[0].key)
			held = held[1:]
		}
	}
}

func TestReplayRejected(t *testing.T) {
	a, b := newPair(t, 0)
	r := testRand(4)
	var msgs [][]byte
	for range 100 {
		var k, msg []byte
		a, k, msg = mustSend(t, a, r)
		b = mustRecv(t, b, msg, k)
		msgs = append(msgs, msg)
		b, k, msg = mustSend(t, b, r)
		a = mustRecv(t, a, msg, k)
	}
	for _, msg := range msgs {
		_, _, err := b.Recv(msg)
		if !errors.Is(err, ErrKeyAlreadyUsed) && !errors.Is(err, ErrEpochOutOfRange) {
			t.Fatalf("replay: got %v", err)
		}
	}
	_, _, err := b.Recv(msgs[len(msgs)-1])
	if !errors.Is(err, ErrKeyAlreadyUsed) {
		t.Fatalf("replay of the newest message: got %v", err)
	}
}

// withIndex re-encodes a message with another key index.
func withIndex(t *testing.T, msg []byte, index uint32) []byte {
	t.Helper()
	m, _, err := parseMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	return m.marshal(index)
}

func TestKeyWindow(t *testing.T) {
	a, b := newPair(t, 0)
	r := testRand(5)
	var first inFlight
	var k, msg []byte
	a, first.key, first.msg = mustSend(t, a, r)
	for range defaultMaxOOOKeys {
		a, k, msg = mustSend(t, a, r)
	}
	// Index 2001 arrives first; index 1 is exactly max_ooo_keys old.
	b2 := mustRecv(t, b, msg, k)
	if _, _, err := b2.Recv(first.msg); err != nil {
		t.Fatalf("key at the edge of the window: %v", err)
	}
	_, k, msg = mustSend(t, a, r)
	b2 = mustRecv(t, b2, msg, k)
	if _, _, err := b2.Recv(first.msg); !errors.Is(err, ErrKeyTooOld) {
		t.Fatalf("key past the window: got %v", err)
	}

	// Jumps: exactly max_jump ahead is allowed, one more is not.
	_, _, err := b.Recv(withIndex(t, msg, defaultMaxJump+1))
	if !errors.Is(err, ErrJumpTooLarge) {
		t.Fatalf("jump: got %v", err)
	}
	if _, _, err := b.Recv(withIndex(t, msg, defaultMaxJump)); err != nil {
		t.Fatalf("maximal jump: %v", err)
	}

	// A session with oneself allows any jump.
	_, self := newPair(t, math.MaxUint32)
	if _, _, err := self.Recv(withIndex(t, msg, defaultMaxJump+5)); err != nil {
		t.Fatalf("self-session jump: %v", err)
	}
}

func TestIndexZeroHasNoKey(t *testing.T) {
	a, b := newPair(t, 0)
	_, _, msg := mustSend(t, a, testRand(6))
	_, key, err := b.Recv(withIndex(t, msg, 0))
	if err != nil || key != nil {
		t.Fatalf("epoch 1, index 0: key %x, err %v", key, err)
	}
}

func TestMalformedMessages(t *testing.T) {
	a, b := newPair(t, 0)
	_, _, msg := mustSend(t, a, testRand(7)) // 1, epoch 1, index 1, Hdr, chunk 0, 32 bytes
	if len(msg) != 37 {
		t.Fatalf("first message is %d bytes", len(msg))
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrUnsupportedVersion},
		{"version 0", []byte{0, 1, 1, 0}, ErrUnsupportedVersion},
		{"version 2", append([]byte{2}, msg[1:]...), ErrUnsupportedVersion},
		{"version only", []byte{1}, ErrMalformedMessage},
		{"epoch 0", []byte{1, 0, 1, 0}, ErrMalformedMessage},
		{"unterminated epoch", []byte{1, 0x80, 0x80}, ErrMalformedMessage},
		{"11-byte varint", append([]byte{1}, bytes.Repeat([]byte{0x81}, 11)...), ErrMalformedMessage},
		{"index over 32 bits", []byte{1, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0}, ErrMalformedMessage},
		{"no type", []byte{1, 1, 1}, ErrMalformedMessage},
		{"type 7", []byte{1, 1, 1, 7}, ErrMalformedMessage},
		{"truncated chunk", msg[:len(msg)-1], ErrMalformedMessage},
		{"chunk index over 16 bits", append([]byte{1, 1, 1, 1, 0x80, 0x80, 0x04}, make([]byte, 32)...), ErrMalformedMessage},
		{"future epoch", []byte{1, 3, 1, 0}, ErrEpochOutOfRange},
	} {
		if _, _, err := b.Recv(tc.msg); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}

	// Trailing data is ignored, as the crate does.
	if _, _, err := b.Recv(append(bytes.Clone(msg), 1, 2, 3)); err != nil {
		t.Errorf("trailing data: %v", err)
	}
	// Non-minimal varints are accepted, as the crate does.
	long := append([]byte{1, 0x81, 0x00, 0x81, 0x80, 0x00}, msg[3:]...)
	if _, _, err := b.Recv(long); err != nil {
		t.Errorf("non-minimal varints: %v", err)
	}
}

// runUntil exchanges lockstep messages, letting tamper modify those from a
// (nil to pass them on unchanged), until the receiver b reports an error or
// done returns true.
func runUntil(t *testing.T, tamperA func(*sckaMessage) bool, tamperB func(*sckaMessage) bool) error {
	t.Helper()
	a, b := newPair(t, 0)
	r := testRand(8)
	tamper := func(msg []byte, f func(*sckaMessage) bool) []byte {
		m, index, err := parseMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		if f != nil && f(&m) {
			return m.marshal(index)
		}
		return msg
	}
	for range 200 {
		var msg []byte
		var err error
		a, _, msg = mustSend(t, a, r)
		if b, _, err = b.Recv(tamper(msg, tamperA)); err != nil {
			return err
		}
		b, _, msg = mustSend(t, b, r)
		if a, _, err = a.Recv(tamper(msg, tamperB)); err != nil {
			return err
		}
	}
	return nil
}

func TestTamperedPayloads(t *testing.T) {
	flip := func(typ payloadType) func(*sckaMessage) bool {
		return func(m *sckaMessage) bool {
			if m.typ != typ {
				return false
			}
			m.chunk.Data[5] ^= 1
			return true
		}
	}
	if err := runUntil(t, flip(payloadHdr), nil); !errors.Is(err, ErrAuthentication) {
		t.Errorf("tampered header: got %v", err)
	}
	if err := runUntil(t, flip(payloadEk), nil); !errors.Is(err, ErrBadEncapsulationKey) {
		t.Errorf("tampered encapsulation key: got %v", err)
	}
	if err := runUntil(t, nil, flip(payloadCt2)); !errors.Is(err, ErrAuthentication) {
		t.Errorf("tampered ciphertext 2: got %v", err)
	}
	if err := runUntil(t, nil, flip(payloadCt1)); !errors.Is(err, ErrAuthentication) {
		t.Errorf("tampered ciphertext 1: got %v", err)
	}
	if err := runUntil(t, nil, nil); err != nil {
		t.Errorf("untampered: %v", err)
	}
}

// TestImmutable checks that Send and Recv leave the receiver unchanged,
// including when Recv fails, and that an old state can be used again.
func TestImmutable(t *testing.T) {
	a, b := newPair(t, 0)
	r := testRand(9)
	for range 150 {
		beforeA, beforeB := mustMarshal(t, a), mustMarshal(t, b)
		a2, k, msg := mustSend(t, a, r)
		bad := bytes.Clone(msg)
		bad[len(bad)-1] ^= 1
		b.Recv(bad)
		b2 := mustRecv(t, b, msg, k)
		b3 := mustRecv(t, b, msg, k) // the same old state again
		if !bytes.Equal(mustMarshal(t, b3), mustMarshal(t, b2)) {
			t.Fatal("receiving twice from one state gave different states")
		}
		if !bytes.Equal(beforeA, mustMarshal(t, a)) {
			t.Fatal("Send modified its receiver")
		}
		if !bytes.Equal(beforeB, mustMarshal(t, b)) {
			t.Fatal("Recv modified its receiver")
		}
		b2, k, msg = mustSend(t, b2, r)
		a, b = mustRecv(t, a2, msg, k), b2
	}
}

func mustMarshal(t *testing.T, s *State) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewStateParams(t *testing.T) {
	if _, err := NewState(Params{AuthKey: make([]byte, 31)}); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("short key: %v", err)
	}
	if _, err := NewState(Params{AuthKey: testAuthKey, Direction: 2}); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("bad direction: %v", err)
	}
	s, err := NewState(Params{AuthKey: testAuthKey, Direction: B2A, MaxJump: 7, MaxOOOKeys: 9})
	if err != nil {
		t.Fatal(err)
	}
	if s.chain.params != (chainParams{7, 9}) {
		t.Errorf("params %+v", s.chain.params)
	}
}

func TestNoSecretsInStrings(t *testing.T) {
	a, _ := newPair(t, 0)
	a, k, _ := mustSend(t, a, testRand(10))
	for _, s := range []string{a.String(), a.LogValue().String()} {
		if strings.Contains(s, string(k)) || strings.Contains(strings.ToLower(s), "2929") {
			t.Errorf("string may contain key material: %q", s)
		}
		if !strings.Contains(s, "KeysSampled") {
			t.Errorf("string lacks the state name: %q", s)
		}
	}
}

// TestParseStateRejects checks truncations and corruptions of real states.
func TestParseStateRejects(t *testing.T) {
	for _, s := range conversationStates(t, 11, 400, 23) {
		b := mustMarshal(t, s)
		for n := range len(b) {
			if _, err := ParseState(b[:n]); !errors.Is(err, ErrMalformedState) {
				t.Fatalf("%v truncated to %d bytes: got %v", s, n, err)
			}
		}
		if _, err := ParseState(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformedState) {
			t.Fatalf("%v with a trailing byte: got %v", s, err)
		}
	}
}

// conversationStates returns the states of both parties every few rounds of
// a lockstep conversation.
func conversationStates(t testing.TB, seed uint64, rounds, every int) []*State {
	t.Helper()
	a, b := newPair(t, 0)
	r := testRand(seed)
	out := []*State{a, b}
	for i := range rounds {
		var k, msg []byte
		a, k, msg = mustSend(t, a, r)
		b = mustRecv(t, b, msg, k)
		b, k, msg = mustSend(t, b, r)
		a = mustRecv(t, a, msg, k)
		if i%every == 0 {
			out = append(out, a, b)
		}
	}
	return out
}

func BenchmarkSendRecv(b *testing.B) {
	for _, tc := range []struct {
		name   string
		rounds int // lockstep rounds before measuring
	}{{"hdr", 1}, {"ek", 20}} {
		b.Run(tc.name, func(b *testing.B) {
			x, y := newPair(b, 0)
			r := testRand(12)
			for range tc.rounds {
				var k, msg []byte
				x, k, msg = mustSend(b, x, r)
				y = mustRecv(b, y, msg, k)
				y, k, msg = mustSend(b, y, r)
				x = mustRecv(b, x, msg, k)
			}
			// One-way stream: measures the steady per-message cost of the
			// current state's chunks, without epoch changes.
			for b.Loop() {
				var msg []byte
				x, _, msg, _ = x.Send(r)
				y, _, _ = y.Recv(msg)
			}
		})
	}
}

// TestConcurrentUse sends and receives from shared states in parallel,
// including the first use of lazily computed erasure-code polynomials; run
// with -race.
func TestConcurrentUse(t *testing.T) {
	a, b := newPair(t, 0)
	r := testRand(16)
	// Stop right before A's first redundancy chunk of the encapsulation key.
	for a.scka.kind != kindHeaderSent {
		var k, msg []byte
		a, k, msg = mustSend(t, a, r)
		b = mustRecv(t, b, msg, k)
		b, k, msg = mustSend(t, b, r)
		a = mustRecv(t, a, msg, k)
	}
	nextChunk := func() uint32 { return binary.BigEndian.Uint32(a.scka.enc.AppendBinary(nil)) }
	for nextChunk() < ekPayloadSize/erasure.ChunkSize {
		var k, msg []byte
		a, k, msg = mustSend(t, a, r)
		b = mustRecv(t, b, msg, k)
	}
	done := make(chan error)
	for g := range 8 {
		go func() {
			_, k, msg, err := a.Send(testRand(uint64(100 + g)))
			if err == nil {
				var got []byte
				_, got, err = b.Recv(msg)
				if err == nil && !bytes.Equal(got, k) {
					err = errors.New("keys differ")
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
