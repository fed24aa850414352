package kt

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"
)

// fuzzSeeds returns real encodings to seed the fuzz targets with.
func fuzzSeeds(f *testing.F) (proofs [][]byte, changes [][]byte, checkpoints [][]byte) {
	f.Helper()
	fx := newFixture(f, newKeys(f, 20))
	fx.set("alice", "A", "bob", "B", "carol", "")
	fx.set("alice", "A2")
	a := NewAuditor(testOrigin, fx.keys.verifier)
	fx.audit(a)
	s, v := newAuditorKey(f, "auditor.example/1", 1)
	if _, err := a.Cosign(fx.batches[0].Checkpoint, s, fx.now); err == nil {
		f.Fatal("cosigned an old checkpoint")
	}
	c, err := a.Cosign(fx.log.Checkpoint(), s, fx.now)
	if err != nil {
		f.Fatal(err)
	}
	if err := fx.log.AddCosignature(c, v); err != nil {
		f.Fatal(err)
	}
	fx.set("dave", "D")
	for _, p := range []*LookupProof{fx.prove(0, "alice"), fx.prove(1, "bob", "carol", "nobody"), fx.prove(3, "dave")} {
		b, err := p.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		proofs = append(proofs, b)
	}
	for _, b := range fx.batches {
		enc, err := b.Changes.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		changes = append(changes, enc)
		checkpoints = append(checkpoints, b.Checkpoint)
	}
	return proofs, changes, append(checkpoints, c)
}

func FuzzLookupProof(f *testing.F) {
	proofs, _, _ := fuzzSeeds(f)
	for _, p := range proofs {
		f.Add(p)
	}
	fx := newFixture(f, newKeys(f, 20))
	v := fx.verifier()
	v.MaxEpochAge = time.Hour
	f.Fuzz(func(t *testing.T, b []byte) {
		var p LookupProof
		if err := p.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("not ErrMalformed: %v", err)
			}
			return
		}
		again, err := p.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("not canonical: %v", err)
		}
		// Verify never panics and fails with a sentinel.
		_, _, err = v.Verify(&Head{Size: 1}, labelsOf("alice", "bob", "carol", "nobody")[:max(1, min(4, len(p.Entries)))], &p, t0)
		if err != nil && !isSentinel(err) {
			t.Fatalf("not a sentinel: %v", err)
		}
	})
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrMalformed, ErrInvalidProof, ErrBadCheckpoint, ErrMissingCosignature, ErrInconsistent, ErrAuditFailed, ErrStale} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzEpochChanges(f *testing.F) {
	_, changes, _ := fuzzSeeds(f)
	for _, c := range changes {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c EpochChanges
		if err := c.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("not ErrMalformed: %v", err)
			}
			return
		}
		again, err := c.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("not canonical: %v", err)
		}
		// An auditor that has seen nothing takes or refuses it whole.
		a := NewAuditor(testOrigin, nil)
		if err := a.Apply(&c); err != nil && !errors.Is(err, ErrAuditFailed) {
			t.Fatalf("apply: %v", err)
		} else if err != nil && a.Head().Size != 0 {
			t.Fatal("a refused epoch changed the auditor")
		}
	})
}

func FuzzDecodeAccountValue(f *testing.F) {
	f.Add((&AccountValue{AccountID: "0b9f4c1e-4d7a-4b8e-9a51-2f0c6d3e8a17", IdentityKey: bytes.Repeat([]byte{5}, 33), DeviceList: []byte("list")}).Encode())
	f.Add((&AccountValue{AccountID: "a"}).Encode())
	f.Add((&AccountValue{}).Encode())
	f.Add([]byte{1, 33, 5, 0, 0, 0, 0}) // the old version 1
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeAccountValue(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("not ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(v.Encode(), b) {
			t.Fatal("not canonical")
		}
	})
}

func FuzzDecodeEpoch(f *testing.F) {
	f.Add((&Epoch{Timestamp: 1700000000000, PrefixRoot: Hash{1}}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEpoch(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("not ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(e.Encode(), b) {
			t.Fatal("not canonical")
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	_, _, checkpoints := fuzzSeeds(f)
	for _, c := range checkpoints {
		f.Add(c)
		if i := bytes.Index(c, []byte("\n\n")); i >= 0 {
			f.Add(c[:i+1])
		}
	}
	// Sizes at the int64 bound.
	for _, size := range []uint64{math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
		f.Add((&Checkpoint{Origin: testOrigin, Size: size, Root: Hash{1}}).Marshal())
	}
	fx := newFixture(f, newKeys(f, 20))
	_, av := newAuditorKey(f, "auditor.example/1", 1)
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseCheckpoint(b); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("not ErrMalformed: %v", err)
			}
		} else if !bytes.Equal(c.Marshal(), b) {
			t.Fatal("not canonical")
		} else if c.Size > math.MaxInt64 {
			t.Fatalf("size %d above math.MaxInt64", c.Size)
		}
		// The whole note: opening it never panics and fails with a
		// sentinel; a cosignature's time parses.
		if n, _, err := openCheckpoint(b, testOrigin, fx.keys.verifier, av); err != nil {
			if !isSentinel(err) {
				t.Fatalf("not a sentinel: %v", err)
			}
		} else if s, ok := sigBy(n, av); ok {
			if _, ok := cosignatureTime(s); !ok {
				t.Fatal("a verified cosignature without a time")
			}
		}
	})
}
