package server

import (
	"math"
	"sync"
	"time"
)

// limiter holds a token bucket per key (an IP address or an account id) in a
// table of at most max entries. A bucket that has refilled is the same as no
// bucket, so prune drops those; when the table is full anyway, allow evicts
// an arbitrary entry, which can only ever give its owner more tokens.
type limiter struct {
	rate  float64 // tokens per second; < 0: unlimited
	burst float64
	max   int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(l RateLimit, max int) *limiter {
	burst := float64(l.Burst)
	if burst < 1 {
		burst = 1
	}
	return &limiter{rate: l.Rate, burst: burst, max: max, buckets: make(map[string]*bucket)}
}

// allow takes a token from key's bucket. When there is none it returns false
// and how long until there is one.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	if l.rate < 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			for k := range l.buckets {
				delete(l.buckets, k)
				break
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.refill(l, now)
	if b.tokens < 1 {
		if l.rate == 0 {
			return false, time.Hour
		}
		wait := time.Duration(math.Ceil((1 - b.tokens) / l.rate * float64(time.Second)))
		return false, wait
	}
	b.tokens--
	return true, 0
}

func (b *bucket) refill(l *limiter, now time.Time) {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt.Seconds()*l.rate)
		b.last = now
	}
}

// prune drops the buckets that are full again.
func (l *limiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.buckets {
		if b.refill(l, now); b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
}
