#!/bin/sh
# The reference manual as installed (ctest man_pages):
#   check-man.sh HEADER MANDIR
# MANDIR is an installed share/man.  Every page must render through groff
# with all warnings enabled and none given, every function the header
# declares (and the function-like public macros listed below) must have a
# page, and man(1), when present, must find each one.
set -eu
header=$1
mandir=$2
fail=0
err() {
	echo "check-man: $*" >&2
	fail=1
}

command -v groff >/dev/null 2>&1 ||
	{ echo "check-man: groff not found (make test installs groff-base)" >&2; exit 1; }

pages=$(cd "$mandir" && ls man3/*.3)
[ -n "$pages" ] || err "no pages in $mandir/man3"
for p in $pages; do
	# From MANDIR, as man(1) runs it, so the links' `.so man3/x.3` resolve.
	out=$(cd "$mandir" && LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$p" 2>&1) ||
		err "$p: groff failed"
	[ -z "$out" ] || err "$p: $out"
done

# Declarations start a line: `type name(` (not a typedef of a pointer).
funcs=$(sed -n 's/^[A-Za-z][A-Za-z0-9_ ]*[ *]\(cmap_[a-z0-9_]*\)(.*/\1/p' \
	"$header" | sort -u)
n=$(echo "$funcs" | wc -w)
[ "$n" -ge 20 ] || err "found only $n functions in $header: is the pattern stale?"
for name in $funcs CMAP_TYPED CMAP_CONFIG_INIT; do
	[ -e "$mandir/man3/$name.3" ] || err "no man page for $name"
	if command -v man >/dev/null 2>&1; then
		man -M "$mandir" -w 3 "$name" >/dev/null 2>&1 ||
			err "man -M $mandir 3 $name finds no page"
	fi
done
[ $fail = 0 ] || exit 1
echo "check-man: $(echo "$pages" | wc -w) pages render cleanly; $n functions documented"
