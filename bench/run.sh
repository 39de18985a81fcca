#!/usr/bin/env bash
# Run every benchmark and its peers, collect their JSON lines, print a table.
#
# usage: bench/run.sh [builddir] [--tiny] [--runs=N] [--stat=best] [--SIZE=N]...
#
#   builddir   a build configured with -DWEFT_BUILD_BENCH=ON (default
#              build-bench, what `make bench` builds)
#   --tiny     each benchmark once at a tiny size: checks in seconds that
#              they all still work (CI); the numbers mean nothing
#   other --options are passed to every benchmark (see bench/bench.h)
#
# Builds the Go peers first (bench/go/ into <builddir>/bench/go/, when `go`
# is installed; skipped with a note otherwise) and exports
# WEFT_BENCH_GO=<that program>, so that bench_co runs Go's chan_pingpong_co
# inside its bench_compare, interleaved with weft's runs. Then runs every
# executable in <builddir>/bench/ (bench_*, and the OpenMP and C++ peers),
# the Python peers bench/bench_*.py (asyncio), and last the Go program, with
# --skip= for every bench whose "go" line a C program already printed, so
# that no result appears twice. The JSON lines go to <builddir>/bench.jsonl;
# bench/report.py prints the ratios. Exit status: 0, or 1 if any benchmark
# failed (a failed check, a crash, a timeout, the Go build).
set -u

here=$(cd "$(dirname "$0")" && pwd)
builddir=build-bench
args=()
limit=900
for a in "$@"; do
    case $a in
    --tiny) args+=("$a"); limit=120 ;;
    -h | --help) sed -n '2,21s/^# \{0,1\}//p' "$0"; exit 0 ;;
    --*) args+=("$a") ;;
    *) builddir=$a ;;
    esac
done
case ${WEFT_BENCH_TINY:-0} in 0 | "") ;; *) limit=120 ;; esac

benchdir=$builddir/bench
if [ ! -d "$benchdir" ]; then
    echo "run.sh: $benchdir does not exist: run 'make bench', or configure with -DWEFT_BUILD_BENCH=ON and build" >&2
    exit 2
fi
benchdir=$(cd "$benchdir" && pwd)
out=$builddir/bench.jsonl
: >"$out"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=()

# Run one program; its JSON lines go to $out, everything else to the terminal.
run() {
    local name=$1
    shift
    local t0 t1 rc
    printf '== %s\n' "$name" >&2
    t0=$(date +%s.%N)
    timeout "$limit" "$@" ${args[@]+"${args[@]}"} >"$log"
    rc=$?
    t1=$(date +%s.%N)
    grep '^{' "$log" >>"$out"
    grep -v '^{' "$log" >&2
    if [ $rc -ne 0 ]; then
        [ $rc -eq 124 ] && echo "run.sh: $name timed out after ${limit}s" >&2
        echo "run.sh: $name FAILED (exit $rc)" >&2
        failed+=("$name")
    else
        awk -v n="$(grep -c '^{' "$log")" -v a="$t0" -v b="$t1" \
            'BEGIN { printf "   %d results, %.1f s\n", n, b - a }' >&2
    fi
}

# The Go peers: standard library only, built offline, before the C
# benchmarks so that bench_co can run the Go program (WEFT_BENCH_GO).
gobin=
unset WEFT_BENCH_GO
if command -v go >/dev/null 2>&1; then
    mkdir -p "$benchdir/go"
    printf '== go build bench/go\n' >&2
    if (
        export GOPROXY=off GOFLAGS= GO111MODULE=on GOTOOLCHAIN=local
        if [ -z "$(go env GOCACHE 2>/dev/null)" ] || [ "$(go env GOCACHE 2>/dev/null)" = off ]; then
            export GOCACHE=$benchdir/go/cache
        fi
        cd "$here/go" && go build -o "$benchdir/go/weft-bench-go" .
    ); then
        gobin=$benchdir/go/weft-bench-go
        export WEFT_BENCH_GO=$gobin
    else
        echo "run.sh: building the Go peers FAILED" >&2
        failed+=("go build")
    fi
else
    echo "note: go is not installed: the Go peers are skipped" >&2
fi

found=0
for exe in "$benchdir"/*; do
    [ -f "$exe" ] && [ -x "$exe" ] || continue
    found=1
    run "$(basename "$exe")" "$exe"
done
if [ $found -eq 0 ]; then
    echo "run.sh: no benchmark executables in $benchdir (build first)" >&2
    exit 2
fi

# The Python peers (bench/bench_*.py, asyncio): standard library only.
if command -v python3 >/dev/null 2>&1; then
    for py in "$here"/bench_*.py; do
        [ -f "$py" ] || continue
        run "$(basename "$py")" python3 "$py"
    done
else
    echo "note: python3 is not installed: the Python peers are skipped" >&2
fi

# The Go program's own run, without the benches whose "go" line a C program
# already printed (bench_co's chan_pingpong_co), plus any --skip= given to
# run.sh (else $WEFT_BENCH_SKIP): the first --skip= on the command line wins.
if [ -n "$gobin" ]; then
    skip=${WEFT_BENCH_SKIP:-}
    for a in ${args[@]+"${args[@]}"}; do
        case $a in --skip=*) skip=${a#--skip=}; break ;; esac
    done
    done_go=$(sed -n 's/^{"bench": "\([A-Za-z0-9_]*\)", "impl": "go",.*/\1/p' "$out" | sort -u)
    for b in $done_go; do
        skip=${skip:+$skip,}$b
    done
    run weft-bench-go "$gobin" ${skip:+"--skip=$skip"}
fi

echo >&2
echo "results: $out ($(wc -l <"$out") lines)" >&2
echo
if command -v python3 >/dev/null 2>&1; then
    python3 "$here/report.py" "$out" || { echo "note: report.py failed; raw results:"; cat "$out"; }
else
    echo "note: python3 is not installed: raw results follow (bench/report.py makes the table)"
    cat "$out"
fi

if [ ${#failed[@]} -ne 0 ]; then
    echo
    echo "FAILED: ${failed[*]}"
    exit 1
fi
exit 0
