package kt

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// The benchmarks run against a log of benchAccounts synthetic accounts,
// each with its username's entry (1,000,000 leaves), and
// benchEpochs epochs: one a minute for a year. Building the leaves through
// the VRF would take minutes, so all but the benchmarked accounts get
// random indexes (which is what VRF outputs look like) and commitments,
// and the log is restored from them; the benchmarked accounts are then
// appended through Log.Append, so their proofs are real. The setup runs
// once per `go test -bench` process, outside the timers, and only when a
// benchmark that needs it runs: `go test ./kt` without -bench never builds
// it.
const (
	benchAccounts = 1_000_000
	benchEpochs   = 1 << 19 // ≈ one epoch a minute for a year
	// benchDeviceList is the size of a signed device list (a few
	// devices, the version, a timestamp, an XEdDSA signature).
	benchDeviceList = 100
)

type benchLog struct {
	f        *fixture
	heapLeaf float64 // prefix-tree heap bytes per leaf
	heapLog  float64 // whole Log heap bytes per account
}

var (
	benchOnce sync.Once
	bench     *benchLog
)

// benchAccount is synthetic account n's label and value.
func benchAccount(n int) (label, value []byte) {
	id := fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n)
	v := AccountValue{AccountID: id, IdentityKey: make([]byte, 33), DeviceList: make([]byte, benchDeviceList)}
	v.IdentityKey[0] = 5
	return UsernameLabel(fmt.Sprintf("user%07d.42", n)), v.Encode()
}

func benchSetup(b *testing.B) *benchLog {
	benchOnce.Do(func() {
		start := time.Now()
		k := newKeys(b, 42)
		f := newFixture(b, k)
		f.t = nil // set per benchmark
		r := rand.New(rand.NewPCG(42, 42))
		all := make([]Leaf, benchAccounts-2)
		for n := range all {
			l := &all[n]
			for j := 0; j < HashSize; j += 8 {
				binary.LittleEndian.PutUint64(l.Index[j:], r.Uint64())
			}
			l.Commitment = Hash(l.Index) // stands in for a random commitment
			l.Counter = uint32(r.IntN(3))
		}
		leaves := func(yield func(Leaf) bool) {
			for _, l := range all {
				if !yield(l) {
					return
				}
			}
		}
		// The prefix tree's memory, built leaf by leaf as Log.Append does.
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		t := newPrefixTree()
		for l := range leaves {
			t.Set(l)
		}
		root := t.Root()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heapLeaf := float64(m1.HeapAlloc-m0.HeapAlloc) / float64(t.Len())
		t = nil

		epochs := make([]Epoch, benchEpochs-1)
		ts := t0.Add(-time.Duration(benchEpochs) * time.Minute).UnixMilli()
		for n := range epochs {
			epochs[n] = Epoch{Timestamp: ts + int64(n)*60_000, PrefixRoot: Hash{byte(n), byte(n >> 8), byte(n >> 16)}}
		}
		epochs[len(epochs)-1].PrefixRoot = root
		f.now = t0.Add(-time.Minute)
		restoreStart := time.Now()
		if err := f.log.Restore(leaves, epochs); err != nil {
			b.Fatal(err)
		}
		restore := time.Since(restoreStart)
		all = nil
		runtime.ReadMemStats(&m1)
		heapLog := float64(f.log.prefix.memBytes()+f.log.log.memBytes()) / benchAccounts

		// The looked-up account (0) and the monitoring client's account
		// (1) are real; one epoch adds them.
		f.t = b
		u0, v0 := benchAccount(0)
		u1, v1 := benchAccount(1)
		f.append([]Update{{u0, v0}, {u1, v1}})
		f.t = nil
		bench = &benchLog{f: f, heapLeaf: heapLeaf, heapLog: heapLog}
		fmt.Printf("kt bench setup: %d leaves, %d epochs, %.1f s (Restore %.1f s), prefix tree %.0f B/leaf (grown by Set), restored Log %.0f B/account\n",
			f.log.prefix.Len(), f.log.Size(), time.Since(start).Seconds(), restore.Seconds(), heapLeaf, heapLog)
	})
	if bench == nil {
		b.Fatal("setup failed")
	}
	bench.f.t = b
	return bench
}

// lookupLabels are what the server answers for one account lookup: the
// username's entry.
func lookupLabels(n int) [][]byte {
	u, _ := benchAccount(n)
	return [][]byte{u}
}

// BenchmarkLookupProofSize reports the encoded size of one account lookup
// (its username's entry) for a client that knows the log as of an
// hour (60 epochs) before, with and without an auditor's cosignature.
func BenchmarkLookupProofSize(b *testing.B) {
	s := benchSetup(b)
	f := s.f
	size := f.log.Size()
	for _, c := range []struct {
		name    string
		known   uint64
		auditor bool
	}{
		{"known=hour-ago", size - 60, false},
		{"known=none", 0, false},
		{"known=hour-ago/cosigned", size - 60, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			var p *LookupProof
			var err error
			for b.Loop() {
				p, err = f.log.Prove(lookupLabels(0), c.known, f.entry)
				if err != nil {
					b.Fatal(err)
				}
			}
			if c.auditor {
				p.Audited = benchAudited(b, f)
			}
			reportProofSize(b, p)
		})
	}
}

// benchAudited makes an auditor-cosigned checkpoint 10 epochs behind the
// newest, as a lagging auditor's would be. (Replaying 2 million leaves for
// a real auditor would double the setup; the cosignature is real.)
func benchAudited(b *testing.B, f *fixture) []AuditedCheckpoint {
	size := f.log.Size()
	cs, _ := newAuditorKey(b, "auditor.example/witness", 1)
	signed, err := f.log.sign(&f.log.log, size-10)
	if err != nil {
		b.Fatal(err)
	}
	sig, err := cs.Sign([]byte(signed.text))
	if err != nil {
		b.Fatal(err)
	}
	n, err := encodeNote(signed.text, signed.sig, noteSig(cs.Name(), cs.KeyHash(), sig))
	if err != nil {
		b.Fatal(err)
	}
	proof, err := f.log.log.Consistency(size-10, size)
	if err != nil {
		b.Fatal(err)
	}
	return []AuditedCheckpoint{{Checkpoint: n, Consistency: proof}}
}

func reportProofSize(b *testing.B, p *LookupProof) {
	enc, err := p.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(enc)), "proof-bytes")
	entries := 0
	for k := range p.Entries {
		e, _ := p.Entries[k].appendTo(nil)
		entries += len(e)
	}
	b.ReportMetric(float64(entries), "entry-bytes")
	b.ReportMetric(float64(len(p.Checkpoint)), "checkpoint-bytes")
	b.ReportMetric(float64(len(p.Entries[0].Prefix.Siblings)), "path-depth")
}

// BenchmarkVerify is the client's work for one account lookup: decoding
// and verifying the proof (a VRF proof, a prefix path, the log proofs and
// the checkpoint signature).
func BenchmarkVerify(b *testing.B) {
	s := benchSetup(b)
	f := s.f
	size := f.log.Size()
	p, err := f.log.Prove(lookupLabels(0), size-60, f.entry)
	if err != nil {
		b.Fatal(err)
	}
	enc, _ := p.MarshalBinary()
	known := &Head{Size: size - 60, Root: mustRoot(b, &f.log.log, size-60)}
	v := f.verifier()
	for b.Loop() {
		var q LookupProof
		if err := q.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
		if _, _, err := v.Verify(known, lookupLabels(0), &q, f.now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProve is the server's work for one account lookup (a VRF
// proof, a prefix path, the log proofs), without the store.
func BenchmarkProve(b *testing.B) {
	s := benchSetup(b)
	f := s.f
	size := f.log.Size()
	for b.Loop() {
		if _, err := f.log.Prove(lookupLabels(0), size-60, f.entry); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend measures update throughput: epochs of batch key changes
// (new accounts' entries: VRF, commitment, tree update, rehash, log
// append, checkpoint signature) on the million-account log. Each epoch is
// reverted outside the timer, so that the benchmarks after this one still
// measure the log the setup built (how many epochs run depends on b.N).
func BenchmarkAppend(b *testing.B) {
	s := benchSetup(b)
	f := s.f
	next := 1_000_000_000
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			changes := 0
			for b.Loop() {
				b.StopTimer()
				us := make([]Update, batch)
				for k := range us {
					a, v := benchAccount(next)
					next++
					us[k] = Update{Label: a, Value: v}
				}
				f.now = f.now.Add(time.Second)
				b.StartTimer()
				epoch, err := f.log.Append(us, f.now, f.rand)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := f.log.Revert(epoch); err != nil {
					b.Fatal(err)
				}
				changes += len(us)
				b.StartTimer()
			}
			b.ReportMetric(float64(changes)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// BenchmarkMonitoringDay is one client's owner monitoring for a day at one
// lookup an hour (its username's entry, from the head it kept
// an hour before): the bytes it downloads and the CPU it and the server
// spend.
func BenchmarkMonitoringDay(b *testing.B) {
	const lookupsPerDay = 24
	s := benchSetup(b)
	f := s.f
	size := f.log.Size()
	known := &Head{Size: size - 60, Root: mustRoot(b, &f.log.log, size-60)}
	v := f.verifier()
	var bytes int
	var server time.Duration
	for b.Loop() {
		bytes = 0
		for range lookupsPerDay {
			start := time.Now()
			p, err := f.log.Prove(lookupLabels(1), known.Size, f.entry)
			if err != nil {
				b.Fatal(err)
			}
			enc, _ := p.MarshalBinary()
			server += time.Since(start)
			bytes += len(enc)
			var q LookupProof
			if err := q.UnmarshalBinary(enc); err != nil {
				b.Fatal(err)
			}
			if _, _, err := v.Verify(known, lookupLabels(1), &q, f.now); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(bytes), "bytes/day")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms-cpu-both/day")
	b.ReportMetric(float64(server.Milliseconds())/float64(b.N), "ms-cpu-server/day")
}

// BenchmarkMemory reports the memory of the million-account log: the heap
// a prefix tree grown leaf by leaf takes per leaf, and the bytes the
// restored Log's two trees hold per account (one leaf each, and the year
// of epochs).
func BenchmarkMemory(b *testing.B) {
	s := benchSetup(b)
	for b.Loop() {
	}
	b.ReportMetric(s.heapLeaf, "prefix-B/leaf")
	b.ReportMetric(s.heapLog, "log-trees-B/account")
}

func noteSig(name string, hash uint32, sig []byte) note.Signature {
	raw := binary.BigEndian.AppendUint32(nil, hash)
	return note.Signature{Name: name, Hash: hash, Base64: base64.StdEncoding.EncodeToString(append(raw, sig...))}
}
