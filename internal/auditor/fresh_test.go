package auditor

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/kt"
)

// logBuffer collects log lines; safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// A server that stops making epochs is cosigned while its newest epoch is
// at most MaxEpochAge old, and then no more, with a warning and without an
// audit failure; a fresh epoch makes the auditor cosign again.
func TestStaleLogNotCosigned(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit time.Duration // Config.MaxEpochAge
		want  time.Duration // the limit in force
	}{
		{"default", 0, DefaultMaxEpochAge},
		{"ten minutes", 10 * time.Minute, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.epochs(3)
			newest := f.clock
			var logs logBuffer
			a, err := f.auditorWith(func(c *Config) {
				c.MaxEpochAge = tc.limit
				c.Logger = logs.logger()
			})
			if err != nil {
				t.Fatal(err)
			}
			if res, err := f.pass(a); err != nil || !res.Cosigned {
				t.Fatalf("fresh log: %+v, %v", res, err)
			}
			// Idle, up to the limit: cosigned afresh.
			f.clock = newest.Add(tc.want)
			if res, err := f.pass(a); err != nil || !res.Cosigned || res.Head.Size != 3 {
				t.Fatalf("newest epoch as old as the limit: %+v, %v", res, err)
			}
			var before cosignedHead
			readJSON(f.dir, cosignedFile, &before)
			posted := len(f.log.Posted())

			// Past the limit: refused, and not a failure, however long
			// it lasts, across a restart too.
			for _, age := range []time.Duration{tc.want + time.Second, tc.want + time.Hour, 72 * time.Hour} {
				f.clock = newest.Add(age)
				res, err := f.pass(a)
				if !errors.Is(err, ErrStaleLog) || res.Cosigned || res.Head.Size != 3 {
					t.Fatalf("newest epoch %s old: %+v, %v, want ErrStaleLog", age, res, err)
				}
				f.expectNoFailure(err)
			}
			if _, err := f.pass(f.mustAuditor()); !errors.Is(err, ErrStaleLog) {
				t.Fatalf("a restarted auditor: %v, want ErrStaleLog", err)
			}
			if n := len(f.log.Posted()); n != posted {
				t.Fatalf("%d cosignatures of a stale log posted", n-posted)
			}
			var after cosignedHead
			readJSON(f.dir, cosignedFile, &after)
			if !after.At.Equal(before.At) {
				t.Errorf("cosigned.json changed by a refusal: %v, was %v", after.At, before.At)
			}
			if s := logs.String(); !strings.Contains(s, "NOT COSIGNING") || !strings.Contains(s, "level=WARN") {
				t.Errorf("no warning logged:\n%s", s)
			}

			// The server comes back with a fresh epoch.
			f.epochs(1)
			if res, err := f.pass(a); err != nil || !res.Cosigned || res.Head.Size != 4 {
				t.Fatalf("after a fresh epoch: %+v, %v", res, err)
			}
		})
	}
}

// An epoch dated more than MaxEpochAge ahead of the auditor's clock is not
// cosigned; not a failure either.
func TestFutureEpochNotCosigned(t *testing.T) {
	f := newFixture(t)
	f.epochs(2)
	newest := f.clock
	a := f.mustAuditor()
	f.clock = newest.Add(-DefaultMaxEpochAge - time.Second)
	res, err := f.pass(a)
	if !errors.Is(err, ErrFutureEpoch) || res.Cosigned {
		t.Fatalf("an epoch from the future: %+v, %v, want ErrFutureEpoch", res, err)
	}
	f.expectNoFailure(err)
	if n := len(f.log.Posted()); n != 0 {
		t.Fatalf("%d cosignatures posted", n)
	}
	f.clock = newest.Add(-DefaultMaxEpochAge)
	if res, err := f.pass(a); err != nil || !res.Cosigned {
		t.Fatalf("an epoch as far ahead as the limit: %+v, %v", res, err)
	}
}

// The attack the limit stops: the server keeps showing the auditor
// checkpoint N while it extends N for its users (in a real attack, two
// forks for two users). Without the limit the auditor would cosign N
// afresh forever and every extension would carry a fresh cosignature. With
// it, the last cosignature of N is at most MaxEpochAge younger than epoch
// N, so a client requiring the auditor with MaxAuditLag 24h accepts such
// an extension for about 25 hours after epoch N, and no longer.
func TestFrozenAuditorBoundsUnauditedLog(t *testing.T) {
	f := newFixture(t)
	f.epochs(2)
	epochN := f.clock
	frozen := f.log.Log().Checkpoint()
	f.log.ServeCheckpoint(func() []byte { return frozen })
	a := f.mustAuditor()

	// The auditor, shown N every pass, cosigns it for an hour.
	for f.clock = epochN; !f.clock.After(epochN.Add(DefaultMaxEpochAge)); f.clock = f.clock.Add(10 * time.Minute) {
		if res, err := f.pass(a); err != nil || !res.Cosigned || res.Head.Size != 2 {
			t.Fatalf("at %s: %+v, %v", f.clock.Sub(epochN), res, err)
		}
	}
	for ; f.clock.Before(epochN.Add(48 * time.Hour)); f.clock = f.clock.Add(time.Hour) {
		if _, err := f.pass(a); !errors.Is(err, ErrStaleLog) {
			t.Fatalf("at %s: %v, want ErrStaleLog", f.clock.Sub(epochN), err)
		}
	}

	logKey, _ := note.NewVerifier(f.log.Keys.VKey)
	cosigner, _ := kt.NewCosignatureVerifier(f.vkey)
	v := &kt.Verifier{
		Origin: origin, LogKey: logKey, VRFKey: f.log.Keys.VRF.Public(),
		Auditors: []note.Verifier{cosigner}, NeedCosignatures: 1, MaxAuditLag: 24 * time.Hour,
	}
	labels := [][]byte{[]byte("alice")}
	// lookupAt extends the log unaudited at time now (a fresh epoch, so
	// only the cosignature can be too old) and verifies a lookup then.
	lookupAt := func(now time.Time) error {
		if err := f.log.AppendLabels(now, "alice", "mallory"); err != nil {
			t.Fatal(err)
		}
		p, err := f.log.Log().Prove(labels, 0, f.log.Entry)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = v.Verify(nil, labels, p, now)
		return err
	}
	if err := lookupAt(epochN.Add(25*time.Hour - time.Second)); err != nil {
		t.Fatalf("an unaudited extension within 25 hours of epoch N: %v", err)
	}
	if err := lookupAt(epochN.Add(25*time.Hour + time.Second)); !errors.Is(err, kt.ErrMissingCosignature) {
		t.Fatalf("an unaudited extension 25 hours after epoch N: %v, want ErrMissingCosignature", err)
	}
}

// Run goes on through a stale log, warning and not cosigning, and cosigns
// again once the server makes an epoch.
func TestRunStaleLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, cfg := newRunLog(t)
		var logs logBuffer
		cfg.Interval, cfg.Logger = time.Minute, logs.logger()
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()

		// Passes at 0, 1m, ..., 60m cosign (the epoch is at most an
		// hour old); later ones do not.
		time.Sleep(DefaultMaxEpochAge - time.Second)
		synctest.Wait()
		if n := len(l.Posted()); n != 60 {
			t.Fatalf("%d cosignatures in the first hour, want 60", n)
		}
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		if n := len(l.Posted()); n != 61 {
			t.Fatalf("%d cosignatures after four hours without an epoch, want 61", n)
		}
		select {
		case err := <-done:
			t.Fatalf("Run stopped on a stale log: %v", err)
		default:
		}
		if _, err := os.Stat(filepath.Join(cfg.StateDir, failureFile)); err == nil {
			t.Fatal("a stale log was recorded as a failure")
		}
		s := logs.String()
		if n := strings.Count(s, "NOT COSIGNING"); n < 100 {
			t.Errorf("%d warnings in three hours of passes", n)
		}
		if strings.Contains(s, "will retry") {
			t.Errorf("a refusal logged twice:\n%s", s)
		}

		// The server makes an epoch: the next pass cosigns it.
		if err := l.AppendLabels(time.Now(), "bob"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		posted := l.Posted()
		if len(posted) != 62 || !bytes.Contains(posted[61], []byte("\n2\n")) {
			t.Fatalf("after a fresh epoch: %d cosignatures", len(posted))
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}
