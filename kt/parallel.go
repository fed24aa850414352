package kt

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// parallel calls f(0), …, f(n-1), spread over GOMAXPROCS goroutines when
// there is enough work to share (the VRF costs tens of microseconds a call).
func parallel(n int, f func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n/8)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}
