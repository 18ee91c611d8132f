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
# usage: tools/count-instr.sh [path/to/cmap-perf] [workloads]
set -euo pipefail
perf=${1:-build/release/cmap-perf}
workloads=${2:-get set mix90}
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-10s' map
for w in $workloads; do printf ' %12s' "$w"; done
echo
for m in $("$perf" --list | cut -d' ' -f1); do
	printf '%-10s' "$m"
	for w in $workloads; do
		extra=()
		[ "$m" = cmap ] && extra=(--hasher mix)
		valgrind --tool=callgrind --toggle-collect=run_thread \
			--callgrind-out-file="$tmp/out" "$perf" --map "$m" \
			"${extra[@]}" --loads 200000 --ops 200000 --threads 1 \
			--workloads "$w" --no-progress --json >"$tmp/stdout" 2>/dev/null
		ops=$(tail -n 1 "$tmp/stdout" |
			sed -n 's/.*"phases":\[{[^}]*"ops":\([0-9]*\).*/\1/p')
		if [ -z "$ops" ] || [ "$ops" = 0 ]; then
			printf ' %12s' -
			continue
		fi
		total=$(callgrind_annotate "$tmp/out" 2>/dev/null |
			awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
		printf ' %12d' $((total / ops))
	done
	echo
done
