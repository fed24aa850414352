package spqr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// fuzzStates returns one state of each stage of the key agreement, on
// both sides.
func fuzzStates(f *testing.F) []*State {
	type stage struct {
		dir  Direction
		kind sckaKind
	}
	seen := map[stage]bool{}
	var out []*State
	for _, s := range conversationStates(f, 13, 130, 1) {
		if st := (stage{s.dir, s.scka.kind}); !seen[st] {
			seen[st] = true
			out = append(out, s)
		}
	}
	return out
}

// conversationMessages returns the messages of a lockstep conversation.
func conversationMessages(tb testing.TB, seed uint64, rounds int) [][]byte {
	a, b := newPair(tb, 0)
	r := testRand(seed)
	var out [][]byte
	for range rounds {
		var k, msg []byte
		a, k, msg = mustSend(tb, a, r)
		b = mustRecv(tb, b, msg, k)
		out = append(out, msg)
		b, k, msg = mustSend(tb, b, r)
		a = mustRecv(tb, a, msg, k)
		out = append(out, msg)
	}
	return out
}

// FuzzRecv feeds arbitrary message bytes to states at every stage. Recv
// must not panic, must return a key of 32 bytes or an error, and the state
// it returns must serialize.
func FuzzRecv(f *testing.F) {
	for _, msg := range conversationMessages(f, 14, 130) {
		f.Add(msg)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 1, 7})
	states := fuzzStates(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, s := range states {
			next, key, err := s.Recv(msg)
			if err != nil {
				if next != nil || key != nil {
					t.Fatal("error with a result")
				}
				continue
			}
			if key != nil && len(key) != keySize {
				t.Fatalf("key of %d bytes", len(key))
			}
			roundTrip(t, next)
		}
	})
}

// FuzzParseState feeds arbitrary bytes to ParseState. It must not panic;
// whatever it accepts must re-serialize to the same bytes and be usable
// for sending and receiving without panicking.
func FuzzParseState(f *testing.F) {
	for _, s := range fuzzStates(f) {
		b, err := s.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	msgs := conversationMessages(f, 15, 40)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseState(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedState) {
				t.Fatalf("error %v does not wrap ErrMalformedState", err)
			}
			return
		}
		if out := mustMarshal(t, s); !bytes.Equal(out, b) {
			t.Fatal("accepted state does not re-serialize to its input")
		}
		s.Send(testRand(1))
		for _, msg := range msgs {
			s.Recv(msg)
		}
	})
}

// TestParseStateBoundedAllocation checks that counts in the input cannot
// make ParseState allocate more than the input could describe.
func TestParseStateBoundedAllocation(t *testing.T) {
	a, _ := newPair(t, 0)
	b := mustMarshal(t, a)
	// Header 10, SCKA 73, chain 16 + 32, then the link count.
	linkCount := 10 + 73 + 48
	if got := binary.BigEndian.Uint32(b[linkCount:]); got != 1 {
		t.Fatalf("link count at the expected offset is %d", got)
	}
	huge := bytes.Clone(b)
	binary.BigEndian.PutUint32(huge[linkCount:], 0xffffffff)
	skipped := bytes.Clone(b)
	binary.BigEndian.PutUint32(skipped[linkCount+4+1+4+32+4+1+4+32:], 0xffffffff)
	for _, in := range [][]byte{huge, skipped} {
		allocs := testing.AllocsPerRun(10, func() {
			if _, err := ParseState(in); err == nil {
				t.Fatal("accepted")
			}
		})
		if allocs > 10 {
			t.Errorf("%v allocations for a rejected state", allocs)
		}
	}
}
