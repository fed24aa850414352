package kt

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/transparency-dev/merkle/proof"
)

// modelRoot computes the prefix tree's root from scratch, as the draft
// describes the tree: a lone leaf sits where its subtree starts, a parent
// hashes its two children, a missing child is all zeros.
func modelRoot(leaves []Leaf, depth int) Hash {
	switch len(leaves) {
	case 0:
		return Hash{}
	case 1:
		return leaves[0].hash()
	}
	var sides [2][]Leaf
	for _, l := range leaves {
		b := l.Index.bit(depth)
		sides[b] = append(sides[b], l)
	}
	left, right := modelRoot(sides[0], depth+1), modelRoot(sides[1], depth+1)
	return parentHash(&left, &right)
}

// clusteredIndex makes indexes that share long prefixes, so that paths run
// through many single-child parents (down to depth 256).
func clusteredIndex(r *rand.Rand) Index {
	var i Index
	switch r.IntN(4) {
	case 0: // random
		for k := range i {
			i[k] = byte(r.Uint32())
		}
	case 1: // one bit somewhere in a zero index
		n := r.IntN(256)
		i[n/8] = 0x80 >> (n % 8)
	case 2: // a few low bits in the last byte
		i[31] = byte(r.IntN(8))
	default: // a shared 100-bit prefix, then random
		for k := range i {
			i[k] = 0xa5
		}
		for k := 13; k < 32; k++ {
			i[k] = byte(r.Uint32())
		}
	}
	return i
}

func TestPrefixTreeAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tree := newPrefixTree()
	model := map[Index]Leaf{}
	check := func(step int) {
		t.Helper()
		var leaves []Leaf
		for _, l := range model {
			leaves = append(leaves, l)
		}
		want := modelRoot(leaves, 0)
		if got := tree.Root(); got != want {
			t.Fatalf("step %d: root differs from the model (%d leaves)", step, len(leaves))
		}
		if tree.Len() != len(model) {
			t.Fatalf("step %d: Len %d, want %d", step, tree.Len(), len(model))
		}
		// Paths to present and absent indexes lead to the root.
		probes := []Index{clusteredIndex(r), clusteredIndex(r)}
		for i := range model {
			probes = append(probes, i)
			if len(probes) > 6 {
				break
			}
		}
		for _, i := range probes {
			p := tree.Prove(i)
			root, leaf, err := p.evaluate(i)
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			if root != want {
				t.Fatalf("step %d: path leads to another root", step)
			}
			l, ok := model[i]
			if ok != (leaf != nil) || ok && *leaf != l {
				t.Fatalf("step %d: path says present=%v, model %v", step, leaf != nil, ok)
			}
			if got, ok2 := tree.Get(i); ok2 != ok || got != l {
				t.Fatalf("step %d: Get differs from the model", step)
			}
			// The same path does not prove another index.
			j := i
			j[31] ^= 1
			if _, isModel := model[j]; !isModel && leaf != nil {
				if root2, leaf2, err := p.evaluate(j); err == nil && root2 == want && leaf2 != nil {
					t.Fatalf("step %d: a path proves another index's leaf", step)
				}
			}
		}
	}
	check(0)
	for step := 1; step <= 600; step++ {
		switch op := r.IntN(10); {
		case op < 6 || len(model) == 0:
			l := Leaf{Index: clusteredIndex(r), Counter: r.Uint32(), Commitment: Hash{byte(step)}}
			old, replaced := tree.Set(l)
			if m, ok := model[l.Index]; ok != replaced || ok && m != old {
				t.Fatalf("step %d: Set returned the wrong old leaf", step)
			}
			model[l.Index] = l
		case op < 8:
			for i := range model {
				l := model[i]
				l.Counter++
				tree.Set(l)
				model[i] = l
				break
			}
		default:
			for i := range model {
				if !tree.Delete(i) {
					t.Fatalf("step %d: Delete of a present leaf failed", step)
				}
				delete(model, i)
				break
			}
			if i := clusteredIndex(r); tree.Delete(i) {
				if _, ok := model[i]; !ok {
					t.Fatalf("step %d: Delete of an absent leaf succeeded", step)
				}
				delete(model, i)
			}
		}
		if step%7 == 0 || step < 40 {
			check(step)
		}
	}
	check(601)
	// A tree built in one pass from the sorted leaves is the same tree.
	var sorted []Leaf
	for _, l := range model {
		sorted = append(sorted, l)
	}
	slices.SortFunc(sorted, func(a, b Leaf) int { return bytes.Compare(a.Index[:], b.Index[:]) })
	built := newPrefixTree()
	built.build(sorted)
	if built.Root() != tree.Root() || built.Len() != tree.Len() {
		t.Fatal("built tree differs")
	}
	for _, l := range sorted[:min(len(sorted), 20)] {
		root, leaf, err := built.Prove(l.Index).evaluate(l.Index)
		if err != nil || leaf == nil || *leaf != l || root != tree.Root() {
			t.Fatalf("built tree's path: %v", err)
		}
		built.Set(Leaf{Index: l.Index, Counter: l.Counter + 1})
		tree.Set(Leaf{Index: l.Index, Counter: l.Counter + 1})
	}
	if built.Root() != tree.Root() {
		t.Fatal("built tree differs after changes")
	}
	// Delete everything: the empty tree again.
	for i := range model {
		tree.Delete(i)
	}
	if tree.Root() != (Hash{}) || tree.Len() != 0 {
		t.Fatal("empty tree's root is not zero")
	}
	if p := tree.Prove(Index{}); len(p.Siblings) != 0 || p.Terminal != nil {
		t.Fatal("empty tree's path is not empty")
	}
}

func TestPrefixProofShapes(t *testing.T) {
	tree := newPrefixTree()
	a := Leaf{Index: idx(1), Commitment: Hash{1}}
	tree.Set(a)
	// A single leaf sits at the root: its path is empty.
	p := tree.Prove(a.Index)
	if len(p.Siblings) != 0 || p.Terminal == nil || *p.Terminal != a {
		t.Fatalf("single leaf path: %+v", p)
	}
	root, leaf, err := p.evaluate(idx(2))
	if err != nil || leaf != nil || root != tree.Root() {
		t.Fatalf("non-inclusion by the lone leaf: %v %v", err, leaf)
	}
	// A terminal leaf off the path is refused.
	var far Index
	far[0] = 0xff
	tree.Set(Leaf{Index: far})
	p = tree.Prove(a.Index)
	if _, _, err := p.evaluate(far); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("leaf off the path: %v", err)
	}
	// A path ending in an empty node under an empty sibling is refused.
	bad := &PrefixProof{Siblings: []Hash{{}}}
	if _, _, err := bad.evaluate(far); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("empty under empty: %v", err)
	}
	long := &PrefixProof{Siblings: make([]Hash, maxPrefixDepth+1)}
	if _, _, err := long.evaluate(far); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("too long a path: %v", err)
	}
	// Two indexes that differ only in the last bit: depth-256 leaves.
	var x, y Index
	y[31] = 1
	t2 := newPrefixTree()
	t2.Set(Leaf{Index: x})
	t2.Set(Leaf{Index: y})
	p = t2.Prove(y)
	if len(p.Siblings) != maxPrefixDepth {
		t.Fatalf("path length %d, want 256", len(p.Siblings))
	}
	if r, l, err := p.evaluate(y); err != nil || l == nil || r != t2.Root() {
		t.Fatalf("deepest leaf: %v", err)
	}
}

func TestLogTree(t *testing.T) {
	var tree logTree
	var leaves [][]byte
	ref := func(size uint64) Hash {
		// RFC 6962 section 2.1, from scratch.
		var mth func(d [][]byte) []byte
		mth = func(d [][]byte) []byte {
			switch len(d) {
			case 0:
				return logHasher.EmptyRoot()
			case 1:
				return logHasher.HashLeaf(d[0])
			}
			k := 1
			for k*2 < len(d) {
				k *= 2
			}
			return logHasher.HashChildren(mth(d[:k]), mth(d[k:]))
		}
		var h Hash
		copy(h[:], mth(leaves[:size]))
		return h
	}
	for n := 0; n < 40; n++ {
		leaves = append(leaves, []byte{byte(n), 'x'})
		if got := tree.Append(leaves[n]); got != uint64(n) {
			t.Fatalf("Append returned %d, want %d", got, n)
		}
	}
	for size := uint64(0); size <= 40; size++ {
		root := mustRoot(t, &tree, size)
		if root != ref(size) {
			t.Fatalf("root of size %d differs from RFC 6962", size)
		}
		for i := uint64(0); i < size; i++ {
			p, err := tree.Inclusion(i, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyInclusion(i, size, leaves[i], p, root); err != nil {
				t.Fatalf("inclusion %d in %d: %v", i, size, err)
			}
		}
		for s1 := uint64(1); s1 <= size; s1++ {
			p, err := tree.Consistency(s1, size)
			if err != nil {
				t.Fatal(err)
			}
			r1 := ref(s1)
			if err := proof.VerifyConsistency(logHasher, s1, size, toSlices(p), r1[:], root[:]); err != nil {
				t.Fatalf("consistency %d to %d: %v", s1, size, err)
			}
		}
	}
	if _, err := tree.Root(41); err == nil {
		t.Fatal("root beyond the tree")
	}
	if _, err := tree.Inclusion(40, 40); err == nil {
		t.Fatal("inclusion beyond the tree")
	}
	// truncate undoes Append, at every size.
	for size := uint64(40); size > 0; size-- {
		tree.truncate()
		if tree.Size() != size-1 || mustRoot(t, &tree, size-1) != ref(size-1) {
			t.Fatalf("truncate to %d", size-1)
		}
	}
	tree.Append([]byte("again"))
	leaves[0] = []byte("again")
	if mustRoot(t, &tree, 1) != ref(1) {
		t.Fatal("append after truncate")
	}
}

func TestEncodings(t *testing.T) {
	v := &AccountValue{AccountID: "0b9f4c1e-4d7a-4b8e-9a51-2f0c6d3e8a17", IdentityKey: bytes.Repeat([]byte{5}, 33), DeviceList: []byte("list")}
	got, err := DecodeAccountValue(v.Encode())
	if err != nil || got.AccountID != v.AccountID || !bytes.Equal(got.IdentityKey, v.IdentityKey) || !bytes.Equal(got.DeviceList, v.DeviceList) {
		t.Fatalf("account value round trip: %+v, %v", got, err)
	}
	if len((&AccountValue{}).Encode()) == 0 {
		t.Fatal("the zero account value encodes empty")
	}
	enc := v.Encode()
	if enc[0] != accountValueVersion || accountValueVersion != 2 {
		t.Fatalf("version byte %d", enc[0])
	}
	for n := 0; n < len(enc); n++ {
		if _, err := DecodeAccountValue(enc[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated account value: %v", err)
		}
	}
	for _, bad := range [][]byte{
		append(bytes.Clone(enc), 0),                          // a trailing byte
		append([]byte{1}, enc[1:]...),                        // the old version, without an account id
		append([]byte{3}, enc[1:]...),                        // a version to come
		(&AccountValue{IdentityKey: v.IdentityKey}).Encode(), // no account id
		(&AccountValue{AccountID: string(make([]byte, 256))}).Encode(),
		(&AccountValue{AccountID: "a", IdentityKey: make([]byte, 256)}).Encode(),
		(&AccountValue{AccountID: "a", DeviceList: make([]byte, MaxValueSize+1)}).Encode(),
		{},
	} {
		if got, err := DecodeAccountValue(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeAccountValue(%x) = %+v, %v; want ErrMalformed", bad[:min(len(bad), 16)], got, err)
		}
	}
	// Each length byte counts its own field.
	tweaked := bytes.Clone(enc)
	tweaked[1]--
	if _, err := DecodeAccountValue(tweaked); !errors.Is(err, ErrMalformed) {
		t.Fatalf("account id length one short: %v", err)
	}

	e := Epoch{Timestamp: 1700000000000, PrefixRoot: Hash{9}}
	if d, err := DecodeEpoch(e.Encode()); err != nil || *d != e {
		t.Fatalf("epoch round trip: %v", err)
	}
	neg := Epoch{Timestamp: -1}
	if _, err := DecodeEpoch(neg.Encode()); !errors.Is(err, ErrMalformed) {
		t.Fatalf("negative timestamp: %v", err)
	}

	c := EpochChanges{Epoch: e, Leaves: []Leaf{{Index: idx(1), Counter: 3}, {Index: idx(2), Commitment: Hash{4}}}}
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var c2 EpochChanges
	if err := c2.UnmarshalBinary(b); err != nil || c2.Epoch != c.Epoch || len(c2.Leaves) != 2 || c2.Leaves[1] != c.Leaves[1] {
		t.Fatalf("epoch changes round trip: %v", err)
	}
	c.Leaves[0], c.Leaves[1] = c.Leaves[1], c.Leaves[0]
	if _, err := c.MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("out of order leaves encoded: %v", err)
	}
	// Out of order on the wire: swap the two encoded leaves.
	swapped := append([]byte{}, b[:1+epochSize+4]...)
	swapped = append(swapped, b[1+epochSize+4+leafSize:]...)
	swapped = append(swapped, b[1+epochSize+4:1+epochSize+4+leafSize]...)
	if err := c2.UnmarshalBinary(swapped); !errors.Is(err, ErrMalformed) {
		t.Fatalf("out of order leaves decoded: %v", err)
	}
}

func TestCheckpointParse(t *testing.T) {
	c := Checkpoint{Origin: testOrigin, Size: 12, Root: Hash{1, 2}}
	got, err := ParseCheckpoint(c.Marshal())
	if err != nil || *got != c {
		t.Fatalf("round trip: %v", err)
	}
	root := "AQIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for _, bad := range []string{
		"", "o\n12\n", "o\n12\n" + root, "\n12\n" + root + "\n", "o\n012\n" + root + "\n",
		"o\n-1\n" + root + "\n", "o\n+1\n" + root + "\n", "o\n18446744073709551616\n" + root + "\n",
		"o\n12\n" + root + "\next\n", "o\n12\nAQI=\n", "o\n12\n" + root[:len(root)-1] + "\n",
		"o\n12\n" + root[:len(root)-2] + "B=\n",   // non-canonical padding bits
		"o\n9223372036854775808\n" + root + "\n",  // math.MaxInt64 + 1: clients keep sizes in int64
		"o\n18446744073709551615\n" + root + "\n", // math.MaxUint64
	} {
		if _, err := ParseCheckpoint([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	// The largest size a checkpoint may have.
	c.Size = math.MaxInt64
	if got, err := ParseCheckpoint(c.Marshal()); err != nil || got.Size != math.MaxInt64 {
		t.Fatalf("size math.MaxInt64: %+v, %v", got, err)
	}
}

func TestCosignatureFormat(t *testing.T) {
	s, v := newAuditorKey(t, "auditor.example/1", 1)
	body := (&Checkpoint{Origin: testOrigin, Size: 1}).Marshal()
	sig, err := s.Sign(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != 8+64 || !v.Verify(body, sig) {
		t.Fatal("cosignature does not verify")
	}
	// The timestamp is the signer's clock, big-endian seconds, and signed.
	if got := uint64(t0.Unix()); got != beUint64(sig) {
		t.Fatalf("timestamp %d, want %d", beUint64(sig), got)
	}
	sig[7] ^= 1
	if v.Verify(body, sig) {
		t.Fatal("a changed timestamp verifies")
	}
	// Keys: the hash binds the name and the type byte.
	if _, err := NewCosignatureVerifier("other.example+" + hex8(v.KeyHash()) + "+" + "AAAA"); err == nil {
		t.Fatal("malformed key accepted")
	}
	if _, _, err := GenerateCosignerKey(testRand(1), "bad name"); err == nil {
		t.Fatal("a name with a space accepted")
	}
}

func beUint64(b []byte) uint64 {
	var x uint64
	for _, c := range b[:8] {
		x = x<<8 | uint64(c)
	}
	return x
}

func hex8(x uint32) string {
	const digits = "0123456789abcdef"
	var b [8]byte
	for k := 7; k >= 0; k-- {
		b[k] = digits[x&15]
		x >>= 4
	}
	return string(b[:])
}
