#!/bin/sh
# Packaging tests (ctest, Release build): the consumer program built against
# the library the ways a user would, and the Debian packages installed and
# removed.  Usage:
#   run.sh stage    BUILD STAGE          DESTDIR install of BUILD into STAGE
#   run.sh unstage  BUILD STAGE          uninstall it; nothing may be left
#   run.sh pkgconfig STAGE PREFIX OUT    pkg-config: shared (C, C++), --static
#   run.sh cmake    STAGE PREFIX OUT     find_package: cmap::cmap, cmap::cmap_static
#   run.sh subdir   SRC OUT              add_subdirectory of the source tree
#   run.sh deb      SRC OUT              make package, dpkg -i, consumers, dpkg -r
# PREFIX is the install prefix STAGE holds (the build's CMAKE_INSTALL_PREFIX).
# CC names the C compiler; C++ is g++.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
CC=${CC:-cc}
CXX=${CXX:-g++}
WARN="-Wall -Wextra -Wshadow -pedantic -Werror"

die() {
	echo "run.sh: $*" >&2
	exit 1
}

need() {
	for t; do
		command -v "$t" >/dev/null 2>&1 ||
			die "$t not found (make test installs it: tools/deps.sh test)"
	done
}

# needed EXE: the shared libraries EXE loads.
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

expect_shared() {
	needed "$1" | grep -qx 'libcmap\.so\.[0-9]*' ||
		die "$1 does not load libcmap.so.N: $(needed "$1" | tr '\n' ' ')"
}

expect_static() {
	! needed "$1" | grep -q libcmap ||
		die "$1 loads libcmap though linked statically"
}

# run EXE [LIBDIR]: the consumer prints one line and exits 0.
run() {
	if [ -n "${2:-}" ]; then
		LD_LIBRARY_PATH=$2 "$1"
	else
		"$1"
	fi | grep -q '^consumer: cmap .* ok$' || die "$1 failed"
}

# pkgconfig OUT [LIBDIR]: with PKG_CONFIG_* set by the caller.
consume_pkgconfig() {
	pc_out=$1
	need pkg-config "$CC" "$CXX" readelf
	cflags=$(pkg-config --cflags cmap) || die "pkg-config --cflags cmap failed"
	libs=$(pkg-config --libs cmap)
	slibs=$(pkg-config --libs --static cmap)
	echo "pkg-config: cflags '$cflags' libs '$libs' static '$slibs'"
	# shellcheck disable=SC2086 # word splitting of the flags is intended
	{
		"$CC" -std=c11 $WARN $cflags "$here/consumer.c" $libs \
			-o "$pc_out/pc_shared"
		"$CXX" -std=c++17 -x c++ $WARN -Wold-style-cast $cflags \
			"$here/consumer.c" -x none $libs -o "$pc_out/pc_shared_cxx"
		# Fully static: the flags alone must resolve everything.
		"$CC" -std=c11 -static $WARN $cflags "$here/consumer.c" $slibs \
			-o "$pc_out/pc_static"
	}
	expect_shared "$pc_out/pc_shared"
	expect_shared "$pc_out/pc_shared_cxx"
	expect_static "$pc_out/pc_static"
	run "$pc_out/pc_shared" "${2:-}"
	run "$pc_out/pc_shared_cxx" "${2:-}"
	run "$pc_out/pc_static"
}

# consume_cmake OUT MODE CMAKE-ARGS...: configure, build and run.
consume_cmake() {
	cm_out=$1
	cm_mode=$2
	shift 2
	need cmake "$CC" "$CXX" readelf
	rm -rf "$cm_out"
	mkdir -p "$cm_out"
	cmake -S "$here" -B "$cm_out" -DCMAP_CONSUMER="$cm_mode" \
		-DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
		-DCMAKE_BUILD_TYPE=Release "$@" >"$cm_out.log" 2>&1 ||
		{ cat "$cm_out.log"; die "cmake configure ($cm_mode) failed"; }
	grep 'cmap .* from' "$cm_out.log" || true
	cmake --build "$cm_out" -j2 >>"$cm_out.log" 2>&1 ||
		{ cat "$cm_out.log"; die "cmake build ($cm_mode) failed"; }
	for t in cmap cmap_static; do
		for exe in "$cm_out/consumer_$t" "$cm_out/consumer_${t}_cxx"; do
			if [ $t = cmap ]; then
				expect_shared "$exe"
			else
				expect_static "$exe"
			fi
			run "$exe"
		done
	done
}

# Every regular file and symlink under $1, one per line.
files_under() { find "$1" \( -type f -o -type l \) | sort; }

cmd=${1:-}
[ $# -ge 1 ] && shift
case $cmd in
stage)
	build=$1 stage=$2
	rm -rf "$stage"
	DESTDIR=$stage cmake --install "$build" >/dev/null
	files_under "$stage" | sed "s|^$stage||"
	! files_under "$stage" | grep -q cmap-perf ||
		die "cmap-perf is installed with the library"
	;;
unstage)
	build=$1 stage=$2
	DESTDIR=$stage cmake -DCMAP_MANIFEST="$build/install_manifest.txt" \
		-P "$here/../../cmake/uninstall.cmake" >/dev/null
	left=$(files_under "$stage")
	[ -z "$left" ] || die "left after uninstall: $left"
	rm -rf "$stage"
	;;
pkgconfig)
	stage=$1 prefix=$2 out=$3
	mkdir -p "$out"
	libdir=$(dirname "$(find "$stage$prefix" -name cmap.pc)")
	# The .pc names the real prefix; the sysroot maps it into the stage.
	PKG_CONFIG_PATH=$libdir PKG_CONFIG_SYSROOT_DIR=$stage \
		consume_pkgconfig "$out" "$(dirname "$libdir")"
	;;
cmake)
	stage=$1 prefix=$2 out=$3
	consume_cmake "$out" package -DCMAKE_PREFIX_PATH="$stage$prefix" \
		-DCMAP_EXPECT_PREFIX="$stage$prefix"
	;;
subdir)
	src=$1 out=$2
	consume_cmake "$out" subdir -DCMAP_SOURCE_DIR="$src"
	;;
deb)
	src=$1 out=$2
	if [ "$(id -u)" != 0 ]; then
		echo "SKIP: installs the .deb files into /usr with dpkg: run as root"
		exit 77
	fi
	if ! command -v dpkg >/dev/null 2>&1; then
		echo "SKIP: no dpkg (not a Debian system)"
		exit 77
	fi
	need flock dpkg-deb make
	# One run at a time on this machine: the packages own /usr paths.
	exec 9>/tmp/cmap-deb-test.lock
	flock 9
	for p in libcmap0 libcmap-dev; do
		! dpkg-query -W -f='${Status}\n' $p 2>/dev/null |
			grep -q ' installed$' ||
			die "$p is installed already; this test installs and removes its own build (dpkg -P $p first)"
	done
	[ ! -e /usr/include/cmap.h ] ||
		die "/usr/include/cmap.h exists outside the packages: remove it first"
	rm -rf "$out"
	mkdir -p "$out"
	make -C "$src" package PKG_BUILD="$out/build" >"$out/package.log" 2>&1 ||
		{ cat "$out/package.log"; die "make package failed"; }
	rt_deb=$(ls "$out"/build/libcmap[0-9]*_*.deb)
	dev_deb=$(ls "$out"/build/libcmap-dev_*.deb)
	rt=$(dpkg-deb -f "$rt_deb" Package)
	version=$(dpkg-deb -f "$rt_deb" Version)
	echo "packages: $rt_deb $dev_deb"
	dpkg-deb -f "$rt_deb" Depends | grep -q libc6 ||
		die "$rt does not depend on libc6"
	[ "$(dpkg-deb -f "$dev_deb" Depends)" = "$rt (= $version)" ] ||
		die "libcmap-dev Depends: $(dpkg-deb -f "$dev_deb" Depends)"
	# Paths the packages ship (no directories), as installed.
	dpkg-deb -c "$rt_deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\.||' \
		>"$out/runtime.files"
	dpkg-deb -c "$dev_deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\.||' \
		>"$out/dev.files"
	! grep -v '/libcmap\.so\.[0-9]' "$out/runtime.files" ||
		die "$rt holds more than libcmap.so.N*"
	for f in /include/cmap.h /libcmap.so /libcmap.a /pkgconfig/cmap.pc \
		/cmake/cmap/cmapConfig.cmake /cmake/cmap/cmapConfigVersion.cmake \
		/man3/cmap.3 /man3/cmap_get.3; do
		grep -q "$f\$" "$out/dev.files" || die "libcmap-dev lacks $f"
	done
	! grep cmap-perf "$out/runtime.files" "$out/dev.files" ||
		die "cmap-perf is packaged"

	# From here on the packages may be installed: always remove them.
	trap 'dpkg -P libcmap-dev "$rt" >/dev/null 2>&1 || true' EXIT
	trap 'exit 1' INT TERM HUP
	dpkg -i "$rt_deb" "$dev_deb" >"$out/dpkg.log" 2>&1 ||
		{ cat "$out/dpkg.log"; die "dpkg -i failed"; }
	consume_pkgconfig "$out"
	consume_cmake "$out/cmake" package -DCMAP_EXPECT_PREFIX=/usr
	if command -v man >/dev/null 2>&1; then
		man -w cmap_get_with >/dev/null || die "man cmap_get_with: no page"
	fi
	dpkg -r libcmap-dev "$rt" >>"$out/dpkg.log" 2>&1 ||
		{ cat "$out/dpkg.log"; die "dpkg -r failed"; }
	left=$(cat "$out/runtime.files" "$out/dev.files" | while read -r f; do
		if [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi
	done)
	[ -z "$left" ] || die "left after dpkg -r: $left"
	for d in /usr/lib/*/cmake/cmap /usr/lib/cmake/cmap; do
		[ ! -d "$d" ] || die "left after dpkg -r: $d"
	done
	# The runtime's ldconfig postrm (CPack's) keeps a config-files record
	# after -r; purging drops it, leaving dpkg's database as it was.
	dpkg -P libcmap-dev "$rt" >>"$out/dpkg.log" 2>&1 ||
		{ cat "$out/dpkg.log"; die "dpkg -P failed"; }
	trap - EXIT
	echo "deb: $rt and libcmap-dev $version installed, used and removed"
	;;
*)
	die "unknown command '$cmd'"
	;;
esac
