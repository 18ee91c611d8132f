#!/usr/bin/env bash
# Instructions per operation for every map compiled into cmap-perf, counted
# by callgrind inside the workers' run_thread only (1 thread, 200 K loads,
# 200 K operations per workload; the loop's own ~65 instructions included).
# Exact and repeatable, unlike timings on a shared machine: the "why" tables
# in docs/PERFORMANCE.md come from here.  Any --workloads name works; the
# count is divided by the phase's own ops from --json (for iterate and
# iterate-w: per entry visited, the walker only, not iterate-w's writer).
# A map without the workload's operation shows "-".
#
# CACHE=1 adds the lines each operation touches, from callgrind's cache
# model: "instructions/L1 read/L1 written/memory read/memory written", the
# first level 48 KiB and the last 32 MiB 16-way (LL=size,ways,line to
# change it).  Lines matter only where the map outgrows the caches:
# LOADS=10000000 OPS=1000000, about 5 minutes per map and workload.
#
# usage: [MAPS="cmap cuckoo"] [LOADS=N] [OPS=N] [CACHE=1] \
#        tools/count-instr.sh [path/to/cmap-perf] [workloads]
set -euo pipefail
perf=${1:-build/release/cmap-perf}
workloads=${2:-get set mix90}
loads=${LOADS:-200000}
ops=${OPS:-$loads}
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sim=()
width=12
if [ "${CACHE:-0}" = 1 ]; then
	sim=(--cache-sim=yes --D1=49152,12,64 --LL="${LL:-33554432,16,64}")
	width=28
fi
printf '%-10s' map
for w in $workloads; do printf " %${width}s" "$w"; done
echo
for m in ${MAPS:-$("$perf" --list | cut -d' ' -f1)}; do
	printf '%-10s' "$m"
	for w in $workloads; do
		extra=()
		[ "$m" = cmap ] && extra=(--hasher mix)
		valgrind --tool=callgrind "${sim[@]}" --toggle-collect=run_thread \
			--callgrind-out-file="$tmp/out" "$perf" --map "$m" \
			"${extra[@]}" --loads "$loads" --ops "$ops" --threads 1 \
			--workloads "$w" --no-progress --json >"$tmp/stdout" 2>/dev/null
		n=$(tail -n 1 "$tmp/stdout" |
			sed -n 's/.*"phases":\[{[^}]*"ops":\([0-9]*\).*/\1/p')
		if [ -z "$n" ] || [ "$n" = 0 ]; then
			printf " %${width}s" -
			continue
		fi
		# Totals in the order of the events line: Ir, then (with the
		# cache model) Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
		cell=$(callgrind_annotate "$tmp/out" 2>/dev/null | awk -v n="$n" \
			-v cache="${CACHE:-0}" '/PROGRAM TOTALS/ {
				gsub(",", ""); gsub(/\([^)]*\)/, "")
				if (cache != 1) { printf "%d", $1 / n; exit }
				printf "%d/%.2f/%.2f/%.2f/%.2f", $1 / n, $5 / n,
				    $6 / n, $8 / n, $9 / n; exit }')
		printf " %${width}s" "$cell"
	done
	echo
done
