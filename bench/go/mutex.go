package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// mutexUncontended: one goroutine locks and unlocks a free sync.Mutex.
var uncontendedMu sync.Mutex

func mutexUncontended(iters int64) float64 {
	t0 := time.Now()
	for i := int64(0); i < iters; i++ {
		uncontendedMu.Lock()
		uncontendedMu.Unlock()
	}
	return nsPer(time.Since(t0), iters)
}

// mutexCounter: `threads` goroutines each add 1 to a shared counter
// perThread times under a sync.Mutex. They are all started and waiting on a
// closed channel, as the C threads wait on a barrier; the clock runs from the
// first goroutine's start to the last one's finish.
func mutexCounter(threads, perThread int64) float64 {
	var mu sync.Mutex
	var counter int64
	var ready, done sync.WaitGroup
	sp := newSpan()
	start := make(chan struct{})
	ready.Add(int(threads))
	done.Add(int(threads))
	for i := int64(0); i < threads; i++ {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			sp.begin()
			defer sp.finish()
			for k := int64(0); k < perThread; k++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	d := sp.duration()
	if counter != threads*perThread {
		die("counter lost increments (%d)", threads*perThread-counter)
	}
	return nsPer(d, threads*perThread)
}

// The C "atomic" impl's twin, so the floor is visible for Go as well.
func atomicCounter(threads, perThread int64) float64 {
	var counter int64
	var ready, done sync.WaitGroup
	sp := newSpan()
	start := make(chan struct{})
	ready.Add(int(threads))
	done.Add(int(threads))
	for i := int64(0); i < threads; i++ {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			sp.begin()
			defer sp.finish()
			for k := int64(0); k < perThread; k++ {
				atomic.AddInt64(&counter, 1)
			}
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	d := sp.duration()
	if atomic.LoadInt64(&counter) != threads*perThread {
		die("atomic counter lost increments")
	}
	return nsPer(d, threads*perThread)
}

func benchMutex() {
	iters := size("iters", 10000000, 100000)
	if want("mutex_uncontended") {
		mutexUncontended(iters/10 + 1) // warm up, as the C benchmark does
		emit("mutex_uncontended", "go", []kv{{"iters", iters}}, "ns_per_op",
			repeat(func() float64 { return mutexUncontended(iters) }, false))
	}

	threads := size("threads", 100, 8)
	perThread := size("per-thread", 100000, 2000)
	params := []kv{{"threads", threads}, {"per_thread", perThread}}
	if want("mutex_counter") {
		emit("mutex_counter", "go", params, "ns_per_op",
			repeat(func() float64 { return mutexCounter(threads, perThread) }, false))
		emit("mutex_counter", "go_atomic", params, "ns_per_op",
			repeat(func() float64 { return atomicCounter(threads, perThread) }, false))
	}
}
