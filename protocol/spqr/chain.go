package spqr

import (
	"github.com/doorless/doorless/protocol/internal/kdf"

	"encoding/binary"
	"fmt"
)

// Chain parameters, src/chain.rs.
const (
	defaultMaxJump    = 25_000 // DEFAULT_CHAIN_PARAMS.max_jump
	defaultMaxOOOKeys = 2_000  // DEFAULT_CHAIN_PARAMS.max_ooo_keys
	// epochsToKeepPriorToSendEpoch is EPOCHS_TO_KEEP_PRIOR_TO_SEND_EPOCH:
	// how many epochs before the send epoch keep their receiving chains.
	epochsToKeepPriorToSendEpoch = 1
)

type chainParams struct {
	maxJump    uint32 // ChainParams.max_jump (never 0 here)
	maxOOOKeys uint32 // ChainParams.max_ooo_keys (never 0 here)
}

// chain turns epoch secrets into per-message keys (src/chain.rs Chain).
// Every epoch has a sending and a receiving symmetric ratchet. A chain is a
// value: its methods return a modified copy and never write to memory that
// another copy can see.
type chain struct {
	dir          Direction
	currentEpoch uint64
	sendEpoch    uint64
	// links holds the epochs currentEpoch-len(links)+1 … currentEpoch.
	links    []chainLink
	nextRoot [keySize]byte
	params   chainParams
}

type chainLink struct {
	send, recv chainDirection
}

// chainDirection is one symmetric ratchet (src/chain.rs ChainEpochDirection).
type chainDirection struct {
	ctr  uint32        // index of the last key produced; keys start at 1
	next [keySize]byte // chain key for index ctr+1
	// erased is set on the sending ratchets of epochs before the send
	// epoch, whose chain key has been wiped (ChainEpochDirection::clear_next).
	erased bool
	// prev holds skipped keys of a receiving ratchet (KeyHistory).
	prev keyHistory
}

// newChain is Chain::new.
func newChain(authKey []byte, dir Direction, params chainParams) chain {
	g := hkdfSHA256(nil, authKey, chainStartLabel, 3*keySize)
	c := chain{dir: dir, params: params}
	copy(c.nextRoot[:], g[:keySize])
	c.links = []chainLink{newLink(g, dir)}
	return c
}

// newLink builds an epoch's ratchets from 96 bytes of key material laid out
// as next root ‖ A2B chain key ‖ B2A chain key (Chain::ced_for_direction).
func newLink(g []byte, dir Direction) chainLink {
	part := func(d Direction) chainDirection {
		var cd chainDirection
		copy(cd.next[:], g[keySize*(1+int(d)):])
		return cd
	}
	return chainLink{send: part(dir), recv: part(dir.other())}
}

// epochSecret is a new epoch's shared secret from the SCKA (EpochSecret).
type epochSecret struct {
	epoch  uint64
	secret []byte
}

// addEpoch is Chain::add_epoch.
func (c chain) addEpoch(es *epochSecret) (chain, error) {
	if es.epoch != c.currentEpoch+1 {
		return chain{}, fmt.Errorf("%w: epoch %d added to chain at epoch %d", ErrMalformedState, es.epoch, c.currentEpoch)
	}
	g := hkdfSHA256(c.nextRoot[:], es.secret, chainAddEpochLabel, 3*keySize)
	c.currentEpoch = es.epoch
	copy(c.nextRoot[:], g[:keySize])
	c.links = append(c.links[:len(c.links):len(c.links)], newLink(g, c.dir))
	return c, nil
}

// epochIndex is Chain::epoch_idx.
func (c *chain) epochIndex(epoch uint64) (int, error) {
	if epoch > c.currentEpoch || c.currentEpoch-epoch >= uint64(len(c.links)) {
		return 0, fmt.Errorf("%w: chain epoch %d, current %d", ErrEpochOutOfRange, epoch, c.currentEpoch)
	}
	return len(c.links) - 1 - int(c.currentEpoch-epoch), nil
}

// sendKey is Chain::send_key: the next sending key of epoch and its index. The key is
// returned by value so that the caller can keep it without an allocation.
func (c chain) sendKey(epoch uint64) (chain, uint32, [keySize]byte, error) {
	var key [keySize]byte
	if epoch < c.sendEpoch {
		return chain{}, 0, key, fmt.Errorf("%w: send epoch decreased", ErrMalformedState)
	}
	i, err := c.epochIndex(epoch)
	if err != nil {
		return chain{}, 0, key, err
	}
	links := append([]chainLink(nil), c.links...)
	if c.sendEpoch != epoch {
		c.sendEpoch = epoch
		for i > epochsToKeepPriorToSendEpoch {
			links = links[1:]
			i--
		}
		for j := range i {
			links[j].send = chainDirection{erased: true}
		}
	}
	if links[i].send.erased {
		return chain{}, 0, key, fmt.Errorf("%w: sending chain erased", ErrMalformedState)
	}
	if links[i].send.ctr == ^uint32(0) {
		return chain{}, 0, key, ErrChainExhausted
	}
	links[i].send, key = links[i].send.nextKey()
	c.links = links
	return c, links[i].send.ctr, key, nil
}

// recvKey is Chain::recv_key: the receiving key of epoch at index at, by value.
func (c chain) recvKey(epoch uint64, at uint32) (chain, [keySize]byte, error) {
	i, err := c.epochIndex(epoch)
	if err != nil {
		return chain{}, [keySize]byte{}, err
	}
	recv, key, err := c.links[i].recv.key(at, c.params)
	if err != nil {
		return chain{}, [keySize]byte{}, err
	}
	links := append([]chainLink(nil), c.links...)
	links[i].recv = recv
	c.links = links
	return c, key, nil
}

// nextKey is ChainEpochDirection::next_key_internal: it advances the
// counter and derives the chain key and message key for it.
func (d chainDirection) nextKey() (chainDirection, [keySize]byte) {
	d.ctr++
	var info [4 + len(chainNextLabel)]byte
	binary.BigEndian.PutUint32(info[:], d.ctr)
	copy(info[4:], chainNextLabel)
	var g [2 * keySize]byte
	kdf.HKDF(g[:], nil, d.next[:], info[:])
	copy(d.next[:], g[:keySize])
	return d, [keySize]byte(g[keySize:])
}

// key is ChainEpochDirection::key: the key at index at, stepping the
// ratchet forward (and keeping skipped keys) if it lies ahead.
func (d chainDirection) key(at uint32, params chainParams) (chainDirection, [keySize]byte, error) {
	switch {
	case at < d.ctr:
		if uint64(at)+uint64(params.maxOOOKeys) < uint64(d.ctr) {
			return d, [keySize]byte{}, fmt.Errorf("%w: index %d", ErrKeyTooOld, at)
		}
		prev, key, ok := d.prev.take(at)
		if !ok {
			return d, [keySize]byte{}, fmt.Errorf("%w: index %d", ErrKeyAlreadyUsed, at)
		}
		d.prev = prev
		return d, key, nil
	case at == d.ctr:
		return d, [keySize]byte{}, fmt.Errorf("%w: index %d", ErrKeyAlreadyUsed, at)
	case at-d.ctr > params.maxJump:
		return d, [keySize]byte{}, fmt.Errorf("%w: from %d to %d", ErrJumpTooLarge, d.ctr, at)
	}
	if uint64(at) > uint64(d.ctr)+uint64(params.maxOOOKeys) {
		// Every key held now would be too old afterwards.
		d.prev = keyHistory{}
	}
	var skipped []keyEntry
	for at > d.ctr+1 {
		var k [keySize]byte
		d, k = d.nextKey()
		// Keep only keys that will not be too old once the counter is at.
		if uint64(d.ctr)+uint64(params.maxOOOKeys) >= uint64(at) {
			skipped = append(skipped, keyEntry{index: d.ctr, key: k})
		}
	}
	var key [keySize]byte
	d, key = d.nextKey()
	// The crate garbage-collects lazily (KeyHistory::gc), but keys older
	// than ctr - maxOOOKeys are refused before being looked up, so dropping
	// them now is not observable.
	d.prev = d.prev.appendAndTrim(skipped, d.horizon(params))
	return d, key, nil
}

// horizon is the smallest index that is not yet too old.
func (d chainDirection) horizon(params chainParams) uint32 {
	if d.ctr < params.maxOOOKeys {
		return 0
	}
	return d.ctr - params.maxOOOKeys
}

// keyHistory is the set of skipped keys of a receiving ratchet, sorted by
// index (src/chain.rs KeyHistory). It is persistent: blocks are never
// modified once created, so copies of a state share them and an update
// copies at most one block and the block list.
type keyHistory struct {
	blocks []*historyBlock
}

// historyBlockSize bounds the work of one update: a block is copied
// (historyBlockSize·36 bytes) when a key is taken from it.
const historyBlockSize = 32

// historyBlock holds between 1 and historyBlockSize entries, sorted.
type historyBlock struct {
	entries []keyEntry
}

type keyEntry struct {
	index uint32
	key   [keySize]byte
}

func (h keyHistory) len() int {
	n := 0
	for _, b := range h.blocks {
		n += len(b.entries)
	}
	return n
}

// take returns the history without the key at index at, and that key.
func (h keyHistory) take(at uint32) (keyHistory, [keySize]byte, bool) {
	// The first block whose last index is ≥ at is the only candidate.
	lo, hi := 0, len(h.blocks)
	for lo < hi {
		mid := (lo + hi) / 2
		if h.blocks[mid].last() < at {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(h.blocks) {
		return h, [keySize]byte{}, false
	}
	entries := h.blocks[lo].entries
	j := 0
	for j < len(entries) && entries[j].index < at {
		j++
	}
	if entries[j].index != at {
		return h, [keySize]byte{}, false
	}
	key := entries[j].key
	blocks := make([]*historyBlock, 0, len(h.blocks))
	blocks = append(blocks, h.blocks[:lo]...)
	if len(entries) > 1 {
		rest := make([]keyEntry, 0, len(entries)-1)
		rest = append(append(rest, entries[:j]...), entries[j+1:]...)
		blocks = append(blocks, &historyBlock{entries: rest})
	}
	blocks = append(blocks, h.blocks[lo+1:]...)
	return keyHistory{blocks: blocks}, key, true
}

// appendAndTrim returns the history with the entries added (their indices
// exceed all present ones, in increasing order) and without entries whose
// index is below horizon.
func (h keyHistory) appendAndTrim(add []keyEntry, horizon uint32) keyHistory {
	blocks := h.blocks
	for len(blocks) > 0 && blocks[0].last() < horizon {
		blocks = blocks[1:]
	}
	trimFirst := len(blocks) > 0 && blocks[0].entries[0].index < horizon
	if len(add) == 0 && !trimFirst {
		return keyHistory{blocks: blocks}
	}
	out := make([]*historyBlock, 0, len(blocks)+len(add)/historyBlockSize+1)
	out = append(out, blocks...)
	if trimFirst {
		e := out[0].entries
		j := 0
		for e[j].index < horizon {
			j++
		}
		out[0] = &historyBlock{entries: e[j:]}
	}
	// Fill the last block, then add new ones.
	if n := len(out); n > 0 && len(add) > 0 {
		if last := out[n-1].entries; len(last) < historyBlockSize {
			take := min(historyBlockSize-len(last), len(add))
			merged := make([]keyEntry, 0, len(last)+take)
			merged = append(append(merged, last...), add[:take]...)
			out[n-1] = &historyBlock{entries: merged}
			add = add[take:]
		}
	}
	for len(add) > 0 {
		take := min(historyBlockSize, len(add))
		out = append(out, &historyBlock{entries: append([]keyEntry(nil), add[:take]...)})
		add = add[take:]
	}
	return keyHistory{blocks: out}
}

func (b *historyBlock) last() uint32 { return b.entries[len(b.entries)-1].index }

// all returns every entry, in order.
func (h keyHistory) all() []keyEntry {
	out := make([]keyEntry, 0, h.len())
	for _, b := range h.blocks {
		out = append(out, b.entries...)
	}
	return out
}

// historyOf builds a history from sorted entries.
func historyOf(entries []keyEntry) keyHistory {
	return keyHistory{}.appendAndTrim(entries, 0)
}
