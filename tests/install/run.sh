#!/usr/bin/env bash
# run.sh - install weft into a temporary prefix and use it as a user would.
#
# Usage: tests/install/run.sh [BUILD_DIR]
#   BUILD_DIR  an already built weft build tree (e.g. build/); without it a
#              fresh one is configured and built in the temporary folder.
#
# Checks: the installed file set (public headers only, static and shared
# libraries, weft.pc, the CMake package); the SONAME; the exported symbols
# (check-symbols.sh); every public header compiles on its own, as C11 with
# -Wpedantic and weft.h as C++; hello.c built with `pkg-config --cflags
# --libs weft` and run against the shared library; a loop program linked with
# libweft.a and `pkg-config --static --libs weft` (liburing when built in);
# hello.c built by a small
# CMake project with find_package(weft) against weft::weft and weft::static;
# the loop program against libweft.so, linked and through dlopen.
# Exit 0 when everything holds; the first failure stops with a message.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
CC=${CC:-cc}
CXX=${CXX:-c++}

fail() { echo "install test FAILED: $*" >&2; exit 1; }
step() { echo "-- $*"; }

# The version the headers announce; everything installed must agree.
version=$(sed -n 's/^#define WEFT_VERSION_STRING "\(.*\)"/\1/p' "$src/include/weft/version.h")
major=${version%%.*}
[ -n "$version" ] || fail "cannot read WEFT_VERSION_STRING from include/weft/version.h"

build=${1:-}
if [ -z "$build" ]; then
    build=$tmp/build
    step "configuring and building weft in $build"
    cmake -S "$src" -B "$build" -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
fi
[ -f "$build/CMakeCache.txt" ] || fail "$build is not a CMake build tree"
build=$(cd "$build" && pwd)

prefix=$tmp/prefix
step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null

# ---- the installed files ------------------------------------------------
pc=$(find "$prefix" -name weft.pc -path '*/pkgconfig/*')
[ -n "$pc" ] || fail "weft.pc was not installed"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
libdir=$(pkg-config --variable=libdir weft)
includedir=$(pkg-config --variable=includedir weft)
case "$libdir" in "$prefix"/*) ;; *) fail "weft.pc libdir '$libdir' is not under the install prefix $prefix" ;; esac
[ "$(pkg-config --modversion weft)" = "$version" ] || fail "weft.pc version $(pkg-config --modversion weft) != $version"

step "installed files"
for f in "$libdir/libweft.a" "$libdir/libweft.so" "$libdir/libweft.so.$major" \
         "$libdir/libweft.so.$version" "$libdir/cmake/weft/weftConfig.cmake" \
         "$libdir/cmake/weft/weftConfigVersion.cmake" "$libdir/cmake/weft/weftTargets.cmake" \
         "$includedir/weft.h"; do
    [ -e "$f" ] || fail "missing $f"
done
# Exactly the public headers, nothing internal.
want=$(cd "$src/include" && find . -type f | sort)
got=$(cd "$includedir" && find . -type f | sort)
[ "$want" = "$got" ] || fail "installed headers differ from include/:
$(diff <(echo "$want") <(echo "$got") || true)"

step "SONAME is libweft.so.$major"
soname=$(readelf -d "$libdir/libweft.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libweft.so.$major" ] || fail "SONAME is '$soname', want libweft.so.$major"

step "exported symbols"
bash "$here/check-symbols.sh" "$libdir/libweft.so.$version" "$libdir/libweft.a"

# ---- the headers compile on their own --------------------------------------
step "each public header compiles alone (C11 -Wpedantic) and weft.h as C++"
for h in $(cd "$includedir" && find . -name '*.h' | sed 's|^\./||' | sort); do
    printf '#include <%s>\n#include <%s>\nint main(void) { return 0; }\n' "$h" "$h" |
        "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$includedir" -x c - ||
        fail "<$h> does not compile on its own (or included twice)"
done
if command -v "$CXX" >/dev/null 2>&1; then
    printf '#include <weft.h>\nint main() { return weft_version() ? 0 : 1; }\n' |
        "$CXX" -Wall -Wextra -Werror -fsyntax-only -I"$includedir" -x c++ - ||
        fail "<weft.h> does not compile as C++"
else
    echo "   (no C++ compiler: C++ check skipped)"
fi

# ---- the README shows hello.c: keep the two the same ------------------------
if [ -f "$src/README.md" ]; then
    step "README.md's first C example is tests/install/hello.c"
    awk '/^```c/ && !done { inblk = 1; next } /^```/ && inblk { inblk = 0; done = 1 } inblk' \
        "$src/README.md" > "$tmp/readme-example.c"
    diff -u "$here/hello.c" "$tmp/readme-example.c" ||
        fail "README.md's first \`\`\`c block differs from tests/install/hello.c"
fi

# ---- hello.c through pkg-config ----------------------------------------------
run_hello() { # binary
    local out
    out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$1") ||
        fail "$1 exited with $?: $out"
    case "$out" in "weft $version: locked"*) ;; *) fail "$1 printed: $out" ;; esac
    echo "   $(basename "$1"): ${out%%$'\n'*}"
}
needs_libweft() { readelf -d "$1" | grep -q "NEEDED.*\[libweft\.so\.$major\]"; }

compilers=$CC
command -v clang >/dev/null 2>&1 && [ "$CC" != clang ] && compilers="$compilers clang"
for cc in $compilers; do
    step "$cc hello.c \$(pkg-config --cflags --libs weft)"
    # shellcheck disable=SC2046  # word splitting of pkg-config output is intended
    "$cc" -Wall -Wextra -Werror -o "$tmp/hello-pc-$cc" "$here/hello.c" $(pkg-config --cflags --libs weft)
    needs_libweft "$tmp/hello-pc-$cc" || fail "hello (pkg-config, $cc) does not link libweft.so.$major"
    run_hello "$tmp/hello-pc-$cc"
done

# ---- a static link needs what Libs.private lists (liburing with io_uring) ----------
step "static libweft.a with \$(pkg-config --static --libs weft): a loop on each backend"
cat > "$tmp/loop.c" <<'EOF'
#include <weft.h>
static int main_co(void *arg, void **result) { (void)arg; (void)result; return weft_co_yield(); }
int main(void)
{
    weft_loop_opts_t e = {.backend = "epoll"}, u = {.backend = "uring"};
    return weft_loop_run(main_co, 0, &e) == 0 && weft_loop_run(main_co, 0, &u) == 0 ? 0 : 1;
}
EOF
# shellcheck disable=SC2046  # word splitting of pkg-config output is intended
"$CC" -Wall -Wextra -Werror -o "$tmp/loop-static" "$tmp/loop.c" $(pkg-config --cflags weft) \
    "$libdir/libweft.a" $(pkg-config --static --libs weft | sed 's/-L[^ ]*//g; s/-lweft\b//') ||
    fail "a loop program does not link statically with pkg-config --static"
if needs_libweft "$tmp/loop-static"; then fail "the static loop program linked libweft.so"; fi
"$tmp/loop-static" || fail "the static loop program failed"

# ---- the shared library's thread-locals, linked and dlopen'ed --------------------
# libweft.so reads its thread-locals through TLS descriptors where the
# compiler has them (docs/getting-started.md): check a loop through it, both
# when the program links it and when the program dlopens it (the library's
# TLS block is then allocated at run time).
step "libweft.so: a loop linked with pkg-config, and one through dlopen"
# shellcheck disable=SC2046  # word splitting of pkg-config output is intended
"$CC" -Wall -Wextra -Werror -o "$tmp/loop-shared" "$tmp/loop.c" $(pkg-config --cflags --libs weft)
needs_libweft "$tmp/loop-shared" || fail "the shared loop program does not link libweft.so.$major"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/loop-shared" ||
    fail "the shared loop program failed"
cat > "$tmp/loop-dlopen.c" <<'EOF'
#include <dlfcn.h>
#include <stdio.h>
#include <weft.h>
static int (*yield)(void);
static int main_co(void *arg, void **result) { (void)arg; (void)result; return yield(); }
int main(int argc, char **argv)
{
    (void)argc;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    int (*run)(weft_co_fn, void *, const weft_loop_opts_t *);
    *(void **)&run = dlsym(h, "weft_loop_run");
    *(void **)&yield = dlsym(h, "weft_co_yield");
    if (!run || !yield) { fprintf(stderr, "dlsym: %s\n", dlerror()); return 1; }
    for (int i = 0; i < 3; i++)
        if (run(main_co, 0, 0) != 0) return 1;
    return 0;
}
EOF
# shellcheck disable=SC2046  # word splitting of pkg-config output is intended
"$CC" -Wall -Wextra -Werror -o "$tmp/loop-dlopen" "$tmp/loop-dlopen.c" $(pkg-config --cflags weft) -ldl
"$tmp/loop-dlopen" "$libdir/libweft.so.$major" || fail "the dlopen'ed loop program failed"

# ---- hello.c through find_package(weft) -----------------------------------------
step "CMake project: find_package(weft), weft::weft and weft::static"
cmake -S "$here" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
needs_libweft "$tmp/consumer/hello" || fail "weft::weft did not link libweft.so.$major"
if needs_libweft "$tmp/consumer/hello_static"; then fail "weft::static linked the shared library"; fi
run_hello "$tmp/consumer/hello"
run_hello "$tmp/consumer/hello_static"

echo "install test passed (weft $version)"
