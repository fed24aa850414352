package store

import (
	"bytes"
	"math"
	"testing"

	"github.com/doorless/doorless/kt"
)

// TestLeafFromRow: a row decodes into its leaf, and a column out of range
// is refused.
func TestLeafFromRow(t *testing.T) {
	index := bytes.Repeat([]byte{1}, kt.HashSize)
	commitment := bytes.Repeat([]byte{2}, kt.HashSize)
	l, err := LeafFromRow(index, math.MaxUint32, commitment)
	if err != nil {
		t.Fatal(err)
	}
	if l.Index != kt.Index(index) || l.Counter != math.MaxUint32 || l.Commitment != kt.Hash(commitment) {
		t.Fatalf("leaf %+v", l)
	}
	for _, c := range []struct {
		name              string
		index, commitment []byte
		counter           int64
	}{
		{"short index", index[1:], commitment, 0},
		{"short commitment", index, commitment[1:], 0},
		{"negative counter", index, commitment, -1},
		{"counter past uint32", index, commitment, math.MaxUint32 + 1},
	} {
		if _, err := LeafFromRow(c.index, c.counter, c.commitment); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}
