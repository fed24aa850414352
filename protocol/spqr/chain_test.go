package spqr

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

var defaultParams = chainParams{maxJump: defaultMaxJump, maxOOOKeys: defaultMaxOOOKeys}

func mustSendKey(t *testing.T, c chain, epoch uint64) (chain, uint32, []byte) {
	t.Helper()
	c, i, k, err := c.sendKey(epoch)
	if err != nil {
		t.Fatal(err)
	}
	return c, i, k[:]
}

func mustRecvKey(t *testing.T, c chain, epoch uint64, at uint32) (chain, []byte) {
	t.Helper()
	c, k, err := c.recvKey(epoch, at)
	if err != nil {
		t.Fatalf("recvKey(%d, %d): %v", epoch, at, err)
	}
	return c, k[:]
}

func mustAddEpoch(t *testing.T, c chain, epoch uint64, secret []byte) chain {
	t.Helper()
	c, err := c.addEpoch(&epochSecret{epoch: epoch, secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The following tests mirror the crate's src/chain.rs tests.

func TestChainDirectionsMatch(t *testing.T) {
	a2b := newChain([]byte("1"), A2B, defaultParams)
	b2a := newChain([]byte("1"), B2A, defaultParams)
	a2b, i, k := mustSendKey(t, a2b, 0)
	if i != 1 {
		t.Fatalf("first index %d", i)
	}
	b2a, k2 := mustRecvKey(t, b2a, 0, 1)
	if !bytes.Equal(k, k2) {
		t.Fatal("epoch 0 keys differ")
	}
	a2b = mustAddEpoch(t, a2b, 1, []byte{2})
	b2a = mustAddEpoch(t, b2a, 1, []byte{2})
	a2b, i, k = mustSendKey(t, a2b, 1)
	if b2a, k2 = mustRecvKey(t, b2a, 1, 1); i != 1 || !bytes.Equal(k, k2) {
		t.Fatal("epoch 1 keys differ")
	}
	for range 8 {
		a2b, _, _ = mustSendKey(t, a2b, 1)
	}
	_, i, k = mustSendKey(t, a2b, 1)
	if _, k2 = mustRecvKey(t, b2a, 1, 10); i != 10 || !bytes.Equal(k, k2) {
		t.Fatal("epoch 1 key 10 differs")
	}
}

func TestChainPreviouslyReturnedKey(t *testing.T) {
	c := newChain([]byte("1"), A2B, defaultParams)
	c, _ = mustRecvKey(t, c, 0, 2)
	if _, _, err := c.recvKey(0, 2); !errors.Is(err, ErrKeyAlreadyUsed) {
		t.Fatalf("got %v", err)
	}
}

func TestChainVeryOldKeysAreTrimmed(t *testing.T) {
	c := newChain([]byte("1"), A2B, chainParams{maxJump: 10, maxOOOKeys: 10})
	c, _ = mustRecvKey(t, c, 0, 10)
	c, _ = mustRecvKey(t, c, 0, 12)
	if _, _, err := c.recvKey(0, 1); !errors.Is(err, ErrKeyTooOld) {
		t.Fatalf("got %v", err)
	}
}

func TestChainOutOfOrderKeys(t *testing.T) {
	a2b := newChain([]byte("1"), A2B, defaultParams)
	b2a := newChain([]byte("1"), B2A, defaultParams)
	type sent struct {
		i uint32
		k []byte
	}
	var keys []sent
	for range defaultMaxOOOKeys {
		var s sent
		a2b, s.i, s.k = mustSendKey(t, a2b, 0)
		keys = append(keys, s)
	}
	rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for _, s := range keys {
		var k []byte
		if b2a, k = mustRecvKey(t, b2a, 0, s.i); !bytes.Equal(k, s.k) {
			t.Fatalf("key %d differs", s.i)
		}
	}
	if n := b2a.links[0].recv.prev.len(); n != 0 {
		t.Fatalf("%d keys left in history", n)
	}
}

func TestChainClearOldSendKeys(t *testing.T) {
	c := newChain([]byte("1"), A2B, defaultParams)
	c, _, _ = mustSendKey(t, c, 0)
	c, _, _ = mustSendKey(t, c, 0)
	c = mustAddEpoch(t, c, 1, []byte{2})
	c, _, _ = mustSendKey(t, c, 1)
	if !c.links[0].send.erased || c.links[0].send.next != [keySize]byte{} {
		t.Fatal("sending chain of epoch 0 not erased")
	}
	if _, _, _, err := c.sendKey(0); err == nil {
		t.Fatal("sending in an earlier epoch succeeded")
	}
}

func TestChainKeepsOneEpochBeforeSendEpoch(t *testing.T) {
	c := newChain([]byte("1"), A2B, defaultParams)
	for e := uint64(1); e <= 4; e++ {
		c = mustAddEpoch(t, c, e, []byte{byte(e)})
	}
	c, _, _ = mustSendKey(t, c, 3)
	if len(c.links) != 3 || c.sendEpoch != 3 {
		t.Fatalf("%d links, send epoch %d", len(c.links), c.sendEpoch)
	}
	if _, _, err := c.recvKey(1, 1); !errors.Is(err, ErrEpochOutOfRange) {
		t.Fatalf("epoch 1 after trimming: %v", err)
	}
	c, _ = mustRecvKey(t, c, 2, 1)
	if _, _, err := c.recvKey(5, 1); !errors.Is(err, ErrEpochOutOfRange) {
		t.Fatalf("future epoch: %v", err)
	}
	if _, err := c.addEpoch(&epochSecret{epoch: 6}); err == nil {
		t.Fatal("skipping an epoch succeeded")
	}
}

// TestChainDirectionModel drives a receiving ratchet with random requests,
// like the crate's ced_prop_test, and checks every outcome against a
// simple model: the keys form one sequence, each can be had once, skipped
// keys stay available while at most maxOOOKeys old, and jumps beyond
// maxJump fail.
func TestChainDirectionModel(t *testing.T) {
	params := chainParams{maxJump: 5, maxOOOKeys: 3}
	start := chainDirection{next: [keySize]byte{1}}
	// seq[i] is the key with index i.
	seq := make([][keySize]byte, 1, 2000)
	for d := start; len(seq) < cap(seq); {
		var k [keySize]byte
		d, k = d.nextKey()
		seq = append(seq, k)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for run := range 300 {
		d := start
		ctr := uint32(0)
		available := map[uint32]bool{}
		for range 25 {
			var at uint32
			switch rng.IntN(4) {
			case 0: // next key, or a jump of up to maxJump
				at = ctr + 1 + uint32(rng.IntN(int(params.maxJump)))
			case 1: // too far
				at = ctr + params.maxJump + 1 + uint32(rng.IntN(3))
			default: // an old index, taken or not
				if ctr == 0 {
					continue
				}
				at = uint32(rng.IntN(int(ctr) + 1))
			}
			if int(at) >= len(seq) {
				continue
			}
			next, key, err := d.key(at, params)
			switch {
			case at > ctr+params.maxJump:
				if !errors.Is(err, ErrJumpTooLarge) {
					t.Fatalf("run %d: jump to %d from %d: %v", run, at, ctr, err)
				}
			case at > ctr:
				if err != nil || key != seq[at] {
					t.Fatalf("run %d: key %d from %d: %v", run, at, ctr, err)
				}
				for i := ctr + 1; i < at; i++ {
					available[i] = true
				}
				ctr = at
				for i := range available {
					if i+params.maxOOOKeys < ctr {
						delete(available, i)
					}
				}
				d = next
			case at+params.maxOOOKeys < ctr:
				if !errors.Is(err, ErrKeyTooOld) {
					t.Fatalf("run %d: old key %d at %d: %v", run, at, ctr, err)
				}
			case available[at]:
				if err != nil || key != seq[at] {
					t.Fatalf("run %d: skipped key %d at %d: %v", run, at, ctr, err)
				}
				delete(available, at)
				d = next
			default:
				if !errors.Is(err, ErrKeyAlreadyUsed) {
					t.Fatalf("run %d: used key %d at %d: %v", run, at, ctr, err)
				}
			}
			if got := d.prev.len(); got != len(available) {
				t.Fatalf("run %d: history holds %d keys, want %d", run, got, len(available))
			}
		}
	}
}

// TestKeyHistoryBlocks exercises the persistent history across block
// boundaries: taking keys in random order from a large history, while old
// versions stay intact.
func TestKeyHistoryBlocks(t *testing.T) {
	var entries []keyEntry
	for i := uint32(10); i < 500; i += 1 + i%3 {
		entries = append(entries, keyEntry{index: i, key: [keySize]byte{byte(i), byte(i >> 8)}})
	}
	h := historyOf(entries)
	snapshot := h.all()
	rng := rand.New(rand.NewPCG(8, 8))
	order := rng.Perm(len(entries))
	cur := h
	for n, j := range order {
		e := entries[j]
		next, k, ok := cur.take(e.index)
		if !ok || k != e.key {
			t.Fatalf("take(%d) failed", e.index)
		}
		if _, _, ok := next.take(e.index); ok {
			t.Fatalf("take(%d) succeeded twice", e.index)
		}
		if next.len() != len(entries)-n-1 {
			t.Fatalf("length %d after %d takes", next.len(), n+1)
		}
		cur = next
	}
	if got := h.all(); len(got) != len(snapshot) {
		t.Fatal("taking keys modified an earlier history")
	}
	// Trimming drops whole and partial blocks.
	trimmed := h.appendAndTrim(nil, 250)
	for _, e := range trimmed.all() {
		if e.index < 250 {
			t.Fatalf("entry %d survived trimming", e.index)
		}
	}
	if trimmed.len() == 0 || trimmed.len() >= h.len() {
		t.Fatalf("trimmed to %d of %d", trimmed.len(), h.len())
	}
	grown := trimmed.appendAndTrim([]keyEntry{{index: 600}, {index: 601}}, 250)
	if grown.len() != trimmed.len()+2 || trimmed.len() != len(trimmed.all()) {
		t.Fatal("append broke the history")
	}
}
