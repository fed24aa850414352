package kt

import (
	"crypto"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// logHasher is RFC 6962's hasher (leaves 0x00 || data, parents 0x01 ||
// left || right, SHA-256). The draft (section "Log Tree") hashes log
// entries differently; RFC 6962 lets us use transparency-dev/merkle and the
// C2SP checkpoint ecosystem.
var logHasher = rfc6962.New(crypto.SHA256)

// logTree is an RFC 6962 Merkle tree held in memory: the hash of every
// perfect subtree, level by level (about two hashes per leaf). The zero
// value is an empty tree. Not safe for concurrent use; concurrent reads
// (Size, Root, Inclusion, Consistency) are safe.
type logTree struct {
	// levels[l][k] is the hash of the perfect subtree of 2^l leaves
	// starting at leaf k*2^l.
	levels [][]Hash
}

// Append adds a leaf (its data, hashed as an RFC 6962 leaf) and returns its
// index.
func (t *logTree) Append(data []byte) uint64 {
	var h Hash
	copy(h[:], logHasher.HashLeaf(data))
	index := t.Size()
	t.push(0, h)
	for l, k := 0, index; k&1 == 1; l, k = l+1, k>>1 {
		left, right := t.levels[l][k-1], t.levels[l][k]
		var p Hash
		copy(p[:], logHasher.HashChildren(left[:], right[:]))
		t.push(l+1, p)
	}
	return index
}

func (t *logTree) push(level int, h Hash) {
	if level == len(t.levels) {
		t.levels = append(t.levels, nil)
	}
	t.levels[level] = append(t.levels[level], h)
}

// truncate drops the last leaf (Log.Revert).
func (t *logTree) truncate() {
	size := t.Size()
	if size == 0 {
		return
	}
	// The last leaf completed one perfect subtree per trailing one bit of
	// its index, and itself.
	for l, k := 0, size-1; ; l, k = l+1, k>>1 {
		t.levels[l] = t.levels[l][:len(t.levels[l])-1]
		if k&1 == 0 {
			break
		}
	}
	for len(t.levels) > 0 && len(t.levels[len(t.levels)-1]) == 0 {
		t.levels = t.levels[:len(t.levels)-1]
	}
}

// Size returns the number of leaves.
func (t *logTree) Size() uint64 {
	if len(t.levels) == 0 {
		return 0
	}
	return uint64(len(t.levels[0]))
}

func (t *logTree) node(id compact.NodeID) []byte {
	h := t.levels[id.Level][id.Index]
	return h[:]
}

// Root returns the root of the tree's first size leaves.
func (t *logTree) Root(size uint64) (Hash, error) {
	var root Hash
	if size > t.Size() {
		return root, fmt.Errorf("kt: log root of size %d beyond %d", size, t.Size())
	}
	if size == 0 {
		copy(root[:], logHasher.EmptyRoot())
		return root, nil
	}
	ids := compact.RangeNodes(0, size, nil)
	h := t.node(ids[len(ids)-1])
	for k := len(ids) - 2; k >= 0; k-- {
		h = logHasher.HashChildren(t.node(ids[k]), h)
	}
	copy(root[:], h)
	return root, nil
}

// Inclusion proves leaf index in the tree's first size leaves.
func (t *logTree) Inclusion(index, size uint64) ([]Hash, error) {
	if size > t.Size() {
		return nil, fmt.Errorf("kt: log inclusion in size %d beyond %d", size, t.Size())
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("kt: log inclusion: %v", err)
	}
	return t.rehash(nodes)
}

// Consistency proves that the first size1 leaves are a prefix of the first
// size2.
func (t *logTree) Consistency(size1, size2 uint64) ([]Hash, error) {
	if size2 > t.Size() {
		return nil, fmt.Errorf("kt: log consistency to size %d beyond %d", size2, t.Size())
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("kt: log consistency: %v", err)
	}
	return t.rehash(nodes)
}

func (t *logTree) rehash(nodes proof.Nodes) ([]Hash, error) {
	hs := make([][]byte, len(nodes.IDs))
	for k, id := range nodes.IDs {
		hs[k] = t.node(id)
	}
	hs, err := nodes.Rehash(hs, logHasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("kt: log proof: %v", err)
	}
	return toHashes(hs), nil
}

func toHashes(hs [][]byte) []Hash {
	if len(hs) == 0 {
		return nil
	}
	out := make([]Hash, len(hs))
	for k := range hs {
		copy(out[k][:], hs[k])
	}
	return out
}

func toSlices(hs []Hash) [][]byte {
	out := make([][]byte, len(hs))
	for k := range hs {
		out[k] = hs[k][:]
	}
	return out
}

// verifyInclusion checks that leaf data is leaf index of the tree of size
// leaves with root.
func verifyInclusion(index, size uint64, data []byte, p []Hash, root Hash) error {
	return proof.VerifyInclusion(logHasher, index, size, logHasher.HashLeaf(data), toSlices(p), root[:])
}

// verifyConsistency checks that the tree (size1, root1) is a prefix of
// (size2, root2).
func verifyConsistency(size1, size2 uint64, p []Hash, root1, root2 Hash) error {
	return proof.VerifyConsistency(logHasher, size1, size2, toSlices(p), root1[:], root2[:])
}

// memBytes returns the bytes the tree's levels hold.
func (t *logTree) memBytes() int {
	n := 0
	for _, l := range t.levels {
		n += cap(l) * HashSize
	}
	return n
}
