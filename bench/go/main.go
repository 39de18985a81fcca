// Command weft-bench-go runs the Go peers of the weft benchmarks and prints
// the same JSON lines as the C benchmarks (see bench/bench.h):
//
//	{"bench": "chan_pingpong", "impl": "go", "params": {...}, "ns_per_op": 123, "runs": 5}
//
// Options and sizes are those of bench.h, with the same defaults and tiny
// sizes, so that report.py can line the results up: --tiny, --runs=N,
// --stat=median|best, --NAME=V, each also WEFT_BENCH_NAME=V in the
// environment. --only=NAME[,NAME...] runs only the named benchmarks (the
// "bench" names printed) and --skip=NAME[,NAME...] leaves them out
// (WEFT_BENCH_ONLY, WEFT_BENCH_SKIP); bench_co runs the Go chan_pingpong_co
// with --only to interleave it with its own runs (and --quiet: no banner on
// stderr at each run), and bench/run.sh skips it here then. Goroutines run on GOMAXPROCS threads (the number of CPUs unless
// the environment says otherwise).
package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

var (
	tiny    = false
	runs    = 5
	best    = false
	verbose = false
	quiet   = false // --quiet: no banner (bench_co runs this once per interleaved run)

	only map[string]bool // nil: every benchmark
	skip map[string]bool
	seen = map[string]bool{} // every name want was asked about
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "bench: FAILED: "+format+"\n", args...)
	os.Exit(1)
}

// opt returns --name=V, else $WEFT_BENCH_NAME, else "".
func opt(name string) string {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "--"+name+"=") {
			return a[len(name)+3:]
		}
	}
	env := "WEFT_BENCH_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	return os.Getenv(env)
}

func parse(name, v string) int64 {
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "k"), strings.HasSuffix(v, "K"):
		mult, v = 1000, v[:len(v)-1]
	case strings.HasSuffix(v, "M"):
		mult, v = 1000000, v[:len(v)-1]
	case strings.HasSuffix(v, "G"):
		mult, v = 1000000000, v[:len(v)-1]
	}
	x, err := strconv.ParseInt(v, 10, 64)
	if err != nil || x <= 0 {
		fmt.Fprintf(os.Stderr, "bench: bad value '%s' for %s (a positive integer)\n", v, name)
		os.Exit(2)
	}
	return x * mult
}

// size is bench.h's bench_size.
func size(name string, value, tinyValue int64) int64 {
	if v := opt(name); v != "" {
		return parse(name, v)
	}
	if tiny {
		return tinyValue
	}
	return value
}

func initOpts() {
	for _, a := range os.Args[1:] {
		switch {
		case a == "--tiny":
			tiny = true
		case a == "--verbose":
			verbose = true
		case a == "--quiet":
			quiet = true
		case a == "-h" || a == "--help":
			fmt.Fprintf(os.Stderr, "usage: %s [--tiny] [--verbose] [--quiet] [--runs=N] [--stat=median|best] [--only=NAME,...] [--skip=NAME,...] [--SIZE=N]...\n", os.Args[0])
			os.Exit(0)
		case strings.HasPrefix(a, "--") && strings.Contains(a, "="):
		default:
			fmt.Fprintf(os.Stderr, "bench: unknown argument '%s'\n", a)
			os.Exit(2)
		}
	}
	if t := os.Getenv("WEFT_BENCH_TINY"); t != "" && t != "0" {
		tiny = true
	}
	if r := opt("runs"); r != "" {
		runs = int(parse("runs", r))
		if runs > 101 {
			runs = 101
		}
	}
	if tiny {
		runs = 1
	}
	if v := os.Getenv("WEFT_BENCH_VERBOSE"); v != "" && v != "0" {
		verbose = true
	}
	if v := opt("only"); v != "" {
		only = names(v)
	}
	skip = names(opt("skip"))
	switch opt("stat") {
	case "", "median":
	case "best":
		best = true
	default:
		fmt.Fprintln(os.Stderr, "bench: --stat must be median or best")
		os.Exit(2)
	}
}

// names splits a comma-separated list of benchmark names.
func names(v string) map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			m[n] = true
		}
	}
	return m
}

// want says whether the benchmark named bench (its "bench" field) runs:
// named by --only when that is given, and not named by --skip.
func want(bench string) bool {
	seen[bench] = true
	if only != nil && !only[bench] {
		return false
	}
	return !skip[bench]
}

// noteUnknown says on stderr which --only names matched no benchmark here
// (a typo runs nothing). Not an error: run.sh passes its options to every
// program, and the pool peers' --only names parts (fib, sum, ...). Unknown
// --skip names are ignored quietly: run.sh skips every bench a C program
// printed a "go" line for, http_hello (bench/go/httpserver) too.
func noteUnknown() {
	var unknown []string
	for n := range only {
		if !seen[n] {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		fmt.Fprintf(os.Stderr, "go peers: --only: no benchmark named %s here (ignored)\n",
			strings.Join(unknown, ", "))
	}
}

// repeat is bench.h's bench_repeat: the median (or best) of runs calls.
func repeat(fn func() float64, higherIsBetter bool) float64 {
	v := make([]float64, runs)
	for i := range v {
		v[i] = fn()
	}
	sort.Float64s(v)
	if verbose {
		fmt.Fprint(os.Stderr, "  runs (sorted):")
		for _, x := range v {
			fmt.Fprint(os.Stderr, " "+strconv.FormatFloat(x, 'g', 4, 64))
		}
		fmt.Fprintln(os.Stderr)
	}
	if best {
		if higherIsBetter {
			return v[len(v)-1]
		}
		return v[0]
	}
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

type kv struct {
	key   string
	value int64
}

// emit is bench.h's bench_json (with the steal share since the previous line).
func emit(bench, impl string, params []kv, unit string, value float64) {
	var b strings.Builder
	fmt.Fprintf(&b, "{\"bench\": \"%s\", \"impl\": \"%s\", \"params\": {", bench, impl)
	for _, p := range params {
		fmt.Fprintf(&b, "\"%s\": %d, ", p.key, p.value)
	}
	stat := "median"
	if best {
		stat = "best"
	}
	fmt.Fprintf(&b, "\"stat\": \"%s\"}, \"%s\": %s, \"runs\": %d, \"steal\": %.3f}\n", stat, unit,
		strconv.FormatFloat(value, 'g', 4, 64), runs, stealMark())
	os.Stdout.WriteString(b.String())
}

// emitNote is emit with one extra numeric field (a note in report.py).
func emitNote(bench, impl string, params []kv, unit string, value float64, note string, nv float64) {
	var b strings.Builder
	fmt.Fprintf(&b, "{\"bench\": \"%s\", \"impl\": \"%s\", \"params\": {", bench, impl)
	for _, p := range params {
		fmt.Fprintf(&b, "\"%s\": %d, ", p.key, p.value)
	}
	stat := "median"
	if best {
		stat = "best"
	}
	fmt.Fprintf(&b, "\"stat\": \"%s\"}, \"%s\": %s, \"%s\": %s, \"runs\": %d, \"steal\": %.3f}\n",
		stat, unit, strconv.FormatFloat(value, 'g', 4, 64), note, strconv.FormatFloat(nv, 'g', 4, 64),
		runs, stealMark())
	os.Stdout.WriteString(b.String())
}

func nsPer(d time.Duration, n int64) float64 {
	return float64(d.Nanoseconds()) / float64(n)
}

// span is bench.h's bench_span_t: each goroutine calls begin after the start
// signal and end when done; the span runs from the earliest begin to the
// latest end, so the main goroutine's scheduling delay is not measured.
type span struct{ start, end int64 }

var epoch = time.Now()

func newSpan() *span { return &span{start: math.MaxInt64, end: math.MinInt64} }

func (s *span) begin() {
	now := int64(time.Since(epoch))
	for old := atomic.LoadInt64(&s.start); now < old && !atomic.CompareAndSwapInt64(&s.start, old, now); old = atomic.LoadInt64(&s.start) {
	}
}

func (s *span) finish() {
	now := int64(time.Since(epoch))
	for old := atomic.LoadInt64(&s.end); now > old && !atomic.CompareAndSwapInt64(&s.end, old, now); old = atomic.LoadInt64(&s.end) {
	}
}

func (s *span) duration() time.Duration { return time.Duration(s.end - s.start) }

func main() {
	initOpts()
	if !quiet {
		fmt.Fprintf(os.Stderr, "go peers: %s, GOMAXPROCS=%d\n", runtime.Version(), runtime.GOMAXPROCS(0))
	}
	benchMutex()
	benchChan()
	benchCo()
	noteUnknown()
}
