package main

import (
	"sync"
	"sync/atomic"
)

// chanThroughput: producers goroutines send items int64s in all into one
// buffered channel of capacity cap; consumers goroutines range over it
// until it is closed (by the last producer). Count and sum are checked.
func chanThroughput(items, producers, consumers, capacity int64) float64 {
	ch := make(chan int64, capacity)
	var ready, prodDone, consDone sync.WaitGroup
	var gotCount, gotSum int64
	producing := producers // the last producer to finish closes ch
	sp := newSpan()
	start := make(chan struct{})
	share := func(i int64) int64 {
		n := items / producers
		if i < items%producers {
			n++
		}
		return n
	}
	ready.Add(int(producers + consumers))
	prodDone.Add(int(producers))
	consDone.Add(int(consumers))
	for i := int64(0); i < producers; i++ {
		n := share(i)
		go func() {
			defer prodDone.Done()
			ready.Done()
			<-start
			sp.begin()
			for k := int64(1); k <= n; k++ {
				ch <- k
			}
			if atomic.AddInt64(&producing, -1) == 0 {
				close(ch)
			}
		}()
	}
	for i := int64(0); i < consumers; i++ {
		go func() {
			defer consDone.Done()
			var count, sum int64
			ready.Done()
			<-start
			sp.begin()
			for v := range ch {
				count++
				sum += v
			}
			sp.finish()
			atomic.AddInt64(&gotCount, count)
			atomic.AddInt64(&gotSum, sum)
		}()
	}
	ready.Wait()
	close(start)
	prodDone.Wait()
	consDone.Wait()
	d := sp.duration()
	var wantSum int64
	for i := int64(0); i < producers; i++ {
		n := share(i)
		wantSum += n * (n + 1) / 2
	}
	if gotCount != items || gotSum != wantSum {
		die("items lost, duplicated or corrupted (count %d of %d)", gotCount, items)
	}
	return nsPer(d, items)
}

// chanPingPong: two goroutines bounce an integer over two unbuffered
// channels; the result is ns per round trip.
func chanPingPong(roundTrips int64) float64 {
	ping, pong := make(chan int64), make(chan int64)
	var ready, done sync.WaitGroup
	sp := newSpan()
	start := make(chan struct{})
	ready.Add(2)
	done.Add(2)
	go func() {
		defer done.Done()
		ready.Done()
		<-start
		sp.begin()
		defer sp.finish()
		for i := int64(0); i < roundTrips; i++ {
			ping <- i
			if v := <-pong; v != i+1 {
				die("ping-pong: wrong reply at %d", i)
			}
		}
	}()
	go func() {
		defer done.Done()
		ready.Done()
		<-start
		sp.begin()
		defer sp.finish()
		for i := int64(0); i < roundTrips; i++ {
			v := <-ping
			pong <- v + 1
		}
	}()
	ready.Wait()
	close(start)
	done.Wait()
	return nsPer(sp.duration(), roundTrips)
}

func benchChan() {
	items := size("items", 10000000, 20000)
	producers := size("producers", 2, 2)
	consumers := size("consumers", 2, 2)
	capacity := size("cap", 1024, 1024)
	if want("chan_throughput") {
		emit("chan_throughput", "go",
			[]kv{{"items", items}, {"producers", producers}, {"consumers", consumers}, {"cap", capacity}},
			"ns_per_op", repeat(func() float64 { return chanThroughput(items, producers, consumers, capacity) }, false))
	}

	roundTrips := size("round-trips", 100000, 2000)
	if want("chan_pingpong") {
		emit("chan_pingpong", "go", []kv{{"round_trips", roundTrips}}, "ns_per_op",
			repeat(func() float64 { return chanPingPong(roundTrips) }, false))
	}
}
