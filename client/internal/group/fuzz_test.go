package group

import (
	"bytes"
	"testing"
)

// fuzzSeeds returns a few encoded states and changes: a creation, an edit
// and a leave.
func fuzzSeeds(f *testing.F) (states, changes [][]byte) {
	fx := newFixture(f)
	st2, c2, err := fx.st.SetTimer(fx.alice.key, nil, 3600)
	if err != nil {
		f.Fatal(err)
	}
	st3, c3, err := st2.Leave(fx.bob.key, nil)
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{fx.st.Bytes(), st2.Bytes(), st3.Bytes()}, [][]byte{fx.create.Bytes(), c2.Bytes(), c3.Bytes()}
}

func FuzzParseState(f *testing.F) {
	states, _ := fuzzSeeds(f)
	for _, b := range states {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseState(b)
		if err != nil {
			return
		}
		// Strict: what ParseState accepts is exactly what the encoder makes,
		// and it satisfies the invariants.
		if again := s.marshal(); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, again)
		}
		if err := s.check(); err != nil {
			t.Fatalf("parsed state breaks an invariant: %v", err)
		}
		if n, err := newState(s.id, s.version, s.title, s.timer, s.members); err != nil || n.hash != s.hash {
			t.Fatalf("parsed state does not rebuild: %v", err)
		}
	})
}

func FuzzParseSignedChange(f *testing.F) {
	states, changes := fuzzSeeds(f)
	for _, b := range changes {
		f.Add(b)
	}
	cur, err := ParseState(states[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseSignedChange(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Bytes(), b) {
			t.Fatal("Bytes differs from the input")
		}
		again := marshalSigned(marshalChange(c.previous, c.author, c.state.marshal()), c.signature)
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, again)
		}
		// Judging it must not panic; a change accepted on a known state
		// makes the next version of that group.
		for _, cs := range []*State{nil, cur} {
			st, d, err := Apply(cs, b, Sender{AccountID: c.author, Identity: c.state.members[0].Identity})
			if err != nil {
				continue
			}
			if cs != nil && (st.id != cs.id || st.version != cs.version+1 || c.previous != cs.hash || d == nil) {
				t.Fatal("accepted a change that is not the next version")
			}
		}
	})
}
