#!/usr/bin/env bash
# Instructions per operation for every map compiled into cmap-perf, counted
# by callgrind inside the worker's run loop only (1 thread, 200 K loads,
# 200 K operations per workload; the loop's own ~65 instructions included).
# Exact and repeatable, unlike timings on a shared machine: the "why" table
# in docs/PERFORMANCE.md comes from here.
#
# usage: tools/count-instr.sh [path/to/cmap-perf] [workloads]
set -euo pipefail
perf=${1:-build/release/cmap-perf}
workloads=${2:-get set mix90}
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-10s' map
for w in $workloads; do printf ' %8s' "$w"; done
echo
for m in $("$perf" --list | cut -d' ' -f1); do
	printf '%-10s' "$m"
	for w in $workloads; do
		extra=()
		[ "$m" = cmap ] && extra=(--hasher mix)
		valgrind --tool=callgrind --toggle-collect=run_thread \
			--callgrind-out-file="$tmp/out" "$perf" --map "$m" \
			"${extra[@]}" --loads 200000 --ops 200000 --threads 1 \
			--workloads "$w" --no-progress >/dev/null 2>&1
		total=$(callgrind_annotate "$tmp/out" 2>/dev/null |
			awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
		printf ' %8d' $((total / 200000))
	done
	echo
done
