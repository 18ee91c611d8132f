#!/usr/bin/env bash
# Installs the peer maps `make compare` measures cmap against, and gnuplot
# for the charts (as root, from the distribution's packages).  cmap itself
# needs none of them.
set -euo pipefail
pkgs=(g++ liburcu-dev libcuckoo-dev libtbb-dev libcds-dev gnuplot-nox python3)
missing=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "missing: ${missing[*]} (run as root to install)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
