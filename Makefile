# Thin front-end over CMake.  `make bench` and `make test` are the README's
# quick start; everything builds under build/.  Each run first installs the
# build dependencies its goals need when missing (tools/deps.sh: as root
# through apt-get, otherwise it prints the command); DEPS=true skips that.
, := ,
CC_RELEASE ?= gcc
CC_ASAN    ?= clang
CC_TSAN    ?= clang
JOBS       ?= 2
BENCH_ARGS ?= --loads 10000000 --gets 10000000 --threads 2 --hasher identity --validate
# Tests run under valgrind memcheck (from the Release build, scaled down).
# Each TSan test runs this many times (rare interleavings; until-fail).
TSAN_REPEAT ?= 3
VALGRIND_TESTS ?= test_unit test_api test_oom test_model test_gc test_threads test_lifecycle test_rmw test_batch test_inplace test_compact test_idle

CMAKE ?= cmake
CTEST ?= ctest
DEPS  ?= sh tools/deps.sh
PREFIX ?= /usr/local
PKG_BUILD ?= build/pkg

# The dependency profile of this run's goals: test > package > bench.
DEPS_PROFILE := $(if $(filter test test-release asan tsan valgrind check-loop,$(MAKECMDGOALS)),test,$(if $(filter package,$(MAKECMDGOALS)),package,bench))

.PHONY: all build deps release asan tsan valgrind test test-release bench clean format check-format check-loop compare install uninstall package

all: build
build: release

deps:
	@$(DEPS) $(DEPS_PROFILE)

define configure
	@mkdir -p $(1)
	$(CMAKE) -S . -B $(1) -DCMAKE_C_COMPILER=$(2) $(3) >/dev/null
	$(CMAKE) --build $(1) -j$(JOBS)
endef

release: deps
	$(call configure,build/release,$(CC_RELEASE),-DCMAKE_BUILD_TYPE=Release)


bench: release
	./build/release/cmap-perf $(BENCH_ARGS)

test-release: release
	cd build/release && $(CTEST) --output-on-failure -j$(JOBS)

# ASan/UBSan: iteration counts halved (the Release run does them in full).
asan: deps
	$(call configure,build/asan,$(CC_ASAN),-DCMAKE_BUILD_TYPE=Debug -DCMAP_SANITIZE=address$(,)undefined)
	cd build/asan && CMAP_TEST_SCALE=2 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(CTEST) --output-on-failure -j$(JOBS)

# ThreadSanitizer: tests divide their iteration counts by CMAP_TEST_SCALE.
# Some kernels' mmap randomisation breaks TSan's shadow layout; setarch -R
# (no ASLR for this process tree) avoids that without changing the system.
# The single-threaded model and allocation-failure suites run once (their
# interleavings do not vary: a repeat adds minutes, not coverage), every
# other test TSAN_REPEAT times.
TSAN_ONCE ?= test_(model|oom)(_fenced)?
TSAN_RUN = cd build/tsan && CMAP_TEST_SCALE=4 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		$(shell command -v setarch >/dev/null 2>&1 && echo "setarch $$(uname -m) -R") \
		$(CTEST) --output-on-failure -j$(JOBS)
tsan: deps
	$(call configure,build/tsan,$(CC_TSAN),-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAP_SANITIZE=thread)
	$(TSAN_RUN) -R '^$(TSAN_ONCE)$$'
	$(TSAN_RUN) -E '^$(TSAN_ONCE)$$' --repeat until-fail:$(TSAN_REPEAT)

valgrind: release
	@for t in $(VALGRIND_TESTS); do \
	  if [ -x build/release/tests/$$t ]; then \
	    echo "valgrind memcheck: $$t"; \
	    (cd build/release/tests && CMAP_TEST_SCALE=20 valgrind -q --error-exitcode=1 --leak-check=full \
	      --errors-for-leak-kinds=definite,indirect ./$$t) || exit 1; \
	  else echo "valgrind: $$t not built, skipped"; fi; \
	done

test: test-release asan tsan valgrind fuzz-check

# libFuzzer (clang): tests/fuzz/fuzz_map.c against the library compiled with
# -fsanitize=fuzzer-no-link,address,undefined, in build/fuzz.  `make fuzz
# SECONDS=N` fuzzes build/fuzz/corpus (seeded from tests/fuzz/corpus; crashes
# go to build/fuzz/artifacts); FUZZ_JOBS=2 runs two workers (the most to use
# on 2 cores; logs in build/fuzz/fuzz-N.log).  fuzz-check, part of `make
# test`, replays every seed, then fuzzes FUZZ_CHECK_SECONDS.
SECONDS ?= 300
FUZZ_JOBS ?= 1
FUZZ_CHECK_SECONDS ?= 60
CC_FUZZ ?= clang
FUZZ_FLAGS = -timeout=60 -print_final_stats=1
.PHONY: fuzz fuzz-build fuzz-check
fuzz-build:
	@$(DEPS) test
	$(call configure,build/fuzz,$(CC_FUZZ),-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAP_FUZZ=ON -DCMAP_SANITIZE=fuzzer-no-link$(,)address$(,)undefined -DCMAP_BUILD_TESTS=OFF -DCMAP_BUILD_BENCH=OFF -DCMAP_INSTALL=OFF)
	@mkdir -p build/fuzz/corpus build/fuzz/check-corpus build/fuzz/artifacts
fuzz: fuzz-build
	cp -n tests/fuzz/corpus/* build/fuzz/corpus/
	cd build/fuzz && ./fuzz_map $(FUZZ_FLAGS) -artifact_prefix=artifacts/ -max_total_time=$(SECONDS) \
		$(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) corpus
fuzz-check: fuzz-build
	./build/fuzz/fuzz_map tests/fuzz/corpus/* >build/fuzz/replay.log 2>&1 || { tail -n 40 build/fuzz/replay.log; exit 1; }
	@echo "fuzz-check: replayed $$(ls tests/fuzz/corpus | wc -l) seeds"
	./build/fuzz/fuzz_map $(FUZZ_FLAGS) -artifact_prefix=build/fuzz/artifacts/ -max_total_time=$(FUZZ_CHECK_SECONDS) build/fuzz/check-corpus tests/fuzz/corpus \
		>build/fuzz/check.log 2>&1 || { tail -n 60 build/fuzz/check.log; exit 1; }
	@grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss)' build/fuzz/check.log

# Soak test (tests/soak/soak.c): `make soak MINUTES=N` runs 16 threads of
# random operations on five maps for N minutes, with thread churn, a
# quiescent check every 5 s and RSS required to stay flat (SOAK_ARGS adds
# options: --threads, --seed, --verbose...; `build/soak/soak --help`).  A
# Release build in build/soak; SAN=thread or SAN=address builds it with
# TSan or ASan+UBSan (clang) in build/soak-thread or build/soak-address
# (the RSS rule is then off).  Run it under `nice -n 19` on a shared box.
MINUTES ?= 10
SAN ?=
SOAK_ARGS ?=
SOAK_DIR = build/soak$(if $(SAN),-$(SAN))
SOAK_CMAKE = $(if $(filter thread,$(SAN)),-DCMAKE_C_COMPILER=$(CC_TSAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAP_SANITIZE=thread,$(if $(filter address,$(SAN)),-DCMAKE_C_COMPILER=$(CC_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAP_SANITIZE=address$(,)undefined,-DCMAKE_C_COMPILER=$(CC_RELEASE) -DCMAKE_BUILD_TYPE=Release))
SOAK_ENV = $(if $(filter thread,$(SAN)),TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(shell command -v setarch >/dev/null 2>&1 && echo "setarch $$(uname -m) -R"),$(if $(filter address,$(SAN)),ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1))
.PHONY: soak
soak:
	@case "$(SAN)" in ""|thread|address) ;; *) echo "SAN must be thread or address"; exit 2;; esac
	@$(DEPS) $(if $(SAN),test,bench)
	@mkdir -p $(SOAK_DIR)
	$(CMAKE) -S . -B $(SOAK_DIR) $(SOAK_CMAKE) >/dev/null
	$(CMAKE) --build $(SOAK_DIR) -j$(JOBS) --target soak
	$(SOAK_ENV) ./$(SOAK_DIR)/soak --minutes $(MINUTES) $(SOAK_ARGS)

# The library (runtime and development files, man pages) into PREFIX, under
# DESTDIR if set; cmap-perf is not part of it (`cmake --install build/release
# --component bench` installs it).  uninstall removes what the last install
# from build/release put down.
install: release
	DESTDIR="$(DESTDIR)" $(CMAKE) --install build/release --prefix "$(PREFIX)"
uninstall:
	DESTDIR="$(DESTDIR)" $(CMAKE) -DCMAP_MANIFEST=build/release/install_manifest.txt -P cmake/uninstall.cmake

# libcmap0 and libcmap-dev .deb files in $(PKG_BUILD) (CPack), built for
# /usr from their own build directory.
package: deps
	$(call configure,$(PKG_BUILD),$(CC_RELEASE),-DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DCMAP_BUILD_TESTS=OFF -DCMAP_BUILD_BENCH=OFF)
	cd $(PKG_BUILD) && cpack -G DEB

# Rerun the concurrent tests under TSan until one fails (liburcu's
# check-loop): `make check-loop LOOPS=1000`.
check-loop:
	$(MAKE) tsan TSAN_REPEAT=$(or $(LOOPS),1000)

# cmap against its peers (liburcu, libcuckoo, oneTBB, libcds, a striped
# baseline): tables, CSV/JSON and PNG charts in docs/perf/.  The classic
# workloads took about 9.5 minutes on 2 cores (measured); the counter,
# insert and iterate workloads add a second process (a second load) per
# map, N and rep.  FULL=1 for bigger machines (5 reps, 10 M ops per phase).
compare:
	bash tools/install-peers.sh
	rm -rf build/release/CMakeCache.txt
	$(MAKE) release
	python3 tools/compare.py --charts --out docs/perf \
		$(if $(FULL),--reps 5 --ops 10000000,--reps 3)

# Model checking of the epoch core (src/epoch.c, the hot path of
# src/internal.h) under the C11 model with GenMC: tests/modelcheck/run.sh
# runs every configuration (the fixes must verify, their reverts must fail;
# logs in build/mc; MC=PATTERN picks configurations by name).  Not part of
# `make test` or CI; about 8 minutes on 2 loaded cores.  GenMC is found on
# PATH or in build/genmc (tools/install-genmc.sh builds it there from a
# local copy of its source).
GENMC ?= $(or $(shell command -v genmc 2>/dev/null),$(wildcard build/genmc/bin/genmc))
.PHONY: modelcheck
modelcheck:
	@if [ -z "$(GENMC)" ]; then \
	  echo "modelcheck: GenMC not found; build it with tools/install-genmc.sh [SOURCE]"; exit 1; fi
	GENMC=$(GENMC) OUT=build/mc sh tests/modelcheck/run.sh '$(or $(MC),.)'

clean:
	rm -rf build

SOURCES = $(wildcard src/*.c src/*.h include/*.h tests/*.c tests/*.h bench/*.c examples/*.c tests/consumer/*.c)
SOURCES += $(wildcard tests/fuzz/*.c)
SOURCES += $(wildcard tests/soak/*.c)
SOURCES += $(wildcard tests/modelcheck/*.c tests/modelcheck/*.h)
format:
	@$(DEPS) format
	clang-format -i $(SOURCES)
check-format:
	@$(DEPS) format
	clang-format --dry-run --Werror $(SOURCES)
