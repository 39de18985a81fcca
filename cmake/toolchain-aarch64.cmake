# Cross-compile weft for AArch64 Linux with Debian's gcc-aarch64-linux-gnu and
# run what it builds under qemu-user (qemu-user-static):
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake
#   cmake --build build-aarch64 && (cd build-aarch64 && ctest)
#
# CMAKE_CROSSCOMPILING_EMULATOR makes ctest (and add_custom_command users)
# prefix every test with qemu, with the target's sysroot for its libc.
# tests/cross/aarch64.sh does all of this.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(WEFT_AARCH64_PREFIX "aarch64-linux-gnu-" CACHE STRING "Cross tool prefix")
set(WEFT_AARCH64_SYSROOT "/usr/aarch64-linux-gnu" CACHE PATH "Target libraries for qemu -L")

set(CMAKE_C_COMPILER ${WEFT_AARCH64_PREFIX}gcc)
set(CMAKE_ASM_COMPILER ${WEFT_AARCH64_PREFIX}gcc)

set(CMAKE_FIND_ROOT_PATH ${WEFT_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(WEFT_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(WEFT_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${WEFT_QEMU_AARCH64} -L ${WEFT_AARCH64_SYSROOT})
endif()
