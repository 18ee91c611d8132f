#!/bin/sh
# Build and install GenMC (the stateless model checker for C11 atomics that
# `make modelcheck` runs, tests/modelcheck/) from a local copy of its source.
#
#   tools/install-genmc.sh [SRC]
#
# SRC is a GenMC source tree (with configure.ac) or a git directory (bare or
# not) holding GenMC's history; from a git directory, GENMC_REF (default
# v0.10.3) is extracted.  Without SRC, the first of $GENMC_SRC and
# /work/.mirror/MPI-SWS+genmc/repo that exists is used.
#
# Version.  v0.10.3 is the newest release that builds with Debian 12's
# toolchain: it needs C++20 and LLVM 13..19 (llvm-14-dev).  v0.11.0 needs
# C++23 library parts that g++ 12 lacks (std::views::adjacent).
#
# Prefix.  GENMC_PREFIX, default build/genmc in this repository (no root
# needed, nothing outside the tree touched); the Makefile looks there when
# genmc is not on PATH.  GenMC records its include directory at configure
# time, so the installed tree must not be moved.
#
# Build dependencies are installed with apt-get when run as root (else the
# command is printed).  Builds with JOBS (default 2) under `nice -n 10`,
# in GENMC_BUILD (default build/genmc-build): about 10 minutes on 2 idle
# cores, 25 on a loaded machine.  Idempotent: does nothing when
# $GENMC_PREFIX/bin/genmc already runs (FORCE=1 rebuilds).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
ref=${GENMC_REF:-v0.10.3}
prefix=${GENMC_PREFIX:-$here/build/genmc}
jobs=${JOBS:-2}
work=${GENMC_BUILD:-$here/build/genmc-build}
llvm=${GENMC_LLVM:-/usr/lib/llvm-14}

case $prefix in /*) ;; *) prefix=$here/$prefix ;; esac

if [ -x "$prefix/bin/genmc" ] && [ "${FORCE:-0}" != 1 ] &&
	"$prefix/bin/genmc" --version >/dev/null 2>&1; then
	echo "genmc already installed: $prefix/bin/genmc ($("$prefix/bin/genmc" --version 2>&1 | sed -n 's/^ *GenMC v/v/p'))"
	exit 0
fi

src=${1:-${GENMC_SRC:-}}
if [ -z "$src" ]; then
	d=/work/.mirror/MPI-SWS+genmc/repo
	[ -e "$d" ] && src=$d
fi
if [ -z "$src" ] || [ ! -e "$src" ]; then
	echo "install-genmc: no GenMC source; pass a source tree or git directory" >&2
	exit 2
fi

# Build dependencies (Debian 12 names).
pkgs="autoconf automake make g++ clang-14 llvm-14-dev libedit-dev libffi-dev zlib1g-dev"
missing=
for p in $pkgs; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ]; then
		apt-get update
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
	else
		echo "install-genmc: missing packages; run as root:" >&2
		echo "  apt-get install -y$missing" >&2
		exit 1
	fi
fi

rm -rf "$work"
mkdir -p "$work"
if [ -f "$src/configure.ac" ]; then
	cp -R "$src/." "$work/"
elif git --git-dir="$src" rev-parse --verify -q "$ref^{commit}" >/dev/null ||
	git --git-dir="$src/.git" rev-parse --verify -q "$ref^{commit}" >/dev/null; then
	gd=$src
	[ -d "$src/.git" ] && gd=$src/.git
	git --git-dir="$gd" archive "$ref" | tar -x -C "$work"
else
	echo "install-genmc: $src is neither a source tree nor a git directory with $ref" >&2
	exit 2
fi

cd "$work"
# configure records the git commit of its tree: not that of an enclosing
# repository (this one, when the build tree is under build/).
GIT_CEILING_DIRECTORIES=$(dirname "$work")
export GIT_CEILING_DIRECTORIES
nice -n 10 autoreconf --install >/dev/null
nice -n 10 ./configure --prefix="$prefix" --with-llvm="$llvm" \
	--with-clang="$llvm/bin/clang" --with-clangxx="$llvm/bin/clang++" >configure.log ||
	{ tail -n 30 configure.log >&2; exit 1; }
nice -n 10 make -j"$jobs"
make install >/dev/null
"$prefix/bin/genmc" --version | sed -n 's/^ *GenMC v/GenMC v/p'
echo "genmc installed in $prefix/bin (build tree $work may be removed)"
