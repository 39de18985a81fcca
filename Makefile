# A thin wrapper over CMake so that a fresh clone needs only `make test` and
# `make tour`. Everything real lives in CMakeLists.txt.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
CTEST_FLAGS ?= --output-on-failure
GEN := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all build test tour bench asan tsan install clean

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(GEN) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest -j $(JOBS) $(CTEST_FLAGS)

tour: build
	$(BUILD)/tools/weft/weft tour

bench:
	cmake -S . -B build-bench $(GEN) -DCMAKE_BUILD_TYPE=Release -DWEFT_BUILD_BENCH=ON -DWEFT_BUILD_TESTS=OFF
	cmake --build build-bench -j $(JOBS)
	bash bench/run.sh build-bench

# The suite under ASan+UBSan, and under TSan.
asan:
	cmake -S . -B build-asan $(GEN) -DCMAKE_BUILD_TYPE=Debug -DWEFT_SANITIZE=address
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest -j $(JOBS) $(CTEST_FLAGS)

tsan:
	cmake -S . -B build-tsan $(GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_SANITIZE=thread
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && ctest -j $(JOBS) $(CTEST_FLAGS)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) build-asan build-tsan build-bench
