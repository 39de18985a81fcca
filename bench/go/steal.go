package main

import (
	"os"
	"strconv"
	"strings"
)

// The host's steal share, as bench/steal.h gives it to the C benchmarks:
// the share of all CPUs' time that a virtual machine's host held back
// (the eighth number of /proc/stat's cpu line) since the previous mark,
// 0 to 1; 0 where /proc/stat cannot be read or no tick passed.

type stealSample struct {
	total, steal uint64
	ok           bool
}

func readSteal() stealSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return stealSample{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return stealSample{}
	}
	var s stealSample
	for i := 1; i < len(f) && i <= 8; i++ {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return stealSample{}
		}
		s.total += v
		if i == 8 {
			s.steal = v
		}
	}
	s.ok = true
	return s
}

var stealAt = readSteal()

// stealMark returns the steal share since the previous mark (or the
// start) and makes a new mark.
func stealMark() float64 {
	now := readSteal()
	a := stealAt
	if now.ok {
		stealAt = now
	}
	if !a.ok || !now.ok || now.total <= a.total || now.steal < a.steal {
		return 0
	}
	return float64(now.steal-a.steal) / float64(now.total-a.total)
}
