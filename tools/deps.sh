#!/bin/sh
# Build dependencies, by what is about to run:
#   tools/deps.sh bench     make bench: the Release build and cmap-perf
#   tools/deps.sh package   make package: that, plus the .deb tooling
#   tools/deps.sh test      make test: every build and test
#   tools/deps.sh format    make check-format: clang-format
# (several at once: tools/deps.sh test format).
# Each need is probed (a command or a file), so a machine that has the tools
# from elsewhere is left alone.  What is missing comes from the
# distribution's packages: as root, apt-get update and apt-get install,
# non-interactive; otherwise the exact command to run is printed and the
# script fails.
set -eu
profiles=$*

# want PACKAGE TEST ARGS...: PACKAGE provides what TEST ARGS checks for.
want() {
	pkg=$1
	shift
	if ! "$@" >/dev/null 2>&1; then
		case " $missing " in
		*" $pkg "*) ;;
		*) missing="$missing $pkg" ;;
		esac
	fi
}
have() { command -v "$1"; }
# ls fails unless a pattern matches (the sanitizer runtimes' versioned paths).
exists() { ls "$@"; }

bench() {
	want make have make
	want cmake have cmake
	want gcc have gcc
	want libc6-dev test -e /usr/include/stdlib.h
	want libxxhash-dev test -e /usr/include/xxhash.h
}

package() {
	bench
	want dpkg-dev have dpkg-shlibdeps # CPack: the runtime's Depends
	want file have file               # CPack: finds the ELF files
}

test_deps() {
	package
	want clang have clang
	# clang's sanitizer runtimes (ASan, UBSan, TSan) and libFuzzer
	want libclang-rt-dev exists \
		/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.tsan-*.a \
		/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.asan-*.a \
		/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a
	want valgrind have valgrind
	want util-linux have setarch # TSan without ASLR
	want util-linux have flock   # the .deb test's lock
	want g++ have g++            # the C++ consumer, C++ peers
	want pkg-config have pkg-config
	want binutils have readelf
	want groff-base have groff # man page checks
	want man-db have man
	want python3 have python3 # compare_smoke
}

probe() {
	missing=""
	for profile in ${profiles:-usage}; do
		case $profile in
		bench) bench ;;
		package) package ;;
		test) test_deps ;;
		format) want clang-format have clang-format ;;
		*)
			echo "usage: $0 bench|package|test|format..." >&2
			exit 2
			;;
		esac
	done
}

probe

[ -n "$missing" ] || exit 0
missing=${missing# }
cmd="apt-get install -y --no-install-recommends $missing"
if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps.sh: missing for '$profiles': $missing (Debian package names;" \
		"install the equivalents with your package manager)" >&2
	exit 1
fi
if [ "$(id -u)" != 0 ]; then
	as_root="su -c"
	command -v sudo >/dev/null 2>&1 && as_root="sudo sh -c"
	cat >&2 <<MSG
deps.sh: '$profiles' needs packages that are not installed: $missing
Install them as root, then run make again:
    $as_root 'apt-get update && DEBIAN_FRONTEND=noninteractive $cmd'
MSG
	exit 1
fi
echo "deps.sh: installing for '$profiles': $missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086 # one word per package
apt-get install -y -q --no-install-recommends $missing </dev/null
# Every probe must pass now, or the build would fail later and less clearly.
probe
if [ -n "$missing" ]; then
	echo "deps.sh: still missing after apt-get install:$missing" >&2
	exit 1
fi
