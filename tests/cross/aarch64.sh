#!/usr/bin/env bash
# Build weft for AArch64 with the cross compiler and run the test suite under
# qemu-user. Usage:
#
#   tests/cross/aarch64.sh [build-dir] [ctest args...]
#
# Default build dir: build-aarch64. Extra arguments go to ctest, e.g.
# `tests/cross/aarch64.sh build-aarch64 -R test_switch` for the switch only.
# Needs gcc-aarch64-linux-gnu and qemu-user-static (Debian package names).
# Exit status: ctest's (0 when every test passed or was skipped).
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build-aarch64}
shift || true

for tool in aarch64-linux-gnu-gcc; do
    command -v "$tool" >/dev/null || { echo "aarch64.sh: $tool not found (apt install gcc-aarch64-linux-gnu)" >&2; exit 2; }
done
command -v qemu-aarch64-static >/dev/null || command -v qemu-aarch64 >/dev/null ||
    { echo "aarch64.sh: qemu-aarch64 not found (apt install qemu-user-static)" >&2; exit 2; }

gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

cmake -S "$here" -B "$build" "${gen[@]}" \
    -DCMAKE_TOOLCHAIN_FILE="$here/cmake/toolchain-aarch64.cmake" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DWEFT_BUILD_TESTS=ON -DWEFT_BUILD_EXAMPLES=OFF -DWEFT_BUILD_BENCH=OFF
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"

# Emulation is slower: shrink stress sizes unless the caller chose a scale.
export WEFT_TEST_SCALE=${WEFT_TEST_SCALE:-0.25}
cd "$build"
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" "$@"
