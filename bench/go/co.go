package main

import (
	"runtime"
	"sync"
	"syscall"
	"time"
)

// The Go peers of bench/bench_co.c (same bench names and parameters).

// spawn: n goroutines that each yield once (runtime.Gosched) and finish;
// main spawns them all and waits. Go's scheduler runs them while main is
// still spawning (the other P, preemption), so few are alive at a time:
// the peer of weft's co_spawn (the spawner yields every 1,000).
//
// With all set, every goroutine first waits on a channel that main closes
// only after the last spawn, so all n are alive at once, each holding its
// stack: the peer of weft's co_spawn_all.
func spawn(n int64, all bool) float64 {
	var wg sync.WaitGroup
	var done int64
	var mu sync.Mutex
	var start chan struct{} // nil: no wait
	if all {
		start = make(chan struct{})
	}
	wg.Add(int(n))
	t0 := time.Now()
	for i := int64(0); i < n; i++ {
		go func() {
			if start != nil {
				<-start
			}
			runtime.Gosched()
			mu.Lock()
			done++
			mu.Unlock()
			wg.Done()
		}()
	}
	if all {
		close(start)
	}
	wg.Wait()
	d := time.Since(t0)
	if done != n {
		die("spawn: %d of %d finished", done, n)
	}
	return nsPer(d, n)
}

func peakRSSKiB() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss)
}

func cpuNs() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano() + ru.Stime.Nano())
}

// pingPong: chanPingPong's measurement under bench_co's name and params.
func pingPong(iters int64) float64 { return chanPingPong(iters) }

// timers: c goroutines each sleep k times for a random 0-50 us; ns of CPU
// per timer (wall per timer as a note), as bench_co's timers.
func timers(c, k int64) (float64, float64) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fired int64
	wg.Add(int(c))
	c0 := cpuNs()
	t0 := time.Now()
	for i := int64(0); i < c; i++ {
		x := uint64(i+1)*0x9e3779b97f4a7c15 + 1
		go func() {
			defer wg.Done()
			n := int64(0)
			for j := int64(0); j < k; j++ {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				time.Sleep(time.Duration(x % 50000))
				n++
			}
			mu.Lock()
			fired += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	wall := time.Since(t0)
	cpu := cpuNs() - c0
	if fired != c*k {
		die("timers: %d of %d fired", fired, c*k)
	}
	return cpu / float64(c*k), float64(wall.Nanoseconds()) / float64(c*k)
}

// spawnBench runs one spawn benchmark (bench) and prints it and the peak
// RSS after it (bench + "_rss"), each if asked for. The RSS line is a
// high-water mark of the runs before it, so asking for it alone still
// runs the spawns.
func spawnBench(bench string, n int64, all bool) {
	sp, rss := want(bench), want(bench+"_rss")
	if !sp && !rss {
		return
	}
	v := repeat(func() float64 { return spawn(n, all) }, false)
	if sp {
		emit(bench, "go", []kv{{"n", n}}, "ns_per_op", v)
	}
	if rss {
		emit(bench+"_rss", "go", []kv{{"n", n}}, "kib", peakRSSKiB())
	}
}

func benchCo() {
	spawnBench("co_spawn", size("spawn", 1000000, 10000), false)
	spawnBench("co_spawn_all", size("spawn-all", 1000000, 10000), true)

	iters := size("pingpong", 1000000, 10000)
	if want("chan_pingpong_co") {
		emit("chan_pingpong_co", "go", []kv{{"iters", iters}}, "ns_per_op",
			repeat(func() float64 { return pingPong(iters) }, false))
	}

	c := size("timer-coroutines", 1000, 10)
	k := size("timers-each", 1000, 10)
	if want("timers") {
		var wall float64
		cpu := repeat(func() float64 { v, w := timers(c, k); wall = w; return v }, false)
		emitNote("timers", "go", []kv{{"coroutines", c}, {"each", k}}, "ns_per_op", cpu, "wall_ns_per_timer", wall)
	}
}
