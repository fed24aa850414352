package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"iter"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/kt"
)

// Key transparency (kt/, docs/key-transparency.md): the server keeps a
// kt.Log in memory, restored from the store at New. An account's one entry
// is its username's (kt.UsernameLabel), holding a kt.AccountValue. Every
// account change records in its own transaction a pending update with the
// value the change left; the sequencer (run by Run) publishes them in
// order, each as its own version of the entry, an epoch at a time with at
// most one update per username in an epoch (a second one waits for the
// next), so that every device list an account had is in the log, one
// counter step each, which is what owners check:
//
//	pending updates (in Seq order) --first per label--> Log.Append --> batch
//	  --store.AppendEpoch (deletes the rows published)--> published
//	                  \--on failure: Log.Revert, retry later
//
// A request that changed an account answers only once its change is in an
// epoch of this node's log (flush). When nothing changes, the sequencer still makes an epoch
// every EpochInterval, an empty one (the same prefix root, a new
// timestamp): clients refuse a log whose newest epoch is much older than
// that (kt.Verifier.MaxEpochAge), so that the server cannot keep one of
// them on an old view of the log, and an owner who finds it old is
// alerted. Proofs and checkpoints are made under the read side of
// ktState.mu, and an epoch is appended and stored under its write side, so
// that nothing is handed out of an epoch before it is stored.
//
// Several nodes may serve one store (PostgreSQL). Exactly one of them, the
// one holding the store's sequencer lease (store.AcquireSequencer), makes
// epochs; every other node is a follower. Each node's sequencer goroutine
// plays the part its lease gives it:
//
//	follower --AcquireSequencer (every FollowInterval)--> sequencer
//	   ^                                                     |
//	   +------- lease lost (Check fails) or Run ended -------+
//
// A follower brings its log forward from the store, epoch by epoch
// (kt.Log.Apply on the stored changes), every FollowInterval, and, while a
// request waits for its change (flush), every PollInterval until the
// store holds no pending update as old as the request's and the follower
// has applied every epoch stored then. The sequencer catches up the same
// way when it takes the lease, and when the store refuses its epoch
// (store.ErrEpochConflict: another node appended one, so the log never
// forks) before trying again. A lookup that finds the store's entry newer
// than this node's tree (kt.ErrEntryMismatch) catches up and proves again.
// Cosignatures an auditor gave another node are read from the store on
// every round.

// Defaults of TransparencyConfig.
const (
	// DefaultTransparencyPoll is how often the sequencer looks for
	// pending updates no request to this node asked it to publish (from
	// other nodes, from before a restart, or a migration), and how often
	// a follower with a request waiting looks whether the sequencer
	// published it.
	DefaultTransparencyPoll = 500 * time.Millisecond
	// DefaultFollowInterval is how often a follower tries to become the
	// sequencer, and brings its log forward when no request waits.
	DefaultFollowInterval = time.Second
	// DefaultFlushTimeout bounds how long a request that changed an
	// account waits for its epoch.
	DefaultFlushTimeout = 30 * time.Second
	// DefaultEpochInterval is the longest the log goes without an epoch:
	// a sixth of the age at which clients refuse it (the client's
	// DefaultMaxEpochAge, an hour), which leaves room for a restart, a
	// slow store and clocks that differ.
	DefaultEpochInterval = 10 * time.Minute
)

const (
	// maxEpochPending bounds the pending updates one epoch publishes (one
	// label each), well under kt.MaxUpdates.
	maxEpochPending = 4096
	// maxAuditBytes bounds the epochs' changes in one audit answer (the
	// first epoch is always given, whatever its size).
	maxAuditBytes = 4 << 20
	// auditChunk is how many epochs an audit answer reads at a time.
	auditChunk = 100
	// maxSequencerBackoff bounds the wait before retrying a failed epoch.
	maxSequencerBackoff = 10 * time.Second
	// minSequencerWait is the shortest wait between two drains the
	// sequencer starts of its own.
	minSequencerWait = 10 * time.Millisecond
	// catchUpChunk is how many stored epochs a follower reads at a time.
	catchUpChunk = 256
	// maxConflicts bounds how often a drain catches up after the store
	// refused its epoch (another node appended) before it fails.
	maxConflicts = 3
	// maxProveRetries bounds how often a lookup catches up and proves
	// again after finding the store ahead of the log.
	maxProveRetries = 3
)

// TransparencyConfig configures key transparency.
type TransparencyConfig struct {
	// Log is the log's origin, checkpoint signer and VRF key.
	Log kt.LogConfig
	// LogKey is the signer's note verifier key, which clients pin (GET
	// /v1/transparency/keys); it must be Log.Signer's.
	LogKey string
	// Auditors are the note verifier keys (cosignature/v1,
	// kt.GenerateCosignerKey) of the auditors whose cosignatures the
	// server accepts and hands out with lookups.
	Auditors []string
	// PollInterval is how often the sequencer looks for pending updates
	// that no request to this node asked it to publish, and a follower
	// with a request waiting looks whether they are published (default
	// DefaultTransparencyPoll).
	PollInterval time.Duration
	// FollowInterval is how often a node that is not the sequencer tries
	// to become it and brings its log forward from the store (default
	// DefaultFollowInterval).
	FollowInterval time.Duration
	// FlushTimeout bounds how long a request that changed an account
	// waits for the epoch publishing it (default DefaultFlushTimeout).
	FlushTimeout time.Duration
	// EpochInterval is the longest the sequencer goes without making an
	// epoch: when no change was published for that long it makes an
	// empty one (default DefaultEpochInterval). Clients refuse a log
	// whose newest epoch is older than their MaxEpochAge (an hour by
	// default), so keep it well under that.
	EpochInterval time.Duration
}

// ktState is the server's key-transparency state.
type ktState struct {
	cfg      TransparencyConfig
	log      *kt.Log
	keys     api.TransparencyKeysResponse
	auditors []auditor

	// mu is held for writing from an epoch's Append to its store's
	// answer (and Revert), and for reading while a proof or checkpoint is
	// made from the log and the store's entries.
	mu      sync.RWMutex
	entries atomic.Int64 // leaves in the prefix tree
	// lastEpoch is the newest epoch's timestamp (Unix ms; 0 before the
	// first).
	lastEpoch atomic.Int64
	// leader tells whether this node holds the sequencer lease.
	leader atomic.Bool

	seq sequencer
}

// auditor is a configured auditor: its verifier, and its name in the store
// ("name+hash", as note keys spell them).
type auditor struct {
	id string
	v  note.Verifier
}

func auditorID(v note.Verifier) string { return fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash()) }

// sequencer is the state Flush waits on. A drain is a run of epochs that
// publishes every pending update the store held when it began (on the
// sequencer), or a wait until another node published them and this one
// applied their epochs (on a follower).
//
//	requested: drains asked for by Flush, counting up
//	done:      the newest request a finished drain covers
//	stopped:   Run's sequencer has ended; no drain will come
type sequencer struct {
	mu        sync.Mutex
	requested uint64
	done      uint64
	stopped   bool
	changed   chan struct{} // closed and replaced when done or stopped change
	wake      chan struct{} // a poke for the sequencer, capacity 1
	running   atomic.Bool   // a sequencer goroutine runs
}

var (
	errSequencerStopped = errorf(http.StatusServiceUnavailable, api.CodeUnavailable,
		"the change is stored, but the server is stopping before publishing it in the transparency log")
	errFlushTimeout = errorf(http.StatusServiceUnavailable, api.CodeUnavailable,
		"the change is stored, but publishing it in the transparency log is delayed")
	errNoEpoch = errorf(http.StatusServiceUnavailable, api.CodeUnavailable,
		"the transparency log has no epoch yet")
	errNoTransparency = errorf(http.StatusNotFound, api.CodeNotFound, "key transparency is not configured")
)

// newKT checks the configuration and restores the log from the store.
func newKT(ctx context.Context, cfg TransparencyConfig, st store.Store) (*ktState, error) {
	log, err := kt.NewLog(cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("server: transparency: %v", err)
	}
	v, err := note.NewVerifier(cfg.LogKey)
	if err != nil {
		return nil, fmt.Errorf("server: transparency: log key: %v", err)
	}
	if sig, err := cfg.Log.Signer.Sign([]byte("doorless: log key check\n")); err != nil ||
		v.Name() != cfg.Log.Signer.Name() || v.KeyHash() != cfg.Log.Signer.KeyHash() ||
		!v.Verify([]byte("doorless: log key check\n"), sig) {
		return nil, errors.New("server: transparency: the log key is not the signer's")
	}
	k := &ktState{cfg: cfg, log: log}
	k.keys = api.TransparencyKeysResponse{Origin: cfg.Log.Origin, LogKey: cfg.LogKey, VRFKey: cfg.Log.VRF.Public().Bytes()}
	for _, vkey := range cfg.Auditors {
		v, err := kt.NewCosignatureVerifier(vkey)
		if err != nil {
			return nil, fmt.Errorf("server: transparency: auditor key %q: %v", vkey, err)
		}
		k.auditors = append(k.auditors, auditor{id: auditorID(v), v: v})
		k.keys.Auditors = append(k.keys.Auditors, vkey)
	}
	if k.cfg.PollInterval <= 0 {
		k.cfg.PollInterval = DefaultTransparencyPoll
	}
	if k.cfg.FollowInterval <= 0 {
		k.cfg.FollowInterval = DefaultFollowInterval
	}
	if k.cfg.FlushTimeout <= 0 {
		k.cfg.FlushTimeout = DefaultFlushTimeout
	}
	if k.cfg.EpochInterval <= 0 {
		k.cfg.EpochInterval = DefaultEpochInterval
	}
	k.seq.changed = make(chan struct{})
	k.seq.wake = make(chan struct{}, 1)

	heads, err := st.EpochHeads(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: transparency: %w", err)
	}
	var readErr error
	var n int64
	leaves := func(yield func(kt.Leaf) bool) {
		for l, err := range st.TransparencyLeaves(ctx) {
			if err != nil {
				readErr = err
				return
			}
			n++
			if !yield(l) {
				return
			}
		}
	}
	err = log.Restore(iter.Seq[kt.Leaf](leaves), heads)
	if readErr != nil {
		return nil, fmt.Errorf("server: transparency: %w", readErr)
	}
	if err != nil {
		return nil, fmt.Errorf("server: transparency: the stored log does not restore: %v", err)
	}
	k.entries.Store(n)
	if len(heads) > 0 {
		k.lastEpoch.Store(heads[len(heads)-1].Timestamp)
	}
	cos, err := st.Cosignatures(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: transparency: %w", err)
	}
	for _, c := range cos {
		for _, a := range k.auditors {
			if a.id == c.Auditor {
				// One the log no longer accepts is dropped: it is
				// handed out no more.
				log.AddCosignature(c.Checkpoint, a.v)
			}
		}
	}
	return k, nil
}

// ---- The sequencer ----

// poke wakes the sequencer.
func (q *sequencer) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// finish records that a drain covering request gen succeeded, or that the
// sequencer stopped, and wakes the waiters.
func (q *sequencer) finish(gen uint64, stopped bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if gen > q.done {
		q.done = gen
	}
	if stopped {
		q.stopped = true
	}
	close(q.changed)
	q.changed = make(chan struct{})
}

// flush waits until every pending update stored before the call is
// published, for at most FlushTimeout and while ctx lasts. Without key
// transparency it returns at once.
func (s *Server) flush(ctx context.Context) error {
	if s.kt == nil {
		return nil
	}
	q := &s.kt.seq
	q.mu.Lock()
	q.requested++
	gen := q.requested
	q.mu.Unlock()
	q.poke()
	timer := time.NewTimer(s.kt.cfg.FlushTimeout)
	defer timer.Stop()
	for {
		q.mu.Lock()
		done, stopped, ch := q.done, q.stopped, q.changed
		q.mu.Unlock()
		switch {
		case done >= gen:
			return nil
		case stopped:
			return errSequencerStopped
		}
		select {
		case <-ch:
		case <-timer.C:
			return errFlushTimeout
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Flush waits until every account change stored before the call is
// published in the transparency log (nil at once without key
// transparency), or ctx ends. Run must be running.
func (s *Server) Flush(ctx context.Context) error {
	err := s.flush(ctx)
	var he *httpError
	if errors.As(err, &he) {
		return fmt.Errorf("server: flush: %s", he.body.Message)
	}
	return err
}

// startSequencer runs the sequencer in a goroutine until ctx ends, unless
// one runs already; the returned channel is closed when it has ended.
func (s *Server) startSequencer(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if s.kt == nil || !s.kt.seq.running.CompareAndSwap(false, true) {
		close(done)
		return done
	}
	s.kt.seq.mu.Lock()
	s.kt.seq.stopped = false
	s.kt.seq.mu.Unlock()
	go func() {
		defer close(done)
		defer s.kt.seq.running.Store(false)
		s.sequence(ctx)
	}()
	return done
}

// sequence plays this node's part in the log until ctx ends. As the
// sequencer (holding the store's lease) it publishes pending updates: at
// start, when poked, every PollInterval, and after a failure with a
// growing backoff; and it makes an empty epoch when the newest is
// EpochInterval old. As a follower it tries to take the lease every
// FollowInterval and brings the log forward from the store (follow).
func (s *Server) sequence(ctx context.Context) {
	k := s.kt
	q := &k.seq
	defer q.finish(0, true)
	var lease store.SequencerLease
	defer func() {
		k.leader.Store(false)
		if lease != nil {
			if err := lease.Release(); err != nil {
				s.log.Warn("transparency: releasing the sequencer lease", "err", err)
			}
		}
	}()
	var (
		backoff   time.Duration
		nextTry   time.Time   // when a follower next tries to take the lease
		nextCheck time.Time   // when the sequencer next checks its lease
		nextCosig time.Time   // when the store's cosignatures are next read
		wait      *followWait // a follower's flush in progress
		catchUp   bool        // the sequencer is to catch up before its drain
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-timer.C:
		}
		q.mu.Lock()
		gen := q.requested
		q.mu.Unlock()
		now := time.Now()
		if lease != nil && !now.Before(nextCheck) {
			if err := lease.Check(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("transparency: lost the sequencer lease; following", "err", err)
				lease.Release()
				lease = nil
				k.leader.Store(false)
			}
			nextCheck = now.Add(k.cfg.FollowInterval)
		}
		if lease == nil && !now.Before(nextTry) {
			l, err := s.st.AcquireSequencer(ctx)
			switch {
			case err == nil:
				s.log.Info("transparency: this node is now the sequencer")
				lease, wait, catchUp = l, nil, true
				k.leader.Store(true)
				nextCheck = now.Add(k.cfg.FollowInterval)
			case errors.Is(err, store.ErrSequencerTaken):
			case ctx.Err() != nil:
				return
			default:
				s.log.Error("transparency: trying to become the sequencer", "err", err)
			}
			nextTry = now.Add(k.cfg.FollowInterval)
		}
		var err error
		if lease != nil {
			if err = s.lead(ctx, catchUp); err == nil {
				q.finish(gen, false)
				catchUp = false
			}
		} else {
			err = s.follow(ctx, gen, &wait)
		}
		if err == nil && !now.Before(nextCosig) {
			err = s.refreshCosignatures(ctx)
			nextCosig = now.Add(k.cfg.FollowInterval)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.met.ktFailures.Inc()
			backoff = min(max(2*backoff, 100*time.Millisecond), maxSequencerBackoff)
			s.log.Error("transparency: publishing or following the log failed", "err", err, "retry", backoff, "sequencer", lease != nil)
			timer.Reset(backoff)
			continue
		}
		backoff = 0
		// (At least minSequencerWait: should an epoch due not have been
		// made, the sequencer must not spin.)
		var next time.Duration
		switch {
		case lease != nil:
			next = min(k.cfg.PollInterval, s.untilEpochDue())
		case wait != nil:
			next = min(k.cfg.PollInterval, time.Until(nextTry))
		default:
			next = time.Until(nextTry)
		}
		timer.Reset(max(next, minSequencerWait))
		if lease == nil && wait == nil {
			q.mu.Lock()
			more := q.requested > q.done
			q.mu.Unlock()
			if more {
				q.poke() // requests that came during the last wait
			}
		}
	}
}

// lead is one round of the sequencer: it brings the log forward from the
// store when asked (on taking the lease), then drains the pending updates,
// catching up and trying again when another node appended an epoch first.
func (s *Server) lead(ctx context.Context, catchUp bool) error {
	for conflicts := 0; ; conflicts++ {
		if catchUp {
			if err := s.catchUp(ctx); err != nil {
				return err
			}
		}
		err := s.drainPending(ctx)
		if !errors.Is(err, store.ErrEpochConflict) || conflicts == maxConflicts {
			return err
		}
		s.log.Warn("transparency: another node appended an epoch; catching up")
		catchUp = true
	}
}

// followWait is a follower's drain: flush requests up to gen wait until
// no pending update with a Seq at most last is left.
type followWait struct {
	gen  uint64
	last int64
}

// follow is one round of a follower: it brings the log forward from the
// store, and finishes the drain *wait (starting one when a request waits
// and none is in progress) once the sequencer published every update it
// covers and their epochs are applied.
func (s *Server) follow(ctx context.Context, gen uint64, wait **followWait) error {
	q := &s.kt.seq
	q.mu.Lock()
	done := q.done
	q.mu.Unlock()
	if *wait == nil && gen > done {
		last, err := s.st.LastPendingSeq(ctx)
		if err != nil {
			return err
		}
		*wait = &followWait{gen: gen, last: last}
	}
	published := true
	if *wait != nil {
		// (AppendEpoch deletes an update in the epoch's transaction: once
		// it is gone, EpochCount, read after, counts its epoch.)
		ups, err := s.st.PendingUpdates(ctx, 1)
		if err != nil {
			return err
		}
		published = len(ups) == 0 || ups[0].Seq > (*wait).last
	}
	if err := s.catchUp(ctx); err != nil {
		return err
	}
	if *wait != nil && published {
		q.finish((*wait).gen, false)
		*wait = nil
	}
	return nil
}

// catchUp applies the epochs the store holds and the log does not.
func (s *Server) catchUp(ctx context.Context) error {
	k := s.kt
	n, err := s.st.EpochCount(ctx)
	if err != nil {
		return err
	}
	for {
		size := k.log.Size()
		if size > n {
			return fmt.Errorf("server: transparency: the log has %d epochs, the store %d", size, n)
		}
		if size == n {
			return nil
		}
		es, err := s.st.Epochs(ctx, size, catchUpChunk)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			return fmt.Errorf("server: transparency: the store counts %d epochs but holds none from %d", n, size)
		}
		if err := s.applyEpochs(es); err != nil {
			return err
		}
	}
}

// applyEpochs applies stored epochs to the log, skipping those it holds
// already (a lookup's catch-up may have run meanwhile).
func (s *Server) applyEpochs(es []store.Epoch) error {
	k := s.kt
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range es {
		e := &es[i]
		size := k.log.Size()
		if e.Number < size {
			continue
		}
		if e.Number > size {
			return fmt.Errorf("server: transparency: stored epoch %d after %d epochs", e.Number, size)
		}
		var c kt.EpochChanges
		if err := c.UnmarshalBinary(e.Changes); err != nil {
			return fmt.Errorf("server: transparency: stored epoch %d: %v", e.Number, err)
		}
		added, err := k.log.Apply(&c)
		if err != nil {
			return fmt.Errorf("server: transparency: stored epoch %d does not apply: %v", e.Number, err)
		}
		s.noteEpoch(e.Number, c.Epoch.Timestamp, int64(added))
	}
	return nil
}

// noteEpoch records a new epoch, of the log's making or applied from the
// store, in the state and the metrics; k.mu is held for writing.
func (s *Server) noteEpoch(number uint64, timestamp, added int64) {
	k := s.kt
	k.entries.Add(added)
	k.lastEpoch.Store(timestamp)
	s.met.ktLastEpoch.Set(float64(timestamp) / 1000)
	s.met.ktEpochs.Set(float64(number + 1))
	s.met.ktEntries.Set(float64(k.entries.Load()))
}

// refreshCosignatures gives the log the cosignatures the store holds, which
// auditors may have given another node (every FollowInterval); one it
// holds already or no longer accepts changes nothing.
func (s *Server) refreshCosignatures(ctx context.Context) error {
	k := s.kt
	if len(k.auditors) == 0 {
		return nil
	}
	cos, err := s.st.Cosignatures(ctx)
	if err != nil {
		return err
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, c := range cos {
		for _, a := range k.auditors {
			if a.id == c.Auditor {
				k.log.AddCosignature(c.Checkpoint, a.v)
			}
		}
	}
	return nil
}

// untilEpochDue is how long until the log is EpochInterval old, and the
// sequencer makes an empty epoch (0: now).
func (s *Server) untilEpochDue() time.Duration {
	if s.kt.log.Size() == 0 {
		return 0
	}
	due := time.UnixMilli(s.kt.lastEpoch.Load()).Add(s.kt.cfg.EpochInterval)
	return max(due.Sub(s.now()), 0)
}

// drainPending publishes every pending update, in Seq order, an epoch at a
// time: each epoch takes, of up to maxEpochPending pending updates, the
// first of each username, and leaves the later ones of the same username
// to the next epoch. It returns once an epoch leaves nothing behind. With
// nothing pending, it makes an empty epoch when one is due: in an empty
// log, so that lookups can be answered, and when the newest epoch is
// EpochInterval old.
func (s *Server) drainPending(ctx context.Context) error {
	for {
		ups, err := s.st.PendingUpdates(ctx, maxEpochPending)
		if err != nil {
			return err
		}
		s.met.ktPending.Set(float64(len(ups)))
		if len(ups) == 0 {
			if s.untilEpochDue() == 0 {
				return s.appendEpoch(ctx, nil, nil)
			}
			return nil
		}
		updates, seqs := epochUpdates(ups)
		if err := s.appendEpoch(ctx, updates, seqs); err != nil {
			return err
		}
		s.met.ktPending.Set(float64(len(ups) - len(seqs)))
		if len(seqs) == len(ups) && len(ups) < maxEpochPending {
			return nil
		}
	}
}

// epochUpdates picks an epoch's updates from pending ones (in Seq order):
// the first of each username, with the value it holds (pendingValue), and
// returns them with their Seqs.
func epochUpdates(ups []store.PendingUpdate) ([]kt.Update, []int64) {
	updates := make([]kt.Update, 0, len(ups))
	seqs := make([]int64, 0, len(ups))
	seen := make(map[string]bool, len(ups))
	for i := range ups {
		u := &ups[i]
		if seen[u.Username] {
			continue // the next epoch's
		}
		seen[u.Username] = true
		updates = append(updates, kt.Update{Label: kt.UsernameLabel(u.Username), Value: pendingValue(u)})
		seqs = append(seqs, u.Seq)
	}
	return updates, seqs
}

// pendingValue is the value a pending update publishes: the account, its
// identity key and its device list, or nothing (a deletion).
func pendingValue(u *store.PendingUpdate) []byte {
	if u.Deletion() {
		return nil
	}
	v := kt.AccountValue{AccountID: u.AccountID, IdentityKey: u.IdentityKey, DeviceList: u.DeviceList}
	return v.Encode()
}

// appendEpoch appends one epoch to the log and stores it with the pending
// updates it publishes; when the store fails, the log takes it back.
func (s *Server) appendEpoch(ctx context.Context, updates []kt.Update, published []int64) error {
	k := s.kt
	k.mu.Lock()
	defer k.mu.Unlock()
	b, err := k.log.Append(updates, s.now(), rand.Reader)
	if err != nil {
		return err
	}
	e := &store.Epoch{Number: k.log.Size() - 1, Timestamp: b.Changes.Epoch.Timestamp,
		PrefixRoot: b.Changes.Epoch.PrefixRoot, Checkpoint: b.Checkpoint}
	if e.Changes, err = b.Changes.MarshalBinary(); err == nil {
		err = s.st.AppendEpoch(ctx, e, b.Entries, published)
	}
	if err != nil {
		if rerr := k.log.Revert(b); rerr != nil {
			// Cannot happen: nothing else appends. The log is now
			// ahead of the store; a restart restores it.
			return fmt.Errorf("server: transparency: revert after %v: %v", err, rerr)
		}
		return err
	}
	var added int64
	for _, l := range b.Changes.Leaves {
		if l.Counter == 0 {
			added++
		}
	}
	s.noteEpoch(e.Number, e.Timestamp, added)
	if len(updates) == 0 {
		s.met.ktEmptyEpochs.Inc()
	}
	s.met.ktUpdates.Add(float64(len(updates)))
	return nil
}

// ---- Proofs ----

// parseKnown reads the QueryKnownSize parameter: absent or empty is 0.
func parseKnown(r *http.Request) (uint64, error) {
	v := r.URL.Query().Get(api.QueryKnownSize)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badRequest("%s must be a log size: a decimal number", api.QueryKnownSize)
	}
	return n, nil
}

// lookup is a proof and what it proves of a username.
type lookup struct {
	proof []byte
	value *kt.AccountValue // the username's entry (nil: none, or deleted)
}

// prove makes a lookup proof for username's entry; known is the log size
// the client kept. When this node's log is behind (another node appended
// epochs this one has not applied yet): the store's entry is newer than
// the log's, or the client knows a larger log (from another node), or
// the log is empty, it catches up and proves again.
func (s *Server) prove(ctx context.Context, username string, known uint64) (*lookup, error) {
	for tries := 0; ; tries++ {
		l, err := s.proveOnce(ctx, username, known)
		var behind *logBehindError
		switch {
		case errors.As(err, &behind) && tries == maxProveRetries:
			return nil, behind.err
		case !errors.As(err, &behind) && !errors.Is(err, kt.ErrEntryMismatch) || tries == maxProveRetries:
			return l, err
		}
		if err := s.catchUp(ctx); err != nil {
			return nil, err
		}
	}
}

// proveOnce is prove's one attempt.
func (s *Server) proveOnce(ctx context.Context, username string, known uint64) (*lookup, error) {
	k := s.kt
	label := kt.UsernameLabel(username)
	k.mu.RLock()
	defer k.mu.RUnlock()
	size := k.log.Size()
	if size == 0 {
		return nil, &logBehindError{errNoEpoch}
	}
	if known > size {
		return nil, &logBehindError{badRequest("%s=%d is beyond the log's size %d: the log you knew is not this one", api.QueryKnownSize, known, size)}
	}
	entry := func(i kt.Index) (*kt.Entry, error) {
		e, err := s.st.TransparencyEntry(ctx, i)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		e.Label = label
		if e.Value == nil {
			e.Value = []byte{}
		}
		return e, nil
	}
	p, err := k.log.Prove([][]byte{label}, known, entry)
	if err != nil {
		return nil, err
	}
	res := &lookup{}
	if len(p.Entries) == 1 && len(p.Entries[0].Value) > 0 {
		v, err := kt.DecodeAccountValue(p.Entries[0].Value)
		if err != nil {
			return nil, fmt.Errorf("server: transparency: the username's entry: %v", err)
		}
		res.value = v
	}
	if res.proof, err = p.MarshalBinary(); err != nil {
		return nil, err
	}
	return res, nil
}

// logBehindError is proveOnce's answer when the log may be behind the
// store's: err is the answer should it still be after catching up.
type logBehindError struct{ err error }

func (e *logBehindError) Error() string { return e.err.Error() }

// ---- Handlers ----

func (s *Server) transparencyRoutes(handle func(string, handlerFunc)) {
	handle("GET "+api.PathTransparencyKeys, s.limitIP(s.withKT(s.handleTransparencyKeys)))
	handle("GET "+api.PathTransparencyLookup, s.limitIP(s.authed(func(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
		return s.withKT(func(w http.ResponseWriter, r *http.Request) error { return s.handleLookup(w, r, dev) })(w, r)
	})))
	handle("GET "+api.PathTransparencyAudit, s.limitIP(s.withKT(s.handleAudit)))
	handle("GET "+api.PathTransparencyCheckpoint, s.limitIP(s.withKT(s.handleCheckpoint)))
	handle("POST "+api.PathTransparencyCosign, s.limitIP(s.withKT(s.handleCosign)))
}

// withKT answers 404 when key transparency is not configured.
func (s *Server) withKT(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.kt == nil {
			return errNoTransparency
		}
		return h(w, r)
	}
}

// GET /v1/transparency/keys
func (s *Server) handleTransparencyKeys(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.kt.keys)
	return nil
}

// GET /v1/transparency/lookup/{username}?known=N
func (s *Server) handleLookup(w http.ResponseWriter, r *http.Request, _ *store.Device) error {
	known, err := parseKnown(r)
	if err != nil {
		return err
	}
	username := r.PathValue("username")
	if !api.ValidUsername(username) {
		return badRequest("username must be 3 to 32 of a-z, 0-9 and _, starting with a letter")
	}
	l, err := s.prove(r.Context(), username, known)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.TransparencyLookupResponse{Proof: l.proof})
	return nil
}

// GET /v1/transparency/audit?from=N
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) error {
	var from uint64
	if v := r.URL.Query().Get(api.QueryFrom); v != "" {
		var err error
		if from, err = strconv.ParseUint(v, 10, 64); err != nil {
			return badRequest("%s must be an epoch number: a decimal number", api.QueryFrom)
		}
	}
	ctx := r.Context()
	n, err := s.st.EpochCount(ctx)
	if err != nil {
		return err
	}
	if from > n {
		return badRequest("%s=%d is beyond the log's %d epochs", api.QueryFrom, from, n)
	}
	resp := api.TransparencyAuditResponse{From: from, Epochs: [][]byte{}}
	size := 0
	for next := from; next < n && len(resp.Epochs) < api.MaxAuditEpochs; {
		es, err := s.st.Epochs(ctx, next, min(auditChunk, api.MaxAuditEpochs-len(resp.Epochs)))
		if err != nil {
			return err
		}
		if len(es) == 0 {
			break
		}
		full := false
		for _, e := range es {
			if len(resp.Epochs) > 0 && size+len(e.Changes) > maxAuditBytes {
				full = true
				break
			}
			size += len(e.Changes)
			resp.Epochs = append(resp.Epochs, e.Changes)
			next = e.Number + 1
		}
		if full {
			break
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// GET /v1/transparency/checkpoint
func (s *Server) handleCheckpoint(w http.ResponseWriter, r *http.Request) error {
	s.kt.mu.RLock()
	cp := s.kt.log.Checkpoint()
	s.kt.mu.RUnlock()
	if cp == nil {
		return errNoEpoch
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write(cp)
	return nil
}

// POST /v1/transparency/cosignatures: an auditor's cosigned checkpoint.
// Kept when a configured auditor's cosignature verifies on one of the
// log's checkpoints.
func (s *Server) handleCosign(w http.ResponseWriter, r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" {
		return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia, "content type must be text/plain")
	}
	if r.ContentLength > kt.MaxCheckpointSize {
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "body over %d bytes", kt.MaxCheckpointSize)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, kt.MaxCheckpointSize))
	if err != nil {
		return err // *http.MaxBytesError: 413
	}
	if len(s.kt.auditors) == 0 {
		return errorf(http.StatusForbidden, api.CodeForbidden, "this server is configured with no auditors")
	}
	// A note that verifies by no key at all is well formed; anything else
	// is not a note.
	var unverified *note.UnverifiedNoteError
	if _, err := note.Open(body, note.VerifierList()); !errors.As(err, &unverified) {
		return badRequest("the body is not a signed note")
	}
	ctx := r.Context()
	accepted := 0
	var notOurs, malformed bool
	for _, a := range s.kt.auditors {
		s.kt.mu.RLock()
		err := s.kt.log.AddCosignature(body, a.v)
		s.kt.mu.RUnlock()
		switch {
		case errors.Is(err, kt.ErrInconsistent):
			notOurs = true
			continue
		case errors.Is(err, kt.ErrMalformed):
			malformed = true
			continue
		case err != nil:
			continue
		}
		n, err := note.Open(body, note.VerifierList(a.v))
		if err != nil {
			return err // it just verified
		}
		c, err := kt.ParseCheckpoint([]byte(n.Text))
		if err != nil {
			return err
		}
		if err := s.st.PutCosignature(ctx, &store.Cosignature{Auditor: a.id, Size: c.Size, Checkpoint: body}); err != nil {
			return err
		}
		accepted++
	}
	switch {
	case accepted > 0:
		w.WriteHeader(http.StatusNoContent)
		return nil
	case notOurs:
		return errorf(http.StatusConflict, api.CodeBadRequest, "the cosigned checkpoint is not one of this log's")
	case malformed:
		return badRequest("the cosigned checkpoint is malformed")
	default:
		return errorf(http.StatusForbidden, api.CodeForbidden, "no cosignature by a configured auditor verifies")
	}
}
