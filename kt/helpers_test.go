package kt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/kt/vrf"
)

const testOrigin = "doorless.example/kt"

// t0 is the tests' clock start.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testRand is a deterministic randomness source.
func testRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return rand.NewChaCha8(s)
}

// keys are a log's keys; two fixtures with the same keys are two branches
// of one log (a split view).
type keys struct {
	signer   note.Signer
	verifier note.Verifier
	vrf      *vrf.PrivateKey
}

func newKeys(t testing.TB, seed uint64) *keys {
	t.Helper()
	r := testRand(seed)
	skey, vkey, err := note.GenerateKey(r, "doorless.example/kt")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	k, err := vrf.GenerateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	return &keys{signer: s, verifier: v, vrf: k}
}

// fixture is a server (Log and its store of entries) and a client.
type fixture struct {
	t     testing.TB
	keys  *keys
	log   *Log
	store map[Index]*Entry
	rand  *rand.ChaCha8
	now   time.Time
	// batches are the epochs appended, for auditors.
	batches []*Batch
}

func newFixture(t testing.TB, k *keys) *fixture {
	t.Helper()
	l, err := NewLog(LogConfig{Origin: testOrigin, Signer: k.signer, VRF: k.vrf})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, keys: k, log: l, store: make(map[Index]*Entry), rand: testRand(99), now: t0}
}

func (f *fixture) verifier() *Verifier {
	return &Verifier{Origin: testOrigin, LogKey: f.keys.verifier, VRFKey: f.keys.vrf.Public(), MaxAuditLag: time.Hour}
}

// set appends one epoch setting label=value pairs.
func (f *fixture) set(kv ...string) *Batch {
	f.t.Helper()
	var us []Update
	for k := 0; k < len(kv); k += 2 {
		us = append(us, Update{Label: []byte(kv[k]), Value: []byte(kv[k+1])})
	}
	return f.append(us)
}

func (f *fixture) append(us []Update) *Batch {
	f.t.Helper()
	f.now = f.now.Add(time.Second)
	b, err := f.log.Append(us, f.now, f.rand)
	if err != nil {
		f.t.Fatal(err)
	}
	for k := range b.Entries {
		e := b.Entries[k]
		f.store[e.Leaf.Index] = &e
	}
	f.batches = append(f.batches, b)
	return b
}

func (f *fixture) entry(i Index) (*Entry, error) {
	e := f.store[i]
	if e == nil {
		return nil, nil
	}
	c := *e
	return &c, nil
}

// prove asks the log for labels and returns the proof after an encoding
// round trip.
func (f *fixture) prove(known uint64, labels ...string) *LookupProof {
	f.t.Helper()
	var ls [][]byte
	for _, l := range labels {
		ls = append(ls, []byte(l))
	}
	p, err := f.log.Prove(ls, known, f.entry)
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := p.MarshalBinary()
	if err != nil {
		f.t.Fatal(err)
	}
	var q LookupProof
	if err := q.UnmarshalBinary(b); err != nil {
		f.t.Fatal(err)
	}
	b2, err := q.MarshalBinary()
	if err != nil || !bytes.Equal(b, b2) {
		f.t.Fatalf("re-encoding differs: %v", err)
	}
	return &q
}

func labelsOf(ls ...string) [][]byte {
	var out [][]byte
	for _, l := range ls {
		out = append(out, []byte(l))
	}
	return out
}

// newAuditorKey makes a cosigner and its verifier.
func newAuditorKey(t testing.TB, name string, seed uint64) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := GenerateCosignerKey(testRand(seed), name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewCosigner(skey, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewCosignatureVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// audit replays the fixture's batches from a's size on into a.
func (f *fixture) audit(a *Auditor) {
	f.t.Helper()
	for _, b := range f.batches[a.Head().Size:] {
		enc, err := b.Changes.MarshalBinary()
		if err != nil {
			f.t.Fatal(err)
		}
		var c EpochChanges
		if err := c.UnmarshalBinary(enc); err != nil {
			f.t.Fatal(err)
		}
		if err := a.Apply(&c); err != nil {
			f.t.Fatal(err)
		}
	}
}

func idx(n int) Index {
	var i Index
	copy(i[:], fmt.Sprintf("%032d", n))
	return i
}
