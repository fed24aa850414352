package kt

import (
	"fmt"
	"math"
	"sort"
	"unsafe"
)

// prefixTree is the map's tree: a binary Merkle trie over indexes in which
// a leaf sits at the shallowest node whose subtree holds no other leaf
// (draft section "Prefix Tree"). A parent on the way to a single subtree
// (one child missing) hashes an all-zero stand-in for the missing child.
//
// In memory the trie is path-compressed (a crit-bit tree): only the
// parents with two children are stored, each with its depth, and the
// hashes of the single-child parents between them are recomputed when
// needed. Nodes live in two slices and refer to each other by 32-bit
// numbers, which keeps a million leaves near 120 bytes each and out of the
// garbage collector's way. Set and Delete mark the nodes on their path;
// Root, Prove and Get recompute only the marked nodes' hashes.
//
// The zero value is not ready; use newPrefixTree. Not safe for concurrent
// use; once Root has been called after the last change, concurrent Root,
// Get, Len and Prove calls are safe, since they only read.
type prefixTree struct {
	root   ref
	inner  slab[innerNode]
	leaves slab[leafNode]
	// free lists of slots released by Delete
	freeInner, freeLeaves []uint32
	n                     int
}

// ref names a node: noRef, a leaf (leafBit set) or an inner node.
type ref uint32

const (
	noRef   ref = math.MaxUint32
	leafBit ref = 1 << 31
)

func (r ref) isLeaf() bool { return r != noRef && r&leafBit != 0 }

// innerNode is a parent with two children whose paths part at bit depth.
type innerNode struct {
	hash  Hash // the node's value at its own depth, valid unless dirty
	child [2]ref
	depth uint8
	dirty bool
}

type leafNode struct {
	index      Index
	commitment Hash
	counter    uint32
}

func (l *leafNode) leaf() Leaf {
	return Leaf{Index: l.index, Counter: l.counter, Commitment: l.commitment}
}

// newPrefixTree returns an empty tree.
func newPrefixTree() *prefixTree { return &prefixTree{root: noRef} }

// Len returns the number of leaves.
func (t *prefixTree) Len() int { return t.n }

// Root returns the tree's root hash: all zeros for the empty tree.
func (t *prefixTree) Root() Hash {
	if t.root == noRef {
		return Hash{}
	}
	t.rehash(t.root)
	return t.lift(t.root, 0)
}

// Get returns the leaf at index i.
func (t *prefixTree) Get(i Index) (Leaf, bool) {
	r := t.descend(&i)
	if r == noRef {
		return Leaf{}, false
	}
	l := t.leaves.at(uint32(r &^ leafBit))
	if l.index != i {
		return Leaf{}, false
	}
	return l.leaf(), true
}

// descend follows i's bits through the inner nodes to a leaf (noRef for
// the empty tree): the leaf whose index shares the longest prefix with i.
func (t *prefixTree) descend(i *Index) ref {
	r := t.root
	for r != noRef && !r.isLeaf() {
		n := t.inner.at(uint32(r))
		r = n.child[i.bit(int(n.depth))]
	}
	return r
}

// Set puts the leaf at its index, returning the leaf it replaced.
func (t *prefixTree) Set(l Leaf) (old Leaf, replaced bool) {
	if t.root == noRef {
		t.root = t.newLeaf(&l)
		t.n++
		return Leaf{}, false
	}
	near := t.leaves.at(uint32(t.descend(&l.Index) &^ leafBit))
	p := commonPrefix(&near.index, &l.Index)
	if p == maxPrefixDepth {
		old = near.leaf()
		near.counter, near.commitment = l.Counter, l.Commitment
		t.markPath(&l.Index, maxPrefixDepth)
		return old, true
	}
	// The new leaf parts from its nearest neighbour at bit p: put a new
	// parent of depth p above the first node deeper than p on the path.
	leaf := t.newLeaf(&l)
	parent := t.newInner()
	slot := &t.root
	for r := *slot; !r.isLeaf() && int(t.inner.at(uint32(r)).depth) < p; r = *slot {
		n := t.inner.at(uint32(r))
		n.dirty = true
		slot = &n.child[l.Index.bit(int(n.depth))]
	}
	n := t.inner.at(uint32(parent))
	n.depth, n.dirty = uint8(p), true
	b := l.Index.bit(p)
	n.child[b], n.child[1-b] = leaf, *slot
	*slot = parent
	t.n++
	return Leaf{}, false
}

// markPath marks the inner nodes on i's path above depth p dirty.
func (t *prefixTree) markPath(i *Index, p int) {
	for r := t.root; r != noRef && !r.isLeaf(); {
		n := t.inner.at(uint32(r))
		if int(n.depth) >= p {
			return
		}
		n.dirty = true
		r = n.child[i.bit(int(n.depth))]
	}
}

// build fills an empty tree with leaves sorted by strictly increasing
// index, in one pass, which is faster than one Set per leaf and lays the
// nodes out in path order.
func (t *prefixTree) build(leaves []Leaf) {
	if len(leaves) > 0 {
		t.root = t.buildRange(leaves)
	}
	t.n = len(leaves)
}

func (t *prefixTree) buildRange(leaves []Leaf) ref {
	if len(leaves) == 1 {
		return t.newLeaf(&leaves[0])
	}
	// The range's leaves part at the first bit where its first and last
	// differ; those with a 0 there come first.
	d := commonPrefix(&leaves[0].Index, &leaves[len(leaves)-1].Index)
	split := sort.Search(len(leaves), func(k int) bool { return leaves[k].Index.bit(d) == 1 })
	r := t.newInner()
	left := t.buildRange(leaves[:split])
	right := t.buildRange(leaves[split:])
	*t.inner.at(uint32(r)) = innerNode{child: [2]ref{left, right}, depth: uint8(d), dirty: true}
	return r
}

// Delete removes the leaf at index i. The log never removes a leaf: only
// Log.Revert uses it, to undo an epoch that could not be stored.
func (t *prefixTree) Delete(i Index) bool {
	r := t.descend(&i)
	if r == noRef || t.leaves.at(uint32(r&^leafBit)).index != i {
		return false
	}
	// Find the leaf's parent and grandparent link.
	var grand *ref
	slot := &t.root
	for s := *slot; !s.isLeaf(); s = *slot {
		n := t.inner.at(uint32(s))
		n.dirty = true
		grand = slot
		slot = &n.child[i.bit(int(n.depth))]
	}
	if grand == nil {
		t.root = noRef
	} else {
		parent := *grand
		n := t.inner.at(uint32(parent))
		*grand = n.child[1-i.bit(int(n.depth))]
		t.freeInner = append(t.freeInner, uint32(parent))
		*n = innerNode{}
	}
	*t.leaves.at(uint32(r &^ leafBit)) = leafNode{}
	t.freeLeaves = append(t.freeLeaves, uint32(r&^leafBit))
	t.n--
	return true
}

func (t *prefixTree) newLeaf(l *Leaf) ref {
	v := leafNode{index: l.Index, commitment: l.Commitment, counter: l.Counter}
	if k := len(t.freeLeaves); k > 0 {
		s := t.freeLeaves[k-1]
		t.freeLeaves = t.freeLeaves[:k-1]
		*t.leaves.at(uint32(s)) = v
		return ref(s) | leafBit
	}
	if t.leaves.len() >= int(leafBit) {
		panic("kt: prefix tree full")
	}
	return ref(t.leaves.push(v)) | leafBit
}

func (t *prefixTree) newInner() ref {
	if k := len(t.freeInner); k > 0 {
		s := t.freeInner[k-1]
		t.freeInner = t.freeInner[:k-1]
		return ref(s)
	}
	if t.inner.len() >= int(leafBit)-1 {
		panic("kt: prefix tree full")
	}
	return ref(t.inner.push(innerNode{}))
}

// rehash recomputes the hashes of the dirty inner nodes below r.
func (t *prefixTree) rehash(r ref) {
	if r.isLeaf() {
		return
	}
	n := t.inner.at(uint32(r))
	if !n.dirty {
		return
	}
	t.rehash(n.child[0])
	t.rehash(n.child[1])
	n = t.inner.at(uint32(r))
	d := int(n.depth) + 1
	l, rt := t.lift(n.child[0], d), t.lift(n.child[1], d)
	n.hash = parentHash(&l, &rt)
	n.dirty = false
}

// lift returns the value that node r contributes at depth d, above its
// own: a leaf's hash (a leaf sits where its subtree starts), or an inner
// node's hash carried up through the single-child parents between its
// depth and d.
func (t *prefixTree) lift(r ref, d int) Hash {
	if r.isLeaf() {
		return t.leaves.at(uint32(r &^ leafBit)).hashValue()
	}
	n := t.inner.at(uint32(r))
	h := n.hash
	if int(n.depth) == d {
		return h
	}
	prefix := &t.leaves.at(uint32(t.anyLeaf(r) &^ leafBit)).index
	return liftHash(h, prefix, int(n.depth), d)
}

// liftHash carries a value at depth from up to depth to through the
// single-child parents on prefix's path.
func liftHash(h Hash, prefix *Index, from, to int) Hash {
	var zero Hash
	for k := from - 1; k >= to; k-- {
		if prefix.bit(k) == 0 {
			h = parentHash(&h, &zero)
		} else {
			h = parentHash(&zero, &h)
		}
	}
	return h
}

// anyLeaf returns a leaf below r (its left-most).
func (t *prefixTree) anyLeaf(r ref) ref {
	for !r.isLeaf() {
		r = t.inner.at(uint32(r)).child[0]
	}
	return r
}

func (l *leafNode) hashValue() Hash {
	v := l.leaf()
	return v.hash()
}

// Prove returns the path to index i: its leaf, or proof that it has none.
func (t *prefixTree) Prove(i Index) *PrefixProof {
	p := &PrefixProof{}
	if t.root == noRef {
		return p
	}
	t.rehash(t.root)
	near := t.descend(&i)
	nearLeaf := t.leaves.at(uint32(near &^ leafBit))
	common := commonPrefix(&nearLeaf.index, &i)
	// Walk i's path; d is the depth of the next node on it.
	d := 0
	for r := t.root; ; {
		var depth int
		if r.isLeaf() {
			depth = d // a leaf sits right where its subtree starts
		} else {
			depth = int(t.inner.at(uint32(r)).depth)
		}
		if common < depth {
			// i leaves r's subtree at bit common, within the single-child
			// parents above r: the path ends at the missing child.
			for ; d < common; d++ {
				p.Siblings = append(p.Siblings, Hash{})
			}
			var h Hash
			if r.isLeaf() {
				h = t.leaves.at(uint32(r &^ leafBit)).hashValue()
			} else {
				h = liftHash(t.inner.at(uint32(r)).hash, &nearLeaf.index, depth, common+1)
			}
			p.Siblings = append(p.Siblings, h)
			return p
		}
		if r.isLeaf() {
			l := nearLeaf.leaf()
			p.Terminal = &l
			return p
		}
		for ; d < depth; d++ {
			p.Siblings = append(p.Siblings, Hash{})
		}
		n := t.inner.at(uint32(r))
		b := i.bit(depth)
		p.Siblings = append(p.Siblings, t.lift(n.child[1-b], depth+1))
		d = depth + 1
		r = n.child[b]
	}
}

// PrefixProof is a path in the prefix tree from the root to the node where
// an index's search ends.
type PrefixProof struct {
	// Siblings are the hashes beside the path, from the root down; an
	// all-zero hash stands for a missing node.
	Siblings []Hash
	// Terminal is the leaf where the path ends: the index's own leaf
	// (inclusion), or another leaf that shares the path's prefix
	// (non-inclusion). Nil when the path ends at a missing node (the
	// empty tree's root, or the missing child of a parent whose one
	// subtree the index leaves): non-inclusion too.
	Terminal *Leaf
}

// evaluate checks the proof's shape for index i and returns the root it
// leads to and the index's leaf (nil when the proof shows it absent).
// ErrInvalidProof when the proof cannot be a path to i.
func (p *PrefixProof) evaluate(i Index) (root Hash, leaf *Leaf, err error) {
	d := len(p.Siblings)
	if d > maxPrefixDepth {
		return Hash{}, nil, fmt.Errorf("%w: prefix path too long", ErrInvalidProof)
	}
	var h Hash
	if p.Terminal != nil {
		if commonPrefix(&p.Terminal.Index, &i) < d {
			return Hash{}, nil, fmt.Errorf("%w: prefix path leaf off the index's path", ErrInvalidProof)
		}
		h = p.Terminal.hash()
		if p.Terminal.Index == i {
			l := *p.Terminal
			leaf = &l
		}
	} else if d > 0 && p.Siblings[d-1] == (Hash{}) {
		// A parent with neither child does not exist.
		return Hash{}, nil, fmt.Errorf("%w: prefix path ends under an empty node", ErrInvalidProof)
	}
	for k := d - 1; k >= 0; k-- {
		if i.bit(k) == 0 {
			h = parentHash(&h, &p.Siblings[k])
		} else {
			h = parentHash(&p.Siblings[k], &h)
		}
	}
	return h, leaf, nil
}

// slabChunk is the number of nodes in one chunk of a slab.
const slabChunkBits = 14

// slab is an append-only array of T in chunks of 2^slabChunkBits: growing
// it never copies (no pause, no transient double memory, as a slice's
// growth would cause at a million nodes), and pointers into it stay valid.
type slab[T any] struct {
	chunks [][]T
	n      int
}

func (s *slab[T]) at(i uint32) *T {
	return &s.chunks[i>>slabChunkBits][i&(1<<slabChunkBits-1)]
}

func (s *slab[T]) len() int { return s.n }

func (s *slab[T]) push(v T) uint32 {
	if s.n == len(s.chunks)<<slabChunkBits {
		s.chunks = append(s.chunks, make([]T, 1<<slabChunkBits))
	}
	i := uint32(s.n)
	*s.at(i) = v
	s.n++
	return i
}

// memBytes returns the bytes the tree's slabs hold.
func (t *prefixTree) memBytes() int {
	return len(t.inner.chunks)<<slabChunkBits*int(unsafe.Sizeof(innerNode{})) +
		len(t.leaves.chunks)<<slabChunkBits*int(unsafe.Sizeof(leafNode{}))
}
